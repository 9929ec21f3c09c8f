"""One's account as a person uses it: API tokens through the API and the console's account page, console
sessions ended, and the forgotten password reset by a link read from the real SMTP sink.

The app runs without Temporal (the delivery it asks for is recorded); the email of no round is
delivered by the reconciler's own path (`delivery.deliver_due` with no round), to the sink.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import Role
from models.types import utcnow
from models.users import Credential, PasswordReset, UserCreate
from notifications.mailbox import DevMailbox, MailboxMessage, SinkServer
from notifications.smtp import SmtpSender
from services import delivery, users
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from services.web.deps import CONSOLE_COOKIE
from tests.harness import TEST_ACTOR, csrf_of, messages_to
from tests.web.test_review_page import RecordingScheduler

EMAIL = "coordinator@secretariat.example"
AUDITOR = "auditor@audit.example"
ADMIN = "admin@secretariat.example"
PASSWORD = "the old password, long enough"
NEW_PASSWORD = "a brand new passphrase"
FORGOT_ANSWER = "If this address belongs to an account"
RESET_PATH = re.compile(r"http://[^/\s]+(/console/password/reset/[A-Za-z0-9_-]+)")


class DeliveryRecordingScheduler(RecordingScheduler):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.deliveries = 0

    async def deliver_unrouted(self) -> None:
        self.deliveries += 1


@dataclass
class Site:
    db: Database
    settings: Settings
    app: FastAPI
    app_client: httpx.AsyncClient
    scheduler: DeliveryRecordingScheduler
    mailbox: DevMailbox
    tokens: dict[str, str]
    """Each account's first API token."""

    def browser(self, ip: str = "203.0.113.7") -> httpx.AsyncClient:
        """Another browser (own cookies) on the same app, from its own client address."""
        transport = httpx.ASGITransport(app=self.app, client=(ip, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies={"rt_lang": "en"})

    async def deliver(self) -> int:
        sender = SmtpSender(delivery.smtp_config(self.settings))
        try:
            return (await delivery.deliver_due(self.db, sender, self.settings, round_id=None, limit=50)).sent
        finally:
            await sender.close()

    def api(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[email]}"}


@pytest.fixture
async def site(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> AsyncIterator[Site]:
    settings = settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port})
    tokens = {}
    for email, role in ((EMAIL, Role.coordinator), (AUDITOR, Role.auditor), (ADMIN, Role.admin)):
        async with db.write_session() as session:
            _user, tokens[email] = await users.create_user(
                session,
                data=UserCreate(email=email, role=role, password=PASSWORD, full_name="Arta Hoxha"),
                actor=TEST_ACTOR,
            )
    scheduler = DeliveryRecordingScheduler(settings)
    app = create_app(settings, db=db, scheduler=scheduler)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", cookies={"rt_lang": "en"}
    ) as client:
        yield Site(db, settings, app, client, scheduler, mailbox, tokens)


async def sign_in(browser: httpx.AsyncClient, email: str = EMAIL, password: str = PASSWORD) -> httpx.Response:
    form = await browser.get("/console/login")
    return await browser.post(
        "/console/login", data={"csrf_token": csrf_of(form), "email": email, "password": password, "next": ""}
    )


async def audit_actions(db: Database) -> list[str]:
    async with db.session() as session:
        return list((await session.exec(select(AuditEvent.action).order_by(col(AuditEvent.seq)))).all())


# ---------------------------------------------------------------------------------- API tokens


async def test_api_tokens_are_listed_issued_once_and_revoked_and_others_are_404(site: Site) -> None:
    http = site.app_client
    issued = await http.post("/api/v1/me/tokens", json={"label": "nightly export"}, headers=site.api(EMAIL))
    assert issued.status_code == 201, issued.text
    body = issued.json()
    secret = body["token"]
    assert body["label"] == "nightly export"
    assert body["expires_at"]
    assert (await http.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})).status_code == 200
    listed = (await http.get("/api/v1/me/tokens", headers=site.api(EMAIL))).json()
    assert [token["label"] for token in listed] == ["nightly export", "created with the account"]
    assert secret not in str(listed)
    assert all("token" not in token for token in listed)
    # Longer than the service allows: refused, nothing issued.
    too_long = await http.post(
        "/api/v1/me/tokens", json={"label": "forever", "lifetime_days": 3000}, headers=site.api(EMAIL)
    )
    assert too_long.status_code == 422
    # Someone else's token is as absent as a token that never was.
    auditor_tokens = (await http.get("/api/v1/me/tokens", headers=site.api(AUDITOR))).json()
    theirs = await http.delete(f"/api/v1/me/tokens/{auditor_tokens[0]['id']}", headers=site.api(EMAIL))
    assert theirs.status_code == 404
    revoked = await http.delete(f"/api/v1/me/tokens/{body['id']}", headers=site.api(EMAIL))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    refused = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert {"user.token_issued", "user.token_revoked"} <= set(await audit_actions(site.db))


