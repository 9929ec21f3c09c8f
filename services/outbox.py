"""The outbox: every email is a row written with the decision that causes it.

Deciding to send is `enqueue`, inside the decider's transaction: the row's key says what the message is
for, and a key that is already there makes a second decision a no-op. `services.delivery` is the one path
that delivers the rows; `plan` says what is due, for the round schedulers.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Language, MessageKind, OutboxStatus
from models.outbox import OutboxMessage, OutboxMessageRead
from models.tables import OUTBOX, ROUNDS
from models.types import utcnow
from models.users import User
from notifications.message import mailbox

log = logging.getLogger(__name__)

CHUNK = 50
"""Messages rendered and handed to the sender at a time: enough to keep every connection busy."""
GATHER_SECONDS = 0.02
"""How long the recorder waits after an answer for more to record with it; a crash can repeat at most the
messages on the wire and those answered in this time."""
RECORD_ATTEMPTS = 5
"""Tries at recording what the server accepted before the attempt gives up (and its lease lapses)."""
USERS: sa.Table = User.__table__  # type: ignore[attr-defined]
REPLY_TO_LENGTH = 1000
"""The outbox column's length; a contact whose quoted name would not fit is named by its address alone."""
# The loop keeps only weak references to tasks: a recorder still writing after its caller was cancelled
# must not be collected half-way.
_RUNNING: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class Mail:
    """A message a decision wants sent; `key` says what it is for, e.g. "invitation:12:focal_point"."""

    key: str
    kind: MessageKind
    to_email: str
    language: Language
    context: dict[str, Any]
    to_name: str = ""
    round_id: int | None = None
    task_id: int | None = None
    link_id: str | None = None
    """The review link the message carries; its token is made when the message is delivered."""
    about_rounds: tuple[int, ...] = ()
    """The rounds a message about several tasks speaks of (a day's reminder), when not only `round_id`'s:
    it has their Reply-To if they share one, else none (one coordinator must not get another's replies)."""


async def enqueue(session: AsyncSession, *, mails: Sequence[Mail]) -> None:
    """Add the messages in the caller's transaction (the caller commits). A key already in the outbox is
    left as it is, whatever its state: the decision to send that message was taken before."""
    if not mails:
        return
    now = utcnow()
    reply_to = await _reply_tos(session, mails)
    rows = [_row(mail, now, reply_to) for mail in mails]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.exec(dialect.insert(OUTBOX).on_conflict_do_nothing(index_elements=["key"]), params=rows)


async def enqueue_new(session: AsyncSession, *, mails: Sequence[Mail]) -> set[str]:
    """As `enqueue`, and says which keys this call added: a key another decision (in a transaction that
    committed first) already holds is not among them."""
    if not mails:
        return set()
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    reply_to = await _reply_tos(session, mails)
    # Many rows and RETURNING in one executemany: SQLAlchemy batches them into multi-row statements
    # ("insertmanyvalues") of a size the database takes, compiled once.
    statement = dialect.insert(OUTBOX).on_conflict_do_nothing(index_elements=["key"]).returning(OUTBOX.c.key)
    result = await session.exec(statement, params=[_row(mail, now, reply_to) for mail in mails])
    return set(result.scalars())


def _row(mail: Mail, now: datetime, reply_to: dict[int, str | None]) -> dict[str, Any]:
    rounds = mail.about_rounds or ((mail.round_id,) if mail.round_id is not None else ())
    shared = {reply_to.get(round_id) for round_id in rounds}
    return {
        "key": mail.key,
        "kind": mail.kind,
        "round_id": mail.round_id,
        "task_id": mail.task_id,
        "link_id": mail.link_id,
        "to_email": mail.to_email,
        "to_name": mail.to_name,
        "reply_to": shared.pop() if len(shared) == 1 else None,
        "language": mail.language,
        "context": mail.context,
        "status": OutboxStatus.pending,
        "attempts": 0,
        "due_at": now,
        "message_id": "",
        "subject": "",
        "created_at": now,
    }


