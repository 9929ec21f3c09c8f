"""The coordinator console as a coordinator and an auditor use it: forms, cookies, redirects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import Role
from models.organisations import Organisation
from models.rounds import ReviewTask
from models.users import SignInFailure, UserCreate
from services import organisations, rounds, users
from services.audit import browse, trail, verify
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from services.web.deps import CONSOLE_COOKIE
from tests.conftest import Stack
from tests.harness import TEST_ACTOR, csrf_of, eventually, fixture_path, seed_round
from tests.notifications.support import RecordingSink

ZONE = "Europe/Tirane"
PASSWORD = "correct horse battery staple"
COORDINATOR = "coordinator@secretariat.example"
AUDITOR = "auditor@audit.example"
HTML = {"Accept": "text/html"}
KEYS = ["ministry-of-interior", "municipality-tirane"]
CONSOLE_IP = "203.0.113.20"


async def create_login(db: Database, email: str, role: Role) -> None:
    async with db.write_session() as session:
        await users.create_user(
            session, data=UserCreate(email=email, role=role, password=PASSWORD), actor=TEST_ACTOR
        )


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"timezone": ZONE})


@pytest.fixture
async def console(db: Database, console_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the app (it keeps cookies), with a coordinator and an auditor account that can sign in."""
    await create_login(db, COORDINATOR, Role.coordinator)
    await create_login(db, AUDITOR, Role.auditor)
    app = create_app(console_settings, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(CONSOLE_IP, 50123)),
        base_url="http://testserver",
        headers=HTML,
    ) as client:
        yield client


async def sign_in(
    client: httpx.AsyncClient, email: str = COORDINATOR, password: str = PASSWORD, next_path: str = ""
) -> httpx.Response:
    form = await client.get("/console/login")
    assert form.status_code == 200
    return await client.post(
        "/console/login",
        data={"csrf_token": csrf_of(form), "email": email, "password": password, "next": next_path},
    )


async def submit(
    client: httpx.AsyncClient,
    page_path: str,
    action: str,
    data: dict[str, str | list[str]] | None = None,
    files: dict[str, tuple[str, bytes, str]] | None = None,
) -> httpx.Response:
    """Open a page and submit one of its forms with the page's CSRF token, as a console would."""
    page = await client.get(page_path)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page), **(data or {})}, files=files)


def confirm_fields(preview: httpx.Response) -> dict[str, str | list[str]]:
    """The hidden fields of an import preview's Confirm form, as a browser would post them."""
    form = re.search(
        r'<form method="post" action="/console/organisations/import/confirm".*?</form>', preview.text, re.S
    )
    assert form, "the preview offers no Confirm button"
    fields: dict[str, str | list[str]] = {"content": []}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(0)):
        if name == "content":
            fields["content"].append(value)  # type: ignore[union-attr]
        else:
            fields[name] = value.replace("&amp;", "&")
    return fields


async def import_registry(client: httpx.AsyncClient) -> httpx.Response:
    """The fixture registry previewed, then the preview confirmed, as a coordinator does it."""
    content = fixture_path("stakeholders-albania.csv").read_bytes()
    preview = await submit(
        client,
        "/console/organisations",
        "/console/organisations/import",
        files={"file": ("stakeholders-albania.csv", content, "text/csv")},
    )
    assert preview.status_code == 200, preview.text
    return await client.post("/console/organisations/import/confirm", data=confirm_fields(preview))


async def upload_draft(client: httpx.AsyncClient) -> httpx.Response:
    content = fixture_path("draft-migration-governance-strategy.md").read_bytes()
    return await submit(
        client,
        "/console/documents",
        "/console/documents",
        data={"title": "Migration governance strategy"},
        files={"file": ("draft-migration-governance-strategy.md", content, "text/markdown")},
    )


def round_form(page: httpx.Response, **changes: str | list[str]) -> dict[str, str | list[str]]:
    """The new-round wizard as the page offers it (its version, KEYS ticked, each on all sections), with
    changes."""
    version = re.search(r'name="matrix_version" value="(\d+)"', page.text)
    assert version, "no draft version to choose"
    in_three_weeks = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=21)
    form: dict[str, str | list[str]] = {
        "csrf_token": csrf_of(page),
        "title": "Migration strategy, round 1",
        "document_version_id": version.group(1),
        "matrix_version": version.group(1),
        "deadline": f"{in_three_weeks.isoformat()}T17:00",
        "organisations": KEYS,
        "all_sections": KEYS,
    }
    return {**form, **changes}


