"""Consultation rounds: create, launch, open, plan, close, and what the coordinator sees."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.documents import Section
from models.enums import CommentStatus, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import Comment
from models.rounds import (
    ReminderPolicy,
    ReviewTask,
    Round,
    RoundCounts,
    RoundCreate,
    RoundListItem,
    RoundRead,
    RoundUpdate,
    TaskReminder,
    TaskSummary,
    default_role,
)
from models.types import utcnow
from models.users import User
from services import invitations, objections, working_days
from services.audit import trail
from services.db import transactional
from services.documents import sections_of_version
from services.errors import Conflict, InvalidInput, NotFound
from services.organisations import resolve_keys
from services.procedures import get_procedure
from services.settings import Settings


async def get_round_row(
    session: AsyncSession, *, round_id: int, lock: bool = False, shared: bool = False
) -> Round:
    """The round row; with `lock`, locked for update (or, with `shared` too, for share) until commit."""
    query = select(Round).where(Round.id == round_id)
    if lock:
        query = query.with_for_update(read=shared).execution_options(populate_existing=True)
    found = (await session.exec(query)).first()
    if found is None:
        raise NotFound(f"round {round_id} does not exist")
    return found


async def coordinator_email(session: AsyncSession, round_: Round) -> str | None:
    """The address of the coordinator who created the round (who is told what happens in it)."""
    if round_.created_by_id is None:
        return None
    return (await session.exec(select(User.email).where(User.id == round_.created_by_id))).first()


@transactional
async def create_round(
    session: AsyncSession, *, data: RoundCreate, actor: Actor, user_id: int | None
) -> RoundRead:
    if data.deadline <= utcnow():
        raise InvalidInput("the deadline must be in the future")
    procedure = get_procedure(data.procedure)
    jurisdiction = working_days.check_jurisdiction(data.jurisdiction)
    working_days.zone(data.timezone)
    policy = data.reminder_policy or ReminderPolicy(
        working_days_before=list(procedure.reminder_working_days_before), at=procedure.reminder_at
    )
    period = working_days.working_days_between(
        jurisdiction,
        working_days.local_date(utcnow(), data.timezone),
        working_days.local_date(data.deadline, data.timezone),
    )
    check_period(
        procedure_key=procedure.key, period=period, reason=data.minimum_period_reason, when="the deadline"
    )
    sections = await sections_of_version(session, version_id=data.document_version_id)
    by_number = {section.number: section for section in sections}
    chosen = list(by_number) if data.section_numbers is None else data.section_numbers
    default_ids = _section_ids(by_number, chosen, "section_numbers")
    organisations = await _organisations_to_consult(session, data)
    unknown = sorted(set(data.assignments or {}) - {organisation.key for organisation in organisations})
    if unknown:
        raise InvalidInput(
            "assignments name organisations that are not consulted in this round: " + ", ".join(unknown)
        )
    assigned = {
        key: _section_ids(by_number, numbers, f"assignments[{key}]")
        for key, numbers in (data.assignments or {}).items()
    }
    unknown_roles = sorted(set(data.roles or {}) - {organisation.key for organisation in organisations})
    if unknown_roles:
        raise InvalidInput(
            "roles name organisations that are not consulted in this round: " + ", ".join(unknown_roles)
        )
    roles = {
        organisation.key: (data.roles or {}).get(organisation.key, default_role(organisation.kind))
        for organisation in organisations
    }
    round_ = Round(
        title=data.title,
        purpose=data.purpose,
        cover_message=data.cover_message,
        contact_name=data.contact_name,
        contact_email=str(data.contact_email) if data.contact_email else None,
        document_version_id=data.document_version_id,
        deadline=data.deadline,
        created_by_id=user_id,
        procedure=procedure.key,
        jurisdiction=jurisdiction,
        timezone=data.timezone,
        minimum_period_reason=data.minimum_period_reason or None,
        grace_period_hours=data.grace_period_hours,
        silence_means=data.silence_means,
        reminder_policy=policy.model_dump(),
        sign_off_code_required=data.sign_off_code_required,
    )
    session.add(round_)
    await session.flush()
    assert round_.id is not None
    session.add_all(
        ReviewTask(
            round_id=round_.id,
            organisation_id=organisation.id or 0,
            role=roles[organisation.key],
            section_ids=assigned.get(organisation.key, default_ids),
            deadline=data.deadline,
        )
        for organisation in organisations
    )
    await trail.append(
        session,
        actor=actor,
        action="round.created",
        round_id=round_.id,
        data={
            "title": round_.title,
            "document_version_id": data.document_version_id,
            "deadline": data.deadline.isoformat(),
            "organisations": [organisation.key for organisation in organisations],
            "roles": {key: str(role) for key, role in roles.items()},
            "sections": [section.number for section in sections if section.id in default_ids],
            "procedure": procedure.key,
            "jurisdiction": jurisdiction,
            "period_working_days": period,
            "minimum_period_reason": round_.minimum_period_reason,
            "grace_period_hours": round_.grace_period_hours,
            "silence_means": str(round_.silence_means),
            "reminder_policy": round_.reminder_policy,
            "sign_off_code_required": round_.sign_off_code_required,
        },
    )
    await session.commit()
    return await get_round(session, round_id=round_.id)


def check_period(*, procedure_key: str, period: int, reason: str | None, when: str) -> None:
    """A period shorter than the procedure's minimum needs a reason."""
    procedure = get_procedure(procedure_key)
    if period < procedure.minimum_working_days and not (reason and reason.strip()):
        raise InvalidInput(
            f"{when} leaves {period} working days; {procedure.name.lower()} needs at least "
            f"{procedure.minimum_working_days}: give minimum_period_reason to run it shorter"
        )


