"""The browser's own defences, on every response: what a page may load and run, that it may not be framed,
that a file is what its type says, that no address (a review link's token) leaks in a Referer, and, when
the service is published over https, that browsers come back over https only.

The pages run no inline script (their scripts are files under /static), so the policy allows scripts
from this origin only: markup someone managed to slip into a page cannot run. The API's viewers (/docs,
/redoc) are FastAPI's, which load their script from a CDN and run it inline: they get the same headers
but no Content-Security-Policy, and they show no data of ours, only the API's description.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.settings import Settings

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
API_VIEWERS = ("/docs", "/redoc")
"""FastAPI's Swagger UI and ReDoc (and the OAuth redirect page under /docs)."""
HSTS = "max-age=31536000"


def headers_for(settings: Settings) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if settings.public_base_url.lower().startswith("https://"):
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


class SecurityHeaders:
    """ASGI middleware: adds the headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.common = headers_for(settings)
        self.policy = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        viewer = any(path == prefix or path.startswith(prefix + "/") for prefix in API_VIEWERS)
        added = self.common if viewer else [*self.common, self.policy]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _value in headers}
                headers += [(name, value) for name, value in added if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
