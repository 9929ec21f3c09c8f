"""The round scheduler's steps over the database: repair a launch, plan what is due, close the round.

The round's Temporal workflow calls these through thin activities; it keeps no state of its own, so
each step reads what it needs afresh.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR, Actor
from models.enums import CloseReason, Language, MessageKind, RoundStatus, SilenceMeaning, TaskStatus
from models.organisations import Organisation
from models.rounds import ReviewTask, Round
from services import escalations, invitations, outbox, reminders, reports
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.errors import Conflict
from services.formatting import when_text
from services.invitations import Issued
from services.outbox import Mail
from services.reports import RoundClosure
from services.rounds import get_round_row
from services.settings import Settings

FINAL_STATUSES = (
    TaskStatus.signed_off,
    TaskStatus.no_response,
    TaskStatus.deemed_content,
    TaskStatus.cancelled,
    TaskStatus.withdrawn,
)


# Named rather than "not final" so the (round_id, status) index answers the question directly.
OPEN_TASK_STATUSES = tuple(status for status in TaskStatus if status not in FINAL_STATUSES)
"""A task in one of these still owes a sign-off: it can be reminded, extended, withdrawn, asked about."""
UNSETTLED_STATUSES = tuple(str(status) for status in OPEN_TASK_STATUSES)


@dataclass(frozen=True)
class RoundPlan:
    """What is due in a round, as the scheduler needs it."""

    status: RoundStatus
    deadline: datetime
    close_reason: CloseReason | None
    mail_due: int
    """Emails of the round that may be delivered now."""
    next_mail_in: float | None
    """Seconds until the next email not yet due becomes due (a retry after a refusal, a lapsed lease)."""
    reminders_due: int = 0
    """Tasks with a reminder to decide now."""
    escalations_due: int = 0
    """Tasks past their deadline and grace period, to make overdue now."""
    next_event_at: datetime | None = None
    """The scheduler's next moment of its own: a reminder's time, a deadline and its grace period."""
    next_reminder_at: datetime | None = None
    """The next reminder's time alone: waking at it, the scheduler decides reminders before anything."""

    @property
    def acts_now(self) -> bool:
        """Whether the scheduler has something to do at once."""
        return (
            self.close_reason is not None
            or self.mail_due > 0
            or self.reminders_due > 0
            or self.escalations_due > 0
        )

    @property
    def finished(self) -> bool:
        """Closed, with nothing left to deliver: the scheduler's work is done."""
        return (
            self.status in (RoundStatus.closed, RoundStatus.cancelled)
            and not self.mail_due
            and self.next_mail_in is None
        )


