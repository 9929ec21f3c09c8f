"""Downloads, built as bytes: the routes that offer them only stream what these give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.audit import browse
from services.db import Database


@dataclass(frozen=True)
class Export:
    filename: str
    media_type: str
    chunks: AsyncIterator[bytes]


def audit_trail(db: Database) -> Export:
    """The whole hash chain as JSON Lines; `roundtable audit verify FILE` checks it.

    It reads through a session of its own, since a download is sent after the request that asked for it
    has let go of its session; one chunk per page of events, not per line."""

    async def chunks() -> AsyncIterator[bytes]:
        async with db.session() as session:
            async for page in browse.export_pages(session):
                yield "".join(page).encode("utf-8")

    return Export(filename="roundtable-audit.jsonl", media_type="application/x-ndjson", chunks=chunks())