def period_of(round_: Round, *, now: datetime) -> int:
    """Working days from the launch (or, for a draft, today) to the deadline."""
    start = round_.launched_at or now
    return working_days.working_days_between(
        round_.jurisdiction,
        working_days.local_date(start, round_.timezone),
        working_days.local_date(round_.deadline, round_.timezone),
    )


def _section_ids(by_number: dict[str, Section], numbers: list[str], where: str) -> list[int]:
    unknown = [number for number in numbers if number not in by_number]
    if unknown:
        raise InvalidInput(f"{where}: no such section in this draft: {', '.join(unknown)}")
    if not numbers:
        raise InvalidInput(f"{where}: at least one section must be reviewed")
    return [by_number[number].id or 0 for number in dict.fromkeys(numbers)]


async def _organisations_to_consult(
    session: AsyncSession, data: RoundCreate | RoundUpdate
) -> list[Organisation]:
    chosen: dict[str, Organisation] = {}
    if data.organisation_keys:
        chosen.update(await resolve_keys(session, keys=data.organisation_keys))
    if data.organisation_kinds:
        of_kinds = await session.exec(
            select(Organisation).where(
                col(Organisation.kind).in_([str(kind) for kind in data.organisation_kinds]),
                col(Organisation.archived_at).is_(None),
            )
        )
        chosen.update((organisation.key, organisation) for organisation in of_kinds)
    if data.organisation_keys is None and data.organisation_kinds is None:
        everyone = await session.exec(select(Organisation).where(col(Organisation.archived_at).is_(None)))
        chosen.update((organisation.key, organisation) for organisation in everyone)
    if not chosen:
        raise InvalidInput("no organisations to consult: the registry is empty or none matched")
    return sorted(chosen.values(), key=lambda organisation: organisation.key)


@dataclass(frozen=True)
class PlannedPeriod:
    """A deadline as the coordinator plans it: the working days it leaves from today, against the
    procedure's minimum (a shorter period needs a reason) and maximum."""

    working_days: int
    minimum_working_days: int
    maximum_working_days: int | None
    procedure_name: str

    @property
    def too_short(self) -> bool:
        return self.working_days < self.minimum_working_days


