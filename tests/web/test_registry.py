"""The registry as a coordinator keeps it: list, search, filter and page it in the console; import a CSV
or XLSX file after a preview that says what it would change (and the open rounds it reaches); edit an
organisation's contacts. Through the console's forms (no JavaScript) and the API, on real databases."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openpyxl
import pytest
from sqlmodel import col, func, select

from models.audit import AuditEvent
from models.enums import ContactRole, Role
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from services import rounds
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import TEST_ACTOR, create_account, csrf_of, fixture_path, seed_round
from tests.web.test_console import (
    AUDITOR,
    COORDINATOR,
    HTML,
    ZONE,
    confirm_fields,
    create_login,
    sign_in,
    submit,
)

API = "/api/v1"
REGISTRY = fixture_path("stakeholders-albania.csv").read_bytes()
INTERIOR_FP = "migration.fp@ministry-of-interior.gov.example"
INTERIOR_ALT = "migration.alt@ministry-of-interior.gov.example"
NEW_FP = "new.focal@interior.gov.example"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def desk(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on the console (cookies kept), signed in as a coordinator; an auditor can sign in too."""
    await create_login(db, COORDINATOR, Role.coordinator)
    await create_login(db, AUDITOR, Role.auditor)
    app = create_app(settings.model_copy(update={"timezone": ZONE}), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.21", 50123)),
        base_url="http://testserver",
        headers=HTML,
    ) as client:
        await sign_in(client)
        yield client


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The JSON API and a coordinator's token."""
    token = await create_account(db, "registry@secretariat.example", Role.coordinator)
    app = create_app(settings, db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http, token


def with_columns(content: bytes, **columns: str) -> bytes:
    """The CSV with more columns, each the same value on every row."""
    lines = content.decode().splitlines()
    header = lines[0] + "".join(f",{name}" for name in columns)
    values = "".join(f',"{value}"' for value in columns.values())
    return "\n".join([header, *(line + values for line in lines[1:] if line)]).encode() + b"\n"


def workbook(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def registry_rows(content: bytes = REGISTRY) -> list[list[str]]:
    import csv

    return list(csv.reader(io.StringIO(content.decode())))


async def preview(
    client: httpx.AsyncClient, content: bytes, filename: str = "registry.csv", media_type: str = CSV
) -> httpx.Response:
    return await submit(
        client,
        "/console/organisations",
        "/console/organisations/import",
        files={"file": (filename, content, media_type)},
    )


async def confirm(
    client: httpx.AsyncClient, page: httpx.Response, *, change_open_tasks: bool = False
) -> httpx.Response:
    fields = confirm_fields(page)
    if change_open_tasks:
        fields["change_open_tasks"] = "yes"
    return await client.post("/console/organisations/import/confirm", data=fields)


async def count(db: Database, table: Any, *where: Any) -> int:
    async with db.session() as session:
        return (await session.exec(select(func.count()).select_from(table).where(*where))).one()


async def organisation(db: Database, key: str) -> Organisation:
    async with db.session() as session:
        return (await session.exec(select(Organisation).where(Organisation.key == key))).one()


async def import_events(db: Database) -> list[AuditEvent]:
    async with db.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == "organisations.imported")
        return list((await session.exec(query.order_by(col(AuditEvent.seq)))).all())


async def launched_round(db: Database, settings: Settings, keys: list[str]) -> int:
    """A round of these organisations, launched: its tasks open, a link per contact."""
    round_id = await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=7), keys=keys)
    async with db.write_session() as session:
        assert await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    return round_id


async def working_links(db: Database, round_id: int) -> dict[tuple[str, str], AccessLink]:
    """The round's links that work, by (role, address)."""
    async with db.session() as session:
        rows = await session.exec(
            select(AccessLink).where(AccessLink.round_id == round_id, col(AccessLink.revoked_at).is_(None))
        )
        return {(str(link.role), link.email): link for link in rows.all()}


# --------------------------------------------------------------------------------- the list


