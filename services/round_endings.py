"""How a coordinator ends a round before it ends by itself: closing it (at or before the deadline, with a
reason) or cancelling it (everyone told, every link stops working at once)."""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import CloseReason, Language, MessageKind, OutboxStatus, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from models.rounds import ReviewTask, RoundRead
from models.types import utcnow
from services import outbox, scheduling
from services.audit import trail
from services.db import transactional
from services.errors import Conflict
from services.invitations import invitation_key, organisation_name, sender_name
from services.outbox import Mail
from services.rounds import get_round, get_round_row
from services.settings import Settings


async def close_early(
    session: AsyncSession, *, round_id: int, reason: str, actor: Actor, settings: Settings
) -> RoundRead:
    """Close an open round now: what has no sign-off is settled as the round's silence rule says."""
    await scheduling.close_round(
        session, round_id=round_id, now=utcnow(), settings=settings, actor=actor, note=reason
    )
    return await get_round(session, round_id=round_id)


@transactional
async def cancel_round(
    session: AsyncSession, *, round_id: int, reason: str, actor: Actor, settings: Settings
) -> RoundRead:
    """Cancel a draft or open round: its tasks are cancelled, its links revoked, and every contact who was
    invited is told why."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status not in (RoundStatus.draft, RoundStatus.open):
        raise Conflict(f"round {round_id} is {round_.status}: only a draft or open round can be cancelled")
    now = utcnow()
    was_open = round_.status == RoundStatus.open
    rows = (
        await session.exec(
            select(AccessLink, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(AccessLink.round_id == round_id, col(AccessLink.revoked_at).is_(None))
        )
    ).all()
    # Told: whoever has their invitation, or may have it (an attempt holds it; its fate is not recorded
    # yet). An invitation nobody has taken yet is not sent at all.
    invitations = {
        key: (status, claimed_until)
        for key, status, claimed_until in await session.exec(
            select(OutboxMessage.key, OutboxMessage.status, OutboxMessage.claimed_until).where(
                OutboxMessage.round_id == round_id, OutboxMessage.kind == MessageKind.invitation
            )
        )
    }
    await session.exec(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.round_id) == round_id,
            col(OutboxMessage.status) == OutboxStatus.pending,
            or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now),
        )
        .values(status=OutboxStatus.cancelled, last_error="not sent: the round was cancelled")
    )

    def was_invited(link: AccessLink) -> bool:
        status, claimed_until = invitations.get(invitation_key(link.task_id, link.role), (None, None))
        return status == OutboxStatus.sent or (
            status == OutboxStatus.pending and claimed_until is not None and claimed_until >= now
        )

    mails = [
        Mail(
            key=f"round_cancelled:{link.task_id}:{link.role}",
            kind=MessageKind.round_cancelled,
            to_email=link.email,
            to_name=link.name,
            language=Language(organisation.language),
            context={
                "contact_name": link.name,
                "round_title": round_.title,
                "organisation_name": organisation_name(organisation, organisation.language),
                "reason": reason,
                "sender_name": sender_name(settings),
            },
            round_id=round_id,
            task_id=link.task_id,
        )
        for link, organisation in rows
        if was_invited(link)
    ]
    await session.exec(
        update(AccessLink)
        .where(col(AccessLink.round_id) == round_id, col(AccessLink.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    await session.exec(
        update(ReviewTask)
        .where(col(ReviewTask.round_id) == round_id, col(ReviewTask.status) != TaskStatus.signed_off)
        .values(status=TaskStatus.cancelled, completed_at=now)
    )
    round_.status = RoundStatus.cancelled
    round_.closed_at = now
    round_.close_reason = CloseReason.cancelled
    round_.close_note = reason
    session.add(round_)
    await outbox.enqueue(session, mails=mails)
    await trail.append(
        session,
        actor=actor,
        action="round.cancelled",
        round_id=round_id,
        data={
            "reason": reason,
            "was_open": was_open,
            "contacts_told": len(mails),
            "links_revoked": len(rows),
        },
    )
    await session.commit()
    return await get_round(session, round_id=round_id)
