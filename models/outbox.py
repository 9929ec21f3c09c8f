"""The outbox: every email the service sends is a row, written in the transaction that decides it.

A row's `key` says what the message is for (`invitation:{task}:{role}`, `round_closed:{round}`); the key is
unique, so a second decision to send the same message is a no-op. One delivery path drains due rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.enums import Language, MessageKind, OutboxStatus
from models.types import UTCDateTime, enum_column, utcnow


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        # What the delivery path and the scheduler ask: which rows are due, overall and per round.
        sa.Index("ix_outbox_status_due_at", "status", "due_at"),
        sa.Index("ix_outbox_round_id_status", "round_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True, description="What the message is for; one row per key.")
    kind: MessageKind = Field(sa_type=enum_column(MessageKind, 30))
    round_id: int | None = Field(default=None, foreign_key="rounds.id")
    task_id: int | None = Field(default=None, foreign_key="review_tasks.id", index=True)
    link_id: str | None = Field(
        default=None,
        foreign_key="access_links.id",
        max_length=32,
        index=True,
        description="The review link the message carries: a token for it is made at delivery time.",
    )
    to_email: str = Field(max_length=320)
    to_name: str = Field(default="", max_length=300)
    reply_to: str | None = Field(
        default=None,
        max_length=1000,
        description='Whom a reply reaches ("Name <address>"), fixed with the decision; none if nobody.',
    )
    language: Language = Field(sa_type=enum_column(Language, 5))
    context: dict[str, Any] = Field(
        default_factory=dict, sa_type=sa.JSON, description="The template's values, fixed by the decision."
    )
    status: OutboxStatus = Field(default=OutboxStatus.pending, sa_type=enum_column(OutboxStatus, 20))
    attempts: int = 0
    due_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        description="A delivery attempt holds the row until then; one that died lets it go by itself.",
    )
    message_id: str = Field(max_length=200, description="Stable Message-ID made from the key.")
    subject: str = Field(default="", max_length=500, description="As sent (rendered at delivery).")
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxMessageRead(SQLModel):
    """One email as the console lists it for a task."""

    id: int
    kind: MessageKind
    task_id: int | None
    to_email: str
    status: OutboxStatus
    attempts: int
    subject: str
    last_error: str | None
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
