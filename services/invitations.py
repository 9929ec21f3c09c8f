"""Inviting a round's organisations: a review link for each contact of each task, and its invitation email.

Decided when the round is launched, in the launch's transaction: the links and the outbox rows exist as
soon as the round is open, whether or not its scheduler is running yet. Issuing again finds what is
there and adds only what is missing, so the scheduler can repair a round launched by an older version.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.documents import Section
from models.enums import ContactRole, Language, MessageKind, OutboxStatus
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import links, outbox
from services.audit import trail
from services.audit.trail import NewEvent
from services.formatting import when_text
from services.outbox import Mail
from services.settings import Settings


@dataclass(frozen=True)
class Issued:
    links: int
    invitations: int


def invitation_key(task_id: int, role: ContactRole | str) -> str:
    return f"invitation:{task_id}:{role}"


def sender_name(settings: Settings) -> str:
    name, _address = parseaddr(settings.mail_from)
    return name or "The consultation coordinator"


async def issue(session: AsyncSession, *, round_: Round, settings: Settings) -> Issued:
    """Links for every task of the round that has none, and an invitation in the outbox for every link
    that has none, in the caller's transaction (the caller commits)."""
    assert round_.id is not None
    new_links = await _issue_links(session, round_id=round_.id)
    mails = await _invitations_missing(session, round_=round_, settings=settings)
    await outbox.enqueue(session, mails=mails)
    return Issued(links=new_links, invitations=len(mails))


async def _issue_links(session: AsyncSession, *, round_id: int) -> int:
    rows = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .outerjoin(AccessLink, col(AccessLink.task_id) == ReviewTask.id)
            .where(ReviewTask.round_id == round_id, col(AccessLink.id).is_(None))
        )
    ).all()
    # Rows rather than ORM objects: a national round issues thousands at once.
    now = utcnow()
    issued: list[dict[str, object]] = []
    events: list[NewEvent] = []
    for task, organisation in rows:
        contacts = [(ContactRole.focal_point, organisation.focal_point_email, organisation.focal_point_name)]
        if organisation.alternate_email:
            contacts.append(
                (ContactRole.alternate, organisation.alternate_email, organisation.alternate_name)
            )
        task_links = [
            links.new_link_row(
                task_id=task.id or 0, round_id=round_id, role=role, email=email, name=name, created_at=now
            )
            for role, email, name in contacts
        ]
        issued.extend(task_links)
        events.append(
            NewEvent(
                action="task.links_issued",
                actor=SYSTEM_ACTOR,
                round_id=round_id,
                task_id=task.id,
                data={
                    "organisation": organisation.key,
                    "links": [
                        {"link_id": link["id"], "role": str(link["role"]), "email": link["email"]}
                        for link in task_links
                    ],
                },
            )
        )
    if issued:
        await session.exec(insert(AccessLink), params=issued)
    await trail.append_many(session, events=events)
    return len(issued)


async def _invitations_missing(session: AsyncSession, *, round_: Round, settings: Settings) -> list[Mail]:
    assert round_.id is not None
    rows = (
        await session.exec(
            select(AccessLink, ReviewTask, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .outerjoin(
                OutboxMessage,
                and_(
                    col(OutboxMessage.link_id) == AccessLink.id,
                    col(OutboxMessage.kind) == MessageKind.invitation,
                ),
            )
            .where(
                AccessLink.round_id == round_.id,
                col(AccessLink.revoked_at).is_(None),
                col(OutboxMessage.id).is_(None),
            )
            .order_by(col(AccessLink.task_id), col(AccessLink.role))
        )
    ).all()
    if not rows:
        return []
    sections = {
        section_id: {"number": number, "heading": heading}
        for section_id, number, heading in await session.exec(
            select(Section.id, Section.number, Section.heading).where(
                Section.document_version_id == round_.document_version_id
            )
        )
    }
    fixed = _Shared.of(round_, settings)
    return [
        _invitation(
            link, task, organisation, [sections[section_id] for section_id in task.section_ids], fixed
        )
        for link, task, organisation in rows
    ]


@dataclass(frozen=True)
class _Shared:
    """What every invitation of a round shares, worked out once rather than per email."""

    round_id: int
    round_title: str
    deadline_text: dict[Language, str]
    sender_name: str

    @classmethod
    def of(cls, round_: Round, settings: Settings) -> _Shared:
        return cls(
            round_id=round_.id or 0,
            round_title=round_.title,
            deadline_text={
                language: when_text(round_.deadline, timezone=settings.timezone, language=language)
                for language in Language
            },
            sender_name=sender_name(settings),
        )


def _invitation(
    link: AccessLink,
    task: ReviewTask,
    organisation: Organisation,
    sections: list[dict[str, str]],
    shared: _Shared,
) -> Mail:
    language = Language(organisation.language)
    local_name = organisation.name_sq if language == Language.sq else ""
    context: dict[str, Any] = {
        "round_title": shared.round_title,
        "organisation_name": local_name or organisation.name_en,
        "contact_name": link.name,
        "contact_role": str(link.role),
        "deadline_text": shared.deadline_text[language],
        "sections": sections,
        "sender_name": shared.sender_name,
    }
    return Mail(
        key=invitation_key(task.id or 0, link.role),
        kind=MessageKind.invitation,
        to_email=link.email,
        to_name=link.name,
        language=language,
        context=context,
        round_id=shared.round_id,
        task_id=task.id,
        link_id=link.id,
    )


async def undeliverable(session: AsyncSession, *, round_id: int) -> dict[int, list[str]]:
    """Per task, the contacts whose invitation the mail server refused for good, and why."""
    refused: dict[int, list[str]] = {}
    for task_id, email, error in await session.exec(
        select(OutboxMessage.task_id, OutboxMessage.to_email, OutboxMessage.last_error).where(
            OutboxMessage.round_id == round_id,
            OutboxMessage.kind == MessageKind.invitation,
            OutboxMessage.status == OutboxStatus.failed,
        )
    ):
        if task_id is not None:
            refused.setdefault(task_id, []).append(f"{email}: {error}")
    return refused
