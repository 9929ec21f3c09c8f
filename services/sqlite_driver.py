"""SQLite under the async engine without a thread per statement.

SQLAlchemy's aiosqlite driver sends every statement, fetch and cursor close to a thread of its own and
waits for the answer on the event loop. Our statements are indexed lookups and small inserts on a local
file: they take microseconds, the hop around them a hundred or more, and under load a dozen such threads
wrestled the event loop for the interpreter lock. Here they run where they are awaited, on the loop thread.

The COMMIT too, fsync included (a quarter of a millisecond on the benchmark machine). In a thread it let
the loop serve others meanwhile, but a writer holds the database's one write lock until its commit has
returned to it, and under load the loop took milliseconds to come back: every writer in every process
waited that long for each one before it. Nothing else may block: writers queue on the advisory lock in
services/db.py (in a thread) before BEGIN IMMEDIATE, and in WAL mode readers never wait for writers.

The objects here are what SQLAlchemy's aiosqlite adapter expects of an aiosqlite connection and cursor
(it is given them through `async_creator`), with the same sqlite3 objects underneath.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any


class InlineCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
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
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> InlineCursor:
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
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._open().cursor())

    async def commit(self) -> None:
        self._open().commit()

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def connector(database: str) -> Any:
    """The `async_creator` for create_async_engine. Transactions are begun explicitly (BEGIN or
    BEGIN IMMEDIATE, see services/db.py), so the sqlite3 module must not begin any itself."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            database, isolation_level=None, check_same_thread=False, uri=database.startswith("file:")
        )
        return InlineConnection(connection)

    return connect
