"""Accounts of coordinators, auditors and admins: API tokens and console sign-in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ActorKind
from models.types import utcnow
from models.users import Credential, CredentialKind, SignInFailure, User, UserCreate, UserRead
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from services.hashing import new_secret, sha256_hex

CONSOLE_SESSION_LIFETIME = timedelta(hours=12)
DEFAULT_API_TOKEN_LIFETIME_DAYS = 90
DEFAULT_CONSOLE_IDLE = timedelta(minutes=30)
TOUCH_EVERY = timedelta(minutes=1)
"""A credential's last use is written at most this often: every request reads it, few need to write it."""
SIGN_IN_FAILURES_ALLOWED = 5
SIGN_IN_LOCKOUT = timedelta(minutes=15)
TOKEN_PREFIX = {CredentialKind.api: "rt_", CredentialKind.console: "rts_"}

_hasher = PasswordHasher()
# Verifying against a real hash for unknown emails keeps sign-in timing from revealing which emails exist.
_UNKNOWN_USER_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who is making a request, as the web layer needs it."""

    user_id: int
    email: str
    role: str
    credential_id: int = 0
    """The API token or console session the request came with."""
    touch_due: bool = False
    """Whether the credential's last use is old enough to be written again (`touch`)."""

    @property
    def actor(self) -> Actor:
        return Actor(kind=ActorKind.user, id=str(self.user_id), email=self.email)


def new_credential(
    user_id: int, kind: CredentialKind, label: str, *, lifetime: timedelta
) -> tuple[Credential, str]:
    """A credential expiring after `lifetime`, and its secret (only its SHA-256 is kept)."""
    secret, digest = new_secret(TOKEN_PREFIX[kind])
    now = utcnow()
    credential = Credential(
        user_id=user_id,
        kind=kind,
        secret_sha256=digest,
        label=label,
        created_at=now,
        expires_at=now + lifetime,
        last_used_at=now if kind == CredentialKind.console else None,
    )
    return credential, secret


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@transactional
async def create_user(
    session: AsyncSession,
    *,
    data: UserCreate,
    actor: Actor,
    token_lifetime_days: int = DEFAULT_API_TOKEN_LIFETIME_DAYS,
) -> tuple[UserRead, str]:
    """Create an account and its first API token; the token is returned once and never stored."""
    email = data.email.lower()
    if (await session.exec(select(User).where(User.email == email))).first():
        raise Conflict(f"a user with email {email} already exists")
    user = User(
        email=email,
        role=data.role,
        full_name=data.full_name,
        password_hash=_hasher.hash(data.password) if data.password else None,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"a user with email {email} already exists") from exc
    assert user.id is not None
    credential, token = new_credential(
        user.id, CredentialKind.api, "created with the account", lifetime=timedelta(days=token_lifetime_days)
    )
    session.add(credential)
    await trail.append(
        session,
        actor=actor,
        action="user.created",
        data={"user_id": user.id, "email": email, "role": str(data.role)},
    )
    await session.commit()
    return UserRead.model_validate(user, from_attributes=True), token


@transactional
async def issue_api_token(
    session: AsyncSession,
    *,
    email: str,
    label: str,
    actor: Actor,
    lifetime_days: int = DEFAULT_API_TOKEN_LIFETIME_DAYS,
) -> str:
    user = await _active_user(session, email=email)
    assert user.id is not None
    credential, token = new_credential(
        user.id, CredentialKind.api, label, lifetime=timedelta(days=lifetime_days)
    )
    session.add(credential)
    await session.flush()
    await trail.append(
        session,
        actor=actor,
        action="user.token_issued",
        data={"user_id": user.id, "token_id": credential.id, "expires_at": credential.expires_at.isoformat()}
        if credential.expires_at
        else {"user_id": user.id},
    )
    await session.commit()
    return token


