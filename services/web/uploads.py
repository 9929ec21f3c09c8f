"""Reading uploaded files with a size limit, before anything reaches a service."""

from __future__ import annotations

from fastapi import UploadFile

from services.errors import InvalidInput, PayloadTooLarge

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


async def read_upload(upload: UploadFile, *, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit // (1024 * 1024)} MB")
    if not content:
        raise InvalidInput("the file is empty")
    return content
