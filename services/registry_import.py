"""Changing the registry from a file (CSV or XLSX), previewed before anything is saved, and changes to an
organisation's contacts that reach the open rounds it is consulted in.

A file is read the same way for its preview and for its import: one row per organisation, matched by
`key`; columns the import does not know (notes, phone) are reported and ignored; every line that cannot
be imported is reported with why, all at once. The preview (`preview`) says what the import would do:
organisations created, organisations updated with each field as it is and as it would be, and the open
tasks whose contacts the file changes. The import (`import_registry`) does it, all rows or none: a file
with any rejected line imports nothing.

The contacts of an open task are the people its review links were made for, when the round was launched
(`models.reviews.AccessLink`); a registry change does not reach them by itself. Only when asked
(`change_open_tasks`) are they changed with the registry, each as the coordinator's contact replacement
does it (`task_changes.replace_contact_in_transaction`): the old link is revoked, the new contact gets a
link and an invitation, each on the audit trail, in the import's transaction.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import ContactRole, RoundStatus
from models.organisations import (
    FieldChange,
    ImportChange,
    ImportedOrganisation,
    ImportRejected,
    ImportResult,
    OpenRoundTouched,
    Organisation,
    OrganisationCreate,
    OrganisationRead,
    OrganisationUpdate,
)
from models.reviews import AccessLink
from models.rounds import ContactReplace, ReviewTask, Round
from models.types import utcnow
from services import ooxml, organisations, task_changes
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, PayloadTooLarge
from services.scheduling import OPEN_TASK_STATUSES
from services.settings import Settings
from services.text import decode_utf8

MIB = 1024 * 1024
MAX_FILE_BYTES = 10 * MIB
MAX_ROWS = 50_000
"""Organisations in one file: a country's registry has hundreds; what lies beyond is not a registry."""
MAX_LINES = 200_000
"""Lines (or spreadsheet rows) read, blank ones included, before the file is refused."""
MAX_COLUMNS = 200
MAX_CELLS_PER_ROW = 1_000
"""Cells of one spreadsheet row, empty ones included: a row that reaches further is refused before it is
read cell by cell."""

REQUIRED_COLUMNS = ("key", "name_en", "kind", "focal_point_email")
OPTIONAL_COLUMNS = (
    "name_sq",
    "focal_point_name",
    "alternate_name",
    "alternate_email",
    "escalation_email",
    "language",
    "timezone",
)
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
# The registry fields a row sets; the key identifies the row.
RECORD_FIELDS = tuple(name for name in OrganisationCreate.model_fields if name != "key")
# Fields whose value is a closed vocabulary: accept "Ministry" for "ministry".
CASE_INSENSITIVE_COLUMNS = {"kind", "language"}
# What a spreadsheet takes for a formula when the value is typed into a cell or opened from a CSV file
# (OWASP's list): a registry value may not start with one, so that no export of it can run one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTACT_FIELDS = {
    ContactRole.focal_point: ("focal_point_email", "focal_point_name"),
    ContactRole.alternate: ("alternate_email", "alternate_name"),
}
STALE_PREVIEW = (
    "The registry or its open rounds changed since this preview was made: check the new preview below "
    "and confirm it again."
)

# XLSX packages (a zip of XML parts), checked before openpyxl reads them.
_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (.xls)
_PDF = b"%PDF-"
NOT_A_WORKBOOK = (
    "The file could not be read as an Excel workbook: save it as .xlsx (Excel 2007 or later) or as "
    "'CSV UTF-8' and upload it again."
)
MAX_XML_ELEMENTS = 2_000_000
"""Elements in any part of a workbook: a cell is two (`c`, its value `v`), so 50,000 organisations of a
dozen columns fit, with room. Counted in bytes, at once, where counting cells one by one would take a
second for a million of them."""
WORKBOOK = ooxml.PackageRules(
    what="workbook",
    program="Excel",
    unreadable=NOT_A_WORKBOOK,
    max_entries=500,
    entries_hint="where a registry needs a dozen: save it again from Excel as .xlsx, without embedded files",
    max_unpacked_bytes=50 * MIB,
    unpacked_hint="a registry takes far less; save its first worksheet alone as .xlsx or as 'CSV UTF-8'",
    max_part_bytes=40 * MIB,
    max_compression_ratio=200,
    compression_checked_above=1 * MIB,
    max_xml_elements=MAX_XML_ELEMENTS,
    too_many_hint="where a registry has a few hundred organisations: this is not a registry",
    # Excel writes a row only when it has a value or a format: a registry's rows are its organisations.
    counted={"row": (MAX_ROWS + 1_000, "rows")},
)


