"""Faults found by probing a running service, replayed on real parts: a Temporal server that is stopped
while people keep working, and a worker killed in the middle of sending a round's invitations."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import select
from temporalio.client import Client

from models.enums import Role, RoundStatus
from models.reviews import AccessLink
from models.rounds import Round
from notifications.mailbox import DevMailbox, serve_smtp
from services import review_page
from services.cli.processes import (
    Child,
    roundtable_command,
    spawn,
    temporal_dev_server_command,
    wait_for_temporal,
)
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import (
    TEST_ACTOR,
    WorkerHandle,
    create_account,
    csrf_of,
    eventually,
    free_port,
    seed_round,
    user_id_of,
)
from tests.notifications.support import RecordingSink
from workflows.client import Scheduler, ensure_reconciler, launch_round, reconciler_schedule_id

# Timing and crash bounds: run alone, after the parallel suite (see the Makefile).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

TWO = ["ministry-of-interior", "municipality-tirane"]  # four contacts
COORDINATOR = "coordinator@secretariat.example"
RECONCILE_EVERY = 10
"""Seconds: shorter than in production (60), so the test waits less; the promise is one period."""


class TemporalServer:
    """Temporal's dev server in a process of its own, with SQLite persistence: stopped and started again
    on the same port and file, it comes back with every workflow and schedule."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.child: Child | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        command = temporal_dev_server_command(
            db_file=self.directory / "temporal.db", port=self.port, log_level="error"
        )
        self.child = spawn("temporal", command, log_dir=self.directory)
        await wait_for_temporal(self.address, child=self.child)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


@pytest.fixture
async def temporal_server(tmp_path: Path) -> AsyncIterator[TemporalServer]:
    server = TemporalServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Parts:
    settings: Settings
    db: Database
    client: Client
    http: httpx.AsyncClient
    mailbox: DevMailbox
    coordinator: dict[str, str]


@pytest.fixture
async def parts(
    stack_settings: Settings, db: Database, mailbox: DevMailbox, temporal_server: TemporalServer
) -> AsyncIterator[Parts]:
    """The web app, a worker with the reconciler's schedule, and a Temporal server the test can stop."""
    settings = stack_settings.model_copy(
        update={"temporal_address": temporal_server.address, "reconcile_every_seconds": RECONCILE_EVERY}
    )
    client = await Client.connect(temporal_server.address)
    coordinator = await create_account(db, COORDINATOR, Role.coordinator)
    app = create_app(settings, db=db, scheduler=Scheduler(settings))
    async with (
        WorkerHandle(client, db, settings),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http,
    ):
        await ensure_reconciler(client, settings)
        yield Parts(settings, db, client, http, mailbox, coordinator)


async def round_status(db: Database, round_id: int) -> RoundStatus:
    async with db.session() as session:
        return (await session.exec(select(Round.status).where(Round.id == round_id))).one()


def review_paths(mailbox: DevMailbox) -> dict[str, list[str]]:
    """Every review link the mailbox received, by recipient."""
    paths: dict[str, list[str]] = {}
    for entry in mailbox.list(limit=100_000):
        message = mailbox.get(entry.key)
        for url in message.links:
            if "/t/" in url:
                paths.setdefault(parseaddr(message.to)[1], []).append("/t/" + url.rsplit("/t/", 1)[1])
    return paths


async def sign_off_through_the_page(http: httpx.AsyncClient, path: str) -> None:
    page = await http.get(path)
    assert page.status_code == 200
    submission = page.text.split('name="submission_id" value="')[-1].split('"', 1)[0]
    response = await http.post(
        f"{path}/sign-off",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": submission,
            "decision": "approve",
            "statement": "",
            "signer_name": "Elira Marku",
            "signer_title": "Director General",
            "authorised": "yes",
        },
    )
    assert response.status_code == 303, response.text


async def test_the_last_sign_off_while_temporal_is_stopped_closes_the_round_soon_after_its_return(
    parts: Parts, temporal_server: TemporalServer
) -> None:
    coordinator = await user_id_of(parts.db, COORDINATOR)
    round_id = await seed_round(
        parts.db, deadline=datetime.now(UTC) + timedelta(days=14), keys=TWO, created_by=coordinator
    )
    launched = await parts.http.post(f"/api/v1/rounds/{round_id}/launch", headers=parts.coordinator)
    assert launched.status_code == 202
    await eventually(lambda: _count(parts.mailbox), lambda count: count == 4, timeout=60)
    paths = review_paths(parts.mailbox)
    focal_points = [
        "migration.fp@ministry-of-interior.gov.example",
        "sporteli.migracionit@tirane.bashki.example",
    ]

    temporal_server.stop()
    for address in focal_points:  # the sign-offs are stored; the wake-up signal is lost
        await sign_off_through_the_page(parts.http, paths[address][0])
    await asyncio.sleep(2)
    assert await round_status(parts.db, round_id) == RoundStatus.open

    await temporal_server.start()
    returned = asyncio.get_running_loop().time()
    await eventually(
        lambda: round_status(parts.db, round_id), lambda status: status == RoundStatus.closed, timeout=60
    )
    waited = asyncio.get_running_loop().time() - returned
    assert waited < 60
    notices = await eventually(
        lambda: _to(parts.mailbox, "coordinator@secretariat.example"),
        lambda found: len(found) == 1,
        timeout=60,
    )
    assert "closed" in notices[0].lower()
    await _drop_schedule(parts)


