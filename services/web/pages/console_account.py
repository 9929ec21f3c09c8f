"""The console's account pages: "Your account" (your API tokens and console sessions, each revocable,
and a new token shown once) and the forgotten-password pages (asking for a link; choosing the new
password through it).

The forgotten-password page answers the same for every address (services.password_resets). The reset
link's page is never cached and sends no Referer; opening it changes nothing, only its form does.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Language
from models.types import utcnow
from models.users import ApiTokenIssued, CredentialKind
from services import accounts, password_resets
from services.web import csrf, i18n
from services.web.console_page import Page
from services.web.csrf import secure_cookies
from services.web.deps import (
    CONSOLE_COOKIE,
    Client,
    ConsolePage,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    SignedIn,
    SignInPage,
    Submitted,
    WriteSession,
    console_page,
    console_principal,
)
from services.web.forms import CsrfForm, ForgotPasswordForm, IssueTokenForm, ResetPasswordForm
from services.web.i18n import N_
from services.web.routes import LOGIN_PATH, ConsoleRoute, Refused, shows_refused
from workflows.client import Scheduler

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)

ACCOUNT_PATH = "/console/account"
NOTICES = {
    "token-revoked": N_("The API token was revoked: it no longer works."),
    "session-ended": N_("The session was ended: that browser is signed out."),
    "sessions-ended": N_("Every other session was ended: only this browser is still signed in."),
}
FORGOT_ANSWER = N_(
    "If this address belongs to an account, a message with a link to choose a new password is on its way. "
    "The link works for 30 minutes, once. Look in the spam folder too."
)
CSRF_REFUSED = N_("This form has expired or did not come from this site, so nothing was done. Try again.")
RESET_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
# The loop keeps only weak references to tasks: a delivery asked for must not be collected half-way.
_DELIVERING: set[asyncio.Task[None]] = set()


def _deliver_soon(scheduler: Scheduler) -> None:
    """Have the email of no round delivered now, apart from the request: the answer must not wait for it
    (a page answered later for an account would tell). Best effort: the reconciler delivers it anyway."""
    task = asyncio.create_task(scheduler.deliver_unrouted())
    _DELIVERING.add(task)
    task.add_done_callback(_DELIVERING.discard)


def _language(request: Request) -> Language:
    return Language(i18n.language_of(request, "en"))


def _with_headers(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response


# ----------------------------------------------------------------------------------- your account


async def _account(
    page: Page,
    session: AsyncSession,
    *,
    issued: ApiTokenIssued | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    principal = page.principal
    assert principal is not None
    idle = page.settings.console_idle_minutes
    tokens = await accounts.api_tokens(session, user_id=principal.user_id)
    sessions = await accounts.console_sessions(
        session, user_id=principal.user_id, idle=timedelta(minutes=idle)
    )
    done = page.request.query_params.get("done", "")
    return page.render(
        "console/account.html",
        {
            "nav": "account",
            "tokens": tokens,
            "sessions": sessions,
            "current_session": principal.credential_id,
            "issued": issued,
            "form": form or {"label": "", "lifetime_days": ""},
            "longest_days": page.settings.api_token_lifetime_days,
            "idle_minutes": idle,
            "now": utcnow(),
            "notice": NOTICES.get(done) if status_code == 200 and issued is None else None,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/account")
async def account(page: ConsolePage, session: ReadSession) -> Response:
    """Your API tokens (newest first, with expiry and last use) and the console sessions that still work,
    this one marked, each with its button; a form to issue a token."""
    return await _account(page, session)


async def _account_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    if isinstance(refused.error, csrf.CsrfFailed):
        raise refused.error
    page = console_page(request, await console_principal(request))
    if page.principal is None:
        raise refused.error
    status_code = 422 if refused.status_code == 404 else refused.status_code
    return await _account(
        page,
        session,
        form=refused.form.typed(request.path_params),
        status_code=status_code,
        error=refused.message,
    )


@router.post("/account/tokens")
@shows_refused(_account_refused)
async def issue_token(
    page: ConsolePage, session: WriteSession, settings: SettingsDep, form: Submitted[IssueTokenForm]
) -> Response:
    """Issue an API token: the page shows its secret this once (never in an address: not redirected)."""
    principal = page.principal
    assert principal is not None
    issued = await accounts.issue_token(
        session,
        user_id=principal.user_id,
        data=form.token(),
        longest_days=settings.api_token_lifetime_days,
        actor=principal.actor,
    )
    return await _account(page, session, issued=issued)


@router.post("/account/tokens/{token_id}/revoke")
@shows_refused(_account_refused)
async def revoke_token(
    principal: SignedIn, session: WriteSession, token_id: IdPath, _form: Submitted[CsrfForm]
) -> Response:
    await accounts.revoke(
        session,
        user_id=principal.user_id,
        credential_id=token_id,
        kind=CredentialKind.api,
        actor=principal.actor,
    )
    return RedirectResponse(f"{ACCOUNT_PATH}?done=token-revoked", status_code=303)


def _signed_out(settings: Any, target: str = LOGIN_PATH) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(
        CONSOLE_COOKIE, path="/console", httponly=True, samesite="lax", secure=secure_cookies(settings)
    )
    return response


@router.post("/account/sessions/{session_id}/end")
@shows_refused(_account_refused)
async def end_session(
    principal: SignedIn,
    session: WriteSession,
    settings: SettingsDep,
    session_id: IdPath,
    _form: Submitted[CsrfForm],
) -> Response:
    """End one of your sessions; ending this one signs you out."""
    await accounts.revoke(
        session,
        user_id=principal.user_id,
        credential_id=session_id,
        kind=CredentialKind.console,
        actor=principal.actor,
    )
    if session_id == principal.credential_id:
        return _signed_out(settings)
    return RedirectResponse(f"{ACCOUNT_PATH}?done=session-ended", status_code=303)


@router.post("/account/sessions/end-others")
@shows_refused(_account_refused)
async def end_other_sessions(
    principal: SignedIn, session: WriteSession, _form: Submitted[CsrfForm]
) -> Response:
    await accounts.end_sessions(
        session, user_id=principal.user_id, actor=principal.actor, keep=principal.credential_id
    )
    return RedirectResponse(f"{ACCOUNT_PATH}?done=sessions-ended", status_code=303)


# ------------------------------------------------------------------------------ forgotten passwords


def _forgot(
    page: Page,
    *,
    status_code: int = 200,
    email: str = "",
    error: str | None = None,
    answered: bool = False,
) -> Response:
    response = page.render(
        "console/password_forgot.html",
        {"email": email, "error": error, "answer": FORGOT_ANSWER if answered else None},
        status_code=status_code,
    )
    return _with_headers(response, RESET_HEADERS)


@router.get("/password/forgot")
async def forgot_form(page: SignInPage) -> Response:
    return _forgot(page)


async def _forgot_refused(request: Request, _session: AsyncSession, refused: Refused) -> Response:
    page = console_page(request, None)
    if isinstance(refused.error, csrf.CsrfFailed):
        # What was typed is not put back: another site must not prepare a filled-in form for one click.
        return _forgot(page, status_code=403, error=CSRF_REFUSED)
    typed = refused.form.typed(request.path_params)
    return _forgot(page, status_code=refused.status_code, email=typed["email"], error=refused.message)


@router.post("/password/forgot")
@shows_refused(_forgot_refused)
async def forgot(
    page: SignInPage,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    client: Client,
    form: Submitted[ForgotPasswordForm],
) -> Response:
    asked = await password_resets.request_reset(
        session, email=form.address(), client=client, settings=settings, language=_language(page.request)
    )
    if asked.sent:
        _deliver_soon(scheduler)
    return _forgot(page, answered=True)


def _reset_page(page: Page, *, status_code: int = 200, **context: Any) -> Response:
    response = page.render(
        "console/password_reset.html",
        {"invalid": None, "changed": False, "error": None, **context},
        status_code=status_code,
    )
    return _with_headers(response, RESET_HEADERS)


@router.get("/password/reset/{reset_token}")
async def reset_form(page: SignInPage, session: ReadSession, reset_token: str) -> Response:
    """The form for the new password, if the link still works; opening it uses nothing up."""
    try:
        await password_resets.check_link(session, token=reset_token)
    except password_resets.ResetLinkInvalid as exc:
        return _reset_page(page, status_code=404, invalid=exc.detail)
    return _reset_page(page)


async def _reset_refused(request: Request, _session: AsyncSession, refused: Refused) -> Response:
    page = console_page(request, None)
    if isinstance(refused.error, csrf.CsrfFailed):
        return _reset_page(page, status_code=403, error=CSRF_REFUSED)
    if isinstance(refused.error, password_resets.ResetLinkInvalid):
        return _reset_page(page, status_code=404, invalid=refused.message)
    return _reset_page(page, status_code=refused.status_code, error=refused.message)


@router.post("/password/reset/{reset_token}")
@shows_refused(_reset_refused)
async def reset(
    page: SignInPage,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    client: Client,
    reset_token: str,
    form: Submitted[ResetPasswordForm],
) -> Response:
    """Set the new password: every session of the account ends, this browser's cookie too, and the
    person signs in again (not signed in here: the link alone must not open a session)."""
    await password_resets.complete_reset(
        session,
        token=reset_token,
        password=form.password,
        again=form.password_again,
        client=client,
        settings=settings,
        language=_language(page.request),
    )
    _deliver_soon(scheduler)
    response = _reset_page(page, changed=True)
    response.delete_cookie(
        CONSOLE_COOKIE, path="/console", httponly=True, samesite="lax", secure=secure_cookies(settings)
    )
    return response
