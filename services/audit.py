"""The audit trail: append inside the caller's transaction, page, export, verify."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Table, insert, update
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import (
    CANONICAL_JSON,
    GENESIS_HASH,
    Actor,
    AuditChainHead,
    AuditEvent,
    AuditEventPage,
    AuditEventRead,
    event_document,
    event_hash,
    format_at,
)
from models.enums import ActorKind
from models.types import utcnow

EXPORT_BATCH = 2_000
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
    back was a tenth of a sign-off. The statements run in one call into the synchronous session, as
    each awaited statement of the async API costs a greenlet of its own."""
    if not events:
        return []
    return await session.run_sync(_append_many, events)


def _append_many(session: Session, events: list[NewEvent]) -> list[ChainedEvent]:
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


def to_read(event: AuditEvent) -> AuditEventRead:
    return AuditEventRead.model_validate({**event.canonical(), "hash": event.hash})


async def list_events(
    session: AsyncSession,
    *,
    round_id: int | None = None,
    task_id: int | None = None,
    action: str | None = None,
    after_seq: int = 0,
    limit: int = 100,
) -> AuditEventPage:
    query = select(AuditEvent).where(AuditEvent.seq > after_seq)
    if round_id is not None:
        query = query.where(AuditEvent.round_id == round_id)
    if task_id is not None:
        query = query.where(AuditEvent.task_id == task_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    rows = (await session.exec(query.order_by(col(AuditEvent.seq)).limit(limit + 1))).all()
    more = len(rows) > limit
    page = rows[:limit]
    return AuditEventPage(
        events=[to_read(event) for event in page], next_after_seq=page[-1].seq if more else None
    )


def export_line(event: AuditEvent) -> str:
    document = event.canonical()
    document["hash"] = event.hash
    return _canonical_line(document)


def _canonical_line(document: dict[str, Any]) -> str:
    return CANONICAL_JSON.encode(document) + "\n"


# The export reads plain rows, not ORM objects: building a million AuditEvent instances (and their
# Actor models) in the identity map cost more than the rest of the export together.
_EXPORT_COLUMNS = (
    col(AuditEvent.seq),
    col(AuditEvent.at),
    col(AuditEvent.actor_kind),
    col(AuditEvent.actor_id),
    col(AuditEvent.actor_email),
    col(AuditEvent.action),
    col(AuditEvent.round_id),
    col(AuditEvent.task_id),
    col(AuditEvent.data),
    col(AuditEvent.prev_hash),
    col(AuditEvent.hash),
)


_json_string = json.encoder.encode_basestring  # a JSON string as ensure_ascii=False writes it


def _json_integer(value: int | None) -> str:
    return "null" if value is None else int.__repr__(value)


def _export_row_line(
    seq: int,
    at: datetime,
    kind: ActorKind,
    actor_id: str,
    email: str | None,
    action: str,
    round_id: int | None,
    task_id: int | None,
    data: dict[str, Any],
    prev_hash: str,
    digest: str,
) -> str:
    """export_line's text for a row, written member by member in sorted key order: sorting and encoding
    the fixed outer fields for each of a million events took as long as encoding `data`. The test
    suite holds it to the json.dumps form (tests/services/test_audit.py)."""
    return "".join(
        (
            '{"action":',
            _json_string(action),
            ',"actor":{"email":',
            "null" if email is None else _json_string(email),
            ',"id":',
            _json_string(actor_id),
            ',"kind":',
            _json_string(str(kind)),
            '},"at":',
            _json_string(format_at(at)),
            ',"data":',
            CANONICAL_JSON.encode(data),
            ',"hash":',
            _json_string(digest),
            ',"prev_hash":',
            _json_string(prev_hash),
            ',"round_id":',
            _json_integer(round_id),
            ',"seq":',
            _json_integer(seq),
            ',"task_id":',
            _json_integer(task_id),
            "}\n",
        )
    )


async def export_pages(session: AsyncSession) -> AsyncIterator[list[str]]:
    """The whole chain in seq order as JSON Lines, a keyset page at a time so memory stays flat; a
    page is also the unit a stream writes, so a million events are not a million writes."""
    connection = await session.connection()
    after = 0
    while True:
        query = (
            sa.select(*_EXPORT_COLUMNS)
            .where(col(AuditEvent.seq) > after)
            .order_by(col(AuditEvent.seq))
            .limit(EXPORT_BATCH)
        )
        rows = (await connection.execute(query)).all()
        if not rows:
            return
        yield [
            _export_row_line(
                seq, at, kind, actor_id, email, action, round_id, task_id, data, prev_hash, digest
            )
            for seq, at, kind, actor_id, email, action, round_id, task_id, data, prev_hash, digest in rows
        ]
        after = rows[-1][0]


async def export_lines(session: AsyncSession) -> AsyncIterator[str]:
    """The whole chain in seq order as JSON Lines, one line at a time."""
    async for page in export_pages(session):
        for line in page:
            yield line


@dataclass
class VerifyResult:
    ok: bool
    events: int
    last_seq: int | None = None
    last_hash: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return (
                f"OK: {self.events} events, seq 1..{self.last_seq}, hash chain intact. "
                f"Head: {self.last_seq}:{self.last_hash}"
            )
        if self.bad_seq is not None:
            return f"FAILED at seq {self.bad_seq} (line {self.bad_line}): {self.reason}"
        if self.bad_line:
            return f"FAILED at line {self.bad_line}: {self.reason}"
        return f"FAILED: {self.reason}"


# An export line as export_line writes it is the canonical JSON of the hashed fields with the hash
# member in its sorted place, between "data" and "prev_hash", and the integers after it. Its hashed bytes
# are then the line without `,"hash":"…"`: one SHA-256 checks it, with no JSON parsing. Lines in any
# other form (spaces, another key order or escaping) or that do not hash right take the full path.
_LINE_START = b'{"action":"'
_HASH_MEMBER = b'},"hash":"'  # the "}" closes "data", the last field before the hash in key order
_HASH_KEY_LENGTH = len(',"hash":"')
_HASH_LENGTH = _HASH_KEY_LENGTH + 64 + len('"')
_PREV_HASH_KEY = b',"prev_hash":"'
_LINE_END = re.compile(
    rb'","round_id":(?:null|-?(?:0|[1-9][0-9]*)),"seq":([1-9][0-9]*)'
    rb',"task_id":(?:null|-?(?:0|[1-9][0-9]*))\}(\n?)'
)


def verify_lines(
    lines: Iterable[str | bytes], *, expected_head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check a whole export: it starts at seq 1 from the genesis hash, every hash recomputes, every
    prev_hash is the hash before it, no seq is missing. With `expected_head` (a seq and hash noted
    earlier, e.g. from GET /api/v1/audit/head) the file must also reach that event with that very hash:
    events cut off the end, or a chain rewritten and hashed afresh, are caught too.

    A line in the exporter's exact form is checked by hashing its bytes without the hash field: for a
    line the exporter wrote, those bytes are the canonical form, so the verdict is the one re-serialising
    would give, several times faster. Any other line (spaces, another key order or escaping, a hash or
    link that does not match) is parsed and re-serialised, so a valid but differently written export
    still verifies and a failure gives the same reason as ever. Only a line whose hash was computed
    afresh over bytes that are not canonical could pass here and not there; that is a rewritten event,
    which the chain up to a noted head rules out as it rules out any other."""
    count = 0
    previous_seq = 0
    previous_hash = GENESIS_HASH
    number = 0
    head_seq, head_hash = expected_head if expected_head is not None else (None, None)
    previous_bytes = previous_hash.encode()
    sha256 = hashlib.sha256
    match_end = _LINE_END.fullmatch
    for number, raw in enumerate(lines, start=1):
        line = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        fast = False
        member = line.rfind(_HASH_MEMBER) + 1
        if member and line.startswith(_LINE_START):
            prev_at = member + _HASH_LENGTH + len(_PREV_HASH_KEY)
            end = match_end(line, prev_at + 64)
            if (
                end is not None
                and line[member + _HASH_LENGTH : prev_at] == _PREV_HASH_KEY
                and line[prev_at : prev_at + 64] == previous_bytes
                and int(end[1]) == previous_seq + 1
            ):
                digest = sha256(line[:member])
                digest.update(line[member + _HASH_LENGTH : end.start(2)])
                stored = line[member + _HASH_KEY_LENGTH : member + _HASH_LENGTH - 1]
                if digest.hexdigest().encode() == stored:
                    fast = True
                    seq, stored_hash = previous_seq + 1, stored.decode()
        if not fast:
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                seq = document["seq"]
                stored_hash = document["hash"]
            except (ValueError, KeyError, TypeError) as exc:
                reason = f"unreadable event ({exc})"
                return _failed(count, previous_seq, previous_hash, None, number, reason)
            bad = _check_event(document, seq, stored_hash, previous_seq, previous_hash)
            if bad:
                return _failed(
                    count, previous_seq, previous_hash, seq if isinstance(seq, int) else None, number, bad
                )
        if seq == head_seq and stored_hash != head_hash:
            reason = "this is not the noted head: its hash differs, so the chain up to it was rewritten"
            return _failed(count, previous_seq, previous_hash, seq, number, reason)
        count += 1
        previous_seq, previous_hash = seq, stored_hash
        previous_bytes = stored_hash.encode()
    if count == 0:
        return VerifyResult(False, 0, reason="the file holds no events")
    if expected_head is not None and previous_seq < expected_head[0]:
        reason = f"the chain ends at seq {previous_seq}, before the noted head at seq {expected_head[0]}"
        return _failed(count, previous_seq, previous_hash, None, number, reason)
    return VerifyResult(True, count, previous_seq, previous_hash)


def _failed(
    count: int, last_seq: int, last_hash: str, seq: int | None, line: int, reason: str
) -> VerifyResult:
    return VerifyResult(False, count, last_seq or None, last_hash, seq, line, reason)


def _check_event(
    document: dict[str, Any], seq: Any, stored_hash: Any, previous_seq: int, previous_hash: str
) -> str | None:
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "seq is not an integer"
    if seq != previous_seq + 1:
        if previous_seq == 0:
            return f"the file starts at seq {seq}: the events before it are missing"
        return f"expected seq {previous_seq + 1} (an event is missing or out of order)"
    if document.get("prev_hash") != previous_hash:
        return (
            "the first event does not start from the genesis hash"
            if previous_seq == 0
            else "prev_hash does not match the hash of the event before it"
        )
    try:
        recomputed = event_hash(document)
    except KeyError as exc:
        return f"field {exc} is missing"
    if recomputed != stored_hash:
        return "the event's content does not match its hash (it was altered)"
    return None


async def chain_head(session: AsyncSession) -> AuditChainHead:
    """The last seq and hash: publish or note it, and a later export can be checked to end there."""
    return (await session.exec(select(AuditChainHead).where(AuditChainHead.id == 1))).one()
