"""Forgotten passwords, after the OWASP Forgot Password cheat sheet: a single-use link by email.

- Asking (`request_reset`) answers the same whatever the address, in about the same time: it counts the
  request (per client and per address, `services.throttle`), looks the address up, and then, in a
  savepoint, ends the account's earlier resets, records a new one and puts its message in the outbox,
  with its audit event. For an address of nobody's (or one over its limit) a message of the same shape
  is written and the savepoint taken back, as the lost-link page does.
- The link's token is made when the message is delivered (`services.delivery`), like a review link's,
  and only its SHA-256 is kept: the token exists nowhere but in that email. It works for
  `RESET_LIFETIME` after the request, once, and only while it is the account's newest reset.
- Opening the link changes nothing (a mail scanner may open it); only posting the new password
  (`complete_reset`) uses it: the password changes, every console session of the account ends, the
  account's resets end, a notice goes to the address, and the person signs in again with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ActorKind, Language, MessageKind
from models.types import utcnow
from models.users import PasswordReset, User
from services import accounts, outbox, throttle
from services.audit import trail
from services.db import transactional
from services.errors import NotFound
from services.formatting import when_text
from services.hashing import sha256_hex
from services.invitations import sender_name
from services.links import ClientInfo
from services.outbox import Mail
from services.passwords import check_new_password
from services.settings import Settings
from services.throttle import Limit
from services.users import hash_password

RESET_LIFETIME = timedelta(minutes=30)
PER_CLIENT = Limit("password_reset.ip", allowed=5, window=timedelta(minutes=15))
PER_ADDRESS = Limit("password_reset.email", allowed=3, window=timedelta(hours=1))
ACTOR = Actor(kind=ActorKind.system, id="forgot-password-page")
THROTTLED = "Too many requests from your network. Try again in {wait}; nothing was sent."
LINK_INVALID = (
    "This password reset link does not work: it was used already, a newer one was sent, or it is more "
    "than 30 minutes old. Ask for a new one."
)
RESET_PATH = "/console/password/reset/"


class ResetLinkInvalid(NotFound):
    error = "reset_link_invalid"


@dataclass(frozen=True)
class ResetAsked:
    """What the page does not show: whether a message was put in the outbox."""

    sent: bool


def reset_url(base_url: str, token: str) -> str:
    return f"{base_url}{RESET_PATH}{token}"


def _live(now: datetime) -> list[ColumnElement[bool]]:
    return [
        col(PasswordReset.used_at).is_(None),
        col(PasswordReset.revoked_at).is_(None),
        col(PasswordReset.expires_at) > now,
    ]


@transactional
async def request_reset(
    session: AsyncSession,
    *,
    email: str,
    client: ClientInfo,
    settings: Settings,
    language: Language = Language.en,
    now: datetime | None = None,
) -> ResetAsked:
    """Send the account of `email` a reset link, if there is such an (enabled) account; the caller has
    checked that it looks like an address. Raises TooManyRequests (with `retry_after`) for a client over
    its limit."""
    now = now or utcnow()
    address = email.strip().lower()
    by_client, by_address = await throttle.count(
        session,
        hits=[(PER_CLIENT, throttle.client_subject(client.ip)), (PER_ADDRESS, address)],
        now=now,
        secret_key=settings.secret_key,
    )
    if by_client.exceeded:
        raise throttle.refusal(THROTTLED, retry_after=by_client.retry_after(now))
    user = (
        await session.exec(select(User).where(User.email == address, col(User.disabled_at).is_(None)))
    ).first()
    sends = user is not None and not by_address.exceeded
    async with trail.chain_turn(session):
        savepoint = await session.begin_nested()
        # An address of nobody's does the same work, on user id 0 (no account has it).
        user_id = user.id if user is not None and user.id is not None else 0
        await session.exec(
            update(PasswordReset)
            .where(col(PasswordReset.user_id) == user_id, *_live(now))
            .values(revoked_at=now)
        )
        reset_id = 0
        if user is not None:
            reset = PasswordReset(user_id=user_id, created_at=now, expires_at=now + RESET_LIFETIME)
            session.add(reset)
            await session.flush()
            assert reset.id is not None
            reset_id = reset.id
        mail = Mail(
            key=f"password_reset:{reset_id}" if user else f"password_reset:0:{sha256_hex(address)[:24]}",
            kind=MessageKind.password_reset,
            to_email=user.email if user else address,
            to_name=user.full_name if user else "",
            language=language,
            context={
                "full_name": user.full_name if user else "",
                "reset_id": reset_id,
                "valid_minutes": int(RESET_LIFETIME.total_seconds() // 60),
                "sender_name": sender_name(settings),
            },
        )
        added = await outbox.enqueue_new(session, mails=[mail])
        await trail.append(
            session,
            actor=ACTOR,
            action="user.password_reset_asked",
            data={"user_id": user_id, "reset_id": reset_id, "ip": client.ip},
        )
        sent = sends and mail.key in added
        if sent:
            await savepoint.commit()
        else:
            await savepoint.rollback()
        await session.commit()
    return ResetAsked(sent=sent)


async def _reset_of(
    session: AsyncSession, token: str, now: datetime, *, lock: bool
) -> tuple[PasswordReset, User]:
    if not token or len(token) > 200:
        raise ResetLinkInvalid(LINK_INVALID)
    statement = (
        select(PasswordReset, User)
        .join(User, col(User.id) == PasswordReset.user_id)
        .where(PasswordReset.token_sha256 == sha256_hex(token), *_live(now), col(User.disabled_at).is_(None))
    )
    row = (await session.exec(statement.with_for_update() if lock else statement)).first()
    if row is None:
        raise ResetLinkInvalid(LINK_INVALID)
    return row


async def check_link(session: AsyncSession, *, token: str, now: datetime | None = None) -> None:
    """Whether the link still works (ResetLinkInvalid if not); reads only, so a scanner opening it
    changes nothing."""
    await _reset_of(session, token, now or utcnow(), lock=False)


@transactional
async def complete_reset(
    session: AsyncSession,
    *,
    token: str,
    password: str,
    again: str,
    client: ClientInfo,
    settings: Settings,
    language: Language = Language.en,
    now: datetime | None = None,
) -> int:
    """Set the new password through a reset link; returns the account's id. A password refused
    (InvalidInput) leaves the link as it was, to try again."""
    now = now or utcnow()
    reset, user = await _reset_of(session, token, now, lock=True)
    assert user.id is not None
    assert reset.id is not None
    check_new_password(password, again, email=user.email)
    user.password_hash = hash_password(password)
    reset.used_at = now
    session.add_all([user, reset])
    await session.exec(
        update(PasswordReset)
        .where(col(PasswordReset.user_id) == user.id, col(PasswordReset.id) != reset.id, *_live(now))
        .values(revoked_at=now)
    )
    ended = await accounts.end_all_sessions(session, user_id=user.id, keep=None)
    await outbox.enqueue(
        session,
        mails=[
            Mail(
                key=f"password_changed:{user.id}:{reset.id}",
                kind=MessageKind.password_changed,
                to_email=user.email,
                to_name=user.full_name,
                language=language,
                context={
                    "full_name": user.full_name,
                    "changed_at": when_text(now, timezone=settings.timezone, language=language),
                    "forgot_url": f"{settings.public_base_url}/console/password/forgot",
                    "sender_name": sender_name(settings),
                },
            )
        ],
    )
    await trail.append(
        session,
        actor=Actor(kind=ActorKind.user, id=str(user.id), email=user.email),
        action="user.password_reset",
        data={"user_id": user.id, "reset_id": reset.id, "sessions_ended": ended, "ip": client.ip},
    )
    await session.commit()
    return user.id
