"""What a round produced, as coordinators and auditors read it: the closing summary, the sign-off register."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CloseReason, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import SignOff, SignOffRead
from models.rounds import ReviewTask
from services.errors import Conflict
from services.rounds import coordinator_email, get_round, get_round_row


@dataclass
class RoundClosure:
    round_id: int
    title: str
    closed_at: datetime
    reason: CloseReason
    counts: dict[str, int]
    decisions: dict[str, int] = field(default_factory=dict)
    no_response: list[str] = field(default_factory=list)
    objections: list[str] = field(default_factory=list)
    coordinator_email: str | None = None
    close_note: str | None = None
    timezone: str = "UTC"
    silence_means: str = "no_response"
    deemed_content: list[str] = field(default_factory=list)


async def closure_summary(session: AsyncSession, *, round_id: int) -> RoundClosure:
    """What the coordinator is told when a round has closed."""
    round_ = await get_round_row(session, round_id=round_id)
    if round_.status != RoundStatus.closed or round_.closed_at is None or round_.close_reason is None:
        raise Conflict(f"round {round_id} is not closed")
    detail = await get_round(session, round_id=round_id)
    coordinator = await coordinator_email(session, round_)
    decisions = Counter(str(task.decision) for task in detail.tasks if task.decision is not None)
    return RoundClosure(
        round_id=round_id,
        title=round_.title,
        closed_at=round_.closed_at,
        reason=round_.close_reason,
        counts={
            "organisations": detail.counts.organisations,
            "signed_off": detail.counts.signed_off,
            "no_response": detail.counts.no_response,
            "deemed_content": detail.counts.deemed_content,
            "comments": detail.counts.comments,
        },
        decisions=dict(decisions),
        no_response=[
            task.organisation_name for task in detail.tasks if task.status == TaskStatus.no_response
        ],
        objections=[task.organisation_name for task in detail.tasks if task.decision == "object"],
        coordinator_email=coordinator,
        close_note=round_.close_note,
        timezone=round_.timezone,
        silence_means=str(round_.silence_means),
        deemed_content=[
            task.organisation_name for task in detail.tasks if task.status == TaskStatus.deemed_content
        ],
    )


async def list_sign_offs(session: AsyncSession, *, round_id: int) -> list[SignOffRead]:
    await get_round_row(session, round_id=round_id)
    rows = (
        await session.exec(
            select(SignOff, Organisation)
            .join(ReviewTask, col(ReviewTask.id) == SignOff.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(SignOff.round_id == round_id)
            .order_by(col(SignOff.signed_at), col(SignOff.id))
        )
    ).all()
    return [SignOffRead.of(sign_off, organisation) for sign_off, organisation in rows]
