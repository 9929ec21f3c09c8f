"""Database engines and sessions (async end to end).

SQLite: WAL, full fsync, and every write transaction starts with BEGIN IMMEDIATE on a single pooled
connection, so writers in one process queue in the pool instead of spinning on SQLite's busy handler.
Writers in other processes (the web workers, the scheduler's worker) queue on an advisory lock file
next to the database before BEGIN IMMEDIATE, for the same reason: SQLite's busy handler polls with
sleeps growing to 100 ms, so under load the process that just committed kept winning while the others
slept, and their requests waited for seconds. Reads run on their own pool.
PostgreSQL: one pool; write use cases lock the rows they check (and the audit chain head).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only
from sqlmodel.ext.asyncio.session import AsyncSession

from services import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 30_000
P = ParamSpec("P")
R = TypeVar("R")


def transactional(
    use_case: Callable[Concatenate[AsyncSession, P], Awaitable[R]],
) -> Callable[Concatenate[AsyncSession, P], Awaitable[R]]:
    """A write use case owns its transaction: it commits on success, and whatever it raises (a domain
    error, a lost connection) rolls back what it began, so the caller never holds a half-done
    transaction or, on SQLite, the write lock while it renders the error."""

    @functools.wraps(use_case)
    async def run(session: AsyncSession, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await use_case(session, *args, **kwargs)
        except BaseException:
            if session.in_transaction():
                await session.rollback()
            raise

    return run


def async_url(url: str) -> URL:
    """Accept plain sqlite:// and postgresql:// URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+asyncpg")
    return parsed


def is_sqlite(url: str | URL) -> bool:
    return make_url(str(url) if isinstance(url, URL) else url).get_backend_name() == "sqlite"


def _sqlite_engine(
    url: URL, *, for_writes: bool, pool_size: int, writer_lock: Path | None = None
) -> AsyncEngine:
    begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=120,
        async_creator=sqlite_driver.connector(url.database or ":memory:"),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if writer_lock is not None:
            _take_writer_lock(connection.connection.info, writer_lock)
        connection.exec_driver_sql(begin)

    if writer_lock is not None:
        # Released when the connection goes back to the pool, after its COMMIT or ROLLBACK.
        @event.listens_for(engine.sync_engine, "checkin")
        def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
            _release_writer_lock(record.info)

        @event.listens_for(engine.sync_engine, "close")
        def _on_close(_dbapi_connection: Any, record: Any) -> None:
            _release_writer_lock(record.info)
            descriptor = record.info.pop("writer_lock_fd", None)
            if descriptor is not None:
                os.close(descriptor)

    return engine


def _take_writer_lock(info: dict[str, Any], path: Path) -> None:
    """Wait (in a thread, the event loop runs on) for this process's turn to write."""
    if info.get("writer_locked"):
        return
    descriptor = info.get("writer_lock_fd")
    if descriptor is None:
        descriptor = info["writer_lock_fd"] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        await_only(asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX))
    info["writer_locked"] = True


def _release_writer_lock(info: dict[str, Any]) -> None:
    if info.pop("writer_locked", False):
        fcntl.flock(info["writer_lock_fd"], fcntl.LOCK_UN)


@asynccontextmanager
async def _closing(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """The session, closed (its connection back in the pool) by the task that used it.

    AsyncSession's own `async with` closes it in a new task and waits for that, so that a cancellation
    cannot cut the close short. Under load that cost the fairness of the pool: the connection came back
    a few loop turns later, requests that had just arrived took it, and the ones queued for it were put
    back at the end of the queue, again and again (seconds for some while others went straight through).
    Requests are not cancelled mid-way here (uvicorn lets them finish), and if one were, the pool
    discards a connection whose reset was interrupted."""
    try:
        yield session
    finally:
        await session.close()


class Database:
    """The engines of one process. Use `session()` to read and `write_session()` to change data."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(self.url, for_writes=False, pool_size=pool_size)
            self.write_engine = _sqlite_engine(
                self.url,
                for_writes=True,
                pool_size=1,
                writer_lock=Path(f"{database}.writer-lock") if database and database != ":memory:" else None,
            )
        else:
            self.engine = create_async_engine(self.url, pool_size=pool_size, max_overflow=pool_size)
            self.write_engine = self.engine
        self._read_sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with _closing(self._read_sessions()) as session:
            yield session

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        async with _closing(self._write_sessions()) as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
