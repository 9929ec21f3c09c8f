"""the outbox keeps each message's Reply-To

Whom a reply reaches is fixed with the decision to send, as the message's context is: the round's contact,
else the coordinator who created it. Messages still to be sent when this runs get the address as it is now
(without a name: quoting one in SQL for both databases is not worth it for the few rows in flight).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_to", sa.String(length=1000), nullable=True))
    op.execute(
        "UPDATE outbox SET reply_to = ("
        " SELECT COALESCE(rounds.contact_email, users.email) FROM rounds"
        " LEFT JOIN users ON users.id = rounds.created_by_id WHERE rounds.id = outbox.round_id"
        ") WHERE status = 'pending' AND round_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("reply_to")
