"""Database engines and sessions (async end to end).

SQLite: WAL, full fsync, and every write transaction starts with BEGIN IMMEDIATE on a single pooled
connection, so writers in one process queue in the pool instead of spinning on SQLite's busy handler.
Writers in other processes (the web workers, the scheduler's worker) queue on an advisory lock file
next to the database before BEGIN IMMEDIATE (see services/sqlite_driver.py). Reads run on their own pool.
PostgreSQL: one pool; write use cases lock the rows they check (and the audit chain head).

Waiting on the database is bounded everywhere (see Limits): a request that cannot have its connection,
its lock or its answer in time fails with a DBAPIError (or the pool's TimeoutError), which the web layer
answers with 503, and the transaction is rolled back: a request that gave up commits nothing later.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from services import sqlite_driver
from services.settings import Settings, get_settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Limits:
    """How long one use of the database may wait, in seconds. None: no statement timeout."""

    connect_timeout: float = 5.0
    statement_timeout: float | None = 30.0
    lock_timeout: float = 5.0
    pool_timeout: float = 30.0
    sqlite_foreign_keys: bool = True
    """Off only for migrations, which rebuild tables others point at and check the keys before commit."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout=settings.db_statement_timeout_seconds,
            lock_timeout=settings.db_lock_timeout_seconds,
            pool_timeout=settings.db_pool_timeout_seconds,
        )


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
    url: URL, *, for_writes: bool, pool_size: int, limits: Limits, writer_lock: Path | None = None
) -> AsyncEngine:
    begin = sqlite_driver.BEGIN_WRITE if for_writes else "BEGIN"
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=limits.pool_timeout,
        async_creator=sqlite_driver.connector(
            url.database or ":memory:", lock_timeout=limits.lock_timeout, writer_lock=writer_lock
        ),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if limits.sqlite_foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _postgres_engine(url: URL, *, pool_size: int, limits: Limits) -> AsyncEngine:
    server_settings = {"lock_timeout": _milliseconds(limits.lock_timeout)}
    if limits.statement_timeout is not None:
        server_settings["statement_timeout"] = _milliseconds(limits.statement_timeout)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=limits.pool_timeout,
        # A connection the server has closed (a restart, pg_terminate_backend, an idle timeout) is
        # noticed and replaced when it is taken from the pool, instead of failing the request using it.
        pool_pre_ping=True,
        connect_args={
            "timeout": limits.connect_timeout,
            # The server cancels a slow statement itself; this is for a server or network gone silent,
            # which would otherwise hold the request until TCP gives up.
            "command_timeout": (
                limits.statement_timeout + limits.connect_timeout
                if limits.statement_timeout is not None
                else None
            ),
            "server_settings": server_settings,
        },
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # asyncpg raises the socket's own errors (refused, timed out, unreachable), which SQLAlchemy
        # passes on unwrapped; as the driver's error for "cannot connect" they are DBAPIErrors like any
        # other failure of the database, with the SQLSTATE a server would give them.
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as error:
            translated = dialect.loaded_dbapi.OperationalError(
                f"cannot connect to the database: {error!r}", error
            )
            translated.sqlstate = translated.pgcode = "08001"
            raise translated from error

    @event.listens_for(engine.sync_engine, "handle_error")
    def _silent(context: ExceptionContext) -> BaseException | None:
        # The command timeout (a TimeoutError) or a socket error in the middle of a statement: the
        # connection is in an unknown state, so it is discarded, and the error is a DBAPIError.
        original = context.original_exception
        if context.sqlalchemy_exception is not None or not isinstance(original, OSError):
            return None
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False
        return exc.OperationalError(
            context.statement, context.parameters, original, connection_invalidated=True
        )

    return engine


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

    def __init__(self, url: str, *, pool_size: int = 10, limits: Limits | None = None) -> None:
        """`limits` are the process's settings (ROUNDTABLE_DB_*_TIMEOUT_SECONDS) unless given."""
        self.url = async_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.limits = limits if limits is not None else Limits.from_settings(get_settings())
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(self.url, for_writes=False, pool_size=pool_size, limits=self.limits)
            self.write_engine = _sqlite_engine(
                self.url,
                for_writes=True,
                pool_size=1,
                limits=self.limits,
                writer_lock=Path(f"{database}.writer-lock") if database and database != ":memory:" else None,
            )
        else:
            self.engine = _postgres_engine(self.url, pool_size=pool_size, limits=self.limits)
            self.write_engine = self.engine
        self._read_sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int = 10) -> Database:
        return cls(settings.database_url, pool_size=pool_size, limits=Limits.from_settings(settings))

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
