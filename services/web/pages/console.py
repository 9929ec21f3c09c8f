"""The coordinator console under /console: signed-in pages over the same use cases as the JSON API.

Coordinators and admins change things through POST forms (each with a CSRF token); auditors see every
page without the forms, and any POST of theirs is refused (both as the access table says: ConsoleRoute).
A refused form comes back on its page with the message and what was typed (`@shows_refused`). GET never
changes anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import OrganisationKind, RoundStatus
from services import (
    documents,
    exports,
    extension_requests,
    extensions,
    organisations,
    round_endings,
    rounds,
    task_changes,
    users,
)
from services.audit import browse
from services.errors import InvalidInput, TooManyRequests, Unauthorized
from services.web import console_views
from services.web.console_page import Page
from services.web.csrf import CsrfFailed, secure_cookies
from services.web.deps import (
    CONSOLE_COOKIE,
    Client,
    ConsolePage,
    ConsolePrincipal,
    CountQuery,
    DatabaseDep,
    IdPath,
    OrganisationKeyPath,
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
    RegistryForm,
    RevisionForm,
    RoundForm,
    SignInForm,
)
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
    message = "Wrong email or password." if isinstance(refused.error, Unauthorized) else refused.message
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
async def rounds_list(page: ConsolePage, session: ReadSession) -> Response:
    """Every round, newest first."""
    return page.render("console/rounds.html", {"nav": "rounds", "rounds": await rounds.list_rounds(session)})


def _suggested_deadline(timezone: str) -> str:
    """Two weeks from today at 17:00 local time, as a datetime-local value."""
    day = datetime.now(ZoneInfo(timezone)).date() + timedelta(days=14)
    return f"{day.isoformat()}T17:00"


async def _new_round_form(
    page: Page,
    session: ReadSession,
    form: dict[str, Any],
    *,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
) -> Response:
    return page.render(
        "console/new_round.html",
        {
            "nav": "rounds",
            "choices": await console_views.new_round_choices(session),
            "kinds": list(OrganisationKind),
            "form": form,
            "error": error,
            "problems": problems or [],
        },
        status_code=status_code,
    )


@router.get("/rounds/new")
async def new_round(page: ConsolePage, session: ReadSession) -> Response:
    form: dict[str, Any] = {
        "title": "",
        "document_version_id": "",
        "deadline": _suggested_deadline(page.settings.timezone),
        "organisations": "all",
        "organisation_kinds": [],
        "organisation_keys": "",
        "sections": None,  # None: every section of the chosen version is ticked
        **{
            name: value
            for name, value in RoundForm().typed({}).items()
            if name.startswith(("procedure", "minimum", "grace", "silence", "reminder"))
        },
    }
    return await _new_round_form(page, session, form)


async def _new_round_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    page = await _signed_in_page(request)
    return await _new_round_form(page, session, refused.form.typed(request.path_params), **_shown(refused))


@router.post("/rounds")
@shows_refused(_new_round_refused)
async def create_round(
    principal: SignedIn, session: WriteSession, settings: SettingsDep, form: Submitted[RoundForm]
) -> Response:
    data = form.round_create(settings.timezone)
    created = await rounds.create_round(session, data=data, actor=principal.actor, user_id=principal.user_id)
    return RedirectResponse(f"/console/rounds/{created.id}?done=created", status_code=303)


async def _round_page(
    page: Page,
    session: AsyncSession,
    round_id: int,
    *,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    overview = await console_views.round_overview(session, round_id=round_id)
    return page.render(
        "console/round.html",
        {
            "nav": "rounds",
            "overview": overview,
            "draft_status": RoundStatus.draft,
            "error": error,
            "problems": problems or [],
            "form": form or {},
        },
        status_code=status_code,
    )


@router.get("/rounds/{round_id}")
async def round_page(page: ConsolePage, session: ReadSession, round_id: IdPath) -> Response:
    """The round's status, each organisation's task, the sign-off register and the comment matrix, and the
    coordinator's actions on a round under way."""
    return await _round_page(page, session, round_id)


