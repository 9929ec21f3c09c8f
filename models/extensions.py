"""Extensions: the coordinator's, and those a focal point asks for from the review page."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import AwareDatetime, field_validator
from sqlmodel import Field, SQLModel

from models.enums import ExtensionRequestStatus
from models.text import Text
from models.types import UTCDateTime, enum_column, utcnow


class ExtensionCreate(SQLModel):
    deadline: AwareDatetime = Field(description="The new deadline, ISO 8601 with a UTC offset.")
    reason: Text = Field(min_length=3, max_length=5000)
    organisation_keys: list[str] | None = Field(
        default=None, min_length=1, description="Only these organisations; omitted: the whole round."
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class ExtensionRead(SQLModel):
    round_id: int
    deadline: datetime
    organisation_keys: list[str] = Field(description="The organisations whose deadline it moved.")
    notices: int = Field(description="Contacts told of it.")


class ExtensionRequest(SQLModel, table=True):
    """A focal point's request for more time, and the coordinator's answer."""

    __tablename__ = "extension_requests"
    __table_args__ = (sa.Index("ix_extension_requests_round_id_status", "round_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="rounds.id")
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    link_id: str = Field(foreign_key="access_links.id", max_length=32, description="Who asked.")
    requested_by: str = Field(max_length=320)
    deadline_then: datetime = Field(sa_type=UTCDateTime, description="The task's deadline when asked.")
    wanted_deadline: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(sa_type=sa.Text)
    status: ExtensionRequestStatus = Field(
        default=ExtensionRequestStatus.pending, sa_type=enum_column(ExtensionRequestStatus, 20)
    )
    granted_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str | None = Field(default=None, sa_type=sa.Text, description="The coordinator's answer.")
    submission_id: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by_id: int | None = Field(default=None, foreign_key="users.id")


class ExtensionRequestRead(SQLModel):
    id: int
    round_id: int
    task_id: int
    organisation_key: str
    organisation_name: str
    requested_by: str
    deadline_then: datetime
    wanted_deadline: datetime
    reason: str
    status: ExtensionRequestStatus
    granted_deadline: datetime | None
    note: str | None
    created_at: datetime
    decided_at: datetime | None


class ExtensionGrant(SQLModel):
    deadline: AwareDatetime | None = Field(default=None, description="Omitted: the date asked for.")
    note: Text | None = Field(default=None, max_length=5000)


class ExtensionRefusal(SQLModel):
    note: Text = Field(min_length=3, max_length=5000, description="Why; the focal point is told.")

    @field_validator("note", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value
