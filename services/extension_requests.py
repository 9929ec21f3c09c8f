"""Requests for more time: a focal point asks from the review page (a reason, the date wanted); the
coordinator grants it (the date asked for or another) or refuses it, and the focal point is told either
way: a grant by the extension's own notice, a refusal by a message of its own."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ExtensionRequestStatus, Language, MessageKind, RoundStatus
from models.extensions import (
    ExtensionCreate,
    ExtensionGrant,
    ExtensionRefusal,
    ExtensionRequest,
    ExtensionRequestRead,
)
from models.organisations import Organisation
from models.reviews import AccessLink
from models.rounds import ReviewTask
from models.types import utcnow
from services import extensions, outbox
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, NotFound
from services.formatting import parse_local_datetime, when_text
from services.invitations import organisation_name, sender_name
from services.links import ClientInfo, resolve
from services.outbox import Mail
from services.rounds import coordinator_email, get_round_row
from services.scheduling import OPEN_TASK_STATUSES
from services.settings import Settings


@transactional
async def ask(
    session: AsyncSession,
    *,
    token: str,
    wanted_local: str,
    reason: str,
    submission_id: str,
    client: ClientInfo,
    settings: Settings,
) -> ExtensionRequest:
    """Record a focal point's request (the date wanted as they typed it, in their organisation's time
    zone); the same form sent twice records it once. One request at a time per task: a second waits for
    the coordinator's answer to the first."""
    resolved = await resolve(session, token=token, lock=True)
    context = resolved.context
    wanted_deadline = parse_local_datetime(
        wanted_local, timezone=context.organisation.timezone or context.round.timezone
    )
    repeated = (
        await session.exec(select(ExtensionRequest).where(ExtensionRequest.submission_id == submission_id))
    ).first()
    if repeated is not None and repeated.task_id == context.task.id:
        await session.rollback()
        return repeated
    if context.round.status != RoundStatus.open or context.task.status not in OPEN_TASK_STATUSES:
        raise Conflict(
            "Your organisation's task is settled; there is no deadline left to extend.", error="task_settled"
        )
    reason = reason.strip()
    if len(reason) < 3:
        raise InvalidInput("Say why your organisation needs more time.")
    if len(reason) > 5000:
        raise InvalidInput("The reason is too long (at most 5,000 characters).")
    if wanted_deadline <= context.task.deadline:
        raise InvalidInput("Ask for a date after your current deadline.")
    pending = (
        await session.exec(
            select(ExtensionRequest.id).where(
                ExtensionRequest.task_id == context.task.id,
                ExtensionRequest.status == ExtensionRequestStatus.pending,
            )
        )
    ).first()
    if pending is not None:
        raise Conflict(
            "Your organisation has already asked for more time; the coordinator has not answered yet.",
            error="request_pending",
        )
    request = ExtensionRequest(
        round_id=context.round.id or 0,
        task_id=context.task.id or 0,
        link_id=context.link.id,
        requested_by=context.link.email,
        deadline_then=context.task.deadline,
        wanted_deadline=wanted_deadline,
        reason=reason,
        submission_id=submission_id,
    )
    session.add(request)
    await session.flush()
    coordinator = await coordinator_email(session, context.round)
    if coordinator is not None:
        await outbox.enqueue(
            session,
            mails=[
                Mail(
                    key=f"extension_requested:{request.id}",
                    kind=MessageKind.extension_requested,
                    to_email=coordinator,
                    language=Language.en,
                    context={
                        "round_title": context.round.title,
                        "organisation_name": context.organisation.name_en,
                        "requested_by": context.link.email,
                        "deadline_text": when_text(request.deadline_then, timezone=context.round.timezone),
                        "wanted_text": when_text(wanted_deadline, timezone=context.round.timezone),
                        "reason": reason,
                        "round_url": f"{settings.public_base_url}/console/rounds/{context.round.id}",
                    },
                    round_id=context.round.id,
                    task_id=context.task.id,
                )
            ],
        )
    await trail.append(
        session,
        actor=context.actor,
        action="extension.requested",
        round_id=context.round.id,
        task_id=context.task.id,
        data={
            "request_id": request.id,
            "organisation": context.organisation.key,
            "deadline": request.deadline_then.isoformat(),
            "wanted": wanted_deadline.isoformat(),
            "reason": reason,
            "ip": client.ip,
        },
    )
    await session.commit()
    return request


