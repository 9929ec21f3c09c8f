"""Delivering the outbox: the one path every email takes to the mail server.

- A delivery claims its batch of due rows for a lease in one transaction, and makes the token of each row
  that carries a review link or a password reset link there (kept only as a hash: the token exists
  nowhere but in that email). A sign-off code is worked out as its email is written, from the salt its
  row carries.
  Each claim raises the row's `attempts`, which is the claim's fence: renewing or letting go of a lease,
  and scheduling a retry, only touch rows this claim still holds.
- It renders each chunk while the previous one is on the wire over the sender's reused connections, and
  records each message as soon as the server has answered for it (answers within a short moment of one
  another share a transaction).
- A permanent refusal (5xx, an address no server takes, a message that cannot be written) is recorded and
  never retried; a temporary one (4xx, a server that cannot be reached) is due again after a backoff; a
  row still not delivered after `outbox_give_up_hours` or `MAX_ATTEMPTS` attempts fails.
- A message whose fate is unknown (a timeout after the data went out) keeps its token: if the server did
  take it, its link must work. An answer that cannot be recorded leaves its row held until the lease
  lapses, and no further chunk is sent meanwhile, so a database fault cannot make a batch go out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from jinja2 import TemplateError
from sqlalchemy import bindparam, delete, insert, or_, update
from sqlalchemy.orm import Session

from models.audit import SYSTEM_ACTOR
from models.enums import Language, MessageKind, OutboxStatus, RoundStatus, TaskStatus
from models.tables import ACCESS_LINKS, LINK_TOKENS, OUTBOX, PASSWORD_RESETS, REVIEW_TASKS, ROUNDS
from models.types import utcnow
from notifications.message import (
    MESSAGE_ID_DOMAIN,
    OutgoingEmail,
    envelope_address,
    mailbox,
    message_id_for,
)
from notifications.rendering import render_email
from notifications.sending import DeliveryResult, EmailSender
from notifications.smtp import SmtpConfig
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import Database
from services.hashing import new_secret, sha256_hex, sign_off_code
from services.links import review_url
from services.password_resets import reset_url
from services.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 50
"""Messages rendered and handed to the sender at a time: enough to keep every connection busy."""
GATHER_SECONDS = 0.02
"""How long the recorder waits after an answer for more to record with it: a transaction per answer would
cost more than the sending, and what a crash can repeat stays the messages on the wire and those answered
in this moment."""
RECORD_ATTEMPTS = 5
"""Tries at recording a group of answers before the delivery stops (its rows then wait for the lease)."""
MAX_ATTEMPTS = 20
"""Claims of one row before it is given up, whatever its age: a row whose delivery can never be recorded
must not be sent for ever."""
# The loop keeps only weak references to tasks: a recorder still writing after its caller was cancelled
# must not be collected half-way.
_RUNNING: set[asyncio.Task[Any]] = set()


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        tls=str(settings.smtp_tls),
        connections=settings.smtp_connections,
        # The secretariat's name on the service's address: recipients see who writes, and their replies
        # go to the Reply-To each message carries.
        mail_from=mailbox(settings.secretariat_name, envelope_address(settings.mail_from)),
    )


def message_id_domain(settings: Settings) -> str:
    return urlsplit(settings.public_base_url).hostname or MESSAGE_ID_DOMAIN


def lease_of(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.outbox_lease_seconds)


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """How long a temporarily refused message waits before its next attempt: doubling, capped."""
    start = settings.outbox_retry_start_seconds
    return timedelta(seconds=min(start * 2 ** max(attempts - 1, 0), settings.outbox_retry_max_seconds))


@dataclass
class DeliveryOutcome:
    sent: int = 0
    refused: int = 0
    """Refused for good (or given up): recorded, never tried again."""
    retry_later: int = 0
    cancelled: int = 0
    claimed: int = 0

    def add(self, other: DeliveryOutcome) -> None:
        self.sent += other.sent
        self.refused += other.refused
        self.retry_later += other.retry_later
        self.cancelled += other.cancelled

    def more_may_be_due(self, limit: int) -> bool:
        """The delivery stopped at its limit with the server accepting: more is probably due right away."""
        return self.claimed >= limit and not self.retry_later

    @property
    def did_anything(self) -> bool:
        return bool(self.sent or self.refused or self.retry_later or self.cancelled)


@dataclass(frozen=True)
class _Taken:
    """A row a claim took, as read in its transaction, with its new attempt number (the claim's fence) and
    the token made for it."""

    id: int
    key: str
    kind: MessageKind
    round_id: int | None
    task_id: int | None
    link_id: str | None
    to_email: str
    to_name: str
    reply_to: str | None
    language: Language
    context: dict[str, Any]
    attempt: int
    created_at: datetime
    tokens: dict[str, str]
    """Per link the message carries, the token made for it."""
    reset_token: str | None = None
    """The password reset link's token, for a password_reset message."""


@dataclass(frozen=True)
class _Written:
    """A taken row as the email that goes out."""

    row: _Taken
    email: OutgoingEmail


async def deliver_due(
    db: Database, sender: EmailSender, settings: Settings, *, round_id: int | None, limit: int
) -> DeliveryOutcome:
    """Deliver up to `limit` due messages of a round (or, with None, messages of no round)."""
    outcome = DeliveryOutcome()
    async with db.write_session() as session:
        taken, claimed = await session.run_sync(_take, round_id, limit, settings)
        await session.commit()
    outcome.add(claimed)
    outcome.claimed = len(taken)
    leases = _Leases(db, settings, {row.id: row.attempt for row in taken})
    recorder = _Recorder(db, settings, outcome, leases)
    chunks = [taken[start : start + CHUNK] for start in range(0, len(taken), CHUNK)]
    sending: asyncio.Task[list[DeliveryResult]] | None = None
    try:
        ready = await _written(chunks[0], settings, recorder) if chunks else []
        for following in [*chunks[1:], None]:
            if recorder.failing or not leases.still_ours():
                log.warning("delivery stopped early: its answers cannot be recorded or its lease is in doubt")
                break
            # The next chunk is written while this one is on the wire.
            writing = _spawn(_written(following, settings, recorder)) if following else None

            def settle(index: int, result: DeliveryResult, chunk: list[_Written] = ready) -> None:
                recorder.add(chunk[index], result)

            # A chunk on the wire is finished even if the caller is cancelled (a worker shutting down):
            # a message cut off mid-conversation might have been delivered, and would be sent again.
            sending = _spawn(sender.send_many([written.email for written in ready], on_result=settle))
            await asyncio.shield(sending)
            sending = None
            ready = await writing if writing is not None else []
    finally:
        await asyncio.shield(_wind_up(sending, recorder, leases))
    return outcome


async def deliver_while_due(
    db: Database,
    sender: EmailSender,
    settings: Settings,
    *,
    round_id: int | None,
    limit: int,
    for_seconds: float,
) -> tuple[DeliveryOutcome, bool]:
    """Batches of up to `limit`, one after another while more is due, starting none after `for_seconds`:
    a storm's email goes out without a trip through the scheduler between batches (behind every other
    round's turn when many rounds woke at once). The sum of the batches, and whether more may be due."""
    total = DeliveryOutcome()
    stop_at = time.monotonic() + for_seconds
    while True:
        outcome = await deliver_due(db, sender, settings, round_id=round_id, limit=limit)
        total.add(outcome)
        total.claimed += outcome.claimed
        more = outcome.more_may_be_due(limit)
        if not more or time.monotonic() >= stop_at:
            return total, more


def _spawn(coroutine: Any) -> asyncio.Task[Any]:
    task = asyncio.create_task(coroutine)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


async def _wind_up(
    sending: asyncio.Task[list[DeliveryResult]] | None, recorder: _Recorder, leases: _Leases
) -> None:
    """Let the chunk on the wire finish, record every answer, and let go at once of what was claimed but
    never sent rather than when its lease lapses."""
    if sending is not None:
        with contextlib.suppress(Exception):
            await sending
    await recorder.close()
    await leases.release()


# ------------------------------------------------------------------------------------------- claim

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
        OUTBOX.c.reply_to,
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
_LIVE_RESETS = sa.select(PASSWORD_RESETS.c.id).where(
    PASSWORD_RESETS.c.id.in_(bindparam("reset_ids", expanding=True)),
    PASSWORD_RESETS.c.used_at.is_(None),
    PASSWORD_RESETS.c.revoked_at.is_(None),
    PASSWORD_RESETS.c.expires_at > bindparam("now"),
)
_RESET_TOKEN = (
    update(PASSWORD_RESETS)
    .where(PASSWORD_RESETS.c.id == bindparam("reset_id"))
    .values(token_sha256=bindparam("digest"))
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
_GIVE_UP = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(status=OutboxStatus.failed, claimed_until=None, last_error=bindparam("error"))
)


DECIDED_AT_HEADER = "X-Roundtable-Decided-At"
"""When the scheduler decided a timed message (a reminder, an escalation), by its clock: the Date header
says when it was delivered, which a retry can make later."""


def _headers(context: dict[str, Any]) -> dict[str, str]:
    decided_at = context.get("decided_at")
    return {DECIDED_AT_HEADER: decided_at} if isinstance(decided_at, str) else {}


def _links_of(link_id: str | None, context: dict[str, Any]) -> list[str]:
    """The review links a message carries: its own, and each of its items' (a day's reminder)."""
    found = [link_id] if link_id is not None else []
    found += [item["link_id"] for item in context.get("items", ()) if item.get("link_id")]
    return list(dict.fromkeys(found))


def _take(
    session: Session, round_id: int | None, limit: int, settings: Settings
) -> tuple[list[_Taken], DeliveryOutcome]:
    """Take up to `limit` due rows for the lease and make the tokens of those that carry a link. Rows
    whose link was withdrawn, or whose round is no longer open, are cancelled instead: their link could do
    nothing any more; rows tried too long are given up. One call into the synchronous session: the claim
    holds the write lock, and each awaited statement would be one more turn of the event loop meanwhile."""
    connection = session.connection()
    now = utcnow()
    if round_id is None:
        found = connection.execute(_DUE_OF_NO_ROUND, {"now": now, "limit": limit})
    else:
        found = connection.execute(_DUE_OF_ROUND, {"now": now, "limit": limit, "round_id": round_id})
    rows = found.all()
    link_ids = sorted({link_id for row in rows for link_id in _links_of(row.link_id, row.context)})
    usable = set(connection.execute(_USABLE_LINKS, {"link_ids": link_ids}).scalars()) if link_ids else set()
    reset_ids = [row.context["reset_id"] for row in rows if row.kind == MessageKind.password_reset]
    live_resets = (
        set(connection.execute(_LIVE_RESETS, {"reset_ids": reset_ids, "now": now}).scalars())
        if reset_ids
        else set()
    )
    reset_tokens: list[dict[str, Any]] = []
    give_up_after = timedelta(hours=settings.outbox_give_up_hours)
    outcome = DeliveryOutcome()
    taken: list[_Taken] = []
    cancelled: list[int] = []
    given_up: list[dict[str, Any]] = []
    events: list[NewEvent] = []
    tokens: list[dict[str, Any]] = []
    for row in rows:
        context = row.context
        if "items" in context:
            # A message about several tasks (a day's reminder) goes with those whose link still works.
            context = {
                **context,
                "items": [item for item in context["items"] if item.get("link_id") in usable],
            }
            if not context["items"]:
                cancelled.append(row.id)
                continue
        if row.link_id is not None and row.link_id not in usable:
            cancelled.append(row.id)
            continue
        if row.kind == MessageKind.password_reset and row.context["reset_id"] not in live_resets:
            cancelled.append(row.id)  # used, superseded or expired: its link could do nothing
            continue
        if row.attempts >= MAX_ATTEMPTS or now - row.created_at >= give_up_after:
            error = f"given up after {row.attempts} attempts over {now - row.created_at}"
            given_up.append({"row_id": row.id, "error": error})
            events.append(
                NewEvent(
                    "email.failed",
                    SYSTEM_ACTOR,
                    row.round_id,
                    row.task_id,
                    {"kind": str(row.kind), "key": row.key, "to": row.to_email, "error": error},
                )
            )
            continue
        made: dict[str, str] = {}
        for link_id in _links_of(row.link_id, context):
            made[link_id], digest = new_secret()
            tokens.append({"token_sha256": digest, "link_id": link_id, "outbox_id": row.id, "issued_at": now})
        reset_token = None
        if row.kind == MessageKind.password_reset:
            # Each attempt makes the token anew: one from an attempt that did not arrive is nobody's.
            reset_token, digest = new_secret("rtp_")
            reset_tokens.append({"reset_id": row.context["reset_id"], "digest": digest})
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
                reply_to=row.reply_to,
                language=Language(row.language),
                context=context,
                attempt=row.attempts + 1,
                created_at=row.created_at,
                tokens=made,
                reset_token=reset_token,
            )
        )
    if reset_tokens:
        connection.execute(_RESET_TOKEN, reset_tokens)
    if taken:
        connection.execute(_HOLD, {"ids": [row.id for row in taken], "until": now + lease_of(settings)})
    if cancelled:
        connection.execute(_CANCEL, {"ids": cancelled})
        outcome.cancelled = len(cancelled)
    if given_up:
        connection.execute(_GIVE_UP, given_up)
        outcome.refused = len(given_up)
    if tokens:
        connection.execute(insert(LINK_TOKENS), tokens)
    trail.append_many_sync(session, events)
    return taken, outcome