async def round_count(db: Database) -> int:
    async with db.session() as session:
        return len(await rounds.list_rounds(session))


async def prepare_round(db: Database) -> int:
    """Registry, draft and a draft round made through the services, for tests about something else."""
    return await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=7), keys=KEYS)


# ------------------------------------------------------------------------------------------ sign-in


async def test_a_wrong_password_is_refused_with_a_message_and_no_session(console: httpx.AsyncClient) -> None:
    response = await sign_in(console, password="not the password")
    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert 'value="coordinator@secretariat.example"' in response.text  # what was typed stays
    assert CONSOLE_COOKIE not in console.cookies
    still_out = await console.get("/console")
    assert (still_out.status_code, still_out.headers["location"]) == (303, "/console/login?next=/console")


async def test_repeated_wrong_passwords_lock_the_email_for_a_while(
    db: Database, console: httpx.AsyncClient, console_settings: Settings
) -> None:
    events_before = await _event_count(db)
    for _ in range(users.SIGN_IN_FAILURES_ALLOWED):
        assert (await sign_in(console, password="guess guess guess")).status_code == 401
    locked = await sign_in(console)  # the right password, too late
    assert locked.status_code == 429
    assert "Too many failed sign-ins for this email; try again in 15 minutes." in locked.text
    assert 'value="coordinator@secretariat.example"' in locked.text
    assert CONSOLE_COOKIE not in console.cookies
    # Kept apart from the audit trail: strangers' guesses do not grow it.
    assert await _event_count(db) == events_before
    async with db.session() as session:
        failures = (await session.exec(select(SignInFailure))).all()
    assert len(failures) == users.SIGN_IN_FAILURES_ALLOWED
    assert {(failure.email, failure.ip) for failure in failures} == {(COORDINATOR, CONSOLE_IP)}

    # The lock is on this email from this address: the owner, elsewhere, still signs in.
    app = create_app(console_settings, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.9", 40000)),
        base_url="http://testserver",
        headers=HTML,
    ) as elsewhere:
        signed_in = await sign_in(elsewhere)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/console")


async def _event_count(db: Database) -> int:
    async with db.session() as session:
        return len((await session.exec(select(AuditEvent))).all())


async def test_console_pages_send_the_signed_out_to_sign_in_and_back(console: httpx.AsyncClient) -> None:
    for path in [
        "/console/organisations?kind=ministry",
        "/console/documents",
        "/console/audit",
        "/console/rounds/new",
    ]:
        response = await console.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=/console/")
    response = await sign_in(console, next_path="/console/organisations?kind=ministry")
    assert (response.status_code, response.headers["location"]) == (
        303,
        "/console/organisations?kind=ministry",
    )
    cookie = next(cookie for cookie in console.cookies.jar if cookie.name == CONSOLE_COOKIE)
    assert cookie.path == "/console"
    assert cookie.has_nonstandard_attr("HttpOnly")
    page = await console.get("/console")
    assert page.status_code == 200
    assert "coordinator@secretariat.example" in page.text
    assert "coordinator" in page.text
    assert "Sign out" in page.text
    assert 'href="/dev/mail"' in page.text  # not production


async def test_sign_in_never_redirects_to_another_site(console: httpx.AsyncClient) -> None:
    for target in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"]:
        response = await sign_in(console, next_path=target)
        assert (response.status_code, response.headers["location"]) == (303, "/console"), target
        console.cookies.delete(CONSOLE_COOKIE)


async def test_signing_out_ends_the_session(db: Database, console: httpx.AsyncClient) -> None:
    await sign_in(console)
    secret = console.cookies[CONSOLE_COOKIE]
    response = await submit(console, "/console", "/console/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/console/login")
    assert CONSOLE_COOKIE not in console.cookies
    assert (await console.get("/console")).status_code == 303
    # The old secret is revoked, not just forgotten by this console.
    console.cookies.set(CONSOLE_COOKIE, secret, domain="testserver", path="/console")
    assert (await console.get("/console")).status_code == 303
    async with db.session() as session:
        (event,) = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "user.signed_out"))
        ).all()
    assert event.actor_email == COORDINATOR
    # Signing out again with the revoked secret records nothing more.
    await submit(console, "/console/login", "/console/logout")
    assert await _event_count(db) == event.seq


