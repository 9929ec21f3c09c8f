"""Escalation: a task whose deadline (and the round's grace period) passed without a sign-off is overdue.

Its organisation's escalation contact gets one email naming the round, the organisation and what is
missing (keyed by the task and the deadline it missed, so an extension that is missed again escalates
again), and the coordinator gets one summary of the tasks that became overdue together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.documents import Section
from models.enums import CommentStatus, Language, MessageKind, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import Comment
from models.rounds import ReviewTask, Round
from services import outbox
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.formatting import when_text
from services.invitations import organisation_name, sender_name
from services.outbox import Mail
from services.rounds import coordinator_email, get_round_row
from services.settings import Settings

ESCALATED_STATUSES = (TaskStatus.pending, TaskStatus.invited, TaskStatus.opened, TaskStatus.commenting)
"""Tasks that still owe a sign-off and have not been escalated for their deadline."""


@dataclass(frozen=True)
class EscalationPlan:
    due: int
    next_at: datetime | None


async def plan(session: AsyncSession, *, round_: Round, now: datetime) -> EscalationPlan:
    """Tasks of the round to escalate now, and when the next one falls due (the scheduler's clock)."""
    if round_.status != RoundStatus.open:
        return EscalationPlan(due=0, next_at=None)
    grace = timedelta(hours=round_.grace_period_hours)
    deadlines = (
        await session.exec(
            select(ReviewTask.deadline, func.count())
            .where(
                ReviewTask.round_id == round_.id,
                col(ReviewTask.status).in_([str(status) for status in ESCALATED_STATUSES]),
            )
            .group_by(col(ReviewTask.deadline))
        )
    ).all()
    due = sum(count for deadline, count in deadlines if deadline + grace <= now)
    upcoming = [deadline + grace for deadline, _count in deadlines if deadline + grace > now]
    return EscalationPlan(due=due, next_at=min(upcoming, default=None))


@transactional
async def escalate_overdue(session: AsyncSession, *, round_id: int, now: datetime, settings: Settings) -> int:
    """Make every task past its deadline and grace period overdue, tell each organisation's escalation
    contact and the coordinator, all in one transaction. Returns the tasks escalated."""
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        await session.rollback()
        return 0
    grace = timedelta(hours=round_.grace_period_hours)
    rows = [
        (task, organisation)
        for task, organisation in (
            await session.exec(
                select(ReviewTask, Organisation)
                .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
                .where(
                    ReviewTask.round_id == round_id,
                    col(ReviewTask.status).in_([str(status) for status in ESCALATED_STATUSES]),
                )
                .order_by(col(Organisation.name_en))
            )
        ).all()
        if task.deadline + grace <= now
    ]
    if not rows:
        await session.rollback()
        return 0
    missing = await _missing(session, round_, [task for task, _ in rows])
    mails: list[Mail] = []
    events: list[NewEvent] = []
    by_deadline: dict[datetime, list[tuple[ReviewTask, Organisation]]] = defaultdict(list)
    for task, organisation in rows:
        status_before = task.status
        task.status = TaskStatus.overdue
        task.escalated_at = now
        session.add(task)
        by_deadline[task.deadline].append((task, organisation))
        told = organisation.escalation_email
        if told:
            mails.append(_escalation(round_, task, organisation, missing[task.id or 0], now, settings))
        events.append(
            NewEvent(
                action="task.escalated",
                actor=SYSTEM_ACTOR,
                round_id=round_id,
                task_id=task.id,
                data={
                    "organisation": organisation.key,
                    "deadline": task.deadline.isoformat(),
                    "grace_period_hours": round_.grace_period_hours,
                    "status_before": str(status_before),
                    "escalation_contact": told,
                },
            )
        )
    coordinator = await coordinator_email(session, round_)
    if coordinator is not None:
        mails += [
            _summary(round_, deadline, group, missing, coordinator, now, settings)
            for deadline, group in sorted(by_deadline.items())
        ]
    await outbox.enqueue(session, mails=mails)
    await trail.append_many(session, events=events)
    await session.commit()
    return len(rows)


async def _missing(
    session: AsyncSession, round_: Round, tasks: list[ReviewTask]
) -> dict[int, dict[str, object]]:
    """Per task: no sign-off, and which of its sections have no comment."""
    commented: dict[int, set[int]] = defaultdict(set)
    for task_id, section_id in await session.exec(
        select(Comment.task_id, Comment.section_id).where(
            col(Comment.task_id).in_([task.id for task in tasks]), Comment.status == CommentStatus.active
        )
    ):
        commented[task_id].add(section_id)
    numbers = dict(
        (
            await session.exec(
                select(Section.id, Section.number).where(
                    Section.document_version_id == round_.document_version_id
                )
            )
        ).all()
    )
    return {
        task.id or 0: {
            "comments": len(commented[task.id or 0]),
            "sections_without_comments": [
                numbers[section_id]
                for section_id in task.section_ids
                if section_id not in commented[task.id or 0] and section_id in numbers
            ],
        }
        for task in tasks
    }


def escalation_key(task: ReviewTask) -> str:
    return f"escalation:{task.id}:{task.deadline.isoformat()}"


def _escalation(
    round_: Round,
    task: ReviewTask,
    organisation: Organisation,
    missing: dict[str, object],
    now: datetime,
    settings: Settings,
) -> Mail:
    language = Language(organisation.language)
    timezone = organisation.timezone or round_.timezone
    assert organisation.escalation_email is not None
    return Mail(
        key=escalation_key(task),
        kind=MessageKind.escalation,
        to_email=organisation.escalation_email,
        language=language,
        context={
            "round_title": round_.title,
            "organisation_name": organisation_name(organisation, language),
            "deadline_text": when_text(task.deadline, timezone=timezone, language=language),
            "focal_point_name": organisation.focal_point_name,
            "focal_point_email": organisation.focal_point_email,
            "comments": missing["comments"],
            "sections_without_comments": missing["sections_without_comments"],
            "sender_name": sender_name(settings),
            "decided_at": now.isoformat(),
        },
        round_id=round_.id,
        task_id=task.id,
    )


def _summary(
    round_: Round,
    deadline: datetime,
    group: list[tuple[ReviewTask, Organisation]],
    missing: dict[int, dict[str, object]],
    coordinator: str,
    now: datetime,
    settings: Settings,
) -> Mail:
    return Mail(
        key=f"escalation_summary:{round_.id}:{deadline.isoformat()}",
        kind=MessageKind.escalation_summary,
        to_email=coordinator,
        language=Language.en,
        context={
            "round_title": round_.title,
            "deadline_text": when_text(deadline, timezone=round_.timezone),
            "grace_period_hours": round_.grace_period_hours,
            "overdue": [
                {
                    "organisation_name": organisation.name_en,
                    "escalation_email": organisation.escalation_email or "",
                    "comments": missing[task.id or 0]["comments"],
                }
                for task, organisation in group
            ],
            "round_url": f"{settings.public_base_url}/console/rounds/{round_.id}",
            "decided_at": now.isoformat(),
        },
        round_id=round_.id,
    )
