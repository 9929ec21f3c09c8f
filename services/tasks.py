"""A round's review tasks as the coordinator follows them: status, own deadline, reminders, escalation."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentStatus, ReminderStatus
from models.extensions import ExtensionRequest
from models.organisations import Organisation
from models.reviews import Comment
from models.rounds import ReviewTask, TaskExtensionRequest, TaskRead, TaskReminder
from models.types import utcnow
from services import working_days
from services.formatting import when_text
from services.rounds import get_round_row


async def list_tasks(session: AsyncSession, *, round_id: int, now: datetime | None = None) -> list[TaskRead]:
    round_ = await get_round_row(session, round_id=round_id)
    now = now or utcnow()
    rows = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
            .order_by(col(Organisation.kind), col(Organisation.name_en))
        )
    ).all()
    reminded: dict[int, list[datetime]] = defaultdict(list)
    for task_id, decided_at in await session.exec(
        select(TaskReminder.task_id, TaskReminder.decided_at).where(
            TaskReminder.round_id == round_id, TaskReminder.status == ReminderStatus.sent
        )
    ):
        reminded[task_id].append(decided_at)
    comments = dict(
        (
            await session.exec(
                select(Comment.task_id, func.count())
                .where(Comment.round_id == round_id, Comment.status == CommentStatus.active)
                .group_by(col(Comment.task_id))
            )
        ).all()
    )
    requests: dict[int, list[TaskExtensionRequest]] = defaultdict(list)
    for request in await session.exec(
        select(ExtensionRequest)
        .where(ExtensionRequest.round_id == round_id)
        .order_by(col(ExtensionRequest.created_at), col(ExtensionRequest.id))
    ):
        requests[request.task_id].append(TaskExtensionRequest.model_validate(request, from_attributes=True))
    found = []
    for task, organisation in rows:
        timezone = organisation.timezone or round_.timezone
        found.append(
            TaskRead(
                id=task.id or 0,
                organisation_key=organisation.key,
                organisation_name=organisation.name_en,
                status=task.status,
                deadline=task.deadline,
                deadline_local=when_text(task.deadline, timezone=timezone),
                working_days_left=working_days.working_days_left(
                    round_.jurisdiction, now, task.deadline, timezone
                ),
                reminders_sent=len(reminded[task.id or 0]),
                last_reminder_at=max(reminded[task.id or 0], default=None),
                escalated_at=task.escalated_at,
                invited_at=task.invited_at,
                last_activity_at=task.last_activity_at,
                completed_at=task.completed_at,
                decision=task.decision,
                comments=comments.get(task.id or 0, 0),
                extension_requests=requests[task.id or 0],
            )
        )
    return found
