"""People who sign in (coordinators, auditors, admins) and their credentials."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.contacts import EmailAddress
from models.enums import Role
from models.text import OneLine
from models.types import UTCDateTime, enum_column, utcnow


class CredentialKind(StrEnum):
    api = "api"  # bearer token for the JSON API
    console = "console"  # browser session cookie of the console


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    full_name: str = Field(default="", max_length=300)
    role: Role = Field(sa_type=enum_column(Role, 20))
    password_hash: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Credential(SQLModel, table=True):
    """An API token or a console session; only the SHA-256 of the secret is kept."""

    __tablename__ = "credentials"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    kind: CredentialKind = Field(sa_type=enum_column(CredentialKind, 10))
    secret_sha256: str = Field(max_length=64, unique=True, index=True)
    label: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Written at most once a minute per credential: a console session's idle clock, a token's last use."""


class CredentialRead(SQLModel):
    """An API token or console session as its owner (or an admin) sees it: never the secret."""

    id: int
    kind: CredentialKind
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreate(SQLModel):
    label: str = Field(
        min_length=1, max_length=200, description="What the token is for, e.g. 'nightly export'."
    )
    lifetime_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Days until the token expires: at most, and by default, api_token_lifetime_days.",
    )


class ApiTokenIssued(CredentialRead):
    token: str = Field(description="The secret, shown this once: only its SHA-256 is kept.")


class PasswordReset(SQLModel, table=True):
    """A password reset asked for by email. Its token is made when the message is delivered and only its
    SHA-256 is kept; it works once, for a short while, and only while it is the user's newest."""

    __tablename__ = "password_resets"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_sha256: str | None = Field(default=None, max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Superseded by a newer reset, or ended when the password changed."""


class UserCreate(SQLModel):
    email: EmailAddress
    role: Role
    full_name: OneLine = Field(default="", max_length=300)
    password: str | None = Field(default=None, min_length=10)


class UserRead(SQLModel):
    id: int
    email: str
    full_name: str
    role: Role


class SessionsEnded(SQLModel):
    ended: int = Field(description="Console sessions ended.")


class MeRead(SQLModel):
    """Whose API token this is."""

    user_id: int
    email: str
    role: Role


class SignInFailure(SQLModel, table=True):
    """A failed console sign-in, kept apart from the audit trail so that strangers cannot grow it."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (sa.Index("ix_sign_in_failures_email_ip_at", "email", "ip", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    ip: str = Field(default="", max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