async def test_the_registry_searches_filters_and_pages(db: Database, desk: httpx.AsyncClient) -> None:
    rows = registry_rows()
    extra = [
        f"municipality-extra-{number:03d},Bashkia Extra {number:03d},,municipality,,"
        f"fp{number}@extra.gov.example,,,sq"
        for number in range(150)
    ]
    content = (
        "\n".join(",".join(f'"{cell}"' for cell in row) for row in rows) + "\n" + "\n".join(extra)
    ).encode()
    page = await preview(desk, content)
    assert (await confirm(desk, page)).status_code == 303

    everyone = await desk.get("/console/organisations")
    assert "238 organisations" in everyone.text
    assert "page 1 of 3" in everyone.text
    assert everyone.text.count('id="organisation-') == 100
    assert 'href="/console/organisations?page=2"' in everyone.text
    last = await desk.get("/console/organisations?page=3")
    assert last.text.count('id="organisation-') == 38
    assert "Previous page" in last.text
    assert "Next page" not in last.text
    beyond = await desk.get("/console/organisations?page=99")
    assert beyond.text.count('id="organisation-') == 38  # past the last page: the last

    for words in [
        "Ministry of Finance",
        "financave",
        "MINISTRY-OF-FINANCE",
        "migration.fp@ministry-of-finance",
    ]:
        found = await desk.get("/console/organisations", params={"q": words})
        assert found.status_code == 200
        assert 'id="organisation-ministry-of-finance"' in found.text, words
        assert found.text.count('id="organisation-') < 10, words

    municipalities = await desk.get("/console/organisations", params={"q": "extra", "kind": "municipality"})
    assert "150 organisations match" in municipalities.text
    assert 'href="/console/organisations?q=extra&amp;page=2&amp;kind=municipality"' not in municipalities.text
    assert "q=extra&amp;kind=municipality&amp;page=2" in municipalities.text
    ministries = await desk.get("/console/organisations", params={"q": "extra", "kind": "ministry"})
    assert "0 organisations match" in ministries.text
    assert "No organisation matches" in ministries.text
    wildcard = await desk.get("/console/organisations", params={"q": "%"})
    assert "No organisation matches" in wildcard.text  # a typed % is looked for as itself
    assert (await desk.get("/console/organisations", params={"kind": "planet"})).status_code == 422
    assert (await desk.get("/console/organisations", params={"q": "x" * 201})).status_code == 422


async def test_an_auditor_reads_the_registry_and_an_organisation_without_forms(
    db: Database, desk: httpx.AsyncClient
) -> None:
    assert (await confirm(desk, await preview(desk, REGISTRY))).status_code == 303
    await desk.post("/console/logout", data={"csrf_token": csrf_of(await desk.get("/console"))})
    await sign_in(desk, AUDITOR)

    for path in ["/console/organisations", "/console/organisations/ministry-of-interior"]:
        page = await desk.get(path)
        assert page.status_code == 200
        assert re.findall(r'<form method="post" action="([^"]+)"', page.text) == ["/console/logout"]
    assert INTERIOR_FP in (await desk.get("/console/organisations/ministry-of-interior")).text
    token = csrf_of(await desk.get("/console/organisations"))
    for action in [
        "/console/organisations/import/confirm",
        "/console/organisations/ministry-of-interior/contacts",
    ]:
        refused = await desk.post(action, data={"csrf_token": token, "focal_point_email": "x@y.example"})
        assert refused.status_code == 403, action
    assert (await organisation(db, "ministry-of-interior")).focal_point_email == INTERIOR_FP
    assert (await desk.get("/console/organisations/no-such-key")).status_code == 404


# ------------------------------------------------------------------------------- the preview


