"""Importing drafts as documents and versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlmodel import col, func, select

from models.audit import Actor, AuditEvent
from models.documents import Document, DocumentRead, DocumentVersion, Section
from models.enums import ActorKind, DraftFormat, Role
from models.users import User
from services import documents
from services.db import Database
from services.errors import InvalidInput, NotFound, PayloadTooLarge

MARKDOWN = "draft-migration-governance-strategy.md"
WORD = "draft-migration-governance-strategy.docx"


@pytest.fixture
async def coordinator(db: Database) -> Actor:
    async with db.write_session() as session:
        user = User(email="secretariat@interior.gov.example", role=Role.coordinator)
        session.add(user)
        await session.commit()
        return Actor(kind=ActorKind.user, id=str(user.id), email=user.email)


async def count(db: Database, table: type) -> int:
    async with db.session() as session:
        return (await session.exec(select(func.count()).select_from(table))).one()


async def import_fixture(
    db: Database, fixtures_dir: Path, actor: Actor, name: str = MARKDOWN, title: str = ""
) -> DocumentRead:
    async with db.write_session() as session:
        return await documents.create_document(
            session, title=title, filename=name, content=(fixtures_dir / name).read_bytes(), actor=actor
        )


async def test_importing_the_markdown_draft(db: Database, fixtures_dir: Path, coordinator: Actor) -> None:
    content = (fixtures_dir / MARKDOWN).read_bytes()

    document = await import_fixture(db, fixtures_dir, coordinator)

    assert document.title.startswith("National Strategy on Migration Governance 2026")
    (version,) = document.versions
    assert version.number == 1
    assert version.source_format == DraftFormat.markdown
    assert version.source_filename == MARKDOWN
    assert version.source_sha256 == hashlib.sha256(content).hexdigest()
    assert [section.number for section in version.sections] == [*map(str, range(1, 13)), "Annex 1"]
    assert version.sections[3].heading == "Labour migration"
    assert version.sections[3].paragraphs == ["4.1", "4.2", "4.3", "4.4", "4.5"]
    assert all(section.id for section in version.sections)

    async with db.session() as session:
        stored = await session.get(Document, document.id)
        assert stored is not None
        assert stored.created_by_id == int(coordinator.id)
        sections = await documents.sections_of_version(session, version_id=version.id)
    assert [section.position for section in sections] == list(range(1, 14))
    assert sections[3].text.startswith("## 4. Labour migration")
    assert sections[3].sha256 == hashlib.sha256(sections[3].text.encode()).hexdigest()


async def test_the_import_is_audited_with_the_section_hashes(
    db: Database, fixtures_dir: Path, coordinator: Actor
) -> None:
    document = await import_fixture(db, fixtures_dir, coordinator)
    version = document.versions[0]

    async with db.session() as session:
        (event,) = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "document.imported"))
        ).all()
    assert event.actor_id == coordinator.id
    assert event.data["document_id"] == document.id
    assert event.data["version_id"] == version.id
    assert event.data["version"] == 1
    assert event.data["filename"] == MARKDOWN
    assert event.data["source_sha256"] == version.source_sha256
    assert event.data["sections"][3] == {"number": "4", "sha256": version.sections[3].sha256}


async def test_an_explicit_title_wins_over_the_drafts_own(
    db: Database, fixtures_dir: Path, coordinator: Actor
) -> None:
    document = await import_fixture(db, fixtures_dir, coordinator, title="  Migration strategy,  round 1 ")

    assert document.title == "Migration strategy, round 1"
    assert document.versions[0].title.startswith("National Strategy on Migration Governance")


async def test_the_word_draft_gives_the_same_sections(
    db: Database, fixtures_dir: Path, coordinator: Actor
) -> None:
    from_markdown = await import_fixture(db, fixtures_dir, coordinator)
    from_word = await import_fixture(db, fixtures_dir, coordinator, name=WORD)

    assert from_word.versions[0].source_format == DraftFormat.docx
    assert [(s.number, s.heading, s.paragraphs, s.sha256) for s in from_word.versions[0].sections] == [
        (s.number, s.heading, s.paragraphs, s.sha256) for s in from_markdown.versions[0].sections
    ]


async def test_a_revised_draft_becomes_version_two(
    db: Database, fixtures_dir: Path, coordinator: Actor
) -> None:
    document = await import_fixture(db, fixtures_dir, coordinator)
    revised = (fixtures_dir / MARKDOWN).read_text().replace("30 days", "20 days").encode()

    async with db.write_session() as session:
        updated = await documents.add_version(
            session, document_id=document.id, filename="strategy-v2.md", content=revised, actor=coordinator
        )

    assert [version.number for version in updated.versions] == [1, 2]
    first, second = updated.versions
    assert second.sections[3].sha256 != first.sections[3].sha256
    assert second.sections[4].sha256 == first.sections[4].sha256
    async with db.session() as session:
        events = (await session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all()
        assert await documents.get_document(session, document_id=document.id) == updated
    assert [event.action for event in events] == ["document.imported", "document.version_added"]
    assert events[1].data["version"] == 2
    assert events[1].data["version_id"] == second.id


async def test_a_revision_of_an_unknown_document_is_not_found(
    db: Database, fixtures_dir: Path, coordinator: Actor
) -> None:
    async with db.write_session() as session:
        with pytest.raises(NotFound):
            await documents.add_version(
                session, document_id=999, filename=MARKDOWN, content=b"## 1. One\n", actor=coordinator
            )
    assert await count(db, DocumentVersion) == 0


async def test_reading_documents_and_versions(db: Database, fixtures_dir: Path, coordinator: Actor) -> None:
    first = await import_fixture(db, fixtures_dir, coordinator)
    second = await import_fixture(db, fixtures_dir, coordinator, name=WORD, title="The Word copy")

    async with db.session() as session:
        listed = await documents.list_documents(session)
        with pytest.raises(NotFound):
            await documents.get_document(session, document_id=12345)
        with pytest.raises(NotFound):
            await documents.sections_of_version(session, version_id=12345)

    assert [document.id for document in listed] == [second.id, first.id]
    assert listed[1] == first


@pytest.mark.parametrize(
    ("filename", "content", "error", "message"),
    [
        ("strategy.pdf", b"%PDF", InvalidInput, r"is a PDF file, which is not a draft this service can read"),
        ("strategy.md", b"", InvalidInput, "is empty"),
        ("strategy.md", "## 1. Caf\u00e9\n".encode("latin-1"), InvalidInput, "not UTF-8 text"),
        ("strategy.md", b"# Title only\n", InvalidInput, "no sections"),
        ("strategy.md", b"## 1. One\n\n1.1 a\n\n1.1 b\n", InvalidInput, "appears twice"),
        ("strategy.docx", b"not a zip", InvalidInput, "Word document"),
        ("strategy.md", b"## 1. One\n" + b"x" * (10 * 1024 * 1024), PayloadTooLarge, "10 MB"),
    ],
)
async def test_bad_uploads_are_refused_and_nothing_is_written(
    db: Database, coordinator: Actor, filename: str, content: bytes, error: type[Exception], message: str
) -> None:
    async with db.write_session() as session:
        with pytest.raises(error, match=message):
            await documents.create_document(
                session, title="Strategy", filename=filename, content=content, actor=coordinator
            )

    for table in (Document, DocumentVersion, Section, AuditEvent):
        assert await count(db, table) == 0


async def test_a_draft_without_a_title_needs_one_given(db: Database, coordinator: Actor) -> None:
    async with db.write_session() as session:
        with pytest.raises(InvalidInput, match="Give the document a title"):
            await documents.create_document(
                session, title=" ", filename="untitled.md", content=b"## 1. One\n", actor=coordinator
            )
        created = await documents.create_document(
            session,
            title="Named",
            filename=r"C:\fakepath\untitled.md",
            content=b"## 1. One\n",
            actor=coordinator,
        )

    assert created.title == "Named"
    assert created.versions[0].source_filename == "untitled.md"
