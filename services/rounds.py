"""Consultation rounds: create, launch, open, plan, close, and what the coordinator sees."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, case, insert, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR, Actor
from models.documents import Section
from models.enums import CloseReason, CommentStatus, ContactRole, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import AccessLink, Comment, CommentRead, SignOff, SignOffRead
from models.rounds import ReviewTask, Round, RoundCounts, RoundCreate, RoundListItem, RoundRead, TaskSummary
from models.types import utcnow
from models.users import User
from services import audit, links
from services.audit import NewEvent
from services.db import transactional
from services.documents import sections_of_version
from services.errors import Conflict, InvalidInput, NotFound
from services.organisations import resolve_keys

FINAL_STATUSES = (TaskStatus.signed_off, TaskStatus.no_response)
# Named rather than "not final" so the (round_id, status) index answers the question directly.
UNSETTLED_STATUSES = tuple(str(status) for status in TaskStatus if status not in FINAL_STATUSES)


@dataclass(frozen=True)
class RoundPlan:
    """What is due in a round, as the scheduler needs it."""

    status: RoundStatus
    deadline: datetime
    invitations_due: int
    claims_lapse_at: datetime | None
    """When invitations claimed by an attempt that may have died become due again."""
    close_reason: CloseReason | None


@dataclass
class RoundClosure:
    round_id: int
    title: str
    closed_at: datetime
    reason: CloseReason
    counts: dict[str, int]
    decisions: dict[str, int] = field(default_factory=dict)
    no_response: list[str] = field(default_factory=list)
    objections: list[str] = field(default_factory=list)
    coordinator_email: str | None = None


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


@transactional
async def create_round(
    session: AsyncSession, *, data: RoundCreate, actor: Actor, user_id: int | None
) -> RoundRead:
    if data.deadline <= utcnow():
        raise InvalidInput("the deadline must be in the future")
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
    round_ = Round(
        title=data.title,
        document_version_id=data.document_version_id,
        deadline=data.deadline,
        created_by_id=user_id,
    )
    session.add(round_)
    await session.flush()
    assert round_.id is not None
    session.add_all(
        ReviewTask(
            round_id=round_.id,
            organisation_id=organisation.id or 0,
            section_ids=assigned.get(organisation.key, default_ids),
        )
        for organisation in organisations
    )
    await audit.append(
        session,
        actor=actor,
        action="round.created",
        round_id=round_.id,
        data={
            "title": round_.title,
            "document_version_id": data.document_version_id,
            "deadline": data.deadline.isoformat(),
            "organisations": [organisation.key for organisation in organisations],
            "sections": [section.number for section in sections if section.id in default_ids],
        },
    )
    await session.commit()
    return await get_round(session, round_id=round_.id)


def _section_ids(by_number: dict[str, Section], numbers: list[str], where: str) -> list[int]:
    unknown = [number for number in numbers if number not in by_number]
    if unknown:
        raise InvalidInput(f"{where}: no such section in this draft: {', '.join(unknown)}")
    if not numbers:
        raise InvalidInput(f"{where}: at least one section must be reviewed")
    return [by_number[number].id or 0 for number in dict.fromkeys(numbers)]


async def _organisations_to_consult(session: AsyncSession, data: RoundCreate) -> list[Organisation]:
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
    refused: dict[int, list[str]] = {}
    for task_id, email, error in await session.exec(
        select(AccessLink.task_id, AccessLink.email, AccessLink.invitation_error).where(
            AccessLink.round_id == round_id, col(AccessLink.invitation_error).is_not(None)
        )
    ):
        refused.setdefault(task_id, []).append(f"{email}: {error}")
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
            status=task.status,
            section_numbers=[section_numbers[section_id] for section_id in task.section_ids],
            comments=comment_counts.get(task.id or 0, 0),
            decision=task.decision,
            invited_at=task.invited_at,
            completed_at=task.completed_at,
            undeliverable=refused.get(task.id or 0, []),
        )
        for task, organisation in rows
    ]
    statuses = Counter(str(task.status) for task in tasks)
    counts = RoundCounts(
        organisations=len(tasks),
        pending=statuses[TaskStatus.pending],
        invited=statuses[TaskStatus.invited],
        signed_off=statuses[TaskStatus.signed_off],
        no_response=statuses[TaskStatus.no_response],
        comments=sum(comment_counts.values()),
    )
    return RoundRead.model_validate(
        {**round_.model_dump(), "counts": counts, "tasks": tasks}, from_attributes=True
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
async def launch(session: AsyncSession, *, round_id: int, actor: Actor) -> bool:
    """Mark a draft round open. True if this call launched it, False if it already was open."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status == RoundStatus.open:
        await session.rollback()
        return False
    if round_.status == RoundStatus.closed:
        raise Conflict(f"round {round_id} is closed; open a new round on a revised draft instead")
    now = utcnow()
    if round_.deadline <= now:
        raise Conflict("the round's deadline has already passed; set a new deadline before launching")
    tasks = (await session.exec(select(func.count()).where(ReviewTask.round_id == round_id))).one()
    round_.status = RoundStatus.open
    round_.launched_at = now
    session.add(round_)
    await audit.append(
        session,
        actor=actor,
        action="round.launched",
        round_id=round_id,
        data={"deadline": round_.deadline.isoformat(), "organisations": tasks},
    )
    await session.commit()
    return True