async def test_a_file_with_unknown_columns_is_previewed_and_nothing_is_saved_until_confirmed(
    db: Database, desk: httpx.AsyncClient
) -> None:
    content = with_columns(REGISTRY, notes="called in May", phone="+355 4 222 2222")

    page = await preview(desk, content, "registry with notes.csv")

    assert page.status_code == 200, page.text
    assert "Nothing has been saved yet" in page.text
    assert re.search(r"ignored:\s*<code>notes</code>, <code>phone</code>", page.text)
    assert re.search(r'<div class="value">88</div><div class="label">organisations to create', page.text)
    assert "ministry-of-interior" in page.text
    assert await count(db, Organisation) == 0
    assert await import_events(db) == []

    done = await confirm(desk, page)

    assert (done.status_code, done.headers["location"]) == (
        303,
        "/console/organisations?created=88&updated=0&unchanged=0",
    )
    assert await count(db, Organisation) == 88
    (event,) = await import_events(db)
    assert event.data["ignored_columns"] == ["notes", "phone"]
    assert event.data["format"] == "csv"


async def test_the_preview_shows_each_change_old_and_new(db: Database, desk: httpx.AsyncClient) -> None:
    await confirm(desk, await preview(desk, REGISTRY))
    changed = REGISTRY.replace(INTERIOR_FP.encode(), NEW_FP.encode()).replace(
        b"Ministria e Financave", b"Ministria e Financave dhe Ekonomise"
    )

    page = await preview(desk, changed)

    assert page.status_code == 200
    assert re.search(r'<div class="value">2</div><div class="label">organisations to update', page.text)
    assert re.search(r'<div class="value">86</div><div class="label">unchanged', page.text)
    interior = re.search(
        r"Ministry of Interior <span[^>]*>ministry-of-interior</span>.*?</tr>", page.text, re.S
    )
    assert interior
    assert INTERIOR_FP in interior.group(0)
    assert NEW_FP in interior.group(0)
    assert "<code>name_sq</code>" in page.text
    assert "Ministria e Financave dhe Ekonomise" in page.text
    assert (await organisation(db, "ministry-of-interior")).focal_point_email == INTERIOR_FP

    done = await confirm(desk, page)
    assert done.headers["location"] == "/console/organisations?created=0&updated=2&unchanged=86"
    assert (await organisation(db, "ministry-of-interior")).focal_point_email == NEW_FP
    event = (await import_events(db))[-1]
    assert event.data["changes"]["ministry-of-interior"] == {
        "focal_point_email": {"old": INTERIOR_FP, "new": NEW_FP}
    }


async def test_an_xlsx_workbook_imports_like_its_csv(db: Database, desk: httpx.AsyncClient) -> None:
    rows: list[list[Any]] = registry_rows()
    rows[0] = [*rows[0], "Notes"]
    rows[1:] = [[*row, None] for row in rows[1:]]
    rows[2][-1] = '=HYPERLINK("http://example.org")'  # in an ignored column: ignored, formula or not

    page = await preview(desk, workbook(rows), "registry.xlsx", XLSX)

    assert page.status_code == 200, page.text
    assert "(XLSX)" in page.text
    assert "<code>notes</code>" in page.text
    assert (await confirm(desk, page)).headers["location"].startswith("/console/organisations?created=88&")
    interior = await organisation(db, "ministry-of-interior")
    assert (interior.name_sq, interior.alternate_email) == ("Ministria e Brendshme", INTERIOR_ALT)
    assert (await import_events(db))[0].data["format"] == "xlsx"