async def test_a_launch_while_temporal_is_stopped_invites_everyone_once_it_is_back(
    parts: Parts, temporal_server: TemporalServer
) -> None:
    round_id = await seed_round(parts.db, deadline=datetime.now(UTC) + timedelta(days=14), keys=TWO)
    temporal_server.stop()

    launched = await parts.http.post(f"/api/v1/rounds/{round_id}/launch", headers=parts.coordinator)

    assert launched.status_code == 202, launched.text
    assert launched.json()["launched"] is True
    assert await round_status(parts.db, round_id) == RoundStatus.open
    await asyncio.sleep(1)
    assert parts.mailbox.count() == 0
    await temporal_server.start()
    await eventually(lambda: _count(parts.mailbox), lambda count: count >= 4, timeout=60)
    await asyncio.sleep(1)  # a second copy would show up here
    received = review_paths(parts.mailbox)
    assert len(received) == 4
    assert {len(paths) for paths in received.values()} == {1}
    await _drop_schedule(parts)


class SlowSink(RecordingSink):
    """A relay that takes its time over each message, so that a kill lands in the middle of a batch."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


async def test_a_worker_killed_mid_batch_repeats_at_most_what_was_in_flight_and_every_link_works(
    stack_settings: Settings, db: Database, temporal_server: TemporalServer, tmp_path: Path
) -> None:
    mail_dir = tmp_path / "slow-mail"
    mailbox = DevMailbox(mail_dir)
    async with await serve_smtp(SlowSink(mail_dir), "127.0.0.1", 0) as sink:
        settings = stack_settings.model_copy(
            update={
                "temporal_address": temporal_server.address,
                "smtp_port": sink.port,
                "outbox_lease_seconds": 5,
                "mail_batch_size": 400,
            }
        )
        round_id = await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=14))
        environment = worker_environment(settings)
        first = spawn(
            f"worker-{uuid.uuid4().hex[:6]}", roundtable_command("worker"), log_dir=tmp_path, env=environment
        )
        try:
            client = await Client.connect(temporal_server.address)
            await launch_round(db, Scheduler(settings, client=client), round_id=round_id, actor=TEST_ACTOR)
            await eventually(lambda: _count(mailbox), lambda count: count >= 40, timeout=60, every=0.01)
            first.kill()
            killed_at = mailbox.count()
        finally:
            first.stop()
        expected = await _contacts(db, round_id)
        assert killed_at < len(expected)  # the kill landed mid-round
        second = spawn("worker-again", roundtable_command("worker"), log_dir=tmp_path, env=environment)
        try:
            await eventually(
                lambda: _recipients_async(mailbox),
                lambda found: set(found) >= set(expected),
                timeout=120,
                every=0.2,
            )
            await asyncio.sleep(2)  # a late duplicate would show up here
        finally:
            second.stop()
        received = _recipients(mailbox)
        repeated = sum(count - 1 for count in received.values())
        assert set(received) == set(expected)  # nothing was lost
        # At most what the killed worker had on the wire or not yet recorded: its connections' worth, and
        # the messages accepted since its last record.
        assert repeated <= 2 * settings.smtp_connections, received
        for address, paths in review_paths(mailbox).items():
            for path in paths:  # every copy, the first one included, opens the organisation's page
                async with db.session() as session:
                    page = await review_page.review_page(session, token=path.removeprefix("/t/"))
                assert address in {page.context.link.email}
        with contextlib.suppress(Exception):
            await client.get_schedule_handle(reconciler_schedule_id(settings)).delete()


def worker_environment(settings: Settings) -> dict[str, str]:
    return {
        "ROUNDTABLE_ENVIRONMENT": "test",
        "ROUNDTABLE_DATABASE_URL": settings.database_url,
        "ROUNDTABLE_TEMPORAL_ADDRESS": settings.temporal_address,
        "ROUNDTABLE_TASK_QUEUE": settings.task_queue,
        "ROUNDTABLE_WORKFLOW_ID_PREFIX": settings.workflow_id_prefix,
        "ROUNDTABLE_SMTP_HOST": settings.smtp_host,
        "ROUNDTABLE_SMTP_PORT": str(settings.smtp_port),
        "ROUNDTABLE_SECRET_KEY": settings.secret_key,
        "ROUNDTABLE_PUBLIC_BASE_URL": settings.public_base_url,
        "ROUNDTABLE_OUTBOX_LEASE_SECONDS": str(settings.outbox_lease_seconds),
        "ROUNDTABLE_MAIL_BATCH_SIZE": str(settings.mail_batch_size),
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "PATH": os.environ["PATH"],
    }


async def _contacts(db: Database, round_id: int) -> set[str]:
    async with db.session() as session:
        return set(await session.exec(select(AccessLink.email).where(AccessLink.round_id == round_id)))


def _recipients(mailbox: DevMailbox) -> Counter[str]:
    return Counter(parseaddr(entry.to)[1] for entry in mailbox.list(limit=100_000))


async def _recipients_async(mailbox: DevMailbox) -> Counter[str]:
    return _recipients(mailbox)


async def _count(mailbox: DevMailbox) -> int:
    return mailbox.count()


async def _to(mailbox: DevMailbox, address: str) -> list[str]:
    return [entry.subject for entry in mailbox.for_recipient(address)]


async def _drop_schedule(parts: Parts) -> None:
    """The dev server of this test goes with it, but a schedule left on it would keep firing meanwhile."""
    with contextlib.suppress(Exception):
        await parts.client.get_schedule_handle(reconciler_schedule_id(parts.settings)).delete()
