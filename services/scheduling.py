"""The round scheduler's steps over the database: open a round, plan what is due, close it.

The round's Temporal workflow calls these through thin activities; it keeps no state of its own, so
each step reads what it needs afresh.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, insert, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.enums import CloseReason, ContactRole, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import AccessLink
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import links
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.rounds import get_round_row

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
    await trail.append_many(session, events=events)
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
    await trail.append_many(session, events=events)
    await session.commit()
    return True


async def open_round_ids(session: AsyncSession) -> list[int]:
    """Rounds that should have a running scheduler (used to repair a launch interrupted midway)."""
    return [
        round_id
        for round_id in (await session.exec(select(Round.id).where(Round.status == RoundStatus.open)))
        if round_id is not None
    ]
