"""Telling people: invitations in batches over reused SMTP connections, and the round-closed notice.

Idempotent per message purpose: a link whose invitation is recorded as sent (or as permanently refused)
is never emailed again, and a batch first claims its links for a lease, so an overlapping retry sends
nothing twice. SMTP and the database are never held together: links are claimed, emails sent in chunks,
and each chunk's results recorded in one transaction. Only a crash between sending a chunk and recording
it repeats that chunk, after the lease, with new links (the earlier ones stop working).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.documents import Section
from models.enums import Language, MessageKind, MessageStatus, RoundStatus, TaskStatus
from models.messages import SentMessage
from models.organisations import Organisation
from models.reviews import AccessLink
from models.rounds import ReviewTask, Round
from models.types import utcnow
from notifications.message import MESSAGE_ID_DOMAIN, OutgoingEmail, message_id_for
from notifications.rendering import render_email
from notifications.smtp import DeliveryResult, EmailSender, SmtpConfig
from services import links, reports, rounds
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import Database
from services.formatting import when_text
from services.settings import Settings

CHUNK = 50
# Longer than a batch can take (start_to_close of the activity), so a claim lapses only once its attempt
# is over for sure.
INVITATION_LEASE = timedelta(minutes=15)
# The loop keeps only weak references to tasks; a chunk being recorded after its caller was cancelled
# must not be collected half-way.
_RECORDING: set[asyncio.Task[BatchOutcome]] = set()


@dataclass
class BatchOutcome:
    sent: int = 0
    refused: int = 0  # permanent failures, recorded and not retried
    retry_later: int = 0  # transient failures, still due

    def add(self, other: BatchOutcome) -> None:
        self.sent += other.sent
        self.refused += other.refused
        self.retry_later += other.retry_later


@dataclass(frozen=True)
class _Invitation:
    link_id: str
    task_id: int
    email: OutgoingEmail


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        tls=str(settings.smtp_tls),
        connections=settings.smtp_connections,
        mail_from=settings.mail_from,
    )


def _message_id_domain(settings: Settings) -> str:
    return urlsplit(settings.public_base_url).hostname or MESSAGE_ID_DOMAIN


def _message_id(purpose: str, settings: Settings) -> str:
    return message_id_for(purpose, _message_id_domain(settings))


def _sender_name(settings: Settings) -> str:
    name, _address = parseaddr(settings.mail_from)
    return name or "The consultation coordinator"


async def send_due_invitations(
    db: Database, sender: EmailSender, settings: Settings, *, round_id: int, limit: int
) -> BatchOutcome:
    """Send up to `limit` invitations that are due in an open round.

    Chunks are pipelined: while one chunk is on the wire the next is rendered, and a sent chunk is
    recorded while the next one is being sent, so the SMTP connections are not left idle during rendering
    and database writes. Records still happen one chunk at a time, in order.
    """
    async with db.write_session() as session:
        claimed = await _claim_due_invitations(session, round_id=round_id, limit=limit)
    outcome = BatchOutcome()
    if not claimed:
        return outcome
    fixed = _InvitationFixed.of(claimed[0].round, settings)
    recorded: asyncio.Task[BatchOutcome] | None = None
    in_flight: list[asyncio.Task[BatchOutcome]] = []
    for start in range(0, len(claimed), CHUNK):
        chunk = [_invitation(claim, fixed) for claim in claimed[start : start + CHUNK]]
        sent = asyncio.Event()
        # A task of its own, so that once a chunk is on the wire it is recorded even if the caller is
        # cancelled (a worker shutting down), and a retry does not email the same people again.
        recorded = asyncio.create_task(_send_and_record(db, sender, round_id, chunk, sent, after=recorded))
        in_flight.append(recorded)
        _RECORDING.add(recorded)
        recorded.add_done_callback(_RECORDING.discard)
        await asyncio.shield(sent.wait())
        if recorded.done() and recorded.exception() is not None:
            break
    for task in in_flight:
        outcome.add(await asyncio.shield(task))
    return outcome


async def _send_and_record(
    db: Database,
    sender: EmailSender,
    round_id: int,
    chunk: list[_Invitation],
    sent: asyncio.Event,
    *,
    after: asyncio.Task[BatchOutcome] | None,
) -> BatchOutcome:
    try:
        results = await sender.send_many([invitation.email for invitation in chunk])
    finally:
        sent.set()
    if after is not None:
        # Recorded in order and one at a time: an earlier chunk's failure to record does not stop this
        # one, which was sent and must be recorded too.
        await asyncio.wait([after])
    async with db.write_session() as session:
        return await _record_invitations(session, round_id, chunk, results)


@dataclass(frozen=True)
class _Claim:
    """A due invitation this attempt owns, with the token made for it (it exists nowhere else)."""

    link: AccessLink
    token: str
    round: Round
    organisation: Organisation
    sections: list[dict[str, str]]


async def _claim_due_invitations(session: AsyncSession, *, round_id: int, limit: int) -> list[_Claim]:
    """Take up to `limit` due links for INVITATION_LEASE and give each a new token, in one transaction.

    Another attempt (a retry while this one still runs) skips claimed links; if this attempt dies, its
    claims lapse and the links are due again, with new tokens, so a link from an email that may never
    have been recorded as sent stops working.
    """
    round_ = await rounds.get_round_row(session, round_id=round_id, lock=True, shared=True)
    if round_.status != RoundStatus.open:
        await session.rollback()
        return []
    now = utcnow()
    rows = (
        await session.exec(
            select(AccessLink, ReviewTask, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(AccessLink.round_id == round_id, *links.invitation_due(now))
            .order_by(col(AccessLink.task_id), col(AccessLink.role))
            .limit(limit)
            .with_for_update(of=AccessLink, skip_locked=True)
        )
    ).all()
    if not rows:
        await session.rollback()
        return []
    sections = {
        section.id: {"number": section.number, "heading": section.heading}
        for section in await session.exec(
            select(Section).where(Section.document_version_id == round_.document_version_id)
        )
    }
    claims = []
    for link, task, organisation in rows:
        link.invitation_claimed_until = now + INVITATION_LEASE
        token = links.issue_token(link)
        session.add(link)
        claims.append(
            _Claim(
                link=link,
                token=token,
                round=round_,
                organisation=organisation,
                sections=[sections[section_id] for section_id in task.section_ids],
            )
        )
    await session.commit()
    return claims


@dataclass(frozen=True)
class _InvitationFixed:
    """What every invitation of a batch shares, worked out once rather than per email (the deadline
    in words for each language, the sender's name, the Message-ID domain)."""

    settings: Settings
    deadline_text: dict[Language, str]
    sender_name: str
    message_id_domain: str

    @classmethod
    def of(cls, round_: Round, settings: Settings) -> _InvitationFixed:
        return cls(
            settings=settings,
            deadline_text={
                language: when_text(round_.deadline, timezone=settings.timezone, language=language)
                for language in Language
            },
            sender_name=_sender_name(settings),
            message_id_domain=_message_id_domain(settings),
        )


def _invitation(claim: _Claim, fixed: _InvitationFixed) -> _Invitation:
    organisation, link, round_ = claim.organisation, claim.link, claim.round
    local_name = organisation.name_sq if organisation.language == Language.sq else ""
    rendered = render_email(
        MessageKind.invitation,
        organisation.language,
        {
            "round_title": round_.title,
            "organisation_name": local_name or organisation.name_en,
            "contact_name": link.name,
            "contact_role": str(link.role),
            "deadline_text": fixed.deadline_text[Language(organisation.language)],
            "sections": claim.sections,
            "link_url": links.review_url(fixed.settings.public_base_url, claim.token),
            "sender_name": fixed.sender_name,
        },
    )
    return _Invitation(
        link_id=link.id,
        task_id=link.task_id,
        email=OutgoingEmail.from_rendered(
            rendered,
            to_address=link.email,
            to_name=link.name,
            message_id=message_id_for(f"invitation:{link.id}", fixed.message_id_domain),
        ),
    )


async def _record_invitations(
    session: AsyncSession, round_id: int, chunk: list[_Invitation], results: list[DeliveryResult]
) -> BatchOutcome:
    outcome = BatchOutcome()
    delivered = {
        invitation.link_id: (invitation, result) for invitation, result in zip(chunk, results, strict=True)
    }
    link_rows = await session.exec(
        select(AccessLink)
        .where(col(AccessLink.id).in_(list(delivered)))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    now = utcnow()
    events: list[NewEvent] = []
    # Rows rather than ORM objects: building a SentMessage instance cost more than sending its email.
    sent_messages: list[dict[str, object]] = []
    newly_invited_tasks: set[int] = set()
    for link in link_rows:
        invitation, result = delivered[link.id]
        if link.invited_at is not None or link.invitation_error is not None:
            continue  # recorded by an earlier attempt
        link.invitation_claimed_until = None
        session.add(link)
        if not result.ok and result.retryable:
            outcome.retry_later += 1
            continue
        data: dict[str, Any] = {
            "kind": str(MessageKind.invitation),
            "link_id": link.id,
            "to": link.email,
            "message_id": invitation.email.message_id,
        }
        if result.ok:
            link.invited_at = now
            newly_invited_tasks.add(link.task_id)
            outcome.sent += 1
            events.append(NewEvent("email.sent", SYSTEM_ACTOR, round_id, link.task_id, data))
        else:
            link.invitation_error = (result.error or "refused")[:1000]
            outcome.refused += 1
            events.append(
                NewEvent(
                    "email.failed",
                    SYSTEM_ACTOR,
                    round_id,
                    link.task_id,
                    {**data, "error": link.invitation_error},
                )
            )
        sent_messages.append(
            {
                "purpose_key": f"invitation:{link.id}",
                "kind": MessageKind.invitation,
                "round_id": round_id,
                "task_id": link.task_id,
                "link_id": link.id,
                "to_email": link.email,
                "subject": invitation.email.subject[:500],
                "message_id": invitation.email.message_id,
                "status": MessageStatus.sent if result.ok else MessageStatus.failed,
                "error": None if result.ok else link.invitation_error,
                "sent_at": now,
            }
        )
    if sent_messages:
        await session.exec(insert(SentMessage), params=sent_messages)
    if newly_invited_tasks:
        # Locked and re-checked: a round closing meanwhile has made these no_response; they stay so.
        tasks = await session.exec(
            select(ReviewTask)
            .where(
                col(ReviewTask.id).in_(sorted(newly_invited_tasks)), ReviewTask.status == TaskStatus.pending
            )
            .with_for_update()
        )
        for task in tasks:
            task.status = TaskStatus.invited
            task.invited_at = now
            session.add(task)
            events.append(NewEvent("task.invited", SYSTEM_ACTOR, round_id, task.id, {}))
    await trail.append_many(session, events=events)
    await session.commit()
    return outcome


async def send_round_closed_notice(
    db: Database, sender: EmailSender, settings: Settings, *, round_id: int
) -> BatchOutcome:
    """Tell the coordinator who created the round that it has closed, once."""
    purpose = f"round_closed:{round_id}"
    async with db.session() as session:
        if (await session.exec(select(SentMessage.id).where(SentMessage.purpose_key == purpose))).first():
            return BatchOutcome()
        summary = await reports.closure_summary(session, round_id=round_id)
    if summary.coordinator_email is None:
        return BatchOutcome()
    rendered = render_email(
        MessageKind.round_closed,
        "en",
        {
            "round_title": summary.title,
            "closed_at_text": when_text(summary.closed_at, timezone=settings.timezone),
            "reason": str(summary.reason),
            "counts": summary.counts,
            "decisions": summary.decisions,
            "no_response": summary.no_response,
            "objections": summary.objections,
            "round_url": f"{settings.public_base_url}/console/rounds/{round_id}",
        },
    )
    email = OutgoingEmail.from_rendered(
        rendered, to_address=summary.coordinator_email, to_name="", message_id=_message_id(purpose, settings)
    )
    result = await sender.send(email)
    if not result.ok and result.retryable:
        return BatchOutcome(retry_later=1)
    async with db.write_session() as session:
        if (await session.exec(select(SentMessage.id).where(SentMessage.purpose_key == purpose))).first():
            return BatchOutcome()
        session.add(
            SentMessage(
                purpose_key=purpose,
                kind=MessageKind.round_closed,
                round_id=round_id,
                to_email=email.to_address,
                subject=email.subject[:500],
                message_id=email.message_id,
                status=MessageStatus.sent if result.ok else MessageStatus.failed,
                error=None if result.ok else (result.error or "refused")[:1000],
            )
        )
        await trail.append(
            session,
            actor=SYSTEM_ACTOR,
            action="email.sent" if result.ok else "email.failed",
            round_id=round_id,
            data={
                "kind": str(MessageKind.round_closed),
                "to": email.to_address,
                "message_id": email.message_id,
            },
        )
        await session.commit()
    return BatchOutcome(sent=1) if result.ok else BatchOutcome(refused=1)
