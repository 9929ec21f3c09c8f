"""What a focal point does through a review link: read, comment, sign off.

Every write is one transaction holding the record and its audit event. The deadline and state checks run
inside it, against the locked task row (and the round row, shared), so a sign-off and the round's close
cannot both win.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
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
from services import audit, links, rounds
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
    paragraphs: tuple[str, ...]
    html: str


@dataclass(frozen=True)
class DraftView:
    """A draft version as the review pages show it, sections in document order. A version and its
    sections are never changed once uploaded (a revised draft is a new version), so it is read and
    rendered once per process and engine rather than on every page and every write."""

    title: str
    preamble_html: str
    sections: dict[int, SectionView]

    def assigned(self, section_ids: Iterable[int]) -> list[SectionView]:
        wanted = set(section_ids)
        return [section for section_id, section in self.sections.items() if section_id in wanted]


_DRAFT_CACHE_SIZE = 64
# Keyed by engine: ids are only unique within one database, and a process may use several (the tests).
_drafts: WeakKeyDictionary[Engine, dict[int, DraftView]] = WeakKeyDictionary()


async def draft_view(session: AsyncSession, *, version_id: int) -> DraftView:
    cache = _drafts.setdefault(session.get_bind().engine, {})
    cached = cache.get(version_id)
    if cached is not None:
        return cached
    version = await session.get(DocumentVersion, version_id)
    assert version is not None  # a round's version is a foreign key
    sections = await session.exec(
        select(Section).where(Section.document_version_id == version_id).order_by(col(Section.position))
    )
    view = DraftView(
        title=version.title,
        preamble_html=render_markdown_html(version.preamble) if version.preamble else "",
        sections={
            section.id or 0: SectionView(
                id=section.id or 0,
                number=section.number,
                heading=section.heading,
                sha256=section.sha256,
                paragraphs=tuple(section.paragraphs),
                html=render_section_html(section.text),
            )
            for section in sections
        },
    )
    if len(cache) >= _DRAFT_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[version_id] = view
    return view


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
    return (await _resolve(session, token=token, lock=lock)).context


@dataclass(frozen=True)
class _Resolved:
    context: LinkContext
    sign_off: SignOff | None = None
    comment: Comment | None = None


async def _resolve(
    session: AsyncSession,
    *,
    token: str,
    lock: bool,
    with_sign_off: bool = False,
    submission_id: str | None = None,
) -> _Resolved:
    """`resolve`, and the task's sign-off (`with_sign_off`) and its comment made by the form
    `submission_id`, if any.

    Every statement is a round trip, and in a write one more moment the write lock is held. Without row
    locks to take (a read, or SQLite, whose BEGIN IMMEDIATE already holds the whole database) it is all
    one query. With them (PostgreSQL), the link with its round, then the task with its organisation,
    then the rest: only a statement that starts after the task lock is granted sees what the writer
    who held it committed."""
    if not token or len(token) > 100:
        raise NotFound(INVALID_LINK, error="invalid_link")
    digest = links.token_sha256(token)
    if not lock or session.get_bind().dialect.name == "sqlite":
        query = _link_query(with_sign_off=with_sign_off, with_comment=submission_id is not None)
        params = {"token_sha256": digest}
        if submission_id is not None:
            params["submission_id"] = submission_id
        row = (await session.exec(query, params=params)).first()
        if row is None:
            raise NotFound(INVALID_LINK, error="invalid_link")
        link, round_, task, organisation, *extra = row
        _ensure_not_revoked(link)
        return _Resolved(
            LinkContext(link=link, task=task, round=round_, organisation=organisation),
            sign_off=extra.pop(0) if with_sign_off else None,
            comment=extra.pop(0) if submission_id is not None else None,
        )
    link_query = (
        select(AccessLink, Round)
        .join(Round, col(Round.id) == AccessLink.round_id)
        .where(AccessLink.token_sha256 == digest)
        .with_for_update(of=Round, read=True)
        .execution_options(populate_existing=True)
    )
    found = (await session.exec(link_query)).first()
    if found is None:
        raise NotFound(INVALID_LINK, error="invalid_link")
    link, round_ = found
    _ensure_not_revoked(link)
    task_query = (
        select(ReviewTask, Organisation)
        .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
        .where(ReviewTask.id == link.task_id)
        .with_for_update(of=ReviewTask)
        .execution_options(populate_existing=True)
    )
    task, organisation = (await session.exec(task_query)).one()
    sign_off = comment = None
    if with_sign_off:
        sign_off = (await session.exec(select(SignOff).where(SignOff.task_id == task.id))).first()
    if submission_id is not None:
        comment = (
            await session.exec(
                select(Comment).where(Comment.task_id == task.id, Comment.submission_id == submission_id)
            )
        ).first()
    return _Resolved(
        LinkContext(link=link, task=task, round=round_, organisation=organisation), sign_off, comment
    )


@functools.cache
def _link_query(*, with_sign_off: bool, with_comment: bool) -> Any:
    """The one-query form of `_resolve`, built once: building a statement costs more than running it."""
    query: Any = (
        select(AccessLink, Round, ReviewTask, Organisation)
        .join(Round, col(Round.id) == AccessLink.round_id)
        .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
        .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
        .where(AccessLink.token_sha256 == bindparam("token_sha256"))
    )
    if with_sign_off:
        query = query.add_columns(SignOff).outerjoin(SignOff, col(SignOff.task_id) == ReviewTask.id)
    if with_comment:
        query = query.add_columns(Comment).outerjoin(
            Comment,
            (col(Comment.task_id) == ReviewTask.id)
            & (col(Comment.submission_id) == bindparam("submission_id")),
        )
    return query


_TASK_COMMENTS = (
    select(Comment).where(Comment.task_id == bindparam("task_id")).order_by(col(Comment.created_at))
)


def _ensure_not_revoked(link: AccessLink) -> None:
    if link.revoked_at is not None:
        raise Forbidden(
            "This review link has been withdrawn by the coordinator. Ask them for a new one.",
            error="link_revoked",
        )


async def review_page(session: AsyncSession, *, token: str) -> ReviewPage:
    resolved = await _resolve(session, token=token, lock=False, with_sign_off=True)
    context, sign_off = resolved.context, resolved.sign_off
    draft = await draft_view(session, version_id=context.round.document_version_id)
    numbers: dict[int | None, str] = {section.id: section.number for section in draft.sections.values()}
    comments = (await session.exec(_TASK_COMMENTS, params={"task_id": context.task.id})).all()
    return ReviewPage(
        context=context,
        draft_title=draft.title,
        preamble_html=draft.preamble_html,
        state=state_of(context, utcnow()),
        sections=draft.assigned(context.task.section_ids),
        comments=[_comment_view(comment, numbers) for comment in comments],
        sign_off=SignOffRead.of(sign_off, context.organisation) if sign_off else None,
    )


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


async def _commit_with_event(
    session: AsyncSession, context: LinkContext, action: str, data: dict[str, Any]
) -> None:
    """Record the focal point's action on the audit trail and commit it with the change it records."""
    async with audit.chain_turn(session):
        await audit.append(
            session,
            actor=context.actor,
            action=action,
            round_id=context.round.id,
            task_id=context.task.id,
            data=data,
        )
        await session.commit()


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
) -> SectionView:
    draft = await draft_view(session, version_id=context.round.document_version_id)
    section = draft.sections.get(section_id)
    if section is None or section_id not in context.task.section_ids:
        raise InvalidInput("that section is not among the sections assigned to your organisation")
    if paragraph is not None and paragraph not in section.paragraphs:
        raise InvalidInput(f"section {section.number} has no paragraph {paragraph}")
    return section


