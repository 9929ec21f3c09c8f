"""Drafts under consultation: import a Markdown or Word file as a document, add revisions, read them."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.documents import (
    Document,
    DocumentRead,
    DocumentVersion,
    DocumentVersionRead,
    Section,
    SectionRead,
)
from models.enums import ActorKind, DraftFormat
from models.text import line_problem
from services.audit import trail
from services.db import transactional
from services.drafts import ParsedDraft, parse_docx, parse_markdown
from services.drafts.rendering import render_markdown_html, render_section_html
from services.errors import InvalidInput, NotFound, PayloadTooLarge
from services.text import decode_utf8

MAX_DRAFT_BYTES = 10 * 1024 * 1024
MAX_TITLE_LENGTH = 500
MAX_FILENAME_LENGTH = 300
PDF_SIGNATURE = b"%PDF-"
"""How a PDF begins: what a draft cannot be, whatever its name says (its text is not structured)."""
FORMATS_BY_EXTENSION = {
    ".md": DraftFormat.markdown,
    ".markdown": DraftFormat.markdown,
    ".txt": DraftFormat.markdown,
    ".docx": DraftFormat.docx,
}


@transactional
async def create_document(
    session: AsyncSession, *, title: str, filename: str, content: bytes, actor: Actor
) -> DocumentRead:
    """Import a draft as a new document with version 1. An empty title takes the draft's own `#` title."""
    filename, source_format, draft = await _parse_off_the_loop(filename=filename, content=content)
    title = " ".join(title.split()) or draft.title
    if not title:
        raise InvalidInput(
            "Give the document a title: the draft has no title heading ('# ' or Word 'Title')."
        )
    if len(title) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"The title is longer than {MAX_TITLE_LENGTH} characters.")
    problem = line_problem(title)
    if problem is not None:
        raise InvalidInput(f"title: {problem.message()}")

    document = Document(title=title, created_by_id=_user_id(actor))
    session.add(document)
    await session.flush()
    assert document.id is not None
    version = await _add_version(
        session, document_id=document.id, number=1, filename=filename, source_format=source_format,
        content=content, draft=draft, actor=actor,
    )  # fmt: skip
    await trail.append(session, actor=actor, action="document.imported", data=_audit_data(version, filename))
    (result,) = await _read_documents(session, [document])
    await session.commit()
    return result


@transactional
async def add_version(
    session: AsyncSession, *, document_id: int, filename: str, content: bytes, actor: Actor
) -> DocumentRead:
    """Add a revised draft (for the next round) as the document's next version."""
    filename, source_format, draft = await _parse_off_the_loop(filename=filename, content=content)
    # Locking the document serialises concurrent uploads of a revision (PostgreSQL; SQLite writes queue).
    document = (
        await session.exec(select(Document).where(Document.id == document_id).with_for_update())
    ).one_or_none()
    if document is None:
        raise NotFound(f"Document {document_id} does not exist.")
    latest = (
        await session.exec(
            select(func.max(DocumentVersion.number)).where(DocumentVersion.document_id == document_id)
        )
    ).one()
    version = await _add_version(
        session, document_id=document_id, number=(latest or 0) + 1, filename=filename,
        source_format=source_format, content=content, draft=draft, actor=actor,
    )  # fmt: skip
    await trail.append(
        session, actor=actor, action="document.version_added", data=_audit_data(version, filename)
    )
    (result,) = await _read_documents(session, [document])
    await session.commit()
    return result


async def get_document(session: AsyncSession, *, document_id: int) -> DocumentRead:
    document = await session.get(Document, document_id)
    if document is None:
        raise NotFound(f"Document {document_id} does not exist.")
    return (await _read_documents(session, [document]))[0]


async def list_documents(session: AsyncSession) -> list[DocumentRead]:
    """Every document, newest first, each with its versions (oldest first) and their sections."""
    documents = (
        await session.exec(
            select(Document).order_by(col(Document.created_at).desc(), col(Document.id).desc())
        )
    ).all()
    return await _read_documents(session, documents)


