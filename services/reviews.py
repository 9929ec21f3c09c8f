"""What a focal point does through a review link: read, comment, sign off.

Every write is one transaction holding the record and its audit event. The deadline and state checks run
inside it, against the locked task row (and the round row, shared), so a sign-off and the round's close
cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.documents import DocumentVersion, Section
from models.enums import ActorKind, CommentStatus, Decision, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import (
    AccessLink,
    Comment,
    CommentCreate,
    CommentUpdate,
    SignOff,
    SignOffCreate,
    SignOffRead,
)
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import audit, links
from services.db import transactional
from services.drafts.rendering import render_markdown_html, render_section_html
from services.errors import Conflict, Forbidden, InvalidInput, NotFound

INVALID_LINK = (
    "This review link is not valid. Check that the whole link from your invitation email was copied, "
    "or ask the coordinator for a new one."
)


class ReviewState(StrEnum):
    open = "open"
    signed_off = "signed_off"
    deadline_passed = "deadline_passed"
    closed = "closed"


@dataclass(frozen=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class LinkContext:
    link: AccessLink
    task: ReviewTask
    round: Round
    organisation: Organisation

    @property
    def actor(self) -> Actor:
        return Actor(kind=ActorKind.link, id=self.link.id, email=self.link.email)


@dataclass(frozen=True)
class SectionView:
    id: int
    number: str
    heading: str
    sha256: str
    paragraphs: list[str]
    html: str


@dataclass(frozen=True)
class CommentView:
    id: int
    section_id: int
    section_number: str
    paragraph: str | None
    kind: str
    body: str
    proposed_wording: str | None
    status: CommentStatus
    revision: int
    author_email: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReviewPage:
    context: LinkContext
    draft_title: str
    preamble_html: str
    """The draft's own introduction (who prepared it, which version), shown above the sections."""
    state: ReviewState
    sections: list[SectionView]
    comments: list[CommentView]
    sign_off: SignOffRead | None

    @property
    def writable(self) -> bool:
        return self.state == ReviewState.open


def state_of(context: LinkContext, now: datetime) -> ReviewState:
    if context.round.status == RoundStatus.closed:
        return ReviewState.closed
    if context.task.status == TaskStatus.signed_off:
        return ReviewState.signed_off
    if now >= context.round.deadline:
        return ReviewState.deadline_passed
    return ReviewState.open


async def resolve(session: AsyncSession, *, token: str, lock: bool = False) -> LinkContext:
    """The link, task, round and organisation behind a token. With `lock`, the round row is share-locked
    and the task row locked for update, in that order (the close takes them in the same order)."""
    if not token or len(token) > 100:
        raise NotFound(INVALID_LINK, error="invalid_link")
    link = (
        await session.exec(select(AccessLink).where(AccessLink.token_sha256 == links.token_sha256(token)))
    ).first()
    if link is None:
        raise NotFound(INVALID_LINK, error="invalid_link")
    if link.revoked_at is not None:
        raise Forbidden(
            "This review link has been withdrawn by the coordinator. Ask them for a new one.",
            error="link_revoked",
        )
    round_query = select(Round).where(Round.id == link.round_id)
    task_query = select(ReviewTask).where(ReviewTask.id == link.task_id)
    if lock:
        round_query = round_query.with_for_update(read=True).execution_options(populate_existing=True)
        task_query = task_query.with_for_update().execution_options(populate_existing=True)
    round_ = (await session.exec(round_query)).one()
    task = (await session.exec(task_query)).one()
    organisation = await session.get(Organisation, task.organisation_id)
    assert organisation is not None
    return LinkContext(link=link, task=task, round=round_, organisation=organisation)


