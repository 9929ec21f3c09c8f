"""What every console page renders with: the signed-in user, what they may do, the CSRF token, a notice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from services.settings import Settings
from services.users import Principal
from services.web import csrf
from services.web.access import CHANGERS
from services.web.i18n import N_

# Shown after a redirect (?done=...); a reload shows the same page without doing anything again.
NOTICES = {
    "created": N_("The round was created as a draft. Check it, then launch it to send the invitations."),
    "updated": N_("The draft round was saved."),
    "deleted": N_("The draft round was deleted."),
    "launched": N_("The round was launched: its scheduler is sending the invitations now."),
    "already-open": N_("The round was already open; nothing new was started."),
    "uploaded": N_("The draft was imported."),
    "revised": N_("The revised draft was added as the document's next version."),
    "extended": N_("The deadline was extended; everyone affected is being told."),
    "closed": N_("The round is closed."),
    "cancelled": N_(
        "The round is cancelled; everyone invited is being told, and their links no longer work."
    ),
    "added": N_("The organisation was added; its contacts are being invited."),
    "withdrawn": N_("The organisation was withdrawn and is being told."),
    "resent": N_("Its links are being sent again."),
    "replaced": N_(
        "The contact was replaced: the old link no longer works, the new person is being invited."
    ),
    "reopened": N_("The sign-off was reopened; the earlier one stays on record, superseded."),
    "granted": N_("The request was granted; the organisation is being told its new deadline."),
    "refused": N_("The request was refused; whoever asked is being told why."),
}


ROLES = (N_("coordinator"), N_("auditor"), N_("admin"))
"""The roles as the console's header shows them, for the catalogs."""


def may_change(principal: Principal) -> bool:
    """Whether the page offers its forms: the console's forms are for the CHANGERS of the access table."""
    return principal.role in CHANGERS


@dataclass(frozen=True)
class Page:
    """What every console page needs to render: the request, the templates, settings and the user."""

    request: Request
    templates: Jinja2Templates
    settings: Settings
    principal: Principal | None

    def render(self, name: str, context: dict[str, Any], *, status_code: int = 200) -> Response:
        done = self.request.query_params.get("done", "")
        return csrf.render(
            self.request,
            self.templates,
            self.settings,
            name,
            {
                "default_language": "en",  # the console's; a person switches it (i18n)
                "principal": self.principal,
                "can_change": self.principal is not None and may_change(self.principal),
                "show_devmail": not self.settings.is_production,
                "timezone": self.settings.timezone,
                "notice": NOTICES.get(done) if status_code == 200 else None,
                "error": None,
                "problems": [],
                **context,
            },
            status_code=status_code,
            headers={"Cache-Control": "no-store"},
        )