async def _written(taken: list[_Taken], settings: Settings, recorder: _Recorder) -> list[_Written]:
    """The taken rows as emails, each with the link its token opens. A row that cannot be rendered is
    handed to the recorder as refused. It gives way to the sending between messages."""
    domain = message_id_domain(settings)
    written: list[_Written] = []
    for row in taken:
        context = row.context
        if row.link_id is not None:
            context = {**context, "link_url": review_url(settings.public_base_url, row.tokens[row.link_id])}
        if row.reset_token is not None:
            context = {**context, "reset_url": reset_url(settings.public_base_url, row.reset_token)}
        if "items" in context:
            context = {
                **context,
                "items": [
                    {**item, "link_url": review_url(settings.public_base_url, row.tokens[item["link_id"]])}
                    for item in context["items"]
                ],
            }
        if row.kind == MessageKind.sign_off_code:
            # Worked out here, as a link's token is made here: the outbox row keeps only the salt.
            context = {**context, "code": sign_off_code(settings.secret_key, str(context.get("code_salt")))}
        message_id = message_id_for(row.key, domain)
        try:
            rendered = render_email(row.kind, row.language, context)
        except (TemplateError, ValueError, TypeError) as exc:
            email = OutgoingEmail(row.to_email, row.to_name, "", "", "", message_id, reply_to=row.reply_to)
            failure = f"the message cannot be written: {exc}"
            recorder.add(_Written(row, email), DeliveryResult.failed(email, failure, retryable=False))
        else:
            email = OutgoingEmail.from_rendered(
                rendered,
                to_address=row.to_email,
                to_name=row.to_name,
                message_id=message_id,
                headers=_headers(row.context),
                reply_to=row.reply_to,
            )
            written.append(_Written(row, email))
        await asyncio.sleep(0)
    return written


