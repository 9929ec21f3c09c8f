"""Inviting a round's organisations: a review link for each contact of each task, and its invitation email.

Decided when the round is launched, in the launch's transaction: the links and the outbox rows exist as
soon as the round is open, whether or not its scheduler is running yet. Issuing again finds what is
there and adds only what is missing, so the scheduler can repair a round launched by an older version.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, bindparam, insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.documents import Section
from models.enums import ContactRole, Language, MessageKind, OutboxStatus
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from models.rounds import ReviewTask, Round
from models.tables import ACCESS_LINKS, ORGANISATIONS, OUTBOX, REVIEW_TASKS
from models.types import utcnow
from models.users import User
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
    """Who signs the email: the name it comes from (its From:), so the two never disagree."""
    return settings.secretariat_name


async def issue(session: AsyncSession, *, round_: Round, settings: Settings) -> Issued:
    """Links for every task of the round that has none, and an invitation in the outbox for every link
    that has none, in the caller's transaction (the caller commits)."""
    assert round_.id is not None
    had_links = (
        await session.exec(select(AccessLink.id).where(AccessLink.round_id == round_.id).limit(1))
    ).first()
    new_links = await _issue_links(session, round_id=round_.id)
    shared = await _Shared.of(session, round_, settings)
    if had_links is None:
        # A launch: every link is new, and the invitations are those of the links just made.
        mails = [_invitation(link, shared) for link in new_links]
    else:
        mails = await _invitations_missing(session, shared)
    await outbox.enqueue(session, mails=mails)
    return Issued(links=len(new_links), invitations=len(mails))


@dataclass(frozen=True)
class _Contact:
    """A link, with what its invitation says of the task and the organisation."""

    link_id: str
    task_id: int
    role: ContactRole
    email: str
    name: str
    section_ids: list[int]
    organisation_name: str
    language: Language
    timezone: str | None
    deadline: datetime


_TASKS_WITHOUT_LINKS = (
    sa.select(
        REVIEW_TASKS.c.id,
        REVIEW_TASKS.c.section_ids,
        ORGANISATIONS.c.key,
        ORGANISATIONS.c.name_en,
        ORGANISATIONS.c.name_sq,
        ORGANISATIONS.c.language,
        ORGANISATIONS.c.focal_point_email,
        ORGANISATIONS.c.focal_point_name,
        ORGANISATIONS.c.alternate_email,
        ORGANISATIONS.c.alternate_name,
        ORGANISATIONS.c.timezone,
        REVIEW_TASKS.c.deadline,
    )
    .join(ORGANISATIONS, ORGANISATIONS.c.id == REVIEW_TASKS.c.organisation_id)
    .outerjoin(ACCESS_LINKS, ACCESS_LINKS.c.task_id == REVIEW_TASKS.c.id)
    .where(REVIEW_TASKS.c.round_id == bindparam("round_id"), ACCESS_LINKS.c.id.is_(None))
    .order_by(REVIEW_TASKS.c.id)
)


def local_name(language: str, name_en: str, name_sq: str) -> str:
    return (name_sq if language == Language.sq else "") or name_en


def organisation_name(organisation: Organisation, language: Language | str) -> str:
    """The organisation's name as an email in `language` calls it (the English one when it has no other)."""
    return local_name(language, organisation.name_en, organisation.name_sq)


