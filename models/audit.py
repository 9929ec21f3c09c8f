"""The append-only, hash-chained audit trail and its canonical form.

Each event's hash is SHA-256 over the canonical JSON (keys sorted, no spaces, UTF-8) of
{seq, at, actor: {kind, id, email}, action, round_id, task_id, data, prev_hash}; the first event's
prev_hash is 64 zeros. The export is one such object per line, with its "hash" added.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.enums import ActorKind
from models.types import UTCDateTime, enum_column

GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("seq", "at", "actor", "action", "round_id", "task_id", "data", "prev_hash")


class Actor(SQLModel):
    kind: ActorKind
    id: str
    email: str | None = None


SYSTEM_ACTOR = Actor(kind=ActorKind.system, id="scheduler")


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=UTCDateTime)
    actor_kind: ActorKind = Field(sa_type=enum_column(ActorKind, 10))
    actor_id: str = Field(max_length=64)
    actor_email: str | None = Field(default=None, max_length=320)
    action: str = Field(max_length=64, index=True)
    round_id: int | None = Field(default=None, index=True)
    task_id: int | None = Field(default=None, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)

    def canonical(self) -> dict[str, Any]:
        return event_document(
            seq=self.seq,
            at=self.at,
            actor=Actor(kind=self.actor_kind, id=self.actor_id, email=self.actor_email),
            action=self.action,
            round_id=self.round_id,
            task_id=self.task_id,
            data=self.data,
            prev_hash=self.prev_hash,
        )


class AuditChainHead(SQLModel, table=True):
    """One row: the last seq and hash. Locking it serialises appends to the chain."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = Field(default=GENESIS_HASH, max_length=64)


class AuditEventRead(SQLModel):
    seq: int
    at: str
    actor: Actor
    action: str
    round_id: int | None
    task_id: int | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditHeadRead(SQLModel):
    """The chain's last event: note it, and a later export can be checked to still end at or after it."""

    seq: int
    hash: str


class AuditEventPage(SQLModel):
    events: list[AuditEventRead]
    next_after_seq: int | None


def format_at(at: datetime) -> str:
    """2026-03-02T08:00:00.001500Z: always microseconds, always UTC, always Z."""
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    if utc.year < 1000:  # strftime pads %Y to four digits on some C libraries only
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as that strftime format, faster, which counts in a million-event export; isoformat of
    # a UTC time ends in "+00:00".
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


def event_document(
    *,
    seq: int,
    at: datetime,
    actor: Actor,
    action: str,
    round_id: int | None,
    task_id: int | None,
    data: dict[str, Any],
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": format_at(at),
        "actor": {"kind": str(actor.kind), "id": actor.id, "email": actor.email},
        "action": action,
        "round_id": round_id,
        "task_id": task_id,
        "data": data,
        "prev_hash": prev_hash,
    }


# What json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on every call;
# built once, it writes the very same text without that cost on each of a million events.
CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(document: dict[str, Any]) -> bytes:
    hashed = {name: document[name] for name in HASHED_FIELDS}
    return CANONICAL_JSON.encode(hashed).encode("utf-8")


def event_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(document)).hexdigest()
