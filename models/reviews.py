"""What focal points do through their links: comments and sign-offs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import computed_field, field_validator
from sqlmodel import Field, SQLModel

from models.contacts import EmailAddress
from models.enums import (
    CommentKind,
    CommentStatus,
    CommentWeight,
    ContactRole,
    Decision,
    SignOffVerification,
)
from models.organisations import Organisation
from models.text import OneLine, Text, has_bidi_controls
from models.types import UTCDateTime, enum_column, utcnow


class AccessLink(SQLModel, table=True):
    """One personal review link per contact of a task.

    It is opened by a token of 256 random bits made when an email carrying the link is delivered
    (LinkToken); only the token's SHA-256 is kept, so nobody with the database (or the servers' secrets)
    can open a review page or sign for an organisation. Every token of a link works until the link is
    revoked, so a message sent twice (a crash between the mail server accepting it and our record of
    that) carries a working link in both copies.
    """

    __tablename__ = "access_links"
    __table_args__ = (
        # One working focal point and one working alternate per task; delegates as many as handed to,
        # and revoked links stay on record beside their replacements.
        sa.Index(
            "ux_access_links_task_id_role_working",
            "task_id",
            "role",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL AND role != 'delegate'"),
            postgresql_where=sa.text("revoked_at IS NULL AND role != 'delegate'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=32, description="Public link id written to the audit trail.")
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    role: ContactRole = Field(sa_type=enum_column(ContactRole, 20))
    email: str = Field(max_length=320)
    name: str = Field(default="", max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    invited_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="When the mail server first accepted its invitation."
    )
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    handed_over_by: str | None = Field(
        default=None, max_length=32, description="For a delegate: the link of whoever handed the task over."
    )
    note: str | None = Field(
        default=None, sa_type=sa.Text, description="The handover's note to the colleague."
    )


class LinkToken(SQLModel, table=True):
    """A token that opens a link: made for one email at the moment it is delivered."""

    __tablename__ = "link_tokens"

    token_sha256: str = Field(primary_key=True, max_length=64)
    link_id: str = Field(foreign_key="access_links.id", max_length=32, index=True)
    outbox_id: int | None = Field(
        default=None, foreign_key="outbox.id", index=True, description="The email that carried it."
    )
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CommentBase(SQLModel):
    kind: CommentKind = Field(default=CommentKind.general, sa_type=enum_column(CommentKind, 20))
    weight: CommentWeight = Field(default=CommentWeight.remark, sa_type=enum_column(CommentWeight, 20))
    paragraph: OneLine | None = Field(default=None, max_length=40)
    body: Text = Field(min_length=1, max_length=20_000, sa_type=sa.Text)
    proposed_wording: Text | None = Field(default=None, max_length=20_000, sa_type=sa.Text)

    @field_validator("body")
    @classmethod
    def _body_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the comment is empty")
        return value

    @field_validator("paragraph", "proposed_wording")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()


class CommentCreate(CommentBase):
    section_id: int
    submission_id: str = Field(
        min_length=8,
        max_length=64,
        description="Form nonce; a repeated submission returns the first one.",
    )


class CommentUpdate(CommentBase):
    pass


class Comment(CommentBase, table=True):
    __tablename__ = "comments"
    __table_args__ = (sa.UniqueConstraint("task_id", "submission_id"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    section_id: int = Field(foreign_key="sections.id")
    status: CommentStatus = Field(default=CommentStatus.active, sa_type=enum_column(CommentStatus, 20))
    revision: int = Field(default=1)
    author_link_id: str = Field(foreign_key="access_links.id", max_length=32)
    author_email: str = Field(max_length=320)
    submission_id: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CommentRead(CommentBase):
    id: int
    task_id: int
    section_id: int
    section_number: str
    organisation_key: str
    status: CommentStatus
    revision: int
    author_email: str
    created_at: datetime
    updated_at: datetime

    @computed_field(  # type: ignore[prop-decorator]
        description="The comment or its proposed wording holds hidden direction characters (U+202E and "
        "its kin), kept as typed: show them as visible markers, never obey them."
    )
    @property
    def has_bidi_controls(self) -> bool:
        return has_bidi_controls(self.body) or has_bidi_controls(self.proposed_wording)


class SignOffBase(SQLModel):
    decision: Decision = Field(sa_type=enum_column(Decision, 30))
    statement: Text = Field(default="", max_length=10_000, sa_type=sa.Text)
    signer_name: OneLine = Field(min_length=2, max_length=300)
    signer_title: OneLine = Field(min_length=2, max_length=300)

    @field_validator("signer_name", "signer_title", "statement")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class SignOffCreate(SignOffBase):
    submission_id: str = Field(
        min_length=8,
        max_length=64,
        description="Form nonce; a repeated submission returns the first receipt.",
    )
    authorised: bool = Field(
        default=False,
        description="The signer declares they are authorised to sign for the organisation; refused without.",
    )


class SignOff(SignOffBase, table=True):
    __tablename__ = "sign_offs"
    __table_args__ = (
        # One standing sign-off per task; one reopened at the organisation's request stays, superseded.
        sa.Index(
            "ux_sign_offs_task_id_standing",
            "task_id",
            unique=True,
            sqlite_where=sa.text("superseded_at IS NULL"),
            postgresql_where=sa.text("superseded_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    link_id: str = Field(foreign_key="access_links.id", max_length=32)
    signer_email: str = Field(max_length=320)
    sections: list[dict[str, str]] = Field(
        sa_type=sa.JSON, description="[{number, heading, sha256}] of the exact texts reviewed."
    )
    submission_id: str = Field(max_length=64)
    signed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    audit_seq: int
    objections: list[int] = Field(
        default_factory=list, sa_type=sa.JSON, description="An objecting sign-off: its objection comments."
    )
    superseded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    superseded_reason: str | None = Field(default=None, sa_type=sa.Text)
    verified_by: SignOffVerification = Field(
        default=SignOffVerification.link_only, sa_type=enum_column(SignOffVerification, 20)
    )


class SignOffCode(SQLModel, table=True):
    """A code that confirms a sign-off, emailed to the signer's own address when they submit the form.

    The code is never stored: it is the HMAC, under the service's secret key, of `code_salt`, worked out
    when its email is rendered (services.hashing.sign_off_code) and again when it is entered. Whoever
    holds the link but not the mailbox (a forwarded invitation) cannot sign. The form waiting for the
    code is kept here, so the code confirms exactly what was submitted."""

    __tablename__ = "sign_off_codes"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="review_tasks.id", index=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    link_id: str = Field(foreign_key="access_links.id", max_length=32, index=True)
    code_salt: str = Field(max_length=64)
    pending: dict[str, str] = Field(
        sa_type=sa.JSON, description="The sign-off form waiting for the code (SignOffCreate's fields)."
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = Field(default=0, description="Wrong codes entered; at the limit the code is dead.")
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    superseded_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="A newer code of the same link replaced it."
    )


class SignOffRead(SignOffBase):
    id: int
    round_id: int
    task_id: int
    organisation_key: str
    organisation_name: str
    link_id: str
    signer_email: str
    sections: list[dict[str, str]]
    signed_at: datetime
    audit_seq: int
    objections: list[int] = Field(default_factory=list)
    superseded_at: datetime | None = Field(
        default=None, description="Reopened at the organisation's request; a later sign-off stands."
    )
    superseded_reason: str | None = None
    verified_by: SignOffVerification = Field(
        default=SignOffVerification.link_only,
        description="emailed_code: the signer entered the code sent to their address; link_only: the link.",
    )

    @classmethod
    def of(cls, sign_off: SignOff, organisation: Organisation) -> SignOffRead:
        return cls.model_validate(
            {
                **sign_off.model_dump(),
                "organisation_key": organisation.key,
                "organisation_name": organisation.name_en,
            }
        )


class HandoverCreate(SQLModel):
    """A colleague the focal point hands the task to."""

    name: OneLine = Field(min_length=2, max_length=300)
    email: EmailAddress = Field(max_length=320)
    note: Text | None = Field(default=None, max_length=2000)

    @field_validator("name", "note", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value
