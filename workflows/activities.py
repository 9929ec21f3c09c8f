"""Thin, idempotent activities: each calls one service use case with the IDs it was given."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifications.smtp import EmailSender
from services import outreach, scheduling
from services.db import Database
from services.errors import NotFound
from services.settings import Settings
from workflows.payloads import RoundPlanResult, RoundRef, SendResult

HEARTBEAT_EVERY = 5.0  # seconds; the workflow's heartbeat timeout is several times this


def _as_of(ref: RoundRef) -> datetime:
    """The scheduler's clock, for decisions about time (so time-skipping tests and replays agree)."""
    if ref.as_of is None:
        raise ApplicationError("this activity needs the scheduler's time (as_of)", non_retryable=True)
    return datetime.fromisoformat(ref.as_of)


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
    async def open_round(self, ref: RoundRef) -> int:
        try:
            async with self.db.write_session() as session:
                return await scheduling.open_round(session, round_id=ref.round_id)
        except NotFound as exc:
            raise ApplicationError(str(exc), non_retryable=True) from exc

    @activity.defn(name="plan_round")
    async def plan_round(self, ref: RoundRef) -> RoundPlanResult:
        try:
            async with self.db.session() as session:
                plan = await scheduling.plan_round(session, round_id=ref.round_id, now=_as_of(ref))
        except NotFound as exc:
            raise ApplicationError(str(exc), non_retryable=True) from exc
        return RoundPlanResult(
            status=str(plan.status),
            deadline=plan.deadline.isoformat(),
            invitations_due=plan.invitations_due,
            claims_lapse_at=plan.claims_lapse_at.isoformat() if plan.claims_lapse_at else None,
            close_reason=str(plan.close_reason) if plan.close_reason else None,
        )

    @activity.defn(name="send_invitations")
    async def send_invitations(self, ref: RoundRef) -> SendResult:
        async with heartbeating():
            outcome = await outreach.send_due_invitations(
                self.db,
                self.sender,
                self.settings,
                round_id=ref.round_id,
                limit=self.settings.invitation_batch_size,
            )
        claimed = outcome.sent + outcome.refused + outcome.retry_later
        return SendResult(
            sent=outcome.sent,
            refused=outcome.refused,
            retry_later=outcome.retry_later,
            more_due=claimed >= self.settings.invitation_batch_size and not outcome.retry_later,
        )

    @activity.defn(name="close_round")
    async def close_round(self, ref: RoundRef) -> bool:
        async with self.db.write_session() as session:
            return await scheduling.close_round(session, round_id=ref.round_id, now=_as_of(ref))

    @activity.defn(name="notify_round_closed")
    async def notify_round_closed(self, ref: RoundRef) -> SendResult:
        async with heartbeating():
            outcome = await outreach.send_round_closed_notice(
                self.db, self.sender, self.settings, round_id=ref.round_id
            )
        if outcome.retry_later:
            raise ApplicationError("the mail server did not accept the message; retrying")
        return SendResult(sent=outcome.sent, refused=outcome.refused, retry_later=0)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.open_round,
            self.plan_round,
            self.send_invitations,
            self.close_round,
            self.notify_round_closed,
        ]
