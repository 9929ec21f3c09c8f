from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, status

from models.enums import OrganisationKind
from models.organisations import ImportResult, OrganisationCreate, OrganisationRead, OrganisationUpdate
from services import organisations, registry_import
from services.web.access import API
from services.web.deps import (
    ApiPrincipal,
    ConfirmOpenRoundsQuery,
    DryRunQuery,
    KeyPath,
    ReadSession,
    RegistrySearchQuery,
    SchedulerDep,
    SettingsDep,
    UploadedFile,
    WriteSession,
)
from services.web.routes import ApiRoute
from services.web.uploads import read_upload

router = APIRouter(prefix=f"{API}/organisations", tags=["registry"], route_class=ApiRoute)


@router.post("/import", response_model=ImportResult)
async def import_registry(
    read: ReadSession,
    write: WriteSession,
    principal: ApiPrincipal,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    file: UploadedFile,
    dry_run: DryRunQuery = False,
    confirm_open_rounds: ConfirmOpenRoundsQuery = False,
) -> ImportResult:
    """Create or update organisations from a CSV or XLSX file, matched by key. Columns the import does
    not know are ignored (`ignored_columns`). A file with bad lines imports nothing and gets 422 listing
    every one; `dry_run=true` lists them (`rejected`) with everything the import would change, and
    saves nothing."""
    upload = await read_upload(file, limit=registry_import.MAX_FILE_BYTES)
    if dry_run:
        return await registry_import.preview(read, content=upload.content, filename=upload.filename)
    result = await registry_import.import_registry(
        write,
        content=upload.content,
        filename=upload.filename,
        actor=principal.actor,
        settings=settings,
        change_open_tasks=confirm_open_rounds,
    )
    if result.open_task_contacts_changed:
        for round_id in sorted({touched.round_id for touched in result.open_rounds_touched}):
            background.add_task(scheduler.wake, round_id)
    return result


@router.get("", response_model=list[OrganisationRead])
async def list_registry(
    session: ReadSession, kind: OrganisationKind | None = None, q: RegistrySearchQuery = ""
) -> list[OrganisationRead]:
    return await organisations.list_organisations(session, kind=kind, search=q)


@router.post("", response_model=OrganisationRead, status_code=status.HTTP_201_CREATED)
async def create_organisation(
    session: WriteSession, principal: ApiPrincipal, data: OrganisationCreate
) -> OrganisationRead:
    return await organisations.create_organisation(session, data=data, actor=principal.actor)


@router.get("/{key}", response_model=OrganisationRead)
async def get_organisation(session: ReadSession, key: KeyPath) -> OrganisationRead:
    return await organisations.get_organisation(session, key=key)


@router.patch("/{key}", response_model=OrganisationRead)
async def update_organisation(
    session: WriteSession, principal: ApiPrincipal, key: KeyPath, data: OrganisationUpdate
) -> OrganisationRead:
    return await organisations.update_organisation(session, key=key, data=data, actor=principal.actor)


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT)
async def archive_organisation(session: WriteSession, principal: ApiPrincipal, key: KeyPath) -> None:
    """Archive: the organisation leaves the registry's lists and new rounds; past rounds keep it."""
    await organisations.archive_organisation(session, key=key, actor=principal.actor)
