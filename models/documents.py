"""Drafts: a document has versions, a version has numbered sections."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.enums import DraftFormat
from models.types import UTCDateTime, enum_column, utcnow


class Document(SQLModel, table=True):
    __tablename__ = "documents"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=500)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DocumentVersion(SQLModel, table=True):
    __tablename__ = "document_versions"
    __table_args__ = (sa.UniqueConstraint("document_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="documents.id", index=True)
    number: int = Field(description="1 for the first upload, 2 for the revised draft of round 2, ...")
    source_filename: str = Field(max_length=300)
    source_format: DraftFormat = Field(sa_type=enum_column(DraftFormat, 20))
    source_sha256: str = Field(max_length=64)
    title: str = Field(default="", max_length=500, description="The draft's own top heading, if any.")
    preamble: str = Field(default="", sa_type=sa.Text)
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Section(SQLModel, table=True):
    __tablename__ = "sections"
    __table_args__ = (sa.UniqueConstraint("document_version_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    document_version_id: int = Field(foreign_key="document_versions.id", index=True)
    position: int
    number: str = Field(max_length=40, description='"4" or "Annex 1".')
    heading: str = Field(max_length=500)
    text: str = Field(sa_type=sa.Text, description="The section's Markdown, heading line included.")
    sha256: str = Field(max_length=64, description="SHA-256 of `text` as UTF-8.")
    paragraphs: list[str] = Field(
        default_factory=list, sa_type=sa.JSON, description="Numbered paragraphs in order, e.g. 4.1, 4.2."
    )


class SectionRead(SQLModel):
    id: int
    number: str
    heading: str
    sha256: str
    paragraphs: list[str]


class DocumentVersionRead(SQLModel):
    id: int
    number: int
    source_filename: str
    source_format: DraftFormat
    source_sha256: str
    title: str
    created_at: datetime
    sections: list[SectionRead]


class DocumentRead(SQLModel):
    id: int
    title: str
    created_at: datetime
    versions: list[DocumentVersionRead]