async def test_rejected_lines_are_listed_at_once_and_there_is_nothing_to_confirm(
    db: Database, desk: httpx.AsyncClient
) -> None:
    lines = REGISTRY.decode().splitlines()
    lines[3] = lines[3].replace("migration.fp@", "migration.fp.at.")  # line 4: a bad email
    lines[6] = lines[6].replace(",ministry,", ",ministry-ish,")  # line 7: no such kind
    lines.append(lines[1])  # line 90: the key of line 2 again
    lines.append('=cmd|" /C calc"!A0,Formula,,ministry,,fp@formula.example.org,,,sq')  # line 91
    lines.append("agency-x,+Agency,,agency,,fp@agency-x.example.org,,,sq")  # line 92

    page = await preview(desk, ("\n".join(lines) + "\n").encode())

    assert page.status_code == 422
    assert "5 rows of the file are invalid; nothing was imported" in page.text
    for expected in [
        "line 4: focal_point_email",
        "line 7: kind",
        "line 90: key: &#39;ministry-of-interior&#39; is also on line 2",
        "line 91: key:",
        "line 92: name_en: &#39;+Agency&#39; starts with &#39;+&#39;, as a spreadsheet formula does",
    ]:
        assert expected in page.text, expected
    assert "/console/organisations/import/confirm" not in page.text
    assert await count(db, Organisation) == 0


async def test_hostile_files_get_a_clear_refusal_and_write_nothing(
    db: Database, desk: httpx.AsyncClient
) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"<x>" + b" " * (30 * 1024 * 1024) + b"</x>")
    entity = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook([["key"]]))) as source, zipfile.ZipFile(entity, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>' + data
            target.writestr(item, data)
    cases = [
        ("junk.csv", bytes(range(256)) * 40, 422, "not UTF-8"),
        ("junk.xlsx", b"PK\x03\x04" + bytes(range(256)) * 40, 422, "could not be read as an Excel workbook"),
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, 422, "Excel 97-2003"),
        ("bomb.xlsx", bomb.getvalue(), 422, "zip bomb"),
        ("entity.xlsx", entity.getvalue(), 422, "declares a DTD"),
        (
            "huge.csv",
            b"key,name_en,kind,focal_point_email\n" + b"x" * (10 * 1024 * 1024),
            413,
            "larger than 10 MB",
        ),
        ("header.csv", b"name,email\nMinistry,fp@m.example.org\n", 422, "missing required column"),
        ("empty.csv", b"\n\n", 422, "The file is empty"),
        ("nul.csv", b"key,name_en,kind,focal_point_email\na,\x00,ministry,a@b.example.org\n", 422, "NUL"),
    ]
    for filename, content, status, words in cases:
        page = await preview(desk, content, filename)
        assert page.status_code == status, (filename, page.text[:500])
        assert words in page.text, filename
        assert "Traceback" not in page.text
    assert await count(db, Organisation) == 0
    assert await import_events(db) == []


async def test_a_damaged_or_stale_preview_is_not_applied(db: Database, desk: httpx.AsyncClient) -> None:
    page = await preview(desk, REGISTRY)
    fields = confirm_fields(page)

    damaged = dict(fields, content=[base64.b64encode(REGISTRY.replace(b"Interior", b"Exterior")).decode()])
    refused = await desk.post("/console/organisations/import/confirm", data=damaged)
    assert refused.status_code == 422
    assert "did not come back whole" in refused.text
    assert await count(db, Organisation) == 0

    # Someone else imports part of the registry between the preview and its confirmation.
    other = await preview(desk, b"\n".join(REGISTRY.splitlines()[:3]) + b"\n")
    assert (await confirm(desk, other)).status_code == 303
    stale = await desk.post("/console/organisations/import/confirm", data=fields)
    assert stale.status_code == 409
    assert "changed since this preview was made" in stale.text
    assert re.search(r'<div class="value">86</div><div class="label">organisations to create', stale.text)
    assert await count(db, Organisation) == 2
    assert (await confirm(desk, stale)).headers["location"].startswith("/console/organisations?created=86&")


# ------------------------------------------------------------------------------ open rounds


