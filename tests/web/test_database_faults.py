"""A database that cannot serve a request: 503 with Retry-After, quickly; never a 500, never a late commit.

Every fault is real: a port nobody listens on, a socket that never answers, backends killed with
pg_terminate_backend or stopped (SIGSTOP) mid-statement, rows locked by another connection, a full pool,
and on SQLite a write lock held by another process that knows nothing of ours. The timeouts are shortened
through the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlmodel import func, select

from models.audit import AuditEvent
from models.enums import Role
from models.organisations import Organisation
from models.reviews import Comment
from services.db import Database, Limits
from services.settings import Environment, Settings
from services.web.app import create_app
from tests.conftest import TEST_SECRET
from tests.harness import ServedApp, create_account, csrf_of, free_port
from tests.web.test_review_page import BROWSER_HEADERS, RecordingScheduler, build_round, comment_submission_of

# Timing bounds: run alone, after the parallel suite (see the Makefile).
pytestmark = pytest.mark.serial

API = "/api/v1"
LOCK_TIMEOUT = 1.0
SLACK = 2.0
"""What a loaded test machine may add to a timeout before the answer is back."""
ON_POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"])
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"])


def new_organisation(key: str) -> dict[str, str]:
    return {
        "key": key,
        "name_en": f"Agency {key}",
        "kind": "agency",
        "focal_point_email": f"fp@{key}.example",
    }


def assert_unavailable(response: httpx.Response, *, html: bool = False) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    if html:
        assert response.headers["content-type"].startswith("text/html")
        assert "Try again in a moment" in response.text
    else:
        assert response.json()["error"] == "unavailable", response.text
        assert response.json()["detail"]


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


def short(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "db_lock_timeout_seconds": LOCK_TIMEOUT,
            "db_connect_timeout_seconds": 1.0,
            "temporal_address": f"127.0.0.1:{free_port()}",
            **changes,
        }
    )


async def count(db: Database, model: Any, *conditions: Any) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(model).where(*conditions))).one())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


# --------------------------------------------------------------------------- a database out of reach


@pytest.mark.parametrize("fault", ["refused", "silent"])
async def test_a_database_out_of_reach_answers_503_quickly_on_every_front_door(
    fault: str, silent_port: int, tmp_path: Path
) -> None:
    port = free_port() if fault == "refused" else silent_port
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/nowhere",
        environment=Environment.test,
        secret_key=TEST_SECRET,
        public_base_url="http://testserver",
        data_dir=str(tmp_path / "data"),
        temporal_address=f"127.0.0.1:{free_port()}",
        db_connect_timeout_seconds=1.0,
        _env_file=None,  # type: ignore[call-arg]
    )
    db = Database.from_settings(settings)
    app = create_app(settings, db=db)
    token = {"Authorization": "Bearer rt_some-token-of-an-account"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=BROWSER_HEADERS
        ) as http:
            api_read, api_read_took = await timed(http.get(f"{API}/me", headers=token))
            api_write, api_write_took = await timed(
                http.post(f"{API}/organisations", json=new_organisation("agency-x"), headers=token)
            )
            review_page, review_took = await timed(http.get("/t/a-review-token-from-an-email"))
            http.cookies.set("rt_session", "a-console-session", path="/console")
            console, console_took = await timed(http.get("/console"))
            ready = await http.get("/readyz")
        for response in (api_read, api_write):
            assert_unavailable(response)
        for response in (review_page, console):
            assert_unavailable(response, html=True)
        assert max(api_read_took, api_write_took, review_took, console_took) < 1.0 + SLACK
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
    finally:
        await db.dispose()


# ------------------------------------------------------------------------------------- PostgreSQL


async def _admin(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url)


async def _app_backends(admin: asyncpg.Connection) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return [row["pid"] for row in rows]


@pytest.fixture
async def pg_app(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The app on PostgreSQL with a short lock timeout, and a coordinator's token on the client."""
    settings = short(settings)
    database = Database.from_settings(settings)
    coordinator = await create_account(database, "coordinator@secretariat.example", Role.coordinator)
    app = create_app(settings, db=database)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=coordinator
        ) as http:
            yield http, database
    finally:
        await database.dispose()


@ON_POSTGRESQL
async def test_backends_terminated_between_requests_are_replaced(
    pg_app: tuple[httpx.AsyncClient, Database], database_url: str
) -> None:
    http, _db = pg_app
    admin = await _admin(database_url)
    try:
        for attempt in range(3):
            # Several connections in the pool, each one then killed under it.
            answers = await asyncio.gather(*(http.get(f"{API}/organisations") for _ in range(6)))
            assert [answer.status_code for answer in answers] == [200] * 6
            backends = await _app_backends(admin)
            assert backends
            for pid in backends:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            write = await http.post(f"{API}/organisations", json=new_organisation(f"agency-{attempt}"))
            assert write.status_code == 201, write.text
            assert (await http.get(f"{API}/organisations/agency-{attempt}")).status_code == 200
    finally:
        await admin.close()