async def authenticate(
    session: AsyncSession,
    *,
    secret: str,
    kind: CredentialKind,
    idle: timedelta = DEFAULT_CONSOLE_IDLE,
    now: datetime | None = None,
) -> Principal:
    """The principal behind an API token or console session, or Unauthorized: revoked, expired, of a
    disabled account, or (a console session) not used for `idle`. Reads only: the caller writes the last
    use (`touch`) when the principal says it is due."""
    now = now or utcnow()
    row = (
        await session.exec(
            select(Credential, User)
            .join(User, col(User.id) == Credential.user_id)
            .where(Credential.secret_sha256 == sha256_hex(secret), Credential.kind == kind)
        )
    ).first()
    if row is None:
        raise Unauthorized("the token is not valid")
    credential, user = row
    console = kind == CredentialKind.console
    if user.disabled_at is not None:
        raise Unauthorized("the account is disabled")
    if credential.revoked_at is not None:
        raise Unauthorized(
            "the session was ended; sign in again" if console else "the API token has been revoked"
        )
    if credential.expires_at is not None and credential.expires_at <= now:
        raise Unauthorized(
            "the session has expired; sign in again"
            if console
            else "the API token has expired; issue a new one (GET /api/v1/me/tokens lists yours)"
        )
    last_used = credential.last_used_at or credential.created_at
    if console and now - last_used >= idle:
        raise Unauthorized("the session ended after a while without use; sign in again")
    assert user.id is not None
    assert credential.id is not None
    return Principal(
        user_id=user.id,
        email=user.email,
        role=str(user.role),
        credential_id=credential.id,
        touch_due=credential.last_used_at is None or now - credential.last_used_at >= TOUCH_EVERY,
    )


@transactional
async def touch(session: AsyncSession, *, credential_id: int, now: datetime | None = None) -> None:
    """Record a credential's use (a console session's idle clock starts again). Conditional, so that
    requests arriving together write it once."""
    now = now or utcnow()
    await session.exec(
        update(Credential)
        .where(
            col(Credential.id) == credential_id,
            or_(col(Credential.last_used_at).is_(None), col(Credential.last_used_at) <= now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )
    await session.commit()


@transactional
async def sign_in(
    session: AsyncSession, *, email: str, password: str, ip: str | None = None
) -> tuple[Principal, str]:
    """Check a password and open a console session; returns the session secret for the cookie.

    After SIGN_IN_FAILURES_ALLOWED failures for one email from one address within SIGN_IN_LOCKOUT, that
    pair is refused (429) until the window has passed, right password or not. Failures are kept in their
    own table: a stranger's guesses must not grow the audit trail or hold its lock.
    """
    email = email.strip().lower()[:320]
    ip = (ip or "")[:64]
    since = utcnow() - SIGN_IN_LOCKOUT
    recent_failures = (
        await session.exec(
            select(func.count()).where(
                SignInFailure.email == email, SignInFailure.ip == ip, SignInFailure.at > since
            )
        )
    ).one()
    if recent_failures >= SIGN_IN_FAILURES_ALLOWED:
        raise TooManyRequests(
            f"Too many failed sign-ins for this email; try again in {SIGN_IN_LOCKOUT.seconds // 60} minutes."
        )
    user = (await session.exec(select(User).where(User.email == email))).first()
    try:
        _hasher.verify(user.password_hash if user and user.password_hash else _UNKNOWN_USER_HASH, password)
        if user is None or user.password_hash is None or user.disabled_at is not None:
            raise VerificationError
    except (VerificationError, InvalidHashError):
        session.add(SignInFailure(email=email, ip=ip))
        await session.commit()
        raise Unauthorized("wrong email or password") from None
    assert user.id is not None
    credential, secret = new_credential(
        user.id, CredentialKind.console, "console sign-in", lifetime=CONSOLE_SESSION_LIFETIME
    )
    session.add(credential)
    await session.flush()
    assert credential.id is not None
    principal = Principal(user_id=user.id, email=user.email, role=str(user.role), credential_id=credential.id)
    await trail.append(session, actor=principal.actor, action="user.signed_in", data={"user_id": user.id})
    await session.commit()
    return principal, secret


@transactional
async def sign_out(session: AsyncSession, *, secret: str) -> None:
    credential = (
        await session.exec(select(Credential).where(Credential.secret_sha256 == sha256_hex(secret)))
    ).first()
    if credential is None or credential.revoked_at is not None:
        return
    credential.revoked_at = utcnow()
    session.add(credential)
    user = await session.get(User, credential.user_id)
    await trail.append(
        session,
        actor=Actor(kind=ActorKind.user, id=str(credential.user_id), email=user.email if user else None),
        action="user.signed_out",
        data={"user_id": credential.user_id},
    )
    await session.commit()


async def _active_user(session: AsyncSession, *, email: str) -> User:
    user = (await session.exec(select(User).where(User.email == email.strip().lower()))).first()
    if user is None or user.disabled_at is not None:
        raise NotFound(f"no active user with email {email}")
    return user


async def count_users(session: AsyncSession) -> int:
    return (await session.exec(select(func.count()).select_from(User))).one()


async def user_exists(session: AsyncSession, *, email: str) -> bool:
    return (
        await session.exec(select(User.id).where(User.email == email.strip().lower()))
    ).first() is not None
