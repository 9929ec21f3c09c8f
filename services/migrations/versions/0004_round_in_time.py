"""the round in time: procedures, working days, task deadlines, reminders, escalation

A round now follows a procedure in a jurisdiction's working days, says what silence means and how its
focal points are reminded; each task has a deadline of its own (extensions), an escalation time and the
reminders decided for it (`task_reminders`). Organisations may have a time zone of their own.

Rounds that were already under way keep what they were promised: no reminders (their policy is empty);
their tasks take the round's deadline.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_REMINDERS = '{"working_days_before": [], "at": "09:00", "text": ""}'


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("close_note", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("procedure", sa.String(length=40), nullable=False, server_default="interministerial")
        )
        batch_op.add_column(
            sa.Column("jurisdiction", sa.String(length=10), nullable=False, server_default="AL")
        )
        batch_op.add_column(
            sa.Column("timezone", sa.String(length=64), nullable=False, server_default="Europe/Tirane")
        )
        batch_op.add_column(sa.Column("minimum_period_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("grace_period_hours", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("silence_means", sa.String(length=20), nullable=False, server_default="no_response")
        )
        batch_op.add_column(
            sa.Column(
                "reminder_policy", sa.JSON(), nullable=False, server_default=sa.text(f"'{NO_REMINDERS}'")
            )
        )
    with op.batch_alter_table("review_tasks", schema=None, recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column(
                "deadline",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text("'1970-01-01 00:00:00'"),
            )
        )
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE review_tasks SET deadline = (SELECT rounds.deadline FROM rounds WHERE rounds.id = review_tasks.round_id)"
    )
    with op.batch_alter_table("organisations", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name != "sqlite":
        # Every row now says what it means; new rows always get values from the application.
        for table, column in (
            ("rounds", "procedure"),
            ("rounds", "jurisdiction"),
            ("rounds", "timezone"),
            ("rounds", "grace_period_hours"),
            ("rounds", "silence_means"),
            ("rounds", "reminder_policy"),
            ("review_tasks", "deadline"),
        ):
            op.alter_column(table, column, server_default=None)
    op.create_table(
        "task_reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("working_days_before", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_keys", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "deadline", "working_days_before"),
    )
    with op.batch_alter_table("task_reminders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_reminders_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_reminders_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_reminders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_reminders_task_id"))
        batch_op.drop_index(batch_op.f("ix_task_reminders_round_id"))
    op.drop_table("task_reminders")
    # Statuses the older code does not know fall back to the nearest it does.
    op.execute("UPDATE review_tasks SET status = 'invited' WHERE status IN ('commenting', 'overdue')")
    op.execute(
        "UPDATE review_tasks SET status = 'no_response' WHERE status IN ('deemed_content', 'cancelled')"
    )
    op.execute("UPDATE rounds SET status = 'closed' WHERE status = 'cancelled'")
    op.execute(
        "UPDATE rounds SET close_reason = 'deadline' WHERE close_reason IN ('coordinator', 'cancelled')"
    )
    with op.batch_alter_table("organisations", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("timezone")
    with op.batch_alter_table("review_tasks", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("last_activity_at")
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("deadline")
    with op.batch_alter_table("rounds", schema=None, recreate="never") as batch_op:
        for column in (
            "reminder_policy",
            "silence_means",
            "grace_period_hours",
            "minimum_period_reason",
            "timezone",
            "jurisdiction",
            "procedure",
            "close_note",
        ):
            batch_op.drop_column(column)
