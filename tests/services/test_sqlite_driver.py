"""The in-process SQLite driver (services/sqlite_driver.py): what it stands in for, and that it never
blocks the event loop, whoever holds a lock.

InlineConnection and InlineCursor replace aiosqlite's objects under SQLAlchemy's aiosqlite adapter, whose
use of them is SQLAlchemy's private business. The first tests read the adapter's source and fail, naming
what changed, as soon as it uses anything of the wrapped connection or cursor that is not in USED below
(or stops using something that is): then read the change, adapt the driver and USED, or go back to stock
aiosqlite.
"""

from __future__ import annotations

import ast
import asyncio
import fcntl
import inspect
import os
import shutil
import sqlite3
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from packaging.requirements import Requirement
from packaging.version import Version
from sqlalchemy import exc, func, text
from sqlalchemy.dialects.sqlite import aiosqlite as adapter
from sqlalchemy.engine.interfaces import BindTyping
from sqlmodel import select

from models.audit import Actor, AuditEvent
from models.enums import ActorKind
from services import sqlite_driver
from services.audit import trail
from services.db import Database, Limits
from services.sqlite_driver import InlineConnection, WriterLock
from tests.harness import eventually

REPO = Path(__file__).resolve().parents[2]
ACTOR = Actor(kind=ActorKind.system, id="test-sqlite-driver")
LOCK_TIMEOUT = 1.0

# ----------------------------------------------------------------- what the adapter expects of us

ADAPTED = {
    "connection": adapter.AsyncAdapt_aiosqlite_connection,
    "cursor": adapter.AsyncAdapt_aiosqlite_cursor,
    "server-side cursor": adapter.AsyncAdapt_aiosqlite_ss_cursor,
}
BASES = {
    "connection": [
        "AsyncAdapt_aiosqlite_connection",
        "AsyncAdapt_terminate",
        "AsyncAdapt_dbapi_connection",
        "AdaptedConnection",
    ],
    "cursor": ["AsyncAdapt_aiosqlite_cursor", "AsyncAdapt_dbapi_cursor"],
    "server-side cursor": [
        "AsyncAdapt_aiosqlite_ss_cursor",
        "AsyncAdapt_dbapi_ss_cursor",
        "AsyncAdapt_dbapi_cursor",
    ],
}
"""The adapter classes, with the SQLAlchemy classes they inherit from, in order."""

USED = {
    # (adapter method, wrapped object, its attribute, how: await | call | get | set)
    ("AsyncAdapt_aiosqlite_connection._terminate_force_close", "connection", "stop", "get"),
    ("AsyncAdapt_aiosqlite_connection._terminate_graceful_close", "connection", "close", "await"),
    ("AsyncAdapt_aiosqlite_connection.close", "connection", "close", "await"),
    ("AsyncAdapt_aiosqlite_connection.commit", "connection", "_connection", "get"),
    ("AsyncAdapt_aiosqlite_connection.create_function", "connection", "create_function", "await"),
    ("AsyncAdapt_aiosqlite_connection.isolation_level", "connection", "_conn", "get"),
    ("AsyncAdapt_aiosqlite_connection.isolation_level", "connection", "_tx", "get"),
    ("AsyncAdapt_aiosqlite_connection.isolation_level", "connection", "isolation_level", "get"),
    ("AsyncAdapt_aiosqlite_connection.rollback", "connection", "_connection", "get"),
    ("AsyncAdapt_dbapi_connection.close", "connection", "close", "await"),
    ("AsyncAdapt_dbapi_connection.commit", "connection", "commit", "await"),
    ("AsyncAdapt_dbapi_connection.rollback", "connection", "rollback", "await"),
    ("AsyncAdapt_dbapi_cursor._aenter_cursor", "cursor", "__aenter__", "await"),
    ("AsyncAdapt_dbapi_cursor._async_soft_close", "cursor", "close", "await"),
    ("AsyncAdapt_dbapi_cursor._async_soft_close", "cursor", "description", "get"),
    ("AsyncAdapt_dbapi_cursor._execute_async", "cursor", "description", "get"),
    ("AsyncAdapt_dbapi_cursor._execute_async", "cursor", "execute", "await"),
    ("AsyncAdapt_dbapi_cursor._execute_async", "cursor", "fetchall", "await"),
    ("AsyncAdapt_dbapi_cursor._executemany_async", "cursor", "executemany", "await"),
    ("AsyncAdapt_dbapi_cursor._make_new_cursor", "connection", "cursor", "call"),
    ("AsyncAdapt_dbapi_cursor.arraysize", "cursor", "arraysize", "get"),
    ("AsyncAdapt_dbapi_cursor.arraysize", "cursor", "arraysize", "set"),
    ("AsyncAdapt_dbapi_cursor.close", "cursor", "close", "await"),
    ("AsyncAdapt_dbapi_cursor.close", "cursor", "close", "call"),
    ("AsyncAdapt_dbapi_cursor.description", "cursor", "description", "get"),
    ("AsyncAdapt_dbapi_cursor.lastrowid", "cursor", "lastrowid", "get"),
    ("AsyncAdapt_dbapi_cursor.nextset", "cursor", "description", "get"),
    ("AsyncAdapt_dbapi_cursor.nextset", "cursor", "fetchall", "await"),
    ("AsyncAdapt_dbapi_cursor.nextset", "cursor", "nextset", "await"),
    ("AsyncAdapt_dbapi_cursor.rowcount", "cursor", "rowcount", "get"),
    ("AsyncAdapt_dbapi_cursor.setinputsizes", "cursor", "setinputsizes", "await"),
    ("AsyncAdapt_dbapi_ss_cursor.__iter__", "cursor", "__aiter__", "call"),
    ("AsyncAdapt_dbapi_ss_cursor.__iter__", "cursor.__aiter__()", "__anext__", "await"),
    ("AsyncAdapt_dbapi_ss_cursor.close", "cursor", "close", "await"),
    ("AsyncAdapt_dbapi_ss_cursor.fetchall", "cursor", "fetchall", "await"),
    ("AsyncAdapt_dbapi_ss_cursor.fetchmany", "cursor", "fetchmany", "await"),
    ("AsyncAdapt_dbapi_ss_cursor.fetchone", "cursor", "fetchone", "await"),
}
"""Every use the adapter makes of the aiosqlite connection and cursor it wraps."""

