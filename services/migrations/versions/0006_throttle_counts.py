"""throttle counters; lost-link messages

The lost-link page counts its requests per client address and per email address in fixed windows
(`throttle_counts`), in the database so that every web process counts alike. Its messages are a new
kind of outbox row (`lost_link`), which needs no column of its own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "throttle_counts",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("throttle_counts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_throttle_counts_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("throttle_counts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_throttle_counts_expires_at"))
    op.drop_table("throttle_counts")
    # Older code cannot read a message kind it does not know. The links those messages carried keep
    # working (their tokens stay, no longer tied to a message); the audit trail keeps their record.
    op.execute(
        "UPDATE link_tokens SET outbox_id = NULL "
        "WHERE outbox_id IN (SELECT id FROM outbox WHERE kind = 'lost_link')"
    )
    op.execute("DELETE FROM outbox WHERE kind = 'lost_link'")