def _comment_data(comment: Comment, section: SectionView) -> dict[str, Any]:
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
    resolved = await _resolve(session, token=token, lock=True, submission_id=data.submission_id)
    context, repeated = resolved.context, resolved.comment
    if repeated is not None:
        draft = await draft_view(session, version_id=context.round.document_version_id)
        numbers: dict[int | None, str] = {section.id: section.number for section in draft.sections.values()}
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
    await _commit_with_event(
        session, context, "comment.added", {**_comment_data(comment, section), "ip": client.ip}
    )
    return _comment_view(comment, {section.id: section.number})


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
    await _commit_with_event(
        session,
        context,
        "comment.edited",
        {
            "before": before,
            "after": _comment_data(comment, section),
            "revision": comment.revision,
            "ip": client.ip,
        },
    )
    return _comment_view(comment, {section.id: section.number})


@transactional
async def withdraw_comment(session: AsyncSession, *, token: str, comment_id: int, client: ClientInfo) -> None:
    context = await resolve(session, token=token, lock=True)
    _ensure_writable(context)
    comment = await _own_active_comment(session, context, comment_id)
    comment.status = CommentStatus.withdrawn
    comment.updated_at = utcnow()
    session.add(comment)
    await _commit_with_event(
        session, context, "comment.withdrawn", {"comment_id": comment.id, "ip": client.ip}
    )


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
    resolved = await _resolve(session, token=token, lock=True, with_sign_off=True)
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
    draft = await draft_view(session, version_id=context.round.document_version_id)
    sections = draft.assigned(context.task.section_ids)
    reviewed = [{"number": s.number, "heading": s.heading, "sha256": s.sha256} for s in sections]
    user_agent = (client.user_agent or "")[:500] or None
    async with audit.chain_turn(session):
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
        # Counted while holding the audit chain head, which every sign-off takes: a sign-off committed
        # before this one is seen, one committed after sees this one, so the last one always knows.
        others_left = await rounds.any_unsettled_task(
            session, round_id=context.round.id or 0, excluding_task_id=context.task.id
        )
        await session.commit()
    return SignOffOutcome(SignOffRead.of(record, context.organisation), round_settled=not others_left)
