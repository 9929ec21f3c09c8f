"""The stakeholder registry: organisations and their contacts, kept by CSV import or one at a time.

Organisations are never deleted, only archived, so that past rounds keep pointing at them; an archived
organisation is left out of lists and cannot be added to a new round until an import brings it back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import OrganisationKind
from models.organisations import (
    ImportResult,
    Organisation,
    OrganisationCreate,
    OrganisationRead,
    OrganisationUpdate,
)
from models.types import utcnow
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from services.text import decode_utf8

MAX_CSV_BYTES = 10 * 1024 * 1024
# Bound the number of bound parameters of one IN (...) query (SQLite and asyncpg both cap them).
KEYS_PER_QUERY = 2_000
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
# The registry fields a row sets; the key identifies the row.
RECORD_FIELDS = tuple(name for name in OrganisationCreate.model_fields if name != "key")
# Fields whose value is a closed vocabulary: accept "Ministry" for "ministry".
CASE_INSENSITIVE_COLUMNS = {"kind", "language"}
# Kinds in the order the vocabulary lists them (ministries first), not alphabetically.
KIND_ORDER = case(
    {kind.value: position for position, kind in enumerate(OrganisationKind)},
    value=col(Organisation.kind),
    else_=len(OrganisationKind),
)
# Required fields an update may not clear.
NOT_CLEARABLE = {"name_en", "kind", "focal_point_email", "language"}


@dataclass(frozen=True)
class CsvRow:
    line: int
    values: dict[str, str]
    problem: str | None = None


# ----------------------------------------------------------------------------------------- CSV import


@transactional
async def import_csv(session: AsyncSession, *, content: bytes, actor: Actor) -> ImportResult:
    """Create or update organisations from a CSV file, all rows or none.

    Rows are matched by key. A column left out of the file leaves that field as it is on existing
    organisations; a column present with an empty cell clears the field (or sets its default).
    Archived organisations in the file are restored.
    """
    columns, rows = _read_csv(content)
    records = _validate_rows(rows)

    existing = {organisation.key: organisation for organisation in await _load_by_keys(session, records)}
    now = utcnow()
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    updated_keys: list[str] = []
    restored: list[str] = []
    for key, record in records.items():
        values = {name: value for name, value in record.items() if name in columns}
        current = existing.get(key)
        if current is None:
            created.append({**record, "key": key, "created_at": now, "updated_at": now})
            continue
        changes = {name: value for name, value in values.items() if getattr(current, name) != value}
        if current.archived_at is not None:
            changes["archived_at"] = None
            restored.append(key)
        if changes:
            updated.append({**changes, "id": current.id, "updated_at": now})
            updated_keys.append(key)

    try:
        if created:
            await session.exec(insert(Organisation), params=created)
        # ORM bulk UPDATE by primary key: rows with the same changed columns share one executemany.
        for batch in _same_columns(updated):
            await session.exec(update(Organisation), params=batch)
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("The registry was changed while the file was imported; import it again.") from exc

    result = ImportResult(
        created=len(created), updated=len(updated), unchanged=len(records) - len(created) - len(updated)
    )
    await trail.append(
        session,
        actor=actor,
        action="organisations.imported",
        data={
            "created": [row["key"] for row in created],
            "updated": updated_keys,
            "restored": restored,
            "unchanged": result.unchanged,
        },
    )
    await session.commit()
    # The bulk statements bypassed the loaded objects; drop them so no later read sees stale values.
    session.expunge_all()
    return result


def _read_csv(content: bytes) -> tuple[set[str], list[CsvRow]]:
    """The file's columns and its non-blank rows with their line numbers; header problems raise."""
    if len(content) > MAX_CSV_BYTES:
        raise PayloadTooLarge(f"The file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB.")
    text = decode_utf8(content, what="The file", hint="save it as 'CSV UTF-8'")

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[CsvRow] = []
    header: list[str] | None = None
    next_line = 1
    try:
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                header_line = line
                continue
            if len(cells) != len(header):
                problem = f"has {len(cells)} values but the header has {len(header)} columns"
                rows.append(CsvRow(line, {}, problem))
                continue
            rows.append(CsvRow(line, dict(zip(header, (cell.strip() for cell in cells), strict=True))))
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: the file is not valid CSV ({exc}).") from exc

    if header is None:
        raise InvalidInput("The file is empty: expected a header line and one row per organisation.")
    _check_header(header, header_line)
    if not rows:
        raise InvalidInput("The file has a header but no organisations.")
    return set(header), rows


