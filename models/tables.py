"""The Core tables of the models, for statements that read or write plain rows (no ORM objects): the
paths that handle thousands of rows at once (launch, delivery, reminders, lost links)."""

from __future__ import annotations

from sqlalchemy import Table

from models.documents import Section
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink, Comment, LinkToken
from models.rounds import ReviewTask, Round, TaskReminder
from models.users import PasswordReset

ACCESS_LINKS: Table = AccessLink.__table__  # type: ignore[attr-defined]
COMMENTS: Table = Comment.__table__  # type: ignore[attr-defined]
LINK_TOKENS: Table = LinkToken.__table__  # type: ignore[attr-defined]
ORGANISATIONS: Table = Organisation.__table__  # type: ignore[attr-defined]
PASSWORD_RESETS: Table = PasswordReset.__table__  # type: ignore[attr-defined]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
REVIEW_TASKS: Table = ReviewTask.__table__  # type: ignore[attr-defined]
ROUNDS: Table = Round.__table__  # type: ignore[attr-defined]
SECTIONS: Table = Section.__table__  # type: ignore[attr-defined]
TASK_REMINDERS: Table = TaskReminder.__table__  # type: ignore[attr-defined]
