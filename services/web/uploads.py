"""Reading uploaded files with a size limit, before anything reaches a service."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import UploadFile

from services.errors import InvalidInput, PayloadTooLarge

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    filename: str
    content: bytes


async def read_upload(
    upload: UploadFile | None, *, missing: str = "choose a file to upload", limit: int = MAX_UPLOAD_BYTES
) -> Uploaded:
    """The file's name and bytes; `missing` is the message when the form came without a file."""
    if upload is None:
        raise InvalidInput(missing)
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit // (1024 * 1024)} MB")
    if not content:
        raise InvalidInput("the file is empty")
    return Uploaded(filename=upload.filename or "", content=content)
