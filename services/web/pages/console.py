"""The coordinator console under /console: signed-in pages over the same use cases as the JSON API.

Coordinators and admins change things through POST forms (each with a CSRF token); auditors see every
page without the forms, and any POST of theirs is refused (both as the access table says: ConsoleRoute).
A refused form comes back on its page with the message and what was typed (`@shows_refused`). GET never
changes anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services import (
    dashboard,
    documents,
    exports,
    extension_requests,
    extensions,
    round_endings,
    task_changes,
    users,
)
from services.audit import sentences
from services.errors import InvalidInput, TooManyRequests, Unauthorized
from services.web import round_page as round_page_view
from services.web.console_page import Page
from services.web.csrf import CsrfFailed, secure_cookies
from services.web.deps import (
    CONSOLE_COOKIE,
    Client,
    ConsolePage,
    ConsolePrincipal,
    DatabaseDep,
    FilterQuery,
    IdPath,
    OrganisationKeyPath,
    PageQuery,
    ReadSession,
    SchedulerDep,
    SeqQuery,
    SettingsDep,
    SignedIn,
    SignInPage,
    Submitted,
    WriteSession,
    console_page,
    console_principal,
    parse_id,
)
from services.web.exports import download
from services.web.forms import (
    AddOrganisationForm,
    ContactForm,
    CsrfForm,
    DraftForm,
    ExtendForm,
    GrantForm,
    ReasonForm,
    RefuseForm,
    RevisionForm,
    SignInForm,
)
from services.web.i18n import N_
from services.web.routes import LOGIN_PATH, ConsoleRoute, Refused, shows_refused
from workflows.client import launch_round

AUDIT_PAGE_SIZE = 100

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site, //host, \\host) is ignored."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/console"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(character) < 32 for character in target):
        return "/console"
    return target


async def _signed_in_page(request: Request) -> Page:
    return console_page(request, await console_principal(request))


def _shown(refused: Refused) -> dict[str, Any]:
    """How a console page shows a refused form: its status, message and itemised problems."""
    if isinstance(refused.error, CsrfFailed):
        raise refused.error  # a forged or stale form is not the page's to show: the error page says so
    if isinstance(refused.error, ValidationError):
        return {"status_code": 422, "error": refused.message, "problems": []}
    # A form field naming something that does not exist is a bad form, not a missing page.
    status_code = 422 if refused.status_code == 404 else refused.status_code
    return {"status_code": status_code, "error": refused.message, "problems": refused.problems}


# --------------------------------------------------------------------------------- sign in and out


@router.get("/login")
async def login_form(page: SignInPage, principal: ConsolePrincipal, next: str = "") -> Response:
    if principal is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page.render("console/login.html", {"email": "", "next": safe_next(next)})


async def _sign_in_refused(request: Request, _session: AsyncSession, refused: Refused) -> Response:
    if not isinstance(refused.error, Unauthorized | TooManyRequests):
        raise refused.error
    typed = refused.form.typed(request.path_params)
    message = N_("Wrong email or password.") if isinstance(refused.error, Unauthorized) else refused.message
    return console_page(request, None).render(
        "console/login.html",
        {"email": typed["email"], "next": safe_next(typed["next"]), "error": message},
        status_code=refused.status_code,
    )


@router.post("/login")
@shows_refused(_sign_in_refused)
async def login(
    session: WriteSession, client: Client, settings: SettingsDep, form: Submitted[SignInForm]
) -> Response:
    # Failures count per email and address: a stranger guessing cannot lock the owner out elsewhere.
    _principal, secret = await users.sign_in(session, email=form.email, password=form.password, ip=client.ip)
    response = RedirectResponse(safe_next(form.next), status_code=303)
    response.set_cookie(
        CONSOLE_COOKIE,
        secret,
        max_age=int(users.CONSOLE_SESSION_LIFETIME.total_seconds()),
        path="/console",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(settings),
    )
    return response


@router.post("/logout")
async def logout(page: SignInPage, session: WriteSession, _form: Submitted[CsrfForm]) -> Response:
    secret = page.request.cookies.get(CONSOLE_COOKIE)
    if secret:
        await users.sign_out(session, secret=secret)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(
        CONSOLE_COOKIE, path="/console", httponly=True, samesite="lax", secure=secure_cookies(page.settings)
    )
    return response


# ------------------------------------------------------------------------------------------ rounds


@router.get("")
async def rounds_list(
    page: ConsolePage,
    session: ReadSession,
    q: FilterQuery = "",
    status: FilterQuery = "",
    number: PageQuery = "",
) -> Response:
    """The rounds, newest first, a page at a time; `?q=` searches titles, `?status=` keeps one status."""
    listed = await dashboard.round_list(session, query=q, status=status, page=dashboard.check_page(number))
    return page.render("console/rounds.html", {"nav": "rounds", "listing": listed})


@router.get("/rounds/{round_id}")
async def round_page(
    page: ConsolePage,
    session: ReadSession,
    round_id: IdPath,
    q: FilterQuery = "",
    status: FilterQuery = "",
    number: PageQuery = "",
    task: FilterQuery = "",
) -> Response:
    """The round's dashboard (progress, clearance, a row per organisation with its actions, comments per
    section, the timeline), the round's actions, the sign-off register and the comments. `?q=` and
    `?status=` search and filter the organisations, `?page=` pages them; `?task=` is the row an action
    was just taken on (its notice is shown there)."""
    return await round_page_view.render(
        page, session, round_id, query=q, status=status, page_number=number, task=task
    )


@router.get("/rounds/{round_id}/dashboard")
async def round_dashboard(
    page: ConsolePage,
    session: ReadSession,
    round_id: IdPath,
    q: FilterQuery = "",
    status: FilterQuery = "",
    number: PageQuery = "",
) -> Response:
    """Only the round page's dashboard, as the page's script fetches it every 30 s while the round is open."""
    return await round_page_view.render(
        page, session, round_id, query=q, status=status, page_number=number, fragment=True
    )


async def _round_action_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    round_id = parse_id(str(request.path_params.get("round_id", "")))
    if round_id is None:
        raise refused.error  # a path that names no round has no page to show the form on
    page = await _signed_in_page(request)
    typed = refused.form.typed(request.path_params)
    return await round_page_view.render(
        page,
        session,
        round_id,
        form=typed,
        place=round_page_view.refused_place(request.url.path, request.path_params, typed),
        **_shown(refused),
    )


def _back_to(round_id: int, done: str, task: str | None = None) -> Response:
    return round_page_view.back_to(round_id, done, task=task)


@router.post("/rounds/{round_id}/extend")
@shows_refused(_round_action_refused)
async def extend_round(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    form: Submitted[ExtendForm],
) -> Response:
    await extensions.extend(
        session,
        round_id=round_id,
        data=form.extension(settings.timezone),
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    keys = form.organisation_keys
    return _back_to(round_id, "extended", keys[0] if len(keys) == 1 else None)


@router.post("/rounds/{round_id}/close")
@shows_refused(_round_action_refused)
async def close_round(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    form: Submitted[ReasonForm],
) -> Response:
    await round_endings.close_early(
        session,
        round_id=round_id,
        reason=form.reason_given().reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "closed")


@router.post("/rounds/{round_id}/cancel")
@shows_refused(_round_action_refused)
async def cancel_round(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    form: Submitted[ReasonForm],
) -> Response:
    await round_endings.cancel_round(
        session,
        round_id=round_id,
        reason=form.reason_given().reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "cancelled")


@router.post("/rounds/{round_id}/tasks")
@shows_refused(_round_action_refused)
async def add_organisation(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    form: Submitted[AddOrganisationForm],
) -> Response:
    await task_changes.add_organisation(
        session,
        round_id=round_id,
        data=form.task_add(settings.timezone),
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "added", form.organisation_key.strip())


@router.post("/rounds/{round_id}/tasks/{organisation_key}/withdraw")
@shows_refused(_round_action_refused)
async def withdraw_organisation(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    form: Submitted[ReasonForm],
) -> Response:
    await task_changes.withdraw_organisation(
        session,
        round_id=round_id,
        key=organisation_key,
        reason=form.reason_given().reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "withdrawn", organisation_key)


@router.post("/rounds/{round_id}/tasks/{organisation_key}/resend")
@shows_refused(_round_action_refused)
async def resend_links(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    _form: Submitted[CsrfForm],
) -> Response:
    await task_changes.resend_links(
        session, round_id=round_id, key=organisation_key, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "resent", organisation_key)


@router.post("/rounds/{round_id}/tasks/{organisation_key}/contacts")
@shows_refused(_round_action_refused)
async def replace_contact(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    form: Submitted[ContactForm],
) -> Response:
    await task_changes.replace_contact(
        session,
        round_id=round_id,
        key=organisation_key,
        data=form.replacement(),
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "replaced", organisation_key)


@router.post("/rounds/{round_id}/tasks/{organisation_key}/reopen")
@shows_refused(_round_action_refused)
async def reopen_sign_off(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    form: Submitted[ReasonForm],
) -> Response:
    await task_changes.reopen_sign_off(
        session,
        round_id=round_id,
        key=organisation_key,
        reason=form.reason_given().reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "reopened", organisation_key)


@router.post("/rounds/{round_id}/extension-requests/{request_id}/grant")
@shows_refused(_round_action_refused)
async def grant_request(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    request_id: IdPath,
    form: Submitted[GrantForm],
) -> Response:
    answered = await extension_requests.grant(
        session,
        request_id=request_id,
        round_id=round_id,
        data=form.grant(settings.timezone),
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "granted", answered.organisation_key)


@router.post("/rounds/{round_id}/extension-requests/{request_id}/refuse")
@shows_refused(_round_action_refused)
async def refuse_request(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    request_id: IdPath,
    form: Submitted[RefuseForm],
) -> Response:
    answered = await extension_requests.refuse(
        session,
        request_id=request_id,
        round_id=round_id,
        data=form.refusal(),
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "refused", answered.organisation_key)


@router.post("/rounds/{round_id}/launch")
async def launch(
    principal: SignedIn,
    db: DatabaseDep,
    scheduler: SchedulerDep,
    round_id: IdPath,
    _form: Submitted[CsrfForm],
) -> Response:
    """Open the round and start its scheduler; launching twice starts nothing new."""
    launched = await launch_round(db, scheduler, round_id=round_id, actor=principal.actor)
    done = "launched" if launched else "already-open"
    return RedirectResponse(f"/console/rounds/{round_id}?done={done}", status_code=303)


# The registry's pages are in console_registry.py.


# ------------------------------------------------------------------------------------------ drafts


async def _drafts_page(
    page: Page,
    session: ReadSession,
    *,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    failed_form: str | None = None,
    title: str = "",
) -> Response:
    return page.render(
        "console/documents.html",
        {
            "nav": "documents",
            "documents": await documents.list_documents(session),
            "error": error,
            "problems": problems or [],
            "failed_form": failed_form,
            "title": title,
        },
        status_code=status_code,
    )


@router.get("/documents")
async def drafts(page: ConsolePage, session: ReadSession) -> Response:
    """Every draft with its versions and their sections."""
    return await _drafts_page(page, session)


async def _draft_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    page = await _signed_in_page(request)
    title = refused.form.typed(request.path_params)["title"]
    return await _drafts_page(page, session, failed_form="new", title=title, **_shown(refused))


@router.post("/documents")
@shows_refused(_draft_refused)
async def upload_draft(principal: SignedIn, session: WriteSession, form: Submitted[DraftForm]) -> Response:
    """Import a Markdown or Word draft as a new document; its `##` headings become the sections."""
    upload = await form.upload()
    document = await documents.create_document(
        session, title=form.title, filename=upload.filename, content=upload.content, actor=principal.actor
    )
    return RedirectResponse(f"/console/documents?done=uploaded#document-{document.id}", status_code=303)


async def _revision_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    if refused.status_code == 404:
        raise refused.error  # the document in the path does not exist: there is no form to show again
    page = await _signed_in_page(request)
    failed_form = f"document-{parse_id(request.path_params['document_id'])}"
    return await _drafts_page(page, session, failed_form=failed_form, **_shown(refused))


@router.post("/documents/{document_id}/versions")
@shows_refused(_revision_refused)
async def upload_revision(
    principal: SignedIn, session: WriteSession, document_id: IdPath, form: Submitted[RevisionForm]
) -> Response:
    """Add a revised draft (the text of the next round) as the document's next version."""
    upload = await form.upload()
    await documents.add_version(
        session,
        document_id=document_id,
        filename=upload.filename,
        content=upload.content,
        actor=principal.actor,
    )
    return RedirectResponse(f"/console/documents?done=revised#document-{document_id}", status_code=303)


# ------------------------------------------------------------------------------------- audit trail


def _round_filter(round_id: str) -> int | None:
    text = round_id.strip()
    if not text:
        return None
    chosen = parse_id(text)
    if chosen is None:
        raise InvalidInput(f"'{text[:40]}' is not a round number.")
    return chosen


@router.get("/audit")
async def audit_events(
    page: ConsolePage, session: ReadSession, round_id: str = "", after_seq: SeqQuery = 0
) -> Response:
    """The audit trail in seq order, a page at a time, optionally for one round: each event as a sentence,
    the event as recorded beside it."""
    chosen = _round_filter(round_id)
    events = await sentences.described_events(
        session, timezone=page.settings.timezone, round_id=chosen, after_seq=after_seq, limit=AUDIT_PAGE_SIZE
    )
    return page.render(
        "console/audit.html", {"nav": "audit", "page": events, "round_id": chosen, "after_seq": after_seq}
    )


@router.get("/audit/export")
async def audit_export_download(db: DatabaseDep) -> StreamingResponse:
    """The whole hash chain as JSON Lines; check it with `roundtable audit verify FILE`."""
    return download(exports.audit_trail(db))