@pytest.mark.parametrize(
    ("public_base_url", "request_scheme", "secure"),
    [
        ("https://roundtable.example", "http", True),  # TLS ends at the proxy: the app sees http
        ("http://testserver", "https", False),  # the request's scheme is not what decides
    ],
)
async def test_the_session_cookie_is_secure_when_published_over_https(
    db: Database, console_settings: Settings, public_base_url: str, request_scheme: str, secure: bool
) -> None:
    await create_login(db, COORDINATOR, Role.coordinator)
    settings = console_settings.model_copy(update={"public_base_url": public_base_url})
    app = create_app(settings, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"{request_scheme}://testserver", headers=HTML
    ) as client:
        form = await client.get("/console/login")
        csrf_cookie = form.headers["set-cookie"].lower()
        token = csrf_of(form)
        cookie_value = form.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
        response = await client.post(
            "/console/login",
            data={"csrf_token": token, "email": COORDINATOR, "password": PASSWORD},
            headers={"Cookie": f"rt_csrf={cookie_value}"},
        )
    assert response.status_code == 303, response.text
    session_cookie = response.headers["set-cookie"].lower()
    assert session_cookie.startswith(f"{CONSOLE_COOKIE}=")
    for cookie in (csrf_cookie, session_cookie):
        assert ("; secure" in cookie) is secure, cookie
        assert "samesite=lax" in cookie
        assert "httponly" in cookie


# ---------------------------------------------------------------------------- a coordinator's work


async def test_a_coordinator_imports_uploads_and_creates_a_round(
    db: Database, console: httpx.AsyncClient
) -> None:
    await sign_in(console)

    imported = await import_registry(console)
    assert (imported.status_code, imported.headers["location"]) == (
        303,
        "/console/organisations?created=88&updated=0&unchanged=0",
    )
    registry = await console.get(imported.headers["location"])
    assert "88 created, 0 updated, 0 unchanged" in registry.text
    assert registry.text.count('id="organisation-') == 88
    assert "migration.fp@ministry-of-interior.gov.example" in registry.text
    again = await console.get((await import_registry(console)).headers["location"])
    assert "0 created, 0 updated, 88 unchanged" in again.text
    ministries = await console.get("/console/organisations?kind=ministry")
    assert 0 < ministries.text.count('id="organisation-') < 88
    assert "municipality-tirane" not in ministries.text

    uploaded = await upload_draft(console)
    assert uploaded.status_code == 303
    drafts = await console.get("/console/documents")
    assert "Migration governance strategy" in drafts.text
    assert "13 sections" in drafts.text
    assert "Annex 1" in drafts.text
    assert "Labour migration" in drafts.text

    form_page = await console.get("/console/rounds/new")
    assert ZONE in form_page.text
    form = round_form(form_page)
    created = await console.post("/console/rounds", data=form)
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    round_id = int(re.fullmatch(r"/console/rounds/(\d+)\?done=created", location).group(1))  # type: ignore[union-attr]

    async with db.session() as session:
        stored = await rounds.get_round(session, round_id=round_id)
    # 17:00 on the form is 17:00 in Tirana, whatever the server's own zone.
    typed = datetime.fromisoformat(str(form["deadline"])).replace(tzinfo=ZoneInfo(ZONE))
    assert stored.deadline == typed.astimezone(UTC)
    assert sorted(task.organisation_key for task in stored.tasks) == KEYS
    assert all(len(task.section_numbers) == 13 for task in stored.tasks)

    page = await console.get(location)
    assert "The round was created as a draft" in page.text
    assert "Ministry of Interior" in page.text
    assert "Municipality of Tiranë" in page.text
    assert f'action="/console/rounds/{round_id}/launch"' in page.text
    assert f'href="/console/audit?round_id={round_id}"' in page.text
    listing = await console.get("/console")
    assert "Migration strategy, round 1" in listing.text
    assert "0 / 2" in listing.text
    assert "New round" in listing.text


