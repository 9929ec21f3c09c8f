from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from models.audit import AuditEventPage, AuditHeadRead
from services import exports
from services.audit import browse
from services.web.access import API
from services.web.deps import ActionQuery, DatabaseDep, IdQuery, LimitQuery, ReadSession, SeqQuery
from services.web.exports import download
from services.web.routes import ApiRoute

router = APIRouter(prefix=f"{API}/audit", tags=["audit"], route_class=ApiRoute)


@router.get("/events", response_model=AuditEventPage)
async def events(
    session: ReadSession,
    round_id: IdQuery = None,
    task_id: IdQuery = None,
    action: ActionQuery = None,
    after_seq: SeqQuery = 0,
    limit: LimitQuery = 100,
) -> AuditEventPage:
    """Page through the trail in seq order; pass `next_after_seq` back as `after_seq` for the next page."""
    return await browse.list_events(
        session, round_id=round_id, task_id=task_id, action=action, after_seq=after_seq, limit=limit
    )


@router.get("/head", response_model=AuditHeadRead)
async def head(session: ReadSession) -> AuditHeadRead:
    """The end of the chain now: `{"seq": N, "hash": "<64 hex digits>"}`, the seq and hash of the last
    event (0 and 64 zeros before the first).

    An auditor notes it (or has it minuted somewhere the operators of this service cannot rewrite) and
    later checks that an export still reaches exactly that event with that hash:
    `roundtable audit verify FILE --head SEQ:HASH`. The chain alone shows that no event in the file was
    changed or removed; the noted head also shows that none was cut off its end, and that the chain up to
    it was not rewritten and hashed afresh.
    """
    return AuditHeadRead.model_validate(await browse.chain_head(session), from_attributes=True)


@router.get("/export", response_class=StreamingResponse)
async def export(db: DatabaseDep) -> StreamingResponse:
    """The whole hash chain as JSON Lines; check it with `roundtable audit verify FILE`."""
    return download(exports.audit_trail(db))
