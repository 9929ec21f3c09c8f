"""The stakeholder registry: organisations and their contacts, kept by import (`registry_import`) or one at
a time, listed and searched.

Organisations are never deleted, only archived, so that past rounds keep pointing at them; an archived
organisation is left out of lists and cannot be added to a new round until an import brings it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import case, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.enums import OrganisationKind
from models.organisations import (
    ImportResult,
    Organisation,
    OrganisationCreate,
    OrganisationPage,
    OrganisationRead,
    OrganisationUpdate,
)
from models.types import utcnow
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, NotFound

# Bound the number of bound parameters of one IN (...) query (SQLite and asyncpg both cap them).
KEYS_PER_QUERY = 2_000
# Kinds in the order the vocabulary lists them (ministries first), not alphabetically.
KIND_ORDER = case(
    {kind.value: position for position, kind in enumerate(OrganisationKind)},
    value=col(Organisation.kind),
    else_=len(OrganisationKind),
)
# Required fields an update may not clear.
NOT_CLEARABLE = {"name_en", "kind", "focal_point_email", "language"}
PAGE_SIZE = 100
MAX_SEARCH_LENGTH = 200
# What a search looks in: both names, the key and every address.
SEARCHED = (
    Organisation.name_en,
    Organisation.name_sq,
    Organisation.key,
    Organisation.focal_point_email,
    Organisation.alternate_email,
    Organisation.escalation_email,
    Organisation.focal_point_name,
    Organisation.alternate_name,
)


async def import_csv(session: AsyncSession, *, content: bytes, actor: Actor) -> ImportResult:
    """Create or update organisations from a CSV or XLSX file, all rows or none, leaving the contacts of
    open tasks as they are: `registry_import.import_registry`, which also previews and confirms."""
    from services import registry_import  # it reaches open rounds, whose module imports this one

    return await registry_import.import_registry(session, content=content, actor=actor)


async def load_by_keys(session: AsyncSession, keys: Iterable[str]) -> list[Organisation]:
    """The organisations of these keys, archived ones included, in chunks of KEYS_PER_QUERY."""
    wanted = list(dict.fromkeys(keys))
    found: list[Organisation] = []
    for start in range(0, len(wanted), KEYS_PER_QUERY):
        chunk = wanted[start : start + KEYS_PER_QUERY]
        found.extend((await session.exec(select(Organisation).where(col(Organisation.key).in_(chunk)))).all())
    return found


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
    return OrganisationRead.model_validate(await get_row(session, key))


async def list_organisations(
    session: AsyncSession,
    *,
    kind: OrganisationKind | None = None,
    include_archived: bool = False,
    search: str = "",
) -> list[OrganisationRead]:
    query = _matching(select(Organisation), search=search, include_archived=include_archived)
    if kind is not None:
        query = query.where(Organisation.kind == kind)
    query = query.order_by(KIND_ORDER, col(Organisation.name_en), col(Organisation.key))
    return [
        OrganisationRead.model_validate(organisation) for organisation in (await session.exec(query)).all()
    ]


async def search_organisations(
    session: AsyncSession,
    *,
    search: str = "",
    kind: OrganisationKind | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> OrganisationPage:
    """A page of the active organisations whose names (English or Albanian), key, contacts' names or
    addresses contain `search` (ignoring case), of one kind or all, in the registry's order (kind, then
    name). A page past the last is the last."""
    counts_query = _matching(
        select(Organisation.kind, func.count()).group_by(col(Organisation.kind)), search=search
    )
    by_kind = {str(kind_): count for kind_, count in (await session.exec(counts_query)).all()}
    total = by_kind.get(str(kind), 0) if kind is not None else sum(by_kind.values())
    last = max(1, -(-total // page_size))
    page = min(max(page, 1), last)
    query = _matching(select(Organisation), search=search)
    if kind is not None:
        query = query.where(Organisation.kind == kind)
    query = (
        query.order_by(KIND_ORDER, col(Organisation.name_en), col(Organisation.key))
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return OrganisationPage(
        organisations=[OrganisationRead.model_validate(row) for row in (await session.exec(query)).all()],
        total=total,
        page=page,
        page_size=page_size,
        by_kind={str(kind_): by_kind[str(kind_)] for kind_ in OrganisationKind if str(kind_) in by_kind},
    )


def _matching(query: Any, *, search: str, include_archived: bool = False) -> Any:
    if not include_archived:
        query = query.where(col(Organisation.archived_at).is_(None))
    words = search.strip().lower()[:MAX_SEARCH_LENGTH]
    if words:
        # LIKE with its wildcards escaped: a '%' or '_' typed is looked for as itself.
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(*(func.lower(func.coalesce(column, "")).like(pattern, escape="\\") for column in SEARCHED))
        )
    return query


@transactional
async def update_organisation(
    session: AsyncSession, *, key: str, data: OrganisationUpdate, actor: Actor
) -> OrganisationRead:
    """Change the fields given; a null clears an optional field. No change, no audit event."""
    organisation = await get_row(session, key, for_update=True)
    changes = apply_update(organisation, data)
    if not changes:
        unchanged = OrganisationRead.model_validate(organisation)
        await session.rollback()  # releases the row lock
        return unchanged
    session.add(organisation)
    await trail.append(
        session,
        actor=actor,
        action="organisation.updated",
        data={"organisation_id": organisation.id, "key": key, "changes": changes},
    )
    await session.commit()
    return OrganisationRead.model_validate(organisation)


def apply_update(organisation: Organisation, data: OrganisationUpdate) -> dict[str, dict[str, Any]]:
    """Set the fields `data` gives on the (locked) row; the changes as {field: {old, new}}. InvalidInput
    when a required field would be cleared."""
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
            changes[name] = {"old": plain(old), "new": plain(value)}
            setattr(organisation, name, value)
    if changes:
        organisation.updated_at = utcnow()
    return changes


@transactional
async def archive_organisation(session: AsyncSession, *, key: str, actor: Actor) -> OrganisationRead:
    """Hide an organisation from lists and new rounds; its past rounds keep it. Archiving twice is a no-op."""
    organisation = await get_row(session, key, for_update=True)
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
    found = {organisation.key: organisation for organisation in await load_by_keys(session, keys)}
    unknown = [key for key in dict.fromkeys(keys) if key not in found]
    archived = [key for key in dict.fromkeys(keys) if key in found and found[key].archived_at is not None]
    problems = [f"unknown organisation key '{key}'" for key in unknown]
    problems += [f"organisation '{key}' is archived" for key in archived]
    if problems:
        raise InvalidInput("Some organisations cannot be used: " + "; ".join(problems), problems=problems)
    return {key: found[key] for key in dict.fromkeys(keys)}


async def get_row(session: AsyncSession, key: str, *, for_update: bool = False) -> Organisation:
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


def plain(value: Any) -> Any:
    """Audit data is plain JSON: enum members as their values."""
    return str(value) if isinstance(value, str) else value
