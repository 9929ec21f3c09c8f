"""The coordinator console under /console: signed-in pages over the same use cases as the JSON API.

Coordinators and admins change things through POST forms (each with a CSRF token); auditors see every
page without the forms, and any POST of theirs is refused. GET never changes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from models.enums import OrganisationKind, RoundStatus
from models.rounds import RoundCreate
from services import documents, exports, organisations, rounds, users
from services.audit import browse
from services.errors import DomainError, InvalidInput, TooManyRequests, Unauthorized
from services.formatting import parse_local_datetime
from services.web import console_views
from services.web.console_page import Page
from services.web.csrf import secure_cookies
from services.web.deps import (
    CONSOLE_COOKIE,
    Changer,
    Client,
    ConsolePage,
    ConsolePrincipal,
    CountQuery,
    DatabaseDep,
    FormList,
    FormText,
    IdPath,
    OptionalFile,
    ReadSession,
    SchedulerDep,
    SeqQuery,
    SignInPage,
    SignInRequired,
    WriteSession,
    parse_id,
)
from services.web.errors import describe_validation
from services.web.exports import download
from services.web.uploads import read_upload
from workflows.client import launch_round

LOGIN_PATH = "/console/login"
AUDIT_PAGE_SIZE = 100


class ConsoleRoute(APIRoute):
    """Turns SignInRequired, raised while resolving a route's dependencies, into a 303 to sign in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                target = LOGIN_PATH + (f"?next={quote(exc.next_path, safe='/')}" if exc.next_path else "")
                return RedirectResponse(target, status_code=303)

        return handle


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site, //host, \\host) is ignored."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/console"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(character) < 32 for character in target):
        return "/console"
    return target


def _problem(exc: DomainError | ValidationError) -> tuple[int, str, list[str]]:
    """Status, message and itemised problems of a bad submission, for showing the form again."""
    if isinstance(exc, ValidationError):
        problems = describe_validation(exc)
        return 422, "; ".join(problems), []
    # A form field naming something that does not exist is a bad form, not a missing page.
    return (422 if exc.status_code == 404 else exc.status_code), exc.detail, exc.problems


# --------------------------------------------------------------------------------- sign in and out


@router.get("/login")
async def login_form(page: SignInPage, principal: ConsolePrincipal, next: str = "") -> Response:
    if principal is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page.render("console/login.html", {"email": "", "next": safe_next(next)})


@router.post("/login")
async def login(
    page: SignInPage,
    session: WriteSession,
    client: Client,
    csrf_token: FormText = "",
    email: FormText = "",
    password: FormText = "",
    next: FormText = "",
) -> Response:
    page.check_csrf(csrf_token)
    try:
        # Failures count per email and address: a stranger guessing cannot lock the owner out elsewhere.
        _principal, secret = await users.sign_in(session, email=email, password=password, ip=client.ip)
    except (Unauthorized, TooManyRequests) as exc:
        message = "Wrong email or password." if isinstance(exc, Unauthorized) else exc.detail
        return page.render(
            "console/login.html",
            {"email": email, "next": safe_next(next), "error": message},
            status_code=exc.status_code,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        CONSOLE_COOKIE,
        secret,
        max_age=int(users.CONSOLE_SESSION_LIFETIME.total_seconds()),
        path="/console",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(page.settings),
    )
    return response


@router.post("/logout")
async def logout(page: SignInPage, session: WriteSession, csrf_token: FormText = "") -> Response:
    page.check_csrf(csrf_token)
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
    }
    return await _new_round_form(page, session, form)


def _round_create(form: dict[str, Any], timezone: str) -> RoundCreate:
    """The typed form as a RoundCreate; InvalidInput or ValidationError says what is wrong."""
    version_id = parse_id(form["document_version_id"])
    if version_id is None:
        raise InvalidInput("Choose the draft version the round consults on.")
    mode = form["organisations"]
    keys: list[str] | None = None
    kinds: list[str] | None = None
    if mode == "kinds":
        kinds = form["organisation_kinds"]
        if not kinds:
            raise InvalidInput("Tick at least one kind of organisation, or choose another way to pick them.")
    elif mode == "keys":
        keys = [key for key in re.split(r"[\s,;]+", form["organisation_keys"]) if key]
        if not keys:
            raise InvalidInput("List at least one organisation key (one per line).")
    elif mode != "all":
        raise InvalidInput("Choose which organisations are consulted.")
    # Section boxes of every version are on the form; only those of the chosen version count.
    prefix = f"{version_id}:"
    numbers = [value.removeprefix(prefix) for value in form["sections"] or [] if value.startswith(prefix)]
    if not numbers:
        raise InvalidInput("Tick at least one section of the chosen draft to consult on.")
    return RoundCreate(
        title=form["title"].strip(),  # RoundCreate checks the length before it strips
        document_version_id=version_id,
        deadline=parse_local_datetime(form["deadline"], timezone=timezone),
        organisation_keys=keys,
        organisation_kinds=kinds,  # type: ignore[arg-type]  # pydantic checks the kinds
        section_numbers=numbers,
    )