def planned_period(
    *, deadline: datetime, procedure_key: str, jurisdiction: str, timezone: str, now: datetime | None = None
) -> PlannedPeriod:
    """The working days from today (in `timezone`) to the deadline's day, as create_round counts them."""
    procedure = get_procedure(procedure_key)
    jurisdiction = working_days.check_jurisdiction(jurisdiction)
    period = working_days.working_days_between(
        jurisdiction,
        working_days.local_date(now or utcnow(), timezone),
        working_days.local_date(deadline, timezone),
    )
    return PlannedPeriod(
        working_days=period,
        minimum_working_days=procedure.minimum_working_days,
        maximum_working_days=procedure.maximum_working_days,
        procedure_name=procedure.name,
    )


_TASK_FIELDS = frozenset(
    {
        "document_version_id",
        "organisation_keys",
        "organisation_kinds",
        "section_numbers",
        "assignments",
        "roles",
    }
)
_NULLABLE_TEXT = {"purpose": "", "cover_message": "", "contact_name": ""}


def _draft_of(round_: Round, round_id: int) -> Round:
    if round_.status != RoundStatus.draft:
        raise Conflict(
            f"round {round_id} is {round_.status}: only a draft round (not yet launched) can be changed "
            "or deleted"
        )
    return round_


@transactional
async def update_draft(session: AsyncSession, *, round_id: int, data: RoundUpdate, actor: Actor) -> RoundRead:
    """Change a draft round: the fields given, and who is consulted on what when any of those is given
    (see RoundUpdate; `section_numbers` given as null means every section). Refused with 409 once the
    round is launched."""
    round_ = _draft_of(await get_round_row(session, round_id=round_id, lock=True), round_id)
    given = set(data.model_fields_set)
    # null for a field that cannot be empty means "unchanged"; for the others, "cleared".
    for name in (
        "title",
        "document_version_id",
        "deadline",
        "procedure",
        "grace_period_hours",
        "silence_means",
        "sign_off_code_required",
    ):
        if name in given and getattr(data, name) is None:
            given.discard(name)
    for name in (
        "title",
        "purpose",
        "cover_message",
        "contact_name",
        "grace_period_hours",
        "silence_means",
        "sign_off_code_required",
    ):
        if name in given:
            value = getattr(data, name)
            setattr(round_, name, _NULLABLE_TEXT.get(name, value) if value is None else value)
    if "contact_email" in given:
        round_.contact_email = str(data.contact_email) if data.contact_email else None
    if "minimum_period_reason" in given:
        round_.minimum_period_reason = data.minimum_period_reason or None
    if "procedure" in given:
        round_.procedure = get_procedure(data.procedure or "").key
    if "reminder_policy" in given:
        policy = data.reminder_policy or ReminderPolicy(
            working_days_before=list(get_procedure(round_.procedure).reminder_working_days_before),
            at=get_procedure(round_.procedure).reminder_at,
        )
        round_.reminder_policy = policy.model_dump()
    if "deadline" in given:
        assert data.deadline is not None
        if data.deadline <= utcnow():
            raise InvalidInput("the deadline must be in the future")
        round_.deadline = data.deadline
    period = period_of(round_, now=utcnow())
    check_period(
        procedure_key=round_.procedure,
        period=period,
        reason=round_.minimum_period_reason,
        when="the deadline",
    )
    consulted: list[str] | None = None
    if given & _TASK_FIELDS:
        consulted = await _replan_tasks(session, round_, data, given)
    elif "deadline" in given:
        for task in (await session.exec(select(ReviewTask).where(ReviewTask.round_id == round_id))).all():
            task.deadline = round_.deadline
            session.add(task)
    session.add(round_)
    event: dict[str, object] = {
        "changed": sorted(given),
        **data.model_dump(mode="json", include=given - _TASK_FIELDS),
        "period_working_days": period,
    }
    if consulted is not None:
        event["organisations"] = consulted
    await trail.append(session, actor=actor, action="round.updated", round_id=round_id, data=event)
    await session.commit()
    return await get_round(session, round_id=round_id)