async def _wait_for_lock_waiter(admin: asyncpg.Connection) -> int:
    """The pid of the app's backend once it waits for a lock."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the lock")


@ON_POSTGRESQL
@pytest.mark.parametrize("limit", ["lock_timeout", "statement_timeout"])
async def test_a_chain_head_locked_elsewhere_answers_503_in_time_and_nothing_is_committed_later(
    limit: str, settings: Settings, database_url: str
) -> None:
    # Either limit ends the wait: the lock timeout, or the statement timeout when it is the shorter.
    changes = {"db_statement_timeout_seconds": LOCK_TIMEOUT, "db_lock_timeout_seconds": 30.0}
    settings = short(settings, **(changes if limit == "statement_timeout" else {}))
    database = Database.from_settings(settings)
    coordinator = await create_account(database, "coordinator@secretariat.example", Role.coordinator)
    app = create_app(settings, db=database)
    holder = await _admin(database_url)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=coordinator
        ) as http:
            events_before = await count(database, AuditEvent)
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT * FROM audit_chain_head FOR UPDATE")
            refused, took = await timed(
                http.post(f"{API}/organisations", json=new_organisation("agency-late"))
            )
            assert_unavailable(refused)
            assert LOCK_TIMEOUT * 0.8 < took < LOCK_TIMEOUT + SLACK
            await transaction.rollback()
            await asyncio.sleep(0.3)  # a late commit would land now
            assert await count(database, Organisation, Organisation.key == "agency-late") == 0
            assert await count(database, AuditEvent) == events_before
            again = await http.post(f"{API}/organisations", json=new_organisation("agency-late"))
            assert again.status_code == 201, again.text
    finally:
        await holder.close()
        await database.dispose()


@ON_POSTGRESQL
async def test_a_backend_terminated_mid_request_answers_503_and_commits_nothing(
    pg_app: tuple[httpx.AsyncClient, Database], database_url: str
) -> None:
    http, db = pg_app
    holder = await _admin(database_url)
    admin = await _admin(database_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT * FROM audit_chain_head FOR UPDATE")
        request = asyncio.create_task(http.post(f"{API}/organisations", json=new_organisation("agency-cut")))
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", await _wait_for_lock_waiter(admin))
        assert_unavailable(await request)
        await transaction.rollback()
        assert await count(db, Organisation, Organisation.key == "agency-cut") == 0
        assert (await http.get(f"{API}/organisations")).status_code == 200
    finally:
        await holder.close()
        await admin.close()


@ON_POSTGRESQL
async def test_a_review_task_locked_elsewhere_gives_the_focal_point_a_503_page_and_no_comment(
    settings: Settings, database_url: str
) -> None:
    settings = short(settings)
    database = Database.from_settings(settings)
    built = await build_round(database, settings)
    token = built.tokens["ministry-of-interior"][0]
    task_id = built.tasks["ministry-of-interior"]
    section_id = built.sections[0].id
    assert section_id is not None
    app = create_app(settings, db=database, scheduler=RecordingScheduler(settings))
    holder = await _admin(database_url)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=BROWSER_HEADERS
        ) as http:
            page = await http.get(f"/t/{token}")
            assert page.status_code == 200, page.text
            form = {
                "csrf_token": csrf_of(page),
                "submission_id": comment_submission_of(page, section_id),
                "section_id": str(section_id),
                "body": "Paragraph 4.2 should name the lead ministry.",
            }
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT * FROM review_tasks WHERE id = $1 FOR UPDATE", task_id)
            refused, took = await timed(http.post(f"/t/{token}/comments", data=form))
            assert_unavailable(refused, html=True)
            assert took < LOCK_TIMEOUT + SLACK
            await transaction.rollback()
            await asyncio.sleep(0.3)
            assert await count(database, Comment, Comment.task_id == task_id) == 0
            sent = await http.post(f"/t/{token}/comments", data=form)
            assert sent.status_code == 303, sent.text
            assert await count(database, Comment, Comment.task_id == task_id) == 1
    finally:
        await holder.close()
        await database.dispose()


def _stop(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except (PermissionError, ProcessLookupError):
            pytest.skip("the PostgreSQL server's processes are not this test's to signal")


def _resume(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@ON_POSTGRESQL
async def test_a_server_gone_silent_answers_503_within_the_statement_and_connect_timeouts(
    settings: Settings, database_url: str
) -> None:
    # A stopped backend neither answers nor closes its socket: neither the server's own timeouts nor
    # TCP end the wait, only the client's.
    settings = short(settings, db_statement_timeout_seconds=1.0, db_lock_timeout_seconds=30.0)
    # The client gives up after the statement timeout and the connect timeout, then SQLAlchemy gives the
    # lost connection two seconds to close politely before it cuts it.
    silent_after = 1.0 + 1.0 + 2.0
    database = Database.from_settings(settings)
    coordinator = await create_account(database, "coordinator@secretariat.example", Role.coordinator)
    app = create_app(settings, db=database)
    holder = await _admin(database_url)
    admin = await _admin(database_url)
    stopped: list[int] = []
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=coordinator
        ) as http:
            # In the middle of a statement: the write waits for a row, and its backend stops.
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT * FROM audit_chain_head FOR UPDATE")
            started = time.monotonic()
            request = asyncio.create_task(
                http.post(f"{API}/organisations", json=new_organisation("agency-s"))
            )
            stopped = [await _wait_for_lock_waiter(admin)]
            _stop(stopped)
            assert_unavailable(await request)
            assert time.monotonic() - started < silent_after + SLACK
            await transaction.rollback()
            _resume(stopped)

            # Between requests: the pooled connections' backends stop, and the check of the one taken
            # for the next request gets no answer.
            assert (await http.get(f"{API}/organisations")).status_code == 200
            stopped = [pid for pid in await _app_backends(admin) if pid != holder.get_server_pid()]
            _stop(stopped)
            refused, took = await timed(http.get(f"{API}/organisations"))
            assert_unavailable(refused)
            assert took < silent_after + SLACK
            _resume(stopped)
            await asyncio.sleep(0.5)
            assert (await http.get(f"{API}/organisations")).status_code == 200
            assert await count(database, Organisation, Organisation.key == "agency-s") == 0
    finally:
        _resume(stopped)
        await holder.close()
        await admin.close()
        await database.dispose()


# ----------------------------------------------------------------------------------- both backends


async def test_a_full_pool_answers_503_after_the_pool_timeout(settings: Settings) -> None:
    settings = short(settings, db_pool_timeout_seconds=0.5)
    database = Database(settings.database_url, pool_size=1, limits=Limits.from_settings(settings))
    coordinator = await create_account(database, "coordinator@secretariat.example", Role.coordinator)
    await create_account(database, "reader@secretariat.example", Role.coordinator)  # warms both pools
    app = create_app(settings, db=database)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=coordinator
        ) as http:
            # Every connection a write could use is taken (on SQLite the one writer, on PostgreSQL the
            # pool and its overflow).
            held = [await database.write_engine.connect() for _ in range(1 if database.is_sqlite else 2)]
            try:
                refused, took = await timed(
                    http.post(f"{API}/organisations", json=new_organisation("agency-p"))
                )
            finally:
                for connection in held:
                    await connection.close()
            assert_unavailable(refused)
            assert took < 0.5 + SLACK
            assert await count(database, Organisation, Organisation.key == "agency-p") == 0
            assert (
                await http.post(f"{API}/organisations", json=new_organisation("agency-p"))
            ).status_code == 201
    finally:
        await database.dispose()


# --------------------------------------------------------------------------- SQLite, another process

HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
connection.rollback()
print("released", flush=True)
"""


