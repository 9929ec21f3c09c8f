from __future__ import annotations

from fastapi import APIRouter, status

from models.documents import DocumentRead
from services import documents
from services.web.access import API
from services.web.deps import (
    ApiPrincipal,
    DraftFile,
    DraftTitle,
    IdPath,
    ReadSession,
    UploadedFile,
    WriteSession,
)
from services.web.routes import ApiRoute
from services.web.uploads import read_upload

router = APIRouter(prefix=f"{API}/documents", tags=["drafts"], route_class=ApiRoute)


@router.post("", response_model=DocumentRead, status_code=status.HTTP_201_CREATED)
async def upload_document(
    session: WriteSession,
    principal: ApiPrincipal,
    file: DraftFile,
    title: DraftTitle = "",
) -> DocumentRead:
    """Import a draft; `##` headings become sections, numbered paragraphs keep their numbers."""
    upload = await read_upload(file)
    return await documents.create_document(
        session,
        title=title,
        filename=upload.filename or "draft.md",
        content=upload.content,
        actor=principal.actor,
    )


@router.get("", response_model=list[DocumentRead])
async def list_documents(session: ReadSession) -> list[DocumentRead]:
    return await documents.list_documents(session)


@router.get("/{document_id}", response_model=DocumentRead)
async def get_document(session: ReadSession, document_id: IdPath) -> DocumentRead:
    return await documents.get_document(session, document_id=document_id)


@router.post("/{document_id}/versions", response_model=DocumentRead, status_code=status.HTTP_201_CREATED)
async def upload_revision(
    session: WriteSession, principal: ApiPrincipal, document_id: IdPath, file: UploadedFile
) -> DocumentRead:
    """Add a revised draft (the text of a later round) as the document's next version."""
    upload = await read_upload(file)
    return await documents.add_version(
        session,
        document_id=document_id,
        filename=upload.filename or "draft.md",
        content=upload.content,
        actor=principal.actor,
    )
