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
    first_seq: int | None = None
    last_seq: int | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.ok:
            span = f"seq {self.first_seq}..{self.last_seq}" if self.events else "no events"
            text = f"OK: {self.events} events, {span}, hash chain intact."
            return " ".join([text, *self.notes])
        where = f"seq {self.bad_seq}" if self.bad_seq is not None else f"line {self.bad_line}"
        return f"FAILED at {where} (line {self.bad_line}): {self.reason}"


def verify_lines(lines: Iterable[str | bytes]) -> VerifyResult:
    """Check an export: each hash recomputes, each prev_hash is the hash before, seq has no gaps."""
    count = 0
    first: int | None = None
    previous_seq: int | None = None
    previous_hash: str | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            document = json.loads(raw)
            seq = document["seq"]
            stored_hash = document["hash"]
            prev_hash = document["prev_hash"]
        except (ValueError, KeyError, TypeError) as exc:
            return VerifyResult(False, count, first, previous_seq, None, number, f"unreadable event ({exc})")
        bad = _check_event(document, seq, stored_hash, prev_hash, previous_seq, previous_hash)
        if bad:
            return VerifyResult(False, count, first, previous_seq, seq, number, bad)
        if first is None:
            first = seq
        count += 1
        previous_seq, previous_hash = seq, stored_hash
    result = VerifyResult(True, count, first, previous_seq)
    if first is not None and first != 1:
        result.notes.append(f"The file starts at seq {first}; events before it were not checked.")
    return result


def _check_event(
    document: dict[str, Any],
    seq: Any,
    stored_hash: Any,
    prev_hash: Any,
    previous_seq: int | None,
    previous_hash: str | None,
) -> str | None:
    if not isinstance(seq, int):
        return "seq is not an integer"
    if previous_seq is None:
        if seq == 1 and prev_hash != GENESIS_HASH:
            return "the first event does not start from the genesis hash"
    else:
        if seq != previous_seq + 1:
            return f"expected seq {previous_seq + 1} (an event is missing or out of order)"
        if prev_hash != previous_hash:
            return "prev_hash does not match the hash of the event before it"
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
