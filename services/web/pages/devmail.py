"""The dev mailbox viewer under /dev/mail: every email the local SMTP sink received, with clickable links.

Mounted only outside production (see the app factory), and without sign-in: it exists so that a developer
can open a focal point's review link in one click. The handlers are plain functions because they read
files; FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup, escape

from notifications.mailbox import DevMailbox, MailboxEntry
from services.errors import NotFound
from services.web import csrf
from services.web.deps import CountQuery, Mailbox, PageNumberQuery, SettingsDep, Submitted, Templates
from services.web.forms import CsrfForm
from services.web.routes import PublicRoute

router = APIRouter(prefix="/dev/mail", include_in_schema=False, route_class=PublicRoute)

MESSAGES_PER_PAGE = 50
# The same notion of a link as notifications.mailbox.parse_links, but with positions, to linkify text.
_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?"
SHOWN_HEADERS = ("From", "Reply-To", "To", "Subject", "Date", "Message-ID")


@dataclass(frozen=True)
class ListedMessage:
    entry: MailboxEntry
    links: list[str]


def linkify(text: str) -> Markup:
    """Plain text as HTML in which only http(s) URLs become links; everything else is escaped."""
    pieces: list[Markup] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING_PUNCTUATION)
        pieces.append(escape(text[position : match.start()]))
        # Markup.format escapes the URL, so a quote or bracket in it cannot end the attribute.
        pieces.append(Markup('<a href="{0}" rel="noreferrer">{0}</a>').format(url))
        position = match.start() + len(url)
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)


def link_label(url: str) -> str:
    """A link as the list shows it: the path (e.g. /t/...) is what tells review links apart."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "") or url


def _listed(mailbox: DevMailbox, entries: list[MailboxEntry]) -> list[ListedMessage]:
    listed = []
    for entry in entries:
        try:
            links = mailbox.get(entry.key).links
        except KeyError:  # cleared while the page was built
            continue
        listed.append(ListedMessage(entry, links))
    return listed


def _render(
    request: Request, templates: Templates, settings: SettingsDep, name: str, context: dict[str, Any]
) -> Response:
    return csrf.render(
        request,
        templates,
        settings,
        name,
        # A developer's tool, in English only: no language switch.
        {"link_label": link_label, "lang": "en", "language_links": [], **context},
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get("")
def inbox(
    request: Request,
    templates: Templates,
    settings: SettingsDep,
    mailbox: Mailbox,
    page: PageNumberQuery = 1,
    cleared: CountQuery = None,
) -> Response:
    """The messages received, newest first, with the links found in each."""
    total = mailbox.count()
    messages = _listed(mailbox, mailbox.list(limit=MESSAGES_PER_PAGE, offset=(page - 1) * MESSAGES_PER_PAGE))
    pages = max(1, -(-total // MESSAGES_PER_PAGE))
    return _render(
        request,
        templates,
        settings,
        "devmail/inbox.html",
        {
            "messages": messages,
            "total": total,
            "page": page,
            "pages": pages,
            "cleared": cleared,
            "directory": str(mailbox.directory),
        },
    )


@router.post("/clear")
def clear(mailbox: Mailbox, _form: Submitted[CsrfForm]) -> Response:
    removed = mailbox.clear()
    return RedirectResponse(f"/dev/mail?cleared={removed}", status_code=303)


@router.get("/{key}")
def message(
    request: Request, templates: Templates, settings: SettingsDep, mailbox: Mailbox, key: str
) -> Response:
    """One message: its headers, its text with clickable links, its HTML isolated in a sandboxed frame."""
    try:
        found = mailbox.get(key)
    except KeyError:
        raise NotFound(
            f"There is no message '{key}' in the dev mailbox (it may have been cleared)."
        ) from None
    return _render(
        request,
        templates,
        settings,
        "devmail/message.html",
        {
            "message": found,
            "headers": [(name, found.header(name)) for name in SHOWN_HEADERS],
            "text_html": linkify(found.text),
        },
    )