# ----------------------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class SourceRow:
    line: int
    values: dict[str, str]
    problem: str | None = None


@dataclass(frozen=True)
class RegistryFile:
    format: str
    sha256: str
    columns: frozenset[str]
    """The known columns the file has: a column left out leaves its field as it is."""
    ignored: list[str]
    rows: list[SourceRow]


def read_registry(content: bytes, filename: str = "") -> RegistryFile:
    """The file's known columns, the columns it ignores and its non-blank rows with their line numbers
    (a spreadsheet's row numbers); problems with the file as a whole raise InvalidInput or
    PayloadTooLarge, problems of a row are kept with it."""
    if len(content) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_FILE_BYTES // MIB} MB.")
    name = filename.lower()
    if content.startswith(_PDF) or name.endswith(".pdf"):
        raise InvalidInput(
            "A PDF cannot be imported: the registry is read from a spreadsheet; save it as .xlsx or as "
            "'CSV UTF-8' and upload that file."
        )
    if content.startswith(_OLE) or name.endswith(".xls"):
        raise InvalidInput(
            "Excel 97-2003 workbooks (.xls) cannot be read: save the file as .xlsx or as 'CSV UTF-8'."
        )
    if content.startswith(_ZIP) or name.endswith((".xlsx", ".xlsm")):
        file_format, lines = "xlsx", _xlsx_lines(content)
    else:
        file_format, lines = "csv", _csv_lines(content)
    return _rows_of(file_format, hashlib.sha256(content).hexdigest(), lines)


def _rows_of(file_format: str, digest: str, lines: Iterator[tuple[int, list[str]]]) -> RegistryFile:
    header: list[str] | None = None
    positions: list[tuple[int, str]] = []
    rows: list[SourceRow] = []
    ignored: list[str] = []
    for line, cells in lines:
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            while file_format == "xlsx" and header and not header[-1]:
                header.pop()  # a spreadsheet's empty cells after its last column
            ignored = _check_header(header, line)
            positions = [(index, name) for index, name in enumerate(header) if name in KNOWN_COLUMNS]
            continue
        if len(rows) >= MAX_ROWS:
            raise PayloadTooLarge(f"The file has more than {MAX_ROWS:,} organisations.")
        if file_format == "csv" and len(cells) != len(header):
            problem = f"has {len(cells)} values but the header has {len(header)} columns"
            rows.append(SourceRow(line, {}, problem))
            continue
        beyond = [index for index in range(len(header), len(cells)) if cells[index].strip()]
        if beyond:
            problem = f"has a value in column {beyond[0] + 1}, beyond the header's {len(header)} columns"
            rows.append(SourceRow(line, {}, problem))
            continue
        cells = cells + [""] * (len(header) - len(cells))
        rows.append(SourceRow(line, {name: cells[index].strip() for index, name in positions}))
    if header is None:
        raise InvalidInput("The file is empty: expected a header line and one row per organisation.")
    if not rows:
        raise InvalidInput("The file has a header but no organisations.")
    return RegistryFile(
        format=file_format,
        sha256=digest,
        columns=frozenset(name for _index, name in positions),
        ignored=ignored,
        rows=rows,
    )


