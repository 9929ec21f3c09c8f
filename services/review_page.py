"""The focal point's review page as data: the assigned sections, the organisation's comments, its sign-off."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import ExtensionRequestStatus
from models.extensions import ExtensionRequest
from models.reviews import (
    Comment,
    SignOffRead,
)
from models.types import utcnow
from services import sign_off_codes, working_days
from services.comments import CommentView, comment_view
from services.documents import SectionView, draft_view
from services.links import LinkContext, ReviewState, resolve, state_of


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
    timezone: str
    """The organisation's (the round's when it has none): deadlines are shown in it."""
    working_days_left: int
    pending_request: ExtensionRequest | None
    """The organisation's request for more time, while the coordinator has not answered it."""
    pending_sign_off: sign_off_codes.PendingSignOff | None = None
    """This link's sign-off waiting for the code emailed to its contact."""

    @property
    def writable(self) -> bool:
        return self.state == ReviewState.open

    @property
    def may_ask_for_time(self) -> bool:
        return self.pending_request is None and self.state in (ReviewState.open, ReviewState.deadline_passed)


_TASK_COMMENTS = (
    select(Comment).where(Comment.task_id == bindparam("task_id")).order_by(col(Comment.created_at))
)


async def review_page(session: AsyncSession, *, token: str) -> ReviewPage:
    resolved = await resolve(session, token=token, lock=False, with_sign_off=True)
    context, sign_off = resolved.context, resolved.sign_off
    draft = await draft_view(session, version_id=context.round.document_version_id)
    numbers: dict[int | None, str] = {section.id: section.number for section in draft.sections.values()}
    comments = (await session.exec(_TASK_COMMENTS, params={"task_id": context.task.id})).all()
    timezone = context.organisation.timezone or context.round.timezone
    now = utcnow()
    pending = (
        await session.exec(
            select(ExtensionRequest).where(
                ExtensionRequest.task_id == context.task.id,
                ExtensionRequest.status == ExtensionRequestStatus.pending,
            )
        )
    ).first()
    state = state_of(context, now)
    pending_sign_off = None
    if sign_off is None and state == ReviewState.open and context.round.sign_off_code_required:
        waiting = await sign_off_codes.latest(session, link_id=context.link.id)
        if waiting is not None:
            pending_sign_off = sign_off_codes.pending_view(waiting, to_email=context.link.email, now=now)
    return ReviewPage(
        context=context,
        draft_title=draft.title,
        preamble_html=draft.preamble_html,
        state=state,
        sections=draft.assigned(context.task.section_ids),
        comments=[comment_view(comment, numbers) for comment in comments],
        sign_off=SignOffRead.of(sign_off, context.organisation) if sign_off else None,
        timezone=timezone,
        working_days_left=working_days.working_days_left(
            context.round.jurisdiction, now, context.task.deadline, timezone
        ),
        pending_request=pending,
        pending_sign_off=pending_sign_off,
    )
