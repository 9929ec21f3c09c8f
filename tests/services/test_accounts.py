"""API tokens and console sessions as their owners manage them: expiry, idle time, listing, revocation,
disabled accounts; the password rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import Role
from models.types import utcnow
from models.users import ApiTokenCreate, CredentialKind, UserCreate
from services import accounts, users
from services.db import Database
from services.errors import InvalidInput, NotFound, Unauthorized
from services.passwords import check_new_password
from tests.harness import TEST_ACTOR

PASSWORD = "a long enough sentence"
EMAIL = "coordinator@secretariat.example"
IDLE = timedelta(minutes=30)


async def account(db: Database, email: str = EMAIL, role: Role = Role.coordinator) -> tuple[int, str]:
    async with db.write_session() as session:
        user, token = await users.create_user(
            session, data=UserCreate(email=email, role=role, password=PASSWORD), actor=TEST_ACTOR
        )
    return user.id, token


async def sign_in(db: Database, email: str = EMAIL) -> tuple[users.Principal, str]:
    async with db.write_session() as session:
        return await users.sign_in(session, email=email, password=PASSWORD)


async def who(db: Database, secret: str, kind: CredentialKind, **when: object) -> users.Principal:
    async with db.session() as session:
        return await users.authenticate(session, secret=secret, kind=kind, idle=IDLE, **when)  # type: ignore[arg-type]


async def actions(db: Database) -> list[str]:
    async with db.session() as session:
        return list((await session.exec(select(AuditEvent.action).order_by(col(AuditEvent.seq)))).all())


async def test_an_api_token_expires_and_is_then_refused_with_a_clear_message(db: Database) -> None:
    user_id, token = await account(db)
    async with db.session() as session:
        (listed,) = await accounts.api_tokens(session, user_id=user_id)
    assert listed.expires_at is not None
    assert timedelta(days=89) < listed.expires_at - utcnow() <= timedelta(days=90)
    assert (await who(db, token, CredentialKind.api)).user_id == user_id
    with pytest.raises(Unauthorized, match="the API token has expired"):
        await who(db, token, CredentialKind.api, now=listed.expires_at + timedelta(seconds=1))


async def test_tokens_are_issued_listed_and_revoked_and_each_is_an_audit_event(db: Database) -> None:
    user_id, _first = await account(db)
    async with db.write_session() as session:
        issued = await accounts.issue_token(
            session,
            user_id=user_id,
            data=ApiTokenCreate(label="nightly export", lifetime_days=7),
            longest_days=90,
            actor=TEST_ACTOR,
        )
    assert issued.token.startswith("rt_")
    assert issued.expires_at is not None
    assert timedelta(days=6) < issued.expires_at - utcnow() <= timedelta(days=7)
    assert (await who(db, issued.token, CredentialKind.api)).credential_id == issued.id
    async with db.session() as session:
        listed = await accounts.api_tokens(session, user_id=user_id)
    assert [token.label for token in listed] == ["nightly export", "created with the account"]
    assert all("token" not in token.model_dump() for token in listed)  # never the secret
    async with db.write_session() as session:
        revoked = await accounts.revoke(
            session, user_id=user_id, credential_id=issued.id, kind=CredentialKind.api, actor=TEST_ACTOR
        )
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match="revoked"):
        await who(db, issued.token, CredentialKind.api)
    # Revoking again changes nothing and records nothing more.
    async with db.write_session() as session:
        await accounts.revoke(
            session, user_id=user_id, credential_id=issued.id, kind=CredentialKind.api, actor=TEST_ACTOR
        )
    assert (await actions(db)).count("user.token_revoked") == 1
    assert "user.token_issued" in await actions(db)


async def test_a_token_longer_than_allowed_or_of_someone_else_is_refused(db: Database) -> None:
    user_id, _token = await account(db)
    other_id, _other = await account(db, "other@secretariat.example")
    async with db.write_session() as session:
        with pytest.raises(InvalidInput, match="at most 90 days"):
            await accounts.issue_token(
                session,
                user_id=user_id,
                data=ApiTokenCreate(label="forever", lifetime_days=365),
                longest_days=90,
                actor=TEST_ACTOR,
            )
    async with db.session() as session:
        (others,) = await accounts.api_tokens(session, user_id=other_id)
    async with db.write_session() as session:
        with pytest.raises(NotFound):
            await accounts.revoke(
                session, user_id=user_id, credential_id=others.id, kind=CredentialKind.api, actor=TEST_ACTOR
            )
    async with db.session() as session:
        (still,) = await accounts.api_tokens(session, user_id=other_id)
    assert still.revoked_at is None


async def test_a_console_session_ends_after_the_idle_time_and_each_use_extends_it(db: Database) -> None:
    await account(db)
    principal, secret = await sign_in(db)
    signed_in = utcnow()
    # Used within the idle time, the session works; the write of its use is not due within a minute.
    assert not (
        await who(db, secret, CredentialKind.console, now=signed_in + timedelta(seconds=30))
    ).touch_due
    later = signed_in + timedelta(minutes=20)
    assert (await who(db, secret, CredentialKind.console, now=later)).touch_due
    async with db.write_session() as session:
        await users.touch(session, credential_id=principal.credential_id, now=later)
    # 40 minutes after sign-in but 20 after its last use: still working.
    assert (await who(db, secret, CredentialKind.console, now=later + timedelta(minutes=20))).user_id
    with pytest.raises(Unauthorized, match="without use"):
        await who(db, secret, CredentialKind.console, now=later + timedelta(minutes=30))
    # Touched again within the minute, nothing is written.
    async with db.write_session() as session:
        await users.touch(session, credential_id=principal.credential_id, now=later + timedelta(seconds=30))
    async with db.session() as session:
        (listed,) = await accounts.console_sessions(session, user_id=principal.user_id, idle=IDLE, now=later)
    assert listed.last_used_at == later


async def test_sessions_are_listed_ended_one_by_one_or_all_but_this_one(db: Database) -> None:
    await account(db)
    first, first_secret = await sign_in(db)
    second, second_secret = await sign_in(db)
    third, third_secret = await sign_in(db)
    async with db.session() as session:
        listed = await accounts.console_sessions(session, user_id=first.user_id, idle=IDLE)
    assert {item.id for item in listed} == {first.credential_id, second.credential_id, third.credential_id}
    async with db.write_session() as session:
        await accounts.revoke(
            session,
            user_id=first.user_id,
            credential_id=second.credential_id,
            kind=CredentialKind.console,
            actor=first.actor,
        )
    with pytest.raises(Unauthorized, match="ended"):
        await who(db, second_secret, CredentialKind.console)
    async with db.write_session() as session:
        ended = await accounts.end_sessions(
            session, user_id=first.user_id, actor=first.actor, keep=first.credential_id
        )
    assert ended == 1
    with pytest.raises(Unauthorized):
        await who(db, third_secret, CredentialKind.console)
    assert (await who(db, first_secret, CredentialKind.console)).credential_id == first.credential_id
    async with db.session() as session:
        (left,) = await accounts.console_sessions(session, user_id=first.user_id, idle=IDLE)
    assert left.id == first.credential_id
    assert {"user.session_ended", "user.sessions_ended"} <= set(await actions(db))


async def test_a_disabled_account_s_sessions_and_tokens_stop_working(db: Database) -> None:
    _user_id, token = await account(db)
    _principal, secret = await sign_in(db)
    async with db.write_session() as session:
        await accounts.disable_user(session, email=EMAIL, actor=TEST_ACTOR)
    with pytest.raises(Unauthorized, match="disabled"):
        await who(db, secret, CredentialKind.console)
    with pytest.raises(Unauthorized, match="disabled"):
        await who(db, token, CredentialKind.api)
    assert "user.disabled" in await actions(db)


@pytest.mark.parametrize(
    ("password", "again", "problem"),
    [
        ("short pass", "short pass", "at least 12"),
        ("a long enough sentence", "a long enough sentencE", "not the same"),
        ("person@secretariat.example", "person@secretariat.example", "email address"),
        ("Password1234", "Password1234", "common"),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "common"),
        ("x" * 300, "x" * 300, "at most"),
    ],
)
def test_a_new_password_is_long_typed_twice_not_the_address_and_not_common(
    password: str, again: str, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        check_new_password(password, again, email="person@secretariat.example")
    assert check_new_password(PASSWORD, PASSWORD, email="person@secretariat.example") == PASSWORD
