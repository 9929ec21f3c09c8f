"""Who may call what: the access table (services/web/access.py) against what the app actually does.

Modelled on GOV.UK Notify's route-authentication test: walk every route of the app (each entry of
`app.routes`, routers and mounts included, each of its methods), call it as every kind of caller, and
fail wherever the answer is not what the route's line in the table says, or where the app and the table
do not list the same routes.

Every caller carries what it would in real life: staff a bearer token and a signed-in console session
(both, on every request), a link holder the real token of a launched round in the review paths (the
others an unknown one). There are two link holders, the focal points of organisations A and B, and every
comment id in the walk is B's: whatever A's link is let through to, B's task is left as it was. Path
parameters are real ids for reads and harmless ones for writes, and no form carries a CSRF token and no
body is valid, so the walk changes nothing.

Refused means: 401 or 403 for want of access (the error says `unauthorized` or `forbidden`), the 410 of a
review link past its life (`link_gone`), a redirect to the console's sign-in page, or, on a route that
takes a review token, the 'invalid link' 404. Anything else passed the access check: a 404 or 422 after
it, and the 403 of a form refused for its missing CSRF token, which only a caller who got that far
receives.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Form
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from models.enums import Role
from models.users import UserCreate
from services import users
from services.db import Database
from services.settings import Environment, Settings
from services.web import access
from services.web.access import ACCESS, ANYONE, DEVELOPMENT_ONLY, Caller
from services.web.app import create_app
from services.web.deps import CONSOLE_COOKIE, Submitted
from services.web.forms import CsrfForm
from services.web.routes import ApiRoute, ConsoleRoute, PublicRoute, ReviewRoute
from tests.conftest import TEST_SECRET
from tests.harness import TEST_ACTOR
from tests.web.test_review_page import RecordingScheduler, build_round, csrf_of, new_submission, snapshot

PASSWORD = "a walk through every route"
UNKNOWN_TOKEN = "not-a-review-token-" + "A" * 24
STAFF = {Caller.coordinator: Role.coordinator, Caller.auditor: Role.auditor, Caller.admin: Role.admin}
ACCESS_REFUSALS = {"unauthorized", "forbidden", "link_gone"}
UNLIMITED = {
    "rate_limit_link_requests": 10**6,
    "rate_limit_unknown_tokens": 10**6,
    "rate_limit_sign_ins": 10**6,
}


def served_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(METHOD, path template) of everything the app serves: routers and mounts included, HEAD as GET."""
    found = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            found.add(("GET", f"{route.path}/{{path:path}}"))
            continue
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")
        found |= {(method, route.path or "") for method in methods}
    return found


@dataclass(frozen=True)
class Walker:
    """Someone walking the routes: who they are, and the kind of caller the table knows them as."""

    name: str
    caller: Caller


WALKERS = [
    Walker("anonymous", Caller.anonymous),
    Walker("focal point A", Caller.link_holder),
    Walker("focal point B", Caller.link_holder),
    Walker("coordinator", Caller.coordinator),
    Walker("auditor", Caller.auditor),
    Walker("admin", Caller.admin),
]
ORGANISATION_A, ORGANISATION_B = "ministry-of-interior", "municipality-tirane"


@dataclass
class Walk:
    app: FastAPI
    db: Database
    http: httpx.AsyncClient
    credentials: dict[str, dict[str, str]]
    """The headers each walker sends on every request."""
    tokens: dict[str, str]
    """Each focal point's review token."""
    reads: dict[str, str]
    """Path parameter -> a real value, for reads."""


@pytest.fixture
async def walk(db: Database, settings: Settings) -> AsyncIterator[Walk]:
    # The walk tries hundreds of unknown tokens: the rate limits (tests/web/test_link_lifecycle.py) stay off.
    settings = settings.model_copy(update=UNLIMITED)
    built = await build_round(db, settings, keys=[ORGANISATION_A, ORGANISATION_B])
    credentials: dict[str, dict[str, str]] = {walker.name: {} for walker in WALKERS}
    for caller, role in STAFF.items():
        email = f"{caller}@secretariat.example"
        async with db.write_session() as session:
            _user, api_token = await users.create_user(
                session, data=UserCreate(email=email, role=role, password=PASSWORD), actor=TEST_ACTOR
            )
        async with db.write_session() as session:
            _principal, console_secret = await users.sign_in(session, email=email, password=PASSWORD)
        credentials[str(caller)] = {
            "Authorization": f"Bearer {api_token}",
            "Cookie": f"{CONSOLE_COOKIE}={console_secret}",
        }
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Accept": "application/json"},  # errors say which they are
    ) as http:
        comment_of_b = await comment_as(http, built.tokens[ORGANISATION_B][0], "B's own comment.")
        yield Walk(
            app=app,
            db=db,
            http=http,
            credentials=credentials,
            tokens={
                "focal point A": built.tokens[ORGANISATION_A][0],
                "focal point B": built.tokens[ORGANISATION_B][0],
            },
            reads={
                "round_id": str(built.round_id),
                "document_id": "1",
                "key": ORGANISATION_A,
                "organisation_key": ORGANISATION_A,
                "request_id": "999999",
                "comment_id": str(comment_of_b),
                "token_id": "999999",
                "session_id": "999999",
                "user_id": "1",
                "reset_token": "not-a-reset-token",
                "rest": "no/such/page",
                "path": "style.css",
            },
        )