async def _replan_tasks(
    session: AsyncSession, round_: Round, data: RoundUpdate, given: set[str]
) -> list[str]:
    """The draft's tasks again: who is consulted, on which sections, in which role. Returns the keys."""
    assert round_.id is not None
    existing = {
        organisation.key: (task, organisation)
        for task, organisation in (
            await session.exec(
                select(ReviewTask, Organisation)
                .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
                .where(ReviewTask.round_id == round_.id)
            )
        ).all()
    }
    version_id = data.document_version_id if "document_version_id" in given else None
    new_version = version_id is not None and version_id != round_.document_version_id
    if version_id is not None:
        round_.document_version_id = version_id
    sections = await sections_of_version(session, version_id=round_.document_version_id)
    by_number = {section.number: section for section in sections}
    every_section = [section.id or 0 for section in sections]
    # Given as null, section_numbers means every section, as it does when a round is created.
    default_ids: list[int] | None = None
    if "section_numbers" in given:
        chosen = data.section_numbers
        default_ids = every_section if chosen is None else _section_ids(by_number, chosen, "section_numbers")
    if data.organisation_keys is not None or data.organisation_kinds is not None:
        organisations = await _organisations_to_consult(session, data)
    else:
        organisations = sorted(
            (organisation for _task, organisation in existing.values()),
            key=lambda organisation: organisation.key,
        )
    keys = {organisation.key for organisation in organisations}
    for field_name, named in (("assignments", data.assignments), ("roles", data.roles)):
        unknown = sorted(set(named or {}) - keys)
        if unknown:
            raise InvalidInput(
                f"{field_name} name organisations that are not consulted in this round: " + ", ".join(unknown)
            )
    assigned = {
        key: _section_ids(by_number, numbers, f"assignments[{key}]")
        for key, numbers in (data.assignments or {}).items()
    }
    for key, (dropped, _organisation) in existing.items():
        if key not in keys:
            await session.delete(dropped)
    for organisation in organisations:
        found = existing.get(organisation.key)
        task: ReviewTask | None = found[0] if found is not None else None
        if organisation.key in assigned:
            section_ids = assigned[organisation.key]
        elif default_ids is not None:
            section_ids = default_ids
        elif task is not None and not new_version:
            section_ids = task.section_ids
        else:
            section_ids = every_section
        role = (data.roles or {}).get(organisation.key)
        if task is None:
            task = ReviewTask(
                round_id=round_.id,
                organisation_id=organisation.id or 0,
                role=role or default_role(organisation.kind),
                section_ids=section_ids,
                deadline=round_.deadline,
            )
        else:
            task.section_ids = list(section_ids)
            task.role = role or task.role
            task.deadline = round_.deadline
        session.add(task)
    await session.flush()
    return sorted(keys)


@transactional
async def delete_draft(session: AsyncSession, *, round_id: int, actor: Actor) -> None:
    """Delete a draft round and its tasks (nobody was invited: nothing else of it exists). The audit
    trail keeps its creation, its changes and its deletion. Refused with 409 once the round is launched."""
    round_ = _draft_of(await get_round_row(session, round_id=round_id, lock=True), round_id)
    tasks = (await session.exec(select(func.count()).where(ReviewTask.round_id == round_id))).one()
    await session.exec(delete(TaskReminder).where(col(TaskReminder.round_id) == round_id))
    await session.exec(delete(ReviewTask).where(col(ReviewTask.round_id) == round_id))
    await session.delete(round_)
    await trail.append(
        session,
        actor=actor,
        action="round.deleted",
        round_id=round_id,
        data={"title": round_.title, "organisations": tasks, "deadline": round_.deadline.isoformat()},
    )
    await session.commit()


