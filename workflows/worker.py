"""The worker process: runs the round schedulers, the reconciler and their activities."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from notifications.sending import EmailSender
from notifications.smtp import SmtpSender
from services.db import Database
from services.delivery import smtp_config
from services.settings import Settings
from workflows.activities import RoundActivities
from workflows.client import Scheduler, ensure_reconciler, replace_outdated_schedulers
from workflows.reconciler import ReconcilerWorkflow
from workflows.round_workflow import ConsultationRoundWorkflow

log = logging.getLogger(__name__)


def build_worker(client: Client, *, db: Database, sender: EmailSender, settings: Settings) -> Worker:
    activities = RoundActivities(db=db, sender=sender, settings=settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[ConsultationRoundWorkflow, ReconcilerWorkflow],
        activities=activities.all(),
        max_concurrent_activities=20,
        # Let a delivery that is sending finish and record what it sent before the worker stops.
        graceful_shutdown_timeout=timedelta(seconds=30),
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect, set up the reconciler, replace schedulers of older code, and work until `stop` is set."""
    db = Database.from_settings(settings)
    sender = SmtpSender(smtp_config(settings))
    client = await Scheduler(settings).client()
    try:
        async with build_worker(client, db=db, sender=sender, settings=settings):
            replaced = await replace_outdated_schedulers(client, settings)
            await ensure_reconciler(client, settings)
            log.info(
                "worker on task queue %s; %d scheduler(s) of older code replaced; reconciling every %d s",
                settings.task_queue,
                replaced,
                settings.reconcile_every_seconds,
            )
            await (stop or asyncio.Event()).wait()
    finally:
        await sender.close()
        await db.dispose()
