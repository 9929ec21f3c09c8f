"""The SQLite engines: statements run in process, and a session gives its connection back at once.

Under load, each time a request gave up the event loop while holding a pooled connection, requests that had
just arrived could take the connection ahead of those queued for it; some waited seconds (see
services/db.py and services/sqlite_driver.py). A read or a write on SQLite must therefore run to its end
without yielding, from opening the session to closing it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, text
from sqlmodel import select

from models.audit import Actor, AuditEvent
from models.enums import ActorKind
from services.audit import browse, trail, verify
from services.db import Database, Limits

ACTOR = Actor(kind=ActorKind.system, id="test-db")


def completes_without_yielding(coroutine: Coroutine[Any, Any, Any]) -> bool:
    """Step the coroutine once: True if it finished without waiting for the event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return True
    coroutine.close()
    return False


async def count_events(db: Database) -> int:
    async with db.session() as session:
        return (await session.exec(select(func.count()).select_from(AuditEvent))).one()


async def record_event(db: Database) -> None:
    async with db.write_session() as session:
        await trail.append(session, actor=ACTOR, action="test.recorded")
        await session.commit()


async def test_sqlite_reads_and_writes_run_to_their_end_without_yielding(
    sqlite_template: Path, tmp_path: Path
) -> None:
    target = tmp_path / "roundtable.db"
    shutil.copyfile(sqlite_template, target)
    db = Database(f"sqlite:///{target}")
    try:
        await count_events(db)  # connections opened and the statements compiled once, as in a server
        await record_event(db)

        assert completes_without_yielding(count_events(db))
        assert completes_without_yielding(record_event(db))
        assert db.engine.pool.checkedout() == 0
        assert db.write_engine.pool.checkedout() == 0
        assert await count_events(db) == 2
        async with db.session() as session:
            lines = [line async for line in browse.export_lines(session)]
        assert verify.verify_lines(lines).ok
    finally:
        await db.dispose()


async def test_sqlite_connections_never_wait_for_a_lock_on_the_loop_thread(
    sqlite_template: Path, tmp_path: Path
) -> None:
    # SQLite's busy handler sleeps where the statement runs: on the event loop. Waits happen in a thread
    # instead (services/sqlite_driver.py), so no connection may have a busy timeout of its own.
    target = tmp_path / "roundtable.db"
    shutil.copyfile(sqlite_template, target)
    db = Database(f"sqlite:///{target}")
    try:
        async with db.session() as session:
            assert (await session.exec(text("PRAGMA busy_timeout"))).one()[0] == 0
        async with db.write_session() as session:
            assert (await session.exec(text("PRAGMA busy_timeout"))).one()[0] == 0
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_sessions_run_under_the_configured_timeouts(database_url: str) -> None:
    db = Database(database_url, limits=Limits(statement_timeout=12, lock_timeout=2))
    try:
        async with db.session() as session:
            shown = (
                await session.exec(
                    text("SELECT current_setting('statement_timeout'), current_setting('lock_timeout')")
                )
            ).one()
        assert tuple(shown) == ("12s", "2s")
    finally:
        await db.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_replaces_pooled_connections_the_server_has_closed(database_url: str) -> None:
    db = Database(database_url)
    admin = await asyncpg.connect(database_url)
    try:
        await asyncio.gather(*(count_events(db) for _ in range(4)))
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert pids
        for row in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
        assert await asyncio.gather(*(count_events(db) for _ in range(4))) == [0] * 4
        await record_event(db)
        assert await count_events(db) == 1
    finally:
        await admin.close()
        await db.dispose()
