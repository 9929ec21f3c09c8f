"""The coordinator's answers to comments: drafted privately, one at a time or several at once, then
published together, when every organisation answered gets one feedback letter listing its comments and
what became of each.

An answer is a draft until the round's next publication. Answering a comment again replaces its answer and
makes it a draft again, so the next publication tells the organisation the new answer. Every answer and
every publication is on the audit trail, in the transaction that records it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.documents import Section
from models.enums import CommentStatus, ContactRole, Language, MessageKind, RoundStatus
from models.organisations import Organisation
from models.responses import (
    BulkResponse,
    CommentResponse,
    CommentResponseRead,
    PublicationRead,
    ResponseBase,
    ResponseSet,
    RoundCommentRead,
)
from models.reviews import AccessLink, Comment
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services import outbox
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, NotFound
from services.invitations import organisation_name, sender_name
from services.outbox import Mail
from services.rounds import get_round_row
from services.settings import Settings

ANSWERABLE = frozenset({RoundStatus.open, RoundStatus.closed})
RESPONSE_LABELS = {
    Language.en: {
        "accepted": "Accepted",
        "partially_accepted": "Partly accepted",
        "rejected": "Not accepted",
        "noted": "Noted",
    },
    Language.sq: {
        "accepted": "Pranuar",
        "partially_accepted": "Pranuar pjesërisht",
        "rejected": "Nuk pranohet",
        "noted": "Marrë në dijeni",
    },
}


def response_read(response: CommentResponse, comment: Comment) -> CommentResponseRead:
    return CommentResponseRead(
        response=response.response,
        justification=response.justification,
        new_wording=response.new_wording,
        comment_id=response.comment_id,
        drafted_at=response.drafted_at,
        published_at=response.published_at,
        stale=comment.revision != response.comment_revision,
    )


async def list_round_comments(session: AsyncSession, *, round_id: int) -> list[RoundCommentRead]:
    """Every comment of the round in the draft's order, withdrawn ones too (marked), with its answer."""
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            # sqlmodel's select() is typed for four columns at most
            select(Comment, Section.number, Organisation, ReviewTask.role, CommentResponse)  # type: ignore[call-overload]
            .join(Section, col(Section.id) == Comment.section_id)
            .join(ReviewTask, col(ReviewTask.id) == Comment.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .outerjoin(CommentResponse, col(CommentResponse.comment_id) == Comment.id)
            .where(Comment.round_id == round_id)
            .order_by(col(Section.position), col(Comment.paragraph), col(Comment.id))
        )
    ).all()
    return [
        RoundCommentRead(
            id=comment.id or 0,
            organisation_key=organisation.key,
            organisation_name=organisation.name_en,
            role=role,
            section=number,
            paragraph=comment.paragraph,
            type=str(comment.kind),
            weight=str(comment.weight),
            text=comment.body,
            proposed_wording=comment.proposed_wording,
            status=str(comment.status),
            revision=comment.revision,
            author_email=comment.author_email,
            created_at=comment.created_at,
            updated_at=comment.updated_at,
            response=response_read(response, comment) if response is not None else None,
        )
        for comment, number, organisation, role, response in rows
    ]


async def _answer(
    session: AsyncSession, *, comments: Sequence[Comment], data: ResponseBase, user_id: int | None
) -> list[tuple[CommentResponse, Comment]]:
    ids = [comment.id or 0 for comment in comments]
    existing = {
        response.comment_id: response
        for response in (
            await session.exec(select(CommentResponse).where(col(CommentResponse.comment_id).in_(ids)))
        ).all()
    }
    now = utcnow()
    answered: list[tuple[CommentResponse, Comment]] = []
    for comment in comments:
        response = existing.get(comment.id or 0) or CommentResponse(
            comment_id=comment.id or 0,
            round_id=comment.round_id,
            response=data.response,
            comment_revision=comment.revision,
        )
        response.response = data.response
        response.justification = data.justification
        response.new_wording = data.new_wording
        response.comment_revision = comment.revision
        response.drafted_by_id = user_id
        response.drafted_at = now
        response.published_at = None
        session.add(response)
        answered.append((response, comment))
    await session.flush()
    return answered


def _answer_data(data: ResponseBase) -> dict[str, Any]:
    return {
        "response": str(data.response),
        "justification": data.justification,
        "new_wording": data.new_wording,
    }


async def _answerable_round(session: AsyncSession, round_id: int) -> Round:
    # Shared lock: answers wait for a publication under way, and a publication for answers being drafted.
    round_ = await get_round_row(session, round_id=round_id, lock=True, shared=True)
    if round_.status not in ANSWERABLE:
        raise Conflict(
            f"round {round_id} is {round_.status}: comments are answered in open and closed rounds",
            error="round_not_answerable",
        )
    return round_


@transactional
async def answer_comment(
    session: AsyncSession, *, comment_id: int, data: ResponseSet, actor: Actor, user_id: int | None
) -> CommentResponseRead:
    """Draft (or redraft) the answer to one comment."""
    comment = await session.get(Comment, comment_id)
    if comment is None:
        raise NotFound(f"comment {comment_id} does not exist")
    await _answerable_round(session, comment.round_id)
    if comment.status != CommentStatus.active:
        raise Conflict(
            f"comment {comment_id} was withdrawn by its author and is not answered", error="comment_withdrawn"
        )
    ((response, answered),) = await _answer(session, comments=[comment], data=data, user_id=user_id)
    await trail.append(
        session,
        actor=actor,
        action="response.drafted",
        round_id=comment.round_id,
        task_id=comment.task_id,
        data={"comment_ids": [comment_id], **_answer_data(data)},
    )
    read = response_read(response, answered)
    await session.commit()
    return read


