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
    name_en: str = Field(min_length=1, max_length=300)
    name_sq: str = Field(default="", max_length=300)
    kind: OrganisationKind = Field(sa_type=enum_column(OrganisationKind, 30))
    focal_point_name: str = Field(default="", max_length=300)
    focal_point_email: EmailAddress = Field(max_length=320, sa_type=sa.String(320))
    alternate_name: str = Field(default="", max_length=300)
    alternate_email: EmailAddress | None = Field(default=None, max_length=320, sa_type=sa.String(320))
    escalation_email: EmailAddress | None = Field(default=None, max_length=320, sa_type=sa.String(320))
    language: Language = Field(default=Language.sq, sa_type=enum_column(Language, 5))
    timezone: TimeZoneName = Field(
        default=None, max_length=64, sa_type=sa.String(64), description="Omitted: the round's time zone."
    )


class OrganisationCreate(OrganisationBase):
    key: OrganisationKey = Field(description="Stable registry key, e.g. ministry-of-interior.")


class OrganisationUpdate(SQLModel):
    name_en: str | None = Field(default=None, min_length=1, max_length=300)
    name_sq: str | None = Field(default=None, max_length=300)
    kind: OrganisationKind | None = None
    focal_point_name: str | None = Field(default=None, max_length=300)
    focal_point_email: EmailAddress | None = Field(default=None, max_length=320)
    alternate_name: str | None = Field(default=None, max_length=300)
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


class ImportResult(SQLModel):
    created: int
    updated: int
    unchanged: int = 0