async def list_requests(session: AsyncSession, *, round_id: int) -> list[ExtensionRequestRead]:
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            select(ExtensionRequest, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == ExtensionRequest.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ExtensionRequest.round_id == round_id)
            .order_by(col(ExtensionRequest.created_at), col(ExtensionRequest.id))
        )
    ).all()
    return [_read(request, organisation) for request, organisation in rows]


def _read(request: ExtensionRequest, organisation: Organisation) -> ExtensionRequestRead:
    return ExtensionRequestRead.model_validate(
        {
            **request.model_dump(),
            "organisation_key": organisation.key,
            "organisation_name": organisation.name_en,
        }
    )


async def _pending(
    session: AsyncSession, request_id: int, round_id: int | None
) -> tuple[ExtensionRequest, Organisation]:
    found = (
        await session.exec(
            select(ExtensionRequest, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == ExtensionRequest.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ExtensionRequest.id == request_id)
            .with_for_update(of=ExtensionRequest)
        )
    ).first()
    if found is None or (round_id is not None and found[0].round_id != round_id):
        raise NotFound(f"extension request {request_id} does not exist")
    request, _organisation = found
    if request.status != ExtensionRequestStatus.pending:
        raise Conflict(f"extension request {request_id} was {request.status} already")
    return found


@transactional
async def grant(
    session: AsyncSession,
    *,
    request_id: int,
    data: ExtensionGrant,
    actor: Actor,
    user_id: int | None,
    settings: Settings,
    round_id: int | None = None,
) -> ExtensionRequestRead:
    """Extend the organisation's deadline to the date asked for, or to the one given; the extension's
    notice tells its contacts, with the coordinator's note as the reason."""
    request, organisation = await _pending(session, request_id, round_id)
    deadline = data.deadline or request.wanted_deadline
    reason = (data.note or "").strip() or f"Granted at your request: {request.reason}"
    await extensions.extend_in(
        session,
        round_id=request.round_id,
        data=ExtensionCreate(deadline=deadline, reason=reason, organisation_keys=[organisation.key]),
        actor=actor,
        settings=settings,
    )
    request.status = ExtensionRequestStatus.granted
    request.granted_deadline = deadline
    request.note = data.note
    request.decided_at = utcnow()
    request.decided_by_id = user_id
    session.add(request)
    await trail.append(
        session,
        actor=actor,
        action="extension.granted",
        round_id=request.round_id,
        task_id=request.task_id,
        data={
            "request_id": request.id,
            "organisation": organisation.key,
            "wanted": request.wanted_deadline.isoformat(),
            "deadline": deadline.isoformat(),
            "note": data.note,
        },
    )
    await session.commit()
    return _read(request, organisation)


@transactional
async def refuse(
    session: AsyncSession,
    *,
    request_id: int,
    data: ExtensionRefusal,
    actor: Actor,
    user_id: int | None,
    settings: Settings,
    round_id: int | None = None,
) -> ExtensionRequestRead:
    """Refuse the request; whoever asked is told why, with their link."""
    request, organisation = await _pending(session, request_id, round_id)
    round_ = await get_round_row(session, round_id=request.round_id)
    request.status = ExtensionRequestStatus.refused
    request.note = data.note
    request.decided_at = utcnow()
    request.decided_by_id = user_id
    session.add(request)
    link = await session.get(AccessLink, request.link_id)
    if link is not None and link.revoked_at is None:
        language = Language(organisation.language)
        timezone = organisation.timezone or round_.timezone
        await outbox.enqueue(
            session,
            mails=[
                Mail(
                    key=f"extension_refused:{request.id}",
                    kind=MessageKind.extension_refused,
                    to_email=link.email,
                    to_name=link.name,
                    language=language,
                    context={
                        "contact_name": link.name,
                        "round_title": round_.title,
                        "organisation_name": organisation_name(organisation, language),
                        "deadline_text": when_text(
                            request.deadline_then, timezone=timezone, language=language
                        ),
                        "wanted_text": when_text(
                            request.wanted_deadline, timezone=timezone, language=language
                        ),
                        "note": data.note,
                        "sender_name": sender_name(settings),
                    },
                    round_id=request.round_id,
                    task_id=request.task_id,
                    link_id=link.id,
                )
            ],
        )
    await trail.append(
        session,
        actor=actor,
        action="extension.refused",
        round_id=request.round_id,
        task_id=request.task_id,
        data={"request_id": request.id, "organisation": organisation.key, "note": data.note},
    )
    await session.commit()
    return _read(request, organisation)