@transactional
async def answer_comments(
    session: AsyncSession, *, round_id: int, data: BulkResponse, actor: Actor, user_id: int | None
) -> list[CommentResponseRead]:
    """One answer to several similar comments of the round: all of them or none."""
    await _answerable_round(session, round_id)
    wanted = list(dict.fromkeys(data.comment_ids))
    found = {
        comment.id: comment
        for comment in (await session.exec(select(Comment).where(col(Comment.id).in_(wanted)))).all()
    }
    not_here = [
        comment_id
        for comment_id in wanted
        if comment_id not in found or found[comment_id].round_id != round_id
    ]
    if not_here:
        raise InvalidInput(
            f"round {round_id} has no comment {', '.join(str(comment_id) for comment_id in not_here)}"
        )
    withdrawn = [comment_id for comment_id in wanted if found[comment_id].status != CommentStatus.active]
    if withdrawn:
        raise Conflict(
            "withdrawn by their authors, not answered: comment "
            + ", ".join(str(comment_id) for comment_id in withdrawn),
            error="comment_withdrawn",
        )
    answered = await _answer(
        session, comments=[found[comment_id] for comment_id in wanted], data=data, user_id=user_id
    )
    await trail.append(
        session,
        actor=actor,
        action="response.drafted",
        round_id=round_id,
        data={"comment_ids": wanted, **_answer_data(data)},
    )
    reads = [response_read(response, comment) for response, comment in answered]
    await session.commit()
    return reads


@transactional
async def publish(
    session: AsyncSession, *, round_id: int, actor: Actor, settings: Settings
) -> PublicationRead:
    """Publish every drafted answer of the round; each organisation answered gets one feedback letter
    (to its focal point and its alternate) listing all its comments and what became of each."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status not in ANSWERABLE:
        raise Conflict(f"round {round_id} is {round_.status}: its answers are not published")
    drafts = (
        await session.exec(
            select(CommentResponse, Comment)
            .join(Comment, col(Comment.id) == CommentResponse.comment_id)
            .where(
                CommentResponse.round_id == round_id,
                col(CommentResponse.published_at).is_(None),
                Comment.status == CommentStatus.active,
            )
        )
    ).all()
    if not drafts:
        raise Conflict(
            "no answer is waiting to be published: answer comments first (published ones are not sent again)",
            error="nothing_to_publish",
        )
    now = utcnow()
    for response, _comment in drafts:
        response.published_at = now
        session.add(response)
    round_.answers_published_at = now
    session.add(round_)
    await session.flush()
    task_ids = sorted({comment.task_id for _response, comment in drafts})
    mails = await _feedback_letters(session, round_=round_, task_ids=task_ids, at=now, settings=settings)
    await outbox.enqueue(session, mails=mails)
    await trail.append(
        session,
        actor=actor,
        action="responses.published",
        round_id=round_id,
        data={
            "answers": len(drafts),
            "comment_ids": sorted(comment.id or 0 for _response, comment in drafts),
            "organisations": len(task_ids),
            "letters": len(mails),
        },
    )
    await session.commit()
    return PublicationRead(
        round_id=round_id,
        published=len(drafts),
        letters=len(mails),
        organisations=len(task_ids),
        published_at=now,
    )


async def _feedback_letters(
    session: AsyncSession, *, round_: Round, task_ids: list[int], at: Any, settings: Settings
) -> list[Mail]:
    """A letter per working contact of each task: every comment of the organisation (withdrawn ones left
    out) with its published answer, or that it is still being considered."""
    rows = (
        await session.exec(
            select(Comment, Section.number, CommentResponse)
            .join(Section, col(Section.id) == Comment.section_id)
            .outerjoin(CommentResponse, col(CommentResponse.comment_id) == Comment.id)
            .where(col(Comment.task_id).in_(task_ids), Comment.status == CommentStatus.active)
            .order_by(col(Section.position), col(Comment.paragraph), col(Comment.id))
        )
    ).all()
    by_task: dict[int, list[tuple[Comment, str, CommentResponse | None]]] = defaultdict(list)
    for comment, number, response in rows:
        by_task[comment.task_id].append((comment, number, response))
    contacts = (
        await session.exec(
            select(AccessLink, ReviewTask, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(
                col(AccessLink.task_id).in_(task_ids),
                col(AccessLink.revoked_at).is_(None),
                AccessLink.role != ContactRole.delegate,
            )
            .order_by(col(AccessLink.task_id), col(AccessLink.role))
        )
    ).all()
    mails = []
    for link, task, organisation in contacts:
        language = Language(organisation.language)
        labels = RESPONSE_LABELS[language]
        items = [
            {
                "section": number,
                "paragraph": comment.paragraph or "",
                "weight": str(comment.weight),
                "text": comment.body,
                "proposed_wording": comment.proposed_wording or "",
                "answered": response is not None and response.published_at is not None,
                "response": labels[str(response.response)]
                if response is not None and response.published_at
                else "",
                "justification": response.justification
                if response is not None and response.published_at
                else "",
                "new_wording": (response.new_wording or "")
                if response is not None and response.published_at
                else "",
            }
            for comment, number, response in by_task.get(task.id or 0, [])
        ]
        mails.append(
            Mail(
                key=f"feedback:{task.id}:{link.role}:{at.isoformat()}",
                kind=MessageKind.feedback,
                to_email=link.email,
                to_name=link.name,
                language=language,
                context={
                    "contact_name": link.name,
                    "round_title": round_.title,
                    "organisation_name": organisation_name(organisation, language),
                    "comments": items,
                    "answered": sum(1 for item in items if item["answered"]),
                    "sender_name": round_.contact_name or sender_name(settings),
                },
                round_id=round_.id,
                task_id=task.id,
            )
        )
    return mails