async def test_a_round_on_kinds_and_chosen_sections(db: Database, console: httpx.AsyncClient) -> None:
    await sign_in(console)
    await import_registry(console)
    await upload_draft(console)
    page = await console.get("/console/rounds/new")
    municipalities = re.findall(r'name="organisations" value="(municipality-[^"]+)"', page.text)
    assert len(municipalities) > 1
    form = round_form(
        page,
        organisations=municipalities,
        all_sections=[],
        sections=[f"{key}:{number}" for key in municipalities for number in ("4", "5")],
    )
    created = await console.post("/console/rounds", data=form)
    assert created.status_code == 303, created.text
    async with db.session() as session:
        (listed,) = await rounds.list_rounds(session)
        stored = await rounds.get_round(session, round_id=listed.id)
    assert {task.organisation_kind for task in stored.tasks} == {"municipality"}
    assert {tuple(task.section_numbers) for task in stored.tasks} == {("4", "5")}


async def test_forms_without_the_csrf_token_are_refused(db: Database, console: httpx.AsyncClient) -> None:
    await sign_in(console)
    content = fixture_path("stakeholders-albania.csv").read_bytes()
    refused = await console.post(
        "/console/organisations/import",
        data={"csrf_token": "forged"},
        files={"file": ("registry.csv", content, "text/csv")},
    )
    assert refused.status_code == 403
    assert "did not come from this site" in refused.text
    async with db.session() as session:
        assert await organisations.list_organisations(session) == []

    await import_registry(console)
    await upload_draft(console)
    form = round_form(await console.get("/console/rounds/new"))
    del form["csrf_token"]
    refused = await console.post("/console/rounds", data=form)
    assert refused.status_code == 403
    assert await round_count(db) == 0

    refused = await console.post("/console/logout", data={})
    assert refused.status_code == 403
    assert (await console.get("/console")).status_code == 200  # still signed in


async def test_a_bad_round_form_comes_back_with_the_message(db: Database, console: httpx.AsyncClient) -> None:
    await sign_in(console)
    await import_registry(console)
    await upload_draft(console)
    page = await console.get("/console/rounds/new")

    yesterday = datetime.now(ZoneInfo(ZONE)).date() - timedelta(days=1)
    past = await console.post(
        "/console/rounds", data=round_form(page, title="Too late", deadline=f"{yesterday}T09:00")
    )
    assert past.status_code == 422
    assert "the deadline must be in the future" in past.text
    assert 'value="Too late"' in past.text  # what was typed is still there
    assert f'value="{yesterday}T09:00"' in past.text

    typo = ["ministry-of-interior", "no-such-ministry"]
    unknown = await console.post(
        "/console/rounds", data=round_form(page, organisations=typo, all_sections=typo)
    )
    assert unknown.status_code == 422
    assert "unknown organisation key &#39;no-such-ministry&#39;" in unknown.text
    assert 'value="ministry-of-interior" data-consult checked' in unknown.text

    skipped = _clocks_forward_next_year()
    gap = await console.post("/console/rounds", data=round_form(page, deadline=f"{skipped}T02:30"))
    assert gap.status_code == 422
    assert f"does not exist in {ZONE}" in gap.text

    for changes in [
        {"title": "x"},
        {"deadline": "next tuesday"},
        {"document_version_id": "999999"},
        {"organisations": []},
        {"all_sections": []},
    ]:
        response = await console.post("/console/rounds", data=round_form(page, **changes))
        assert 400 <= response.status_code < 500, changes
        assert "Not saved." in response.text, changes
    assert await round_count(db) == 0


def _clocks_forward_next_year() -> date:
    """The last Sunday of March next year, when 02:00-03:00 does not exist in Europe/Tirane."""
    end_of_march = date(date.today().year + 1, 3, 31)
    return end_of_march - timedelta(days=(end_of_march.weekday() + 1) % 7)


