"""Consultation rounds and the review task each organisation gets."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator
from sqlmodel import Field, SQLModel

from models.contacts import EmailAddress
from models.enums import (
    CloseReason,
    ConsultationRole,
    ContactRole,
    Decision,
    ExtensionRequestStatus,
    OrganisationKind,
    ReminderStatus,
    RoundStatus,
    SilenceMeaning,
    TaskStatus,
)
from models.responses import Clearance
from models.text import OneLine, Text
from models.types import UTCDateTime, enum_column, utcnow

EARLIEST_REMINDER = time(7, 0)
LATEST_REMINDER = time(17, 0)
REMINDERS_UNTIL = time(19, 0)
"""A reminder that could not go out at its time goes out later that day, but not after this (local)."""


class ReminderPolicy(BaseModel):
    """When focal points are reminded: so many working days before their deadline, at a local time."""

    model_config = ConfigDict(extra="forbid")

    working_days_before: list[int] = Field(
        default_factory=lambda: [7, 2, 1], max_length=10, description="Each 1 to 60; [] sends no reminders."
    )
    at: str = Field(default="09:00", description="Local time of day, HH:MM, between 07:00 and 17:00.")
    text: Text = Field(default="", max_length=2000, description="The coordinator's words, added to each one.")

    @field_validator("working_days_before")
    @classmethod
    def _offsets(cls, value: list[int]) -> list[int]:
        if any(offset < 1 or offset > 60 for offset in value):
            raise ValueError("each reminder is 1 to 60 working days before the deadline")
        return sorted(set(value), reverse=True)

    @field_validator("at")
    @classmethod
    def _daytime(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}:\d{2}", value):
            raise ValueError("the time is HH:MM, e.g. 09:00")
        hour, minute = int(value[:2]), int(value[3:])
        if hour > 23 or minute > 59:
            raise ValueError("the time is HH:MM, e.g. 09:00")
        if not EARLIEST_REMINDER <= time(hour, minute) <= LATEST_REMINDER:
            raise ValueError("reminders go out in working hours: between 07:00 and 17:00")
        return value

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def clock(self) -> time:
        return time(int(self.at[:2]), int(self.at[3:]))


class Round(SQLModel, table=True):
    __tablename__ = "rounds"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=500)
    purpose: str = Field(default="", sa_type=sa.Text, description="What the consultation is for.")
    document_version_id: int = Field(foreign_key="document_versions.id", index=True)
    deadline: datetime = Field(sa_type=UTCDateTime)
    status: RoundStatus = Field(default=RoundStatus.draft, sa_type=enum_column(RoundStatus, 20), index=True)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    launched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    close_reason: CloseReason | None = Field(default=None, sa_type=enum_column(CloseReason, 20))
    close_note: str | None = Field(default=None, sa_type=sa.Text, description="The coordinator's reason.")
    procedure: str = Field(default="interministerial", max_length=40)
    jurisdiction: str = Field(default="AL", max_length=10)
    timezone: str = Field(default="Europe/Tirane", max_length=64)
    minimum_period_reason: str | None = Field(default=None, sa_type=sa.Text)
    grace_period_hours: int = Field(default=0)
    silence_means: SilenceMeaning = Field(
        default=SilenceMeaning.no_response, sa_type=enum_column(SilenceMeaning, 20)
    )
    reminder_policy: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    cover_message: str = Field(
        default="", sa_type=sa.Text, description="The coordinator's words in invitations."
    )
    contact_name: str = Field(default="", max_length=300, description="Who invitations come from.")
    contact_email: str | None = Field(
        default=None, max_length=320, description="Where replies to the round's email go (Reply-To)."
    )
    answers_published_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="The last publication of the coordinator's answers."
    )
    sign_off_code_required: bool = Field(
        default=True, description="A sign-off is confirmed by a code emailed to the signer's own address."
    )

    def reminders(self) -> ReminderPolicy:
        return ReminderPolicy.model_validate(self.reminder_policy or {})


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
    role: ConsultationRole = Field(
        default=ConsultationRole.consulted, sa_type=enum_column(ConsultationRole, 20)
    )
    status: TaskStatus = Field(default=TaskStatus.pending, sa_type=enum_column(TaskStatus, 20))
    section_ids: list[int] = Field(sa_type=sa.JSON, description="Sections this organisation must review.")
    invited_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision: Decision | None = Field(default=None, sa_type=enum_column(Decision, 30))
    deadline: datetime = Field(sa_type=UTCDateTime, description="The round's, or its own after an extension.")
    escalated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_activity_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TaskReminder(SQLModel, table=True):
    """A reminder of a task for one deadline: due so many working days before it. A row means it was
    decided (sent in that day's reminder to the task's contacts, or skipped); the key makes it once."""

    __tablename__ = "task_reminders"
    __table_args__ = (sa.UniqueConstraint("task_id", "deadline", "working_days_before"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    deadline: datetime = Field(sa_type=UTCDateTime, description="The deadline it was planned for.")
    working_days_before: int
    due_at: datetime = Field(sa_type=UTCDateTime, description="When it was due, local time turned UTC.")
    status: ReminderStatus = Field(sa_type=enum_column(ReminderStatus, 20))
    decided_at: datetime = Field(sa_type=UTCDateTime, description="The scheduler's time when decided.")
    outbox_keys: list[str] = Field(default_factory=list, sa_type=sa.JSON)


def default_role(kind: OrganisationKind) -> ConsultationRole:
    """Ministries approve; everyone else is consulted, unless the round says otherwise."""
    return ConsultationRole.approver if kind == OrganisationKind.ministry else ConsultationRole.consulted


class RoundCreate(SQLModel):
    title: OneLine = Field(min_length=3, max_length=500)
    purpose: Text = Field(default="", max_length=10_000, description="What the consultation is for.")
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
    procedure: str = Field(default="interministerial", description="interministerial | public_consultation")
    jurisdiction: str = Field(default="AL", description="Country whose public holidays are not working days.")
    timezone: str = Field(default="Europe/Tirane", description="The secretariat's IANA time zone.")
    minimum_period_reason: Text | None = Field(
        default=None, max_length=5000, description="Required when the period is shorter than the minimum."
    )
    grace_period_hours: int = Field(default=0, ge=0, le=168, description="Links still work this long after.")
    silence_means: SilenceMeaning = SilenceMeaning.no_response
    reminder_policy: ReminderPolicy | None = Field(
        default=None, description="Omitted: the procedure's (7, 2 and 1 working days before, at 09:00)."
    )
    roles: dict[str, ConsultationRole] | None = Field(
        default=None,
        description='{"organisation_key": "approver" | "consulted"}; omitted keys: ministries approve, '
        "others are consulted.",
    )
    cover_message: Text = Field(
        default="", max_length=5000, description="The coordinator's words to invitees."
    )
    contact_name: OneLine = Field(
        default="", max_length=300, description="The secretariat's name on its email."
    )
    contact_email: EmailAddress | None = Field(
        default=None, max_length=320, description="Replies to invitations go here (Reply-To)."
    )
    sign_off_code_required: bool = Field(
        default=True,
        description="Signing off asks for a 6-digit code emailed to the signer's own address, so that a "
        "forwarded link cannot sign for the organisation; false: the link alone signs.",
    )

    @field_validator(
        "title", "minimum_period_reason", "purpose", "cover_message", "contact_name", mode="before"
    )
    @classmethod
    def _strip_title(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class RoundUpdate(SQLModel):
    """A draft round changed before it is launched: only the fields given change.

    Who is consulted on what is worked out again when any of `document_version_id`, `organisation_keys`,
    `organisation_kinds`, `section_numbers`, `assignments` or `roles` is given: organisations kept keep
    their sections and role unless those are given (a new version: every section, unless given); new ones
    get `section_numbers` (else every section) and the default role of their kind."""

    title: OneLine | None = Field(default=None, min_length=3, max_length=500)
    purpose: Text | None = Field(default=None, max_length=10_000)
    document_version_id: int | None = None
    deadline: AwareDatetime | None = Field(default=None, description="ISO 8601 with a UTC offset.")
    organisation_keys: list[str] | None = Field(
        default=None, description="The organisations consulted from now on (with organisation_kinds)."
    )
    organisation_kinds: list[OrganisationKind] | None = None
    section_numbers: list[str] | None = Field(
        default=None, description="Sections every organisation without an assignment reviews."
    )
    assignments: dict[str, list[str]] | None = None
    procedure: str | None = None
    minimum_period_reason: Text | None = Field(default=None, max_length=5000)
    grace_period_hours: int | None = Field(default=None, ge=0, le=168)
    silence_means: SilenceMeaning | None = None
    reminder_policy: ReminderPolicy | None = None
    roles: dict[str, ConsultationRole] | None = None
    cover_message: Text | None = Field(default=None, max_length=5000)
    contact_name: OneLine | None = Field(default=None, max_length=300)
    contact_email: EmailAddress | None = Field(default=None, max_length=320, description="null clears it.")
    sign_off_code_required: bool | None = None

    @field_validator(
        "title", "minimum_period_reason", "purpose", "cover_message", "contact_name", mode="before"
    )
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class TaskSummary(SQLModel):
    id: int
    organisation_key: str
    organisation_name: str
    organisation_kind: OrganisationKind
    role: ConsultationRole = ConsultationRole.consulted
    status: TaskStatus
    section_numbers: list[str]
    comments: int
    decision: Decision | None
    invited_at: datetime | None
    completed_at: datetime | None
    deadline: datetime
    escalated_at: datetime | None = None
    undeliverable: list[str] = Field(
        default_factory=list, description="Contacts whose invitation the mail server refused, and why."
    )


class TaskRead(SQLModel):
    """A review task as the API lists it."""

    id: int
    organisation_key: str
    organisation_name: str
    status: TaskStatus
    deadline: datetime
    deadline_local: str = Field(description="The deadline in the organisation's time zone.")
    working_days_left: int
    reminders_sent: int
    last_reminder_at: datetime | None
    escalated_at: datetime | None
    invited_at: datetime | None
    last_activity_at: datetime | None
    completed_at: datetime | None
    decision: Decision | None
    comments: int
    extension_requests: list[TaskExtensionRequest] = Field(
        default_factory=list, description="Its requests for more time, oldest first, with their answers."
    )


class TaskExtensionRequest(SQLModel):
    id: int
    status: ExtensionRequestStatus
    wanted_deadline: datetime
    granted_deadline: datetime | None
    created_at: datetime


class RoundCounts(SQLModel):
    organisations: int
    pending: int
    invited: int
    commenting: int = 0
    signed_off: int
    overdue: int = 0
    no_response: int
    deemed_content: int = 0
    cancelled: int = 0
    comments: int


class RoundRead(SQLModel):
    id: int
    title: str
    purpose: str = ""
    status: RoundStatus
    document_version_id: int
    deadline: datetime
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    close_reason: CloseReason | None
    close_note: str | None = None
    procedure: str
    jurisdiction: str
    timezone: str
    minimum_period_reason: str | None
    grace_period_hours: int
    silence_means: SilenceMeaning
    reminder_policy: ReminderPolicy
    period_working_days: int = Field(description="Working days from launch (or today) to the deadline.")
    cover_message: str = ""
    contact_name: str = ""
    contact_email: str | None = None
    answers_published_at: datetime | None = None
    sign_off_code_required: bool = True
    clearance: Clearance
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


class ReasonGiven(SQLModel):
    """A coordinator's command that must say why (cancel, close early)."""

    reason: Text = Field(min_length=3, max_length=5000)

    @field_validator("reason", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class TaskAdd(SQLModel):
    """One more organisation for a round under way."""

    organisation_key: str = Field(max_length=80)
    deadline: AwareDatetime | None = Field(default=None, description="Omitted: the round's deadline.")
    section_numbers: list[str] | None = Field(default=None, description="Omitted: every section.")
    role: ConsultationRole | None = Field(
        default=None, description="Omitted: the default of its kind (ministries approve)."
    )


class ContactReplace(SQLModel):
    """Someone else in a contact's place for this round (the registry is not changed)."""

    role: ContactRole = Field(description="focal_point or alternate")
    email: EmailAddress = Field(max_length=320)
    name: OneLine = Field(default="", max_length=300)
    reason: Text = Field(min_length=3, max_length=5000)

    @field_validator("role")
    @classmethod
    def _not_a_delegate(cls, value: ContactRole) -> ContactRole:
        if value == ContactRole.delegate:
            raise ValueError("a delegate is named by the focal point who hands the task over, not replaced")
        return value

    @field_validator("name", "reason", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value
