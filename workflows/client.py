"""The gateway the web front (and the CLI) use to reach the round schedulers."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from models.audit import Actor
from services import rounds, scheduling
from services.db import Database
from services.errors import ServiceUnavailable
from services.settings import Settings
from workflows.payloads import RoundRef
from workflows.round_workflow import ConsultationRoundWorkflow

log = logging.getLogger(__name__)


def round_workflow_id(settings: Settings, round_id: int) -> str:
    return f"{settings.workflow_id_prefix}round-{round_id}"


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
                        self._client = await Client.connect(
                            self.settings.temporal_address, namespace=self.settings.temporal_namespace
                        )
                    except (RuntimeError, OSError) as exc:
                        raise ServiceUnavailable(
                            f"the scheduler (Temporal at {self.settings.temporal_address}) is not reachable"
                        ) from exc
        return self._client

    async def start_round(self, round_id: int) -> WorkflowHandle[ConsultationRoundWorkflow, str]:
        """Start the round's scheduler, or find the one already running."""
        client = await self.client()
        try:
            return await client.start_workflow(
                ConsultationRoundWorkflow.run,
                RoundRef(round_id),
                id=round_workflow_id(self.settings, round_id),
                task_queue=self.settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except RPCError as exc:
            raise ServiceUnavailable(f"the scheduler refused to start round {round_id}: {exc}") from exc

    async def wake(self, round_id: int) -> None:
        """Best effort: the scheduler re-plans from the database anyway, so a lost wake-up only delays."""
        try:
            client = await self.client()
            await client.get_workflow_handle(round_workflow_id(self.settings, round_id)).signal(
                ConsultationRoundWorkflow.wake
            )
        except (ServiceUnavailable, RPCError) as exc:
            log.warning("could not wake the scheduler of round %s: %s", round_id, exc)

    async def ping(self) -> None:
        client = await self.client()
        try:
            await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=3)
            )
        except RPCError as exc:
            raise ServiceUnavailable(f"the scheduler is not answering: {exc}") from exc


async def launch_round(db: Database, scheduler: Scheduler, *, round_id: int, actor: Actor) -> bool:
    """Open a draft round and start its scheduler. Safe to repeat: a second call starts nothing new, and
    repairs a launch whose scheduler start was interrupted."""
    async with db.write_session() as session:
        launched = await rounds.launch(session, round_id=round_id, actor=actor)
    await scheduler.start_round(round_id)
    return launched


async def ensure_schedulers(db: Database, scheduler: Scheduler) -> int:
    """Start (or find) the scheduler of every open round; run by the worker at start-up."""
    async with db.session() as session:
        round_ids = await scheduling.open_round_ids(session)
    for round_id in round_ids:
        await scheduler.start_round(round_id)
    return len(round_ids)