async def test_a_registry_file_with_bad_lines_imports_nothing(
    db: Database, console: httpx.AsyncClient
) -> None:
    await sign_in(console)
    bad = (
        b"key,name_en,kind,focal_point_email\n"
        b"ministry-of-interior,Ministry of Interior,ministry,fp@interior.gov.example\n"
        b"Bad Key,Somebody,ministry,not-an-email\n"
    )
    response = await submit(
        console,
        "/console/organisations",
        "/console/organisations/import",
        files={"file": ("registry.csv", bad, "text/csv")},
    )
    assert response.status_code == 422
    assert "nothing was imported" in response.text
    assert "line 3: key:" in response.text
    assert "line 3: focal_point_email" in response.text
    async with db.session() as session:
        assert await organisations.list_organisations(session) == []


async def test_a_revised_draft_becomes_the_next_version(console: httpx.AsyncClient) -> None:
    await sign_in(console)
    await upload_draft(console)
    page = await console.get("/console/documents")
    action = re.search(r'action="(/console/documents/\d+/versions)"', page.text).group(1)  # type: ignore[union-attr]
    revised = (
        fixture_path("draft-migration-governance-strategy.md").read_bytes() + b"\n\n## 13. Review\n\nNew.\n"
    )
    response = await console.post(
        action, data={"csrf_token": csrf_of(page)}, files={"file": ("revised.md", revised, "text/markdown")}
    )
    assert response.status_code == 303, response.text
    page = await console.get("/console/documents")
    assert "Version 2 · revised.md · 14 sections" in page.text

    not_a_draft = await console.post(
        action,
        data={"csrf_token": csrf_of(page)},
        files={"file": ("notes.pdf", b"%PDF-1.4", "application/pdf")},
    )
    assert not_a_draft.status_code == 422
    assert "is not a draft this service can read" in not_a_draft.text


# ---------------------------------------------------------------------------------------- auditors


async def test_an_auditor_sees_every_page_but_cannot_change_anything(
    db: Database, console: httpx.AsyncClient
) -> None:
    round_id = await prepare_round(db)
    await sign_in(console, AUDITOR)
    pages = {
        path: await console.get(path)
        for path in [
            "/console",
            f"/console/rounds/{round_id}",
            "/console/rounds/new",
            "/console/organisations",
            "/console/documents",
            "/console/audit",
        ]
    }
    for path, page in pages.items():
        assert page.status_code == 200, path
        assert "auditor@audit.example" in page.text
        # The only form an auditor gets is the one that signs them out.
        assert re.findall(r'<form method="post" action="([^"]+)"', page.text) == ["/console/logout"], path
    assert "New round" not in pages["/console"].text
    assert "Migration strategy, round 1" in pages["/console"].text
    assert "Ministry of Interior" in pages[f"/console/rounds/{round_id}"].text
    missing = await console.get("/console/rounds/999")
    assert missing.status_code == 404
    assert "round 999 does not exist" in missing.text

    token = csrf_of(pages["/console"])
    for action in [
        "/console/rounds",
        f"/console/rounds/{round_id}/launch",
        "/console/organisations/import",
        "/console/documents",
        "/console/documents/1/versions",
    ]:
        response = await console.post(action, data={"csrf_token": token, "title": "Sneaky"})
        assert response.status_code == 403, action
        assert "change nothing" in response.text
    async with db.session() as session:
        assert (await rounds.get_round(session, round_id=round_id)).status == "draft"
        assert await round_count(db) == 1


# ------------------------------------------------------------------------------------- audit trail


async def test_the_audit_pages_show_and_export_the_chain(db: Database, console: httpx.AsyncClient) -> None:
    round_id = await prepare_round(db)
    await sign_in(console, AUDITOR)
    events = await console.get("/console/audit")
    assert "organisations.imported" in events.text
    assert "user.signed_in" in events.text
    of_round = await console.get(f"/console/audit?round_id={round_id}")
    assert "round.created" in of_round.text
    assert "organisations.imported" not in of_round.text
    assert (await console.get("/console/audit?round_id=abc")).status_code == 422

    export = await console.get("/console/audit/export")
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    result = verify.verify_lines(export.text.splitlines())
    assert result.ok, result.describe()
    assert result.events >= 5

    await submit(console, "/console", "/console/logout")
    assert (await console.get("/console/audit/export")).status_code == 303


