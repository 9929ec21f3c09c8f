"""The objections register of a round, and whether its draft is cleared.

An objection is an active comment of weight `objection`. It is open until an answer to it is published;
an accepted or partly accepted answer resolves it, a rejected or noted one leaves it maintained. The draft
is cleared when every approver has approved (with or without comments) and no objection is open or
maintained.
"""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.documents import Section
from models.enums import (
    CommentStatus,
    CommentWeight,
    ConsultationRole,
    Decision,
    ObjectionState,
    ResponseKind,
    TaskStatus,
)
from models.organisations import Organisation
from models.responses import Clearance, CommentResponse, ObjectionRead
from models.reviews import Comment
from models.rounds import ReviewTask, Round
from services.errors import NotFound

APPROVING = frozenset({Decision.approve, Decision.approve_with_comments})
RESOLVING = frozenset({ResponseKind.accepted, ResponseKind.partially_accepted})
# Tasks that are no longer part of the round's outcome.
LEFT_OUT = frozenset({TaskStatus.withdrawn, TaskStatus.cancelled})


def objection_state(response: CommentResponse | None) -> ObjectionState:
    if response is None or response.published_at is None:
        return ObjectionState.open
    return ObjectionState.resolved if response.response in RESOLVING else ObjectionState.maintained


async def register(session: AsyncSession, *, round_id: int) -> list[ObjectionRead]:
    """Every objection of the round, in the draft's order, with its state."""
    if await session.get(Round, round_id) is None:
        raise NotFound(f"round {round_id} does not exist")
    rows = (
        await session.exec(
            # sqlmodel's select() is typed for four columns at most
            select(Comment, Section.number, Organisation, ReviewTask.role, CommentResponse)  # type: ignore[call-overload]
            .join(Section, col(Section.id) == Comment.section_id)
            .join(ReviewTask, col(ReviewTask.id) == Comment.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .outerjoin(CommentResponse, col(CommentResponse.comment_id) == Comment.id)
            .where(
                Comment.round_id == round_id,
                Comment.status == CommentStatus.active,
                Comment.weight == CommentWeight.objection,
                col(ReviewTask.status).not_in([str(status) for status in LEFT_OUT]),
            )
            .order_by(col(Section.position), col(Comment.paragraph), col(Comment.id))
        )
    ).all()
    return [
        ObjectionRead(
            comment_id=comment.id or 0,
            organisation_key=organisation.key,
            organisation_name=organisation.name_en,
            role=role,
            section=number,
            paragraph=comment.paragraph,
            text=comment.body,
            state=objection_state(response),
            response=response.response if response is not None and response.published_at else None,
            justification=response.justification if response is not None and response.published_at else None,
        )
        for comment, number, organisation, role, response in rows
    ]


def _where(objection: ObjectionRead) -> str:
    paragraph = f", paragraph {objection.paragraph}" if objection.paragraph else ""
    return f"section {objection.section}{paragraph}"


async def clearance(session: AsyncSession, *, round_id: int) -> Clearance:
    """Whether the round's draft is cleared, and each thing that blocks it, as a sentence."""
    approvers = (
        await session.exec(
            select(Organisation.name_en, ReviewTask.status, ReviewTask.decision)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(
                ReviewTask.round_id == round_id,
                ReviewTask.role == ConsultationRole.approver,
                col(ReviewTask.status).not_in([str(status) for status in LEFT_OUT]),
            )
            .order_by(col(Organisation.name_en))
        )
    ).all()
    blocking: list[str] = []
    approved = 0
    for name, status, decision in approvers:
        if status == TaskStatus.signed_off and decision in APPROVING:
            approved += 1
        elif status == TaskStatus.signed_off and decision == Decision.object:
            blocking.append(f"{name} objects to the draft.")
        elif status == TaskStatus.signed_off:
            blocking.append(f"{name} gave no opinion; an approver's approval is needed.")
        else:
            blocking.append(f"{name} has not approved yet ({str(status).replace('_', ' ')}).")
    objections = await register(session, round_id=round_id)
    open_ = [objection for objection in objections if objection.state == ObjectionState.open]
    maintained = [objection for objection in objections if objection.state == ObjectionState.maintained]
    for objection in open_:
        where = f"section {objection.section}" + (
            f", paragraph {objection.paragraph}" if objection.paragraph else ""
        )
        blocking.append(f"Objection of {objection.organisation_name} on {where} is not answered yet.")
    for objection in maintained:
        where = f"section {objection.section}" + (
            f", paragraph {objection.paragraph}" if objection.paragraph else ""
        )
        blocking.append(
            f"Objection of {objection.organisation_name} on {where} is maintained: "
            f"the answer was {str(objection.response).replace('_', ' ')}."
        )
    if not approvers:
        blocking.insert(0, "No organisation of the round is an approver.")
    return Clearance(
        cleared=not blocking,
        blocking=blocking,
        approvers=len(approvers),
        approved=approved,
        objections_open=len(open_),
        objections_maintained=len(maintained),
    )
