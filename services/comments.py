"""Comments: focal points write them through their links; the coordinator reads every comment of a round.

Each write is one transaction holding the comment and its audit event, with the link's task row locked,
so a comment and a sign-off or the round's close cannot interleave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.documents import Section
from models.enums import CommentStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import (
    Comment,
    CommentCreate,
    CommentRead,
    CommentUpdate,
)
from models.rounds import ReviewTask
from models.types import utcnow
from services.audit import trail
from services.db import transactional
from services.documents import SectionView, draft_view
from services.errors import Conflict, InvalidInput, NotFound
from services.links import ClientInfo, LinkContext, ensure_writable, resolve
from services.rounds import get_round_row


@dataclass(frozen=True)
class CommentView:
    id: int
    section_id: int
    section_number: str
    paragraph: str | None
    kind: str
    weight: str
    body: str
    proposed_wording: str | None
    status: CommentStatus
    revision: int
    author_email: str
    created_at: datetime
    updated_at: datetime


def comment_view(comment: Comment, numbers: dict[int | None, str]) -> CommentView:
    return CommentView(
        id=comment.id or 0,
        section_id=comment.section_id,
        section_number=numbers.get(comment.section_id, "?"),
        paragraph=comment.paragraph,
        kind=str(comment.kind),
        weight=str(comment.weight),
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
    """Record the focal point's action on the audit trail and commit it with the change it records; the
    task shows it as its last activity, and a task with comments is being commented on."""
    context.task.last_activity_at = utcnow()
    if action == "comment.added" and context.task.status in (
        TaskStatus.pending,
        TaskStatus.invited,
        TaskStatus.opened,
    ):
        context.task.status = TaskStatus.commenting
    session.add(context.task)
    async with trail.chain_turn(session):
        await trail.append(
            session,
            actor=context.actor,
            action=action,
            round_id=context.round.id,
            task_id=context.task.id,
            data=data,
        )
        await session.commit()


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
        "weight": str(comment.weight),
        "body": comment.body,
        "proposed_wording": comment.proposed_wording,
    }


@transactional
async def add_comment(
    session: AsyncSession, *, token: str, data: CommentCreate, client: ClientInfo
) -> CommentView:
    """Record a comment; the same form submitted twice (a double click) records it once."""
    resolved = await resolve(session, token=token, lock=True, submission_id=data.submission_id)
    context, repeated = resolved.context, resolved.comment
    if repeated is not None:
        draft = await draft_view(session, version_id=context.round.document_version_id)
        numbers: dict[int | None, str] = {section.id: section.number for section in draft.sections.values()}
        view = comment_view(repeated, numbers)
        await session.rollback()
        return view
    ensure_writable(context)
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
    return comment_view(comment, {section.id: section.number})


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
    context = (await resolve(session, token=token, lock=True)).context
    ensure_writable(context)
    comment = await _own_active_comment(session, context, comment_id)
    section = await _section_for_comment(session, context, comment.section_id, data.paragraph)
    before = _comment_data(comment, section)
    changes = data.model_dump()
    if all(getattr(comment, name) == value for name, value in changes.items()):
        unchanged = comment_view(comment, {section.id: section.number})
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
    return comment_view(comment, {section.id: section.number})


@transactional
async def withdraw_comment(session: AsyncSession, *, token: str, comment_id: int, client: ClientInfo) -> None:
    context = (await resolve(session, token=token, lock=True)).context
    ensure_writable(context)
    comment = await _own_active_comment(session, context, comment_id)
    comment.status = CommentStatus.withdrawn
    comment.updated_at = utcnow()
    session.add(comment)
    await _commit_with_event(
        session, context, "comment.withdrawn", {"comment_id": comment.id, "ip": client.ip}
    )


async def count_by_status(session: AsyncSession, *, round_id: int) -> dict[str, int]:
    """A round's comments by status (active, withdrawn): what its page says before it links to the list."""
    found = await session.exec(
        select(Comment.status, func.count()).where(Comment.round_id == round_id).group_by(col(Comment.status))
    )
    return {str(status): count for status, count in found}


async def list_comments(session: AsyncSession, *, round_id: int) -> list[CommentRead]:
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            select(Comment, Section.number, Organisation.key)
            .join(Section, col(Section.id) == Comment.section_id)
            .join(ReviewTask, col(ReviewTask.id) == Comment.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(Comment.round_id == round_id)
            .order_by(col(Section.position), col(Comment.paragraph), col(Comment.created_at))
        )
    ).all()
    return [
        CommentRead.model_validate(
            {**comment.model_dump(), "section_number": number, "organisation_key": key}
        )
        for comment, number, key in rows
    ]