async def test_the_audit_log_pages_through_the_events(db: Database, console: httpx.AsyncClient) -> None:
    async with db.write_session() as session:
        for number in range(120):
            await trail.append(session, actor=TEST_ACTOR, action="test.filler", data={"n": number})
        await session.commit()
    await sign_in(console)
    first = await console.get("/console/audit")
    assert first.text.count('id="event-') == 100
    next_link = re.search(r'href="(/console/audit\?after_seq=\d+)">Next page', first.text).group(1)  # type: ignore[union-attr]
    second = await console.get(next_link)
    assert 0 < second.text.count('id="event-') <= 100
    assert 'id="event-101"' in second.text


# --------------------------------------------------------------- with the scheduler and the SMTP sink


def app_reading_the_sink(stack: Stack) -> httpx.AsyncClient:
    """The stack's app: its dev mailbox viewer reads the directory the stack's sink files into."""
    settings = stack.settings.model_copy(update={"timezone": ZONE})
    app = create_app(settings, db=stack.db, scheduler=stack.scheduler)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    )


async def test_launching_from_the_console_sends_the_invitations(stack: Stack, tmp_path: Path) -> None:
    await create_login(stack.db, "lead@secretariat.example", Role.coordinator)
    async with app_reading_the_sink(stack) as console:
        await sign_in(console, "lead@secretariat.example")
        await import_registry(console)
        await upload_draft(console)
        created = await console.post(
            "/console/rounds", data=round_form(await console.get("/console/rounds/new"))
        )
        round_path = created.headers["location"].split("?")[0]

        launched = await submit(console, round_path, f"{round_path}/launch")
        assert (launched.status_code, launched.headers["location"]) == (303, f"{round_path}?done=launched")
        page = await console.get(launched.headers["location"])
        assert "The round was launched" in page.text
        assert "Launch round" not in page.text

        # Focal point and alternate of each of the two organisations.
        await eventually(lambda: _count(stack), lambda count: count >= 4)
        inbox = await console.get("/dev/mail")
        assert inbox.status_code == 200
        review_links = set(re.findall(r'href="(http://testserver/t/[A-Za-z0-9_-]+)"', inbox.text))
        assert len(review_links) == 4
        review = await console.get(next(iter(review_links)).removeprefix("http://testserver"))
        assert review.status_code == 200
        assert "Migration strategy, round 1" in review.text

        # A second launch (another tab, a double click) starts nothing new.
        again = await submit(console, round_path, f"{round_path}/launch")
        assert (again.status_code, again.headers["location"]) == (303, f"{round_path}?done=already-open")
        page = await eventually(
            lambda: console.get(round_path), lambda response: response.text.count("badge-invited") == 2
        )
        assert "invited" in page.text


async def test_the_round_page_lists_every_email_of_each_task_with_its_state(
    stack: Stack, sink_handler: RecordingSink
) -> None:
    refused = "migration.alt@ministry-of-interior.gov.example"
    sink_handler.rcpt_replies[refused] = "550 5.1.1 no such user here"
    await create_login(stack.db, "lead@secretariat.example", Role.coordinator)
    round_id = await seed_round(
        stack.db, deadline=datetime.now(UTC) + timedelta(days=7), keys=["ministry-of-interior"]
    )
    async with app_reading_the_sink(stack) as console:
        await sign_in(console, "lead@secretariat.example")
        await submit(console, f"/console/rounds/{round_id}", f"/console/rounds/{round_id}/launch")
        await eventually(lambda: _count(stack), lambda count: count >= 1)
        page = await eventually(
            lambda: console.get(f"/console/rounds/{round_id}"),
            lambda response: "badge-email-failed" in response.text and "badge-email-sent" in response.text,
        )
    history = page.text.split('class="email-history"', 1)[1].split("</details>", 1)[0]
    assert "2 emails" in history
    rows = re.findall(r'<tr class="email email-(\w+)">(.*?)</tr>', history, re.S)
    by_address = {re.sub(r"<[^>]+>", " ", cells).split()[1]: state for state, cells in rows}
    assert by_address == {"migration.fp@ministry-of-interior.gov.example": "sent", refused: "failed"}
    assert "550 5.1.1 no such user here" in history
    assert history.count("Invitation") == 2


