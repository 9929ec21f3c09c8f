"""The new-round wizard as a coordinator uses it: choose a version and see only its sections, pick
organisations with their roles and sections, edit or delete the draft, preview what people will get, and
find all of it refused once the round is launched."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from models.enums import Role
from models.users import UserCreate
from services import rounds, users
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import TEST_ACTOR, csrf_of, fixture_path
from tests.web.test_console import (
    COORDINATOR,
    HTML,
    PASSWORD,
    ZONE,
    import_registry,
    sign_in,
    upload_draft,
)

MINISTRY = "ministry-of-interior"
MUNICIPALITY = "municipality-tirane"


@pytest.fixture
async def wizard(db: Database, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A signed-in coordinator's browser with the registry and the draft, and their API headers."""
    async with db.write_session() as session:
        _user, token = await users.create_user(
            session,
            data=UserCreate(email=COORDINATOR, role=Role.coordinator, password=PASSWORD),
            actor=TEST_ACTOR,
        )
    app = create_app(settings.model_copy(update={"timezone": ZONE}), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    ) as client:
        await sign_in(client)
        assert (await import_registry(client)).status_code == 303
        assert (await upload_draft(client)).status_code == 303
        yield client, {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def deadline_in(days: int) -> str:
    return f"{(datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=days)).isoformat()}T17:00"


def wizard_form(page: httpx.Response, **changes: object) -> dict[str, object]:
    version = re.search(r'name="matrix_version" value="(\d+)"', page.text)
    assert version
    form: dict[str, object] = {
        "csrf_token": csrf_of(page),
        "title": "Migration strategy, round 1",
        "purpose": "To agree the strategy before the committee meets.",
        "document_version_id": version.group(1),
        "matrix_version": version.group(1),
        "deadline": deadline_in(28),
        "organisations": [MINISTRY, MUNICIPALITY],
        "role": [f"{MINISTRY}:consulted", f"{MUNICIPALITY}:approver", "ministry-of-finance:approver"],
        "all_sections": [MINISTRY],
        "sections": [f"{MUNICIPALITY}:4", f"{MUNICIPALITY}:5", "ministry-of-finance:1"],
        "cover_message": "Please answer before the committee meets on Friday.",
        "contact_name": "Technical secretariat",
        "contact_email": "secretariat@migration.example",
        "action": "save",
    }
    return {**form, **changes}


async def create(client: httpx.AsyncClient, **changes: object) -> int:
    page = await client.get("/console/rounds/new")
    created = await client.post("/console/rounds", data=wizard_form(page, **changes))  # type: ignore[arg-type]
    assert created.status_code == 303, created.text
    found = re.fullmatch(r"/console/rounds/(\d+)\?done=created", created.headers["location"])
    assert found
    return int(found.group(1))


async def tasks_of(
    client: httpx.AsyncClient, api: dict[str, str], round_id: int
) -> dict[str, tuple[str, list[str]]]:
    answer = await client.get(f"/api/v1/rounds/{round_id}", headers=api)
    assert answer.status_code == 200, answer.text
    return {
        task["organisation_key"]: (task["role"], task["section_numbers"]) for task in answer.json()["tasks"]
    }


async def test_only_the_chosen_versions_sections_are_shown(
    wizard: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _api = wizard
    documents = await client.get("/console/documents")
    action = re.search(r'action="(/console/documents/\d+/versions)"', documents.text).group(1)  # type: ignore[union-attr]
    revised = (
        fixture_path("draft-migration-governance-strategy.md").read_bytes() + b"\n\n## 13. Review\n\nNew.\n"
    )
    added = await client.post(
        action,
        data={"csrf_token": csrf_of(documents)},
        files={"file": ("revised.md", revised, "text/markdown")},
    )
    assert added.status_code == 303

    page = await client.get("/console/rounds/new")
    assert page.status_code == 200
    # The newest version is chosen; the other's section list is there for the script, hidden.
    groups = re.findall(r'<div class="version-sections" data-version="(\d+)"( hidden)?>', page.text)
    assert len(groups) == 2
    assert [hidden for _version, hidden in groups] == ["", " hidden"]
    chosen = groups[0][0]
    assert f'name="matrix_version" value="{chosen}"' in page.text
    # The matrix has a box per organisation and section of that version only (14 sections).
    organisations = re.findall(r'name="organisations" value="([^"]+)"', page.text)
    assert len(organisations) == 88
    cells = re.findall(r'name="sections" value="([^":]+):([^"]+)"', page.text)
    assert Counter(key for key, _number in cells) == dict.fromkeys(organisations, 14)
    assert "13. Review" in page.text
    # Every "All sections" box ticked, no organisation ticked, ministries approving by default.
    assert page.text.count('data-all-sections aria-label="All sections for') == 88
    assert len(re.findall(r"data-all-sections aria-label=\"[^\"]+\" checked", page.text)) == 88
    assert "data-consult checked" not in page.text
    assert f'<option value="{MINISTRY}:approver" selected>' in page.text
    assert f'<option value="{MUNICIPALITY}:consulted" selected>' in page.text
    # No duplicate ids; no inline script; the stylesheet makes `hidden` win over display rules.
    ids = re.findall(r'\sid="([^"]+)"', page.text)
    assert [name for name, count in Counter(ids).items() if count > 1] == []
    assert "<script>" not in page.text
    assert '<script src="/static/new_round.js"' in page.text
    css = (await client.get("/static/style.css")).text
    assert re.search(r"\[hidden\]\s*\{\s*display:\s*none\s*!important;?\s*\}", css)
    assert (await client.get("/static/new_round.js")).status_code == 200

    # Without JavaScript: choosing the older version and pressing Update shows its sections (13).
    older = re.findall(r'<option value="(\d+)"', page.text)[-1]
    updated = await client.post(
        "/console/rounds",
        data=wizard_form(page, document_version_id=older, action="update"),  # type: ignore[arg-type]
    )
    assert updated.status_code == 200
    assert f'name="matrix_version" value="{older}"' in updated.text
    assert len(re.findall(rf'name="sections" value="{MINISTRY}:', updated.text)) == 13
    assert 'value="Migration strategy, round 1"' in updated.text  # what was typed is kept
    assert "Working days from today to the deadline:" in updated.text


async def test_roles_and_the_matrix_become_the_tasks_and_the_draft_can_be_edited_and_deleted(
    wizard: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, api = wizard
    round_id = await create(client)
    tasks = await tasks_of(client, api, round_id)
    assert tasks[MINISTRY][0] == "consulted"
    assert len(tasks[MINISTRY][1]) == 13
    assert tasks[MUNICIPALITY] == ("approver", ["4", "5"])
    assert set(tasks) == {MINISTRY, MUNICIPALITY}  # a role or section of an unticked one counts for nothing
    detail = (await client.get(f"/api/v1/rounds/{round_id}", headers=api)).json()
    assert detail["cover_message"] == "Please answer before the committee meets on Friday."
    assert detail["contact_email"] == "secretariat@migration.example"
    assert detail["purpose"].startswith("To agree")

    edit = await client.get(f"/console/rounds/{round_id}/edit")
    assert edit.status_code == 200
    assert 'value="Migration strategy, round 1"' in edit.text
    assert f'value="{MUNICIPALITY}:4" checked' in edit.text
    assert f'value="{MUNICIPALITY}" data-all-sections' in edit.text
    assert f'<option value="{MUNICIPALITY}:approver" selected>' in edit.text
    assert f'action="/console/rounds/{round_id}/delete"' in edit.text

    changed = await client.post(
        f"/console/rounds/{round_id}/edit",
        data=wizard_form(  # type: ignore[arg-type]
            edit,
            title="Migration strategy, round 1 (revised)",
            organisations=[MUNICIPALITY, "ministry-of-finance"],
            role=[f"{MUNICIPALITY}:consulted", "ministry-of-finance:approver"],
            all_sections=[MUNICIPALITY],
            sections=["ministry-of-finance:1", "ministry-of-finance:2"],
        ),
    )
    assert (changed.status_code, changed.headers["location"]) == (
        303,
        f"/console/rounds/{round_id}?done=updated",
    )
    tasks = await tasks_of(client, api, round_id)
    assert set(tasks) == {MUNICIPALITY, "ministry-of-finance"}
    assert tasks[MUNICIPALITY][0] == "consulted"
    assert len(tasks[MUNICIPALITY][1]) == 13
    assert tasks["ministry-of-finance"] == ("approver", ["1", "2"])
    assert "The draft round was saved." in (await client.get(changed.headers["location"])).text

    # The API changes only what it is given.
    patched = await client.patch(
        f"/api/v1/rounds/{round_id}", headers=api, json={"roles": {MUNICIPALITY: "approver"}}
    )
    assert patched.status_code == 200, patched.text
    tasks = await tasks_of(client, api, round_id)
    assert tasks[MUNICIPALITY][0] == "approver"
    assert tasks["ministry-of-finance"] == ("approver", ["1", "2"])
    assert (
        await client.patch(f"/api/v1/rounds/{round_id}", headers=api, json={"title": "x"})
    ).status_code == 422
    assert (
        await client.patch("/api/v1/rounds/999999", headers=api, json={"title": "Fine"})
    ).status_code == 404

    page = await client.get(f"/console/rounds/{round_id}/edit")
    deleted = await client.post(f"/console/rounds/{round_id}/delete", data={"csrf_token": csrf_of(page)})
    assert (deleted.status_code, deleted.headers["location"]) == (303, "/console?done=deleted")
    assert "The draft round was deleted." in (await client.get("/console?done=deleted")).text
    assert (await client.get(f"/api/v1/rounds/{round_id}", headers=api)).status_code == 404

    other = await create(client)
    assert (await client.delete(f"/api/v1/rounds/{other}", headers=api)).status_code == 204
    assert (await client.delete(f"/api/v1/rounds/{other}", headers=api)).status_code == 404


async def test_a_launched_round_can_be_neither_edited_nor_deleted(
    db: Database, settings: Settings, wizard: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    client, api = wizard
    round_id = await create(client)
    async with db.write_session() as session:
        assert await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    page = await client.get("/console/rounds/new")
    edit = await client.get(f"/console/rounds/{round_id}/edit")
    assert edit.status_code == 409
    assert "can no longer be edited or deleted" in edit.text
    posted = await client.post(
        f"/console/rounds/{round_id}/edit",
        data=wizard_form(page, title="Too late to change"),  # type: ignore[arg-type]
    )
    assert posted.status_code == 409
    deleted = await client.post(f"/console/rounds/{round_id}/delete", data={"csrf_token": csrf_of(page)})
    assert deleted.status_code == 409
    patched = await client.patch(f"/api/v1/rounds/{round_id}", headers=api, json={"title": "Too late"})
    assert patched.status_code == 409
    assert (await client.delete(f"/api/v1/rounds/{round_id}", headers=api)).status_code == 409
    detail = (await client.get(f"/api/v1/rounds/{round_id}", headers=api)).json()
    assert (detail["title"], detail["status"]) == ("Migration strategy, round 1", "open")


async def test_the_previews_show_the_invitation_in_each_language_and_the_assigned_sections(
    wizard: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _api = wizard
    round_id = await create(client)
    english = await client.get(f"/console/rounds/{round_id}/preview/invitation?language=en")
    assert english.status_code == 200, english.text
    assert "Consultation invitation: Migration strategy, round 1" in english.text
    assert "Please answer before the committee meets on Friday." in english.text
    assert "http://testserver/t/EXAMPLE-LINK-PREVIEW-ONLY" in english.text
    assert '<iframe class="email-frame"' in english.text
    assert 'sandbox=""' in english.text
    assert english.headers["content-language"] == "en"  # the console stays in English
    albanian = await client.get(f"/console/rounds/{round_id}/preview/invitation?language=sq")
    assert albanian.status_code == 200
    assert "Ftesë për konsultim: Migration strategy, round 1" in albanian.text
    assert "Please answer before the committee meets on Friday." in albanian.text
    assert (await client.get(f"/console/rounds/{round_id}/preview/invitation?language=de")).status_code == 404

    review = await client.get(f"/console/rounds/{round_id}/preview/review?organisation={MUNICIPALITY}")
    assert review.status_code == 200
    assert re.findall(r'data-section-number="([^"]+)"', review.text) == ["4", "5"]
    # As the organisation will see it: in its language (the municipality reads Albanian), marked a preview.
    assert '<html lang="sq">' in review.text
    assert "<strong>Paraparje.</strong>" in review.text
    assert re.findall(r'<form method="post" action="([^"]+)"', review.text) == ["/console/logout"]
    whole = await client.get(f"/console/rounds/{round_id}/preview/review?organisation={MINISTRY}")
    assert len(re.findall(r'data-section-number="', whole.text)) == 13
    missing = await client.get(f"/console/rounds/{round_id}/preview/review?organisation=nobody")
    assert missing.status_code == 404


async def test_refused_input_comes_back_with_what_was_typed(
    wizard: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _api = wizard
    page = await client.get("/console/rounds/new")
    nobody = await client.post(
        "/console/rounds",
        data=wizard_form(page, organisations=[], title="Nobody to ask"),  # type: ignore[arg-type]
    )
    assert nobody.status_code == 422
    assert "Tick at least one organisation to consult." in nobody.text
    assert 'value="Nobody to ask"' in nobody.text
    assert "Please answer before the committee meets on Friday.</textarea>" in nobody.text

    bad = await client.post("/console/rounds", data=wizard_form(page, deadline="next tuesday"))  # type: ignore[arg-type]
    assert bad.status_code == 422
    assert 'value="next tuesday"' in bad.text
    assert f'value="{MUNICIPALITY}" data-consult checked' in bad.text
    assert f'value="{MUNICIPALITY}:4" checked' in bad.text

    short = await client.post("/console/rounds", data=wizard_form(page, deadline=deadline_in(3)))  # type: ignore[arg-type]
    assert short.status_code == 422
    assert "minimum_period_reason" in short.text
    warning = re.search(
        r'<div class="panel panel-warn" data-period-warning role="status"( hidden)?>', short.text
    )
    assert warning
    assert warning.group(1) is None

    for changes in [
        {"all_sections": [], "sections": []},
        {"role": [f"{MINISTRY}:boss"]},
        {"contact_email": "not an address"},
        {"document_version_id": "999999"},
        {"matrix_version": "999999", "all_sections": []},
        {"reminder_days": "soon"},
        {"grace_period_hours": "many"},
    ]:
        response = await client.post("/console/rounds", data=wizard_form(page, **changes))  # type: ignore[arg-type]
        assert 400 <= response.status_code < 500, (changes, response.status_code)
        assert "Not saved." in response.text, changes