class LockHolder:
    """Another process holding SQLite's write lock (BEGIN IMMEDIATE) on the file, as the sqlite3 shell
    would: it takes no advisory lock of ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LockHolder:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            self.path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert (await asyncio.wait_for(self.process.stdout.readline(), 10)).strip() == b"held"
        return self

    async def release(self) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        assert (await asyncio.wait_for(self.process.stdout.readline(), 10)).strip() == b"released"
        await self.process.wait()
        self.process = None

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()


async def _poll(http: httpx.AsyncClient, path: str, latencies: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        response, took = await timed(http.get(path))
        assert response.status_code == 200, response.text
        latencies.append(took)
        await asyncio.sleep(0.02)


@ON_SQLITE
async def test_an_sqlite_write_lock_held_by_another_process_never_freezes_the_server(
    settings: Settings,
) -> None:
    settings = short(settings)
    database = Database.from_settings(settings)
    coordinator = await create_account(database, "coordinator@secretariat.example", Role.coordinator)
    app = create_app(settings, db=database)
    assert database.url.database is not None
    try:
        async with (
            ServedApp(app) as served,
            httpx.AsyncClient(base_url=served.url, headers=coordinator, timeout=30) as http,
        ):
            assert (await http.get(f"{API}/organisations")).status_code == 200
            async with LockHolder(database.url.database) as holder:
                stop = asyncio.Event()
                health: list[float] = []
                reads: list[float] = []
                pollers = [
                    asyncio.create_task(_poll(http, "/healthz", health, stop)),
                    asyncio.create_task(_poll(http, f"{API}/organisations", reads, stop)),
                ]
                refused, took = await timed(
                    http.post(f"{API}/organisations", json=new_organisation("agency-blocked"))
                )
                ready = await http.get("/readyz")
                stop.set()
                await asyncio.gather(*pollers)
                assert_unavailable(refused)
                assert LOCK_TIMEOUT * 0.8 < took < LOCK_TIMEOUT + SLACK
                assert ready.json()["checks"]["database"] == "ok"
                # Served all along: many answers while the write waited, none of them held up by it.
                assert len(health) >= 5, health
                assert len(reads) >= 5, reads
                assert max(health) < LOCK_TIMEOUT / 2, health
                assert max(reads) < LOCK_TIMEOUT / 2, reads
                await holder.release()
            assert await count(database, Organisation, Organisation.key == "agency-blocked") == 0
            again = await http.post(f"{API}/organisations", json=new_organisation("agency-blocked"))
            assert again.status_code == 201, again.text
    finally:
        await database.dispose()
