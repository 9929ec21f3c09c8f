"""The outbox: every email is a row written with the decision that causes it, and one path delivers them.

Deciding to send is `enqueue`, inside the decider's transaction: the row's key says what the message is
for, and a key that is already there makes a second decision a no-op. Delivering is `deliver_due`, run by
the round's scheduler (and the reconciler for mail of no round):

- it claims due rows a chunk at a time for a lease, renewed while the attempt is alive, so an attempt
  that died lets its rows go by themselves and another attempt never sends them at the same time;
- it renders each message then, and gives a message that carries a review link a token of its own, made
  here and kept only as a hash: the token exists nowhere but in that email;
- it sends the chunks over the sender's reused connections while the next chunk is claimed, and records
  each message as soon as the server has answered for it (group commits), so a crash can repeat only the
  messages in flight;
- a permanent refusal (5xx, an address no server takes) is recorded and never retried; a temporary one
  (4xx, a server that cannot be reached) is due again after a backoff, until it is given up.

A message repeated after a crash carries a token of its own, and the token of the first copy still works:
every token of a link opens it until the link is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from jinja2 import TemplateError
from sqlalchemy import Table, bindparam, delete, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.enums import Language, MessageKind, OutboxStatus, RoundStatus, TaskStatus
from models.outbox import OutboxMessage, OutboxMessageRead
from models.reviews import AccessLink, LinkToken
from models.rounds import ReviewTask, Round
from models.types import utcnow
from notifications.message import MESSAGE_ID_DOMAIN, OutgoingEmail, message_id_for
from notifications.rendering import render_email
from notifications.sending import DeliveryResult, EmailSender
from notifications.smtp import SmtpConfig
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import Database
from services.hashing import new_secret, sha256_hex
from services.links import review_url
from services.settings import Settings

log = logging.getLogger(__name__)

OUTBOX: Table = OutboxMessage.__table__  # type: ignore[attr-defined]
LINK_TOKENS: Table = LinkToken.__table__  # type: ignore[attr-defined]
ACCESS_LINKS: Table = AccessLink.__table__  # type: ignore[attr-defined]
REVIEW_TASKS: Table = ReviewTask.__table__  # type: ignore[attr-defined]
ROUNDS: Table = Round.__table__  # type: ignore[attr-defined]
CHUNK = 50
"""Messages rendered and handed to the sender at a time: enough to keep every connection busy."""
GATHER_SECONDS = 0.02
"""How long the recorder waits after an answer for more to record with it; a crash can repeat at most the
messages on the wire and those answered in this time."""
RECORD_ATTEMPTS = 5
"""Tries at recording what the server accepted before the attempt gives up (and its lease lapses)."""
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


async def enqueue(session: AsyncSession, *, mails: Sequence[Mail]) -> None:
    """Add the messages in the caller's transaction (the caller commits). A key already in the outbox is
    left as it is, whatever its state: the decision to send that message was taken before."""
    if not mails:
        return
    now = utcnow()
    rows = [
        {
            "key": mail.key,
            "kind": mail.kind,
            "round_id": mail.round_id,
            "task_id": mail.task_id,
            "link_id": mail.link_id,
            "to_email": mail.to_email,
            "to_name": mail.to_name,
            "language": mail.language,
            "context": mail.context,
            "status": OutboxStatus.pending,
            "attempts": 0,
            "due_at": now,
            "message_id": "",
            "subject": "",
            "created_at": now,
        }
        for mail in mails
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.exec(dialect.insert(OUTBOX).on_conflict_do_nothing(index_elements=["key"]), params=rows)


# ------------------------------------------------------------------------------------------ delivery


@dataclass
class DeliveryOutcome:
    sent: int = 0
    refused: int = 0
    """Refused for good (or given up after retrying): recorded, never tried again."""
    retry_later: int = 0
    cancelled: int = 0
    claimed: int = 0

    def more_may_be_due(self, limit: int) -> bool:
        """The attempt stopped at its limit with the server accepting: more is probably due right away."""
        return self.claimed >= limit and not self.retry_later


@dataclass(frozen=True)
class _Claimed:
    """A row this attempt holds, rendered, with the hash of the token made for it (if it has a link)."""

    id: int
    key: str
    kind: MessageKind
    round_id: int | None
    task_id: int | None
    link_id: str | None
    attempts: int
    created_at: datetime
    email: OutgoingEmail
    token_sha256: str | None


@dataclass(frozen=True)
class _Refusal:
    """A row that cannot be sent at all (its template fails): recorded as failed at once."""

    claimed: _Claimed
    error: str


@dataclass(frozen=True)
class _Scope:
    round_id: int | None

    def condition(self) -> Any:
        if self.round_id is None:
            return col(OutboxMessage.round_id).is_(None)
        return col(OutboxMessage.round_id) == self.round_id


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        tls=str(settings.smtp_tls),
        connections=settings.smtp_connections,
        mail_from=settings.mail_from,
    )


def message_id_domain(settings: Settings) -> str:
    return urlsplit(settings.public_base_url).hostname or MESSAGE_ID_DOMAIN


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """How long a temporarily refused message waits before its next attempt: doubling, capped."""
    start = settings.outbox_retry_start_seconds
    return timedelta(seconds=min(start * 2 ** max(attempts - 1, 0), settings.outbox_retry_max_seconds))


async def deliver_due(
    db: Database, sender: EmailSender, settings: Settings, *, round_id: int | None, limit: int
) -> DeliveryOutcome:
    """Deliver up to `limit` due messages of a round (or, with None, messages of no round)."""
    outcome = DeliveryOutcome()
    leases = _Leases(db, settings)
    recorder = _Recorder(db, settings, outcome, leases)
    async with db.write_session() as session:
        taken = await session.run_sync(_take, _Scope(round_id), limit, lease_of(settings), outcome)
        await session.commit()
    outcome.claimed = len(taken)
    leases.hold(row.id for row in taken)
    chunks = [taken[start : start + CHUNK] for start in range(0, len(taken), CHUNK)]
    sending: asyncio.Task[list[DeliveryResult]] | None = None
    try:
        ready = await _written(chunks[0], settings, recorder) if chunks else []
        for following in [*chunks[1:], None]:
            # The next chunk is written while this one is on the wire.
            writing = _spawn(_written(following, settings, recorder)) if following else None

            def settle(index: int, result: DeliveryResult, chunk: list[_Claimed] = ready) -> None:
                recorder.add(chunk[index], result)

            # A chunk on the wire is finished even if the caller is cancelled (a worker shutting down):
            # a message cut off mid-conversation might have been delivered, and would be sent again.
            sending = _spawn(sender.send_many([row.email for row in ready], on_result=settle))
            await asyncio.shield(sending)
            sending = None
            ready = await writing if writing is not None else []
    finally:
        await asyncio.shield(_wind_up(sending, recorder, leases))
    return outcome


async def _wind_up(
    sending: asyncio.Task[list[DeliveryResult]] | None, recorder: _Recorder, leases: _Leases
) -> None:
    """Let the chunk on the wire finish, record every answer, and let go at once of what was claimed but
    not sent rather than when its lease lapses."""
    if sending is not None:
        with contextlib.suppress(Exception):
            await sending
    await recorder.close()
    await leases.release()


def _spawn(coroutine: Any) -> asyncio.Task[Any]:
    task = asyncio.create_task(coroutine)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


@dataclass(frozen=True)
class _Taken:
    """A row the claim took, as read in its transaction; rendered once the transaction is over."""

    id: int
    key: str
    kind: MessageKind
    round_id: int | None
    task_id: int | None
    link_id: str | None
    to_email: str
    to_name: str
    language: Language
    context: dict[str, Any]
    attempts: int
    created_at: datetime
    token: str | None


_DUE = (
    sa.select(
        OUTBOX.c.id,
        OUTBOX.c.key,
        OUTBOX.c.kind,
        OUTBOX.c.round_id,
        OUTBOX.c.task_id,
        OUTBOX.c.link_id,
        OUTBOX.c.to_email,
        OUTBOX.c.to_name,
        OUTBOX.c.language,
        OUTBOX.c.context,
        OUTBOX.c.attempts,
        OUTBOX.c.created_at,
    )
    .where(
        OUTBOX.c.status == OutboxStatus.pending,
        OUTBOX.c.due_at <= bindparam("now"),
        or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < bindparam("now")),
    )
    .order_by(OUTBOX.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_DUE_OF_ROUND = _DUE.where(OUTBOX.c.round_id == bindparam("round_id"))
_DUE_OF_NO_ROUND = _DUE.where(OUTBOX.c.round_id.is_(None))
_USABLE_LINKS = (
    sa.select(ACCESS_LINKS.c.id)
    .join(ROUNDS, ROUNDS.c.id == ACCESS_LINKS.c.round_id)
    .where(
        ACCESS_LINKS.c.id.in_(bindparam("link_ids", expanding=True)),
        ACCESS_LINKS.c.revoked_at.is_(None),
        ROUNDS.c.status == RoundStatus.open,
    )
)
_HOLD = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(claimed_until=bindparam("until"), attempts=OUTBOX.c.attempts + 1)
)
_CANCEL = (
    update(OUTBOX)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=OutboxStatus.cancelled,
        claimed_until=None,
        last_error="not sent: its review link was withdrawn or its round is over",
    )
)


async def _written(taken: list[_Taken], settings: Settings, recorder: _Recorder) -> list[_Claimed]:
    """The claimed rows as emails, each with the link its token opens. A row that cannot be rendered is
    handed to the recorder as refused. It gives way to the sending between messages."""
    domain = message_id_domain(settings)
    claimed: list[_Claimed] = []
    for row in taken:
        context = row.context
        if row.token is not None:
            context = {**context, "link_url": review_url(settings.public_base_url, row.token)}
        message_id = message_id_for(row.key, domain)
        try:
            rendered = render_email(row.kind, row.language, context)
            email = OutgoingEmail.from_rendered(
                rendered, to_address=row.to_email, to_name=row.to_name, message_id=message_id
            )
            failure = None
        except (TemplateError, ValueError, TypeError) as exc:
            email = OutgoingEmail(row.to_email, row.to_name, "", "", "", message_id)
            failure = f"the message cannot be written: {exc}"
        entry = _Claimed(
            id=row.id,
            key=row.key,
            kind=row.kind,
            round_id=row.round_id,
            task_id=row.task_id,
            link_id=row.link_id,
            attempts=row.attempts,
            created_at=row.created_at,
            email=email,
            token_sha256=sha256_hex(row.token) if row.token is not None else None,
        )
        if failure is None:
            claimed.append(entry)
        else:
            recorder.refuse(_Refusal(entry, failure))
        await asyncio.sleep(0)
    return claimed


def _take(
    session: Session, scope: _Scope, limit: int, lease: timedelta, outcome: DeliveryOutcome
) -> list[_Taken]:
    """Take up to `limit` due rows for the lease and make the tokens of those that carry a link. Rows
    whose link was withdrawn, or whose round is no longer open, are cancelled instead: their link could
    do nothing any more. One call into the synchronous session: the claim holds the write lock, and each
    awaited statement would be one more turn of the event loop while it does."""
    connection = session.connection()
    now = utcnow()
    if scope.round_id is None:
        found = connection.execute(_DUE_OF_NO_ROUND, {"now": now, "limit": limit})
    else:
        found = connection.execute(_DUE_OF_ROUND, {"now": now, "limit": limit, "round_id": scope.round_id})
    rows = found.all()
    link_ids = sorted({row.link_id for row in rows if row.link_id is not None})
    usable = set(connection.execute(_USABLE_LINKS, {"link_ids": link_ids}).scalars()) if link_ids else set()
    taken: list[_Taken] = []
    cancelled: list[int] = []
    tokens: list[dict[str, Any]] = []
    for row in rows:
        if row.link_id is not None and row.link_id not in usable:
            cancelled.append(row.id)
            continue
        token = None
        if row.link_id is not None:
            token, digest = new_secret()
            tokens.append(
                {"token_sha256": digest, "link_id": row.link_id, "outbox_id": row.id, "issued_at": now}
            )
        taken.append(
            _Taken(
                id=row.id,
                key=row.key,
                kind=MessageKind(row.kind),
                round_id=row.round_id,
                task_id=row.task_id,
                link_id=row.link_id,
                to_email=row.to_email,
                to_name=row.to_name,
                language=Language(row.language),
                context=row.context,
                attempts=row.attempts + 1,
                created_at=row.created_at,
                token=token,
            )
        )
    if taken:
        connection.execute(_HOLD, {"ids": [row.id for row in taken], "until": now + lease})
    if cancelled:
        connection.execute(_CANCEL, {"ids": cancelled})
        outcome.cancelled += len(cancelled)
    if tokens:
        connection.execute(insert(LINK_TOKENS), tokens)
    return taken


def lease_of(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.outbox_lease_seconds)


class _Leases:
    """Keeps the claims of a live attempt from lapsing while its messages wait their turn to be sent."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._held: set[int] = set()
        self._renewing: asyncio.Task[None] | None = None

    def hold(self, ids: Any) -> None:
        self._held.update(ids)
        if self._renewing is None:
            self._renewing = _spawn(self._renew())

    def done(self, ids: Sequence[int]) -> None:
        self._held.difference_update(ids)

    async def _renew(self) -> None:
        every = self._settings.outbox_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            if self._held:
                await self._set(now_plus=lease_of(self._settings), ids=sorted(self._held))

    async def _set(self, *, now_plus: timedelta | None, ids: list[int]) -> None:
        async with self._db.write_session() as session:
            until = utcnow() + now_plus if now_plus is not None else None
            await session.exec(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_(ids), OUTBOX.c.status == OutboxStatus.pending)
                .values(claimed_until=until)
            )
            await session.commit()

    async def release(self) -> None:
        """Stop renewing; rows still held (claimed but never sent) are due again at once."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewing
        if self._held:
            held, self._held = sorted(self._held), set()
            with contextlib.suppress(Exception):  # if this fails too, the leases lapse by themselves
                await self._set(now_plus=None, ids=held)


@dataclass
class _Answered:
    claimed: _Claimed
    result: DeliveryResult


@dataclass
class _Recorder:
    """Records what the server answered, as soon as it answers: whatever has come in while the previous
    record was being written goes in the next one (a group commit), so records keep up with the sender
    and a crash leaves at most the messages in flight unrecorded."""

    db: Database
    settings: Settings
    outcome: DeliveryOutcome
    leases: _Leases
    _answered: list[_Answered] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _task: asyncio.Task[None] | None = None

    def add(self, claimed: _Claimed, result: DeliveryResult) -> None:
        self._answered.append(_Answered(claimed, result))
        self._arrived.set()
        if self._task is None:
            self._task = _spawn(self._run())

    def refuse(self, refusal: _Refusal) -> None:
        self.add(
            refusal.claimed, DeliveryResult.failed(refusal.claimed.email, refusal.error, retryable=False)
        )

    async def close(self) -> None:
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._closing:
                # A moment for the answers the other connections are about to give: a record per answer
                # would cost more than the sending itself, and this keeps what a crash could repeat small.
                await asyncio.sleep(GATHER_SECONDS)
            self._arrived.clear()
            while self._answered:
                batch, self._answered = self._answered, []
                await self._record_with_retries(batch)
            if self._closing:
                return

    async def _record_with_retries(self, batch: list[_Answered]) -> None:
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                async with self.db.write_session() as session:
                    await record(session, self.settings, batch, self.outcome)
                self.leases.done([answered.claimed.id for answered in batch])
                return
            except (
                Exception
            ):  # the database may be briefly unavailable; the server's answers must not be lost
                if attempt == RECORD_ATTEMPTS:
                    log.exception(
                        "could not record %d delivered message(s); they will be sent again", len(batch)
                    )
                    return
                await asyncio.sleep(0.5 * 2**attempt)


_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.status == OutboxStatus.pending)
    .values(
        status=OutboxStatus.sent,
        sent_at=bindparam("now"),
        claimed_until=None,
        last_error=None,
        subject=bindparam("subject"),
        message_id=bindparam("message_id"),
    )
)
_FAILED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.status == OutboxStatus.pending)
    .values(
        status=OutboxStatus.failed,
        claimed_until=None,
        last_error=bindparam("error"),
        message_id=bindparam("message_id"),
    )
)
_AGAIN = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.status == OutboxStatus.pending)
    .values(due_at=bindparam("due_at"), claimed_until=None, last_error=bindparam("error"))
)
_FORGET_TOKENS = delete(LINK_TOKENS).where(
    LINK_TOKENS.c.token_sha256.in_(bindparam("tokens", expanding=True))
)
_LINKS_INVITED = (
    update(ACCESS_LINKS)
    .where(ACCESS_LINKS.c.id.in_(bindparam("ids", expanding=True)), ACCESS_LINKS.c.invited_at.is_(None))
    .values(invited_at=bindparam("now"))
)
# Re-checked as it is changed: a round closing meanwhile has made its tasks no_response; they stay so.
_TASKS_INVITED = (
    update(REVIEW_TASKS)
    .where(
        REVIEW_TASKS.c.id.in_(bindparam("ids", expanding=True)), REVIEW_TASKS.c.status == TaskStatus.pending
    )
    .values(status=TaskStatus.invited, invited_at=bindparam("now"))
    .returning(REVIEW_TASKS.c.id, REVIEW_TASKS.c.round_id)
)


async def record(
    session: AsyncSession, settings: Settings, batch: list[_Answered], outcome: DeliveryOutcome
) -> None:
    """One transaction: each message's new state, its audit event, and what a delivered invitation
    changes (its link and task are invited)."""
    counted = await session.run_sync(_write_record, settings, batch)
    await session.commit()
    outcome.sent += counted.sent
    outcome.refused += counted.refused
    outcome.retry_later += counted.retry_later


def _write_record(session: Session, settings: Settings, batch: list[_Answered]) -> DeliveryOutcome:
    # One call into the synchronous session, with statements built once: this runs for every few
    # messages a batch sends, and holds the write lock meanwhile.
    now = utcnow()
    outcome = DeliveryOutcome()
    sent: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    unused_tokens: list[str] = []
    events: list[NewEvent] = []
    invited_links: set[str] = set()
    invited_tasks: set[int] = set()
    give_up_after = timedelta(hours=settings.outbox_give_up_hours)
    for answered in batch:
        row, result = answered.claimed, answered.result
        data: dict[str, Any] = {
            "kind": str(row.kind),
            "key": row.key,
            "to": row.email.to_address,
            "message_id": row.email.message_id,
        }
        if row.link_id is not None:
            data["link_id"] = row.link_id
        if result.ok:
            outcome.sent += 1
            sent.append(
                {
                    "row_id": row.id,
                    "now": now,
                    "subject": row.email.subject[:500],
                    "message_id": row.email.message_id,
                }
            )
            events.append(NewEvent("email.sent", SYSTEM_ACTOR, row.round_id, row.task_id, data))
            if row.kind == MessageKind.invitation and row.link_id is not None and row.task_id is not None:
                invited_links.add(row.link_id)
                invited_tasks.add(row.task_id)
            continue
        error = (result.error or "refused")[:1000]
        if row.token_sha256 is not None:
            unused_tokens.append(row.token_sha256)  # the server did not take the email that carried it
        if result.retryable and now - row.created_at < give_up_after:
            outcome.retry_later += 1
            again.append(
                {"row_id": row.id, "due_at": now + retry_delay(settings, row.attempts), "error": error}
            )
            continue
        if result.retryable:
            error = f"given up after {row.attempts} attempts: {error}"[:1000]
        outcome.refused += 1
        final.append({"row_id": row.id, "error": error, "message_id": row.email.message_id})
        events.append(
            NewEvent("email.failed", SYSTEM_ACTOR, row.round_id, row.task_id, {**data, "error": error})
        )
    connection = session.connection()
    for statement, rows in ((_SENT, sent), (_FAILED, final), (_AGAIN, again)):
        if rows:
            connection.execute(statement, rows)
    if unused_tokens:
        connection.execute(_FORGET_TOKENS, {"tokens": unused_tokens})
    if invited_links:
        connection.execute(_LINKS_INVITED, {"ids": sorted(invited_links), "now": now})
        newly = connection.execute(_TASKS_INVITED, {"ids": sorted(invited_tasks), "now": now}).all()
        events += [
            NewEvent("task.invited", SYSTEM_ACTOR, round_id, task_id, {}) for task_id, round_id in newly
        ]
    trail.append_many_sync(session, events)
    return outcome


# ------------------------------------------------------------------------------------- what is due


@dataclass(frozen=True)
class MailPlan:
    due: int
    """Messages that may be delivered now."""
    next_at: datetime | None
    """When the next message not yet due becomes due (a retry, or a lease that lapses)."""


async def plan(session: AsyncSession, *, round_id: int | None) -> MailPlan:
    """What the outbox holds for a round (or for no round) that is still to be delivered."""
    now = utcnow()
    scope = _Scope(round_id).condition()
    pending = OutboxMessage.status == OutboxStatus.pending
    unclaimed = or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now)
    due = (
        await session.exec(
            select(func.count()).where(scope, pending, col(OutboxMessage.due_at) <= now, unclaimed)
        )
    ).one()
    later = (
        await session.exec(
            select(func.min(OutboxMessage.due_at)).where(
                scope, pending, col(OutboxMessage.due_at) > now, unclaimed
            )
        )
    ).one()
    lease_ends = (
        await session.exec(
            select(func.min(OutboxMessage.claimed_until)).where(
                scope, pending, col(OutboxMessage.claimed_until) >= now
            )
        )
    ).one()
    moments = [moment for moment in (later, lease_ends) if moment is not None]
    return MailPlan(due=due, next_at=min(moments) if moments else None)


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
