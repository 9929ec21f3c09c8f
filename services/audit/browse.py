"""Reading the audit trail: pages of events, the chain's head, and the whole chain as JSON Lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import (
    CANONICAL_JSON,
    AuditChainHead,
    AuditEvent,
    AuditEventPage,
    AuditEventRead,
    format_at,
)
from models.enums import ActorKind

EXPORT_BATCH = 2_000


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


async def chain_head(session: AsyncSession) -> AuditChainHead:
    """The last seq and hash: publish or note it, and a later export can be checked to end there."""
    return (await session.exec(select(AuditChainHead).where(AuditChainHead.id == 1))).one()
