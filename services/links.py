"""Personal review links: one per contact of a task, opened by random tokens of which only hashes are kept.

A link is created when its round is launched; a token for it is made when an email carrying it is
delivered (so each exists only in that email), and every token of a link opens it for the link's life:
until its task is settled (signed off, no response, deemed content) and the later of the task's deadline
and its settlement is a grace period past, or at once when the link is revoked (its contact replaced, a
new token issued by hand) or its task cancelled (withdrawn from the round, the round cancelled). A link
past its life answers 410 Gone, the same for every reason; a token that opens nothing answers 404.

Resolving a token gives the link's task, round and organisation, and what the link may do now (its state).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ActorKind, ContactRole, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import (
    AccessLink,
    Comment,
    LinkToken,
    SignOff,
)
from models.rounds import ReviewTask, Round
from models.types import utcnow
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, Gone, NotFound
from services.hashing import new_secret, sha256_hex

token_sha256 = sha256_hex


def new_link_row(
    *, task_id: int, round_id: int, role: ContactRole, email: str, name: str, created_at: datetime
) -> dict[str, object]:
    """A new link as a row for a bulk insert (a national round issues thousands at once); it has no
    token until an email carrying it is delivered."""
    return {
        "id": uuid.uuid4().hex,
        "task_id": task_id,
        "round_id": round_id,
        "role": role,
        "email": email,
        "name": name,
        "created_at": created_at,
    }


def review_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/t/{token}"


@transactional
async def reissue_token(session: AsyncSession, *, link_id: str, actor: Actor) -> str:
    """A fresh token for a link, e.g. to hand a focal point a new link by hand; its other tokens stop
    working."""
    link = (
        await session.exec(
            select(AccessLink)
            .where(AccessLink.id == link_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if link is None:
        raise NotFound(f"there is no review link {link_id}")
    if link.revoked_at is not None:
        raise Conflict("this review link has been withdrawn; it cannot be given a new token")
    token, digest = new_secret()
    await session.exec(delete(LinkToken).where(col(LinkToken.link_id) == link.id))
    session.add(LinkToken(token_sha256=digest, link_id=link.id))
    await trail.append(
        session,
        actor=actor,
        action="link.token_issued",
        round_id=link.round_id,
        task_id=link.task_id,
        data={"link_id": link.id, "email": link.email},
    )
    await session.commit()
    return token


LINK_GONE = (
    "This review link no longer works: its consultation task is finished, or the link was replaced or "
    "withdrawn."
)
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


def writable_until(task: ReviewTask, round_: Round) -> datetime:
    """The task's deadline plus the grace period: its links take comments and a sign-off until then."""
    return task.deadline + timedelta(hours=round_.grace_period_hours)


def state_of(context: LinkContext, now: datetime) -> ReviewState:
    if context.round.status != RoundStatus.open or context.task.status in CLOSED_TASK_STATUSES:
        return ReviewState.closed
    if context.task.status == TaskStatus.signed_off:
        return ReviewState.signed_off
    if context.task.status == TaskStatus.overdue or now >= writable_until(context.task, context.round):
        return ReviewState.deadline_passed
    return ReviewState.open


CLOSED_TASK_STATUSES = frozenset(
    {TaskStatus.no_response, TaskStatus.deemed_content, TaskStatus.cancelled, TaskStatus.withdrawn}
)


@dataclass(frozen=True)
class Resolved:
    context: LinkContext
    sign_off: SignOff | None = None
    comment: Comment | None = None