@transactional
async def open_round(session: AsyncSession, *, round_id: int, settings: Settings) -> Issued:
    """Make sure a round has every email its decisions called for, which a round launched or closed by an
    older version may lack: an open round its links and invitations, a closed one the coordinator's notice.
    Idempotent: normally it finds nothing to add."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status == RoundStatus.open:
        issued = await invitations.issue(session, round_=round_, settings=settings)
    elif round_.status == RoundStatus.closed:
        await _tell_the_coordinator(session, round_id=round_id, settings=settings)
        issued = Issued(links=0, invitations=0)
    else:
        await session.rollback()
        return Issued(links=0, invitations=0)
    await session.commit()
    return issued


async def plan_round(session: AsyncSession, *, round_id: int, now: datetime) -> RoundPlan:
    """What is due in the round as of `now`, the scheduler's clock (deadlines are decided by it; the
    outbox's retries and leases by the wall clock)."""
    round_ = await get_round_row(session, round_id=round_id)
    mail = await outbox.plan(session, round_id=round_id)
    reason = None
    reminder_plan = reminders.ReminderPlan(due=0, next_at=None)
    escalation_plan = escalations.EscalationPlan(due=0, next_at=None)
    if round_.status == RoundStatus.open:
        if not await any_unsettled_task(session, round_id=round_id):
            reason = CloseReason.all_signed_off
        else:
            reminder_plan = await reminders.plan(session, round_=round_, now=now)
            escalation_plan = await escalations.plan(session, round_=round_, now=now)
    moments = [moment for moment in (reminder_plan.next_at, escalation_plan.next_at) if moment is not None]
    return RoundPlan(
        status=round_.status,
        deadline=round_.deadline,
        close_reason=reason,
        mail_due=mail.due,
        next_mail_in=mail.next_in,
        reminders_due=reminder_plan.due,
        escalations_due=escalation_plan.due,
        next_event_at=min(moments, default=None),
        next_reminder_at=reminder_plan.next_at,
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
async def close_round(
    session: AsyncSession,
    *,
    round_id: int,
    now: datetime,
    settings: Settings,
    actor: Actor = SYSTEM_ACTOR,
    note: str | None = None,
) -> bool:
    """Close the round: by itself once every task is settled, or by its coordinator (`note` says why) at
    any time. Tasks without a sign-off become no_response, or deemed_content where the round says
    silence means content; the coordinator who created the round is told (the notice is in the outbox
    with the close). True if this call closed it."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        if note is not None:
            raise Conflict(f"round {round_id} is {round_.status}: only an open round can be closed")
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
    if unfinished and note is None:
        await session.rollback()
        return False
    reason = CloseReason.coordinator if note is not None else CloseReason.all_signed_off
    silent = (
        TaskStatus.deemed_content
        if round_.silence_means == SilenceMeaning.content
        else TaskStatus.no_response
    )
    closed_at = now
    await session.exec(
        update(ReviewTask)
        .where(
            col(ReviewTask.round_id) == round_id,
            col(ReviewTask.status).not_in([str(s) for s in FINAL_STATUSES]),
        )
        .values(status=silent, completed_at=closed_at)
    )
    round_.status = RoundStatus.closed
    round_.closed_at = closed_at
    round_.close_reason = reason
    round_.close_note = note
    session.add(round_)
    statuses = Counter(
        str(status)
        for status in (await session.exec(select(ReviewTask.status).where(ReviewTask.round_id == round_id)))
    )
    events = [
        NewEvent(
            action=f"task.{silent}",
            actor=SYSTEM_ACTOR,
            round_id=round_id,
            task_id=task.id,
            data={
                "organisation": key,
                "status_before": str(task.status),
                "silence_means": str(round_.silence_means),
            },
        )
        for task, key in unfinished
    ]
    events.append(
        NewEvent(
            action="round.closed",
            actor=actor,
            round_id=round_id,
            data={
                "reason": str(reason),
                "note": note,
                "closed_at": closed_at.isoformat(),
                "deadline": round_.deadline.isoformat(),
                "tasks": dict(sorted(statuses.items())),
            },
        )
    )
    await trail.append_many(session, events=events)
    await _tell_the_coordinator(session, round_id=round_id, settings=settings)
    await session.commit()
    return True


async def _tell_the_coordinator(session: AsyncSession, *, round_id: int, settings: Settings) -> None:
    """The closing notice to the coordinator who created the round, in the caller's transaction (once: its
    key is the round's)."""
    summary = await reports.closure_summary(session, round_id=round_id)
    if summary.coordinator_email is not None:
        await outbox.enqueue(session, mails=[_closing_notice(summary, settings)])


def _closing_notice(summary: RoundClosure, settings: Settings) -> Mail:
    assert summary.coordinator_email is not None
    return Mail(
        key=f"round_closed:{summary.round_id}",
        kind=MessageKind.round_closed,
        to_email=summary.coordinator_email,
        language=Language.en,
        context={
            "round_title": summary.title,
            "closed_at_text": when_text(summary.closed_at, timezone=summary.timezone),
            "reason": str(summary.reason),
            "close_note": summary.close_note or "",
            "silence_means": summary.silence_means,
            "deemed_content": summary.deemed_content,
            "counts": summary.counts,
            "decisions": summary.decisions,
            "no_response": summary.no_response,
            "objections": summary.objections,
            "round_url": f"{settings.public_base_url}/console/rounds/{summary.round_id}",
        },
        round_id=summary.round_id,
    )


async def rounds_to_schedule(session: AsyncSession) -> list[int]:
    """Rounds that need a running scheduler: every open round, and any round with email still to send."""
    open_rounds = await open_round_ids(session)
    return sorted(set(open_rounds) | set(await outbox.rounds_with_mail_pending(session)))


async def open_round_ids(session: AsyncSession) -> list[int]:
    """Every open round."""
    return [
        round_id
        for round_id in (await session.exec(select(Round.id).where(Round.status == RoundStatus.open)))
        if round_id is not None
    ]
