"""Thin, idempotent activities: each calls one service use case with the IDs of its own input type.

Bad input is final: a round that does not exist, or a request the use case refuses as invalid, is a
non-retryable error, so the scheduler stops at once instead of retrying forever. A part that is down (the
database, the mail server) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifications.sending import EmailSender
from services import delivery, escalations, reminders, scheduling
from services.db import Database
from services.errors import DomainError, InvalidInput
from services.settings import Settings
from workflows.client import Scheduler
from workflows.payloads import (
    CloseRoundInput,
    DeliverMailInput,
    DeliveryResult,
    EscalateInput,
    OpenRoundInput,
    OpenRoundResult,
    PlanRoundInput,
    ReconcileInput,
    ReconcileResult,
    RemindersResult,
    RoundPlanResult,
    SendRemindersInput,
)

log = logging.getLogger(__name__)
HEARTBEAT_EVERY = 5.0  # seconds; the workflow's heartbeat timeout is several times this
Given = TypeVar("Given")
Result = TypeVar("Result")


def clock(as_of: str) -> datetime:
    """The scheduler's time as it sent it (ISO 8601 with an offset); anything else is final bad input."""
    try:
        moment = datetime.fromisoformat(as_of)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"as_of is not a time: {as_of!r}") from exc
    if moment.tzinfo is None:
        raise InvalidInput(f"as_of has no UTC offset: {as_of!r}")
    return moment


def final_on_bad_input(
    body: Callable[[Any, Given], Awaitable[Result]],
) -> Callable[[Any, Given], Awaitable[Result]]:
    """A domain error with a 4xx status (not found, invalid, conflict) will not go away by retrying."""

    @functools.wraps(body)
    async def run(self: Any, given: Given) -> Result:
        try:
            return await body(self, given)
        except DomainError as exc:
            if exc.status_code >= 500:
                raise
            raise ApplicationError(exc.detail, type=exc.error, non_retryable=True) from exc

    return run


@asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY) -> AsyncIterator[None]:
    """Tell Temporal the activity is alive while its body waits on slow SMTP or a busy database, so a
    slow attempt is not mistaken for a dead one and retried alongside itself."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    ticker = asyncio.create_task(beat())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def _plan_result(plan: scheduling.RoundPlan) -> RoundPlanResult:
    return RoundPlanResult(
        status=str(plan.status),
        deadline=plan.deadline.isoformat(),
        close_reason=str(plan.close_reason) if plan.close_reason else None,
        mail_due=plan.mail_due,
        next_mail_in=plan.next_mail_in,
        acts_now=plan.acts_now,
        finished=plan.finished,
        reminders_due=plan.reminders_due,
        escalations_due=plan.escalations_due,
        next_event_at=plan.next_event_at.isoformat() if plan.next_event_at else None,
        next_reminder_at=plan.next_reminder_at.isoformat() if plan.next_reminder_at else None,
    )


class RoundActivities:
    def __init__(self, *, db: Database, sender: EmailSender, settings: Settings) -> None:
        self.db = db
        self.sender = sender
        self.settings = settings

    @activity.defn(name="open_round")
    @final_on_bad_input
    async def open_round(self, given: OpenRoundInput) -> OpenRoundResult:
        async with self.db.write_session() as session:
            issued = await scheduling.open_round(session, round_id=given.round_id, settings=self.settings)
        return OpenRoundResult(links=issued.links, invitations=issued.invitations)

    @activity.defn(name="plan_round")
    @final_on_bad_input
    async def plan_round(self, given: PlanRoundInput) -> RoundPlanResult:
        async with self.db.session() as session:
            plan = await scheduling.plan_round(session, round_id=given.round_id, now=clock(given.as_of))
        return _plan_result(plan)

    @activity.defn(name="close_round")
    @final_on_bad_input
    async def close_round(self, given: CloseRoundInput) -> bool:
        async with self.db.write_session() as session:
            return await scheduling.close_round(
                session, round_id=given.round_id, now=clock(given.as_of), settings=self.settings
            )

    @activity.defn(name="send_reminders")
    @final_on_bad_input
    async def send_reminders(self, given: SendRemindersInput) -> RemindersResult:
        """The messages added (the round's to deliver), and the round's plan after the decision: at a
        moment many rounds share, most find theirs decided by another and only need to know what next."""
        now = clock(given.as_of)
        # The plan is read first, without the write lock: a round whose reminders another round's
        # scheduler already decided needs nothing more.
        async with self.db.session() as session:
            plan = await scheduling.plan_round(session, round_id=given.round_id, now=now)
        if not plan.reminders_due:
            return RemindersResult(added=0, plan=_plan_result(plan))
        async with self.db.write_session() as session:
            added = await reminders.send_reminders(
                session, round_id=given.round_id, now=now, settings=self.settings
            )
        async with self.db.session() as session:
            plan = await scheduling.plan_round(session, round_id=given.round_id, now=now)
        return RemindersResult(added=added, plan=_plan_result(plan))

    @activity.defn(name="escalate_overdue")
    @final_on_bad_input
    async def escalate_overdue(self, given: EscalateInput) -> int:
        async with self.db.write_session() as session:
            return await escalations.escalate_overdue(
                session, round_id=given.round_id, now=clock(given.as_of), settings=self.settings
            )

    @activity.defn(name="deliver_mail")
    @final_on_bad_input
    async def deliver_mail(self, given: DeliverMailInput) -> DeliveryResult:
        async with heartbeating():
            outcome, more_due = await delivery.deliver_while_due(
                self.db,
                self.sender,
                self.settings,
                round_id=given.round_id,
                limit=self.settings.mail_batch_size,
                for_seconds=self.settings.delivery_turn_seconds,
            )
        return DeliveryResult(
            sent=outcome.sent,
            refused=outcome.refused,
            retry_later=outcome.retry_later,
            cancelled=outcome.cancelled,
            more_due=more_due,
        )

    @activity.defn(name="reconcile")
    @final_on_bad_input
    async def reconcile(self, given: ReconcileInput) -> ReconcileResult:
        """Every round that needs a scheduler has one running, and any that has something due now is told
        to look: whatever a lost signal, a launch while Temporal was down or a crash left undone is done
        within one reconciler period. Then email of no round is delivered. A round that cannot be seen
        to is logged and left for the next period; it does not keep the others waiting."""
        scheduler = Scheduler(self.settings, client=activity.client())
        now = clock(given.as_of)
        woken = failed = 0
        async with heartbeating():
            async with self.db.session() as session:
                round_ids = await scheduling.rounds_to_schedule(session)
            for round_id in round_ids:
                try:
                    await scheduler.start_round(round_id)
                    async with self.db.session() as session:
                        plan = await scheduling.plan_round(session, round_id=round_id, now=now)
                    if plan.acts_now:
                        await scheduler.wake(round_id)
                        woken += 1
                except Exception:  # one round's trouble must not leave the others unreconciled
                    log.exception("could not reconcile round %s; trying again next period", round_id)
                    failed += 1
            delivered = await delivery.deliver_due(
                self.db, self.sender, self.settings, round_id=None, limit=self.settings.mail_batch_size
            )
        return ReconcileResult(
            schedulers=len(round_ids) - failed, woken=woken, failed=failed, mail_sent=delivered.sent
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.open_round,
            self.plan_round,
            self.close_round,
            self.send_reminders,
            self.escalate_overdue,
            self.deliver_mail,
            self.reconcile,
        ]