async def resolve(
    session: AsyncSession,
    *,
    token: str,
    lock: bool,
    with_sign_off: bool = False,
    submission_id: str | None = None,
) -> Resolved:
    """The link, task, round and organisation behind a token, and the task's sign-off (`with_sign_off`)
    and its comment made by the form `submission_id`, if any. With `lock`, the round row is share-locked
    and the task row locked for update, in that order (the close takes them in the same order).

    Every statement is a round trip, and in a write one more moment the write lock is held. Without row
    locks to take (a read, or SQLite, whose BEGIN IMMEDIATE already holds the whole database) it is all
    one query. With them (PostgreSQL), the link with its round, then the task with its organisation,
    then the rest: only a statement that starts after the task lock is granted sees what the writer
    who held it committed."""
    if not token or len(token) > 100:
        raise NotFound(INVALID_LINK, error="invalid_link")
    digest = token_sha256(token)
    if not lock or session.get_bind().dialect.name == "sqlite":
        query = _link_query(with_sign_off=with_sign_off, with_comment=submission_id is not None)
        params = {"token_sha256": digest}
        if submission_id is not None:
            params["submission_id"] = submission_id
        row = (await session.exec(query, params=params)).first()
        if row is None:
            raise NotFound(INVALID_LINK, error="invalid_link")
        link, round_, task, organisation, *extra = row
        _ensure_alive(link, task, round_)
        return Resolved(
            LinkContext(link=link, task=task, round=round_, organisation=organisation),
            sign_off=extra.pop(0) if with_sign_off else None,
            comment=extra.pop(0) if submission_id is not None else None,
        )
    link_query = (
        select(AccessLink, Round)
        .join(Round, col(Round.id) == AccessLink.round_id)
        .join(LinkToken, col(LinkToken.link_id) == AccessLink.id)
        .where(LinkToken.token_sha256 == digest)
        .with_for_update(of=Round, read=True)
        .execution_options(populate_existing=True)
    )
    found = (await session.exec(link_query)).first()
    if found is None:
        raise NotFound(INVALID_LINK, error="invalid_link")
    link, round_ = found
    task_query = (
        select(ReviewTask, Organisation)
        .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
        .where(ReviewTask.id == link.task_id)
        .with_for_update(of=ReviewTask)
        .execution_options(populate_existing=True)
    )
    task, organisation = (await session.exec(task_query)).one()
    _ensure_alive(link, task, round_)
    sign_off = comment = None
    if with_sign_off:
        sign_off = (
            await session.exec(
                select(SignOff).where(SignOff.task_id == task.id, col(SignOff.superseded_at).is_(None))
            )
        ).first()
    if submission_id is not None:
        comment = (
            await session.exec(
                select(Comment).where(Comment.task_id == task.id, Comment.submission_id == submission_id)
            )
        ).first()
    return Resolved(
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
        .join(LinkToken, col(LinkToken.link_id) == AccessLink.id)
        .where(LinkToken.token_sha256 == bindparam("token_sha256"))
    )
    if with_sign_off:
        query = query.add_columns(SignOff).outerjoin(
            SignOff, (col(SignOff.task_id) == ReviewTask.id) & col(SignOff.superseded_at).is_(None)
        )
    if with_comment:
        query = query.add_columns(Comment).outerjoin(
            Comment,
            (col(Comment.task_id) == ReviewTask.id)
            & (col(Comment.submission_id) == bindparam("submission_id")),
        )
    return query


SETTLED_TASK_STATUSES = frozenset({TaskStatus.signed_off, TaskStatus.no_response, TaskStatus.deemed_content})
CANCELLED_TASK_STATUSES = frozenset({TaskStatus.withdrawn, TaskStatus.cancelled})


def is_gone(link: AccessLink, task: ReviewTask, round_: Round, now: datetime) -> bool:
    """Whether the link's life is over. A settled task's links keep working through its deadline (the
    receipt stays to be read, a sign-off the coordinator reopens to be redone) and a grace period after
    its settlement; a revoked or cancelled link stops at once."""
    if link.revoked_at is not None or round_.status == RoundStatus.cancelled:
        return True
    if task.status in CANCELLED_TASK_STATUSES:
        return True
    if task.status not in SETTLED_TASK_STATUSES:
        return False
    settled = max(task.completed_at or task.deadline, task.deadline)
    return now >= settled + timedelta(hours=round_.grace_period_hours)


def _ensure_alive(link: AccessLink, task: ReviewTask, round_: Round) -> None:
    if is_gone(link, task, round_, utcnow()):
        raise Gone(LINK_GONE, error="link_gone")


def ensure_writable(context: LinkContext) -> None:
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


@transactional
async def record_opened(session: AsyncSession, *, token: str, client: ClientInfo) -> bool:
    """The review page was opened in a browser (its script says so; a GET never changes anything): an
    invited task becomes `opened`, once. True if this call changed it."""
    resolved = await resolve(session, token=token, lock=True)
    context = resolved.context
    if context.task.status != TaskStatus.invited or state_of(context, utcnow()) != ReviewState.open:
        await session.rollback()
        return False
    context.task.status = TaskStatus.opened
    context.task.last_activity_at = utcnow()
    session.add(context.task)
    await trail.append(
        session,
        actor=context.actor,
        action="task.opened",
        round_id=context.round.id,
        task_id=context.task.id,
        data={"organisation": context.organisation.key, "ip": client.ip},
    )
    await session.commit()
    return True