async def get_round(session: AsyncSession, *, round_id: int) -> RoundRead:
    round_ = await get_round_row(session, round_id=round_id)
    section_numbers = dict(
        (
            await session.exec(
                select(Section.id, Section.number).where(
                    Section.document_version_id == round_.document_version_id
                )
            )
        ).all()
    )
    comment_counts = dict(
        (
            await session.exec(
                select(Comment.task_id, func.count())
                .where(Comment.round_id == round_id, Comment.status == CommentStatus.active)
                .group_by(col(Comment.task_id))
            )
        ).all()
    )
    refused = await invitations.undeliverable(session, round_id=round_id)
    rows = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
            .order_by(col(Organisation.kind), col(Organisation.name_en))
        )
    ).all()
    tasks = [
        TaskSummary(
            id=task.id or 0,
            organisation_key=organisation.key,
            organisation_name=organisation.name_en,
            organisation_kind=organisation.kind,
            role=task.role,
            status=task.status,
            section_numbers=[section_numbers[section_id] for section_id in task.section_ids],
            comments=comment_counts.get(task.id or 0, 0),
            decision=task.decision,
            invited_at=task.invited_at,
            completed_at=task.completed_at,
            deadline=task.deadline,
            escalated_at=task.escalated_at,
            undeliverable=refused.get(task.id or 0, []),
        )
        for task, organisation in rows
    ]
    statuses = Counter(str(task.status) for task in tasks)
    counts = RoundCounts(
        organisations=len(tasks),
        pending=statuses[TaskStatus.pending],
        invited=statuses[TaskStatus.invited],
        commenting=statuses[TaskStatus.commenting],
        signed_off=statuses[TaskStatus.signed_off],
        overdue=statuses[TaskStatus.overdue],
        no_response=statuses[TaskStatus.no_response],
        deemed_content=statuses[TaskStatus.deemed_content],
        cancelled=statuses[TaskStatus.cancelled],
        comments=sum(comment_counts.values()),
    )
    return RoundRead.model_validate(
        {
            **round_.model_dump(),
            "reminder_policy": round_.reminders(),
            "period_working_days": period_of(round_, now=utcnow()),
            "clearance": await objections.clearance(session, round_id=round_id),
            "counts": counts,
            "tasks": tasks,
        },
        from_attributes=True,
    )


async def list_rounds(session: AsyncSession) -> list[RoundListItem]:
    """Every round, newest first, with how many organisations it consults and how many have signed off."""
    signed_off = func.sum(case((col(ReviewTask.status) == TaskStatus.signed_off, 1), else_=0))
    rows = (
        await session.exec(
            select(Round, func.count(col(ReviewTask.id)), signed_off)
            .outerjoin(ReviewTask, col(ReviewTask.round_id) == Round.id)
            .group_by(col(Round.id))
            .order_by(col(Round.created_at).desc(), col(Round.id).desc())
        )
    ).all()
    return [
        RoundListItem.model_validate(
            {**round_.model_dump(), "organisations": organisations, "signed_off": int(signed or 0)}
        )
        for round_, organisations, signed in rows
    ]


@transactional
async def launch(session: AsyncSession, *, round_id: int, actor: Actor, settings: Settings) -> bool:
    """Open a draft round: its review links and their invitations are decided in the same transaction, so
    they exist whether or not the round's scheduler is reachable yet. True if this call launched it,
    False if it already was open."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status == RoundStatus.open:
        await session.rollback()
        return False
    if round_.status == RoundStatus.closed:
        raise Conflict(f"round {round_id} is closed; open a new round on a revised draft instead")
    now = utcnow()
    if round_.deadline <= now:
        raise Conflict("the round's deadline has already passed; set a new deadline before launching")
    check_period(
        procedure_key=round_.procedure,
        period=period_of(round_, now=now),
        reason=round_.minimum_period_reason,
        when="launched today, the deadline",
    )
    tasks = (await session.exec(select(func.count()).where(ReviewTask.round_id == round_id))).one()
    round_.status = RoundStatus.open
    round_.launched_at = now
    session.add(round_)
    await trail.append(
        session,
        actor=actor,
        action="round.launched",
        round_id=round_id,
        data={"deadline": round_.deadline.isoformat(), "organisations": tasks},
    )
    await invitations.issue(session, round_=round_, settings=settings)
    await session.commit()
    return True
