"""ConsultationRoundWorkflow: the scheduler of one round.

It keeps no copy of the round's state: each turn it asks the database what is due (plan_round), hands
due work to an activity (close the round, make overdue tasks overdue and escalate them, decide the
reminders due, deliver due email), or sleeps until the next reminder or deadline (plus grace), until
the next email is due, or until a `wake` signal. A lost signal delays nothing for long: the reconciler asks
the database the same question every minute and wakes a round that has something due. It ends once the
round is closed and its email delivered.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy

from workflows.names import PHASE_QUERY, ROUND_WORKFLOW, WAKE_SIGNAL
from workflows.payloads import (
    CloseRoundInput,
    DeliverMailInput,
    DeliveryResult,
    EscalateInput,
    OpenRoundInput,
    PlanRoundInput,
    RoundPlanResult,
    RoundRef,
    SendRemindersInput,
)

with workflow.unsafe.imports_passed_through():
    from workflows.activities import RoundActivities

QUICK = timedelta(seconds=60)
BATCH = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)  # the activities heartbeat every few seconds while they run
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
MIN_MAIL_WAIT = 1.0
"""Seconds, at least, before looking again at email that is not yet due."""
MAIL_FIRST = Priority(priority_key=1)
"""Delivery goes ahead of the other tasks queued for the worker (the default is 3): when a storm of
reminders or escalations wakes many rounds at once, the email already decided must not wait behind every
other round's planning."""
IDLE_PAUSE = timedelta(seconds=5)
"""After a delivery that found nothing to take although the plan said some was due (another attempt
took it first), wait this long rather than plan again at once."""


@workflow.defn(name=ROUND_WORKFLOW)
class ConsultationRoundWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._phase = "starting"

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self) -> None:
        """Something changed in the database (a sign-off, a new deadline): plan again now."""
        self._wake = True

    @workflow.query(name=PHASE_QUERY)
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, ref: RoundRef) -> str:
        round_id = ref.round_id
        self._phase = "opening"
        await workflow.execute_activity_method(
            RoundActivities.open_round,
            OpenRoundInput(round_id),
            start_to_close_timeout=BATCH,
            retry_policy=RETRY,
        )
        reminder_at: datetime | None = None
        fresh: RoundPlanResult | None = None
        while True:
            # Checked every turn, not only after a sleep: a scheduler that keeps finding work (a long
            # delivery, a storm of reminders) must continue as new before its history grows too long.
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(RoundRef(round_id))
            self._wake = False
            if reminder_at is not None and workflow.now() >= reminder_at:
                # Woken at a reminder's time: decide at once (the decision reads the database itself and
                # adds nothing if another round's scheduler decided first). When many rounds share the
                # moment, planning first would put every round's plan ahead of the first decision.
                reminder_at = None
                fresh = await self._send_reminders(round_id)
                continue
            plan = fresh if fresh is not None and not self._wake else await self._plan(round_id)
            fresh = None
            reminder_at = datetime.fromisoformat(plan.next_reminder_at) if plan.next_reminder_at else None
            if plan.status == "draft":
                self._phase = "not launched"
                return "not launched"
            if plan.finished:
                break
            if plan.close_reason is not None:
                self._phase = "closing"
                await workflow.execute_activity_method(
                    RoundActivities.close_round,
                    CloseRoundInput(round_id, as_of=workflow.now().isoformat()),
                    start_to_close_timeout=BATCH,
                    retry_policy=RETRY,
                )
                continue
            if plan.escalations_due:
                self._phase = "escalating"
                await workflow.execute_activity_method(
                    RoundActivities.escalate_overdue,
                    EscalateInput(round_id, as_of=workflow.now().isoformat()),
                    start_to_close_timeout=BATCH,
                    retry_policy=RETRY,
                )
                continue
            if plan.reminders_due:
                fresh = await self._send_reminders(round_id)
                continue
            if plan.mail_due:
                await self._deliver_all(round_id)
                continue
            self._phase = "waiting"
            await self._sleep_until(self._next_wake(plan))
        self._phase = "closed"
        return "closed"

    async def _plan(self, round_id: int) -> RoundPlanResult:
        return await workflow.execute_activity_method(
            RoundActivities.plan_round,
            PlanRoundInput(round_id, as_of=workflow.now().isoformat()),
            start_to_close_timeout=QUICK,
            retry_policy=RETRY,
        )

    async def _send_reminders(self, round_id: int) -> RoundPlanResult | None:
        """Decide the reminders due; the round's plan after it, or None once this round's digests are
        delivered (delivering changed what is due, so the next turn plans afresh)."""
        self._phase = "reminding"
        result = await workflow.execute_activity_method(
            RoundActivities.send_reminders,
            SendRemindersInput(round_id, as_of=workflow.now().isoformat()),
            start_to_close_timeout=BATCH,
            retry_policy=RETRY,
        )
        if result.added:
            await self._deliver_all(round_id)
            return None
        return result.plan

    async def _deliver_all(self, round_id: int) -> None:
        self._phase = "delivering"
        # A full batch means more is due: planning again between batches would only add a round trip per
        # batch. A wake-up still sends us back to planning.
        result = await self._deliver(round_id)
        while result.more_due and not self._wake:
            result = await self._deliver(round_id)
        if not (result.sent or result.refused or result.retry_later or result.cancelled):
            await self._sleep_until(workflow.now() + IDLE_PAUSE)

    async def _deliver(self, round_id: int) -> DeliveryResult:
        return await workflow.execute_activity_method(
            RoundActivities.deliver_mail,
            DeliverMailInput(round_id),
            start_to_close_timeout=BATCH,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RETRY,
            priority=MAIL_FIRST,
        )

    @staticmethod
    def _next_wake(plan: RoundPlanResult) -> datetime | None:
        candidates = []
        if plan.next_event_at is not None:
            candidates.append(datetime.fromisoformat(plan.next_event_at))
        if plan.next_mail_in is not None:
            # Relative, and never less than a moment: the outbox's times are the database host's clock,
            # which need not agree with the scheduler's.
            candidates.append(workflow.now() + timedelta(seconds=max(plan.next_mail_in, MIN_MAIL_WAIT)))
        return min(candidates) if candidates else None

    async def _sleep_until(self, moment: datetime | None) -> None:
        """Until `moment` (for ever with None) or a wake-up, whichever comes first."""
        if moment is None:
            await workflow.wait_condition(lambda: self._wake)
            return
        timeout = max((moment - workflow.now()).total_seconds(), 0.0)
        if timeout == 0:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._wake, timeout=timeout)