@router.post("/rounds")
async def create_round(
    page: ConsolePage,
    principal: Changer,
    session: WriteSession,
    read_session: ReadSession,
    csrf_token: FormText = "",
    title: FormText = "",
    document_version_id: FormText = "",
    deadline: FormText = "",
    organisations: FormText = "all",
    organisation_kinds: FormList = None,
    organisation_keys: FormText = "",
    sections: FormList = None,
) -> Response:
    page.check_csrf(csrf_token)
    form: dict[str, Any] = {
        "title": title,
        "document_version_id": document_version_id,
        "deadline": deadline,
        "organisations": organisations,
        "organisation_kinds": organisation_kinds or [],
        "organisation_keys": organisation_keys,
        "sections": sections or [],
    }
    try:
        data = _round_create(form, page.settings.timezone)
        created = await rounds.create_round(
            session, data=data, actor=principal.actor, user_id=principal.user_id
        )
    except (DomainError, ValidationError) as exc:
        status_code, error, problems = _problem(exc)
        return await _new_round_form(
            page, read_session, form, status_code=status_code, error=error, problems=problems
        )
    return RedirectResponse(f"/console/rounds/{created.id}?done=created", status_code=303)


@router.get("/rounds/{round_id}")
async def round_page(page: ConsolePage, session: ReadSession, round_id: IdPath) -> Response:
    """The round's status, each organisation's task, the sign-off register and the comment matrix."""
    overview = await console_views.round_overview(session, round_id=round_id)
    return page.render(
        "console/round.html", {"nav": "rounds", "overview": overview, "draft_status": RoundStatus.draft}
    )


@router.post("/rounds/{round_id}/launch")
async def launch(
    page: ConsolePage,
    principal: Changer,
    db: DatabaseDep,
    scheduler: SchedulerDep,
    round_id: IdPath,
    csrf_token: FormText = "",
) -> Response:
    """Open the round and start its scheduler; launching twice starts nothing new."""
    page.check_csrf(csrf_token)
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


@router.post("/organisations/import")
async def import_registry(
    page: ConsolePage,
    principal: Changer,
    session: WriteSession,
    read_session: ReadSession,
    csrf_token: FormText = "",
    file: OptionalFile = None,
) -> Response:
    """Create or update organisations from a CSV file; a file with any bad line imports nothing."""
    page.check_csrf(csrf_token)
    try:
        upload = await read_upload(file, missing="Choose the CSV file to import.")
        result = await organisations.import_csv(session, content=upload.content, actor=principal.actor)
    except DomainError as exc:
        status_code, error, problems = _problem(exc)
        return await _registry_page(
            page, read_session, status_code=status_code, error=error, problems=problems
        )
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


@router.post("/documents")
async def upload_draft(
    page: ConsolePage,
    principal: Changer,
    session: WriteSession,
    read_session: ReadSession,
    csrf_token: FormText = "",
    title: FormText = "",
    file: OptionalFile = None,
) -> Response:
    """Import a Markdown or Word draft as a new document; its `##` headings become the sections."""
    page.check_csrf(csrf_token)
    try:
        upload = await read_upload(file, missing="Choose the draft file to upload (.md or .docx).")
        document = await documents.create_document(
            session, title=title, filename=upload.filename, content=upload.content, actor=principal.actor
        )
    except DomainError as exc:
        status_code, error, problems = _problem(exc)
        return await _drafts_page(
            page,
            read_session,
            status_code=status_code,
            error=error,
            problems=problems,
            failed_form="new",
            title=title,
        )
    return RedirectResponse(f"/console/documents?done=uploaded#document-{document.id}", status_code=303)


@router.post("/documents/{document_id}/versions")
async def upload_revision(
    page: ConsolePage,
    principal: Changer,
    session: WriteSession,
    read_session: ReadSession,
    document_id: IdPath,
    csrf_token: FormText = "",
    file: OptionalFile = None,
) -> Response:
    """Add a revised draft (the text of the next round) as the document's next version."""
    page.check_csrf(csrf_token)
    try:
        upload = await read_upload(file, missing="Choose the revised draft file to upload (.md or .docx).")
        await documents.add_version(
            session,
            document_id=document_id,
            filename=upload.filename,
            content=upload.content,
            actor=principal.actor,
        )
    except DomainError as exc:
        if exc.status_code == 404:
            raise
        status_code, error, problems = _problem(exc)
        return await _drafts_page(
            page,
            read_session,
            status_code=status_code,
            error=error,
            problems=problems,
            failed_form=f"document-{document_id}",
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
async def audit_export_download(_page: ConsolePage, db: DatabaseDep) -> StreamingResponse:
    """The whole hash chain as JSON Lines; check it with `roundtable audit verify FILE`."""
    return download(exports.audit_trail(db))
