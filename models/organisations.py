"""Organisations in the stakeholder registry and their contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import AfterValidator, StringConstraints
from sqlmodel import Field, SQLModel

from models.contacts import EmailAddress
from models.enums import Language, OrganisationKind
from models.text import OneLine
from models.types import UTCDateTime, enum_column, utcnow

KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,79}$"
OrganisationKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]


def _check_zone(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Tirane)") from exc
    return value.strip()


TimeZoneName = Annotated[str | None, AfterValidator(_check_zone)]


class OrganisationBase(SQLModel):
    name_en: OneLine = Field(min_length=1, max_length=300)
    name_sq: OneLine = Field(default="", max_length=300)
    kind: OrganisationKind = Field(sa_type=enum_column(OrganisationKind, 30))
    focal_point_name: OneLine = Field(default="", max_length=300)
    focal_point_email: EmailAddress = Field(max_length=320, sa_type=sa.String(320))
    alternate_name: OneLine = Field(default="", max_length=300)
    alternate_email: EmailAddress | None = Field(default=None, max_length=320, sa_type=sa.String(320))
    escalation_email: EmailAddress | None = Field(default=None, max_length=320, sa_type=sa.String(320))
    language: Language = Field(default=Language.sq, sa_type=enum_column(Language, 5))
    timezone: TimeZoneName = Field(
        default=None, max_length=64, sa_type=sa.String(64), description="Omitted: the round's time zone."
    )


class OrganisationCreate(OrganisationBase):
    key: OrganisationKey = Field(description="Stable registry key, e.g. ministry-of-interior.")


class OrganisationUpdate(SQLModel):
    name_en: OneLine | None = Field(default=None, min_length=1, max_length=300)
    name_sq: OneLine | None = Field(default=None, max_length=300)
    kind: OrganisationKind | None = None
    focal_point_name: OneLine | None = Field(default=None, max_length=300)
    focal_point_email: EmailAddress | None = Field(default=None, max_length=320)
    alternate_name: OneLine | None = Field(default=None, max_length=300)
    alternate_email: EmailAddress | None = Field(default=None, max_length=320)
    escalation_email: EmailAddress | None = Field(default=None, max_length=320)
    language: Language | None = None
    timezone: TimeZoneName = Field(default=None, max_length=64)


class Organisation(OrganisationBase, table=True):
    __tablename__ = "organisations"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=80, unique=True, index=True)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OrganisationRead(OrganisationBase):
    id: int
    key: str
    archived_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ImportRejected(SQLModel):
    """A line of an imported file that cannot be imported, and why (one entry per problem)."""

    line: int = Field(description="The line of a CSV file, the row of a spreadsheet.")
    reason: str


class FieldChange(SQLModel):
    field: str
    old: str | None
    new: str | None


class ImportedOrganisation(SQLModel):
    """An organisation the file adds to the registry."""

    key: str
    name_en: str
    kind: str


class ImportChange(SQLModel):
    """An organisation the file changes: each field as it is and as it will be."""

    key: str
    name_en: str
    changes: list[FieldChange]
    restored: bool = Field(default=False, description="Archived, and brought back by the file.")


class OpenRoundTouched(SQLModel):
    """A contact of an open task whose address the file changes. The task's link keeps the contact it
    has unless the import is confirmed for open rounds (`confirm_open_rounds`)."""

    round_id: int
    round_title: str
    organisation_key: str
    organisation_name: str
    role: str = Field(description="focal_point or alternate")
    current_email: str | None = Field(description="Who the open task's link is for now.")
    new_email: str | None = Field(description="The registry's new address; null: removed from the registry.")
    replaceable: bool = Field(
        description="Whether confirming puts the new contact in place (false for a contact removed from "
        "the registry: the task keeps that link)."
    )


class ImportResult(SQLModel):
    """What an import did, or, for a dry run (the preview), what it would do: nothing is saved then."""

    created: int
    updated: int
    unchanged: int = 0
    dry_run: bool = False
    format: str = Field(default="csv", description="csv or xlsx")
    sha256: str = Field(default="", description="SHA-256 of the file as uploaded.")
    plan: str = Field(
        default="",
        description="A digest of what the import would change; confirming a preview with it refuses to "
        "apply anything else (the registry changed meanwhile).",
    )
    ignored_columns: list[str] = Field(default_factory=list, description="Columns the import does not know.")
    rejected: list[ImportRejected] = Field(default_factory=list)
    open_rounds_touched: list[OpenRoundTouched] = Field(default_factory=list)
    open_task_contacts_changed: int = Field(
        default=0, description="Contacts of open tasks replaced (confirmed for open rounds)."
    )
    created_organisations: list[ImportedOrganisation] = Field(default_factory=list)
    updated_organisations: list[ImportChange] = Field(default_factory=list)


class OrganisationPage(SQLModel):
    """One page of the registry as searched and filtered."""

    organisations: list[OrganisationRead]
    total: int = Field(description="Organisations that match, on every page.")
    page: int
    page_size: int
    by_kind: dict[str, int] = Field(description="Matches of each kind, the kind filter left aside.")

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))
