"""The focal point's review page under /t/{token}: one GET that never changes anything, and forms.

Every form field is read as optional text and checked here or in the use case, so that any bad input,
a missing CSRF token included, gets the page back with a clear message and what was typed, never a bare
validation error.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from models.enums import CommentStatus, Decision
from models.reviews import CommentCreate, CommentUpdate, SignOffCreate
from services import comments, links, review_page, reviews
from services.errors import DomainError, InvalidInput, NotFound
from services.web import csrf, review_view
from services.web.deps import (
    Client,
    FormText,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    Templates,
    WriteSession,
    parse_id,
)

router = APIRouter(prefix="/t", include_in_schema=False)

NOTICES = {
    "comment-added": "Your comment was saved.",
    "comment-edited": "Your comment was updated.",
    "comment-withdrawn": "Your comment was withdrawn.",
    "signed": "The sign-off was recorded. Your receipt is below.",
}
FIELD_LABELS = {
    "section_id": "Section",
    "paragraph": "Paragraph",
    "kind": "Type",
    "body": "Comment",
    "proposed_wording": "Proposed wording",
    "decision": "Decision",
    "statement": "Statement",
    "signer_name": "Your full name",
    "signer_title": "Your title or position",
}
KEPT_FIELDS = ("body", "proposed_wording", "statement")
"""Free text a person typed: shown back whenever the form it came from is not on the page any more."""
CSRF_REFUSED = (
    "This form has expired or did not come from this site, so nothing was recorded. If you sent it, "
    "check what you typed (shown below), then paste it into the form on this page and submit it again."
)
FORM_INCOMPLETE = (
    "the form is incomplete or comes from an old copy of this page; check it below and submit it again"
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def form_problems(exc: ValidationError) -> list[str]:
    """Pydantic's findings on a form, in words a focal point understands."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error.get("loc") else ""
        label = FIELD_LABELS.get(name, name)
        kind = error.get("type", "")
        context = error.get("ctx") or {}
        if name == "submission_id":
            problems.append(FORM_INCOMPLETE)
        elif kind == "value_error":
            problems.append(str(context.get("error", error.get("msg", "invalid"))))
        elif kind == "string_too_short" and name == "body":
            problems.append("the comment is empty")
        elif kind == "string_too_short":
            minimum = context.get("min_length", 1)
            empty = minimum <= 1 or not str(error.get("input") or "").strip()
            problems.append(
                f"{label}: this is required" if empty else f"{label}: give at least {minimum} characters"
            )
        elif kind == "string_too_long":
            problems.append(
                f"{label}: this is longer than the {context.get('max_length')} characters allowed"
            )
        elif kind == "enum":
            problems.append(f"{label}: choose one of {context.get('expected', 'the options offered')}")
        else:
            problems.append(f"{label}: {error.get('msg', 'invalid')}")
    return problems


def _form_shown(page: review_page.ReviewPage, form: dict[str, Any]) -> bool:
    """Whether the page shows again the form that `form` came from, with what was typed in it."""
    if not page.writable:
        return False
    if "section_id" in form:
        return any(section.id == form["section_id"] for section in page.sections)
    if "editing" in form:
        return any(
            comment.id == form["editing"] and comment.status == CommentStatus.active
            for comment in page.comments
        )
    if "decision" in form:
        return page.sign_off is None
    return True


