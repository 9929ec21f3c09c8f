"""Downloads shared by the API and the console."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from services import audit
from services.db import Database

AUDIT_EXPORT_FILENAME = "roundtable-audit.jsonl"


def audit_export(db: Database) -> StreamingResponse:
    """The whole hash chain as JSON Lines, streamed; `roundtable audit verify FILE` checks it."""

    async def pages() -> AsyncIterator[str]:
        # The body is sent after the request's dependencies are closed: it reads through its own session.
        # One write per page, not per line: a million tiny ASGI messages cost more than building them.
        async with db.session() as session:
            async for page in audit.export_pages(session):
                yield "".join(page)

    return StreamingResponse(
        pages(),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="{AUDIT_EXPORT_FILENAME}"',
            "Cache-Control": "no-store",
        },
    )
