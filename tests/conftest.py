"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, built by the real migrations."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client as TemporalClient
from temporalio.testing import WorkflowEnvironment

from models.enums import Role
from notifications.mailbox import DevMailbox, SinkServer, serve_smtp
from services.db import Database
from services.migrate import upgrade
from services.settings import Environment, Settings
from services.web.app import create_app
from tests.harness import WorkerHandle, create_account
from tests.notifications.support import RecordingSink
from workflows.client import Scheduler

POSTGRES_URL = os.environ.get("ROUNDTABLE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = uuid.uuid4().hex[:8]
BACKENDS = ["sqlite", "postgresql"]
TEST_SECRET = "test-secret-key-" + "x" * 40


def _pg_dsn(database: str) -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql", database=database).render_as_string(False)


async def _pg_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_pg_dsn(make_url(POSTGRES_URL).database or "postgres"), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


class PostgresDatabases:
    """Creates this run's databases on the server and drops every one of them at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.template: str | None = None

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(_pg_dsn(make_url(POSTGRES_URL).database or "postgres"))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def template_url(self) -> str:
        if self.template is None:
            name = f"roundtable_test_{RUN_ID}_template"
            await self._admin(f'CREATE DATABASE "{name}"')
            self.created.append(name)
            await upgrade(_pg_dsn(name))
            self.template = name
        return _pg_dsn(self.template)

    async def fresh(self) -> str:
        await self.template_url()
        name = f"roundtable_test_{RUN_ID}_{uuid.uuid4().hex[:10]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return _pg_dsn(name)

    async def drop_all(self) -> None:
        for name in reversed(self.created):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def postgres() -> AsyncIterator[PostgresDatabases | None]:
    problem = await _pg_reachable()
    if problem is not None:
        if os.environ.get("ROUNDTABLE_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required here but not reachable ({problem})")
        message = (
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem}): "
            "EVERY POSTGRESQL TEST IS SKIPPED. .ci/run starts a server; set ROUNDTABLE_TEST_POSTGRES_URL."
        )
        warnings.warn(message, stacklevel=1)
        print(f"\n{'!' * 100}\n{message}\n{'!' * 100}")
        yield None
        return
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        await databases.drop_all()


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    await upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, tmp_path: Path, sqlite_template: Path, postgres: PostgresDatabases | None
) -> str:
    """A migrated, empty database of its own for one test."""
    if backend == "sqlite":
        target = tmp_path / "roundtable.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    if postgres is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    return await postgres.fresh()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        environment=Environment.test,
        secret_key=TEST_SECRET,
        public_base_url="http://testserver",
        data_dir=str(tmp_path / "data"),
        _env_file=None,  # type: ignore[call-arg]
    )


FIXTURES = Path(__file__).with_name("fixtures")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Copies of the shared, realistic fixtures (test data, not part of the product)."""
    return FIXTURES


# --- the real parts: Temporal dev server, SMTP sink, worker, web app ---------------------------------

TEMPORAL_CLI = Path(sys.executable).with_name("temporal")
TEMPORAL_TEST_SERVER = Path(sys.executable).with_name("temporal-test-server")


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server for the whole run; tests isolate themselves by task queue."""
    # Two test processes start their servers at once on two cores: the SDK's 5 s can be too short.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        ui=False,
        dev_server_log_level="error",
        dev_server_startup_timeout=timedelta(seconds=60),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def mail_dir(settings: Settings) -> Path:
    """Where the dev mailbox viewer of the test's app looks."""
    return Path(settings.data_dir) / "mail"


@pytest.fixture
def sink_handler(mail_dir: Path) -> RecordingSink:
    """What the sink does with each message; a test can make it refuse chosen recipients."""
    return RecordingSink(mail_dir)


@pytest.fixture
async def sink(sink_handler: RecordingSink) -> AsyncIterator[SinkServer]:
    """A real SMTP server (aiosmtpd) filing every message it accepts in a Maildir."""
    async with await serve_smtp(sink_handler, "127.0.0.1", 0) as server:
        yield server


@pytest.fixture
def mailbox(mail_dir: Path, sink: SinkServer) -> DevMailbox:
    return DevMailbox(mail_dir)


@pytest.fixture
def stack_settings(settings: Settings, sink: SinkServer) -> Settings:
    # Every test's database numbers its rounds from 1, and all tests share one Temporal server.
    isolation = uuid.uuid4().hex[:12]
    return settings.model_copy(
        update={
            "smtp_host": sink.host,
            "smtp_port": sink.port,
            "task_queue": f"rt-{isolation}",
            "workflow_id_prefix": f"t{isolation}-",
        }
    )


@dataclass
class Stack:
    """Everything a round needs, for real, with the web app reachable through `http`."""

    settings: Settings
    db: Database
    client: TemporalClient
    scheduler: Scheduler
    http: httpx.AsyncClient
    mailbox: DevMailbox
    coordinator: dict[str, str]
    auditor: dict[str, str]
    worker: WorkerHandle


@pytest.fixture
async def stack(
    stack_settings: Settings, db: Database, temporal_env: WorkflowEnvironment, mailbox: DevMailbox
) -> AsyncIterator[Stack]:
    scheduler = Scheduler(stack_settings, client=temporal_env.client)
    app = create_app(stack_settings, db=db, scheduler=scheduler)
    coordinator = await create_account(db, "coordinator@secretariat.example", Role.coordinator)
    auditor = await create_account(db, "auditor@audit.example", Role.auditor)
    async with (
        WorkerHandle(temporal_env.client, db, stack_settings) as worker,
        # A browser that chose English on the pages (the fixture's organisations work in Albanian, and
        # the tests read the review pages' English words); tests/web/test_i18n.py reads them in Albanian.
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", cookies={"rt_lang": "en"}
        ) as http,
    ):
        yield Stack(
            settings=stack_settings,
            db=db,
            client=temporal_env.client,
            scheduler=scheduler,
            http=http,
            mailbox=mailbox,
            coordinator=coordinator,
            auditor=auditor,
            worker=worker,
        )