async def _render(
    request: Request,
    session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    token: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    refill: bool = True,
) -> Response:
    """The page; after a refused form, with the message and what was typed: back in the form when the
    page still shows it and `refill`, otherwise read-only above the sections, to copy."""
    page = await review_page.review_page(session, token=token)
    form = form or {}
    notice = NOTICES.get(request.query_params.get("done", ""))
    kept = []
    if form and not (refill and _form_shown(page, form)):
        kept = [(FIELD_LABELS[name], form[name]) for name in KEPT_FIELDS if str(form.get(name) or "").strip()]
    grouped = review_view.comments_by_section(page.sections, page.comments)
    refilled = form if refill else {}
    return csrf.render(
        request,
        templates,
        settings,
        "review.html",
        {
            "page": page,
            "token": token,
            # Each form it is called for gets its own: the same form sent twice is recorded once.
            "new_submission_id": review_view.new_submission_id,
            "notice": notice if status_code == 200 else None,
            "error": error,
            "form": refilled,
            "kept": kept,
            "comments_by_section": grouped,
            "active_counts": review_view.active_counts(grouped),
            "typed": review_view.CommentFields.typed(refilled),
            "blank": review_view.BLANK,
            "paragraph_options": review_view.paragraph_options,
            "kind_options": review_view.kind_options,
            "decisions": list(Decision),
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


@router.get("/{token}")
async def show_review_page(
    request: Request, session: ReadSession, templates: Templates, settings: SettingsDep, token: str
) -> Response:
    """The assigned sections, this organisation's comments and its sign-off status. Changes nothing."""
    return await _render(request, session, templates, settings, token)


async def _submit(
    request: Request,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    token: str,
    csrf_token: str,
    form: dict[str, Any],
    action: Callable[[], Awaitable[str]],
) -> Response:
    """Run a form's action; on bad input show the page again with the message and what was typed."""
    again = functools.partial(_render, request, read_session, templates, settings, token, form=form)
    try:
        csrf.check(request, csrf_token, settings.secret_key)
    except csrf.CsrfFailed as exc:
        # What was typed is shown to copy, not put back into a form that the fresh token would let
        # through: another site must not be able to prepare a filled-in form for one click.
        return await again(status_code=exc.status_code, error=CSRF_REFUSED, refill=False)
    try:
        if any("\x00" in value for value in form.values() if isinstance(value, str)):
            raise InvalidInput(
                "the text contains a NUL character, which cannot be stored; remove it and try again"
            )
        target = await action()
    except ValidationError as exc:
        return await again(status_code=422, error="; ".join(form_problems(exc)) + ".")
    except DomainError as exc:
        if exc.status_code in (401, 403) or (exc.status_code == 404 and exc.error == "invalid_link"):
            raise  # the link itself is bad: there is no page to show again
        return await again(status_code=exc.status_code, error=exc.detail)
    return RedirectResponse(
        f"/t/{token}?{target}", status_code=303, headers={"Referrer-Policy": "no-referrer"}
    )


@router.post("/{token}/comments")
async def add_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    csrf_token: FormText = "",
    submission_id: FormText = "",
    section_id: FormText = "",
    body: FormText = "",
    kind: FormText = "general",
    paragraph: FormText = "",
    proposed_wording: FormText = "",
) -> Response:
    """Record a comment. The form's submission_id makes a repeated submission (a double click, a resent
    form) return the comment recorded the first time."""
    section = parse_id(section_id)
    form = {
        "section_id": section,
        "submission_id": submission_id,
        "body": body,
        "kind": kind,
        "paragraph": paragraph,
        "proposed_wording": proposed_wording,
    }

    async def action() -> str:
        if section is None:
            raise InvalidInput("choose the section your comment is about")
        data = CommentCreate.model_validate(
            {
                "section_id": section,
                "body": body,
                "kind": kind,
                "paragraph": paragraph,
                "proposed_wording": proposed_wording,
                "submission_id": submission_id,
            }
        )
        comment = await comments.add_comment(session, token=token, data=data, client=client)
        return f"done=comment-added#comment-{comment.id}"

    return await _submit(request, read_session, templates, settings, token, csrf_token, form, action)


@router.post("/{token}/comments/{comment_id}/edit")
async def edit_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    comment_id: IdPath,
    csrf_token: FormText = "",
    body: FormText = "",
    kind: FormText = "general",
    paragraph: FormText = "",
    proposed_wording: FormText = "",
) -> Response:
    form = {
        "editing": comment_id,
        "body": body,
        "kind": kind,
        "paragraph": paragraph,
        "proposed_wording": proposed_wording,
    }

    async def action() -> str:
        data = CommentUpdate.model_validate(
            {"body": body, "kind": kind, "paragraph": paragraph, "proposed_wording": proposed_wording}
        )
        await comments.edit_comment(session, token=token, comment_id=comment_id, data=data, client=client)
        return f"done=comment-edited#comment-{comment_id}"

    return await _submit(request, read_session, templates, settings, token, csrf_token, form, action)


@router.post("/{token}/comments/{comment_id}/withdraw")
async def withdraw_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    comment_id: IdPath,
    csrf_token: FormText = "",
) -> Response:
    async def action() -> str:
        await comments.withdraw_comment(session, token=token, comment_id=comment_id, client=client)
        return f"done=comment-withdrawn#comment-{comment_id}"

    return await _submit(request, read_session, templates, settings, token, csrf_token, {}, action)


@router.post("/{token}/sign-off")
async def sign_off(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    csrf_token: FormText = "",
    submission_id: FormText = "",
    decision: FormText = "",
    statement: FormText = "",
    signer_name: FormText = "",
    signer_title: FormText = "",
) -> Response:
    form = {
        "submission_id": submission_id,
        "decision": decision,
        "statement": statement,
        "signer_name": signer_name,
        "signer_title": signer_title,
    }

    async def action() -> str:
        data = SignOffCreate.model_validate(
            {
                "decision": decision,
                "statement": statement,
                "signer_name": signer_name,
                "signer_title": signer_title,
                "submission_id": submission_id,
            }
        )
        outcome = await reviews.sign_off(session, token=token, data=data, client=client)
        if outcome.round_settled:
            background.add_task(scheduler.wake, outcome.receipt.round_id)
        return "done=signed#receipt"

    return await _submit(request, read_session, templates, settings, token, csrf_token, form, action)


@router.api_route("/{rest:path}", methods=["GET", "POST"])
async def no_such_page(rest: str) -> Response:
    """Anything else under /t/ (a mangled link, a token with a slash in it): the same clear answer."""
    raise NotFound(links.INVALID_LINK, error="invalid_link")
