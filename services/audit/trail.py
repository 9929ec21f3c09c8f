"""Appending to the audit trail inside the caller's transaction, so an event lands with its change."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Table, insert, update
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor, AuditChainHead, AuditEvent, event_document, event_hash
from models.types import utcnow

AUDIT_EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]
AUDIT_CHAIN_HEAD: Table = AuditChainHead.__table__  # type: ignore[attr-defined]
_LOCK_CHAIN_HEAD = (
    sa.select(AUDIT_CHAIN_HEAD.c.seq, AUDIT_CHAIN_HEAD.c.hash)
    .where(AUDIT_CHAIN_HEAD.c.id == 1)
    .with_for_update()
)


@dataclass(frozen=True)
class NewEvent:
    action: str
    actor: Actor
    round_id: int | None = None
    task_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


async def append(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    round_id: int | None = None,
    task_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> ChainedEvent:
    """Chain one event onto the trail. The caller commits, so the event lands with the change it records."""
    (event,) = await append_many(
        session,
        events=[NewEvent(action=action, actor=actor, round_id=round_id, task_id=task_id, data=data or {})],
    )
    return event


_chain_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def chain_turn(session: AsyncSession) -> AsyncIterator[None]:
    """Wait for this process's turn at the chain head, then append and commit inside the block.

    On PostgreSQL every writer locks the head row. Dozens of transactions of one process queued on that
    row lock took turns slowly (each release wakes the queue) and each held a pooled connection the while;
    queued here instead (first come, first served), a process has at most one transaction at the row.
    Only for use cases that lock nothing else after the head: a transaction that waits here must not hold
    a row that the one at the head goes on to lock. SQLite's write lock already serialises writers."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    loop = asyncio.get_running_loop()
    turn = _chain_turns.get(loop)
    if turn is None:
        turn = _chain_turns[loop] = asyncio.Lock()
    async with turn:
        yield


@dataclass(frozen=True)
class ChainedEvent:
    """Where an appended event landed on the chain: what a record citing it (a sign-off) keeps."""

    seq: int
    at: datetime
    hash: str


async def append_many(session: AsyncSession, *, events: list[NewEvent]) -> list[ChainedEvent]:
    """Chain several events under one lock of the chain head. Call it last in a transaction: the head
    row is the one lock every writer shares, so it must be held for as short a time as possible.

    The rows are written with plain INSERT and UPDATE statements, without model objects or the unit of
    work: this runs inside every write transaction, and the ORM's bookkeeping for objects nobody reads
    back is a noticeable part of a sign-off's cost. The statements run in one call into the synchronous
    session, as each awaited statement of the async API costs a greenlet of its own."""
    if not events:
        return []
    return await session.run_sync(append_many_sync, events)


def append_many_sync(session: Session, events: list[NewEvent]) -> list[ChainedEvent]:
    """`append_many` inside a use case that already runs in the synchronous session (`run_sync`)."""
    if not events:
        return []
    # Objects the caller added but did not flush yet go first, as the ORM's autoflush did: the rows
    # below are written on the connection, beneath the session.
    session.flush()
    connection = session.connection()
    head_seq, head_hash = connection.execute(_LOCK_CHAIN_HEAD).one()
    at = utcnow()
    rows = []
    for new in events:
        seq = head_seq + 1
        document = event_document(
            seq=seq,
            at=at,
            actor=new.actor,
            action=new.action,
            round_id=new.round_id,
            task_id=new.task_id,
            data=new.data,
            prev_hash=head_hash,
        )
        digest = event_hash(document)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor_kind": new.actor.kind,
                "actor_id": new.actor.id,
                "actor_email": new.actor.email,
                "action": new.action,
                "round_id": new.round_id,
                "task_id": new.task_id,
                "data": new.data,
                "prev_hash": head_hash,
                "hash": digest,
            }
        )
        head_seq, head_hash = seq, digest
    move_head = (
        update(AUDIT_CHAIN_HEAD).where(AUDIT_CHAIN_HEAD.c.id == 1).values(seq=head_seq, hash=head_hash)
    )
    if len(rows) == 1 and connection.dialect.name == "postgresql":
        # One statement for both: every round trip made while holding the head is one more that every
        # other writer waits for. (SQLite cannot put an UPDATE in a WITH, and holds nothing across
        # round trips: its statements run in process.)
        connection.execute(insert(AUDIT_EVENTS).values(rows[0]).add_cte(move_head.cte()))
    else:
        connection.execute(insert(AUDIT_EVENTS), rows)
        connection.execute(move_head)
    return [ChainedEvent(seq=row["seq"], at=at, hash=row["hash"]) for row in rows]