async def test_an_expired_api_token_gets_401_saying_so(site: Site) -> None:
    http = site.app_client
    async with site.db.write_session() as session:
        await session.exec(update(Credential).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    answer = await http.get("/api/v1/me", headers=site.api(EMAIL))
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]


async def test_auditors_manage_their_own_tokens_and_only_admins_anyone_s(site: Site) -> None:
    http = site.app_client
    issued = await http.post("/api/v1/me/tokens", json={"label": "audit script"}, headers=site.api(AUDITOR))
    assert issued.status_code == 201
    me = (await http.get("/api/v1/me", headers=site.api(AUDITOR))).json()
    assert (
        await http.get(f"/api/v1/users/{me['user_id']}/tokens", headers=site.api(EMAIL))
    ).status_code == 403
    listed = await http.get(f"/api/v1/users/{me['user_id']}/tokens", headers=site.api(ADMIN))
    assert [token["label"] for token in listed.json()] == ["audit script", "created with the account"]
    revoked = await http.delete(
        f"/api/v1/users/{me['user_id']}/tokens/{issued.json()['id']}", headers=site.api(ADMIN)
    )
    assert revoked.status_code == 200
    gone = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {issued.json()['token']}"})
    assert gone.status_code == 401
    assert (await http.get("/api/v1/users/999999/tokens", headers=site.api(ADMIN))).status_code == 404


# ------------------------------------------------------------------------------ the account page


async def test_the_account_page_lists_sessions_issues_a_token_once_and_ends_other_sessions(
    site: Site,
) -> None:
    async with site.browser() as mine, site.browser() as laptop:
        assert (await sign_in(mine)).status_code == 303
        assert (await sign_in(laptop)).status_code == 303
        page = await mine.get("/console/account")
        assert page.status_code == 200
        assert page.text.count('/end"') == 2  # two sessions, each with its button
        assert "(this browser)" in page.text
        assert page.headers["cache-control"] == "no-store"

        issued = await mine.post(
            "/console/account/tokens",
            data={"csrf_token": csrf_of(page), "label": "weekly report", "lifetime_days": "30"},
        )
        assert issued.status_code == 200
        secret = re.search(r'<code class="secret">([^<]+)</code>', issued.text).group(1)  # type: ignore[union-attr]
        assert (
            await site.app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        ).status_code == 200
        again = await mine.get("/console/account")
        assert "weekly report" in again.text  # shown once
        assert secret not in again.text

        bad = await mine.post(
            "/console/account/tokens",
            data={"csrf_token": csrf_of(again), "label": "x", "lifetime_days": "365"},
        )
        assert bad.status_code == 422
        assert "at most 90 days" in bad.text

        token_id = re.search(r"/console/account/tokens/(\d+)/revoke", again.text).group(1)  # type: ignore[union-attr]
        revoked = await mine.post(
            f"/console/account/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(again)}
        )
        assert (revoked.status_code, revoked.headers["location"]) == (
            303,
            "/console/account?done=token-revoked",
        )
        assert (
            await site.app_client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        ).status_code == 401

        ended = await mine.post("/console/account/sessions/end-others", data={"csrf_token": csrf_of(again)})
        assert ended.status_code == 303
        assert (await laptop.get("/console")).headers["location"].startswith("/console/login")
        assert (await mine.get("/console")).status_code == 200
        assert (await mine.get("/console/account")).text.count('/end"') == 1
        # Without its CSRF token a form does nothing.
        forged = await mine.post("/console/account/sessions/end-others", data={})
        assert forged.status_code == 403
        assert (await mine.get("/console")).status_code == 200


async def test_an_admin_ends_a_user_s_sessions_and_an_idle_session_ends(site: Site) -> None:
    async with site.browser() as browser:
        await sign_in(browser)
        assert (await browser.get("/console")).status_code == 200
        me = (await site.app_client.get("/api/v1/me", headers=site.api(EMAIL))).json()
        ended = await site.app_client.delete(
            f"/api/v1/users/{me['user_id']}/sessions", headers=site.api(ADMIN)
        )
        assert ended.json() == {"ended": 1}
        assert (await browser.get("/console")).status_code == 303
        # A session not used for the idle time ends too.
        await sign_in(browser)
        async with site.db.write_session() as session:
            await session.exec(
                update(Credential)
                .where(col(Credential.revoked_at).is_(None), Credential.kind == "console")
                .values(last_used_at=utcnow() - timedelta(minutes=31))
            )
            await session.commit()
        assert (await browser.get("/console")).headers["location"].startswith("/console/login")


# ------------------------------------------------------------------------------ password reset


