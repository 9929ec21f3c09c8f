"""The focal point's review page under /t/{token}: one GET that never changes anything, and forms.

Each form is read as one model of plain text fields (forms.py) and checked on its way into the use case,
so that any bad input, a missing CSRF token included, gets the page back with a clear message and what was
typed (ReviewRoute, and `_show_refused` here), never a bare validation error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentStatus, Decision
from services import comments, extension_requests, handovers, links, review_page, reviews
from services.errors import NotFound
from services.sign_off_codes import CodeSent
from services.web import csrf, i18n, review_view
from services.web.deps import (
    Client,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    Submitted,
    WriteSession,
    parse_id,
    web_state,
)
from services.web.errors import describe_validation
from services.web.forms import (
    CommentEditForm,
    CommentForm,
    CsrfForm,
    ExtensionAskForm,
    HandoverForm,
    SignOffCodeForm,
    SignOffForm,
    SignOffNewCodeForm,
)
from services.web.i18n import N_
from services.web.routes import Refused, ReviewRoute, shows_refused

router = APIRouter(prefix="/t", include_in_schema=False, route_class=ReviewRoute)

NOTICES = {
    "comment-added": N_("Your comment was saved."),
    "comment-edited": N_("Your comment was updated."),
    "comment-withdrawn": N_("Your comment was withdrawn."),
    "signed": N_("The sign-off was recorded. Your receipt is below."),
    "code-sent": N_("We have emailed you a code. Enter it below to confirm the sign-off."),
    "time-asked": N_(
        "Your request for more time was sent to the coordinator; the answer will come by email."
    ),
    "handed-over": N_("Your colleague has been sent a link of their own. Yours keeps working too."),
}
NOTICE_PLACES = {
    "signed": "receipt",
    "code-sent": "sign-off",
    "time-asked": "more-time",
    "handed-over": "hand-over",
}
"""Where each notice is shown: next to what the person did, where the redirect's fragment leads (a
comment's notices in the comment itself)."""
KEPT_FIELDS = ("body", "proposed_wording", "statement")
"""Free text a person typed: shown back whenever the form it came from is not on the page any more."""
CSRF_REFUSED = N_(
    "This form has expired or did not come from this site, so nothing was recorded. If you sent it, "
    "check what you typed (shown below), then paste it into the form on this page and submit it again."
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
TOP = "top"


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
    if "entering_code" in form:
        return page.pending_sign_off is not None
    if "wanted_deadline" in form:
        return page.may_ask_for_time
    return True


def _more_time_shown(page: review_page.ReviewPage) -> bool:
    return page.pending_request is not None or page.may_ask_for_time or page.writable


def _error_place(page: review_page.ReviewPage, form: dict[str, Any], comment_id: int | None) -> str:
    """Where a refused form's message goes: right above the form it came from (each form's action ends
    in #form-error, the message's id, so the browser shows it), or above the sections when that form
    is not on the page any more."""
    if "section_id" in form:
        shown = page.writable and any(section.id == form["section_id"] for section in page.sections)
        return f"add-{form['section_id']}" if shown else TOP
    comment_id = form.get("editing", comment_id)
    if comment_id is not None:
        shown = any(comment.id == comment_id for comment in page.comments)
        return f"comment-{comment_id}" if shown else TOP
    if "decision" in form or "entering_code" in form:
        return "sign-off"
    if "wanted_deadline" in form:
        return "more-time" if _more_time_shown(page) else TOP
    if "colleague_email" in form:
        if page.writable:
            return "hand-over"
        return "more-time" if _more_time_shown(page) else TOP
    return TOP


def _notice_place(page: review_page.ReviewPage, done: str, comment_id: int | None) -> str:
    if done.startswith("comment-"):
        shown = any(comment.id == comment_id for comment in page.comments)
        return f"comment-{comment_id}" if shown else TOP
    place = NOTICE_PLACES.get(done, TOP)
    if place == "receipt" and page.sign_off is None:
        return TOP
    if place == "sign-off" and page.pending_sign_off is None:
        return TOP
    if place == "more-time" and not _more_time_shown(page):
        return TOP
    if place == "hand-over" and not page.writable:
        return "more-time" if _more_time_shown(page) else TOP
    return place


def _message(refused: Refused, words: Callable[[str], str]) -> str:
    """A refused form's message in the page's language, as far as the catalogs have it."""
    if isinstance(refused.error, csrf.CsrfFailed):
        return words(CSRF_REFUSED)
    if isinstance(refused.error, ValidationError):
        labels, messages = refused.form.labels, refused.form.messages
        return (
            "; ".join(describe_validation(refused.error, labels=labels, messages=messages, translate=words))
            + "."
        )
    return words(refused.message)


async def _render(
    request: Request,
    session: AsyncSession,
    token: str,
    *,
    status_code: int = 200,
    refused: Refused | None = None,
) -> Response:
    """The page; after a refused form, with the message right above the form and what was typed: back
    in the form when the page still shows it (not after a CSRF refusal), otherwise read-only next to
    the message, to copy."""
    page = await review_page.review_page(session, token=token)
    language = i18n.language_of(request, default=str(page.context.organisation.language))
    words = i18n.translator(language)
    form: dict[str, Any] = refused.form.typed(request.path_params) if refused else {}
    refill = not (refused and isinstance(refused.error, csrf.CsrfFailed))
    kept = []
    if refused and form and not (refill and _form_shown(page, form)):
        labels = refused.form.labels or {}
        kept = [(labels[name], form[name]) for name in KEPT_FIELDS if str(form.get(name) or "").strip()]
    comment_id = parse_id(request.path_params.get("comment_id") or request.query_params.get("comment", ""))
    done = request.query_params.get("done", "") if status_code == 200 else ""
    notice = NOTICES.get(done)
    grouped = review_view.comments_by_section(page.sections, page.comments)
    refilled = form if refill else {}
    waiting = page.pending_sign_off
    # The sign-off form shows what was typed in it, else the sign-off waiting for its code, to change.
    sign_off_form: dict[str, Any] = (
        refilled
        if "decision" in refilled
        else {
            "decision": waiting.decision,
            "statement": waiting.statement,
            "signer_name": waiting.signer_name,
            "signer_title": waiting.signer_title,
        }
        if waiting
        else {}
    )
    state = web_state(request)
    return csrf.render(
        request,
        state.templates,
        state.settings,
        "review.html",
        {
            "lang": language,
            "page_path": f"/t/{token}",
            "page": page,
            "token": token,
            # Each form it is called for gets its own: the same form sent twice is recorded once.
            "new_submission_id": review_view.new_submission_id,
            "notice": words(notice) if notice else None,
            "notice_at": _notice_place(page, done, comment_id) if notice else None,
            "error": _message(refused, words) if refused else None,
            "error_at": _error_place(page, form, comment_id) if refused else None,
            "form": refilled,
            "sign_off_form": sign_off_form,
            "kept": kept,
            "comments_by_section": grouped,
            "active_counts": review_view.active_counts(grouped),
            "typed": review_view.CommentFields.typed(refilled),
            "blank": review_view.BLANK,
            "paragraph_options": review_view.paragraph_options,
            "kind_options": functools.partial(review_view.kind_options, language=language),
            "weight_options": functools.partial(review_view.weight_options, language=language),
            "decisions": list(Decision),
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


async def _show_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    """The page again after a refused form, with the message and what was typed. After a CSRF refusal,
    what was typed is shown to copy, not put back into a form that the fresh token would let through:
    another site must not be able to prepare a filled-in form for one click."""
    status_code = 403 if isinstance(refused.error, csrf.CsrfFailed) else refused.status_code
    return await _render(
        request, session, request.path_params["token"], status_code=status_code, refused=refused
    )


def _done(token: str, target: str) -> Response:
    return RedirectResponse(
        f"/t/{token}?{target}", status_code=303, headers={"Referrer-Policy": "no-referrer"}
    )


@router.get("/{token}")
async def show_review_page(request: Request, session: ReadSession, token: str) -> Response:
    """The assigned sections, this organisation's comments and its sign-off status. Changes nothing."""
    return await _render(request, session, token)


@router.post("/{token}/comments")
@shows_refused(_show_refused)
async def add_comment(
    session: WriteSession, client: Client, token: str, form: Submitted[CommentForm]
) -> Response:
    """Record a comment; the same form sent again returns the comment recorded the first time."""
    comment = await comments.add_comment(session, token=token, data=form.comment(), client=client)
    return _done(token, f"done=comment-added&comment={comment.id}#comment-{comment.id}")


@router.post("/{token}/comments/{comment_id}/edit")
@shows_refused(_show_refused)
async def edit_comment(
    session: WriteSession, client: Client, token: str, comment_id: IdPath, form: Submitted[CommentEditForm]
) -> Response:
    await comments.edit_comment(
        session, token=token, comment_id=comment_id, data=form.comment(), client=client
    )
    return _done(token, f"done=comment-edited&comment={comment_id}#comment-{comment_id}")


@router.post("/{token}/comments/{comment_id}/withdraw")
@shows_refused(_show_refused)
async def withdraw_comment(
    session: WriteSession, client: Client, token: str, comment_id: IdPath, _form: Submitted[CsrfForm]
) -> Response:
    await comments.withdraw_comment(session, token=token, comment_id=comment_id, client=client)
    return _done(token, f"done=comment-withdrawn&comment={comment_id}#comment-{comment_id}")


@router.post("/{token}/sign-off")
@shows_refused(_show_refused)
async def sign_off(
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    form: Submitted[SignOffForm],
) -> Response:
    """Sign off; when the round asks for a code, email it to the signer instead, and record nothing yet."""
    outcome = await reviews.sign_off(
        session, token=token, data=form.sign_off(), client=client, settings=settings
    )
    if isinstance(outcome, CodeSent):
        background.add_task(scheduler.wake, outcome.round_id)  # the code must arrive while they wait
        return _done(token, "done=code-sent#sign-off")
    if outcome.round_settled:
        # Only the sign-off that leaves nothing to sign has anything to tell the round's scheduler.
        background.add_task(scheduler.wake, outcome.receipt.round_id)
    return _done(token, "done=signed#receipt")


@router.post("/{token}/sign-off/code")
@shows_refused(_show_refused)
async def confirm_sign_off(
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    form: Submitted[SignOffCodeForm],
) -> Response:
    """The code emailed to the signer: the right one records the sign-off waiting for it."""
    outcome = await reviews.confirm_sign_off(
        session,
        token=token,
        code=form.checked_code(),
        submission_id=form.submission_id,
        client=client,
        settings=settings,
    )
    if outcome.round_settled:
        background.add_task(scheduler.wake, outcome.receipt.round_id)
    return _done(token, "done=signed#receipt")


@router.post("/{token}/sign-off/code/new")
@shows_refused(_show_refused)
async def new_sign_off_code(
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    _form: Submitted[SignOffNewCodeForm],
) -> Response:
    """Another code for the sign-off waiting on this link; the earlier one stops working."""
    sent = await reviews.new_sign_off_code(session, token=token, client=client, settings=settings)
    background.add_task(scheduler.wake, sent.round_id)
    return _done(token, "done=code-sent#sign-off")


@router.post("/{token}/opened")
@shows_refused(_show_refused)
async def page_opened(
    session: WriteSession, client: Client, token: str, _form: Submitted[CsrfForm]
) -> Response:
    """Sent by the page's script once it is shown in a browser, so the coordinator sees who has opened
    their task (a mail scanner fetching the link runs no script, and a GET changes nothing)."""
    await links.record_opened(session, token=token, client=client)
    return Response(status_code=204)


@router.post("/{token}/extension-request")
@shows_refused(_show_refused)
async def ask_for_more_time(
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    form: Submitted[ExtensionAskForm],
) -> Response:
    """Ask the coordinator for a later deadline, with a reason; the answer comes by email."""
    request = await extension_requests.ask(
        session,
        token=token,
        wanted_local=form.wanted_deadline,
        reason=form.reason,
        submission_id=form.checked_submission_id(),
        client=client,
        settings=settings,
    )
    background.add_task(scheduler.wake, request.round_id)  # the coordinator's email goes at once
    return _done(token, "done=time-asked#more-time")


@router.post("/{token}/handover")
@shows_refused(_show_refused)
async def hand_over(
    session: WriteSession,
    settings: SettingsDep,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    form: Submitted[HandoverForm],
) -> Response:
    """Hand the task to a colleague, who gets a link of their own."""
    link = await handovers.hand_over(
        session, token=token, data=form.handover(), client=client, settings=settings
    )
    background.add_task(scheduler.wake, link.round_id)  # the colleague's link goes at once
    return _done(token, "done=handed-over#hand-over")


@router.api_route("/{rest:path}", methods=["GET", "POST"])
async def no_such_page(rest: str) -> Response:
    """Anything else under /t/ (a mangled link, a token with a slash in it): the same clear answer."""
    raise NotFound(links.INVALID_LINK, error="invalid_link")
