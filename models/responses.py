"""The coordinator's answers to comments, the reusable answer texts, and what clearance of a draft needs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import computed_field, field_validator, model_validator
from sqlmodel import Field, SQLModel

from models.enums import ConsultationRole, ObjectionState, ResponseKind
from models.text import OneLine, Text, has_bidi_controls
from models.types import UTCDateTime, enum_column, utcnow

NEEDS_JUSTIFICATION = frozenset({ResponseKind.rejected, ResponseKind.partially_accepted})


class ResponseBase(SQLModel):
    response: ResponseKind = Field(sa_type=enum_column(ResponseKind, 30))
    justification: Text = Field(default="", max_length=20_000, sa_type=sa.Text)
    new_wording: Text | None = Field(default=None, max_length=20_000, sa_type=sa.Text)

    @field_validator("justification", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("new_wording", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="after")
    def _justified(self) -> ResponseBase:
        if self.response in NEEDS_JUSTIFICATION and not self.justification:
            raise ValueError(
                f"a {self.response.replace('_', ' ')} comment needs a justification: say why to its author"
            )
        return self


class ResponseSet(ResponseBase):
    """`PUT /api/v1/comments/{id}/response`: the answer to one comment (a draft until published)."""


class BulkResponse(ResponseBase):
    """`POST /api/v1/rounds/{id}/responses`: one answer to several similar comments."""

    comment_ids: list[int] = Field(min_length=1, max_length=1000)


class CommentResponse(ResponseBase, table=True):
    """The coordinator's answer to one comment. Drafted privately; published with the round's others."""

    __tablename__ = "comment_responses"

    id: int | None = Field(default=None, primary_key=True)
    comment_id: int = Field(foreign_key="comments.id", unique=True)
    round_id: int = Field(foreign_key="rounds.id", index=True)
    comment_revision: int = Field(description="The revision of the comment that was answered.")
    answer_text_id: int | None = Field(default=None, foreign_key="answer_texts.id")
    drafted_by_id: int | None = Field(default=None, foreign_key="users.id")
    drafted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    published_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="When the organisation was told; None: a draft."
    )


class CommentResponseRead(ResponseBase):
    comment_id: int
    drafted_at: datetime
    published_at: datetime | None
    stale: bool = Field(default=False, description="The comment was edited after this answer was drafted.")


class AnswerTextBase(SQLModel):
    title: OneLine = Field(min_length=2, max_length=200)
    response: ResponseKind = Field(sa_type=enum_column(ResponseKind, 30))
    text: Text = Field(min_length=2, max_length=20_000, sa_type=sa.Text)

    @field_validator("title", "text", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class AnswerTextCreate(AnswerTextBase):
    pass


class AnswerText(AnswerTextBase, table=True):
    """A reusable answer ("Outside the scope of this strategy; see the Law on Foreigners")."""

    __tablename__ = "answer_texts"

    id: int | None = Field(default=None, primary_key=True)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AnswerTextRead(AnswerTextBase):
    id: int
    created_at: datetime


class ObjectionRead(SQLModel):
    """One objection in the round's register."""

    comment_id: int
    organisation_key: str
    organisation_name: str
    role: ConsultationRole
    section: str
    paragraph: str | None
    text: str
    state: ObjectionState
    response: ResponseKind | None
    justification: str | None

    @computed_field(  # type: ignore[prop-decorator]
        description="The objection holds hidden direction characters, kept as typed: show them as markers."
    )
    @property
    def has_bidi_controls(self) -> bool:
        return has_bidi_controls(self.text)


class Clearance(SQLModel):
    """Whether the draft is cleared: every approver approved and no objection stands."""

    cleared: bool
    blocking: list[str] = Field(description="What stands in the way, one sentence each.")
    approvers: int = 0
    approved: int = 0
    objections_open: int = 0
    objections_maintained: int = 0


class RoundCommentRead(SQLModel):
    """A comment as the coordinator answers it: `GET /api/v1/rounds/{id}/comments`."""

    id: int
    organisation_key: str
    organisation_name: str
    role: ConsultationRole
    section: str
    paragraph: str | None
    type: str = Field(description="general, editorial, substantive or legal")
    weight: str = Field(description="objection, proposal or remark")
    text: str
    proposed_wording: str | None
    status: str = Field(description="active, or withdrawn by its author")
    revision: int
    author_email: str
    created_at: datetime
    updated_at: datetime
    response: CommentResponseRead | None

    @computed_field(  # type: ignore[prop-decorator]
        description="The comment or its proposed wording holds hidden direction characters (U+202E and "
        "its kin), kept as typed: show them as visible markers, never obey them."
    )
    @property
    def has_bidi_controls(self) -> bool:
        return has_bidi_controls(self.text) or has_bidi_controls(self.proposed_wording)


class PublicationRead(SQLModel):
    """The answer to `POST /api/v1/rounds/{id}/responses/publish`."""

    round_id: int
    published: int = Field(description="Answers published now.")
    letters: int = Field(
        description="Feedback letters put in the outbox, one per contact of each organisation."
    )
    organisations: int
    published_at: datetime
