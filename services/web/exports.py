"""A core export (services.exports) as a download."""

from __future__ import annotations

from fastapi.responses import StreamingResponse

from services.exports import Export


def download(export: Export) -> StreamingResponse:
    return StreamingResponse(
        export.chunks,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "Cache-Control": "no-store",
        },
    )
