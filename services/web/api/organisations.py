from __future__ import annotations

from fastapi import APIRouter, status

from models.enums import OrganisationKind
from models.organisations import ImportResult, OrganisationCreate, OrganisationRead, OrganisationUpdate
from services import organisations
from services.web.access import API
from services.web.deps import ApiPrincipal, KeyPath, ReadSession, UploadedFile, WriteSession
from services.web.routes import ApiRoute
from services.web.uploads import read_upload

router = APIRouter(prefix=f"{API}/organisations", tags=["registry"], route_class=ApiRoute)


@router.post("/import", response_model=ImportResult)
async def import_registry(session: WriteSession, principal: ApiPrincipal, file: UploadedFile) -> ImportResult:
    """Create or update organisations from a CSV file, matched by key. A file with bad rows imports
    nothing and gets 422 listing every bad line."""
    upload = await read_upload(file)
    return await organisations.import_csv(session, content=upload.content, actor=principal.actor)


@router.get("", response_model=list[OrganisationRead])
async def list_registry(session: ReadSession, kind: OrganisationKind | None = None) -> list[OrganisationRead]:
    return await organisations.list_organisations(session, kind=kind)


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
