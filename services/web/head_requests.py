"""HEAD answered as GET without the body, on every route that answers GET.

Mail scanners and link previews check a link with HEAD before (or instead of) fetching it; FastAPI's
routes answer only the methods they declare, so a review link answered HEAD with 405. A GET changes
nothing anywhere in the app (a review page's opening is recorded by its script's POST), so a HEAD run as
the GET it stands for changes nothing either; its answer keeps GET's status and headers, Content-Length
included, as HTTP says, and sends no body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: a HEAD request goes through the app as a GET; the body it answers is dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