async def _issue_links(session: AsyncSession, *, round_id: int) -> list[_Contact]:
    # Plain rows, not ORM objects: a national round issues thousands at once.
    connection = await session.connection()
    rows = (await connection.execute(_TASKS_WITHOUT_LINKS, {"round_id": round_id})).all()
    now = utcnow()
    issued: list[dict[str, object]] = []
    contacts: list[_Contact] = []
    events: list[NewEvent] = []
    for (
        task_id,
        section_ids,
        key,
        name_en,
        name_sq,
        language,
        fp_email,
        fp_name,
        alt_email,
        alt_name,
        timezone,
        deadline,
    ) in rows:
        people = [(ContactRole.focal_point, fp_email, fp_name)]
        if alt_email:
            people.append((ContactRole.alternate, alt_email, alt_name))
        task_links = [
            links.new_link_row(
                task_id=task_id, round_id=round_id, role=role, email=email, name=name, created_at=now
            )
            for role, email, name in people
        ]
        issued.extend(task_links)
        contacts.extend(
            _Contact(
                link_id=str(link["id"]),
                task_id=task_id,
                role=ContactRole(str(link["role"])),
                email=str(link["email"]),
                name=str(link["name"]),
                section_ids=section_ids,
                organisation_name=local_name(language, name_en, name_sq),
                language=Language(language),
                timezone=timezone,
                deadline=deadline,
            )
            for link in task_links
        )
        events.append(
            NewEvent(
                action="task.links_issued",
                actor=SYSTEM_ACTOR,
                round_id=round_id,
                task_id=task_id,
                data={
                    "organisation": key,
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
    return contacts


_LINK_CONTACTS = (
    sa.select(
        ACCESS_LINKS.c.id,
        ACCESS_LINKS.c.task_id,
        ACCESS_LINKS.c.role,
        ACCESS_LINKS.c.email,
        ACCESS_LINKS.c.name,
        REVIEW_TASKS.c.section_ids,
        ORGANISATIONS.c.name_en,
        ORGANISATIONS.c.name_sq,
        ORGANISATIONS.c.language,
        ORGANISATIONS.c.timezone,
        REVIEW_TASKS.c.deadline,
    )
    .join(REVIEW_TASKS, REVIEW_TASKS.c.id == ACCESS_LINKS.c.task_id)
    .join(ORGANISATIONS, ORGANISATIONS.c.id == REVIEW_TASKS.c.organisation_id)
)
_LINKS_WITHOUT_INVITATIONS = (
    _LINK_CONTACTS.outerjoin(
        OUTBOX,
        and_(OUTBOX.c.link_id == ACCESS_LINKS.c.id, OUTBOX.c.kind == MessageKind.invitation),
    )
    .where(
        ACCESS_LINKS.c.round_id == bindparam("round_id"),
        ACCESS_LINKS.c.revoked_at.is_(None),
        ACCESS_LINKS.c.role != ContactRole.delegate,
        OUTBOX.c.id.is_(None),
    )
    .order_by(ACCESS_LINKS.c.task_id, ACCESS_LINKS.c.role)
)
_LINKS_BY_ID = _LINK_CONTACTS.where(ACCESS_LINKS.c.id.in_(bindparam("ids", expanding=True))).order_by(
    ACCESS_LINKS.c.task_id, ACCESS_LINKS.c.role
)


def _contact(row: Any) -> _Contact:
    link_id, task_id, role, email, name, section_ids, name_en, name_sq, language, timezone, deadline = row
    return _Contact(
        link_id=link_id,
        task_id=task_id,
        role=ContactRole(role),
        email=email,
        name=name,
        section_ids=section_ids,
        organisation_name=local_name(language, name_en, name_sq),
        language=Language(language),
        timezone=timezone,
        deadline=deadline,
    )


async def _invitations_missing(session: AsyncSession, shared: _Shared) -> list[Mail]:
    connection = await session.connection()
    rows = await connection.execute(_LINKS_WITHOUT_INVITATIONS, {"round_id": shared.round_id})
    return [_invitation(_contact(row), shared) for row in rows]


async def invitations_for_links(
    session: AsyncSession, *, round_: Round, link_ids: list[str], key: str, settings: Settings
) -> list[Mail]:
    """Invitations to these links again (a resent link, a replaced contact, a reopened sign-off); `key` is
    formatted with each link's `link_id`, `task_id` and `role`, so each decision is made once."""
    if not link_ids:
        return []
    shared = await _Shared.of(session, round_, settings)
    connection = await session.connection()
    rows = await connection.execute(_LINKS_BY_ID, {"ids": link_ids})
    mails = []
    for row in rows:
        contact = _contact(row)
        invitation = _invitation(contact, shared)
        mails.append(
            dataclasses.replace(
                invitation,
                key=key.format(link_id=contact.link_id, task_id=contact.task_id, role=contact.role),
            )
        )
    return mails


@dataclass(frozen=True)
class _Shared:
    """What every invitation of a round shares, worked out once rather than per email."""

    round_id: int
    round_title: str
    timezone: str
    sender_name: str
    sections: dict[int, dict[str, str]]
    cover_message: str = ""
    coordinator_name: str = ""
    coordinator_email: str = ""
    deadline_texts: dict[tuple[Language, str, datetime], str] = field(default_factory=dict)

    def deadline_text(self, language: Language, timezone: str | None, deadline: datetime) -> str:
        """In the organisation's language and time zone (the round's when it has none)."""
        where = timezone or self.timezone
        if (language, where, deadline) not in self.deadline_texts:
            self.deadline_texts[language, where, deadline] = when_text(
                deadline, timezone=where, language=language
            )
        return self.deadline_texts[language, where, deadline]

    @classmethod
    async def of(cls, session: AsyncSession, round_: Round, settings: Settings) -> _Shared:
        sections = await session.exec(
            select(Section.id, Section.number, Section.heading).where(
                Section.document_version_id == round_.document_version_id
            )
        )
        # Whom a focal point asks: the round's contact, else the coordinator who created it.
        contact_name, contact_email = round_.contact_name or "", round_.contact_email or ""
        if not contact_email and round_.created_by_id is not None:
            creator = (
                await session.exec(select(User.full_name, User.email).where(User.id == round_.created_by_id))
            ).first()
            if creator:
                contact_name, contact_email = creator[0] or "", creator[1]
        return cls(
            round_id=round_.id or 0,
            round_title=round_.title,
            cover_message=(round_.cover_message or "").strip(),
            coordinator_name=" ".join(contact_name.split()),  # a name is one line, whatever was stored
            coordinator_email=contact_email,
            timezone=round_.timezone,
            sender_name=sender_name(settings),
            sections={
                section_id or 0: {"number": number, "heading": heading}
                for section_id, number, heading in sections
            },
        )


def _invitation(contact: _Contact, shared: _Shared) -> Mail:
    context: dict[str, Any] = {
        "round_title": shared.round_title,
        "organisation_name": contact.organisation_name,
        "contact_name": contact.name,
        "contact_role": str(contact.role),
        "deadline_text": shared.deadline_text(contact.language, contact.timezone, contact.deadline),
        "sections": [shared.sections[section_id] for section_id in contact.section_ids],
        "sender_name": shared.sender_name,
        "cover_message": shared.cover_message,
        "coordinator_name": shared.coordinator_name,
        "coordinator_email": shared.coordinator_email,
    }
    return Mail(
        key=invitation_key(contact.task_id, contact.role),
        kind=MessageKind.invitation,
        to_email=contact.email,
        to_name=contact.name,
        language=contact.language,
        context=context,
        round_id=shared.round_id,
        task_id=contact.task_id,
        link_id=contact.link_id,
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


async def example_invitation(
    session: AsyncSession,
    *,
    round_: Round,
    task: ReviewTask,
    organisation: Organisation,
    language: Language,
    settings: Settings,
) -> Mail:
    """The invitation the focal point of `task` would get in `language`, built as a launch builds it but
    for no link (the console's preview adds an example link in place of the personal one)."""
    contact = _Contact(
        link_id="",
        task_id=task.id or 0,
        role=ContactRole.focal_point,
        email=organisation.focal_point_email,
        name=organisation.focal_point_name,
        section_ids=task.section_ids,
        organisation_name=organisation_name(organisation, language),
        language=language,
        timezone=organisation.timezone,
        deadline=task.deadline,
    )
    return _invitation(contact, await _Shared.of(session, round_, settings))
