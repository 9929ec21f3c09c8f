"""The console's registry: organisations listed, searched and filtered a page at a time; a file imported
after a preview (nothing is saved until the coordinator confirms it); an organisation's contacts edited.

Every step works as plain forms without JavaScript: the preview page carries the uploaded file back in
hidden fields (base64, with its SHA-256 and the digest of what the preview showed), and its Confirm button
posts them; the confirmation reads and checks the file again and applies it in one transaction, or shows
the new preview when the registry changed in between.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Language, OrganisationKind
from models.organisations import ImportResult
from services import organisations, registry_import
from services.errors import Conflict, InvalidInput
from services.web.console_page import Page
from services.web.deps import (
    ConsolePage,
    CountQuery,
    ListPageQuery,
    OrganisationKeyPath,
    ReadSession,
    RegistrySearchQuery,
    SchedulerDep,
    SettingsDep,
    SignedIn,
    Submitted,
    WriteSession,
)
from services.web.forms import OrganisationContactsForm, RegistryConfirmForm, RegistryForm
from services.web.pages.console import _shown, _signed_in_page
from services.web.routes import ConsoleRoute, Refused, shows_refused

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)

MAX_PROBLEMS_SHOWN = 1_000
"""Rejected lines listed on the preview page; the API's dry run lists every one."""


def _kind_filter(kind: str) -> OrganisationKind | None:
    if not kind:
        return None
    try:
        return OrganisationKind(kind)
    except ValueError:
        known = ", ".join(OrganisationKind)
        raise InvalidInput(f"'{kind[:40]}' is not a kind of organisation; the kinds are {known}.") from None


# ------------------------------------------------------------------------------------- the list


async def _registry_page(
    page: Page,
    session: AsyncSession,
    *,
    kind: str = "",
    search: str = "",
    number: int = 1,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    imported: dict[str, int] | None = None,
) -> Response:
    chosen = _kind_filter(kind)
    found = await organisations.search_organisations(session, search=search, kind=chosen, page=number)
    query = [(name, value) for name, value in (("q", search), ("kind", chosen or "")) if value]
    return page.render(
        "console/organisations.html",
        {
            "nav": "organisations",
            "found": found,
            "organisations": found.organisations,
            "kinds": list(OrganisationKind),
            "kind": chosen,
            "search": search,
            "filtered": bool(search or chosen),
            "query": urlencode(query),
            "kind_query": urlencode([("q", search)] if search else []),
            "imported": imported,
            "error": error,
            "problems": problems or [],
            "max_bytes": registry_import.MAX_FILE_BYTES,
        },
        status_code=status_code,
    )


@router.get("/organisations")
async def registry(
    page: ConsolePage,
    session: ReadSession,
    kind: str = "",
    q: RegistrySearchQuery = "",
    page_number: ListPageQuery = 1,
    created: CountQuery = None,
    updated: CountQuery = None,
    unchanged: CountQuery = None,
    replaced: CountQuery = None,
    kept: CountQuery = None,
) -> Response:
    """The stakeholder registry, by kind then name, a page at a time; `?q=` searches the names (English
    and Albanian), keys and addresses, `?kind=` shows one kind."""
    counts = None
    if created is not None and updated is not None and unchanged is not None:
        counts = {"created": created, "updated": updated, "unchanged": unchanged}
        counts |= {"replaced": replaced or 0, "kept": kept or 0}
    return await _registry_page(page, session, kind=kind, search=q, number=page_number, imported=counts)


async def _registry_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    page = await _signed_in_page(request)
    return await _registry_page(page, session, **_shown(refused))


# ------------------------------------------------------------------------------ import: the preview


def _preview_page(
    page: Page,
    result: ImportResult,
    *,
    filename: str,
    content: bytes,
    status_code: int | None = None,
    error: str | None = None,
) -> Response:
    rejected_lines = len({entry.line for entry in result.rejected})
    return page.render(
        "console/registry_preview.html",
        {
            "nav": "organisations",
            "result": result,
            "filename": filename,
            "hidden_content": RegistryConfirmForm.hidden(content),
            "rejected_lines": rejected_lines,
            "rejected_shown": registry_import.problems_of(result.rejected[:MAX_PROBLEMS_SHOWN]),
            "rejected_more": max(0, len(result.rejected) - MAX_PROBLEMS_SHOWN),
            "refusal": registry_import.refusal(result.rejected) if result.rejected else None,
            "replaceable": sum(1 for touched in result.open_rounds_touched if touched.replaceable),
            "error": error,
        },
        status_code=status_code or (422 if result.rejected else 200),
    )


@router.post("/organisations/import")
@shows_refused(_registry_refused)
async def preview_import(page: ConsolePage, session: ReadSession, form: Submitted[RegistryForm]) -> Response:
    """What importing the file would do, before anything is saved: the organisations created, those
    updated (each field as it is and as it would be), the lines rejected and why, the columns ignored,
    and the open rounds whose contacts would change; a Confirm button applies it."""
    upload = await form.upload()
    result = await registry_import.preview(session, content=upload.content, filename=upload.filename)
    return _preview_page(page, result, filename=upload.filename, content=upload.content)