async def sections_of_version(session: AsyncSession, *, version_id: int) -> list[Section]:
    """The full sections (text included) of a version, in document order."""
    if await session.get(DocumentVersion, version_id) is None:
        raise NotFound(f"Document version {version_id} does not exist.")
    query = select(Section).where(Section.document_version_id == version_id).order_by(col(Section.position))
    return list((await session.exec(query)).all())


async def _parse_off_the_loop(*, filename: str, content: bytes) -> tuple[str, DraftFormat, ParsedDraft]:
    """`_read_draft` in a worker thread, before any transaction begins: a long draft takes a while to parse,
    and meanwhile the event loop goes on serving every other request, and no connection is held."""
    return await asyncio.to_thread(_read_draft, filename, content)


def _read_draft(filename: str, content: bytes) -> tuple[str, DraftFormat, ParsedDraft]:
    """Check the upload and parse it, before anything is written."""
    name = PureWindowsPath(filename.strip()).name  # browsers may send a full Windows path
    if not name:
        raise InvalidInput("The upload has no file name.")
    if len(name) > MAX_FILENAME_LENGTH:
        raise InvalidInput(f"The file name is longer than {MAX_FILENAME_LENGTH} characters.")
    problem = line_problem(name)
    if problem is not None:
        raise InvalidInput(f"file name: {problem.message()}")
    source_format = FORMATS_BY_EXTENSION.get(PureWindowsPath(name).suffix.lower())
    if content.startswith(PDF_SIGNATURE) or name.lower().endswith(".pdf"):
        raise InvalidInput(
            f"'{name}' is a PDF file, which is not a draft this service can read: upload the Word (.docx) "
            "or Markdown (.md) original instead."
        )
    if source_format is None:
        accepted = ", ".join(FORMATS_BY_EXTENSION)
        raise InvalidInput(f"'{name}' is not a draft this service can read: upload one of {accepted}.")
    if len(content) > MAX_DRAFT_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_DRAFT_BYTES // (1024 * 1024)} MB.")
    if not content:
        raise InvalidInput(f"'{name}' is empty.")
    draft = (
        parse_docx(content)
        if source_format is DraftFormat.docx
        else parse_markdown(decode_utf8(content, what=f"'{name}'", hint="save it with UTF-8 encoding"))
    )
    if len(draft.title) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"The draft's title is longer than {MAX_TITLE_LENGTH} characters.")
    return name, source_format, draft


async def _add_version(
    session: AsyncSession,
    *,
    document_id: int,
    number: int,
    filename: str,
    source_format: DraftFormat,
    content: bytes,
    draft: ParsedDraft,
    actor: Actor,
) -> tuple[DocumentVersion, list[Section]]:
    version = DocumentVersion(
        document_id=document_id,
        number=number,
        source_filename=filename,
        source_format=source_format,
        source_sha256=hashlib.sha256(content).hexdigest(),
        title=draft.title,
        preamble=draft.preamble,
        created_by_id=_user_id(actor),
    )
    session.add(version)
    await session.flush()
    assert version.id is not None
    sections = [
        Section(
            document_version_id=version.id,
            position=position,
            number=parsed.number,
            heading=parsed.heading,
            text=parsed.text,
            sha256=parsed.sha256,
            paragraphs=list(parsed.paragraphs),
        )
        for position, parsed in enumerate(draft.sections, start=1)
    ]
    session.add_all(sections)
    await session.flush()
    return version, sections


def _audit_data(written: tuple[DocumentVersion, list[Section]], filename: str) -> dict[str, object]:
    version, sections = written
    return {
        "document_id": version.document_id,
        "version_id": version.id,
        "version": version.number,
        "filename": filename,
        "source_format": str(version.source_format),
        "source_sha256": version.source_sha256,
        "sections": [{"number": section.number, "sha256": section.sha256} for section in sections],
    }


