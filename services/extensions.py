"""Extensions: the coordinator moves the deadline of a whole round or of some of its organisations.

Everyone affected is told, with their link; the tasks' reminders and escalation re-plan from the new
deadline by themselves, since their keys carry the deadline they were planned for. An overdue task
that is given more time is open again. A period that the procedure caps (public consultation: 40
working days from the launch) cannot be extended past its maximum.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import Language, MessageKind, RoundStatus, TaskStatus
from models.extensions import ExtensionCreate, ExtensionRead
from models.organisations import Organisation
from models.reviews import AccessLink, Comment
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import outbox, working_days
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput
from services.formatting import when_text
from services.invitations import organisation_name, sender_name
from services.outbox import Mail
from services.procedures import get_procedure
from services.rounds import get_round_row
from services.scheduling import OPEN_TASK_STATUSES
from services.settings import Settings


@transactional
async def extend(
    session: AsyncSession, *, round_id: int, data: ExtensionCreate, actor: Actor, settings: Settings
) -> ExtensionRead:
    """Give the round (or the organisations named) a later deadline; returns who it applies to."""
    extended = await extend_in(session, round_id=round_id, data=data, actor=actor, settings=settings)
    await session.commit()
    return extended


async def extend_in(
    session: AsyncSession, *, round_id: int, data: ExtensionCreate, actor: Actor, settings: Settings
) -> ExtensionRead:
    """`extend`, in the caller's transaction (a granted request is recorded with it)."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        raise Conflict(f"round {round_id} is {round_.status}: only an open round's deadline can be extended")
    now = utcnow()
    if data.deadline <= now:
        raise InvalidInput("the new deadline must be in the future")
    _check_maximum(round_, data)
    query = (
        select(ReviewTask, Organisation)
        .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
        .where(ReviewTask.round_id == round_id)
        .with_for_update(of=ReviewTask)
    )
    rows = (await session.exec(query)).all()
    by_key = {organisation.key: (task, organisation) for task, organisation in rows}
    if data.organisation_keys is not None:
        unknown = sorted(set(data.organisation_keys) - set(by_key))
        if unknown:
            raise InvalidInput("not consulted in this round: " + ", ".join(unknown))
        chosen = [by_key[key] for key in dict.fromkeys(data.organisation_keys)]
    else:
        chosen = list(rows)
    settled = [organisation.key for task, organisation in chosen if task.status not in OPEN_TASK_STATUSES]
    if data.organisation_keys is not None and settled:
        raise Conflict(
            "these organisations have settled their task; there is nothing to extend: " + ", ".join(settled)
        )
    affected = [(task, organisation) for task, organisation in chosen if task.status in OPEN_TASK_STATUSES]
    earlier = [organisation.key for task, organisation in affected if data.deadline <= task.deadline]
    if earlier:
        raise InvalidInput(
            "an extension moves a deadline later; these already have this deadline or a later one: "
            + ", ".join(earlier)
        )
    if not affected:
        raise Conflict("every organisation of the round has settled its task; there is nothing to extend")
    previous = {task.id: task.deadline for task, _ in affected}
    commented = set(
        (
            await session.exec(
                select(Comment.task_id).where(col(Comment.task_id).in_(list(previous))).distinct()
            )
        ).all()
    )
    for task, _organisation in affected:
        task.deadline = data.deadline
        if task.status == TaskStatus.overdue:
            task.status = TaskStatus.commenting if task.id in commented else TaskStatus.invited
        session.add(task)
    if data.organisation_keys is None:
        round_.deadline = data.deadline
        session.add(round_)
    links = (
        await session.exec(
            select(AccessLink).where(
                col(AccessLink.task_id).in_(list(previous)), col(AccessLink.revoked_at).is_(None)
            )
        )
    ).all()
    tasks = {task.id: (task, organisation) for task, organisation in affected}
    mails = [
        _notice(round_, *tasks[link.task_id], link, previous[link.task_id], data.reason, settings)
        for link in links
    ]
    await outbox.enqueue(session, mails=mails)
    await trail.append(
        session,
        actor=actor,
        action="deadline.extended",
        round_id=round_id,
        data={
            "deadline": data.deadline.isoformat(),
            "reason": data.reason,
            "whole_round": data.organisation_keys is None,
            "organisations": {
                organisation.key: {"from": previous[task.id].isoformat()} for task, organisation in affected
            },
        },
    )
    return ExtensionRead(
        round_id=round_id,
        deadline=data.deadline,
        organisation_keys=[organisation.key for _task, organisation in affected],
        notices=len(mails),
    )


def _check_maximum(round_: Round, data: ExtensionCreate) -> None:
    procedure = get_procedure(round_.procedure)
    if procedure.maximum_working_days is None:
        return
    start = working_days.local_date(round_.launched_at or utcnow(), round_.timezone)
    period = working_days.working_days_between(
        round_.jurisdiction, start, working_days.local_date(data.deadline, round_.timezone)
    )
    if period > procedure.maximum_working_days:
        raise InvalidInput(
            f"the new deadline makes the period {period} working days from the launch; "
            f"{procedure.name.lower()} may be extended to at most {procedure.maximum_working_days}"
        )


def _notice(
    round_: Round,
    task: ReviewTask,
    organisation: Organisation,
    link: AccessLink,
    previous: datetime,
    reason: str,
    settings: Settings,
) -> Mail:
    language = Language(organisation.language)
    timezone = organisation.timezone or round_.timezone
    assert task.id is not None
    return Mail(
        key=f"deadline_extended:{task.id}:{link.role}:{task.deadline.isoformat()}",
        kind=MessageKind.deadline_extended,
        to_email=link.email,
        to_name=link.name,
        language=language,
        context={
            "contact_name": link.name,
            "round_title": round_.title,
            "organisation_name": organisation_name(organisation, language),
            "previous_deadline_text": when_text(previous, timezone=timezone, language=language),
            "deadline_text": when_text(task.deadline, timezone=timezone, language=language),
            "reason": reason,
            "sender_name": sender_name(settings),
        },
        round_id=round_.id,
        task_id=task.id,
        link_id=link.id,
    )
