"""ConsultationRoundWorkflow: the scheduler of one round.

It keeps no copy of task state: each turn it asks the database what is due (plan_round), hands due work
to a batch activity, or sleeps until the deadline, a retry time or a `wake` signal. A lost signal only
delays a close until the next wake-up; a changed deadline is read again on the next turn.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.payloads import RoundPlanResult, RoundRef, SendResult

with workflow.unsafe.imports_passed_through():
    from workflows.activities import RoundActivities

WORKFLOW_NAME = "ConsultationRoundWorkflow"
QUICK = timedelta(seconds=60)
BATCH = timedelta(minutes=10)  # shorter than the invitation claim lease (services.outreach)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)  # the activities heartbeat every few seconds while they run
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
SEND_BACKOFF_START = timedelta(seconds=15)
SEND_BACKOFF_MAX = timedelta(minutes=15)
# Schedulers started before batches followed each other without a plan_round between them replay the
# old command sequence.
SEND_WITHOUT_REPLANNING = "send-without-replanning"


@workflow.defn(name=WORKFLOW_NAME)
class ConsultationRoundWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._phase = "starting"
        self._send_backoff = SEND_BACKOFF_START
        self._send_retry_at: datetime | None = None

    @workflow.signal
    def wake(self) -> None:
        """Something changed in the database (a sign-off, a new deadline): plan again now."""
        self._wake = True

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, ref: RoundRef) -> str:
        round_id = ref.round_id
        self._phase = "opening"
        await workflow.execute_activity_method(
            RoundActivities.open_round, RoundRef(round_id), start_to_close_timeout=BATCH, retry_policy=RETRY
        )
        while True:
            self._wake = False
            plan = await self._plan(round_id)
            if plan.status == "draft":
                self._phase = "not launched"
                return "not launched"
            if plan.status == "closed":
                break
            if plan.close_reason is not None:
                self._phase = "closing"
                await workflow.execute_activity_method(
                    RoundActivities.close_round,
                    RoundRef(round_id, as_of=workflow.now().isoformat()),
                    start_to_close_timeout=BATCH,
                    retry_policy=RETRY,
                )
                continue
            if plan.invitations_due and self._may_send():
                self._phase = "inviting"
                more_due = await self._send_invitations(round_id)
                if workflow.patched(SEND_WITHOUT_REPLANNING):
                    # A full batch means more are due; planning again between batches would only add a
                    # round trip per batch. A wake-up or the deadline still sends us back to planning.
                    deadline = datetime.fromisoformat(plan.deadline)
                    while more_due and not self._wake and workflow.now() < deadline:
                        more_due = await self._send_invitations(round_id)
                continue
            self._phase = "waiting"
            await self._sleep_until(self._next_wake(plan))
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(RoundRef(round_id))
        self._phase = "notifying"
        await workflow.execute_activity_method(
            RoundActivities.notify_round_closed,
            RoundRef(round_id),
            start_to_close_timeout=timedelta(minutes=3),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RETRY,
        )
        self._phase = "closed"
        return "closed"

    async def _plan(self, round_id: int) -> RoundPlanResult:
        return await workflow.execute_activity_method(
            RoundActivities.plan_round,
            RoundRef(round_id, as_of=workflow.now().isoformat()),
            start_to_close_timeout=QUICK,
            retry_policy=RETRY,
        )

    def _may_send(self) -> bool:
        return self._send_retry_at is None or workflow.now() >= self._send_retry_at

    async def _send_invitations(self, round_id: int) -> bool:
        """One batch; True if more invitations are probably due right away."""
        result: SendResult = await workflow.execute_activity_method(
            RoundActivities.send_invitations,
            RoundRef(round_id),
            start_to_close_timeout=BATCH,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RETRY,
        )
        if result.retry_later and not result.sent:
            # The mail server is refusing for now: back off, but keep watching the deadline.
            self._send_retry_at = workflow.now() + self._send_backoff
            self._send_backoff = min(self._send_backoff * 2, SEND_BACKOFF_MAX)
        else:
            self._send_retry_at = None
            self._send_backoff = SEND_BACKOFF_START
        return result.more_due

    def _next_wake(self, plan: RoundPlanResult) -> datetime:
        candidates = [datetime.fromisoformat(plan.deadline)]
        if plan.invitations_due and self._send_retry_at is not None:
            candidates.append(self._send_retry_at)
        if plan.claims_lapse_at is not None:
            candidates.append(datetime.fromisoformat(plan.claims_lapse_at))
        return min(candidates)

    async def _sleep_until(self, moment: datetime) -> None:
        timeout = max((moment - workflow.now()).total_seconds(), 0.0)
        if timeout == 0:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._wake, timeout=timeout)
