"""the coordinator's desk: roles, comment weight, answers, answer texts, the round's sender

Each organisation of a round is an approver or consulted (tasks made before this are given the default
of their organisation's kind: ministries approve). A comment has a weight (objection, proposal, remark;
older comments are remarks). The coordinator's answers to comments and the reusable answer texts get
tables of their own. A round keeps its purpose, the coordinator's cover message and the contact its
email comes from, and when its answers were last published. An objecting sign-off lists its objections.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("cover_message", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("contact_name", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("contact_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("answers_published_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=20), nullable=False, server_default="consulted")
        )
    op.execute(
        "UPDATE review_tasks SET role = 'approver' WHERE organisation_id IN "
        "(SELECT id FROM organisations WHERE kind = 'ministry')"
    )
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("weight", sa.String(length=20), nullable=False, server_default="remark")
        )
    with op.batch_alter_table("sign_offs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("objections", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    op.create_table(
        "answer_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("response", sa.String(length=30), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "comment_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("response", sa.String(length=30), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("new_wording", sa.Text(), nullable=True),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("comment_revision", sa.Integer(), nullable=False),
        sa.Column("answer_text_id", sa.Integer(), nullable=True),
        sa.Column("drafted_by_id", sa.Integer(), nullable=True),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["answer_text_id"], ["answer_texts.id"]),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"]),
        sa.ForeignKeyConstraint(["drafted_by_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("comment_id"),
    )
    with op.batch_alter_table("comment_responses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comment_responses_round_id"), ["round_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("comment_responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comment_responses_round_id"))
    op.drop_table("comment_responses")
    op.drop_table("answer_texts")
    with op.batch_alter_table("sign_offs", schema=None) as batch_op:
        batch_op.drop_column("objections")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_column("weight")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_column("role")
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("answers_published_at")
        batch_op.drop_column("contact_email")
        batch_op.drop_column("contact_name")
        batch_op.drop_column("cover_message")
        batch_op.drop_column("purpose")
