"""The lost-link page under /links/lost: anyone types an email address; a contact of an open task gets
their links by email (services.lost_links).

The answer is one page, the same for every address: nothing on it, in its status or its headers says
whether a message went. A form that is refused (its CSRF token, an address that is not one, a client
over its limit) comes back with the message, the same whatever the address.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel.ext.asyncio.session import AsyncSession

from services import lost_links
from services.web import csrf
from services.web.deps import Client, SchedulerDep, SettingsDep, Submitted, WriteSession, web_state
from services.web.forms import LostLinkForm
from services.web.i18n import N_
from services.web.routes import PublicRoute, Refused, shows_refused
from workflows.client import Scheduler

router = APIRouter(prefix="/links", include_in_schema=False, route_class=PublicRoute)

ANSWER = N_(
    "If this address belongs to a focal point or alternate of an open consultation, a message with their "
    "links is on its way. It may take a few minutes; look in the spam folder too."
)
ANSWER_SQ = (
    "Nëse kjo adresë i përket një pike fokale ose zëvendësi të një konsultimi të hapur, një mesazh me "
    "lidhjet e tyre është rrugës. Mund të zgjasë disa minuta; shikoni edhe dosjen e postës së padëshiruar."
)
CSRF_REFUSED = N_(
    "This form has expired or did not come from this site, so nothing was sent. Type the address again."
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
# The loop keeps only weak references to tasks: a wake-up must not be collected half-way.
_WAKING: set[asyncio.Task[None]] = set()


def _render(
    request: Request,
    *,
    status_code: int = 200,
    email: str = "",
    error: str | None = None,
    answered: bool = False,
) -> Response:
    state = web_state(request)
    context: dict[str, Any] = {
        "email": email,
        "error": error,
        "answer": ANSWER if answered else None,
        "answer_sq": ANSWER_SQ if answered else None,
    }
    return csrf.render(
        request,
        state.templates,
        state.settings,
        "lost_link.html",
        context,
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


async def _show_refused(request: Request, _session: AsyncSession, refused: Refused) -> Response:
    if isinstance(refused.error, csrf.CsrfFailed):
        # What was typed is not put back: another site must not prepare a filled-in form for one click.
        return _render(request, status_code=403, error=CSRF_REFUSED)
    typed = refused.form.typed(request.path_params)
    return _render(request, status_code=refused.status_code, email=typed["email"], error=refused.message)


@router.get("/lost")
async def lost_link_form(request: Request) -> Response:
    return _render(request)


def _wake(scheduler: Scheduler, round_id: int) -> None:
    """Ask the round's scheduler to deliver the message now, apart from the request: the answer must not
    wait for it (a page answered later for a contact would tell). Best effort: the reconciler wakes a
    round with email due anyway."""
    task = asyncio.create_task(scheduler.wake(round_id))
    _WAKING.add(task)
    task.add_done_callback(_WAKING.discard)


@router.post("/lost")
@shows_refused(_show_refused)
async def request_lost_links(
    request: Request,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    client: Client,
    form: Submitted[LostLinkForm],
) -> Response:
    outcome = await lost_links.request_links(session, email=form.address(), client=client, settings=settings)
    if outcome.round_id is not None:
        _wake(scheduler, outcome.round_id)
    return _render(request, answered=True)