async def test_an_import_leaves_open_tasks_contacts_unless_confirmed(
    db: Database, settings: Settings, desk: httpx.AsyncClient
) -> None:
    round_id = await launched_round(db, settings, ["ministry-of-interior", "municipality-tirane"])
    changed = REGISTRY.replace(INTERIOR_FP.encode(), NEW_FP.encode())

    page = await preview(desk, changed)

    touched = re.search(r'<section class="console-section" id="open-rounds".*?</section>', page.text, re.S)
    assert touched, "the preview does not say which open rounds the file reaches"
    assert f"#{round_id} Migration strategy, round 1" in touched.group(0)
    assert INTERIOR_FP in touched.group(0)
    assert NEW_FP in touched.group(0)
    assert 'name="change_open_tasks" value="yes"' in page.text
    invitations_before = await count(db, OutboxMessage)

    kept = await confirm(desk, page)

    assert kept.headers["location"] == "/console/organisations?created=0&updated=1&unchanged=87&kept=1"
    assert "left as it was" in (await desk.get(kept.headers["location"])).text
    assert (await organisation(db, "ministry-of-interior")).focal_point_email == NEW_FP
    links = await working_links(db, round_id)
    assert ("focal_point", INTERIOR_FP) in links
    assert ("focal_point", NEW_FP) not in links
    assert await count(db, OutboxMessage) == invitations_before
    assert (await import_events(db))[-1].data["open_tasks"]["changed"] is False


async def test_a_confirmed_import_replaces_open_tasks_contacts_and_invites_the_new_ones(
    db: Database, settings: Settings, desk: httpx.AsyncClient
) -> None:
    round_id = await launched_round(db, settings, ["ministry-of-interior", "municipality-tirane"])
    changed = REGISTRY.replace(INTERIOR_FP.encode(), NEW_FP.encode())

    done = await confirm(desk, await preview(desk, changed), change_open_tasks=True)

    assert done.headers["location"] == "/console/organisations?created=0&updated=1&unchanged=87&replaced=1"
    links = await working_links(db, round_id)
    assert ("focal_point", NEW_FP) in links
    assert ("focal_point", INTERIOR_FP) not in links
    assert ("alternate", INTERIOR_ALT) in links  # unchanged, untouched
    async with db.session() as session:
        revoked = (await session.exec(select(AccessLink).where(AccessLink.email == INTERIOR_FP))).one()
        invitation = (await session.exec(select(OutboxMessage).where(OutboxMessage.to_email == NEW_FP))).one()
        replaced = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "task.contact_replaced"))
        ).one()
    assert revoked.revoked_at is not None
    assert invitation.kind == "invitation"
    assert invitation.round_id == round_id
    assert replaced.data["email"] == NEW_FP
    assert replaced.data["revoked"][0]["email"] == INTERIOR_FP
    (imported,) = [event for event in await import_events(db) if "open_tasks" in event.data]
    assert imported.seq < replaced.seq
    assert imported.data["open_tasks"]["changed"] is True


async def test_editing_contacts_in_the_console(
    db: Database, settings: Settings, desk: httpx.AsyncClient
) -> None:
    round_id = await launched_round(db, settings, ["ministry-of-interior"])
    path = "/console/organisations/ministry-of-interior"
    page = await desk.get(path)
    assert f"#{round_id} Migration strategy, round 1" in page.text
    form = {
        "csrf_token": csrf_of(page),
        "focal_point_name": "Arta Hoxha",
        "focal_point_email": NEW_FP,
        "alternate_name": "",
        "alternate_email": INTERIOR_ALT,
        "escalation_email": "",
        "language": "en",
    }

    bad = await desk.post(f"{path}/contacts", data={**form, "focal_point_email": "arta at interior"})
    assert bad.status_code == 422
    assert "Focal point&#39;s email" in bad.text
    assert 'value="arta at interior"' in bad.text
    empty = await desk.post(f"{path}/contacts", data={**form, "focal_point_email": " "})
    assert empty.status_code == 422
    assert "needs its focal point" in empty.text
    assert (await organisation(db, "ministry-of-interior")).focal_point_email == INTERIOR_FP

    kept = await desk.post(f"{path}/contacts", data=form)
    assert (kept.status_code, kept.headers["location"]) == (303, f"{path}?saved=1&kept=1")
    shown = await desk.get(kept.headers["location"])
    assert "The contacts were saved" in shown.text
    saved = await organisation(db, "ministry-of-interior")
    assert (saved.focal_point_email, saved.focal_point_name, saved.language) == (NEW_FP, "Arta Hoxha", "en")
    assert saved.escalation_email is None
    assert ("focal_point", INTERIOR_FP) in await working_links(db, round_id)

    again = await desk.post(
        f"{path}/contacts", data={**form, "csrf_token": csrf_of(shown), "change_open_tasks": "yes"}
    )
    assert again.headers["location"] == f"{path}?saved=0"  # the registry has these already: nothing to do

    back = await desk.post(
        f"{path}/contacts",
        data={
            **form,
            "csrf_token": csrf_of(shown),
            "focal_point_email": "arta@interior.gov.example",
            "change_open_tasks": "yes",
        },
    )
    assert back.headers["location"] == f"{path}?saved=1&replaced=1"
    links = await working_links(db, round_id)
    assert ("focal_point", "arta@interior.gov.example") in links
    assert ("focal_point", INTERIOR_FP) not in links