async def _confirm_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    """The preview again, made anew, when the import found something other than it showed (the registry
    changed meanwhile); the registry's page when the preview's copy of the file did not come back."""
    page = await _signed_in_page(request)
    form = refused.form
    if isinstance(form, RegistryConfirmForm) and isinstance(refused.error, Conflict | InvalidInput):
        try:
            upload = form.upload(registry_import.MAX_FILE_BYTES)
        except InvalidInput:
            upload = None
        if upload is not None:
            result = await registry_import.preview(session, content=upload.content, filename=upload.filename)
            shown = _shown(refused)
            return _preview_page(
                page,
                result,
                filename=upload.filename,
                content=upload.content,
                status_code=shown["status_code"],
                error=shown["error"],
            )
    return await _registry_page(page, session, **_shown(refused))


@router.post("/organisations/import/confirm")
@shows_refused(_confirm_refused)
async def confirm_import(
    principal: SignedIn,
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    form: Submitted[RegistryConfirmForm],
) -> Response:
    """Import the previewed file, all rows or none, if it still does what the preview showed."""
    upload = form.upload(registry_import.MAX_FILE_BYTES)
    result = await registry_import.import_registry(
        session,
        content=upload.content,
        filename=upload.filename,
        actor=principal.actor,
        settings=settings,
        change_open_tasks=form.changes_open_tasks(),
        expected_plan=form.plan,
    )
    query: dict[str, Any] = {
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged,
    }
    if result.open_task_contacts_changed:
        query["replaced"] = result.open_task_contacts_changed
        for round_id in sorted({touched.round_id for touched in result.open_rounds_touched}):
            background.add_task(scheduler.wake, round_id)
    elif result.open_rounds_touched:
        query["kept"] = len(result.open_rounds_touched)
    return RedirectResponse(f"/console/organisations?{urlencode(query)}", status_code=303)


# ------------------------------------------------------------------------ one organisation's contacts


async def _contacts_page(
    page: Page,
    session: AsyncSession,
    key: str,
    *,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    saved: dict[str, int] | None = None,
) -> Response:
    view = await registry_import.contacts_view(session, key=key)
    organisation = view.organisation
    typed = form or {
        "focal_point_name": organisation.focal_point_name,
        "focal_point_email": organisation.focal_point_email,
        "alternate_name": organisation.alternate_name,
        "alternate_email": organisation.alternate_email or "",
        "escalation_email": organisation.escalation_email or "",
        "language": str(organisation.language),
        "change_open_tasks": "",
    }
    return page.render(
        "console/organisation.html",
        {
            "nav": "organisations",
            "organisation": organisation,
            "open_tasks": view.open_tasks,
            "form": typed,
            "languages": list(Language),
            "saved": saved,
            "error": error,
            "problems": problems or [],
        },
        status_code=status_code,
    )


@router.get("/organisations/{organisation_key}")
async def organisation_page(
    page: ConsolePage,
    session: ReadSession,
    organisation_key: OrganisationKeyPath,
    saved: CountQuery = None,
    replaced: CountQuery = None,
    kept: CountQuery = None,
) -> Response:
    """An organisation's contacts, the open rounds it is consulted in, and (for coordinators) the form that
    changes its contacts."""
    outcome = None
    if saved is not None:
        outcome = {"saved": saved, "replaced": replaced or 0, "kept": kept or 0}
    return await _contacts_page(page, session, organisation_key, saved=outcome)


async def _contacts_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    key = str(request.path_params.get("organisation_key", ""))
    if refused.status_code == 404:
        raise refused.error  # the organisation in the path does not exist: there is no form to show again
    page = await _signed_in_page(request)
    return await _contacts_page(
        page, session, key, form=refused.form.typed(request.path_params), **_shown(refused)
    )


@router.post("/organisations/{organisation_key}/contacts")
@shows_refused(_contacts_refused)
async def change_contacts(
    principal: SignedIn,
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    organisation_key: OrganisationKeyPath,
    form: Submitted[OrganisationContactsForm],
) -> Response:
    """Change the organisation's contacts in the registry; its open tasks keep theirs unless the form asks
    for them to change too."""
    outcome = await registry_import.update_contacts(
        session,
        key=organisation_key,
        data=form.contacts(),
        actor=principal.actor,
        settings=settings,
        change_open_tasks=form.changes_open_tasks(),
    )
    query: dict[str, int] = {"saved": int(outcome.changed)}
    if outcome.replaced:
        query["replaced"] = outcome.replaced
        for round_id in sorted({touched.round_id for touched in outcome.touched}):
            background.add_task(scheduler.wake, round_id)
    elif outcome.touched:
        query["kept"] = len(outcome.touched)
    return RedirectResponse(f"/console/organisations/{organisation_key}?{urlencode(query)}", status_code=303)
