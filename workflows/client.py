"""The gateway the web front, the CLI and the worker use to reach the round schedulers.

It starts and signals workflows by name, so the processes that use it need none of the workflow code.
Every call has a short timeout: when Temporal is down, a request gets its answer from the database (a
launch is recorded, a sign-off is stored) and the reconciler does the rest once Temporal is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from models.audit import Actor
from services import rounds
from services.db import Database
from services.errors import ServiceUnavailable
from services.settings import Settings
from workflows.names import RECONCILER_WORKFLOW, ROUND_WORKFLOW, SCHEDULER_VERSION, WAKE_SIGNAL
from workflows.payloads import RoundRef

log = logging.getLogger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)
CONNECT_TIMEOUT = 5.0


def round_workflow_id(settings: Settings, round_id: int) -> str:
    return f"{settings.workflow_id_prefix}round-{round_id}"


def reconciler_schedule_id(settings: Settings) -> str:
    return f"{settings.workflow_id_prefix}reconciler"


class Scheduler:
    """A lazily connected Temporal client. Connection failures become 503s, not 500s."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(
                            Client.connect(
                                self.settings.temporal_address, namespace=self.settings.temporal_namespace
                            ),
                            CONNECT_TIMEOUT,
                        )
                    except (RuntimeError, OSError, TimeoutError) as exc:
                        raise ServiceUnavailable(
                            f"the scheduler (Temporal at {self.settings.temporal_address}) is not reachable"
                        ) from exc
        return self._client

    async def start_round(self, round_id: int) -> WorkflowHandle[object, str]:
        """Start the round's scheduler, or find the one already running."""
        client = await self.client()
        try:
            return await client.start_workflow(
                ROUND_WORKFLOW,
                RoundRef(round_id),
                id=round_workflow_id(self.settings, round_id),
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                memo={"scheduler_version": SCHEDULER_VERSION},
                result_type=str,
                rpc_timeout=RPC_TIMEOUT,
            )
        except RPCError as exc:
            raise ServiceUnavailable(f"the scheduler refused to start round {round_id}: {exc}") from exc

    async def wake(self, round_id: int) -> None:
        """Best effort: the reconciler wakes a round with something due anyway, so a lost wake-up delays
        it by a reconciler period at most."""
        try:
            client = await self.client()
            await client.get_workflow_handle(round_workflow_id(self.settings, round_id)).signal(
                WAKE_SIGNAL, rpc_timeout=RPC_TIMEOUT
            )
        except (ServiceUnavailable, RPCError) as exc:
            log.warning("could not wake the scheduler of round %s: %s", round_id, exc)

    async def deliver_unrouted(self) -> None:
        """Have the reconciler run now, which delivers the email of no round (a password reset link):
        best effort, the next scheduled run delivers it anyway."""
        try:
            client = await self.client()
            await client.get_schedule_handle(reconciler_schedule_id(self.settings)).trigger(
                overlap=ScheduleOverlapPolicy.SKIP, rpc_timeout=RPC_TIMEOUT
            )
        except (ServiceUnavailable, RPCError) as exc:
            log.warning("could not run the reconciler now: %s", exc)

    async def ping(self) -> None:
        client = await self.client()
        try:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=3)
            )
        except RPCError as exc:
            raise ServiceUnavailable(f"the scheduler is not answering: {exc}") from exc


async def launch_round(db: Database, scheduler: Scheduler, *, round_id: int, actor: Actor) -> bool:
    """Open a draft round (its links and invitations are recorded with it) and start its scheduler.

    Safe to repeat: a second call starts nothing new. When Temporal cannot be reached the launch still
    stands, since it is in the database: the reconciler starts the scheduler once Temporal is back."""
    async with db.write_session() as session:
        launched = await rounds.launch(session, round_id=round_id, actor=actor, settings=scheduler.settings)
    try:
        await scheduler.start_round(round_id)
    except ServiceUnavailable as exc:
        log.warning(
            "round %s is launched; its scheduler will be started by the reconciler: %s", round_id, exc
        )
    return launched


# --------------------------------------------------------------------------- what the worker sets up


def _reconciler_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILER_WORKFLOW,
            id=f"{settings.workflow_id_prefix}reconcile",
            task_queue=settings.task_queue,
            run_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_every_seconds))]
        ),
        # One at a time; a run missed while Temporal was down is made up once, not once per minute missed.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=5)),
    )


async def ensure_reconciler(client: Client, settings: Settings, *, run_now: bool = True) -> None:
    """Create the reconciler's schedule, or bring an existing one up to these settings; with `run_now`,
    reconcile at once as well (a worker that starts catches up without waiting a period)."""
    schedule = _reconciler_schedule(settings)
    schedule_id = reconciler_schedule_id(settings)
    try:
        handle = await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        async def replace(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(replace)
    if run_now:
        await handle.trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def replace_outdated_schedulers(client: Client, settings: Settings) -> int:
    """Terminate the running schedulers that older code started (their history cannot replay on this
    code) and start them again; they keep no state, so nothing is lost. Found through Temporal's own list
    of running workflows, so that a round the database no longer thinks needs one (a round closed by old
    code while its notice was still being sent) is not left behind. Returns how many were replaced."""
    prefix = round_workflow_id(settings, 0).removesuffix("0")
    query = (
        f"WorkflowType = '{ROUND_WORKFLOW}' AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{settings.task_queue}'"
    )
    scheduler = Scheduler(settings, client=client)
    replaced = 0
    async for execution in client.list_workflows(query):
        number = execution.id.removeprefix(prefix)
        if not execution.id.startswith(prefix) or not number.isdigit():
            continue
        if (await execution.memo()).get("scheduler_version") == SCHEDULER_VERSION:
            continue
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(RPCError):  # it may have ended meanwhile
            await handle.terminate(reason=f"replaced by a scheduler of version {SCHEDULER_VERSION}")
        await scheduler.start_round(int(number))
        replaced += 1
    return replaced
