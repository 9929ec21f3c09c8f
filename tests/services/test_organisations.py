"""The stakeholder registry: CSV import and one-at-a-time changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
from pathlib import Path

import openpyxl
import pytest
from sqlmodel import col, func, select

from models.audit import Actor, AuditEvent
from models.enums import ActorKind, Language, OrganisationKind
from models.organisations import Organisation, OrganisationCreate, OrganisationRead, OrganisationUpdate
from services import organisations, registry_import
from services.db import Database
from services.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge

COORDINATOR = Actor(kind=ActorKind.user, id="7", email="secretariat@interior.gov.example")
HEADER = (
    "key,name_en,name_sq,kind,focal_point_name,focal_point_email,alternate_email,escalation_email,language"
)
# The fixture's keys are cut at 40 characters, so one organisation's addresses have a domain label
# ending in a hyphen. The registry checks the form of an address, not DNS rules, and keeps it as given.
ODD_FIXTURE_DOMAIN = "office-of-the-national-anti-trafficking-.gov.example"


@pytest.fixture(scope="module")
def fixture_csv(fixtures_dir: Path) -> bytes:
    return (fixtures_dir / "stakeholders-albania.csv").read_bytes()


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def row(key: str, *, email: str | None = None, kind: str = "ministry", language: str = "sq") -> str:
    email = email or f"fp@{key}.gov.example"
    return f"{key},Name of {key},Emri i {key},{kind},Focal {key},{email},,,{language}"


async def import_csv(db: Database, content: bytes) -> organisations.ImportResult:
    async with db.write_session() as session:
        return await organisations.import_csv(session, content=content, actor=COORDINATOR)


def snapshot(rows: list[Organisation]) -> list[dict[str, object]]:
    return [{name: getattr(row, name) for name in Organisation.model_fields} for row in rows]


async def all_organisations(db: Database) -> list[Organisation]:
    async with db.session() as session:
        return list((await session.exec(select(Organisation).order_by(col(Organisation.key)))).all())


async def audit_events(db: Database, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(col(AuditEvent.seq))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    async with db.session() as session:
        return list((await session.exec(query)).all())


async def create(db: Database, key: str, **fields: object) -> OrganisationRead:
    data = OrganisationCreate.model_validate(
        {
            "key": key,
            "name_en": f"Name of {key}",
            "kind": "ministry",
            "focal_point_email": f"fp@{key}.example.org",
        }
        | fields
    )
    async with db.write_session() as session:
        return await organisations.create_organisation(session, data=data, actor=COORDINATOR)


# ----------------------------------------------------------------------------------------- CSV import


async def test_importing_the_registry_creates_every_organisation(db: Database, fixture_csv: bytes) -> None:
    result = await import_csv(db, fixture_csv)

    assert (result.created, result.updated, result.unchanged) == (88, 0, 0)
    stored = {organisation.key: organisation for organisation in await all_organisations(db)}
    assert len(stored) == 88
    interior = stored["ministry-of-interior"]
    assert interior.name_sq == "Ministria e Brendshme"
    assert interior.kind == OrganisationKind.ministry
    assert interior.focal_point_name == "Focal Point, Ministry of Interior"
    assert interior.alternate_email == "migration.alt@ministry-of-interior.gov.example"
    assert stored["iom-albania-observer"].alternate_email is None
    assert stored["iom-albania-observer"].language == Language.en
    odd = stored["office-of-the-national-anti-trafficking-"]
    assert odd.focal_point_email == f"migration.fp@{ODD_FIXTURE_DOMAIN}"
    (event,) = await audit_events(db, "organisations.imported")
    assert len(event.data["created"]) == 88
    assert event.data["updated"] == []
    assert event.data["unchanged"] == 0


async def test_reimporting_changes_nothing_and_one_new_email_updates_one(
    db: Database, fixture_csv: bytes
) -> None:
    await import_csv(db, fixture_csv)
    before = {organisation.key: organisation.updated_at for organisation in await all_organisations(db)}

    again = await import_csv(db, fixture_csv)
    changed = await import_csv(
        db,
        fixture_csv.replace(b"migration.fp@ministry-of-justice.gov", b"focal.point@ministry-of-justice.gov"),
    )

    assert (again.created, again.updated, again.unchanged) == (0, 0, 88)
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 87)
    after = {organisation.key: organisation for organisation in await all_organisations(db)}
    assert after["ministry-of-justice"].focal_point_email == "focal.point@ministry-of-justice.gov.example"
    assert after["ministry-of-justice"].updated_at > before["ministry-of-justice"]
    assert after["ministry-of-interior"].updated_at == before["ministry-of-interior"]
    events = await audit_events(db, "organisations.imported")
    assert [event.data["updated"] for event in events] == [[], [], ["ministry-of-justice"]]
    assert events[2].data["unchanged"] == 87


async def test_a_file_with_bad_rows_reports_each_and_changes_nothing(
    db: Database, fixture_csv: bytes
) -> None:
    await import_csv(db, fixture_csv)
    before = snapshot(await all_organisations(db))
    events_before = len(await audit_events(db))
    bad = fixture_csv.decode().splitlines()
    bad[3] = bad[3].replace("migration.fp@", "migration.fp.at.")  # line 4
    bad[6] = bad[6].replace(",ministry,", ",ministry-ish,")  # line 7
    bad.append(row("new-agency"))  # valid, and must not be created either

    with pytest.raises(InvalidInput, match="2 rows of the file are invalid; nothing was imported") as caught:
        await import_csv(db, "\n".join(bad).encode())

    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("line 4: focal_point_email: not a valid email address")
    assert caught.value.problems[1].startswith("line 7: kind: Input should be 'ministry'")
    assert snapshot(await all_organisations(db)) == before
    assert len(await audit_events(db)) == events_before


async def test_duplicate_keys_name_both_lines(db: Database) -> None:
    content = csv_file(row("ministry-a"), row("ministry-b"), row("ministry-a", email="other@a.example.org"))

    with pytest.raises(InvalidInput) as caught:
        await import_csv(db, content)

    assert caught.value.problems == [
        "line 4: key: 'ministry-a' is also on line 2; each key may appear only once"
    ]


async def test_every_field_problem_is_named(db: Database) -> None:
    content = csv_file(
        ",No key,,ministry,,fp@x.example.org,,,sq",
        "Bad Key,Name,,ministry,,fp@x.example.org,,,sq",
        "ok-key,,,ministry,,,,,fr",
        "short-row,Name,,ministry",
    )

    with pytest.raises(InvalidInput, match="4 rows") as caught:
        await import_csv(db, content)

    problems = caught.value.problems
    assert "line 2: key: a value is required" in problems
    assert any(problem.startswith("line 3: key: 'Bad Key' is not a valid key") for problem in problems)
    assert "line 4: name_en: a value is required" in problems
    assert "line 4: focal_point_email: a value is required" in problems
    assert any(problem.startswith("line 4: language:") for problem in problems)
    assert "line 5: has 4 values but the header has 9 columns" in problems


async def test_line_numbers_count_quoted_line_breaks(db: Database) -> None:
    content = csv_file('ministry-a,"Ministry\nof A",,ministry,,fp@a.example.org,,,sq', row("b", email="bad"))

    with pytest.raises(InvalidInput) as caught:
        await import_csv(db, content)

    # The quoted break makes the first row two lines long (and is refused in a name): the next row is line 4.
    first, second = caught.value.problems
    assert first.startswith("line 2: name_en: contains a line break")
    assert second.startswith("line 4: focal_point_email")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n", "The file is empty"),
        (HEADER.encode() + b"\n", "no organisations"),
        (csv_file(row("a") + ",", header="key,name_en,key,kind,focal_point_email"), "appear more than once"),
        (csv_file("a,b", header="key,name_en"), "missing required column"),
        ("key,name_en\nministère".encode("latin-1"), "not UTF-8"),
        (b'key,name_en,kind,focal_point_email\n"unterminated,x,ministry,a@b.example.org\n', "not valid CSV"),
    ],
)
async def test_unusable_files_are_refused(db: Database, content: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        await import_csv(db, content)
    assert await all_organisations(db) == []


async def test_a_bom_mixed_case_vocabulary_and_any_column_order_are_fine(db: Database) -> None:
    content = "\ufeffLanguage, focal_point_email ,kind,key,name_en,alternate_name\r\n".encode() + (
        b"EN,fp@ngo.example.org,Civil_Society,an-ngo,An NGO,Deputy Director\r\n"
    )

    result = await import_csv(db, content)

    assert result.created == 1
    (stored,) = await all_organisations(db)
    assert (stored.language, stored.kind, stored.alternate_name) == ("en", "civil_society", "Deputy Director")


async def test_columns_left_out_keep_their_values_and_empty_cells_clear(db: Database) -> None:
    await create(db, "ministry-a", alternate_name="Deputy", escalation_email="sg@a.example.org")

    await import_csv(db, csv_file("ministry-a,Name of ministry-a,,ministry,,fp@ministry-a.example.org,,,sq"))

    (stored,) = await all_organisations(db)
    assert stored.alternate_name == "Deputy"  # no alternate_name column in the file
    assert stored.escalation_email is None  # the column is there, the cell is empty


async def test_importing_an_archived_organisation_restores_it(db: Database) -> None:
    await import_csv(db, csv_file(row("ministry-a")))
    async with db.write_session() as session:
        await organisations.archive_organisation(session, key="ministry-a", actor=COORDINATOR)

    result = await import_csv(db, csv_file(row("ministry-a")))

    assert result.updated == 1
    async with db.session() as session:
        assert [o.key for o in await organisations.list_organisations(session)] == ["ministry-a"]
    (event,) = (await audit_events(db, "organisations.imported"))[-1:]
    assert event.data["restored"] == ["ministry-a"]


async def test_ten_thousand_rows_import_in_bulk(db: Database) -> None:
    rows = [row(f"municipality-{number:05d}", kind="municipality") for number in range(10_000)]
    started = time.perf_counter()
    created = await import_csv(db, csv_file(*rows))
    rows[5_000] = row("municipality-05000", kind="municipality", email="new@m.example.org")
    updated = await import_csv(db, csv_file(*rows))
    elapsed = time.perf_counter() - started

    assert (created.created, updated.updated, updated.unchanged) == (10_000, 1, 9_999)
    assert elapsed < 60, f"two imports of 10,000 rows took {elapsed:.1f}s"


# ------------------------------------------------------------------------------------ one at a time


async def test_creating_and_reading_one_organisation(db: Database) -> None:
    created = await create(db, "ministry-of-justice", name_sq="Ministria e Drejtësisë")

    async with db.session() as session:
        read = await organisations.get_organisation(session, key="ministry-of-justice")
        with pytest.raises(NotFound, match="no-such-key"):
            await organisations.get_organisation(session, key="no-such-key")
    assert read == created
    assert read.name_sq == "Ministria e Drejtësisë"
    (event,) = await audit_events(db, "organisation.created")
    assert event.data["key"] == "ministry-of-justice"
    assert event.data["organisation_id"] == created.id


async def test_creating_a_key_twice_is_a_conflict(db: Database) -> None:
    await create(db, "ministry-a")

    with pytest.raises(Conflict, match="already exists"):
        await create(db, "ministry-a", name_en="Another")
    assert len(await all_organisations(db)) == 1


async def test_listing_filters_by_kind_and_orders_by_kind_then_name(db: Database) -> None:
    await create(db, "z-ministry", name_en="Ministry of Zeta")
    await create(db, "a-municipality", name_en="Bashkia Berat", kind="municipality")
    await create(db, "a-ministry", name_en="Ministry of Alpha")
    await create(db, "b-municipality", name_en="Bashkia A", kind="municipality")

    async with db.session() as session:
        everyone = await organisations.list_organisations(session)
        municipalities = await organisations.list_organisations(session, kind=OrganisationKind.municipality)

    assert [o.key for o in everyone] == ["a-ministry", "z-ministry", "b-municipality", "a-municipality"]
    assert [o.key for o in municipalities] == ["b-municipality", "a-municipality"]


async def test_updating_changes_only_the_given_fields_and_records_old_and_new(db: Database) -> None:
    original = await create(db, "ministry-a", alternate_email="alt@a.example.org")

    async with db.write_session() as session:
        updated = await organisations.update_organisation(
            session,
            key="ministry-a",
            data=OrganisationUpdate(
                focal_point_email="new@a.example.org", alternate_email=None, language=Language.en
            ),
            actor=COORDINATOR,
        )

    assert updated.focal_point_email == "new@a.example.org"
    assert updated.alternate_email is None
    assert updated.language == Language.en
    assert updated.name_en == original.name_en
    assert updated.updated_at > original.updated_at
    (event,) = await audit_events(db, "organisation.updated")
    assert event.data["changes"] == {
        "focal_point_email": {"old": "fp@ministry-a.example.org", "new": "new@a.example.org"},
        "alternate_email": {"old": "alt@a.example.org", "new": None},
        "language": {"old": "sq", "new": "en"},
    }


async def test_an_update_that_changes_nothing_writes_no_event(db: Database) -> None:
    await create(db, "ministry-a")

    async with db.write_session() as session:
        await organisations.update_organisation(
            session,
            key="ministry-a",
            data=OrganisationUpdate(kind=OrganisationKind.ministry),
            actor=COORDINATOR,
        )
        with pytest.raises(InvalidInput, match="name_en cannot be empty"):
            await organisations.update_organisation(
                session, key="ministry-a", data=OrganisationUpdate(name_en=None), actor=COORDINATOR
            )
        with pytest.raises(NotFound):
            await organisations.update_organisation(
                session, key="nobody", data=OrganisationUpdate(name_en="X"), actor=COORDINATOR
            )

    assert await audit_events(db, "organisation.updated") == []


async def test_archiving_hides_an_organisation_but_keeps_it(db: Database) -> None:
    await create(db, "ministry-a")
    await create(db, "ministry-b")

    async with db.write_session() as session:
        await organisations.archive_organisation(session, key="ministry-a", actor=COORDINATOR)
        await organisations.archive_organisation(session, key="ministry-a", actor=COORDINATOR)
        with pytest.raises(NotFound):
            await organisations.archive_organisation(session, key="nobody", actor=COORDINATOR)

    async with db.session() as session:
        active = await organisations.list_organisations(session)
        everyone = await organisations.list_organisations(session, include_archived=True)
        archived = await organisations.get_organisation(session, key="ministry-a")
    assert [o.key for o in active] == ["ministry-b"]
    assert [o.key for o in everyone] == ["ministry-a", "ministry-b"]
    assert archived.key == "ministry-a"
    (event,) = await audit_events(db, "organisation.archived")
    assert event.data["key"] == "ministry-a"
    with pytest.raises(Conflict, match="archived"):
        await create(db, "ministry-a")


async def test_resolving_keys_for_a_round(db: Database) -> None:
    await create(db, "ministry-a")
    await create(db, "ministry-b")
    await create(db, "ministry-c")
    async with db.write_session() as session:
        await organisations.archive_organisation(session, key="ministry-c", actor=COORDINATOR)

    async with db.session() as session:
        resolved = await organisations.resolve_keys(session, keys=["ministry-b", "ministry-a", "ministry-b"])
        with pytest.raises(InvalidInput) as caught:
            await organisations.resolve_keys(session, keys=["ministry-a", "ghost", "ministry-c"])

    assert list(resolved) == ["ministry-b", "ministry-a"]
    assert resolved["ministry-a"].key == "ministry-a"
    assert caught.value.problems == [
        "unknown organisation key 'ghost'",
        "organisation 'ministry-c' is archived",
    ]


async def test_the_registry_counts_by_kind(db: Database, fixture_csv: bytes) -> None:
    await import_csv(db, fixture_csv)
    async with db.session() as session:
        total = (await session.exec(select(func.count()).select_from(Organisation))).one()
        municipalities = await organisations.list_organisations(session, kind=OrganisationKind.municipality)
    assert total == 88
    assert len(municipalities) == 61


async def test_kinds_are_listed_in_the_vocabularys_order(db: Database) -> None:
    await create(db, "an-academy", name_en="Academy", kind="academia")
    await create(db, "an-agency", name_en="Agency", kind="agency")
    await create(db, "a-ministry", name_en="Ministry", kind="ministry")

    async with db.session() as session:
        listed = await organisations.list_organisations(session)

    assert [o.kind for o in listed] == ["ministry", "agency", "academia"]


# ------------------------------------------------------------------- preview, other columns, XLSX


def xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for cells in rows:
        sheet.append(cells)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def preview(db: Database, content: bytes, filename: str = "") -> organisations.ImportResult:
    async with db.session() as session:
        return await registry_import.preview(session, content=content, filename=filename)


async def test_unknown_columns_are_ignored_and_reported(db: Database) -> None:
    content = csv_file(row("ministry-a") + ",called twice,+355 4", header=HEADER + ",Notes,phone")

    previewed = await preview(db, content)
    result = await import_csv(db, content)

    assert previewed.dry_run is True
    assert (previewed.created, previewed.ignored_columns, previewed.rejected) == (1, ["notes", "phone"], [])
    assert await all_organisations(db) != []
    assert (result.created, result.ignored_columns) == (1, ["notes", "phone"])


async def test_the_preview_lists_every_rejected_line_and_what_the_others_would_do(
    db: Database, fixture_csv: bytes
) -> None:
    await import_csv(db, fixture_csv)
    lines = fixture_csv.decode().splitlines()
    lines[1] = lines[1].replace("Ministria e Brendshme", "Ministria e Punëve të Brendshme")
    lines[3] = lines[3].replace("migration.fp@", "fp.at.")
    lines.append(row("new-agency", kind="agency"))
    lines.append(row("new-agency"))
    lines.append("@formula,Name,,ministry,,fp@f.example.org,,,sq")

    result = await preview(db, ("\n".join(lines) + "\n").encode())

    assert [(entry.line, entry.reason.split(":")[0]) for entry in result.rejected] == [
        (4, "focal_point_email"),
        (91, "key"),
        (92, "key"),
        (92, "key"),
    ]
    assert "starts with '@', as a spreadsheet formula does" in result.rejected[2].reason
    assert (result.created, result.updated, result.unchanged) == (1, 1, 86)
    (change,) = result.updated_organisations
    assert change.key == "ministry-of-interior"
    assert [(c.field, c.old, c.new) for c in change.changes] == [
        ("name_sq", "Ministria e Brendshme", "Ministria e Punëve të Brendshme")
    ]
    assert [o.key for o in result.created_organisations] == ["new-agency"]
    stored = {organisation.key: organisation for organisation in await all_organisations(db)}
    assert stored["ministry-of-interior"].name_sq == "Ministria e Brendshme"
    assert "new-agency" not in stored
    with pytest.raises(InvalidInput, match="3 rows of the file are invalid") as caught:
        await import_csv(db, ("\n".join(lines) + "\n").encode())
    assert caught.value.problems[0].startswith("line 4: focal_point_email")


async def test_an_xlsx_workbook_is_read_by_its_row_numbers(db: Database) -> None:
    content = xlsx(
        [
            ["Key", "name_en", "kind", "focal_point_email", "language", None, "Remarks"],
            [],
            ["ministry-a", "Ministry A", "Ministry", "fp@a.example.org", "EN", None, 42],
            ["ministry-b", "Ministry B", "ministry", '=CONCAT("fp","@b.example.org")'],
            [123, "Numbered", "agency", "fp@123.example.org", None],
        ]
    )

    result = await preview(db, content, "registry.xlsx")

    assert result.format == "xlsx"
    assert result.ignored_columns == ["(column 6, no name)", "remarks"]
    assert {entry.line for entry in result.rejected} == {4}
    assert result.rejected[0].reason.startswith("focal_point_email: '=CONCAT(")
    assert [o.key for o in result.created_organisations] == ["ministry-a", "123"]


async def test_hostile_workbooks_are_refused_quickly(db: Database) -> None:
    wide = xlsx([["key", "name_en", "kind", "focal_point_email"], ["a"] + [""] * 1500 + ["x"]])
    long_sheet = xlsx([["key", "name_en", "kind", "focal_point_email"]] + [[None]] * 5 + [["x"]])
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="this is not a registry"):
        await preview(db, wide, "wide.xlsx")
    with pytest.raises(InvalidInput, match="could not be read as an Excel workbook"):
        await preview(db, b"PK\x03\x04not a zip at all", "x.xlsx")
    with pytest.raises(PayloadTooLarge, match="larger than 10 MB"):
        await preview(db, b"x" * (10 * 1024 * 1024 + 1))
    assert time.perf_counter() - started < 5
    result = await preview(db, long_sheet, "long.xlsx")  # blank rows are skipped, and counted
    assert {entry.line for entry in result.rejected} == {7}


async def test_a_file_of_too_many_rows_is_refused_before_it_is_checked(db: Database) -> None:
    content = csv_file(*("x" for _ in range(registry_import.MAX_ROWS + 1)))
    with pytest.raises(PayloadTooLarge, match="more than 50,000 organisations"):
        await preview(db, content)


# --------------------------------------------------------------------------------------- search


async def test_search_finds_names_keys_and_addresses_a_page_at_a_time(
    db: Database, fixture_csv: bytes
) -> None:
    await import_csv(db, fixture_csv)
    async with db.session() as session:
        by_name = await organisations.search_organisations(session, search="Financave")
        by_email = await organisations.search_organisations(
            session, search="SECRETARY.GENERAL@ministry-of-fin"
        )
        first = await organisations.search_organisations(session, page_size=50)
        second = await organisations.search_organisations(session, page=2, page_size=50)
        municipalities = await organisations.search_organisations(
            session, search="bashki", kind=OrganisationKind.municipality
        )
        nothing = await organisations.search_organisations(session, search="_")

    assert [o.key for o in by_name.organisations] == ["ministry-of-finance"]
    assert [o.key for o in by_email.organisations] == ["ministry-of-finance"]
    assert (first.total, first.pages, len(first.organisations), len(second.organisations)) == (88, 2, 50, 38)
    assert {o.key for o in first.organisations}.isdisjoint(o.key for o in second.organisations)
    assert first.by_kind["municipality"] == 61
    assert municipalities.total == 61
    assert nothing.total == 0
