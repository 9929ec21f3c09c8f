"""The focal point's review page under /t/{token}: one GET that never changes anything, and forms.

Each form is read as one model of plain text fields (forms.py) and checked on its way into the use case,
so that any bad input, a missing CSRF token included, gets the page back with a clear message and what was
typed (ReviewRoute, and `_show_refused` here), never a bare validation error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentStatus, Decision
from services import comments, extension_requests, handovers, links, review_page, reviews
from services.errors import NotFound
from services.web import csrf, review_view
from services.web.deps import (
    Client,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    Submitted,
    WriteSession,
    web_state,
)
from services.web.forms import (
    CommentEditForm,
    CommentForm,
    CsrfForm,
    ExtensionAskForm,
    HandoverForm,
    SignOffForm,
)
from services.web.routes import Refused, ReviewRoute, shows_refused

router = APIRouter(prefix="/t", include_in_schema=False, route_class=ReviewRoute)

NOTICES = {
    "comment-added": "Your comment was saved.",
    "comment-edited": "Your comment was updated.",
    "comment-withdrawn": "Your comment was withdrawn.",
    "signed": "The sign-off was recorded. Your receipt is below.",
    "time-asked": "Your request for more time was sent to the coordinator; the answer will come by email.",
    "handed-over": "Your colleague has been sent a link of their own. Yours keeps working too.",
}
KEPT_FIELDS = ("body", "proposed_wording", "statement")
"""Free text a person typed: shown back whenever the form it came from is not on the page any more."""
CSRF_REFUSED = (
    "This form has expired or did not come from this site, so nothing was recorded. If you sent it, "
    "check what you typed (shown below), then paste it into the form on this page and submit it again."
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


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
    if "wanted_deadline" in form:
        return page.may_ask_for_time
    return True


async def _render(
    request: Request,
    session: AsyncSession,
    token: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    refill: bool = True,
) -> Response:
    """The page; after a refused form, with the message and what was typed: back in the form when the
    page still shows it and `refill`, otherwise read-only above the sections, to copy."""
    page = await review_page.review_page(session, token=token)
    form = form or {}
    notice = NOTICES.get(request.query_params.get("done", ""))
    kept = []
    if form and not (refill and _form_shown(page, form)):
        kept = [
            ((labels or {})[name], form[name]) for name in KEPT_FIELDS if str(form.get(name) or "").strip()
        ]
    grouped = review_view.comments_by_section(page.sections, page.comments)
    refilled = form if refill else {}
    state = web_state(request)
    return csrf.render(
        request,
        state.templates,
        state.settings,
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
            "weight_options": review_view.weight_options,
            "decisions": list(Decision),
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


async def _show_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    """The page again after a refused form, with the message and what was typed."""
    token = request.path_params["token"]
    typed = refused.form.typed(request.path_params)
    labels = dict(refused.form.labels or {})
    if isinstance(refused.error, csrf.CsrfFailed):
        # What was typed is shown to copy, not put back into a form that the fresh token would let
        # through: another site must not be able to prepare a filled-in form for one click.
        return await _render(
            request,
            session,
            token,
            status_code=403,
            error=CSRF_REFUSED,
            form=typed,
            labels=labels,
            refill=False,
        )
    message = refused.message + "." if isinstance(refused.error, ValidationError) else refused.message
    return await _render(
        request, session, token, status_code=refused.status_code, error=message, form=typed, labels=labels
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
    return _done(token, f"done=comment-added#comment-{comment.id}")


@router.post("/{token}/comments/{comment_id}/edit")
@shows_refused(_show_refused)
async def edit_comment(
    session: WriteSession, client: Client, token: str, comment_id: IdPath, form: Submitted[CommentEditForm]
) -> Response:
    await comments.edit_comment(
        session, token=token, comment_id=comment_id, data=form.comment(), client=client
    )
    return _done(token, f"done=comment-edited#comment-{comment_id}")


@router.post("/{token}/comments/{comment_id}/withdraw")
@shows_refused(_show_refused)
async def withdraw_comment(
    session: WriteSession, client: Client, token: str, comment_id: IdPath, _form: Submitted[CsrfForm]
) -> Response:
    await comments.withdraw_comment(session, token=token, comment_id=comment_id, client=client)
    return _done(token, f"done=comment-withdrawn#comment-{comment_id}")


@router.post("/{token}/sign-off")
@shows_refused(_show_refused)
async def sign_off(
    session: WriteSession,
    scheduler: SchedulerDep,
    background: BackgroundTasks,
    client: Client,
    token: str,
    form: Submitted[SignOffForm],
) -> Response:
    outcome = await reviews.sign_off(session, token=token, data=form.sign_off(), client=client)
    if outcome.round_settled:
        # Only the sign-off that leaves nothing to sign has anything to tell the round's scheduler.
        background.add_task(scheduler.wake, outcome.receipt.round_id)
    return _done(token, "done=signed#receipt")


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
