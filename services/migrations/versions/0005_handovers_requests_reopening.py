"""handovers, replaced contacts, reopened sign-offs and requests for more time

A task may now have several links of one role over time (a replaced focal point's link stays on record,
revoked) and any number of delegates (colleagues a contact handed the task to): only one working focal
point and one working alternate per task remain unique. A sign-off reopened at the organisation's
request stays on record as superseded: only one standing sign-off per task is unique. Focal points'
requests for more time get a table of their own.

SQLite cannot drop a constraint in place: the two tables are rebuilt (services.migrate runs migrations
on SQLite without enforcing foreign keys, and checks every key before the commit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNNAMED = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        with op.batch_alter_table("access_links", recreate="always", naming_convention=UNNAMED) as batch_op:
            batch_op.drop_constraint("uq_access_links_task_id", type_="unique")
            batch_op.add_column(sa.Column("handed_over_by", sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        with op.batch_alter_table("sign_offs", recreate="always", naming_convention=UNNAMED) as batch_op:
            batch_op.drop_constraint("uq_sign_offs_task_id", type_="unique")
            batch_op.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
            batch_op.add_column(sa.Column("superseded_reason", sa.Text(), nullable=True))
    else:
        op.drop_constraint("access_links_task_id_role_key", "access_links", type_="unique")
        op.add_column("access_links", sa.Column("handed_over_by", sa.String(length=32), nullable=True))
        op.add_column("access_links", sa.Column("note", sa.Text(), nullable=True))
        op.drop_constraint("sign_offs_task_id_key", "sign_offs", type_="unique")
        op.add_column("sign_offs", sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
        op.add_column("sign_offs", sa.Column("superseded_reason", sa.Text(), nullable=True))
    working = sa.text("revoked_at IS NULL AND role != 'delegate'")
    op.create_index(
        "ux_access_links_task_id_role_working",
        "access_links",
        ["task_id", "role"],
        unique=True,
        sqlite_where=working,
        postgresql_where=working,
    )
    standing = sa.text("superseded_at IS NULL")
    op.create_index(
        "ux_sign_offs_task_id_standing",
        "sign_offs",
        ["task_id"],
        unique=True,
        sqlite_where=standing,
        postgresql_where=standing,
    )
    op.create_index("ix_sign_offs_task_id", "sign_offs", ["task_id"], unique=False)
    op.create_table(
        "extension_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("deadline_then", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wanted_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("granted_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("submission_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["link_id"], ["access_links.id"]),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_id"),
    )
    op.create_index("ix_extension_requests_round_id_status", "extension_requests", ["round_id", "status"])
    op.create_index("ix_extension_requests_task_id", "extension_requests", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_extension_requests_task_id", table_name="extension_requests")
    op.drop_index("ix_extension_requests_round_id_status", table_name="extension_requests")
    op.drop_table("extension_requests")
    op.drop_index("ix_sign_offs_task_id", table_name="sign_offs")
    op.drop_index("ux_sign_offs_task_id_standing", table_name="sign_offs")
    op.drop_index("ux_access_links_task_id_role_working", table_name="access_links")
    # What the older schema cannot hold goes: superseded sign-offs and the links beyond one per role.
    op.execute("DELETE FROM sign_offs WHERE superseded_at IS NOT NULL")
    op.execute(
        "DELETE FROM link_tokens WHERE link_id IN (SELECT id FROM access_links WHERE role = 'delegate' "
        "OR (revoked_at IS NOT NULL AND EXISTS (SELECT 1 FROM access_links AS newer WHERE "
        "newer.task_id = access_links.task_id AND newer.role = access_links.role AND newer.id != access_links.id)))"
    )
    if _sqlite():
        with op.batch_alter_table("sign_offs", recreate="always") as batch_op:
            batch_op.drop_column("superseded_reason")
            batch_op.drop_column("superseded_at")
            batch_op.create_unique_constraint("uq_sign_offs_task_id", ["task_id"])
        with op.batch_alter_table("access_links", recreate="always") as batch_op:
            batch_op.drop_column("note")
            batch_op.drop_column("handed_over_by")
            batch_op.create_unique_constraint("uq_access_links_task_id", ["task_id", "role"])
    else:
        op.drop_column("sign_offs", "superseded_reason")
        op.drop_column("sign_offs", "superseded_at")
        op.create_unique_constraint("sign_offs_task_id_key", "sign_offs", ["task_id"])
        op.drop_column("access_links", "note")
        op.drop_column("access_links", "handed_over_by")
        op.create_unique_constraint("access_links_task_id_role_key", "access_links", ["task_id", "role"])
