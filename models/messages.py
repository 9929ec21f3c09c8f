"""Every email the service sent (or failed to send), one row per message and purpose."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.enums import MessageKind, MessageStatus
from models.types import UTCDateTime, enum_column, utcnow


class SentMessage(SQLModel, table=True):
    __tablename__ = "sent_messages"

    id: int | None = Field(default=None, primary_key=True)
    purpose_key: str = Field(
        max_length=120, unique=True, description='What the message is for, e.g. "invitation:<link id>".'
    )
    kind: MessageKind = Field(sa_type=enum_column(MessageKind, 20))
    round_id: int | None = Field(default=None, foreign_key="rounds.id", index=True)
    task_id: int | None = Field(default=None, foreign_key="review_tasks.id", index=True)
    link_id: str | None = Field(default=None, max_length=32)
    to_email: str = Field(max_length=320)
    subject: str = Field(max_length=500)
    message_id: str = Field(max_length=200)
    status: MessageStatus = Field(sa_type=enum_column(MessageStatus, 10))
    error: str | None = Field(default=None, max_length=1000)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