async def comment_as(http: httpx.AsyncClient, token: str, body: str) -> int:
    """Comment through the review page, as the holder of `token`; the comment's id."""
    page = await http.get(f"/t/{token}", headers={"Accept": "text/html"})
    section_id = re.search(r'name="section_id" value="(\d+)"', page.text)
    assert section_id is not None
    posted = await http.post(
        f"/t/{token}/comments",
        headers={"Accept": "text/html"},
        data={
            "csrf_token": csrf_of(page),
            "submission_id": new_submission(),
            "section_id": section_id.group(1),
            "body": body,
        },
    )
    assert posted.status_code in (200, 303), posted.text[:300]
    found = re.findall(
        r"/comments/(\d+)/edit", (await http.get(f"/t/{token}", headers={"Accept": "text/html"})).text
    )
    assert found, "the comment is on its page"
    return int(found[-1])


RECORDS = ("comments", "sign_offs", "review_tasks", "access_links", "audit_events", "outbox")
"""What the walk must leave as it found it: the records of the round and its trail."""


async def records(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows for name, rows in (await snapshot(db)).items() if name in RECORDS}


def concrete(walk: Walk, method: str, path: str, walker: Walker) -> str:
    """The path with its parameters filled in: the caller's review token, real ids for reads and harmless
    ones (nothing with them exists) for writes."""
    harmless = {
        "round_id": "999999",
        "document_id": "999999",
        "key": "no-such-organisation",
        "organisation_key": "no-such-organisation",
        "request_id": "999999",
        "user_id": "999999",
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "token":
            return walk.tokens.get(walker.name, UNKNOWN_TOKEN)
        if method != "GET" and name in harmless:
            return harmless[name]
        return walk.reads[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def error_of(response: httpx.Response) -> str | None:
    """The `error` of an error answered as JSON (the walk asks for JSON), e.g. 'forbidden'."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    body = response.json()
    return body.get("error") if isinstance(body, dict) else None


def refusal(response: httpx.Response, path: str) -> str | None:
    """How the app refused the call, or None if it let it through."""
    if response.is_redirect:
        location = response.headers["location"]
        return f"redirect to {location}" if location.startswith("/console/login") else None
    error = error_of(response)
    if response.status_code in (401, 403) and error in ACCESS_REFUSALS:
        return f"{response.status_code} {error}"
    if response.status_code == 404 and error == "invalid_link" and "{token}" in path:
        return "404 invalid_link"
    return None


def refused_as_the_route_class_does(response: httpx.Response, method: str, path: str, url: str) -> str | None:
    """What is wrong with the way the refusal was made, if anything: the API says 401 with the scheme to
    use, the console sends the signed-out to sign in (and back to the page they asked for)."""
    api_401 = path.startswith(access.API) and response.status_code == 401
    if api_401 and response.headers.get("www-authenticate") != "Bearer":
        return "401 without 'WWW-Authenticate: Bearer'"
    if path.startswith("/console") and response.is_redirect:
        expected = "/console/login" + (f"?next={quote(url, safe='/')}" if method == "GET" else "")
        if response.headers["location"] != expected:
            return f"sent to {response.headers['location']}, not {expected}"
    return None


async def test_every_route_admits_exactly_the_callers_its_line_names(walk: Walk) -> None:
    served = served_operations(walk.app)
    assert served - set(ACCESS) == set(), "served but not in the access table"
    assert set(ACCESS) - served == set(), "in the access table but not served"

    before = await records(walk.db)
    mismatches = []
    calls = 0
    for method, path in sorted(served, key=lambda operation: (operation[1], operation[0])):
        line = ACCESS[(method, path)]
        for walker in WALKERS:
            url = concrete(walk, method, path, walker)
            response = await walk.http.request(method, url, headers=walk.credentials[walker.name])
            calls += 1
            assert response.status_code < 500 or path == "/readyz", (method, url, walker, response.text[:300])
            refused = refusal(response, path)
            if (walker.caller in line) != (refused is None):
                expected = "admitted" if walker.caller in line else "refused"
                got = refused or f"admitted ({response.status_code} {error_of(response) or ''})".strip()
                mismatches.append(f"{method} {path} as {walker.name}: expected {expected}, got {got}")
            elif refused is not None:
                wrong = refused_as_the_route_class_does(response, method, path, url)
                if wrong:
                    mismatches.append(f"{method} {path} as {walker.name}: refused, but {wrong}")
    assert mismatches == [], "\n".join(mismatches)
    assert calls == len(ACCESS) * len(WALKERS)
    assert {walker.caller for walker in WALKERS} == set(Caller)
    # Focal point A's link reached B's comment nowhere, and nobody changed anything on the way.
    assert await records(walk.db) == before
    # Every kind of line was walked.
    assert set(ACCESS.values()) >= {
        access.READERS,
        access.CHANGERS,
        access.ADMINS,
        access.LINK_HOLDER,
        ANYONE,
    }


# ----------------------------------------------------------------- the table is the thing enforced


def offline_settings(tmp_path: Path, **changes: object) -> Settings:
    """Settings for building an app that is never called: nothing here opens the database."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'never-opened.db'}",
        environment=Environment.test,
        secret_key=TEST_SECRET,
        public_base_url="http://testserver",
        data_dir=str(tmp_path / "data"),
        _env_file=None,  # type: ignore[call-arg]
    ).model_copy(update=changes)


@pytest.mark.parametrize(
    ("route_class", "path"),
    [
        (ApiRoute, "/api/v1/rounds/{round_id}/unlisted"),
        (ConsoleRoute, "/console/unlisted"),
        (ReviewRoute, "/t/{token}/unlisted"),
        (PublicRoute, "/unlisted"),
    ],
)
def test_a_route_missing_from_the_table_is_not_built(route_class: type, path: str) -> None:
    router = APIRouter(route_class=route_class)
    with pytest.raises(access.NotInAccessTable, match=re.escape(f"GET {path} is not in the access table")):

        @router.get(path)
        async def unlisted() -> None: ...


def test_a_line_naming_no_route_stops_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACCESS, ("GET", "/api/v1/forgotten"), access.READERS)
    with pytest.raises(
        access.AccessTableMismatch, match=re.escape("GET /api/v1/forgotten is in the access table")
    ):
        create_app(offline_settings(tmp_path))