NOT_PROVIDED = {
    ("connection", "_conn", "get"): "the isolation_level setter, which nothing here uses (see below)",
    ("connection", "_tx", "get"): "the isolation_level setter, which nothing here uses (see below)",
    ("cursor", "close", "call"): "close() is awaited, as the adapter does for aiosqlite (see ALSO_RELIED_ON)",
    ("cursor", "nextset", "await"): "SQLite has one result per statement; the dialect never asks for another",
    ("cursor", "setinputsizes", "await"): "the SQLite dialect sends no input sizes (see ALSO_RELIED_ON)",
}
"""What the adapter could use but the driver does not offer, and why that is safe."""
ALSO_RELIED_ON = {
    "the adapter closes cursors by awaiting close()": (
        adapter.AsyncAdapt_aiosqlite_cursor._awaitable_cursor_close
    ),
    "the adapter turns ValueError('no active connection') into a disconnect": "no active connection"
    in inspect.getsource(adapter.AsyncAdapt_aiosqlite_connection._handle_exception_no_connection),
    "the adapter awaits what async_creator returns": "await_(connection)"
    in inspect.getsource(adapter.AsyncAdapt_aiosqlite_dbapi.connect),
    "the SQLite dialect sends no input sizes": (
        adapter.SQLiteDialect_aiosqlite.bind_typing is BindTyping.NONE
    ),
}

_ROOTS = {("self", "_connection"): "connection", ("self", "_cursor"): "cursor"}
_PARAMETERS = {"_make_new_cursor": {"connection": "connection"}, "_aenter_cursor": {"cursor": "cursor"}}
_AWAITERS = {"await_", "await_only", "shield"}


def _uses_in(function: ast.FunctionDef | ast.AsyncFunctionDef, where: str) -> set[tuple[str, str, str, str]]:
    """(where, wrapped object, attribute, how) for each use of the wrapped connection or cursor."""
    names = dict(_PARAMETERS.get(function.name, {}))
    parents = {child: node for node in ast.walk(function) for child in ast.iter_child_nodes(node)}

    def wrapped(node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return _ROOTS.get((node.value.id, node.attr))
        if isinstance(node, ast.Name):
            return names.get(node.id)
        return None

    for node in ast.walk(function):  # locals that hold a wrapped object's attribute or its result
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value.func if isinstance(node.value, ast.Call) else node.value
            if isinstance(value, ast.Attribute) and (label := wrapped(value.value)):
                names[node.targets[0].id] = f"{label}.{value.attr}" + (
                    "()" if value is not node.value else ""
                )

    found = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Attribute) and (label := wrapped(node.value))):
            continue
        how = "set" if isinstance(node.ctx, ast.Store) else "get"
        call = parents.get(node)
        if isinstance(call, ast.Call) and call.func is node:
            outer = parents.get(call)
            awaited = isinstance(outer, ast.Await) or (
                isinstance(outer, ast.Call)
                and (getattr(outer.func, "id", None) or getattr(outer.func, "attr", None)) in _AWAITERS
            )
            how = "await" if awaited else "call"
        found.add((where, label, node.attr, how))
    return found