def _user_id(actor: Actor) -> int | None:
    """The signed-in user behind the action, recorded on the rows (the audit event names any actor)."""
    if actor.kind == ActorKind.user and actor.id.isdigit():
        return int(actor.id)
    return None


async def _read_documents(session: AsyncSession, documents: Sequence[Document]) -> list[DocumentRead]:
    """Documents with versions and section summaries, in three queries whatever their number."""
    if not documents:
        return []
    document_ids = [document.id for document in documents]
    versions = (
        await session.exec(
            select(DocumentVersion)
            .where(col(DocumentVersion.document_id).in_(document_ids))
            .order_by(col(DocumentVersion.document_id), col(DocumentVersion.number))
        )
    ).all()
    sections = await _section_summaries(session, [version.id for version in versions if version.id])
    versions_by_document: dict[int, list[DocumentVersionRead]] = defaultdict(list)
    for version in versions:
        assert version.id is not None
        versions_by_document[version.document_id].append(_version_read(version, sections[version.id]))
    return [
        DocumentRead(
            id=document.id,
            title=document.title,
            created_at=document.created_at,
            versions=versions_by_document[document.id],
        )
        for document in documents
        if document.id is not None
    ]


async def _section_summaries(session: AsyncSession, version_ids: list[int]) -> dict[int, list[SectionRead]]:
    """Section summaries by version, without loading the section texts."""
    summaries: dict[int, list[SectionRead]] = defaultdict(list)
    if not version_ids:
        return summaries
    query = (
        select(Section)
        .options(defer(Section.text))  # type: ignore[arg-type]
        .where(col(Section.document_version_id).in_(version_ids))
        .order_by(col(Section.document_version_id), col(Section.position))
    )
    for section in (await session.exec(query)).all():
        summaries[section.document_version_id].append(SectionRead.model_validate(section))
    return summaries


def _version_read(version: DocumentVersion, sections: list[SectionRead]) -> DocumentVersionRead:
    assert version.id is not None
    return DocumentVersionRead(
        id=version.id,
        number=version.number,
        source_filename=version.source_filename,
        source_format=version.source_format,
        source_sha256=version.source_sha256,
        title=version.title,
        created_at=version.created_at,
        sections=sections,
    )


@dataclass(frozen=True)
class SectionView:
    id: int
    number: str
    heading: str
    sha256: str
    paragraphs: tuple[str, ...]
    html: str


@dataclass(frozen=True)
class DraftView:
    """A draft version as the review pages show it, sections in document order. A version and its
    sections are never changed once uploaded (a revised draft is a new version), so it is read and
    rendered once per process and engine rather than on every page and every write."""

    title: str
    preamble_html: str
    sections: dict[int, SectionView]

    def assigned(self, section_ids: Iterable[int]) -> list[SectionView]:
        wanted = set(section_ids)
        return [section for section_id, section in self.sections.items() if section_id in wanted]


_DRAFT_CACHE_SIZE = 64


# Keyed by engine: ids are only unique within one database, and a process may use several (the tests).
_drafts: WeakKeyDictionary[Engine, dict[int, DraftView]] = WeakKeyDictionary()


async def draft_view(session: AsyncSession, *, version_id: int) -> DraftView:
    cache = _drafts.setdefault(session.get_bind().engine, {})
    cached = cache.get(version_id)
    if cached is not None:
        return cached
    version = await session.get(DocumentVersion, version_id)
    assert version is not None  # a round's version is a foreign key
    sections = await session.exec(
        select(Section).where(Section.document_version_id == version_id).order_by(col(Section.position))
    )
    view = DraftView(
        title=version.title,
        preamble_html=render_markdown_html(version.preamble) if version.preamble else "",
        sections={
            section.id or 0: SectionView(
                id=section.id or 0,
                number=section.number,
                heading=section.heading,
                sha256=section.sha256,
                paragraphs=tuple(section.paragraphs),
                html=render_section_html(section.text),
            )
            for section in sections
        },
    )
    if len(cache) >= _DRAFT_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[version_id] = view
    return view
