"""The new-round wizard: one page of numbered steps that creates a draft round, the same page editing a
draft until it is launched, deleting a draft, and the previews of what the round's people will get (the
invitation in each language, the review page of each organisation).

Everything works as plain form posts: the wizard's "Update" button shows the page again with the chosen
version's sections and the working days counted, saving nothing; new_round.js only does the same sooner.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import ConsultationRole
from services import rounds
from services.errors import Conflict
from services.web import wizard_views
from services.web.console_page import Page
from services.web.csrf import CsrfFailed
from services.web.deps import (
    ConsolePage,
    FilterQuery,
    IdPath,
    ReadSession,
    SettingsDep,
    SignedIn,
    Submitted,
    WriteSession,
    console_page,
    console_principal,
    parse_id,
)
from services.web.forms import CsrfForm, RoundForm
from services.web.routes import ConsoleRoute, Refused, shows_refused

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


async def _signed_in_page(request: Request) -> Page:
    return console_page(request, await console_principal(request))


def _shown(refused: Refused) -> dict[str, Any]:
    """A refused wizard's status and message; a launched round's refusal is the error page's (409)."""
    if isinstance(refused.error, CsrfFailed | Conflict):
        raise refused.error
    if isinstance(refused.error, ValidationError):
        return {"status_code": 422, "error": refused.message, "problems": []}
    # A form field naming something that does not exist (a version, an organisation) is a bad form.
    status_code = 422 if refused.status_code == 404 else refused.status_code
    return {"status_code": status_code, "error": refused.message, "problems": refused.problems}


async def _wizard(
    page: Page,
    session: AsyncSession,
    form: dict[str, Any],
    *,
    round_id: int | None = None,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
) -> Response:
    choices = await wizard_views.wizard_choices(session)
    timezone = page.settings.timezone
    return page.render(
        "console/new_round.html",
        {
            "nav": "rounds",
            "choices": choices,
            "version": choices.version(str(form.get("document_version_id") or "")),
            "roles": list(ConsultationRole),
            "form": form,
            "round_id": round_id,
            "action": f"/console/rounds/{round_id}/edit" if round_id else "/console/rounds",
            "period": wizard_views.period_hint(form, timezone),
            "calendar": wizard_views.calendar(timezone),
            "error": error,
            "problems": problems or [],
        },
        status_code=status_code,
    )


# ------------------------------------------------------------------------------------- a new round


@router.get("/rounds/new")
async def new_round(page: ConsolePage, session: ReadSession) -> Response:
    return await _wizard(page, session, wizard_views.new_form(page.settings.timezone))


async def _new_round_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    page = await _signed_in_page(request)
    return await _wizard(page, session, refused.form.typed(request.path_params), **_shown(refused))


@router.post("/rounds")
@shows_refused(_new_round_refused)
async def create_round(
    page: ConsolePage,
    principal: SignedIn,
    session: WriteSession,
    settings: SettingsDep,
    form: Submitted[RoundForm],
) -> Response:
    if form.updating:
        return await _wizard(page, session, form.typed({}))
    data = form.round_create(settings.timezone)
    created = await rounds.create_round(session, data=data, actor=principal.actor, user_id=principal.user_id)
    return RedirectResponse(f"/console/rounds/{created.id}?done=created", status_code=303)


# ------------------------------------------------------------------------------------------ a draft


@router.get("/rounds/{round_id}/edit")
async def edit_round(page: ConsolePage, session: ReadSession, round_id: IdPath) -> Response:
    """The wizard filled in with the draft; 409 once the round is launched."""
    choices = await wizard_views.wizard_choices(session)
    form = await wizard_views.draft_form(session, round_id=round_id, choices=choices)
    return await _wizard(page, session, form, round_id=round_id)


async def _edit_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    round_id = parse_id(str(request.path_params.get("round_id", "")))
    if round_id is None:
        raise refused.error
    shown = _shown(refused)
    await wizard_views.draft_of(session, round_id=round_id)  # gone or launched meanwhile: its own page
    page = await _signed_in_page(request)
    return await _wizard(page, session, refused.form.typed(request.path_params), round_id=round_id, **shown)


@router.post("/rounds/{round_id}/edit")
@shows_refused(_edit_refused)
async def update_round(
    page: ConsolePage,
    principal: SignedIn,
    session: WriteSession,
    settings: SettingsDep,
    round_id: IdPath,
    form: Submitted[RoundForm],
) -> Response:
    if form.updating:
        await wizard_views.draft_of(session, round_id=round_id)
        return await _wizard(page, session, form.typed({}), round_id=round_id)
    data = form.round_update(settings.timezone)
    await rounds.update_draft(session, round_id=round_id, data=data, actor=principal.actor)
    return RedirectResponse(f"/console/rounds/{round_id}?done=updated", status_code=303)


@router.post("/rounds/{round_id}/delete")
async def delete_round(
    principal: SignedIn, session: WriteSession, round_id: IdPath, _form: Submitted[CsrfForm]
) -> Response:
    """Delete the draft (409 once launched), back to the list of rounds."""
    await rounds.delete_draft(session, round_id=round_id, actor=principal.actor)
    return RedirectResponse("/console?done=deleted", status_code=303)


# ----------------------------------------------------------------------------------------- previews


@router.get("/rounds/{round_id}/preview/invitation")
async def preview_invitation(
    page: ConsolePage, session: ReadSession, round_id: IdPath, language: FilterQuery = ""
) -> Response:
    """The invitation as a contact reading `?language=` (en, sq) gets it, with an example link. The
    query is not `?lang=`, which switches the console's own language."""
    preview = await wizard_views.invitation_preview(
        session, round_id=round_id, language=language, settings=page.settings
    )
    return page.render("console/preview_invitation.html", {"nav": "rounds", "preview": preview})


@router.get("/rounds/{round_id}/preview/review")
async def preview_review(
    page: ConsolePage, session: ReadSession, round_id: IdPath, organisation: FilterQuery = ""
) -> Response:
    """The review page of `?organisation=` (a key; the first one by name if none), read-only, in the
    organisation's language unless the console's was switched."""
    preview = await wizard_views.review_preview(session, round_id=round_id, organisation_key=organisation)
    return page.render(
        "console/preview_review.html",
        {"nav": "rounds", "preview": preview, "default_language": str(preview.organisation.language)},
    )