async def ask_reset(browser: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await browser.get("/console/password/forgot")
    return await browser.post("/console/password/forgot", data={"csrf_token": csrf_of(page), "email": email})


def reset_messages(site: Site, address: str) -> list[MailboxMessage]:
    return [
        m
        for m in messages_to(site.mailbox, address)
        if (m.header("Message-ID") or "").startswith("<password_reset.")
    ]


def link_of(message: MailboxMessage) -> str:
    match = RESET_PATH.search(message.text)
    assert match, message.text
    return match.group(1)


async def test_the_forgot_page_answers_alike_for_an_unknown_address_and_sends_nothing(site: Site) -> None:
    async with site.browser() as browser:
        known = await ask_reset(browser, EMAIL)
        unknown = await ask_reset(browser, "nobody@secretariat.example")
    assert known.status_code == unknown.status_code == 200
    assert FORGOT_ANSWER in known.text
    assert FORGOT_ANSWER in unknown.text
    strip = lambda text: re.sub(r'name="csrf_token" value="[^"]+"|value="[^"]*@[^"]*"', "", text)  # noqa: E731
    assert strip(known.text) == strip(unknown.text)
    skip = {"set-cookie", "content-length", "date"}
    assert {k: v for k, v in known.headers.items() if k not in skip} == {
        k: v for k, v in unknown.headers.items() if k not in skip
    }
    assert await site.deliver() == 1
    assert len(reset_messages(site, EMAIL)) == 1
    assert messages_to(site.mailbox, "nobody@secretariat.example") == []
    async with site.db.session() as session:
        assert len((await session.exec(select(PasswordReset))).all()) == 1


async def test_a_reset_link_sets_a_new_password_once_ends_every_session_and_signs_nobody_in(
    site: Site,
) -> None:
    async with site.browser() as signed_in, site.browser() as browser:
        await sign_in(signed_in)
        assert (await ask_reset(browser, EMAIL)).status_code == 200
        await asyncio.sleep(0)  # the delivery is asked for apart from the answer: let it start
        assert site.scheduler.deliveries == 1
        assert await site.deliver() == 1
        (message,) = reset_messages(site, EMAIL)
        path = link_of(message)
        async with site.db.session() as session:
            (reset,) = (await session.exec(select(PasswordReset))).all()
        assert reset.token_sha256  # only the hash is kept
        assert reset.token_sha256 not in message.text

        # Opening the link (a scanner, twice) uses nothing up; the page is not cached and sends no Referer.
        for _ in range(2):
            form = await browser.get(path)
            assert form.status_code == 200
            assert "Choose a new password" in form.text
            assert form.headers["cache-control"] == "no-store"
            assert form.headers["referrer-policy"] == "no-referrer"
        weak = await browser.post(
            path,
            data={"csrf_token": csrf_of(form), "password": "password1234", "password_again": "password1234"},
        )
        assert weak.status_code == 422
        assert "common" in weak.text
        mismatch = await browser.post(
            path,
            data={
                "csrf_token": csrf_of(form),
                "password": NEW_PASSWORD,
                "password_again": NEW_PASSWORD + "!",
            },
        )
        assert mismatch.status_code == 422
        done = await browser.post(
            path, data={"csrf_token": csrf_of(form), "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
        )
        assert done.status_code == 200
        assert "Your password was changed" in done.text
        assert CONSOLE_COOKIE not in browser.cookies  # nobody signed in by the link
        assert (await browser.get("/console")).status_code == 303
        # The other browser's session ended with the change.
        assert (await signed_in.get("/console")).headers["location"].startswith("/console/login")
        # The link works once.
        used = await browser.post(
            path,
            data={
                "csrf_token": csrf_of(form),
                "password": "another new passphrase",
                "password_again": "another new passphrase",
            },
        )
        assert used.status_code == 404
        assert "does not work" in used.text
        assert (await browser.get(path)).status_code == 404
        # The old password no longer signs in; the new one does.
        assert (await sign_in(browser)).status_code == 401
        assert (await sign_in(browser, password=NEW_PASSWORD)).status_code == 303
    assert await site.deliver() == 1
    (notice,) = [
        m
        for m in messages_to(site.mailbox, EMAIL)
        if (m.header("Message-ID") or "").startswith("<password_changed.")
    ]
    assert "was changed" in notice.subject
    assert "user.password_reset" in await audit_actions(site.db)


async def test_a_newer_request_or_thirty_minutes_end_a_link(site: Site) -> None:
    async with site.browser() as browser:
        await ask_reset(browser, EMAIL)
        await site.deliver()
        await ask_reset(browser, EMAIL)
        await site.deliver()
        first, second = sorted(reset_messages(site, EMAIL), key=lambda m: m.received_at)
        assert (await browser.get(link_of(first))).status_code == 404  # superseded
        assert (await browser.get(link_of(second))).status_code == 200
        async with site.db.write_session() as session:
            await session.exec(update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
            await session.commit()
        expired = await browser.get(link_of(second))
        assert expired.status_code == 404
        assert "30 minutes" in expired.text


async def test_the_forgot_page_is_throttled_per_client_with_retry_after(site: Site) -> None:
    async with site.browser(ip="198.51.100.9") as browser:
        answers = [await ask_reset(browser, f"someone{number}@secretariat.example") for number in range(6)]
    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    async with site.browser(ip="198.51.100.10") as elsewhere:
        assert (await ask_reset(elsewhere, EMAIL)).status_code == 200