def adapter_uses() -> set[tuple[str, str, str, str]]:
    uses: set[tuple[str, str, str, str]] = set()
    for adapted in ADAPTED.values():
        for klass in adapted.__mro__:
            if not klass.__module__.startswith("sqlalchemy."):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            for function in ast.walk(tree):
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    uses |= _uses_in(function, f"{klass.__name__}.{function.name}")
    return uses


def test_sqlalchemy_is_the_version_the_driver_is_proven_on() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (pin,) = [
        Requirement(line)
        for line in pyproject["project"]["dependencies"]
        if line.lower().startswith("sqlalchemy")
    ]
    installed = Version(sqlalchemy.__version__)
    assert installed in pin.specifier, f"SQLAlchemy {installed} is outside the pin {pin}"
    assert not pin.specifier.contains(f"{installed.major}.{installed.minor + 1}.0"), (
        f"the pin {pin} lets in the next minor release, whose adapter nobody has checked"
    )


def test_the_aiosqlite_adapter_uses_what_the_driver_was_written_for() -> None:
    for name, adapted in ADAPTED.items():
        mro = [klass.__name__ for klass in adapted.__mro__ if klass.__module__.startswith("sqlalchemy.")]
        assert mro == BASES[name], f"the {name} adapter's classes changed: {mro}"
    uses = adapter_uses()
    new, gone = sorted(uses - USED), sorted(USED - uses)
    assert (new, gone) == ([], []), (
        "SQLAlchemy's aiosqlite adapter changed how it uses the connection and cursor that "
        "services/sqlite_driver.py stands in for.\n"
        f"  now also uses: {new}\n  no longer uses: {gone}\n"
        "Check the driver against the new adapter, then update USED (and NOT_PROVIDED)."
    )
    for what, still in ALSO_RELIED_ON.items():
        assert still, f"no longer true: {what}"


def _offers(target: Any, attribute: str, how: str) -> bool:
    if not hasattr(target, attribute):
        return False
    found = inspect.getattr_static(target, attribute)
    if how == "await":
        return inspect.iscoroutinefunction(found)
    if how == "call":
        return callable(getattr(target, attribute)) and not inspect.iscoroutinefunction(found)
    if how == "set":
        return isinstance(found, property) and found.fset is not None
    return True


async def test_the_driver_offers_everything_the_adapter_uses(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "offers.db", isolation_level=None)
    connection = InlineConnection(raw, lock_timeout=LOCK_TIMEOUT)
    cursor = await connection.cursor().__aenter__()
    targets: dict[str, Any] = {
        "connection": connection,
        "cursor": cursor,
        "cursor.__aiter__()": cursor.__aiter__(),
    }
    try:
        missing = [
            (where, wrapped, attribute, how)
            for where, wrapped, attribute, how in sorted(USED)
            if (wrapped, attribute, how) not in NOT_PROVIDED and not _offers(targets[wrapped], attribute, how)
        ]
        assert missing == [], f"the driver lacks what the adapter uses: {missing}"
        assert {(wrapped, attribute, how) for _where, wrapped, attribute, how in USED} >= set(NOT_PROVIDED)
    finally:
        connection.stop()


def test_nothing_sets_an_isolation_level_the_driver_cannot_set() -> None:
    # The adapter's isolation_level setter goes through aiosqlite's private queue (NOT_PROVIDED), and
    # SQLAlchemy calls it for AUTOCOMMIT only.
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("services", "workflows", "models", "notifications")
        for path in (REPO / folder).rglob("*.py")
        if "AUTOCOMMIT" in path.read_text()
    ]
    assert offenders == []


async def test_a_stopped_connection_is_a_disconnect_to_sqlalchemy(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, InlineConnection)
        driver.stop()
        with pytest.raises(exc.DBAPIError) as failed:
            await connection.execute(text("SELECT 1"))
        assert failed.value.connection_invalidated
    assert await count_events(sqlite_db) == 0  # the pool made a fresh connection


# --------------------------------------------------------------------- locks held by someone else


@pytest.fixture
async def sqlite_db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    target = tmp_path / "roundtable.db"
    shutil.copyfile(sqlite_template, target)
    db = Database(f"sqlite:///{target}", limits=Limits(lock_timeout=LOCK_TIMEOUT))
    try:
        yield db
    finally:
        await db.dispose()


async def count_events(db: Database) -> int:
    async with db.session() as session:
        return (await session.exec(select(func.count()).select_from(AuditEvent))).one()


async def record_event(db: Database) -> None:
    async with db.write_session() as session:
        await trail.append(session, actor=ACTOR, action="test.recorded")
        await session.commit()


