"""the step-up at sign-off: codes emailed to the signer, and how each sign-off's signer was verified

Rounds get `sign_off_code_required`; those already there ask for the code from now on too (a focal
point signing off in a round under way gets the code by email, as in a new round). Sign-offs already
recorded were made with the link alone (`verified_by` = link_only).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sign_off_code_required", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("sign_offs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("verified_by", sa.String(length=20), nullable=False, server_default="link_only")
        )
    op.create_table(
        "sign_off_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=False),
        sa.Column("code_salt", sa.String(length=64), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["link_id"], ["access_links.id"]),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_off_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_off_codes_link_id"), ["link_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_off_codes_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_off_codes_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_off_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_off_codes_task_id"))
        batch_op.drop_index(batch_op.f("ix_sign_off_codes_round_id"))
        batch_op.drop_index(batch_op.f("ix_sign_off_codes_link_id"))
    op.drop_table("sign_off_codes")
    with op.batch_alter_table("sign_offs", schema=None) as batch_op:
        batch_op.drop_column("verified_by")
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("sign_off_code_required")