_ROUND_REPLY_TO = (
    sa.select(ROUNDS.c.id, ROUNDS.c.contact_name, ROUNDS.c.contact_email, USERS.c.full_name, USERS.c.email)
    .outerjoin(USERS, USERS.c.id == ROUNDS.c.created_by_id)
    .where(ROUNDS.c.id.in_(bindparam("ids", expanding=True)))
)


async def _reply_tos(session: AsyncSession, mails: Sequence[Mail]) -> dict[int, str | None]:
    """Per round the mails speak of, whom replies reach: its contact, else the coordinator who created it.

    Fixed on the row with the decision, as its context is: a retry says what was decided, and a resend,
    being a decision of its own, names whoever answers for the round then. Asked even when no mail is
    about a round, so that a decision costs the same whatever its mails are (a lost-link request must not
    tell by its time whether the address has links)."""
    ids = sorted(
        {round_id for mail in mails for round_id in mail.about_rounds}
        | {mail.round_id for mail in mails if mail.round_id is not None}
    )
    connection = await session.connection()
    found = await connection.execute(_ROUND_REPLY_TO, {"ids": ids})
    return {
        round_id: _reply_to((contact_name, contact_email), (full_name or "", user_email))
        for round_id, contact_name, contact_email, full_name, user_email in found
    }


def _reply_to(*candidates: tuple[str, str | None]) -> str | None:
    """The first candidate with an address the sender can use, its name made one line: a name is shown
    in a header, where a line break would begin another header."""
    for name, address in candidates:
        if not address:
            continue
        one_line = " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in name).split())
        for shown in (one_line, ""):
            try:
                value = mailbox(shown, address)
            except ValueError:
                break  # the address itself is unusable: the next candidate's may not be
            if len(value) <= REPLY_TO_LENGTH:
                return value
    return None


@dataclass(frozen=True)
class _Scope:
    round_id: int | None

    def condition(self) -> Any:
        if self.round_id is None:
            return col(OutboxMessage.round_id).is_(None)
        return col(OutboxMessage.round_id) == self.round_id


# ------------------------------------------------------------------------------------- what is due


@dataclass(frozen=True)
class MailPlan:
    due: int
    """Messages that may be delivered now."""
    next_at: datetime | None
    """When the next message not yet due becomes due (a retry, or a lease that lapses)."""
    next_in: float | None
    """The same, as seconds from now on this host's clock (what a scheduler on another clock can use)."""


async def plan(session: AsyncSession, *, round_id: int | None) -> MailPlan:
    """What the outbox holds for a round (or for no round) that is still to be delivered."""
    now = utcnow()
    scope = _Scope(round_id).condition()
    pending = OutboxMessage.status == OutboxStatus.pending
    unclaimed = or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now)
    # One statement: every scheduler asks this on every turn.
    due, later, lease_ends = (
        await session.exec(
            select(
                func.count().filter(col(OutboxMessage.due_at) <= now, unclaimed),
                func.min(OutboxMessage.due_at).filter(col(OutboxMessage.due_at) > now, unclaimed),
                func.min(OutboxMessage.claimed_until).filter(col(OutboxMessage.claimed_until) >= now),
            ).where(scope, pending)
        )
    ).one()
    moments = [moment for moment in (later, lease_ends) if moment is not None]
    next_at = min(moments) if moments else None
    return MailPlan(
        due=due,
        next_at=next_at,
        next_in=(next_at - now).total_seconds() if next_at is not None else None,
    )


async def rounds_with_mail_pending(session: AsyncSession) -> list[int]:
    rows = await session.exec(
        select(OutboxMessage.round_id)
        .where(OutboxMessage.status == OutboxStatus.pending, col(OutboxMessage.round_id).is_not(None))
        .distinct()
    )
    return [round_id for round_id in rows if round_id is not None]


async def messages_of_round(session: AsyncSession, *, round_id: int) -> list[OutboxMessageRead]:
    """Every email of a round, oldest first, with its delivery state."""
    rows = await session.exec(
        select(OutboxMessage).where(OutboxMessage.round_id == round_id).order_by(col(OutboxMessage.id))
    )
    return [OutboxMessageRead.model_validate(row, from_attributes=True) for row in rows]
