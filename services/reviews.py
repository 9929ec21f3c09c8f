"""What a focal point decides through a review link: the organisation's sign-off.

Every write is one transaction holding the record and its audit event. The deadline and state checks run
inside it, against the locked task row (and the round row, shared), so a sign-off and the round's close
cannot both win. A round that asks for a code (services.sign_off_codes) records the sign-off only when the
code emailed to the signer is entered: the form's content waits beside the code, and is checked again then.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentStatus, CommentWeight, Decision, SignOffVerification, TaskStatus
from models.reviews import (
    Comment,
    SignOff,
    SignOffCreate,
    SignOffRead,
)
from models.types import utcnow
from services import scheduling, sign_off_codes
from services.audit import trail
from services.db import transactional
from services.documents import draft_view
from services.errors import Conflict, InvalidInput
from services.links import ClientInfo, LinkContext, ensure_writable, resolve
from services.settings import Settings
from services.sign_off_codes import CodeSent

NOT_AUTHORISED = (
    "tick the box to confirm that you are authorised to sign off for your organisation; nothing was recorded"
)


@dataclass(frozen=True)
class SignOffOutcome:
    receipt: SignOffRead
    # No task of the round is left to sign: its scheduler should be woken to close it now.
    round_settled: bool


@transactional
async def sign_off(
    session: AsyncSession, *, token: str, data: SignOffCreate, client: ClientInfo, settings: Settings
) -> SignOffOutcome | CodeSent:
    """Record the organisation's sign-off, or, when its round asks for a code, email the signer the code
    that will record it (and record nothing yet). Submitting the same form twice returns the first
    receipt (or the code already sent).

    Only the sign-off that leaves nothing to sign reports the round as settled, so the scheduler is
    signalled once per round rather than once per organisation (a workflow's signals are capped)."""
    resolved = await resolve(session, token=token, lock=True, with_sign_off=True)
    context = resolved.context
    if resolved.sign_off is not None:
        return await _already_signed(session, context, resolved.sign_off, data.submission_id)
    ensure_writable(context)
    if not data.authorised:
        raise InvalidInput(NOT_AUTHORISED, error="not_authorised")
    active, objection_ids = await _checked(session, context, data)
    if context.round.sign_off_code_required:
        sent = await sign_off_codes.issue(
            session, context=context, pending=data, client=client, settings=settings, now=utcnow()
        )
        await session.commit()
        return sent
    return await _record(
        session,
        context,
        data,
        client,
        active=active,
        objection_ids=objection_ids,
        verified_by=SignOffVerification.link_only,
    )


@transactional
async def new_sign_off_code(
    session: AsyncSession, *, token: str, client: ClientInfo, settings: Settings
) -> CodeSent:
    """Another code for the sign-off waiting on this link (the first did not come, expired, or was tried
    too often); the earlier code stops working."""
    resolved = await resolve(session, token=token, lock=True, with_sign_off=True)
    context = resolved.context
    if resolved.sign_off is not None:
        raise _signed_already(SignOffRead.of(resolved.sign_off, context.organisation))
    ensure_writable(context)
    waiting = await sign_off_codes.latest(session, link_id=context.link.id)
    if waiting is None:
        raise Conflict(sign_off_codes.NO_CODE, error="no_code_pending")
    pending = SignOffCreate.model_validate({**waiting.pending, "authorised": True})
    sent = await sign_off_codes.issue(
        session, context=context, pending=pending, client=client, settings=settings, now=utcnow(), again=True
    )
    await session.commit()
    return sent


@transactional
async def confirm_sign_off(
    session: AsyncSession,
    *,
    token: str,
    code: str,
    submission_id: str,
    client: ClientInfo,
    settings: Settings,
) -> SignOffOutcome:
    """Record the sign-off waiting on this link, if `code` is the one emailed for it. A wrong code counts
    against the code (it dies at the fifth) and is committed as such before it is refused."""
    resolved = await resolve(session, token=token, lock=True, with_sign_off=True)
    context = resolved.context
    if resolved.sign_off is not None:
        return await _already_signed(session, context, resolved.sign_off, submission_id)
    ensure_writable(context)
    now = utcnow()
    waiting = await sign_off_codes.latest(session, link_id=context.link.id)
    if not sign_off_codes.check(waiting, code, settings=settings, now=now):
        assert waiting is not None
        waiting.attempts += 1
        attempts = waiting.attempts
        session.add(waiting)
        await trail.append(
            session,
            actor=context.actor,
            action="signoff.code_refused",
            round_id=context.round.id,
            task_id=context.task.id,
            data={
                "organisation": context.organisation.key,
                "link_id": context.link.id,
                "code_id": waiting.id,
                "attempts": attempts,
                "ip": client.ip,
            },
        )
        await session.commit()
        raise sign_off_codes.wrong(attempts)
    assert waiting is not None
    data = SignOffCreate.model_validate({**waiting.pending, "authorised": True})
    active, objection_ids = await _checked(session, context, data)
    waiting.used_at = now
    session.add(waiting)
    return await _record(
        session,
        context,
        data,
        client,
        active=active,
        objection_ids=objection_ids,
        verified_by=SignOffVerification.emailed_code,
        code_id=waiting.id,
    )


def _signed_already(receipt: SignOffRead) -> Conflict:
    return Conflict(
        f"Your organisation has already signed off: {receipt.signer_name} recorded the decision "
        f"'{receipt.decision.replace('_', ' ')}' on {receipt.signed_at:%d %B %Y at %H:%M} UTC. "
        "A sign-off cannot be changed; contact the coordinator if it needs to be.",
        error="already_signed_off",
    )


async def _already_signed(
    session: AsyncSession, context: LinkContext, existing: SignOff, submission_id: str
) -> SignOffOutcome:
    """The same form sent again gets its receipt; any other is refused."""
    # Read what is needed before the rollback, which expires every loaded object.
    receipt = SignOffRead.of(existing, context.organisation)
    same_submission = existing.submission_id == submission_id
    await session.rollback()
    if same_submission:
        return SignOffOutcome(receipt, round_settled=False)
    raise _signed_already(receipt)


async def _checked(
    session: AsyncSession, context: LinkContext, data: SignOffCreate
) -> tuple[list[int], list[int]]:
    """The task's active comments and its objections, once the decision is one they allow."""
    active = (
        await session.exec(
            select(Comment.id, Comment.weight).where(
                Comment.task_id == context.task.id, Comment.status == CommentStatus.active
            )
        )
    ).all()
    active_comments = [comment_id or 0 for comment_id, _ in active]
    objection_ids = sorted(
        comment_id or 0 for comment_id, weight in active if weight == CommentWeight.objection
    )
    if data.decision == Decision.approve_with_comments and not active_comments:
        raise InvalidInput("'Approve with comments' needs at least one comment; add your comments first")
    if data.decision == Decision.object and not data.statement:
        raise InvalidInput("an objection needs a statement of the reasons")
    if data.decision == Decision.object and not objection_ids:
        raise InvalidInput(
            "'Object' needs at least one of your comments marked as an objection: mark the comments your "
            "organisation cannot accept unless they are resolved, then sign off"
        )
    return active_comments, objection_ids


async def _record(
    session: AsyncSession,
    context: LinkContext,
    data: SignOffCreate,
    client: ClientInfo,
    *,
    active: list[int],
    objection_ids: list[int],
    verified_by: SignOffVerification,
    code_id: int | None = None,
) -> SignOffOutcome:
    draft = await draft_view(session, version_id=context.round.document_version_id)
    sections = draft.assigned(context.task.section_ids)
    reviewed = [{"number": s.number, "heading": s.heading, "sha256": s.sha256} for s in sections]
    user_agent = (client.user_agent or "")[:500] or None
    verification: dict[str, object] = {"verified_by": str(verified_by)}
    if code_id is not None:
        verification["code_id"] = code_id
    async with trail.chain_turn(session):
        event = await trail.append(
            session,
            actor=context.actor,
            action="signoff.recorded",
            round_id=context.round.id,
            task_id=context.task.id,
            data={
                "organisation": context.organisation.key,
                "decision": str(data.decision),
                "statement": data.statement,
                "signer_name": data.signer_name,
                "signer_title": data.signer_title,
                "signer_email": context.link.email,
                "link_id": context.link.id,
                "sections": reviewed,
                "comments": len(active),
                "objections": objection_ids,
                **verification,
                "ip": client.ip,
                "user_agent": user_agent,
            },
        )
        record = SignOff(
            **data.model_dump(exclude={"submission_id", "authorised"}),
            submission_id=data.submission_id,
            task_id=context.task.id or 0,
            round_id=context.round.id or 0,
            link_id=context.link.id,
            signer_email=context.link.email,
            sections=reviewed,
            signed_at=event.at,
            ip=client.ip,
            user_agent=user_agent,
            audit_seq=event.seq,
            objections=objection_ids if data.decision == Decision.object else [],
            verified_by=verified_by,
        )
        session.add(record)
        context.task.status = TaskStatus.signed_off
        context.task.decision = data.decision
        context.task.completed_at = event.at
        context.task.last_activity_at = event.at
        session.add(context.task)
        # Counted while holding the audit chain head, which every sign-off takes: a sign-off committed
        # before this one is seen, one committed after sees this one, so the last one always knows.
        others_left = await scheduling.any_unsettled_task(
            session, round_id=context.round.id or 0, excluding_task_id=context.task.id
        )
        await session.commit()
    return SignOffOutcome(SignOffRead.of(record, context.organisation), round_settled=not others_left)
