from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from models.audit import AuditEventPage
from services import audit
from services.web.deps import MAX_ID, ApiRoute, DatabaseDep, IdQuery, Reader, ReadSession

router = APIRouter(prefix="/audit", tags=["audit"], route_class=ApiRoute)


@router.get("/events", response_model=AuditEventPage)
async def events(
    session: ReadSession,
    _principal: Reader,
    round_id: IdQuery = None,
    task_id: IdQuery = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    after_seq: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditEventPage:
    """Page through the trail in seq order; pass `next_after_seq` back as `after_seq` for the next page."""
    return await audit.list_events(
        session, round_id=round_id, task_id=task_id, action=action, after_seq=after_seq, limit=limit
    )


@router.get("/export", response_class=StreamingResponse)
async def export(db: DatabaseDep, _principal: Reader) -> StreamingResponse:
    """The whole hash chain as JSON Lines; check it with `roundtable audit verify FILE`."""

    async def lines():  # type: ignore[no-untyped-def]
        async with db.session() as session:
            async for line in audit.export_lines(session):
                yield line

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="roundtable-audit.jsonl"'},
    )