async def _round_action_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    round_id = parse_id(str(request.path_params.get("round_id", "")))
    if round_id is None:
        raise refused.error  # a path that names no round has no page to show the form on
    page = await _signed_in_page(request)
    return await _round_page(
        page, session, round_id, form=refused.form.typed(request.path_params), **_shown(refused)
    )


def _back_to(round_id: int, done: str) -> Response:
    return RedirectResponse(f"/console/rounds/{round_id}?done={done}", status_code=303)


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
    return _back_to(round_id, "extended")


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
    return _back_to(round_id, "added")


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
    return _back_to(round_id, "withdrawn")


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
    return _back_to(round_id, "resent")


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
    return _back_to(round_id, "replaced")


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
    return _back_to(round_id, "reopened")


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
    await extension_requests.grant(
        session,
        request_id=request_id,
        round_id=round_id,
        data=form.grant(settings.timezone),
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "granted")


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
    await extension_requests.refuse(
        session,
        request_id=request_id,
        round_id=round_id,
        data=form.refusal(),
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return _back_to(round_id, "refused")


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


# ----------------------------------------------------------------------------------- the registry


def _kind_filter(kind: str) -> OrganisationKind | None:
    if not kind:
        return None
    try:
        return OrganisationKind(kind)
    except ValueError:
        known = ", ".join(OrganisationKind)
        raise InvalidInput(f"'{kind}' is not a kind of organisation; the kinds are {known}.") from None


async def _registry_page(
    page: Page,
    session: ReadSession,
    kind: str = "",
    *,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    imported: dict[str, int] | None = None,
) -> Response:
    chosen = _kind_filter(kind)
    return page.render(
        "console/organisations.html",
        {
            "nav": "organisations",
            "organisations": await organisations.list_organisations(session, kind=chosen),
            "kinds": list(OrganisationKind),
            "kind": chosen,
            "imported": imported,
            "error": error,
            "problems": problems or [],
        },
        status_code=status_code,
    )


@router.get("/organisations")
async def registry(
    page: ConsolePage,
    session: ReadSession,
    kind: str = "",
    created: CountQuery = None,
    updated: CountQuery = None,
    unchanged: CountQuery = None,
) -> Response:
    """The stakeholder registry, grouped by kind; `?kind=` shows one kind."""
    counts = None
    if created is not None and updated is not None and unchanged is not None:
        counts = {"created": created, "updated": updated, "unchanged": unchanged}
    return await _registry_page(page, session, kind, imported=counts)


async def _registry_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    page = await _signed_in_page(request)
    return await _registry_page(page, session, **_shown(refused))


@router.post("/organisations/import")
@shows_refused(_registry_refused)
async def import_registry(
    principal: SignedIn, session: WriteSession, form: Submitted[RegistryForm]
) -> Response:
    """Create or update organisations from a CSV file; a file with any bad line imports nothing."""
    upload = await form.upload()
    result = await organisations.import_csv(session, content=upload.content, actor=principal.actor)
    return RedirectResponse(
        f"/console/organisations?created={result.created}&updated={result.updated}&unchanged={result.unchanged}",
        status_code=303,
    )


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
    """The audit trail in seq order, a page at a time, optionally for one round."""
    chosen = _round_filter(round_id)
    events = await browse.list_events(session, round_id=chosen, after_seq=after_seq, limit=AUDIT_PAGE_SIZE)
    return page.render(
        "console/audit.html", {"nav": "audit", "page": events, "round_id": chosen, "after_seq": after_seq}
    )


@router.get("/audit/export")
async def audit_export_download(db: DatabaseDep) -> StreamingResponse:
    """The whole hash chain as JSON Lines; check it with `roundtable audit verify FILE`."""
    return download(exports.audit_trail(db))
