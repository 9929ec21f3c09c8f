"""The JSON API under /api/v1: authentication and roles, the registry, drafts, rounds, audit, health.

Most tests need no scheduler: the app is built on the test's database with a Temporal address nobody
listens on. Launching, which starts a round's scheduler, runs on the real stack.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, func, select
from temporalio.service import RPCError

from models.audit import AuditEvent
from models.documents import Section
from models.enums import Role
from models.organisations import Organisation
from models.rounds import ReviewTask, Round
from services.audit import browse, verify
from services.db import Database
from services.settings import Settings
from services.web.access import ACCESS, CHANGERS, Caller
from services.web.app import create_app
from tests.conftest import Stack
from tests.harness import create_account, eventually, fixture_path, free_port
from workflows.client import round_workflow_id

API = "/api/v1"
REGISTRY = fixture_path("stakeholders-albania.csv").read_bytes()
DRAFT_MD = fixture_path("draft-migration-governance-strategy.md").read_bytes()
DRAFT_DOCX = fixture_path("draft-migration-governance-strategy.docx").read_bytes()
SECTION_NUMBERS = [str(number) for number in range(1, 13)] + ["Annex 1"]


class Api:
    def __init__(
        self,
        app: FastAPI,
        http: httpx.AsyncClient,
        db: Database,
        coordinator: dict[str, str],
        auditor: dict[str, str],
        admin: dict[str, str],
    ) -> None:
        self.app = app
        self.http = http
        self.db = db
        self.coordinator = coordinator
        self.auditor = auditor
        self.admin = admin

    async def import_registry(self, content: bytes = REGISTRY) -> httpx.Response:
        return await self.http.post(
            f"{API}/organisations/import",
            files={"file": ("registry.csv", content, "text/csv")},
            headers=self.coordinator,
        )

    async def upload(self, content: bytes = DRAFT_MD, name: str = "draft.md", **data: str) -> httpx.Response:
        return await self.http.post(
            f"{API}/documents",
            files={"file": (name, content, "application/octet-stream")},
            data=data,
            headers=self.coordinator,
        )

    async def version_id(self) -> int:
        response = await self.upload(title="Migration governance strategy")
        assert response.status_code == 201, response.text
        return int(response.json()["versions"][0]["id"])

    async def create_round(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(f"{API}/rounds", json=body, headers=self.coordinator)


def round_body(version_id: int, **changes: Any) -> dict[str, Any]:
    return {
        "title": "Migration strategy, round 1",
        "document_version_id": version_id,
        "deadline": (datetime.now(UTC) + timedelta(days=21)).isoformat(),
        **changes,
    }


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[Api]:
    # Nobody listens on this port: the app must cope without its scheduler wherever it can.
    settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(settings, db=db)
    coordinator = await create_account(db, "coordinator@secretariat.example", Role.coordinator)
    auditor = await create_account(db, "auditor@audit.example", Role.auditor)
    admin = await create_account(db, "admin@secretariat.example", Role.admin)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield Api(app, http, db, coordinator, auditor, admin)


def assert_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    for word in words:
        assert word in body["detail"] or word in " ".join(body.get("problems", [])), body
    return body


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every JSON API operation, as the app declares them."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(API)
        for method in operations
    ]


def concrete(path: str, values: dict[str, str] | None = None) -> str:
    values = {"key": "ministry-of-interior", "round_id": "1", "document_id": "1", **(values or {})}
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match.group(1), "1"), path)


async def table_count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(model))).one())


# ------------------------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer rt_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "rt_token-without-scheme"],
)
async def test_every_api_route_needs_a_valid_token(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    routes = api_routes(api.app)
    assert len(routes) >= 17
    for method, path in routes:
        response = await api.http.request(method, concrete(path), headers=headers)
        body = assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer", (method, path)
        assert body["error"] == "unauthorized"
        # A broken body does not get past the missing token either.
        if method in ("POST", "PATCH"):
            broken = await api.http.request(
                method,
                concrete(path),
                content=b"{not json",
                headers={**headers, "Content-Type": "application/json"},
            )
            assert_error(broken, 401)


async def test_a_revoked_or_disabled_account_gets_401(api: Api) -> None:
    from models.users import Credential, User

    assert (await api.http.get(f"{API}/me", headers=api.coordinator)).json()["role"] == "coordinator"
    async with api.db.write_session() as session:
        user = (await session.exec(select(User).where(User.email == "coordinator@secretariat.example"))).one()
        user.disabled_at = datetime.now(UTC)
        session.add(user)
        await session.commit()
    assert_error(await api.http.get(f"{API}/me", headers=api.coordinator), 401, "disabled")
    async with api.db.write_session() as session:
        for credential in (await session.exec(select(Credential))).all():
            credential.revoked_at = datetime.now(UTC)
            session.add(credential)
        await session.commit()
    assert_error(await api.http.get(f"{API}/me", headers=api.auditor), 401)


async def test_an_auditor_reads_everything_and_changes_nothing(api: Api) -> None:
    assert (await api.import_registry()).status_code == 200
    version_id = await api.version_id()
    created = await api.create_round(round_body(version_id, organisation_keys=["ministry-of-interior"]))
    assert created.status_code == 201, created.text
    round_id = str(created.json()["id"])
    document_id = str((await api.http.get(f"{API}/documents", headers=api.auditor)).json()[0]["id"])
    values = {"round_id": round_id, "document_id": document_id, "key": "ministry-of-interior"}

    # Every write that changes the consultation's data; an auditor's own credentials are theirs to manage
    # (test_account_pages.py), and other people's are the admins' alone.
    writes = [operation for operation in api_routes(api.app) if ACCESS[operation] == CHANGERS]
    expected_writes = {
        ("POST", f"{API}/organisations/import"),
        ("POST", f"{API}/organisations"),
        ("PATCH", f"{API}/organisations/{{key}}"),
        ("DELETE", f"{API}/organisations/{{key}}"),
        ("POST", f"{API}/documents"),
        ("POST", f"{API}/documents/{{document_id}}/versions"),
        ("POST", f"{API}/rounds"),
        ("POST", f"{API}/rounds/{{round_id}}/launch"),
    }
    assert expected_writes <= set(writes)
    events_before = await table_count(api.db, AuditEvent)
    valid_bodies: dict[str, dict[str, Any]] = {
        f"{API}/organisations": {
            "json": {
                "key": "new-org",
                "name_en": "New",
                "kind": "agency",
                "focal_point_email": "fp@new.example",
            }
        },
        f"{API}/organisations/{{key}}": {"json": {"name_en": "Renamed"}},
        f"{API}/organisations/import": {"files": {"file": ("r.csv", REGISTRY, "text/csv")}},
        f"{API}/documents": {"files": {"file": ("d.md", DRAFT_MD, "text/markdown")}},
        f"{API}/documents/{{document_id}}/versions": {"files": {"file": ("d.md", DRAFT_MD, "text/markdown")}},
        f"{API}/rounds": {"json": round_body(version_id)},
    }
    junk: dict[str, Any] = {"content": b"{junk", "headers": {"Content-Type": "application/json"}}
    for method, path in writes:
        for body in (valid_bodies.get(path, {}), junk):
            extra_headers: dict[str, str] = body.get("headers", {})
            kwargs: dict[str, Any] = {name: value for name, value in body.items() if name != "headers"}
            response = await api.http.request(
                method, concrete(path, values), headers={**api.auditor, **extra_headers}, **kwargs
            )
            error = assert_error(response, 403, "auditor")
            assert error["error"] == "forbidden", (method, path)
    assert await table_count(api.db, AuditEvent) == events_before
    async with api.db.session() as session:
        round_ = await session.get(Round, int(round_id))
        organisation = (
            await session.exec(select(Organisation).where(Organisation.key == "ministry-of-interior"))
        ).one()
    assert round_ is not None
    assert round_.status == "draft"
    assert organisation.name_en == "Ministry of Interior"
    assert organisation.archived_at is None

    reads = [
        (method, path)
        for method, path in api_routes(api.app)
        if method == "GET" and Caller.auditor in ACCESS[(method, path)]
    ]
    for _method, path in reads:
        response = await api.http.get(concrete(path, values), headers=api.auditor)
        assert response.status_code == 200, (path, response.text)
    assert (await api.http.get(f"{API}/me", headers=api.auditor)).json()["role"] == "auditor"


# --------------------------------------------------------------------------------------- registry


async def test_importing_the_registry_twice(api: Api) -> None:
    first = await api.import_registry()
    assert first.status_code == 200, first.text
    assert first.json()["created"] == 88
    assert first.json()["updated"] == 0
    second = await api.import_registry()
    assert second.status_code == 200
    assert second.json()["created"] == 0
    assert second.json()["updated"] == 0
    assert await table_count(api.db, Organisation) == 88
    listed = (await api.http.get(f"{API}/organisations", headers=api.auditor)).json()
    assert len(listed) == 88
    assert {"ministry-of-interior", "municipality-tirane"} <= {o["key"] for o in listed}


async def test_a_registry_with_two_bad_rows_imports_nothing(api: Api) -> None:
    lines = REGISTRY.decode().splitlines()
    lines[3] = lines[3].replace("ministry,", "ministerium,", 1)  # line 4: unknown kind
    lines[10] = re.sub(r",[^,@]+@[^,]+,", ",not-an-email,", lines[10], count=1)  # line 11: bad email
    response = await api.import_registry(("\n".join(lines) + "\n").encode())
    body = assert_error(response, 422, "line 4", "line 11")
    assert "nothing was imported" in body["detail"]
    assert await table_count(api.db, Organisation) == 0
    assert await table_count(api.db, AuditEvent) == 3  # the three accounts only


async def test_organisations_one_at_a_time(api: Api) -> None:
    body = {
        "key": "agency-for-returns",
        "name_en": "Agency for Returns",
        "kind": "agency",
        "focal_point_email": "fp@returns.gov.example",
    }
    created = await api.http.post(f"{API}/organisations", json=body, headers=api.coordinator)
    assert created.status_code == 201, created.text
    assert_error(await api.http.post(f"{API}/organisations", json=body, headers=api.coordinator), 409)
    patched = await api.http.patch(
        f"{API}/organisations/agency-for-returns", json={"name_sq": "Agjencia"}, headers=api.coordinator
    )
    assert patched.status_code == 200
    assert patched.json()["name_sq"] == "Agjencia"
    assert_error(await api.http.get(f"{API}/organisations/nobody", headers=api.auditor), 404)
    deleted = await api.http.delete(f"{API}/organisations/agency-for-returns", headers=api.coordinator)
    assert deleted.status_code == 204
    assert (await api.http.get(f"{API}/organisations", headers=api.auditor)).json() == []


# ----------------------------------------------------------------------------------------- drafts


@pytest.mark.parametrize(("name", "content"), [("draft.md", DRAFT_MD), ("draft.docx", DRAFT_DOCX)])
async def test_uploading_a_draft_gives_its_sections(api: Api, name: str, content: bytes) -> None:
    response = await api.upload(content, name, title="Migration governance strategy")
    assert response.status_code == 201, response.text
    (version,) = response.json()["versions"]
    sections = version["sections"]
    assert [section["number"] for section in sections] == SECTION_NUMBERS
    assert all({"id", "number", "heading", "sha256"} <= set(section) for section in sections)
    assert sections[3]["heading"] == "Labour migration"
    async with api.db.session() as session:
        rows = {row.id: row for row in (await session.exec(select(Section))).all()}
    for section in sections:
        assert section["sha256"] == rows[section["id"]].sha256
        assert re.fullmatch(r"[0-9a-f]{64}", section["sha256"])
    fetched = await api.http.get(f"{API}/documents/{response.json()['id']}", headers=api.auditor)
    assert fetched.json() == response.json()


@pytest.mark.parametrize(
    ("name", "content", "status", "words"),
    [
        ("draft.md", bytes(range(256)) * 40, 422, ["UTF-8"]),
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, 422, ["photo.png"]),
        ("draft.docx", b"PK\x03\x04 this is not a zip archive", 422, ["Word"]),
        ("draft.docx", DRAFT_MD, 422, ["Word"]),
        ("draft.md", b"", 422, ["empty"]),
        ("draft.md", b"x" * (10 * 1024 * 1024 + 1), 413, ["MB"]),
        ("draft", DRAFT_MD, 422, []),
    ],
)
async def test_an_unusable_upload_is_refused(
    api: Api, name: str, content: bytes, status: int, words: list[str]
) -> None:
    response = await api.upload(content, name)
    assert_error(response, status, *words)
    assert (await api.http.get(f"{API}/documents", headers=api.auditor)).json() == []


async def test_a_revision_becomes_version_2(api: Api) -> None:
    response = await api.upload(title="Strategy")
    document_id = response.json()["id"]
    revised = DRAFT_MD.replace(b"30 days", b"20 days")
    added = await api.http.post(
        f"{API}/documents/{document_id}/versions",
        files={"file": ("v2.md", revised, "text/markdown")},
        headers=api.coordinator,
    )
    assert added.status_code == 201, added.text
    first, second = added.json()["versions"]
    assert (first["number"], second["number"]) == (1, 2)
    changed = [
        a["number"]
        for a, b in zip(first["sections"], second["sections"], strict=True)
        if a["sha256"] != b["sha256"]
    ]
    assert changed == ["4"]
    missing = await api.http.post(
        f"{API}/documents/999999/versions",
        files={"file": ("v2.md", revised, "text/markdown")},
        headers=api.coordinator,
    )
    assert_error(missing, 404)


# ----------------------------------------------------------------------------------------- rounds


async def test_creating_a_round_for_everyone_or_for_some(api: Api) -> None:
    await api.import_registry()
    version_id = await api.version_id()
    everyone = await api.create_round(round_body(version_id))
    assert everyone.status_code == 201, everyone.text
    body = everyone.json()
    assert body["status"] == "draft"
    assert body["launched_at"] is None
    assert len(body["tasks"]) == 88
    assert body["counts"]["organisations"] == 88
    assert {task["status"] for task in body["tasks"]} == {"pending"}
    assert all(task["section_numbers"] == SECTION_NUMBERS for task in body["tasks"])

    some = await api.create_round(
        round_body(
            version_id,
            organisation_keys=["ministry-of-interior", "municipality-tirane"],
            section_numbers=["4", "Annex 1"],
            assignments={"municipality-tirane": ["5"]},
        )
    )
    assert some.status_code == 201, some.text
    tasks = {task["organisation_key"]: task for task in some.json()["tasks"]}
    assert set(tasks) == {"ministry-of-interior", "municipality-tirane"}
    assert tasks["ministry-of-interior"]["section_numbers"] == ["4", "Annex 1"]
    assert tasks["municipality-tirane"]["section_numbers"] == ["5"]
    assert tasks["ministry-of-interior"]["role"] == "approver"  # ministries approve by default
    assert tasks["municipality-tirane"]["role"] == "consulted"
    assert some.json()["clearance"]["cleared"] is False
    assert "Ministry of Interior has not approved yet (pending)." in some.json()["clearance"]["blocking"]

    fetched = await api.http.get(f"{API}/rounds/{some.json()['id']}", headers=api.auditor)
    assert fetched.status_code == 200
    assert fetched.json() == some.json()
    listed = (await api.http.get(f"{API}/rounds", headers=api.auditor)).json()
    assert {item["id"] for item in listed} == {body["id"], some.json()["id"]}
    assert await table_count(api.db, ReviewTask) == 90


async def test_a_round_says_who_approves_and_who_is_consulted(api: Api) -> None:
    await api.import_registry()
    version_id = await api.version_id()
    overridden = await api.create_round(
        round_body(
            version_id,
            organisation_keys=["ministry-of-interior", "ministry-of-finance", "municipality-tirane"],
            roles={"ministry-of-finance": "consulted", "municipality-tirane": "approver"},
        )
    )
    assert overridden.status_code == 201, overridden.text
    roles = {task["organisation_key"]: task["role"] for task in overridden.json()["tasks"]}
    assert roles == {
        "ministry-of-interior": "approver",
        "ministry-of-finance": "consulted",
        "municipality-tirane": "approver",
    }


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"deadline": "2031-05-01T17:00:00"}, 422, ["deadline"]),
        ({"deadline": "2020-05-01T17:00:00+02:00"}, 422, ["future"]),
        ({"deadline": "next friday"}, 422, ["deadline"]),
        (
            {"organisation_keys": ["ministry-of-interior", "ministry-of-magic", "no-such-org"]},
            422,
            ["ministry-of-magic", "no-such-org"],
        ),
        ({"section_numbers": ["4", "99"]}, 422, ["99"]),
        ({"assignments": {"ministry-of-magic": ["4"]}}, 422, ["ministry-of-magic"]),
        (
            {"organisation_keys": ["ministry-of-interior"], "roles": {"municipality-tirane": "approver"}},
            422,
            ["municipality-tirane"],
        ),
        ({"roles": {"ministry-of-interior": "chair"}}, 422, ["roles"]),
        ({"document_version_id": 999999}, 404, ["999999"]),
        ({"title": ""}, 422, ["title"]),
        ({"organisation_keys": []}, 422, []),
    ],
)
async def test_a_bad_round_is_refused_and_nothing_is_created(
    api: Api, change: dict[str, Any], status: int, words: list[str]
) -> None:
    await api.import_registry()
    version_id = await api.version_id()
    response = await api.create_round(round_body(version_id, **change))
    assert_error(response, status, *words)
    assert await table_count(api.db, Round) == 0
    assert await table_count(api.db, ReviewTask) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"",
        b"[]",
        b"null",
        b'"text"',
        b'{"title": 1e999999}',
        '{"title": "\udcff"}'.encode("utf-8", "surrogatepass"),
    ],
)
async def test_a_malformed_round_body_gets_422(api: Api, content: bytes) -> None:
    response = await api.http.post(
        f"{API}/rounds", content=content, headers={**api.coordinator, "Content-Type": "application/json"}
    )
    assert_error(response, 422)


async def test_reading_an_unknown_round_gets_404(api: Api) -> None:
    for path in (
        "/rounds/424242",
        "/rounds/424242/sign-offs",
        "/rounds/424242/comments",
        "/documents/424242",
    ):
        assert_error(await api.http.get(API + path, headers=api.auditor), 404)
    assert_error(await api.http.get(f"{API}/rounds/not-a-number", headers=api.auditor), 422)
    assert_error(await api.http.get(f"{API}/no-such-thing", headers=api.auditor), 404)


async def test_launching_a_round_twice(stack: Stack) -> None:
    with fixture_path("stakeholders-albania.csv").open("rb") as registry:
        await stack.http.post(
            f"{API}/organisations/import",
            files={"file": ("r.csv", registry, "text/csv")},
            headers=stack.coordinator,
        )
    upload = await stack.http.post(
        f"{API}/documents", files={"file": ("d.md", DRAFT_MD, "text/markdown")}, headers=stack.coordinator
    )
    version_id = upload.json()["versions"][0]["id"]
    created = await stack.http.post(
        f"{API}/rounds",
        json=round_body(version_id, organisation_keys=["ministry-of-interior"]),
        headers=stack.coordinator,
    )
    round_id = created.json()["id"]
    # The round's scheduler would run on after the test on the shared Temporal server: stop it.
    try:
        await _launch_twice(stack, round_id)
    finally:
        await _stop_scheduler(stack, round_id)


async def _stop_scheduler(stack: Stack, round_id: int) -> None:
    with contextlib.suppress(RPCError):
        await stack.client.get_workflow_handle(round_workflow_id(stack.settings, round_id)).terminate(
            reason="test cleanup"
        )


async def _launch_twice(stack: Stack, round_id: int) -> None:
    assert_error(await stack.http.post(f"{API}/rounds/{round_id}/launch", headers=stack.auditor), 403)
    assert_error(await stack.http.post(f"{API}/rounds/424242/launch", headers=stack.coordinator), 404)
    first = await stack.http.post(f"{API}/rounds/{round_id}/launch", headers=stack.coordinator)
    second = await stack.http.post(f"{API}/rounds/{round_id}/launch", headers=stack.coordinator)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert (first.json()["launched"], second.json()["launched"]) == (True, False)
    assert first.json()["workflow_id"] == round_workflow_id(stack.settings, round_id)
    detail = await eventually(
        lambda: stack.http.get(f"{API}/rounds/{round_id}", headers=stack.auditor),
        lambda response: response.json()["status"] == "open" and response.json()["counts"]["invited"] == 1,
    )
    assert detail.json()["launched_at"] is not None
    launched = await stack.http.get(
        f"{API}/audit/events",
        params={"round_id": round_id, "action": "round.launched"},
        headers=stack.auditor,
    )
    assert len(launched.json()["events"]) == 1


# ------------------------------------------------------------------------------------------ audit


async def test_the_audit_trail_pages_and_exports_a_verifiable_chain(api: Api) -> None:
    await api.import_registry()
    version_id = await api.version_id()
    round_ids = []
    for _ in range(3):
        response = await api.create_round(round_body(version_id, organisation_keys=["ministry-of-interior"]))
        round_ids.append(response.json()["id"])

    seen: list[dict[str, Any]] = []
    after = 0
    pages = 0
    while True:
        page = await api.http.get(
            f"{API}/audit/events", params={"after_seq": after, "limit": 2}, headers=api.auditor
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(body["events"])
        pages += 1
        if body["next_after_seq"] is None:
            break
        assert body["next_after_seq"] == body["events"][-1]["seq"]
        after = body["next_after_seq"]
    total = await table_count(api.db, AuditEvent)
    assert [event["seq"] for event in seen] == list(range(1, total + 1))
    assert pages == (total + 1) // 2 + (1 if total % 2 == 0 else 0) or pages == -(-total // 2)

    only = await api.http.get(f"{API}/audit/events", params={"round_id": round_ids[1]}, headers=api.auditor)
    (created,) = only.json()["events"]
    assert created["action"] == "round.created"
    assert created["round_id"] == round_ids[1]
    assert created["actor"]["email"] == "coordinator@secretariat.example"
    assert_error(await api.http.get(f"{API}/audit/events", params={"limit": 0}, headers=api.auditor), 422)
    assert_error(
        await api.http.get(f"{API}/audit/events", params={"after_seq": "x"}, headers=api.auditor), 422
    )

    export = await api.http.get(f"{API}/audit/export", headers=api.auditor)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = export.text.splitlines()
    assert len(lines) == total
    result = verify.verify_lines(lines)
    assert result.ok, result.describe()
    assert result.events == total
    # The check is real: one changed character fails it.
    tampered = [*lines]
    (index,) = [n for n, line in enumerate(tampered) if f'"round_id":{round_ids[1]},' in line]
    tampered[index] = tampered[index].replace(
        '"Migration strategy, round 1"', '"Migration strategy, round 9"'
    )
    assert tampered[index] != lines[index]
    assert not verify.verify_lines(tampered).ok


async def test_the_audit_head_is_the_last_event_and_a_later_export_still_reaches_it(api: Api) -> None:
    heads = []
    for headers in (api.coordinator, api.auditor, api.admin):
        response = await api.http.get(f"{API}/audit/head", headers=headers)
        assert response.status_code == 200, response.text
        heads.append(response.json())
    noted = heads[0]
    assert heads == [noted] * 3  # reading it records nothing
    assert set(noted) == {"seq", "hash"}
    assert noted["seq"] == await table_count(api.db, AuditEvent) == 3  # the three accounts
    assert re.fullmatch(r"[0-9a-f]{64}", noted["hash"])
    export = (await api.http.get(f"{API}/audit/export", headers=api.auditor)).text.splitlines()
    last = json.loads(export[-1])
    assert (last["seq"], last["hash"]) == (noted["seq"], noted["hash"])

    # Later: more events; the head moves on, and the new export still passes through the noted event.
    await api.import_registry()
    moved = (await api.http.get(f"{API}/audit/head", headers=api.auditor)).json()
    assert moved["seq"] > noted["seq"]
    assert moved["hash"] != noted["hash"]
    lines = (await api.http.get(f"{API}/audit/export", headers=api.auditor)).text.splitlines()
    assert verify.verify_lines(lines).ok
    (at_noted,) = [json.loads(line) for line in lines if json.loads(line)["seq"] == noted["seq"]]
    assert at_noted["hash"] == noted["hash"]
    assert json.loads(lines[-1])["hash"] == moved["hash"]

    spec = (await api.http.get("/openapi.json")).json()["paths"][f"{API}/audit/head"]["get"]
    assert "roundtable audit verify FILE --head SEQ:HASH" in spec["description"]


DOWNLOADS = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/pdf",
    "text/html",
)


def test_routers_define_no_dependency_aliases_and_no_schemas() -> None:
    """Dependency aliases live in services/web/deps.py, response schemas in models/."""
    web = Path(__file__).parents[2] / "services" / "web"
    offenders = []
    for source in sorted(web.rglob("*.py")):
        if source.name == "deps.py":
            continue
        text = source.read_text()
        if "Annotated[" in text:
            offenders.append(f"{source.relative_to(web)}: Annotated")
        if re.search(r"^class \w+\((BaseModel|SQLModel)\b", text, re.MULTILINE):
            offenders.append(f"{source.relative_to(web)}: schema class")
    assert offenders == []


# ----------------------------------------------------------------------------------------- health


async def test_health_readiness_and_the_spec(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["temporal"].startswith("unreachable")
    assert ready.json()["status"] == "not ready"

    spec = (await api.http.get("/openapi.json")).json()
    for path, method in [
        ("/organisations/import", "post"),
        ("/organisations", "get"),
        ("/organisations", "post"),
        ("/organisations/{key}", "patch"),
        ("/organisations/{key}", "delete"),
        ("/documents", "post"),
        ("/rounds", "post"),
        ("/rounds/{round_id}", "get"),
        ("/rounds/{round_id}/launch", "post"),
        ("/rounds/{round_id}/sign-offs", "get"),
        ("/audit/events", "get"),
        ("/audit/export", "get"),
        ("/audit/head", "get"),
        ("/me", "get"),
    ]:
        assert method in spec["paths"][API + path], (method, path)
    assert "/t/{token}" not in spec["paths"]
    assert any(scheme.get("scheme") == "bearer" for scheme in spec["components"]["securitySchemes"].values())


async def test_readiness_reports_an_unreachable_database(settings: Settings) -> None:
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = settings.model_copy(
        update={"database_url": gone, "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    app = create_app(settings, db=Database(gone))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        ready = await http.get("/readyz")
        assert (await http.get("/healthz")).status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unreachable: ")
    assert ready.json()["checks"]["temporal"].startswith("unreachable: ")


async def test_readiness_on_the_real_stack(stack: Stack) -> None:
    ready = await stack.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}


# --------------------------------------------------------------------------------- junk, no 5xx

JUNK_JSON: list[bytes] = [
    b"",
    b"{",
    b"null",
    b"[]",
    b"[1, 2, 3]",
    b'"just a string"',
    b"12345678901234567890123456789",
    b'{"title": null, "document_version_id": "x", "deadline": 5}',
    b'{"title": "' + b"A" * 100_000 + b'", "document_version_id": 1, "deadline": "2999-01-01T00:00:00Z"}',
    b'{"document_version_id": 99999999999999999999999, "title": "abc", "deadline": "2999-01-01T00:00:00Z"}',
    b'{"document_version_id": -1, "title": "abc", "deadline": "9999-12-31T23:59:59+14:00"}',
    b'{"key": "../../etc", "name_en": "\\u0000", "kind": "ministry", "focal_point_email": "a@b.example"}',
    b'{"key": "ok-key", "name_en": "x", "kind": "ministry", "focal_point_email": "not-an-email"}',
    b'{"organisation_keys": "ministry-of-interior", "title": "abc", "document_version_id": 1, '
    b'"deadline": "2999-01-01T00:00:00Z"}',
    b'{"assignments": {"ministry-of-interior": "4"}, "title": "abc", "document_version_id": 1, '
    b'"deadline": "2999-01-01T00:00:00Z"}',
    b'{"name_en": "", "kind": "spaceship", "language": "xx", "focal_point_email": null}',
    b'{"key": "nul-key", "name_en": "a\\u0000b", "kind": "ministry", "focal_point_email": "a@b.example"}',
    b'{"title": "nul \\u0000 title", "document_version_id": 1, "deadline": "2999-01-01T00:00:00Z"}',
    '{"title": "\u202e\U0001f600 ünïcødé", "document_version_id": 1, '.encode()
    + b'"deadline": "2999-01-01T00:00:00Z"}',
]
JUNK_FILES: list[tuple[str, bytes, str]] = [
    ("", b"", "application/octet-stream"),
    ("x.csv", b"\xff\xfe\x00\x00", "text/csv"),
    ("x.csv", b"key,name_en\n" + b'"unterminated\n', "text/csv"),
    ("x.csv", b"\x00" * 1000, "text/csv"),
    ("../../etc/passwd", b"root:x:0:0", "text/plain"),
    ("x.md", b"# Title only\n", "text/markdown"),
    ("x.md", b"## 1. Heading\n\n" + b"1.1 " * 50_000, "text/markdown"),
    ("C:\\Users\\me\\x.docx", b"PK\x05\x06" + b"\x00" * 18, "application/zip"),
    ("x.txt", "## 1. Ünïcødé \u0000\n\n1.1 text\n".encode(), "text/plain"),
]


async def test_junk_to_every_route_never_gets_a_5xx(api: Api) -> None:
    await api.import_registry()
    version_id = await api.version_id()
    created = await api.create_round(round_body(version_id, organisation_keys=["ministry-of-interior"]))
    round_id = str(created.json()["id"])
    path_values = [
        {"round_id": round_id, "document_id": "1", "key": "ministry-of-interior"},
        {"round_id": "999999999999", "document_id": "-1", "key": "no-such-key"},
        {"round_id": "x", "document_id": "1.5", "key": "%00%FF"},
    ]
    failures = []
    checked = 0
    for method, path in api_routes(api.app):
        for values in path_values:
            if path.endswith("/launch") and values["round_id"] == round_id:
                continue  # a real launch needs the scheduler; see test_launching_a_round_twice
            url = concrete(path, values)
            attempts: list[dict[str, Any]] = [
                {"content": body, "headers": {"Content-Type": "application/json"}} for body in JUNK_JSON
            ]
            attempts += [{"files": {"file": item}} for item in JUNK_FILES]
            attempts += [
                {"data": {"title": "x" * 600}, "files": {"file": ("d.md", DRAFT_MD, "text/markdown")}},
                {"files": {"other": ("d.md", DRAFT_MD, "text/markdown")}},
                {
                    "content": b"--boundary\r\nbroken",
                    "headers": {"Content-Type": "multipart/form-data; boundary=b"},
                },
                {"content": b"a=1&b=2", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
                {"params": {"after_seq": "-5", "limit": "100000", "round_id": "x", "kind": "spaceship"}},
            ]
            if method == "GET":
                attempts = [*attempts[-1:], {}]
            for attempt in attempts:
                headers = {**api.admin, **attempt.pop("headers", {})}
                response = await api.http.request(method, url, headers=headers, **attempt)
                checked += 1
                answers_as = ("application/json", "application/x-ndjson")
                if response.status_code < 400 and url.endswith((".xlsx", ".docx", ".pdf", ".html")):
                    answers_as = DOWNLOADS  # a download answers in its format, its refusals in JSON
                if response.status_code == 204:  # deleted (a draft round): nothing to answer with
                    assert response.content == b""
                    continue
                if response.status_code >= 500 or not response.headers["content-type"].startswith(answers_as):
                    failures.append(
                        (method, url[:80], str(attempt)[:120], response.status_code, response.text[:200])
                    )
                elif response.status_code >= 400:
                    body = response.json()
                    if not (isinstance(body.get("error"), str) and isinstance(body.get("detail"), str)):
                        failures.append(
                            (method, url[:80], "error body shape", response.status_code, response.text[:200])
                        )
    assert failures == [], json.dumps(failures, indent=1)
    assert checked > 300
    # Whatever was accepted on the way, the trail is still one intact chain.
    async with api.db.session() as session:
        lines = [line async for line in browse.export_lines(session)]
    assert verify.verify_lines(lines).ok
    async with api.db.session() as session:
        assert (
            await session.exec(select(func.count()).select_from(Round).where(col(Round.status) != "draft"))
        ).one() == 0