def _check_header(header: list[str], line: int) -> list[str]:
    """The header's columns that the import ignores; InvalidInput when it cannot be used."""
    problems = []
    if len(header) > MAX_COLUMNS:
        problems.append(f"line {line}: {len(header)} columns, more than the {MAX_COLUMNS} a file may have")
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        problems.append(
            f"line {line}: missing required column(s) {', '.join(missing)}; "
            f"the columns are {', '.join(KNOWN_COLUMNS)}"
        )
    repeated = sorted({name for name in header if name in KNOWN_COLUMNS and header.count(name) > 1})
    if repeated:
        problems.append(f"line {line}: column(s) {', '.join(repeated)} appear more than once")
    if problems:
        raise InvalidInput(
            "The header line of the file is not usable: " + "; ".join(problems), problems=problems
        )
    ignored = [name or f"(column {index + 1}, no name)" for index, name in enumerate(header)]
    return list(
        dict.fromkeys(
            name for name, column in zip(ignored, header, strict=True) if column not in KNOWN_COLUMNS
        )
    )


def _csv_lines(content: bytes) -> Iterator[tuple[int, list[str]]]:
    text = decode_utf8(content, what="The file", hint="save it as 'CSV UTF-8'")
    if "\x00" in text:
        raise InvalidInput("The file contains NUL characters: it is not a CSV file.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    next_line = 1
    try:
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            if line > MAX_LINES:
                raise PayloadTooLarge(f"The file has more than {MAX_LINES:,} lines.")
            if len(cells) > MAX_CELLS_PER_ROW:
                raise InvalidInput(f"line {line}: {len(cells):,} values; this is not a registry file.")
            yield line, cells
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: the file is not valid CSV ({exc}).") from exc


def _xlsx_lines(content: bytes) -> Iterator[tuple[int, list[str]]]:
    """The first worksheet's rows as text, by row number."""
    ooxml.check_package(content, WORKBOOK)
    from openpyxl import load_workbook  # a few hundred ms to import: only when a workbook comes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about parts it skips (data validation, ...)
            workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=False, keep_links=False)
    except Exception as exc:  # openpyxl raises whatever its parts raise when a package is malformed
        raise InvalidInput(NOT_A_WORKBOOK) from exc
    try:
        if not workbook.worksheets:
            raise InvalidInput("The workbook has no worksheet.")
        sheet = workbook.worksheets[0]
        # The size a sheet declares is not trusted: its rows are read as they are.
        sheet.reset_dimensions()
        try:
            for line, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                if line > MAX_LINES:
                    raise PayloadTooLarge(f"The worksheet has more than {MAX_LINES:,} rows.")
                if len(row) > MAX_CELLS_PER_ROW:
                    raise InvalidInput(
                        f"row {line} of the worksheet reaches column {len(row):,}; this is not a registry."
                    )
                yield line, [_cell_text(value) for value in row]
        except (InvalidInput, PayloadTooLarge):
            raise
        except Exception as exc:
            raise InvalidInput(NOT_A_WORKBOOK) from exc
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


# ------------------------------------------------------------------------------------ the rows


def _validate(rows: list[SourceRow]) -> tuple[dict[str, dict[str, Any]], list[ImportRejected]]:
    """Every good row as the registry fields it sets, by key, and every problem of the others."""
    rejected: list[ImportRejected] = []
    records: dict[str, dict[str, Any]] = {}
    first_line_of_key: dict[str, int] = {}
    for row in rows:
        rejected.extend(
            ImportRejected(line=row.line, reason=problem)
            for problem in _row_problems(row, first_line_of_key, records)
        )
    return records, rejected


def _row_problems(
    row: SourceRow, first_line_of_key: dict[str, int], records: dict[str, dict[str, Any]]
) -> list[str]:
    if row.problem is not None:
        return [row.problem]
    given = {
        name: value.lower() if name in CASE_INSENSITIVE_COLUMNS else value
        for name, value in row.values.items()
        if value  # an empty cell means "no value": the field's default, or "required" if it has none
    }
    problems = []
    for name, value in given.items():
        if "\x00" in value:
            problems.append(f"{name}: contains a NUL character, which cannot be stored")
        elif value.startswith(FORMULA_STARTS):
            shown = value[:40] + ("…" if len(value) > 40 else "")
            problems.append(
                f"{name}: '{shown}' starts with '{value[0].strip() or 'a tab'}', as a spreadsheet formula "
                "does; a registry value may not start with =, +, - or @"
            )
    key = given.get("key")
    if key is not None:
        first_line = first_line_of_key.setdefault(key, row.line)
        if first_line != row.line:
            problems.append(f"key: '{key}' is also on line {first_line}; each key may appear only once")
    try:
        organisation = OrganisationCreate.model_validate(given)
    except ValidationError as exc:
        return problems + [_describe(error) for error in exc.errors()]
    if not problems:
        records[organisation.key] = organisation.model_dump(include=set(RECORD_FIELDS))
    return problems


