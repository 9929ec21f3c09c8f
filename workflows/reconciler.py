"""RoundtableReconciler: started by a Temporal schedule every minute, so nothing waits on a signal.

Whatever was down (Temporal when a round was launched, the worker when a sign-off settled a round, the
network when a wake-up was sent), the next run starts the scheduler of every round that needs one and
wakes those with something due now.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.names import RECONCILER_WORKFLOW
from workflows.payloads import ReconcileInput, ReconcileResult

with workflow.unsafe.imports_passed_through():
    from workflows.activities import RoundActivities


@workflow.defn(name=RECONCILER_WORKFLOW)
class ReconcilerWorkflow:
    @workflow.run
    async def run(self) -> ReconcileResult:
        return await workflow.execute_activity_method(
            RoundActivities.reconcile,
            ReconcileInput(as_of=workflow.now().isoformat()),
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=30),
            # The next run comes within a minute anyway: a failing one need not insist.
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3),
        )
