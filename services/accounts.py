"""A person's credentials as they manage them: API tokens (issued, listed, revoked) and console sessions
(listed, ended one by one or all but this one); admins do the same for anyone, and disable accounts.

Every issue, revocation and ending is an audit event. Nothing here ever returns a secret but the one just
issued: the database keeps only SHA-256 digests.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.types import utcnow
from models.users import ApiTokenCreate, ApiTokenIssued, Credential, CredentialKind, CredentialRead, User
from services.audit import trail
from services.db import transactional
from services.errors import InvalidInput, NotFound
from services.users import new_credential

LISTED = 200
"""Credentials listed at most, newest first: a script issuing a token a day must not make a huge page."""
NO_SUCH_TOKEN = "no such API token of this user"  # noqa: S105 - a message
NO_SUCH_SESSION = "no such console session of this user"


def _read(credential: Credential) -> CredentialRead:
    return CredentialRead.model_validate(credential, from_attributes=True)


async def _user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


async def api_tokens(session: AsyncSession, *, user_id: int) -> list[CredentialRead]:
    """The user's API tokens, newest first, revoked and expired ones included (they say so)."""
    await _user(session, user_id)
    rows = await session.exec(
        select(Credential)
        .where(Credential.user_id == user_id, Credential.kind == CredentialKind.api)
        .order_by(col(Credential.created_at).desc(), col(Credential.id).desc())
        .limit(LISTED)
    )
    return [_read(row) for row in rows]


async def console_sessions(
    session: AsyncSession, *, user_id: int, idle: timedelta, now: datetime | None = None
) -> list[CredentialRead]:
    """The user's console sessions that still work, the most recently used first."""
    now = now or utcnow()
    rows = await session.exec(
        select(Credential)
        .where(
            Credential.user_id == user_id,
            Credential.kind == CredentialKind.console,
            col(Credential.revoked_at).is_(None),
            col(Credential.expires_at) > now,
            col(Credential.last_used_at) > now - idle,
        )
        .order_by(col(Credential.last_used_at).desc(), col(Credential.id).desc())
        .limit(LISTED)
    )
    return [_read(row) for row in rows]


@transactional
async def issue_token(
    session: AsyncSession, *, user_id: int, data: ApiTokenCreate, longest_days: int, actor: Actor
) -> ApiTokenIssued:
    """A new API token for the user, expiring after `data.lifetime_days` (default and at most
    `longest_days`); its secret is in the answer, once."""
    days = data.lifetime_days if data.lifetime_days is not None else longest_days
    if days > longest_days:
        raise InvalidInput(f"an API token may live at most {longest_days} days; ask for fewer")
    label = data.label.strip()
    if not label or any(ord(character) < 32 or ord(character) == 127 for character in label):
        raise InvalidInput("give the token a label of one line, e.g. what it is for")
    user = await _user(session, user_id)
    if user.disabled_at is not None:
        raise InvalidInput("the account is disabled: it gets no new tokens")
    credential, token = new_credential(user_id, CredentialKind.api, label, lifetime=timedelta(days=days))
    session.add(credential)
    await session.flush()
    assert credential.expires_at is not None
    await trail.append(
        session,
        actor=actor,
        action="user.token_issued",
        data={
            "user_id": user_id,
            "email": user.email,
            "token_id": credential.id,
            "label": label,
            "expires_at": credential.expires_at.isoformat(),
        },
    )
    await session.commit()
    return ApiTokenIssued(**_read(credential).model_dump(), token=token)


async def _credential(
    session: AsyncSession, *, user_id: int, credential_id: int, kind: CredentialKind
) -> Credential:
    credential = await session.get(Credential, credential_id, with_for_update=True)
    if credential is None or credential.user_id != user_id or credential.kind != kind:
        # Someone else's is as absent as one that never was: ids must not tell whose they are.
        raise NotFound(NO_SUCH_TOKEN if kind == CredentialKind.api else NO_SUCH_SESSION)
    return credential


@transactional
async def revoke(
    session: AsyncSession, *, user_id: int, credential_id: int, kind: CredentialKind, actor: Actor
) -> CredentialRead:
    """Revoke one of the user's API tokens, or end one of their console sessions. Revoking one already
    revoked changes nothing and records nothing."""
    await _user(session, user_id)
    credential = await _credential(session, user_id=user_id, credential_id=credential_id, kind=kind)
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        session.add(credential)
        action = "user.token_revoked" if kind == CredentialKind.api else "user.session_ended"
        await trail.append(
            session, actor=actor, action=action, data={"user_id": user_id, "credential_id": credential_id}
        )
        await session.commit()
    return _read(credential)


@transactional
async def end_sessions(
    session: AsyncSession, *, user_id: int, actor: Actor, keep: int | None = None, reason: str = "asked"
) -> int:
    """End every console session of the user but `keep` (the one asking, for "end all other sessions");
    returns how many were ended."""
    await _user(session, user_id)
    ended = await end_all_sessions(session, user_id=user_id, keep=keep)
    if ended:
        await trail.append(
            session,
            actor=actor,
            action="user.sessions_ended",
            data={"user_id": user_id, "count": ended, "kept": keep, "reason": reason},
        )
    await session.commit()
    return ended


async def end_all_sessions(session: AsyncSession, *, user_id: int, keep: int | None) -> int:
    """Revoke the user's console sessions not yet revoked (expired ones too: they are over anyway), in
    the caller's transaction; another use case (a password changed) calls it in its own."""
    condition = [
        col(Credential.user_id) == user_id,
        col(Credential.kind) == CredentialKind.console,
        col(Credential.revoked_at).is_(None),
    ]
    if keep is not None:
        condition.append(col(Credential.id) != keep)
    result = await session.exec(update(Credential).where(*condition).values(revoked_at=utcnow()))
    return int(result.rowcount or 0)


@transactional
async def disable_user(session: AsyncSession, *, email: str, actor: Actor) -> None:
    """Disable an account: its tokens and sessions stop working at once, and its sessions are ended."""
    user = (await session.exec(select(User).where(User.email == email.strip().lower()))).first()
    if user is None or user.id is None:
        raise NotFound(f"no user with email {email}")
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        session.add(user)
        await end_all_sessions(session, user_id=user.id, keep=None)
        await trail.append(
            session, actor=actor, action="user.disabled", data={"user_id": user.id, "email": user.email}
        )
    await session.commit()