def _describe(error: Any) -> str:
    place = ".".join(str(part) for part in error["loc"]) or "row"
    if error["type"] == "missing":
        return f"{place}: a value is required"
    if place == "key" and error["type"] == "string_pattern_mismatch":
        return (
            f"{place}: '{error['input']}' is not a valid key (lower-case letters, digits and hyphens, "
            "starting with a letter or digit, at most 80 characters)"
        )
    return f"{place}: {error['msg']}"


def problems_of(rejected: Sequence[ImportRejected]) -> list[str]:
    return [f"line {entry.line}: {entry.reason}" for entry in rejected]


def refusal(rejected: Sequence[ImportRejected]) -> str:
    count = len({entry.line for entry in rejected})
    rows_are = "1 row of the file is" if count == 1 else f"{count:,} rows of the file are"
    return f"{rows_are} invalid; nothing was imported"


# ------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class _Touch:
    """A contact of an open task that the registry change would replace."""

    shown: OpenRoundTouched
    task_id: int
    role: ContactRole
    name: str


@dataclass
class _Plan:
    file: RegistryFile
    created: list[dict[str, Any]] = field(default_factory=list)
    updated: list[tuple[Organisation, dict[str, dict[str, Any]], bool]] = field(default_factory=list)
    unchanged: int = 0
    touches: list[_Touch] = field(default_factory=list)
    rejected: list[ImportRejected] = field(default_factory=list)

    def result(self, *, dry_run: bool) -> ImportResult:
        touched = [touch.shown for touch in self.touches]
        return ImportResult(
            created=len(self.created),
            updated=len(self.updated),
            unchanged=self.unchanged,
            dry_run=dry_run,
            format=self.file.format,
            sha256=self.file.sha256,
            plan=self.digest(),
            ignored_columns=self.file.ignored,
            rejected=self.rejected,
            open_rounds_touched=touched,
            created_organisations=[
                ImportedOrganisation(key=row["key"], name_en=row["name_en"], kind=str(row["kind"]))
                for row in self.created
            ],
            updated_organisations=[
                ImportChange(
                    key=organisation.key,
                    name_en=organisation.name_en,
                    restored=restored,
                    changes=[
                        FieldChange(field=name, old=_text(change["old"]), new=_text(change["new"]))
                        for name, change in changes.items()
                    ],
                )
                for organisation, changes, restored in self.updated
            ],
        )

    def digest(self) -> str:
        """What the import would change, as a digest: a confirmation carries the one it was shown."""
        document = {
            "file": self.file.sha256,
            "created": sorted(row["key"] for row in self.created),
            "updated": sorted((organisation.key, changes) for organisation, changes, _ in self.updated),
            "touched": sorted(
                (touch.task_id, str(touch.role), touch.shown.current_email or "", touch.shown.new_email or "")
                for touch in self.touches
            ),
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


async def _plan(session: AsyncSession, registry_file: RegistryFile) -> _Plan:
    records, rejected = _validate(registry_file.rows)
    plan = _Plan(file=registry_file, rejected=rejected)
    existing = {
        organisation.key: organisation for organisation in await organisations.load_by_keys(session, records)
    }
    now = utcnow()
    proposals: list[_Proposal] = []
    for key, record in records.items():
        current = existing.get(key)
        if current is None:
            plan.created.append({**record, "key": key, "created_at": now, "updated_at": now})
            continue
        changes = {
            name: {"old": organisations.plain(getattr(current, name)), "new": organisations.plain(value)}
            for name, value in record.items()
            if name in registry_file.columns and getattr(current, name) != value
        }
        restored = current.archived_at is not None
        if changes or restored:
            plan.updated.append((current, changes, restored))
            proposals.append(_Proposal.of(current, {name: change["new"] for name, change in changes.items()}))
        else:
            plan.unchanged += 1
    plan.touches = await _touches(session, proposals)
    return plan


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# ------------------------------------------------------------------------------ open tasks' contacts


@dataclass(frozen=True)
class _Proposal:
    """An organisation's contacts as a change would leave them, for the ones whose address changes."""

    organisation_id: int
    key: str
    name_en: str
    contacts: dict[ContactRole, tuple[str | None, str]]
    """Role -> (its new address, or None: removed; the name that goes with it)."""

    @classmethod
    def of(cls, organisation: Organisation, new: dict[str, Any]) -> _Proposal:
        contacts = {}
        for role, (email_field, name_field) in CONTACT_FIELDS.items():
            if email_field in new:
                name = new.get(name_field, getattr(organisation, name_field)) or ""
                contacts[role] = (new[email_field], str(name))
        return cls(organisation.id or 0, organisation.key, organisation.name_en, contacts)


async def _touches(session: AsyncSession, proposals: list[_Proposal]) -> list[_Touch]:
    """The contacts of open tasks in open rounds that these changes would replace."""
    changing = {proposal.organisation_id: proposal for proposal in proposals if proposal.contacts}
    if not changing:
        return []
    touches = []
    for task_id, round_id, title, organisation_id, links in await _open_tasks(session, list(changing)):
        proposal = changing[organisation_id]
        for role, (email, name) in proposal.contacts.items():
            current = links.get(role)
            if current == email or (current is None and email is None):
                continue
            touches.append(
                _Touch(
                    shown=OpenRoundTouched(
                        round_id=round_id,
                        round_title=title,
                        organisation_key=proposal.key,
                        organisation_name=proposal.name_en,
                        role=str(role),
                        current_email=current,
                        new_email=email,
                        replaceable=email is not None,
                    ),
                    task_id=task_id,
                    role=role,
                    name=name,
                )
            )
    return touches


async def _open_tasks(
    session: AsyncSession, organisation_ids: Iterable[int]
) -> list[tuple[int, int, str, int, dict[ContactRole, str]]]:
    """(task, round, round title, organisation, {role: address of its working link}) of every open task
    of these organisations in an open round, by round then organisation."""
    wanted = list(dict.fromkeys(organisation_ids))
    tasks: dict[int, tuple[int, int, str, int, dict[ContactRole, str]]] = {}
    for start in range(0, len(wanted), organisations.KEYS_PER_QUERY):
        chunk = wanted[start : start + organisations.KEYS_PER_QUERY]
        rows = await session.exec(
            select(ReviewTask, Round.title, AccessLink)
            .join(Round, col(Round.id) == ReviewTask.round_id)
            .outerjoin(
                AccessLink,
                and_(
                    col(AccessLink.task_id) == ReviewTask.id,
                    col(AccessLink.revoked_at).is_(None),
                    col(AccessLink.role) != ContactRole.delegate,
                ),
            )
            .where(
                Round.status == RoundStatus.open,
                col(ReviewTask.status).in_(OPEN_TASK_STATUSES),
                col(ReviewTask.organisation_id).in_(chunk),
            )
        )
        for task, title, link in rows.all():
            task_id = task.id or 0
            entry = tasks.setdefault(task_id, (task_id, task.round_id, title, task.organisation_id, {}))
            if link is not None:
                entry[4][ContactRole(link.role)] = link.email
    return sorted(tasks.values(), key=lambda entry: (entry[1], entry[3]))


async def _lock_for_replacing(session: AsyncSession, touches: list[_Touch]) -> None:
    """Lock the rounds and tasks whose contacts will be replaced, in one order, before the audit trail's
    head is locked: a sign-off holds its task and then waits for the head; waiting for its task while
    holding the head would deadlock."""
    round_ids = sorted({touch.shown.round_id for touch in touches})
    task_ids = sorted({touch.task_id for touch in touches})
    await session.exec(
        select(Round.id).where(col(Round.id).in_(round_ids)).order_by(col(Round.id)).with_for_update()
    )
    await session.exec(
        select(ReviewTask.id)
        .where(col(ReviewTask.id).in_(task_ids))
        .order_by(col(ReviewTask.id))
        .with_for_update()
    )


async def _replace(
    session: AsyncSession, touches: list[_Touch], *, reason: str, actor: Actor, settings: Settings
) -> int:
    replaced = 0
    for touch in touches:
        if not touch.shown.replaceable or touch.shown.new_email is None:
            continue
        await task_changes.replace_contact_in_transaction(
            session,
            round_id=touch.shown.round_id,
            key=touch.shown.organisation_key,
            data=ContactReplace(role=touch.role, email=touch.shown.new_email, name=touch.name, reason=reason),
            actor=actor,
            settings=settings,
        )
        replaced += 1
    return replaced


def _touched_data(touches: list[_Touch], *, confirmed: bool) -> dict[str, Any]:
    return {
        "changed": confirmed,
        "contacts": [
            {
                "round_id": touch.shown.round_id,
                "organisation": touch.shown.organisation_key,
                "role": str(touch.role),
                "from": touch.shown.current_email,
                "to": touch.shown.new_email,
            }
            for touch in touches
        ],
    }


# ----------------------------------------------------------------------------------- the use cases


async def preview(session: AsyncSession, *, content: bytes, filename: str = "") -> ImportResult:
    """What importing the file would do, saving nothing: every rejected line, every change."""
    registry_file = await asyncio.to_thread(read_registry, content, filename)
    return (await _plan(session, registry_file)).result(dry_run=True)


@transactional
async def import_registry(
    session: AsyncSession,
    *,
    content: bytes,
    filename: str = "",
    actor: Actor,
    settings: Settings | None = None,
    change_open_tasks: bool = False,
    expected_plan: str | None = None,
) -> ImportResult:
    """Create or update organisations from a CSV or XLSX file, all rows or none.

    Rows are matched by key. A column left out of the file leaves that field as it is on existing
    organisations; a column present with an empty cell clears the field (or sets its default). Archived
    organisations in the file are restored. With `change_open_tasks` (and `settings`, for the
    invitations), the contacts of open tasks whose addresses the file changes are replaced too; without,
    those tasks keep their contacts. `expected_plan`: the digest of the preview being confirmed, which the
    import must match (Conflict otherwise: something changed since)."""
    registry_file = await asyncio.to_thread(read_registry, content, filename)
    plan = await _plan(session, registry_file)
    if plan.rejected:
        raise InvalidInput(refusal(plan.rejected), problems=problems_of(plan.rejected))
    result = plan.result(dry_run=False)
    if expected_plan is not None and expected_plan != result.plan:
        raise Conflict(STALE_PREVIEW)
    replacing = [touch for touch in plan.touches if touch.shown.replaceable] if change_open_tasks else []
    if replacing:
        if settings is None:
            raise ValueError("replacing the contacts of open tasks sends invitations: settings are needed")
        await _lock_for_replacing(session, replacing)

    now = utcnow()
    updated_rows = [
        {
            **{name: change["new"] for name, change in changes.items()},
            "id": organisation.id,
            "updated_at": now,
        }
        | ({"archived_at": None} if restored else {})
        for organisation, changes, restored in plan.updated
    ]
    try:
        if plan.created:
            await session.exec(insert(Organisation), params=plan.created)
        # ORM bulk UPDATE by primary key: rows with the same changed columns share one executemany.
        for batch in _same_columns(updated_rows):
            await session.exec(update(Organisation), params=batch)
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("The registry was changed while the file was imported; import it again.") from exc
    # The bulk statements bypassed the loaded objects; drop them so no later read sees stale values.
    session.expunge_all()

    data: dict[str, Any] = {
        "created": [row["key"] for row in plan.created],
        "updated": [organisation.key for organisation, _changes, _restored in plan.updated],
        "restored": [organisation.key for organisation, _changes, restored in plan.updated if restored],
        "unchanged": plan.unchanged,
        "changes": {
            organisation.key: changes for organisation, changes, _restored in plan.updated if changes
        },
        "format": registry_file.format,
        "sha256": registry_file.sha256,
        "ignored_columns": registry_file.ignored,
    }
    if plan.touches:
        data["open_tasks"] = _touched_data(plan.touches, confirmed=bool(replacing))
    await trail.append(session, actor=actor, action="organisations.imported", data=data)
    if replacing:
        assert settings is not None
        reason = f"the registry was imported with a new contact (file {registry_file.sha256[:12]})"
        result.open_task_contacts_changed = await _replace(
            session, replacing, reason=reason, actor=actor, settings=settings
        )
    await session.commit()
    session.expunge_all()
    return result


def _same_columns(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        batches.setdefault(frozenset(row), []).append(row)
    return list(batches.values())


# ------------------------------------------------------------------------- one organisation's contacts


@dataclass(frozen=True)
class OpenTask:
    """An open task of an organisation, with the contacts its links are for."""

    round_id: int
    round_title: str
    focal_point_email: str | None
    alternate_email: str | None


@dataclass(frozen=True)
class ContactsView:
    organisation: OrganisationRead
    open_tasks: list[OpenTask]


@dataclass(frozen=True)
class ContactsUpdated:
    organisation: OrganisationRead
    changed: bool
    touched: list[OpenRoundTouched]
    replaced: int


async def contacts_view(session: AsyncSession, *, key: str) -> ContactsView:
    """An organisation and the open tasks it has in open rounds, as its contacts page shows them."""
    organisation = await organisations.get_row(session, key)
    tasks = await _open_tasks(session, [organisation.id or 0])
    return ContactsView(
        organisation=OrganisationRead.model_validate(organisation),
        open_tasks=[
            OpenTask(
                round_id=round_id,
                round_title=title,
                focal_point_email=links.get(ContactRole.focal_point),
                alternate_email=links.get(ContactRole.alternate),
            )
            for _task_id, round_id, title, _organisation_id, links in tasks
        ],
    )


@transactional
async def update_contacts(
    session: AsyncSession,
    *,
    key: str,
    data: OrganisationUpdate,
    actor: Actor,
    settings: Settings,
    change_open_tasks: bool = False,
) -> ContactsUpdated:
    """Change an organisation's contacts in the registry; with `change_open_tasks`, also the contacts of
    its open tasks whose addresses change (each replaced as the coordinator replaces a contact), else
    those tasks keep theirs. No change, no audit event."""
    organisation = await organisations.get_row(session, key, for_update=True)
    changes = organisations.apply_update(organisation, data)
    if not changes:
        unchanged = OrganisationRead.model_validate(organisation)
        await session.rollback()  # releases the row lock
        return ContactsUpdated(organisation=unchanged, changed=False, touched=[], replaced=0)
    proposal = _Proposal.of(organisation, {name: change["new"] for name, change in changes.items()})
    # _Proposal.of read the names from the row, which already has the new values.
    touches = await _touches(session, [proposal])
    replacing = [touch for touch in touches if touch.shown.replaceable] if change_open_tasks else []
    if replacing:
        await _lock_for_replacing(session, replacing)
    session.add(organisation)
    await session.flush()
    event: dict[str, Any] = {"organisation_id": organisation.id, "key": key, "changes": changes}
    if touches:
        event["open_tasks"] = _touched_data(touches, confirmed=bool(replacing))
    updated = OrganisationRead.model_validate(organisation)
    await trail.append(session, actor=actor, action="organisation.updated", data=event)
    replaced = await _replace(
        session, replacing, reason="the registry's contact was changed", actor=actor, settings=settings
    )
    await session.commit()
    return ContactsUpdated(
        organisation=updated, changed=True, touched=[touch.shown for touch in touches], replaced=replaced
    )
