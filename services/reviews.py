"""What a focal point decides through a review link: the organisation's sign-off.

Every write is one transaction holding the record and its audit event. The deadline and state checks run
inside it, against the locked task row (and the round row, shared), so a sign-off and the round's close
cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentStatus, CommentWeight, Decision, TaskStatus
from models.reviews import (
    Comment,
    SignOff,
    SignOffCreate,
    SignOffRead,
)
from services import scheduling
from services.audit import trail
from services.db import transactional
from services.documents import draft_view
from services.errors import Conflict, InvalidInput
from services.links import ClientInfo, ensure_writable, resolve


@dataclass(frozen=True)
class SignOffOutcome:
    receipt: SignOffRead
    # No task of the round is left to sign: its scheduler should be woken to close it now.
    round_settled: bool


@transactional
async def sign_off(
    session: AsyncSession, *, token: str, data: SignOffCreate, client: ClientInfo
) -> SignOffOutcome:
    """Record the organisation's sign-off. Submitting the same form twice returns the first receipt.

    Only the sign-off that leaves nothing to sign reports the round as settled, so the scheduler is
    signalled once per round rather than once per organisation (a workflow's signals are capped)."""
    resolved = await resolve(session, token=token, lock=True, with_sign_off=True)
    context, existing = resolved.context, resolved.sign_off
    if existing is not None:
        # Read what is needed before the rollback, which expires every loaded object.
        receipt = SignOffRead.of(existing, context.organisation)
        same_submission = existing.submission_id == data.submission_id
        await session.rollback()
        if same_submission:
            return SignOffOutcome(receipt, round_settled=False)
        raise Conflict(
            f"Your organisation has already signed off: {receipt.signer_name} recorded the decision "
            f"'{receipt.decision.replace('_', ' ')}' on {receipt.signed_at:%d %B %Y at %H:%M} UTC. "
            "A sign-off cannot be changed; contact the coordinator if it needs to be.",
            error="already_signed_off",
        )
    ensure_writable(context)
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
    draft = await draft_view(session, version_id=context.round.document_version_id)
    sections = draft.assigned(context.task.section_ids)
    reviewed = [{"number": s.number, "heading": s.heading, "sha256": s.sha256} for s in sections]
    user_agent = (client.user_agent or "")[:500] or None
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
                "comments": len(active_comments),
                "objections": objection_ids,
                "ip": client.ip,
                "user_agent": user_agent,
            },
        )
        record = SignOff(
            **data.model_dump(exclude={"submission_id"}),
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
