"""review tasks: index on (round_id, status)

Every sign-off asks whether any other task of its round is still unsettled, while it holds the write
lock; without this index that question scans the round's tasks (10,000 in a national round).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_review_tasks_round_id_status", "review_tasks", ["round_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_review_tasks_round_id_status", table_name="review_tasks")