@transactional
async def open_round(session: AsyncSession, *, round_id: int) -> int:
    """Issue the review links of every task that has none yet. Idempotent; returns how many were issued."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        await session.rollback()
        return 0
    rows = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .outerjoin(AccessLink, col(AccessLink.task_id) == ReviewTask.id)
            .where(ReviewTask.round_id == round_id, col(AccessLink.id).is_(None))
        )
    ).all()
    # Rows rather than ORM objects: a round of 5,000 organisations issues 10,000 links here, before its
    # first invitation can go out, and building that many SQLModel instances took most of the time.
    now = utcnow()
    issued: list[dict[str, object]] = []
    events: list[NewEvent] = []
    for task, organisation in rows:
        contacts = [(ContactRole.focal_point, organisation.focal_point_email, organisation.focal_point_name)]
        if organisation.alternate_email:
            contacts.append(
                (ContactRole.alternate, organisation.alternate_email, organisation.alternate_name)
            )
        task_links = [
            links.new_link_row(
                task_id=task.id or 0, round_id=round_id, role=role, email=email, name=name, created_at=now
            )
            for role, email, name in contacts
        ]
        issued.extend(task_links)
        events.append(
            NewEvent(
                action="task.links_issued",
                actor=SYSTEM_ACTOR,
                round_id=round_id,
                task_id=task.id,
                data={
                    "organisation": organisation.key,
                    "links": [
                        {"link_id": link["id"], "role": str(link["role"]), "email": link["email"]}
                        for link in task_links
                    ],
                },
            )
        )
    if issued:
        await session.exec(insert(AccessLink), params=issued)
    await audit.append_many(session, events=events)
    await session.commit()
    return len(issued)


async def plan_round(session: AsyncSession, *, round_id: int, now: datetime) -> RoundPlan:
    round_ = await get_round_row(session, round_id=round_id)
    # Claims are leases on the wall clock, whatever clock the scheduler decides deadlines by.
    wall_clock = utcnow()
    invitations_due = (
        await session.exec(
            select(func.count()).where(AccessLink.round_id == round_id, *links.invitation_due(wall_clock))
        )
    ).one()
    claims_lapse_at = (
        await session.exec(
            select(func.min(AccessLink.invitation_claimed_until)).where(
                AccessLink.round_id == round_id,
                col(AccessLink.invited_at).is_(None),
                col(AccessLink.invitation_error).is_(None),
                col(AccessLink.invitation_claimed_until) >= wall_clock,
            )
        )
    ).one()
    open_tasks = await unsettled_task_count(session, round_id=round_id)
    reason = None
    if round_.status == RoundStatus.open:
        if open_tasks == 0:
            reason = CloseReason.all_signed_off
        elif now >= round_.deadline:
            reason = CloseReason.deadline
    return RoundPlan(
        status=round_.status,
        deadline=round_.deadline,
        invitations_due=invitations_due,
        claims_lapse_at=claims_lapse_at,
        close_reason=reason,
    )


def _unsettled_tasks(round_id: int | BindParameter[int]) -> ColumnElement[bool]:
    return and_(col(ReviewTask.round_id) == round_id, col(ReviewTask.status).in_(UNSETTLED_STATUSES))


async def unsettled_task_count(session: AsyncSession, *, round_id: int) -> int:
    """Tasks of the round still waiting for a sign-off."""
    return (await session.exec(select(func.count()).where(_unsettled_tasks(round_id)))).one()


async def any_unsettled_task(
    session: AsyncSession, *, round_id: int, excluding_task_id: int | None = None
) -> bool:
    """Whether a task of the round (other than the one excluded) still waits for a sign-off. Asked on
    every sign-off while the write lock is held, so it stops at the first one instead of counting, and
    its statement is built once."""
    params = {"round_id": round_id, "excluded": excluding_task_id or 0}
    return (await session.exec(_ANY_UNSETTLED_TASK, params=params)).first() is not None


_ANY_UNSETTLED_TASK = (
    select(ReviewTask.id)
    .where(
        _unsettled_tasks(bindparam("round_id")),
        col(ReviewTask.id) != bindparam("excluded"),  # ids start at 1: 0 excludes none
    )
    .limit(1)
)


@transactional
async def close_round(session: AsyncSession, *, round_id: int, now: datetime) -> bool:
    """Close the round if every task is done or the deadline has passed (as of `now`, the scheduler's
    clock). Tasks without a sign-off become no_response. True if this call closed it."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        await session.rollback()
        return False
    unfinished = (
        await session.exec(
            select(ReviewTask, Organisation.key)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(
                ReviewTask.round_id == round_id,
                col(ReviewTask.status).not_in([str(s) for s in FINAL_STATUSES]),
            )
        )
    ).all()
    if unfinished and now < round_.deadline:
        await session.rollback()
        return False
    reason = CloseReason.deadline if unfinished else CloseReason.all_signed_off
    closed_at = now
    await session.exec(
        update(ReviewTask)
        .where(
            col(ReviewTask.round_id) == round_id,
            col(ReviewTask.status).not_in([str(s) for s in FINAL_STATUSES]),
        )
        .values(status=TaskStatus.no_response, completed_at=closed_at)
    )
    round_.status = RoundStatus.closed
    round_.closed_at = closed_at
    round_.close_reason = reason
    session.add(round_)
    statuses = Counter(
        str(status)
        for status in (await session.exec(select(ReviewTask.status).where(ReviewTask.round_id == round_id)))
    )
    events = [
        NewEvent(
            action="task.no_response",
            actor=SYSTEM_ACTOR,
            round_id=round_id,
            task_id=task.id,
            data={"organisation": key, "status_before": str(task.status)},
        )
        for task, key in unfinished
    ]
    events.append(
        NewEvent(
            action="round.closed",
            actor=SYSTEM_ACTOR,
            round_id=round_id,
            data={
                "reason": str(reason),
                "closed_at": closed_at.isoformat(),
                "tasks": dict(sorted(statuses.items())),
            },
        )
    )
    await audit.append_many(session, events=events)
    await session.commit()
    return True