def test_a_route_served_elsewhere_than_its_line_or_unenforced_stops_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(offline_settings(tmp_path))
    again = APIRouter(route_class=PublicRoute)
    again.add_api_route("/healthz", lambda: {"status": "ok"})
    app.include_router(again, prefix="/v2")  # served at /v2/healthz, checked as /healthz
    monkeypatch.setitem(ACCESS, ("GET", "/plain"), ANYONE)
    app.add_api_route("/plain", lambda: None)  # the framework's own route class, enforcing nothing
    with pytest.raises(access.AccessTableMismatch) as refused:
        access.check(app, production=False)
    assert "GET /v2/healthz is served but not in the access table" in str(refused.value)
    assert "GET /plain is served by a route class that enforces nothing" in str(refused.value)


def test_route_classes_refuse_lines_they_cannot_enforce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACCESS, ("GET", "/api/v1/for-links"), access.LINK_HOLDER)
    monkeypatch.setitem(ACCESS, ("GET", "/t/no-token-here"), access.LINK_HOLDER)
    monkeypatch.setitem(ACCESS, ("GET", "/signed-in-only"), access.READERS)
    for route_class, path in [
        (ApiRoute, "/api/v1/for-links"),
        (ReviewRoute, "/t/no-token-here"),
        (PublicRoute, "/signed-in-only"),
    ]:
        with pytest.raises(TypeError, match=re.escape(path)):
            APIRouter(route_class=route_class).add_api_route(path, lambda: None)


def test_a_page_route_reads_its_form_as_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A form field read on its own would escape the CSRF check that comes with reading the form."""
    monkeypatch.setitem(ACCESS, ("POST", "/console/loose-field"), access.CHANGERS)
    monkeypatch.setitem(ACCESS, ("POST", "/console/one-model"), access.CHANGERS)
    router = APIRouter(route_class=ConsoleRoute)

    async def loose(title: Annotated[str, Form()] = "") -> None: ...

    async def one_model(form: Submitted[CsrfForm]) -> None: ...

    with pytest.raises(TypeError, match="read the form as one FormModel"):
        router.add_api_route("/console/loose-field", loose, methods=["POST"])
    router.add_api_route("/console/one-model", one_model, methods=["POST"])
    (route,) = router.routes
    assert route.dependant.dependencies[0].call.__name__ == "check_form"  # type: ignore[attr-defined]


def test_in_production_the_app_serves_the_table_but_the_dev_mailbox(tmp_path: Path) -> None:
    settings = offline_settings(
        tmp_path,
        environment=Environment.production,
        secret_key="production-secret-0123456789-abcdefghij",
        public_base_url="https://consultations.gov.example",
    )
    app = create_app(settings)
    assert served_operations(app) == set(ACCESS) - DEVELOPMENT_ONLY
    assert {("GET", "/dev/mail"), ("POST", "/dev/mail/clear"), ("GET", "/dev/mail/{key}")} == DEVELOPMENT_ONLY