# ------------------------------------------------------------------------------------ the API


async def test_the_api_previews_with_dry_run_and_accepts_unknown_columns(
    db: Database, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, token = api
    content = with_columns(REGISTRY, notes="n", phone="p")
    lines = content.decode().splitlines()
    lines[5] = lines[5].replace("@", " at ", 1)
    bad = ("\n".join(lines) + "\n").encode()

    dry = await http.post(
        f"{API}/organisations/import",
        params={"dry_run": "true"},
        files={"file": ("r.csv", bad, CSV)},
        headers=token,
    )
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["dry_run"] is True
    assert body["ignored_columns"] == ["notes", "phone"]
    assert [entry["line"] for entry in body["rejected"]] == [6]
    assert body["created"] == 87
    assert len(body["created_organisations"]) == 87
    assert await count(db, Organisation) == 0

    refused = await http.post(
        f"{API}/organisations/import", files={"file": ("r.csv", bad, CSV)}, headers=token
    )
    assert refused.status_code == 422
    assert refused.json()["problems"][0].startswith("line 6: ")
    assert await count(db, Organisation) == 0

    applied = await http.post(
        f"{API}/organisations/import", files={"file": ("r.csv", content, CSV)}, headers=token
    )
    assert applied.status_code == 200, applied.text
    assert (applied.json()["created"], applied.json()["ignored_columns"]) == (88, ["notes", "phone"])
    listed = await http.get(f"{API}/organisations", params={"q": "financave"}, headers=token)
    assert [row["key"] for row in listed.json()] == ["ministry-of-finance"]


async def test_the_api_changes_open_tasks_only_when_asked(
    db: Database, settings: Settings, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, token = api
    round_id = await launched_round(db, settings, ["ministry-of-interior"])
    changed = REGISTRY.replace(INTERIOR_FP.encode(), NEW_FP.encode())

    dry = await http.post(
        f"{API}/organisations/import",
        params={"dry_run": "true"},
        files={"file": ("r.csv", changed, CSV)},
        headers=token,
    )
    (touched,) = dry.json()["open_rounds_touched"]
    assert touched == {
        "round_id": round_id,
        "round_title": "Migration strategy, round 1",
        "organisation_key": "ministry-of-interior",
        "organisation_name": "Ministry of Interior",
        "role": "focal_point",
        "current_email": INTERIOR_FP,
        "new_email": NEW_FP,
        "replaceable": True,
    }
    applied = await http.post(
        f"{API}/organisations/import",
        params={"confirm_open_rounds": "true"},
        files={"file": ("r.csv", changed, CSV)},
        headers=token,
    )
    assert applied.status_code == 200, applied.text
    assert applied.json()["open_task_contacts_changed"] == 1
    assert ("focal_point", NEW_FP) in await working_links(db, round_id)
    assert await count(db, AccessLink, AccessLink.role == ContactRole.focal_point) == 2