async def closure_summary(session: AsyncSession, *, round_id: int) -> RoundClosure:
    """What the coordinator is told when a round has closed."""
    round_ = await get_round_row(session, round_id=round_id)
    if round_.status != RoundStatus.closed or round_.closed_at is None or round_.close_reason is None:
        raise Conflict(f"round {round_id} is not closed")
    detail = await get_round(session, round_id=round_id)
    coordinator = await session.get(User, round_.created_by_id) if round_.created_by_id else None
    decisions = Counter(str(task.decision) for task in detail.tasks if task.decision is not None)
    return RoundClosure(
        round_id=round_id,
        title=round_.title,
        closed_at=round_.closed_at,
        reason=round_.close_reason,
        counts={
            "organisations": detail.counts.organisations,
            "signed_off": detail.counts.signed_off,
            "no_response": detail.counts.no_response,
            "comments": detail.counts.comments,
        },
        decisions=dict(decisions),
        no_response=[
            task.organisation_name for task in detail.tasks if task.status == TaskStatus.no_response
        ],
        objections=[task.organisation_name for task in detail.tasks if task.decision == "object"],
        coordinator_email=coordinator.email if coordinator else None,
    )


async def list_sign_offs(session: AsyncSession, *, round_id: int) -> list[SignOffRead]:
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            select(SignOff, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == SignOff.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(SignOff.round_id == round_id)
            .order_by(col(SignOff.signed_at))
        )
    ).all()
    return [SignOffRead.of(sign_off, organisation) for sign_off, organisation in rows]


async def open_round_ids(session: AsyncSession) -> list[int]:
    """Rounds that should have a running scheduler (used to repair a launch interrupted midway)."""
    return [
        round_id
        for round_id in (await session.exec(select(Round.id).where(Round.status == RoundStatus.open)))
        if round_id is not None
    ]


async def list_comments(session: AsyncSession, *, round_id: int) -> list[CommentRead]:
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            select(Comment, Section.number, Organisation.key)
            .join(Section, col(Section.id) == Comment.section_id)
            .join(ReviewTask, col(ReviewTask.id) == Comment.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(Comment.round_id == round_id)
            .order_by(col(Section.position), col(Comment.paragraph), col(Comment.created_at))
        )
    ).all()
    return [
        CommentRead.model_validate(
            {**comment.model_dump(), "section_number": number, "organisation_key": key}
        )
        for comment, number, key in rows
    ]