async def _count(stack: Stack) -> int:
    return stack.mailbox.count()


async def test_the_coordinator_changes_a_round_under_way_from_its_page(stack: Stack) -> None:
    """Extend one organisation, withdraw another, refuse a bad form, close the round: all from the round
    page, each followed by what it says on the page and in the outbox."""
    await create_login(stack.db, "lead@secretariat.example", Role.coordinator)
    await create_login(stack.db, "reader@audit.example", Role.auditor)
    round_id = await seed_round(
        stack.db,
        deadline=datetime.now(UTC) + timedelta(days=7),
        keys=["ministry-of-interior", "municipality-tirane"],
    )
    page_path = f"/console/rounds/{round_id}"
    async with app_reading_the_sink(stack) as console:
        await sign_in(console, "lead@secretariat.example")
        await submit(console, page_path, f"{page_path}/launch")
        await eventually(lambda: _count(stack), lambda count: count == 4)
        page = await console.get(page_path)
        assert "Change the round" in page.text
        assert 'id="actions-municipality-tirane"' in page.text

        later = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=12)).strftime("%Y-%m-%dT17:00")
        extended = await submit(
            console,
            page_path,
            f"{page_path}/extend",
            {
                "deadline": later,
                "reason": "The council meets late",
                "organisation_keys": "municipality-tirane",
            },
        )
        assert extended.status_code == 303, extended.text
        shown = await console.get(extended.headers["location"])
        assert "The deadline was extended" in shown.text
        await eventually(lambda: _count(stack), lambda count: count == 6)

        refused = await submit(
            console, page_path, f"{page_path}/tasks/ministry-of-interior/withdraw", {"reason": ""}
        )
        assert refused.status_code == 422
        assert "Not saved." in refused.text
        assert "reason" in refused.text

        withdrawn = await submit(
            console,
            page_path,
            f"{page_path}/tasks/ministry-of-interior/withdraw",
            {"reason": "Not concerned"},
        )
        assert withdrawn.status_code == 303, withdrawn.text
        closed = await submit(console, page_path, f"{page_path}/close", {"reason": "The committee decided."})
        assert closed.status_code == 303, closed.text
        final = await console.get(page_path)
        assert "The committee decided." in final.text
        assert "Change the round" not in final.text

    async with stack.db.session() as session:
        statuses = {
            key: str(status)
            for key, status in await session.exec(
                select(Organisation.key, ReviewTask.status)
                .join(ReviewTask, col(ReviewTask.organisation_id) == Organisation.id)
                .where(ReviewTask.round_id == round_id)
            )
        }
    assert statuses == {"ministry-of-interior": "withdrawn", "municipality-tirane": "no_response"}

    async with app_reading_the_sink(stack) as reader:
        await sign_in(reader, "reader@audit.example")
        assert "Reason for withdrawing it" not in (await reader.get(page_path)).text


# ------------------------------------------------------------------------------------ junk, no 5xx

JUNK_IDS = [
    "²",
    "١٢",
    "0",
    "-1",
    "1.5",
    "1e3",
    " 7",
    "2147483648",
    "99999999999999999999",
    "x",
    "%00",
    "A" * 300,
]
JUNK_QUERIES: list[dict[str, str]] = [
    {"round_id": "²"},
    {"round_id": "١٢"},
    {"round_id": "2147483648"},
    {"round_id": "-3"},
    {"round_id": "\x00"},
    {"round_id": "9" * 400},
    {"after_seq": "²"},
    {"after_seq": "99999999999999999999"},
    {"after_seq": "-1"},
    {"kind": "spaceship"},
    {"kind": "\x00"},
    {"created": "²", "updated": "-1", "unchanged": "99999999999999999999"},
    {"next": "//evil.example/"},
    {"done": "<script>"},
]
JUNK_FORMS: list[dict[str, str | list[str]]] = [
    {},
    {"title": "x" * 5000, "document_version_id": "²", "deadline": "²", "organisations": "²"},
    {
        "document_version_id": "١٢",
        "deadline": "2026-13-45T99:99",
        "organisations": "keys",
        "organisation_keys": "",
    },
    {"document_version_id": "2147483648", "deadline": "9999-12-31T23:59", "organisations": "kinds"},
    {
        "title": "Junk \x00 round",
        "document_version_id": "1",
        "deadline": "0001-01-01T00:00",
        "organisations": "kinds",
        "organisation_kinds": ["spaceship", "\x00"],
        "sections": ["1:1", "²:4", "x"],
    },
    {"email": "\x00@x", "password": "x" * 10_000, "next": "javascript:alert(1)"},
    {"email": COORDINATOR, "password": "", "next": "/console/\x00"},
]
JUNK_FILES: list[tuple[str, bytes, str]] = [
    ("", b"", "application/octet-stream"),
    ("registry.csv", b"\xff\xfe\x00\x00", "text/csv"),
    ("draft.md", b"## 1. Heading\n\n1.1 \x00 text\n", "text/markdown"),
    ("../../etc/passwd", b"root:x:0:0", "text/plain"),
]


