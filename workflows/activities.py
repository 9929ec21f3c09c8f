"""Thin, idempotent activities: each calls one service use case with the IDs of its own input type.

Bad input is final: a round that does not exist, or a request the use case refuses as invalid, is a
non-retryable error, so the scheduler stops at once instead of retrying forever. A part that is down (the
database, the mail server) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.types import utcnow
from notifications.sending import EmailSender
from services import outbox, scheduling
from services.db import Database
from services.errors import DomainError
from services.settings import Settings
from workflows.client import Scheduler
from workflows.payloads import (
    CloseRoundInput,
    DeliverMailInput,
    DeliveryResult,
    OpenRoundInput,
    OpenRoundResult,
    PlanRoundInput,
    ReconcileInput,
    ReconcileResult,
    RoundPlanResult,
)

HEARTBEAT_EVERY = 5.0  # seconds; the workflow's heartbeat timeout is several times this
Given = TypeVar("Given")
Result = TypeVar("Result")


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
            plan = await scheduling.plan_round(
                session, round_id=given.round_id, now=datetime.fromisoformat(given.as_of)
            )
        return RoundPlanResult(
            status=str(plan.status),
            deadline=plan.deadline.isoformat(),
            close_reason=str(plan.close_reason) if plan.close_reason else None,
            mail_due=plan.mail_due,
            next_mail_at=plan.next_mail_at.isoformat() if plan.next_mail_at else None,
            acts_now=plan.acts_now,
            finished=plan.finished,
        )

    @activity.defn(name="close_round")
    @final_on_bad_input
    async def close_round(self, given: CloseRoundInput) -> bool:
        async with self.db.write_session() as session:
            return await scheduling.close_round(
                session,
                round_id=given.round_id,
                now=datetime.fromisoformat(given.as_of),
                settings=self.settings,
            )

    @activity.defn(name="deliver_mail")
    @final_on_bad_input
    async def deliver_mail(self, given: DeliverMailInput) -> DeliveryResult:
        limit = self.settings.mail_batch_size
        async with heartbeating():
            outcome = await outbox.deliver_due(
                self.db, self.sender, self.settings, round_id=given.round_id, limit=limit
            )
        return DeliveryResult(
            sent=outcome.sent,
            refused=outcome.refused,
            retry_later=outcome.retry_later,
            more_due=outcome.more_may_be_due(limit),
        )

    @activity.defn(name="reconcile")
    @final_on_bad_input
    async def reconcile(self, _given: ReconcileInput) -> ReconcileResult:
        """Every round that needs a scheduler has one running, and any that has something due now is told
        to look: whatever a lost signal, a launch while Temporal was down or a crash left undone is done
        within one reconciler period. Then email of no round is delivered."""
        scheduler = Scheduler(self.settings, client=activity.client())
        woken = 0
        async with heartbeating():
            async with self.db.session() as session:
                round_ids = await scheduling.rounds_to_schedule(session)
            for round_id in round_ids:
                await scheduler.start_round(round_id)
                async with self.db.session() as session:
                    plan = await scheduling.plan_round(session, round_id=round_id, now=utcnow())
                if plan.acts_now:
                    await scheduler.wake(round_id)
                    woken += 1
            delivered = await outbox.deliver_due(
                self.db, self.sender, self.settings, round_id=None, limit=self.settings.mail_batch_size
            )
        return ReconcileResult(schedulers=len(round_ids), woken=woken, mail_sent=delivered.sent)

    def all(self) -> list[Callable[..., Any]]:
        return [self.open_round, self.plan_round, self.close_round, self.deliver_mail, self.reconcile]
