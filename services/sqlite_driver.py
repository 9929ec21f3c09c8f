"""SQLite under the async engine without a thread per statement.

SQLAlchemy's aiosqlite driver sends every statement, fetch and cursor close to a thread of its own and
waits for the answer on the event loop. Our statements are indexed lookups and small inserts on a local
file: they take microseconds, the hop around them a hundred or more, and under load a dozen such threads
wrestled the event loop for the interpreter lock. Here they run where they are awaited, on the loop thread.

The COMMIT too, fsync included (a fraction of a millisecond on a local disk). In a thread it let
the loop serve others meanwhile, but a writer holds the database's one write lock until its commit has
returned to it, and under load the loop took milliseconds to come back: every writer in every process
waited that long for each one before it.

Nothing may block the loop thread, so nothing here waits inline for a lock. Connections have no busy
timeout: a statement that finds the database locked (another process's write transaction, which need
not be ours: the sqlite3 shell, a backup script) fails at once, and is tried again in a thread that may
wait, up to the lock timeout; then it fails for good with SQLITE_BUSY, which the web layer answers with
503. A statement that got SQLITE_BUSY has changed nothing, so trying it again is safe. Writers of our
own processes queue on an advisory lock file (see WriterLock) before BEGIN IMMEDIATE, and in WAL mode
readers never wait for writers.

The objects here are what SQLAlchemy's aiosqlite adapter expects of an aiosqlite connection and cursor
(it is given them through `async_creator`), with the same sqlite3 objects underneath;
tests/services/test_sqlite_driver.py fails when the adapter starts to expect anything else.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

BEGIN_WRITE = "BEGIN IMMEDIATE"
"""How services/db.py begins a write transaction; this driver takes the writer lock for it first."""

T = TypeVar("T")


def is_busy(error: BaseException) -> bool:
    """SQLITE_BUSY, any of its extended codes: another connection holds the lock this statement needs."""
    return (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY


class LockTimeout(sqlite3.OperationalError):
    """Waited the whole lock timeout for this process's turn to write. A sqlite3 error with SQLite's own
    code for it, so that SQLAlchemy wraps it and the web layer classifies it like SQLite's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.sqlite_errorcode = sqlite3.SQLITE_BUSY
        self.sqlite_errorname = "SQLITE_BUSY"


