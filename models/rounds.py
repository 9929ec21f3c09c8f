"""Consultation rounds and the review task each organisation gets."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import AwareDatetime, field_validator
from sqlmodel import Field, SQLModel

from models.enums import CloseReason, Decision, OrganisationKind, RoundStatus, TaskStatus
from models.types import UTCDateTime, enum_column, utcnow


class Round(SQLModel, table=True):
    __tablename__ = "rounds"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=500)
    document_version_id: int = Field(foreign_key="document_versions.id", index=True)
    deadline: datetime = Field(sa_type=UTCDateTime)
    status: RoundStatus = Field(default=RoundStatus.draft, sa_type=enum_column(RoundStatus, 20), index=True)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    launched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    close_reason: CloseReason | None = Field(default=None, sa_type=enum_column(CloseReason, 20))


class ReviewTask(SQLModel, table=True):
    __tablename__ = "review_tasks"
    __table_args__ = (
        sa.UniqueConstraint("round_id", "organisation_id"),
        # "Is anything of this round left to sign?" is asked on every sign-off.
        sa.Index("ix_review_tasks_round_id_status", "round_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    organisation_id: int = Field(foreign_key="organisations.id", index=True)
    status: TaskStatus = Field(default=TaskStatus.pending, sa_type=enum_column(TaskStatus, 20))
    section_ids: list[int] = Field(sa_type=sa.JSON, description="Sections this organisation must review.")
    invited_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision: Decision | None = Field(default=None, sa_type=enum_column(Decision, 30))


class RoundCreate(SQLModel):
    title: str = Field(min_length=3, max_length=500)
    document_version_id: int
    deadline: AwareDatetime = Field(description="ISO 8601 with a UTC offset, e.g. 2026-12-15T17:00:00+01:00.")
    organisation_keys: list[str] | None = Field(
        default=None, description="Registry keys to consult; omitted (and no kinds) means every organisation."
    )
    organisation_kinds: list[OrganisationKind] | None = Field(
        default=None, description="Consult every organisation of these kinds (added to organisation_keys)."
    )
    section_numbers: list[str] | None = Field(
        default=None, description='Sections every organisation reviews, e.g. ["4", "Annex 1"]; omitted = all.'
    )
    assignments: dict[str, list[str]] | None = Field(
        default=None, description="Per-organisation section numbers, overriding section_numbers for that key."
    )

    @field_validator("title", mode="before")
    @classmethod
    def _strip_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class TaskSummary(SQLModel):
    id: int
    organisation_key: str
    organisation_name: str
    organisation_kind: OrganisationKind
    status: TaskStatus
    section_numbers: list[str]
    comments: int
    decision: Decision | None
    invited_at: datetime | None
    completed_at: datetime | None
    undeliverable: list[str] = Field(
        default_factory=list, description="Contacts whose invitation the mail server refused, and why."
    )


class RoundCounts(SQLModel):
    organisations: int
    pending: int
    invited: int
    signed_off: int
    no_response: int
    comments: int


class RoundRead(SQLModel):
    id: int
    title: str
    status: RoundStatus
    document_version_id: int
    deadline: datetime
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    close_reason: CloseReason | None
    counts: RoundCounts
    tasks: list[TaskSummary]


class RoundListItem(SQLModel):
    id: int
    title: str
    status: RoundStatus
    deadline: datetime
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    organisations: int
    signed_off: int


class RoundLaunchRead(SQLModel):
    """The answer to a launch: the round's scheduler runs (it sends the invitations)."""

    id: int
    launched: bool = Field(description="False when the round was already open: nothing new was started.")
    workflow_id: str
