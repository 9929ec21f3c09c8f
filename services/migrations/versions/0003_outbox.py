"""one outbox for every email; link tokens made per delivered email

Every email becomes a row of `outbox`, written with the decision that causes it; `sent_messages` (the
record of what had been sent) is folded into it. A review link may now have several tokens, one per
email that carried it (`link_tokens`), so the link's own token and invitation-claim columns go.

Invitations that were never sent get their outbox rows from the round's scheduler, which issues whatever
a launched round lacks when it starts (the upgrade restarts the schedulers of open rounds).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("link_id", sa.String(length=32), nullable=True),
        sa.Column("to_email", sa.String(length=320), nullable=False),
        sa.Column("to_name", sa.String(length=300), nullable=False),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["link_id"], ["access_links.id"]),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_status_due_at", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_outbox_round_id_status", ["round_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_link_id"), ["link_id"], unique=False)

    op.create_table(
        "link_tokens",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["access_links.id"]),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    with op.batch_alter_table("link_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_tokens_link_id"), ["link_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_link_tokens_outbox_id"), ["outbox_id"], unique=False)

    # What was sent stays on record, now as sent (or failed) outbox rows under the new keys.
    op.execute(
        """
        INSERT INTO outbox (key, kind, round_id, task_id, link_id, to_email, to_name, language, context,
                            status, attempts, due_at, claimed_until, message_id, subject, last_error,
                            created_at, sent_at)
        SELECT CASE WHEN m.kind = 'invitation' AND l.id IS NOT NULL
                    THEN 'invitation:' || CAST(l.task_id AS VARCHAR(20)) || ':' || l.role
                    ELSE m.purpose_key END,
               m.kind, m.round_id, m.task_id, m.link_id, m.to_email, COALESCE(l.name, ''), 'en', CAST('{}' AS JSON),
               m.status, 1, m.sent_at, NULL, m.message_id, m.subject, m.error,
               m.sent_at, CASE WHEN m.status = 'sent' THEN m.sent_at END
        FROM sent_messages m LEFT JOIN access_links l ON l.id = m.link_id
        """
    )
    # Tokens already emailed keep working.
    op.execute(
        """
        INSERT INTO link_tokens (token_sha256, link_id, outbox_id, issued_at)
        SELECT l.token_sha256, l.id, o.id, COALESCE(l.invited_at, l.created_at)
        FROM access_links l
        LEFT JOIN outbox o ON o.key = 'invitation:' || CAST(l.task_id AS VARCHAR(20)) || ':' || l.role
        WHERE l.token_sha256 IS NOT NULL
        """
    )
    op.drop_table("sent_messages")
    # In place, never by copying the table: comments, sign-offs and the outbox point at its rows.
    with op.batch_alter_table("access_links", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_access_links_token_sha256")
        batch_op.drop_column("token_sha256")
        batch_op.drop_column("invitation_claimed_until")
        batch_op.drop_column("invitation_error")


def downgrade() -> None:
    # In place, never by copying the table: comments, sign-offs and the outbox point at its rows.
    with op.batch_alter_table("access_links", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("invitation_error", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("invitation_claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_access_links_token_sha256", ["token_sha256"], unique=True)
    # One token per link again: the newest one made for it.
    op.execute(
        """
        UPDATE access_links SET token_sha256 = (
            SELECT t.token_sha256 FROM link_tokens t WHERE t.link_id = access_links.id
            ORDER BY t.issued_at DESC LIMIT 1)
        """
    )
    op.execute(
        """
        UPDATE access_links SET invitation_error = (
            SELECT o.last_error FROM outbox o
            WHERE o.kind = 'invitation' AND o.link_id = access_links.id AND o.status = 'failed' LIMIT 1)
        """
    )
    op.create_table(
        "sent_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose_key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("link_id", sa.String(length=32), nullable=True),
        sa.Column("to_email", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["review_tasks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("purpose_key"),
    )
    with op.batch_alter_table("sent_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sent_messages_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sent_messages_task_id"), ["task_id"], unique=False)
    op.execute(
        """
        INSERT INTO sent_messages (purpose_key, kind, round_id, task_id, link_id, to_email, subject,
                                   message_id, status, error, sent_at)
        SELECT CASE WHEN kind = 'invitation' THEN 'invitation:' || link_id ELSE key END,
               kind, round_id, task_id, link_id, to_email, subject, message_id, status, last_error,
               COALESCE(sent_at, created_at)
        FROM outbox WHERE status IN ('sent', 'failed') AND kind IN ('invitation', 'round_closed')
        """
    )
    op.drop_table("link_tokens")
    op.drop_table("outbox")