async def _off_loop(call: Callable[..., T], *args: Any) -> T:
    """`call` in a worker thread; if the caller is cancelled, still wait for the thread to return, since
    it uses the connection that the caller's clean-up (rollback, close) is about to use as well."""
    future = asyncio.get_running_loop().run_in_executor(None, call, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


class WriterLock:
    """This connection's turn to write among the processes that share the database file: an exclusive
    flock on a file next to it, held from BEGIN IMMEDIATE to COMMIT or ROLLBACK.

    SQLite's own busy handler polls with sleeps growing to 100 ms, so under load the process that had
    just committed kept winning while the others slept, and their requests waited for seconds; a flock
    queues them instead. A blocking flock cannot be given a timeout or be interrupted, so it waits in a
    thread (one per connection, started when first needed), and a writer that gives up leaves it waiting:
    when the thread gets the lock, it goes to the next writer on this connection if one is waiting by
    then, and is released at once if not (a lock nobody uses must not hold up the other processes). A
    later writer waits for the same wait rather than starting another. The thread is a daemon, so that
    a lock never released does not keep the process from exiting.

    Everything but the waiting thread runs on the event loop thread, which is what makes the hand-over
    safe without locks of its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held = False
        self._descriptor: int | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = False
        self._closed = False
        self._requests: queue.SimpleQueue[_LockRequest | None] | None = None

    def _open(self) -> int:
        if self._closed:
            raise sqlite3.OperationalError("no active connection")
        if self._descriptor is None:
            self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._descriptor

    async def acquire(self, timeout: float) -> None:
        if self.held:
            return
        if self._waiter is None:
            descriptor = self._open()
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._waiter = self._wait_in_thread(descriptor)
            else:
                self.held = True
                return
        waiter = self._waiter
        self._wanted = True
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if not self.held:  # it may have come in the same turn of the loop as the timeout
                raise LockTimeout(
                    f"waited {timeout:g} s for this process's turn to write to the database "
                    "(another process of ours is writing)"
                ) from None
        finally:
            self._wanted = False

    def _wait_in_thread(self, descriptor: int) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(self._settle)
        if self._requests is None:
            self._requests = queue.SimpleQueue()
            threading.Thread(
                target=_wait_for_locks, args=(self._requests,), name="roundtable-writer-lock", daemon=True
            ).start()
        self._requests.put((descriptor, waiter))
        return waiter

    def _settle(self, waiter: asyncio.Future[None]) -> None:
        self._waiter = None
        got_it = not waiter.cancelled() and waiter.exception() is None
        if got_it and self._wanted and not self._closed:
            self.held = True
            return
        if got_it and self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        if self._closed:
            self._close_descriptor()

    def release(self) -> None:
        if self.held:
            self.held = False
            if self._descriptor is not None:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        self._closed = True
        if self._requests is not None:
            self._requests.put(None)  # the thread ends after the wait it may be in
        # A descriptor a thread still waits on is closed when that wait ends (_settle): closed under the
        # thread, its number could be reused for another file, which the thread would then lock.
        if self._waiter is None:
            self._close_descriptor()

    def _close_descriptor(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)


_LockRequest = tuple[int, "asyncio.Future[None]"]


def _wait_for_locks(requests: queue.SimpleQueue[_LockRequest | None]) -> None:
    while (request := requests.get()) is not None:
        descriptor, waiter = request
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as exc:
            error: OSError | None = exc
        else:
            error = None
        try:
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter, error)
        except RuntimeError:  # the loop is gone: nobody will ever take this lock over
            if error is None:
                fcntl.flock(descriptor, fcntl.LOCK_UN)


def _resolve(waiter: asyncio.Future[None], error: OSError | None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)


class InlineCursor:
    __slots__ = ("_cursor", "_owner")
    _cursor: sqlite3.Cursor

    def __init__(self, owner: InlineConnection) -> None:
        self._owner = owner

    async def __aenter__(self) -> InlineCursor:
        # Here rather than in cursor(), as aiosqlite does: the adapter turns what this raises on a closed
        # connection into the error SQLAlchemy reads as a disconnect, and what cursor() raises it does not.
        self._cursor = self._owner._open().cursor()
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        if sql == BEGIN_WRITE:
            await self._owner.begin_write(self._cursor)
            return self
        try:
            self._cursor.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            await self._owner.wait_for_lock(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> InlineCursor:
        # Not tried again when busy: some of the rows may have been written by then. Writes run in
        # BEGIN IMMEDIATE transactions, which hold the write lock before their first statement.
        self._cursor.executemany(sql, seq_of_parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    def __aiter__(self) -> InlineCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row


class InlineConnection:
    """A sqlite3 connection without a busy timeout; `lock_timeout` is how long a statement may wait,
    off the loop thread, for a lock that another connection holds."""

    def __init__(
        self, connection: sqlite3.Connection, *, lock_timeout: float, writer_lock: WriterLock | None = None
    ) -> None:
        # The name is the adapter's: it checks `_connection` before a commit or a rollback.
        self._connection: sqlite3.Connection | None = connection
        self._lock_timeout = lock_timeout
        self._writer_lock = writer_lock

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            # The adapter turns exactly this into an OperationalError that SQLAlchemy sees as a disconnect.
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def begin_write(self, cursor: sqlite3.Cursor) -> None:
        """BEGIN IMMEDIATE after this process's turn to write, both within one lock timeout."""
        deadline = time.monotonic() + self._lock_timeout
        if self._writer_lock is not None:
            await self._writer_lock.acquire(self._lock_timeout)
        try:
            try:
                cursor.execute(BEGIN_WRITE)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or deadline <= time.monotonic():
                    raise
                await self.wait_for_lock(cursor.execute, BEGIN_WRITE, timeout=deadline - time.monotonic())
        except BaseException:
            self._release_writer_lock()
            raise

    async def wait_for_lock(self, call: Callable[..., Any], *args: Any, timeout: float | None = None) -> None:
        """Run a statement that found the database locked again, in a thread, letting SQLite wait up to
        the lock timeout for the lock."""
        connection = self._open()
        wait_ms = max(1, round(1000 * (self._lock_timeout if timeout is None else timeout)))
        connection.execute(f"PRAGMA busy_timeout={wait_ms}")
        try:
            await _off_loop(call, *args)
        finally:
            if self._connection is not None:
                self._connection.execute("PRAGMA busy_timeout=0")

    async def commit(self) -> None:
        connection = self._open()
        try:
            connection.commit()
        except sqlite3.OperationalError as exc:
            # A COMMIT that got SQLITE_BUSY leaves the transaction open and may be tried again.
            if not is_busy(exc):
                raise
            await self.wait_for_lock(connection.commit)
        self._release_writer_lock()

    async def rollback(self) -> None:
        self._open().rollback()
        self._release_writer_lock()

    def _release_writer_lock(self) -> None:
        if self._writer_lock is not None and not (self._connection and self._connection.in_transaction):
            self._writer_lock.release()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        connection, self._connection = self._connection, None
        if self._writer_lock is not None:
            self._writer_lock.close()
        if connection is not None:
            connection.close()


def connector(database: str, *, lock_timeout: float, writer_lock: Path | None = None) -> Any:
    """The `async_creator` for create_async_engine. Transactions are begun explicitly (BEGIN or
    BEGIN IMMEDIATE, see services/db.py), so the sqlite3 module must not begin any itself. With
    `writer_lock`, BEGIN IMMEDIATE first waits for that lock file (see WriterLock)."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            database,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
            uri=database.startswith("file:"),
        )
        return InlineConnection(
            connection,
            lock_timeout=lock_timeout,
            writer_lock=WriterLock(writer_lock) if writer_lock is not None else None,
        )

    return connect
