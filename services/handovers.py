"""Handing a task over: a focal point (or alternate, or a colleague already handed it) names a colleague
who gets a link of their own. The link that handed over keeps working until the task is settled, and
the audit trail shows who handed over to whom."""

from __future__ import annotations

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import ContactRole, Language, MessageKind
from models.reviews import AccessLink, HandoverCreate
from models.types import utcnow
from services import links, outbox
from services.audit import trail
from services.db import transactional
from services.errors import Conflict
from services.formatting import when_text
from services.invitations import organisation_name, sender_name
from services.links import ClientInfo, ensure_writable, resolve
from services.outbox import Mail
from services.settings import Settings

MAX_DELEGATES = 5
"""Colleagues one task may be handed to: enough for any ministry, and a bound on a link in wrong hands."""


@transactional
async def hand_over(
    session: AsyncSession, *, token: str, data: HandoverCreate, client: ClientInfo, settings: Settings
) -> AccessLink:
    """Give a colleague a link of their own to this task; the same form sent twice hands over once."""
    resolved = await resolve(session, token=token, lock=True)
    context = resolved.context
    working = (
        await session.exec(
            select(AccessLink).where(
                AccessLink.task_id == context.task.id, col(AccessLink.revoked_at).is_(None)
            )
        )
    ).all()
    same = next((link for link in working if link.email == data.email), None)
    if same is not None and same.handed_over_by == context.link.id and same.note == (data.note or None):
        await session.rollback()
        return same
    ensure_writable(context)
    if same is not None:
        raise Conflict(f"{data.email} already has a link to this task.", error="already_a_contact")
    delegates = (
        await session.exec(
            select(func.count()).where(
                AccessLink.task_id == context.task.id, AccessLink.role == ContactRole.delegate
            )
        )
    ).one()
    if delegates >= MAX_DELEGATES:
        raise Conflict(
            f"This task has been handed over {MAX_DELEGATES} times already; ask the coordinator instead.",
            error="too_many_handovers",
        )
    row = links.new_link_row(
        task_id=context.task.id or 0,
        round_id=context.round.id or 0,
        role=ContactRole.delegate,
        email=data.email,
        name=data.name,
        created_at=utcnow(),
    )
    link = AccessLink.model_validate({**row, "handed_over_by": context.link.id, "note": data.note or None})
    session.add(link)
    await session.flush()
    organisation = context.organisation
    language = Language(organisation.language)
    timezone = organisation.timezone or context.round.timezone
    await outbox.enqueue(
        session,
        mails=[
            Mail(
                key=f"handover:{link.id}",
                kind=MessageKind.handover,
                to_email=link.email,
                to_name=link.name,
                language=language,
                context={
                    "contact_name": link.name,
                    "from_name": context.link.name,
                    "from_email": context.link.email,
                    "note": data.note or "",
                    "round_title": context.round.title,
                    "organisation_name": organisation_name(organisation, language),
                    "deadline_text": when_text(context.task.deadline, timezone=timezone, language=language),
                    "sender_name": sender_name(settings),
                },
                round_id=context.round.id,
                task_id=context.task.id,
                link_id=link.id,
            )
        ],
    )
    await trail.append(
        session,
        actor=context.actor,
        action="task.handed_over",
        round_id=context.round.id,
        task_id=context.task.id,
        data={
            "organisation": organisation.key,
            "from": {"link_id": context.link.id, "email": context.link.email, "role": str(context.link.role)},
            "to": {"link_id": link.id, "email": link.email, "name": link.name},
            "note": data.note,
            "ip": client.ip,
        },
    )
    await session.commit()
    return link
