"""Request bodies bounded while they are read, not after: a client cannot make the app take in (and the
form parser spool to disk) more than the route could ever accept.

Each request's limit depends on the kind of path: uploads (a draft, a registry file, a registry preview
confirmed, which carries the file back in hidden fields) may be as large as
`max_upload_request_bytes`; every other form and JSON body `max_request_bytes`. A declared
Content-Length over the limit is answered 413 at once, before a byte of the body is read; a body sent
without one (chunked) is counted as it arrives, and the read that passes the limit fails with 413.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import PayloadTooLarge
from services.settings import MIB, Settings
from services.web import errors

UPLOAD_PATHS = re.compile(
    r"/(?:api/v1|console)/(?:organisations/import(?:/confirm)?|documents(?:/[^/]+/versions)?)"
)
"""The routes that take files: the limit of uploads; everything else, that of forms and JSON."""


def limit_for(path: str, settings: Settings) -> int:
    if UPLOAD_PATHS.fullmatch(path):
        return settings.max_upload_request_bytes
    return settings.max_request_bytes


def too_large(limit: int) -> str:
    size = f"{limit / MIB:g} MB" if limit >= MIB else f"{limit // 1024} KB"
    return f"the request is larger than the {size} allowed here; nothing was recorded"


class BodyLimits:
    """ASGI middleware: refuses a body larger than its path's limit, while it is being read."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("path", ""), self.settings)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = await errors.domain_error_response(Request(scope), PayloadTooLarge(too_large(limit)))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's reading of its body: FastAPI lets an HTTPException through
                    # (anything else it would turn into a 400), and the app's handler answers it.
                    raise HTTPException(413, too_large(limit))
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
