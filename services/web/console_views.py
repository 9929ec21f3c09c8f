"""What the coordinator console shows: read-only views that gather several reads into one page's data.

Nothing here writes; the console's changes go through the use cases in rounds, documents and organisations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.documents import Document, DocumentVersion, Section, SectionRead
from models.enums import OrganisationKind
from models.extensions import ExtensionRequestRead
from models.organisations import Organisation
from models.outbox import OutboxMessageRead
from models.reviews import SignOffRead
from models.rounds import RoundRead, TaskRead
from services import comments, dashboard, documents, reports
from services.dashboard import Dashboard
from services.procedures import Procedure, all_procedures


@dataclass(frozen=True)
class RoundOverview:
    """Everything the coordinator's round page shows: the dashboard (progress, a row per organisation
    with its actions, comments per section, the timeline), the sign-off register and the comments."""

    round: RoundRead
    dashboard: Dashboard
    document_id: int
    document_title: str
    version_number: int
    section_headings: dict[str, str]
    """Section number -> heading, in document order."""
    organisation_names: dict[str, str]
    """Organisation key -> English name, for every organisation of the round."""
    sign_offs: list[SignOffRead]
    comment_counts: dict[str, int]
    """Comments by status (active, withdrawn); the answers page lists them, a page at a time."""
    emails: dict[int | None, list[OutboxMessageRead]]
    """Every email of the round by task id (None: the round's own, such as the closing notice)."""
    tasks: dict[str, TaskRead] = field(default_factory=dict)
    """Organisation key -> its task's deadline, reminders and escalation."""
    requests: list[ExtensionRequestRead] = field(default_factory=list)
    """Requests for more time, newest first."""
    not_consulted: list[tuple[str, str]] = field(default_factory=list)
    """(key, name) of the registry's organisations the round does not consult, to add one."""


@dataclass(frozen=True)
class VersionChoice:
    """A draft version a new round can be opened on."""

    id: int
    document_id: int
    document_title: str
    number: int
    source_filename: str
    created_at: datetime
    sections: list[SectionRead]


@dataclass(frozen=True)
class RoundFormChoices:
    """What the new-round form offers: draft versions (newest first) and the registry by kind."""

    versions: list[VersionChoice]
    organisations_by_kind: dict[OrganisationKind, int]
    """Active organisations per kind, in the vocabulary's order; kinds without any are left out."""
    procedures: list[Procedure] = field(default_factory=lambda: list(all_procedures().values()))

    @property
    def organisations(self) -> int:
        return sum(self.organisations_by_kind.values())


async def round_overview(
    session: AsyncSession,
    *,
    round_id: int,
    query: str = "",
    status: str = "",
    page: int | None = None,
    focus: str | None = None,
) -> RoundOverview:
    """The round page: the dashboard (its table searched, filtered and paged as asked; `focus` the row
    an action was just taken on) and what the page shows below it."""
    board = await dashboard.build(
        session, round_id=round_id, query=query, status=status, page=page, focus=focus
    )
    detail = board.round
    version = await session.get(DocumentVersion, detail.document_version_id)
    assert version is not None  # a round's version is a foreign key
    document = await session.get(Document, version.document_id)
    assert document is not None
    headings = (
        await session.exec(
            select(Section.number, Section.heading)
            .where(Section.document_version_id == version.id)
            .order_by(col(Section.position))
        )
    ).all()
    consulted = {task.organisation_key for task in detail.tasks}
    return RoundOverview(
        round=detail,
        dashboard=board,
        document_id=document.id or 0,
        document_title=document.title,
        version_number=version.number,
        section_headings=dict(headings),
        organisation_names={task.organisation_key: task.organisation_name for task in detail.tasks},
        sign_offs=await reports.list_sign_offs(session, round_id=round_id),
        comment_counts=await comments.count_by_status(session, round_id=round_id),
        emails=board.emails,
        tasks=board.timings,
        requests=board.requests,
        not_consulted=[
            (key, name)
            for key, name in (
                await session.exec(
                    select(Organisation.key, Organisation.name_en)
                    .where(col(Organisation.archived_at).is_(None))
                    .order_by(col(Organisation.name_en))
                )
            ).all()
            if key not in consulted
        ],
    )


async def new_round_choices(session: AsyncSession) -> RoundFormChoices:
    versions = [
        VersionChoice(
            id=version.id,
            document_id=document.id,
            document_title=document.title,
            number=version.number,
            source_filename=version.source_filename,
            created_at=version.created_at,
            sections=version.sections,
        )
        for document in await documents.list_documents(session)
        for version in document.versions
    ]
    versions.sort(key=lambda version: (version.created_at, version.id), reverse=True)
    counts = dict(
        (
            await session.exec(
                select(Organisation.kind, func.count())
                .where(col(Organisation.archived_at).is_(None))
                .group_by(col(Organisation.kind))
            )
        ).all()
    )
    return RoundFormChoices(
        versions=versions,
        organisations_by_kind={kind: counts[kind] for kind in OrganisationKind if counts.get(kind)},
    )