def app_routes(routes: list[Any]) -> list[APIRoute]:
    """Every operation of an app, routers included. FastAPI 0.16x keeps an included router as one entry
    of `app.routes` (holding the router itself) rather than copying its routes in: look inside it."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(app_routes(inner.routes))
    return found


def console_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every console route, as the app declares them."""
    return sorted(
        (method, route.path)
        for route in app_routes(app.routes)
        if route.path.startswith("/console")
        for method in route.methods
    )


async def test_junk_to_every_console_route_never_gets_a_5xx(db: Database, console: httpx.AsyncClient) -> None:
    round_id = await prepare_round(db)
    await sign_in(console)
    token = csrf_of(await console.get("/console"))
    app = console._transport.app  # type: ignore[attr-defined]
    routes = console_routes(app)
    assert len(routes) >= 15, routes
    assert {("GET", "/console/audit"), ("POST", "/console/rounds/{round_id}/launch")} <= set(routes)
    failures = []
    checked = 0
    for method, path in routes:
        # Junk in the path and junk in the query or form are read by different parts of the route, so
        # each junk id is sent once, plainly, and the junk queries and forms go with a well-formed id.
        ids = ["2147483647", *JUNK_IDS] if "{" in path else ["-"]
        for value in ids:
            url = re.sub(r"\{\w+\}", value, path)
            attempts: list[dict[str, Any]]
            if value != ids[0]:
                attempts = [{}] if method == "GET" else [{"data": {"csrf_token": token, **JUNK_FORMS[2]}}]
            elif method == "GET":
                attempts = [{"params": params} for params in JUNK_QUERIES] + [{}]
            else:
                attempts = [{"data": {"csrf_token": "forged", **JUNK_FORMS[1]}}]
                if path != "/console/logout":  # a valid token there would sign this client out
                    attempts += [{"data": {"csrf_token": token, **form}} for form in JUNK_FORMS]
                    attempts += [
                        {"data": {"csrf_token": token}, "files": {"file": item}} for item in JUNK_FILES
                    ]
                    attempts += [
                        {
                            "content": b"--b\r\nbroken",
                            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
                        },
                        {
                            "content": b"\xff\xfe=\x00",
                            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                        },
                    ]
            for attempt in attempts:
                response = await console.request(method, url, **attempt)
                checked += 1
                if response.status_code >= 500:
                    failures.append(
                        (method, url[:80], repr(attempt)[:160], response.status_code, response.text[-300:])
                    )
    assert failures == [], failures
    assert checked > 300
    # Still signed in, the round untouched, and the trail one intact chain.
    assert (await console.get("/console")).status_code == 200
    async with db.session() as session:
        assert (await rounds.get_round(session, round_id=round_id)).status == "draft"
        lines = [line async for line in browse.export_lines(session)]
    assert verify.verify_lines(lines).ok


@pytest.mark.parametrize("value", ["²", "١٢", "0", "-1", "2147483648", "1 2", "abc"])
async def test_the_audit_page_refuses_a_round_that_is_no_number_with_a_message(
    console: httpx.AsyncClient, value: str
) -> None:
    await sign_in(console)
    response = await console.get("/console/audit", params={"round_id": value})
    assert response.status_code == 422, response.text
    assert "is not a round number" in response.text
