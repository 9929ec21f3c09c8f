"""The worker process: runs round schedulers and their activities."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from notifications.smtp import EmailSender, SmtpSender
from services.db import Database
from services.outreach import smtp_config
from services.settings import Settings
from workflows.activities import RoundActivities
from workflows.client import Scheduler, ensure_schedulers
from workflows.round_workflow import ConsultationRoundWorkflow

log = logging.getLogger(__name__)


def build_worker(client: Client, *, db: Database, sender: EmailSender, settings: Settings) -> Worker:
    activities = RoundActivities(db=db, sender=sender, settings=settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[ConsultationRoundWorkflow],
        activities=activities.all(),
        max_concurrent_activities=20,
        # Let a batch that is sending finish and record what it sent before the worker stops.
        graceful_shutdown_timeout=timedelta(seconds=30),
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect, repair any open round without a scheduler, and work until `stop` is set (or forever)."""
    db = Database(settings.database_url)
    sender = SmtpSender(smtp_config(settings))
    scheduler = Scheduler(settings)
    client = await scheduler.client()
    try:
        async with build_worker(client, db=db, sender=sender, settings=settings):
            started = await ensure_schedulers(db, scheduler)
            log.info("worker on task queue %s; %d open round(s) scheduled", settings.task_queue, started)
            await (stop or asyncio.Event()).wait()
    finally:
        await sender.close()
        await db.dispose()
