"""The browser's defences and the edges of every request: security headers, HEAD, cookies, request sizes,
and whose address a request is (X-Forwarded-For only from a listed proxy).

Against the app through httpx's ASGI transport, as a browser or a script at a given address would reach
it, and the real database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import Role
from models.users import UserCreate
from services import users
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from services.web.security_headers import CONTENT_SECURITY_POLICY
from tests.harness import TEST_ACTOR, csrf_of
from tests.web.test_review_page import BROWSER_HEADERS, RecordingScheduler, build_round, submission_of

PROXY = "10.0.0.5"
CLIENT = "198.51.100.23"
FORGED = "192.0.2.66"
PASSWORD = "correct horse battery staple"


def client_at(
    settings: Settings,
    db: Database,
    address: str,
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    base_url: str = "http://testserver",
) -> httpx.AsyncClient:
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url=base_url,
        headers={**BROWSER_HEADERS, **(headers or {})},
        cookies=cookies,
    )


@pytest.fixture
async def browser(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_at(settings, db, CLIENT, cookies={"rt_lang": "en"}) as http:
        yield http


# ------------------------------------------------------------------------------------- headers


async def test_every_page_and_answer_carries_the_security_headers(
    db: Database, settings: Settings, browser: httpx.AsyncClient
) -> None:
    built = await build_round(db, settings, keys=["ministry-of-interior"])
    token = built.tokens["ministry-of-interior"][0]
    for path, status in [
        (f"/t/{token}", 200),
        ("/t/not-a-token", 404),
        ("/links/lost", 200),
        ("/console/login", 200),
        ("/api/v1/me", 401),
        ("/static/review.js", 200),
        ("/healthz", 200),
    ]:
        answer = await browser.get(path)
        assert answer.status_code == status, path
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert answer.headers["x-frame-options"] == "DENY", path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
        assert "strict-transport-security" not in answer.headers  # published over http here
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["script-src"] == "'self'"  # no inline script, no other origin
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    # The pages hold no inline script for the policy to block: scripts are files of this origin.
    page = await browser.get(f"/t/{token}")
    assert "<script>" not in page.text
    assert "<script " in page.text
    assert all('src="/static/' in tag for tag in page.text.split("<script")[1:])


async def test_the_page_of_an_unexpected_error_carries_them_too(db: Database, settings: Settings) -> None:
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)  # after the access check: a bug's stand-in, not a route of ours
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for accept in ("text/html", "application/json"):
            answer = await http.get("/broken", headers={"Accept": accept})
            assert answer.status_code == 500
            assert "a bug" not in answer.text
            assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["referrer-policy"] == "no-referrer"


async def test_the_api_viewers_keep_working_without_the_strict_policy(browser: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        viewer = await browser.get(path)
        assert viewer.status_code == 200
        assert "content-security-policy" not in viewer.headers  # FastAPI's page runs an inline script
        assert viewer.headers["x-frame-options"] == "DENY"


async def test_over_https_browsers_are_told_to_come_back_over_https_only(
    db: Database, settings: Settings
) -> None:
    published = settings.model_copy(update={"public_base_url": "https://consultations.gov.example"})
    async with client_at(published, db, CLIENT) as http:
        answer = await http.get("/links/lost")
    assert answer.headers["strict-transport-security"] == "max-age=31536000"


# ------------------------------------------------------------------------------------------ HEAD


async def test_head_answers_like_get_without_a_body(
    db: Database, settings: Settings, browser: httpx.AsyncClient
) -> None:
    built = await build_round(db, settings, keys=["ministry-of-interior"])
    token = built.tokens["ministry-of-interior"][0]
    for path in (f"/t/{token}", "/links/lost", "/console/login", "/healthz", "/t/unknown-token"):
        got = await browser.get(path)
        head = await browser.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"]
    assert (await browser.head("/console/logout")).status_code == 405  # a POST-only route stays so


# --------------------------------------------------------------------------------------- cookies


async def test_cookies_are_secure_over_https_httponly_and_lax(db: Database, settings: Settings) -> None:
    async with db.write_session() as session:
        await users.create_user(
            session,
            data=UserCreate(
                email="coordinator@secretariat.example", role=Role.coordinator, password=PASSWORD
            ),
            actor=TEST_ACTOR,
        )
    for base_url, secure in [("https://consultations.gov.example", True), ("http://testserver", False)]:
        published = settings.model_copy(update={"public_base_url": base_url})
        # A Secure cookie comes back only over https, as the browser reaching the proxy has it.
        async with client_at(
            published, db, CLIENT, base_url=base_url.replace("consultations.gov.example", "testserver")
        ) as http:
            form = await http.get("/console/login")
            signed_in = await http.post(
                "/console/login",
                data={
                    "csrf_token": csrf_of(form),
                    "email": "coordinator@secretariat.example",
                    "password": PASSWORD,
                },
            )
        assert signed_in.status_code == 303, signed_in.text
        set_cookies = form.headers.get_list("set-cookie") + signed_in.headers.get_list("set-cookie")
        names = {line.split("=", 1)[0] for line in set_cookies}
        assert {"rt_csrf", "rt_session"} <= names
        for line in set_cookies:
            flags = {flag.strip().lower() for flag in line.split(";")[1:]}
            assert "httponly" in flags, line
            assert "samesite=lax" in flags, line
            assert ("secure" in flags) is secure, line


# ---------------------------------------------------------------------------------- request sizes


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    db: Database, settings: Settings, browser: httpx.AsyncClient
) -> None:
    small = settings.model_copy(update={"max_request_bytes": 4096, "max_upload_request_bytes": 64 * 1024})
    read: list[int] = []

    async def body(chunks: int, size: int) -> AsyncIterator[bytes]:
        for _ in range(chunks):
            read.append(size)
            yield b"a" * size

    async with client_at(small, db, CLIENT, headers={"Accept": "application/json"}) as http:
        # Declared too large: refused at once, not a byte read.
        declared = await http.post(
            "/links/lost",
            content=body(100, 1024),
            headers={"Content-Length": str(100 * 1024), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert declared.status_code == 413
        assert declared.json()["error"] == "too_large"
        assert "4 KB" in declared.json()["detail"]
        # Streamed without a length: refused once the limit is passed, long before the end.
        read.clear()
        streamed = await http.post(
            "/api/v1/organisations",
            content=body(1000, 1024),
            headers={"Content-Type": "application/json", "Authorization": "Bearer nothing"},
        )
        assert streamed.status_code in (401, 413)  # a request without a token is refused before its body
        read.clear()
        await http.get("/links/lost")
        streamed = await http.post(
            "/links/lost",
            content=body(1000, 1024),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"] == "too_large"
        assert sum(read) < 20 * 1024  # the other 980 KB were never taken in
        # Uploads have their own, larger limit.
        upload = await http.post(
            "/api/v1/documents",
            files={"file": ("draft.md", b"# 1. Title\n" + b"x" * 20_000)},
            headers={"Authorization": "Bearer nothing"},
        )
        assert upload.status_code == 401  # within the upload limit: on to the token check
        too_big = await http.post(
            "/api/v1/documents",
            files={"file": ("draft.md", b"x" * 100_000)},
            headers={"Authorization": "Bearer nothing"},
        )
        assert too_big.status_code == 413
    # A page gets the app's error page.
    async with client_at(small, db, CLIENT) as http:
        refused = await http.post("/links/lost", data={"email": "a" * 10_000})
    assert refused.status_code == 413
    assert "text/html" in refused.headers["content-type"]
    assert "larger than the 4 KB allowed" in refused.text


# ------------------------------------------------------------------------------ client addresses


async def sign_off_ip(db: Database, settings: Settings, address: str, headers: dict[str, str]) -> str | None:
    built = await build_round(db, settings, keys=["ministry-of-interior"])
    token = built.tokens["ministry-of-interior"][0]
    async with client_at(settings, db, address, cookies={"rt_lang": "en"}) as http:
        page = await http.get(f"/t/{token}", headers=headers)
        signed = await http.post(
            f"/t/{token}/sign-off",
            headers=headers,
            data={
                "csrf_token": csrf_of(page),
                "submission_id": submission_of(page),
                "decision": "approve",
                "statement": "",
                "signer_name": "Arben Hoxha",
                "signer_title": "Director of Policy",
                "authorised": "on",
            },
        )
    assert signed.status_code == 303, signed.text
    async with db.session() as session:
        event = (
            await session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "signoff.recorded")
                .order_by(col(AuditEvent.seq))
            )
        ).all()[-1]
    ip: str | None = event.data.get("ip")
    return ip


async def test_a_forged_forwarded_for_does_not_land_in_the_sign_off(db: Database, settings: Settings) -> None:
    # From a client that is no listed proxy (none is listed by default), the header is ignored.
    assert await sign_off_ip(db, settings, CLIENT, {"X-Forwarded-For": FORGED}) == CLIENT


async def test_from_a_listed_proxy_the_client_it_saw_is_recorded(db: Database, settings: Settings) -> None:
    proxied = settings.model_copy(update={"trusted_proxies": "10.0.0.0/24, 172.16.0.9"})
    # The client wrote a forged address first; our proxies appended what they saw: the right-most
    # address that is not one of ours is the client.
    forwarded = {"X-Forwarded-For": f"{FORGED}, {CLIENT}, 172.16.0.9"}
    assert await sign_off_ip(db, proxied, PROXY, forwarded) == CLIENT


async def test_a_forged_forwarded_for_does_not_get_round_the_sign_in_lockout(
    db: Database, settings: Settings
) -> None:
    async with db.write_session() as session:
        await users.create_user(
            session,
            data=UserCreate(
                email="coordinator@secretariat.example", role=Role.coordinator, password=PASSWORD
            ),
            actor=TEST_ACTOR,
        )
    async with client_at(settings, db, CLIENT) as http:
        form = await http.get("/console/login")
        statuses = []
        for attempt in range(8):
            answer = await http.post(
                "/console/login",
                headers={"X-Forwarded-For": f"192.0.2.{attempt + 1}"},
                data={
                    "csrf_token": csrf_of(form),
                    "email": "coordinator@secretariat.example",
                    "password": "x",
                },
            )
            statuses.append(answer.status_code)
        right = await http.post(
            "/console/login",
            headers={"X-Forwarded-For": "192.0.2.200"},
            data={
                "csrf_token": csrf_of(form),
                "email": "coordinator@secretariat.example",
                "password": PASSWORD,
            },
        )
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 3  # every forged address was the same client
    assert right.status_code == 429  # locked out, the right password included


async def test_sign_in_attempts_are_limited_per_client_whatever_the_email(
    db: Database, settings: Settings
) -> None:
    limited = settings.model_copy(update={"rate_limit_sign_ins": 6})
    async with client_at(limited, db, CLIENT) as http:
        form = await http.get("/console/login")
        answers = [
            await http.post(
                "/console/login",
                data={"csrf_token": csrf_of(form), "email": f"guess{n}@secretariat.example", "password": "x"},
            )
            for n in range(8)
        ]
    assert [answer.status_code for answer in answers] == [401] * 6 + [429] * 2
    retry_after = int(answers[-1].headers["retry-after"])
    assert 1 <= retry_after <= 15 * 60
    assert datetime.now(UTC) + timedelta(seconds=retry_after) <= datetime.now(UTC) + timedelta(minutes=15)