# ------------------------------------------------------------------------------------------- leases

_RENEW = (
    update(OUTBOX)
    .where(
        OUTBOX.c.id == bindparam("row_id"),
        OUTBOX.c.attempts == bindparam("attempt"),
        OUTBOX.c.status == OutboxStatus.pending,
    )
    .values(claimed_until=bindparam("until"))
)


class _Leases:
    """The claims of a live delivery: renewed while its messages wait their turn, let go of at the end.
    Every change is fenced on the claim's attempt number, so a delivery whose lease lapsed (and whose rows
    another took) changes nothing of the other's."""

    def __init__(self, db: Database, settings: Settings, held: dict[int, int]) -> None:
        self._db = db
        self._lease = settings.outbox_lease_seconds
        self._held = dict(held)
        self._renewed = time.monotonic()
        self._renewing = _spawn(self._renew()) if held else None

    def still_ours(self) -> bool:
        """Whether the leases were renewed recently enough that no other delivery can have taken a row."""
        return time.monotonic() - self._renewed < self._lease * 0.75

    def done(self, ids: Iterable[int]) -> None:
        """Recorded: nothing more to renew or let go of."""
        for row_id in ids:
            self._held.pop(row_id, None)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._held:
                continue
            started = time.monotonic()
            try:
                await self._set(timedelta(seconds=self._lease))
            except Exception:  # the next turn tries again; still_ours() stops the sending meanwhile
                log.warning("could not renew the leases of %d email(s)", len(self._held), exc_info=True)
            else:
                self._renewed = started

    async def _set(self, lease: timedelta | None) -> None:
        rows = sorted(self._held.items())
        async with self._db.write_session() as session:
            until = utcnow() + lease if lease is not None else None
            await session.exec(
                _RENEW,
                params=[{"row_id": row_id, "attempt": attempt, "until": until} for row_id, attempt in rows],
            )
            await session.commit()

    async def release(self) -> None:
        """Stop renewing; the rows still held (claimed but never sent) are due again at once."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewing
        if self._held:
            with contextlib.suppress(Exception):  # if this fails too, the leases lapse by themselves
                await self._set(None)
            self._held.clear()


# ------------------------------------------------------------------------------------------- record


@dataclass
class _Recorder:
    """Records what the server answered, as soon as it answers: whatever has come in while the previous
    record was being written goes in the next one (a group commit), so a crash leaves at most the
    messages in flight unrecorded."""

    db: Database
    settings: Settings
    outcome: DeliveryOutcome
    leases: _Leases
    failing: bool = False
    """A group of answers could not be recorded: their rows stay held until the lease lapses."""
    _answered: list[tuple[_Written, DeliveryResult]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _task: asyncio.Task[None] | None = None

    def add(self, written: _Written, result: DeliveryResult) -> None:
        self._answered.append((written, result))
        self._arrived.set()
        if self._task is None:
            self._task = _spawn(self._run())

    async def close(self) -> None:
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._closing:
                await asyncio.sleep(GATHER_SECONDS)
            self._arrived.clear()
            while self._answered:
                batch, self._answered = self._answered, []
                await self._record(batch)
            if self._closing:
                return

    async def _record(self, batch: list[tuple[_Written, DeliveryResult]]) -> None:
        ids = [written.row.id for written, _ in batch]
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                async with self.db.write_session() as session:
                    counted = await session.run_sync(_write_record, self.settings, batch)
                    await session.commit()
            except (
                Exception
            ):  # the database may be briefly unavailable; the server's answers must not be lost
                if attempt < RECORD_ATTEMPTS:
                    await asyncio.sleep(0.5 * 2**attempt)
                    continue
                log.exception("could not record %d answered email(s); they wait for their lease", len(batch))
                self.failing = True
                # Not let go of: an email the server took must not be due again before its lease lapses.
                self.leases.done(ids)
                return
            self.outcome.add(counted)
            self.leases.done(ids)
            return


_STILL_PENDING = (
    sa.select(OUTBOX.c.id)
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)), OUTBOX.c.status == OutboxStatus.pending)
    .with_for_update()
)
_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
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
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(
        status=OutboxStatus.failed,
        claimed_until=None,
        last_error=bindparam("error"),
        message_id=bindparam("message_id"),
    )
)
# Only while this delivery still holds the row: one whose lease lapsed must not free another's claim.
_AGAIN = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"), OUTBOX.c.attempts == bindparam("attempt"))
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


def _write_record(
    session: Session, settings: Settings, batch: list[tuple[_Written, DeliveryResult]]
) -> DeliveryOutcome:
    """One transaction: each message's new state, its audit event, and what a delivered invitation
    changes (its link and task are invited). Answers for rows no longer pending (recorded by another
    delivery, which took the row after this one's lease lapsed) are left out, events included. One call
    into the synchronous session, with statements built once: it holds the write lock meanwhile."""
    connection = session.connection()
    now = utcnow()
    ordered = sorted(batch, key=lambda answered: answered[0].row.id)  # rows locked in one order, always
    pending = set(
        connection.execute(_STILL_PENDING, {"ids": [written.row.id for written, _ in ordered]}).scalars()
    )
    outcome = DeliveryOutcome()
    sent: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    unused_tokens: list[str] = []
    events: list[NewEvent] = []
    invited_links: set[str] = set()
    invited_tasks: set[int] = set()
    for written, result in ordered:
        row, email = written.row, written.email
        if row.id not in pending:
            continue
        data: dict[str, Any] = {
            "kind": str(row.kind),
            "key": row.key,
            "to": email.to_address,
            "message_id": email.message_id,
        }
        if row.link_id is not None:
            data["link_id"] = row.link_id
        if result.ok:
            outcome.sent += 1
            sent.append(
                {"row_id": row.id, "now": now, "subject": email.subject[:500], "message_id": email.message_id}
            )
            events.append(NewEvent("email.sent", SYSTEM_ACTOR, row.round_id, row.task_id, data))
            if row.kind == MessageKind.invitation and row.link_id is not None and row.task_id is not None:
                invited_links.add(row.link_id)
                invited_tasks.add(row.task_id)
            continue
        error = (result.error or "refused")[:1000]
        if not result.uncertain:
            # The server certainly did not take the email that carried them. One whose fate is unknown
            # keeps its tokens: if it did arrive, its links must work.
            unused_tokens += [sha256_hex(token) for token in row.tokens.values()]
        if result.retryable:
            outcome.retry_later += 1
            due_at = now + retry_delay(settings, row.attempt)
            again.append({"row_id": row.id, "attempt": row.attempt, "due_at": due_at, "error": error})
            continue
        outcome.refused += 1
        final.append({"row_id": row.id, "error": error, "message_id": email.message_id})
        events.append(
            NewEvent("email.failed", SYSTEM_ACTOR, row.round_id, row.task_id, {**data, "error": error})
        )
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
