"""The audit trail: append inside the caller's transaction, page, export, verify."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import (
    GENESIS_HASH,
    Actor,
    AuditChainHead,
    AuditEvent,
    AuditEventPage,
    AuditEventRead,
    event_document,
    event_hash,
)
from models.types import utcnow

EXPORT_BATCH = 2_000


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
) -> AuditEvent:
    """Chain one event onto the trail. The caller commits, so the event lands with the change it records."""
    (event,) = await append_many(
        session,
        events=[NewEvent(action=action, actor=actor, round_id=round_id, task_id=task_id, data=data or {})],
    )
    return event


async def append_many(session: AsyncSession, *, events: list[NewEvent]) -> list[AuditEvent]:
    """Chain several events under one lock of the chain head. Call it last in a transaction: the head
    row is the one lock every writer shares, so it must be held for as short a time as possible."""
    if not events:
        return []
    head = (
        await session.exec(
            select(AuditChainHead)
            .where(AuditChainHead.id == 1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    at = utcnow()
    written = []
    for new in events:
        seq = head.seq + 1
        document = event_document(
            seq=seq,
            at=at,
            actor=new.actor,
            action=new.action,
            round_id=new.round_id,
            task_id=new.task_id,
            data=new.data,
            prev_hash=head.hash,
        )
        digest = event_hash(document)
        written.append(
            AuditEvent(
                seq=seq,
                at=at,
                actor_kind=new.actor.kind,
                actor_id=new.actor.id,
                actor_email=new.actor.email,
                action=new.action,
                round_id=new.round_id,
                task_id=new.task_id,
                data=new.data,
                prev_hash=head.hash,
                hash=digest,
            )
        )
        head.seq, head.hash = seq, digest
    session.add_all(written)
    session.add(head)
    await session.flush()
    return written


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
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


async def export_lines(session: AsyncSession) -> AsyncIterator[str]:
    """The whole chain in seq order as JSON Lines, fetched in keyset pages so memory stays flat."""
    after = 0
    while True:
        query = select(AuditEvent).where(AuditEvent.seq > after).order_by(col(AuditEvent.seq))
        rows = (await session.exec(query.limit(EXPORT_BATCH))).all()
        if not rows:
            return
        for event in rows:
            yield export_line(event)
        after = rows[-1].seq
        session.expunge_all()


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


def verify_lines(
    lines: Iterable[str | bytes], *, expected_head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check a whole export: it starts at seq 1 from the genesis hash, every hash recomputes, every
    prev_hash is the hash before it, no seq is missing. With `expected_head` (a seq and hash noted
    earlier, e.g. from GET /api/v1/audit/head) the file must also reach that event with that very hash:
    events cut off the end, or a chain rewritten and hashed afresh, are caught too."""
    count = 0
    previous_seq = 0
    previous_hash = GENESIS_HASH
    number = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            document = json.loads(raw)
            seq = document["seq"]
            stored_hash = document["hash"]
        except (ValueError, KeyError, TypeError) as exc:
            return _failed(count, previous_seq, previous_hash, None, number, f"unreadable event ({exc})")
        bad = _check_event(document, seq, stored_hash, previous_seq, previous_hash)
        if bad:
            return _failed(
                count, previous_seq, previous_hash, seq if isinstance(seq, int) else None, number, bad
            )
        if expected_head is not None and seq == expected_head[0] and stored_hash != expected_head[1]:
            reason = "this is not the noted head: its hash differs, so the chain up to it was rewritten"
            return _failed(count, previous_seq, previous_hash, seq, number, reason)
        count += 1
        previous_seq, previous_hash = seq, stored_hash
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