async def review_page(session: AsyncSession, *, token: str) -> ReviewPage:
    context = await resolve(session, token=token)
    sections = await _assigned_sections(session, context.task)
    numbers = {section.id: section.number for section in sections}
    comments = (
        await session.exec(
            select(Comment).where(Comment.task_id == context.task.id).order_by(col(Comment.created_at))
        )
    ).all()
    sign_off = (await session.exec(select(SignOff).where(SignOff.task_id == context.task.id))).first()
    version = await session.get(DocumentVersion, context.round.document_version_id)
    assert version is not None  # a round's version is a foreign key
    return ReviewPage(
        context=context,
        draft_title=version.title,
        preamble_html=render_markdown_html(version.preamble) if version.preamble else "",
        state=state_of(context, utcnow()),
        sections=[
            SectionView(
                id=section.id or 0,
                number=section.number,
                heading=section.heading,
                sha256=section.sha256,
                paragraphs=list(section.paragraphs),
                html=render_section_html(section.text),
            )
            for section in sections
        ],
        comments=[_comment_view(comment, numbers) for comment in comments],
        sign_off=SignOffRead.of(sign_off, context.organisation) if sign_off else None,
    )


async def _assigned_sections(session: AsyncSession, task: ReviewTask) -> list[Section]:
    rows = await session.exec(
        select(Section).where(col(Section.id).in_(task.section_ids)).order_by(col(Section.position))
    )
    return list(rows)


def _comment_view(comment: Comment, numbers: dict[int | None, str]) -> CommentView:
    return CommentView(
        id=comment.id or 0,
        section_id=comment.section_id,
        section_number=numbers.get(comment.section_id, "?"),
        paragraph=comment.paragraph,
        kind=str(comment.kind),
        body=comment.body,
        proposed_wording=comment.proposed_wording,
        status=comment.status,
        revision=comment.revision,
        author_email=comment.author_email,
        created_at=comment.created_at,
        updated_at=comment.updated_at,
    )


def _ensure_writable(context: LinkContext) -> None:
    state = state_of(context, utcnow())
    if state == ReviewState.closed:
        raise Conflict(
            "This consultation round is closed; comments and sign-offs can no longer be recorded.",
            error="round_closed",
        )
    if state == ReviewState.signed_off:
        raise Conflict(
            "Your organisation has already signed off; comments can no longer be added or changed.",
            error="already_signed_off",
        )
    if state == ReviewState.deadline_passed:
        raise Conflict(
            "The deadline for this consultation has passed; "
            "comments and sign-offs can no longer be recorded.",
            error="deadline_passed",
        )


async def _section_for_comment(
    session: AsyncSession, context: LinkContext, section_id: int, paragraph: str | None
) -> Section:
    section = await session.get(Section, section_id)
    if section is None or section_id not in context.task.section_ids:
        raise InvalidInput("that section is not among the sections assigned to your organisation")
    if paragraph is not None and paragraph not in section.paragraphs:
        raise InvalidInput(f"section {section.number} has no paragraph {paragraph}")
    return section


def _comment_data(comment: Comment, section: Section) -> dict[str, Any]:
    return {
        "comment_id": comment.id,
        "section": section.number,
        "paragraph": comment.paragraph,
        "kind": str(comment.kind),
        "body": comment.body,
        "proposed_wording": comment.proposed_wording,
    }


@transactional
async def add_comment(
    session: AsyncSession, *, token: str, data: CommentCreate, client: ClientInfo
) -> CommentView:
    """Record a comment; the same form submitted twice (a double click) records it once."""
    context = await resolve(session, token=token, lock=True)
    repeated = (
        await session.exec(
            select(Comment).where(
                Comment.task_id == context.task.id, Comment.submission_id == data.submission_id
            )
        )
    ).first()
    if repeated is not None:
        numbers: dict[int | None, str] = {
            repeated.section_id: await _section_number(session, repeated.section_id)
        }
        view = _comment_view(repeated, numbers)
        await session.rollback()
        return view
    _ensure_writable(context)
    section = await _section_for_comment(session, context, data.section_id, data.paragraph)
    comment = Comment(
        **data.model_dump(),
        round_id=context.round.id or 0,
        task_id=context.task.id or 0,
        author_link_id=context.link.id,
        author_email=context.link.email,
    )
    session.add(comment)
    await session.flush()
    await audit.append(
        session,
        actor=context.actor,
        action="comment.added",
        round_id=context.round.id,
        task_id=context.task.id,
        data={**_comment_data(comment, section), "ip": client.ip},
    )
    await session.commit()
    return _comment_view(comment, {section.id: section.number})


async def _section_number(session: AsyncSession, section_id: int) -> str:
    section = await session.get(Section, section_id)
    return section.number if section else "?"