def _check_header(header: list[str], line: int) -> None:
    accepted = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    problems = []
    unknown = [name for name in header if name not in accepted]
    if unknown:
        problems.append(
            f"line {line}: unknown column(s) {', '.join(repr(name) for name in unknown)}; "
            f"the columns are {', '.join(accepted)}"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        problems.append(f"line {line}: missing required column(s) {', '.join(missing)}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        problems.append(f"line {line}: column(s) {', '.join(repeated)} appear more than once")
    if problems:
        raise InvalidInput(
            "The header line of the file is not usable: " + "; ".join(problems), problems=problems
        )


def _validate_rows(rows: list[CsvRow]) -> dict[str, dict[str, Any]]:
    """Every row as the registry fields it sets, by key; every bad row reported before anything is written."""
    problems: list[str] = []
    bad_lines: set[int] = set()
    records: dict[str, dict[str, Any]] = {}
    first_line_of_key: dict[str, int] = {}
    for row in rows:
        row_problems = _row_problems(row, first_line_of_key, records)
        if row_problems:
            bad_lines.add(row.line)
            problems.extend(f"line {row.line}: {problem}" for problem in row_problems)
    if problems:
        count = len(bad_lines)
        rows_are = "1 row of the file is" if count == 1 else f"{count} rows of the file are"
        raise InvalidInput(f"{rows_are} invalid; nothing was imported", problems=problems)
    return records


def _row_problems(
    row: CsvRow, first_line_of_key: dict[str, int], records: dict[str, dict[str, Any]]
) -> list[str]:
    if row.problem is not None:
        return [row.problem]
    given = {
        name: value.lower() if name in CASE_INSENSITIVE_COLUMNS else value
        for name, value in row.values.items()
        if value  # an empty cell means "no value": the field's default, or "required" if it has none
    }
    problems = []
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
    field = ".".join(str(part) for part in error["loc"]) or "row"
    if error["type"] == "missing":
        return f"{field}: a value is required"
    if field == "key" and error["type"] == "string_pattern_mismatch":
        return (
            f"{field}: '{error['input']}' is not a valid key (lower-case letters, digits and hyphens, "
            "starting with a letter or digit, at most 80 characters)"
        )
    return f"{field}: {error['msg']}"


async def _load_by_keys(session: AsyncSession, keys: Iterable[str]) -> list[Organisation]:
    wanted = list(dict.fromkeys(keys))
    found: list[Organisation] = []
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        chunk = wanted[start : start + KEYS_PER_QUERY]
        found.extend((await session.exec(select(Organisation).where(col(Organisation.key).in_(chunk)))).all())
    return found


def _same_columns(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        batches.setdefault(frozenset(row), []).append(row)
    return list(batches.values())


# ------------------------------------------------------------------------------------ one at a time


@transactional
async def create_organisation(
    session: AsyncSession, *, data: OrganisationCreate, actor: Actor
) -> OrganisationRead:
    existing = (await session.exec(select(Organisation).where(Organisation.key == data.key))).one_or_none()
    if existing is not None:
        raise Conflict(_already_exists(existing))
    organisation = Organisation(**data.model_dump())
    session.add(organisation)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"An organisation with key '{data.key}' already exists.") from exc
    await trail.append(
        session,
        actor=actor,
        action="organisation.created",
        data={"organisation_id": organisation.id, **data.model_dump(mode="json")},
    )
    await session.commit()
    return OrganisationRead.model_validate(organisation)


async def get_organisation(session: AsyncSession, *, key: str) -> OrganisationRead:
    """Archived organisations are found too: past rounds refer to them."""
    return OrganisationRead.model_validate(await _get(session, key))


async def list_organisations(
    session: AsyncSession, *, kind: OrganisationKind | None = None, include_archived: bool = False
) -> list[OrganisationRead]:
    query = select(Organisation)
    if kind is not None:
        query = query.where(Organisation.kind == kind)
    if not include_archived:
        query = query.where(col(Organisation.archived_at).is_(None))
    query = query.order_by(KIND_ORDER, col(Organisation.name_en), col(Organisation.key))
    return [
        OrganisationRead.model_validate(organisation) for organisation in (await session.exec(query)).all()
    ]


@transactional
async def update_organisation(
    session: AsyncSession, *, key: str, data: OrganisationUpdate, actor: Actor
) -> OrganisationRead:
    """Change the fields given; a null clears an optional field. No change, no audit event."""
    organisation = await _get(session, key, for_update=True)
    requested = data.model_dump(exclude_unset=True)
    cleared = sorted(name for name, value in requested.items() if value is None and name in NOT_CLEARABLE)
    if cleared:
        raise InvalidInput(f"{', '.join(cleared)} cannot be empty.")
    changes: dict[str, dict[str, Any]] = {}
    for name, value in requested.items():
        if value is None and OrganisationCreate.model_fields[name].default == "":
            value = ""
        old = getattr(organisation, name)
        if old != value:
            changes[name] = {"old": _plain(old), "new": _plain(value)}
            setattr(organisation, name, value)
    if not changes:
        unchanged = OrganisationRead.model_validate(organisation)
        await session.rollback()  # releases the row lock
        return unchanged
    organisation.updated_at = utcnow()
    session.add(organisation)
    await trail.append(
        session,
        actor=actor,
        action="organisation.updated",
        data={"organisation_id": organisation.id, "key": key, "changes": changes},
    )
    await session.commit()
    return OrganisationRead.model_validate(organisation)


@transactional
async def archive_organisation(session: AsyncSession, *, key: str, actor: Actor) -> OrganisationRead:
    """Hide an organisation from lists and new rounds; its past rounds keep it. Archiving twice is a no-op."""
    organisation = await _get(session, key, for_update=True)
    if organisation.archived_at is not None:
        already = OrganisationRead.model_validate(organisation)
        await session.rollback()  # releases the row lock
        return already
    organisation.archived_at = organisation.updated_at = utcnow()
    session.add(organisation)
    await trail.append(
        session,
        actor=actor,
        action="organisation.archived",
        data={"organisation_id": organisation.id, "key": key},
    )
    await session.commit()
    return OrganisationRead.model_validate(organisation)


async def resolve_keys(session: AsyncSession, *, keys: list[str]) -> dict[str, Organisation]:
    """The active organisations for these keys; InvalidInput names every key that is unknown or archived."""
    found = {organisation.key: organisation for organisation in await _load_by_keys(session, keys)}
    unknown = [key for key in dict.fromkeys(keys) if key not in found]
    archived = [key for key in dict.fromkeys(keys) if key in found and found[key].archived_at is not None]
    problems = [f"unknown organisation key '{key}'" for key in unknown]
    problems += [f"organisation '{key}' is archived" for key in archived]
    if problems:
        raise InvalidInput("Some organisations cannot be used: " + "; ".join(problems), problems=problems)
    return {key: found[key] for key in dict.fromkeys(keys)}


async def _get(session: AsyncSession, key: str, *, for_update: bool = False) -> Organisation:
    query = select(Organisation).where(Organisation.key == key)
    if for_update:
        query = query.with_for_update()
    organisation = (await session.exec(query)).one_or_none()
    if organisation is None:
        raise NotFound(f"There is no organisation with key '{key}'.")
    return organisation


def _already_exists(organisation: Organisation) -> str:
    message = f"An organisation with key '{organisation.key}' already exists"
    if organisation.archived_at is not None:
        return message + " (archived; import it in a CSV file to restore it)."
    return message + "."


def _plain(value: Any) -> Any:
    """Audit data is plain JSON: enum members as their values."""
    return str(value) if isinstance(value, str) else value
