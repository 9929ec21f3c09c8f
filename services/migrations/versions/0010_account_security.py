"""account security: API tokens expire, sessions go idle, passwords are reset by emailed link

`credentials.last_used_at` is a console session's idle clock and an API token's last use (written at most
once a minute). API tokens made before this had no expiry: they get the default lifetime from now on,
so none lives forever. `password_resets` holds the password resets asked for by email, each token kept
only as its SHA-256; their messages are new kinds of outbox rows, which need no column of their own.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_API_TOKEN_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    credentials = sa.table(
        "credentials", sa.column("kind", sa.String), sa.column("expires_at", sa.DateTime(timezone=True))
    )
    op.execute(
        credentials.update()
        .where(credentials.c.kind == "api", credentials.c.expires_at.is_(None))
        .values(expires_at=datetime.now(UTC) + DEFAULT_API_TOKEN_LIFETIME)
    )
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_password_resets_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    # Older code cannot read message kinds it does not know; the audit trail keeps their record.
    op.execute("DELETE FROM outbox WHERE kind IN ('password_reset', 'password_changed')")
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_resets_user_id"))
    op.drop_table("password_resets")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