async def _own_active_comment(session: AsyncSession, context: LinkContext, comment_id: int) -> Comment:
    comment = await session.get(Comment, comment_id)
    if comment is None or comment.task_id != context.task.id:
        raise NotFound("your organisation has no such comment")
    if comment.status != CommentStatus.active:
        raise Conflict("this comment was withdrawn and can no longer be changed", error="comment_withdrawn")
    return comment


@transactional
async def edit_comment(
    session: AsyncSession, *, token: str, comment_id: int, data: CommentUpdate, client: ClientInfo
) -> CommentView:
    context = await resolve(session, token=token, lock=True)
    _ensure_writable(context)
    comment = await _own_active_comment(session, context, comment_id)
    section = await _section_for_comment(session, context, comment.section_id, data.paragraph)
    before = _comment_data(comment, section)
    changes = data.model_dump()
    if all(getattr(comment, name) == value for name, value in changes.items()):
        unchanged = _comment_view(comment, {section.id: section.number})
        await session.rollback()  # expires every loaded object: read them before, never after
        return unchanged
    for name, value in changes.items():
        setattr(comment, name, value)
    comment.revision += 1
    comment.updated_at = utcnow()
    session.add(comment)
    await audit.append(
        session,
        actor=context.actor,
        action="comment.edited",
        round_id=context.round.id,
        task_id=context.task.id,
        data={
            "before": before,
            "after": _comment_data(comment, section),
            "revision": comment.revision,
            "ip": client.ip,
        },
    )
    await session.commit()
    return _comment_view(comment, {section.id: section.number})


@transactional
async def withdraw_comment(session: AsyncSession, *, token: str, comment_id: int, client: ClientInfo) -> None:
    context = await resolve(session, token=token, lock=True)
    _ensure_writable(context)
    comment = await _own_active_comment(session, context, comment_id)
    comment.status = CommentStatus.withdrawn
    comment.updated_at = utcnow()
    session.add(comment)
    await audit.append(
        session,
        actor=context.actor,
        action="comment.withdrawn",
        round_id=context.round.id,
        task_id=context.task.id,
        data={"comment_id": comment.id, "ip": client.ip},
    )
    await session.commit()


@transactional
async def sign_off(
    session: AsyncSession, *, token: str, data: SignOffCreate, client: ClientInfo
) -> SignOffRead:
    """Record the organisation's sign-off. Submitting the same form twice returns the first receipt."""
    context = await resolve(session, token=token, lock=True)
    existing = (await session.exec(select(SignOff).where(SignOff.task_id == context.task.id))).first()
    if existing is not None:
        # Read what is needed before the rollback, which expires every loaded object.
        receipt = SignOffRead.of(existing, context.organisation)
        same_submission = existing.submission_id == data.submission_id
        await session.rollback()
        if same_submission:
            return receipt
        raise Conflict(
            f"Your organisation has already signed off: {receipt.signer_name} recorded the decision "
            f"'{receipt.decision.replace('_', ' ')}' on {receipt.signed_at:%d %B %Y at %H:%M} UTC. "
            "A sign-off cannot be changed; contact the coordinator if it needs to be.",
            error="already_signed_off",
        )
    _ensure_writable(context)
    active_comments = (
        await session.exec(
            select(Comment.id).where(
                Comment.task_id == context.task.id, Comment.status == CommentStatus.active
            )
        )
    ).all()
    if data.decision == Decision.approve_with_comments and not active_comments:
        raise InvalidInput("'Approve with comments' needs at least one comment; add your comments first")
    if data.decision == Decision.object and not data.statement:
        raise InvalidInput("an objection needs a statement of the reasons")
    sections = await _assigned_sections(session, context.task)
    reviewed = [{"number": s.number, "heading": s.heading, "sha256": s.sha256} for s in sections]
    user_agent = (client.user_agent or "")[:500] or None
    event = await audit.append(
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
    )
    session.add(record)
    context.task.status = TaskStatus.signed_off
    context.task.decision = data.decision
    context.task.completed_at = event.at
    session.add(context.task)
    await session.commit()
    return SignOffRead.of(record, context.organisation)