class Ticker:
    """Measures how long the event loop went without running this task: what a blocked loop shows."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


HOLDER = """
import fcntl, os, sqlite3, sys
path, what = sys.argv[1], sys.argv[2]
if what == "sqlite":
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
else:
    descriptor = os.open(path + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
if what == "sqlite":
    connection.rollback()
else:
    fcntl.flock(descriptor, fcntl.LOCK_UN)
print("released", flush=True)
"""


class Holder:
    """Another process holding SQLite's write lock ("sqlite", as the sqlite3 shell would, taking no lock
    of ours) or our writer lock ("ours", as another process of ours would between BEGIN and COMMIT)."""

    def __init__(self, db: Database, what: str) -> None:
        assert db.url.database is not None
        self.path = db.url.database
        self.what = what
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Holder:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            self.path,
            self.what,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert (await asyncio.wait_for(self.process.stdout.readline(), 10)).strip() == b"held"
        return self

    async def release(self) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        assert (await asyncio.wait_for(self.process.stdout.readline(), 10)).strip() == b"released"
        await self.process.wait()
        self.process = None

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()


def lock_waiters() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "roundtable-writer-lock"]


def is_busy(error: BaseException) -> bool:
    return isinstance(error, exc.OperationalError) and sqlite_driver.is_busy(error.orig)


@pytest.mark.serial  # it bounds how long the event loop is held: another process's load would fail it
@pytest.mark.parametrize("what", ["sqlite", "ours"])
async def test_a_write_lock_held_elsewhere_is_waited_for_off_the_loop_and_then_given_up(
    sqlite_db: Database, what: str
) -> None:
    await record_event(sqlite_db)
    async with Holder(sqlite_db, what) as holder, Ticker() as ticker:
        started = time.monotonic()
        with pytest.raises(exc.OperationalError) as refused:
            await record_event(sqlite_db)
        waited = time.monotonic() - started
        reads_meanwhile = await count_events(sqlite_db)
        assert is_busy(refused.value), refused.value
        assert LOCK_TIMEOUT * 0.9 < waited < LOCK_TIMEOUT + 1.0
        assert ticker.longest < 0.2, f"the event loop was blocked for {ticker.longest:.3f} s"
        assert ticker.ticks > 20
        assert reads_meanwhile == 1
        assert sqlite_db.write_engine.pool.checkedout() == 0
        await holder.release()
    await record_event(sqlite_db)
    assert await count_events(sqlite_db) == 2


async def test_a_writer_that_gave_up_leaves_no_lock_behind(sqlite_db: Database) -> None:
    """The wait for the writer lock of a writer that gave up goes on in its thread; the lock it gets
    then is let go at once: the other processes are not held up by a lock nobody uses."""
    await record_event(sqlite_db)
    assert sqlite_db.url.database is not None
    before = set(lock_waiters())
    async with Holder(sqlite_db, "ours") as holder:
        with pytest.raises(exc.OperationalError):
            await record_event(sqlite_db)
        waiting = [thread for thread in lock_waiters() if thread not in before]
        assert len(waiting) == 1
        with pytest.raises(exc.OperationalError):
            await record_event(sqlite_db)  # waits in the same thread, starts no other
        assert [thread for thread in lock_waiters() if thread not in before] == waiting
        await holder.release()
    assert await eventually(lambda: lock_is_free(sqlite_db), bool, timeout=5)
    await record_event(sqlite_db)
    assert await count_events(sqlite_db) == 2


async def lock_is_free(db: Database) -> bool:
    descriptor = os.open(f"{db.url.database}.writer-lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)  # and with it the lock, if it was taken here
    return True


async def test_the_lock_goes_to_a_writer_waiting_when_it_comes(sqlite_db: Database) -> None:
    async with Holder(sqlite_db, "ours") as holder:
        with pytest.raises(exc.OperationalError):
            await record_event(sqlite_db)
        second = asyncio.create_task(record_event(sqlite_db))
        await asyncio.sleep(0.2)
        await holder.release()
        await second
    assert await count_events(sqlite_db) == 1


async def test_a_writer_lock_closed_while_its_thread_waits_releases_everything(tmp_path: Path) -> None:
    path = tmp_path / "closing.writer-lock"
    outside = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(outside, fcntl.LOCK_EX)
    lock = WriterLock(path)
    try:
        with pytest.raises(sqlite3.OperationalError) as timed_out:
            await lock.acquire(0.2)
        assert sqlite_driver.is_busy(timed_out.value)
        lock.close()
        fcntl.flock(outside, fcntl.LOCK_UN)
        await asyncio.sleep(0.2)
        assert not lock.held
        fcntl.flock(outside, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(outside)
