"""The focal point's review page under /t/{token}: one GET that never changes anything, and forms."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from models.enums import CommentKind, Decision
from models.reviews import CommentCreate, CommentUpdate, SignOffCreate
from services import reviews
from services.errors import DomainError
from services.web import csrf
from services.web.deps import Client, ReadSession, SchedulerDep, SettingsDep, Templates, WriteSession
from services.web.errors import describe_validation

router = APIRouter(prefix="/t", include_in_schema=False)

NOTICES = {
    "comment-added": "Your comment was saved.",
    "comment-edited": "Your comment was updated.",
    "comment-withdrawn": "Your comment was withdrawn.",
    "signed": "The sign-off was recorded. Your receipt is below.",
}
FormText = Annotated[str, Form()]


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
) -> Response:
    page = await reviews.review_page(session, token=token)
    cookie, is_new = csrf.cookie_value(request)
    notice = NOTICES.get(request.query_params.get("done", ""))
    response = templates.TemplateResponse(
        request,
        "review.html",
        {
            "page": page,
            "token": token,
            "csrf_token": csrf.form_token(settings.secret_key, cookie),
            "submission_id": uuid.uuid4().hex,
            "notice": notice if status_code == 200 else None,
            "error": error,
            "form": form or {},
            "comment_kinds": list(CommentKind),
            "decisions": list(Decision),
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
    if is_new:
        csrf.set_cookie(response, cookie, secure=request.url.scheme == "https")
    return response


@router.get("/{token}")
async def review_page(
    request: Request, session: ReadSession, templates: Templates, settings: SettingsDep, token: str
) -> Response:
    """The assigned sections, this organisation's comments and its sign-off status. Changes nothing."""
    return await _render(request, session, templates, settings, token)


async def _submit(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    token: str,
    csrf_token: str,
    form: dict[str, Any],
    action: Callable[[], Awaitable[str]],
) -> Response:
    """Run a form's action; on bad input show the page again with the message and what was typed."""
    csrf.check(request, csrf_token, settings.secret_key)
    try:
        target = await action()
    except ValidationError as exc:
        await session.rollback()
        problems = describe_validation(exc)
        return await _render(
            request, read_session, templates, settings, token, status_code=422, error="; ".join(problems), form=form
        )
    except DomainError as exc:
        await session.rollback()
        if exc.status_code == 404:
            raise
        return await _render(
            request, read_session, templates, settings, token, status_code=exc.status_code, error=exc.detail, form=form
        )
    return RedirectResponse(f"/t/{token}?{target}", status_code=303)


@router.post("/{token}/comments")
async def add_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    csrf_token: FormText,
    section_id: Annotated[int, Form()],
    body: FormText = "",
    kind: FormText = "general",
    paragraph: FormText = "",
    proposed_wording: FormText = "",
) -> Response:
    form = {"section_id": section_id, "body": body, "kind": kind, "paragraph": paragraph, "proposed_wording": proposed_wording}

    async def action() -> str:
        data = CommentCreate(
            section_id=section_id, body=body, kind=kind, paragraph=paragraph, proposed_wording=proposed_wording  # type: ignore[arg-type]
        )
        comment = await reviews.add_comment(session, token=token, data=data, client=client)
        return f"done=comment-added#comment-{comment.id}"

    return await _submit(request, session, read_session, templates, settings, token, csrf_token, form, action)


@router.post("/{token}/comments/{comment_id}/edit")
async def edit_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    comment_id: int,
    csrf_token: FormText,
    body: FormText = "",
    kind: FormText = "general",
    paragraph: FormText = "",
    proposed_wording: FormText = "",
) -> Response:
    form = {"editing": comment_id, "body": body, "kind": kind, "paragraph": paragraph, "proposed_wording": proposed_wording}

    async def action() -> str:
        data = CommentUpdate(body=body, kind=kind, paragraph=paragraph, proposed_wording=proposed_wording)  # type: ignore[arg-type]
        await reviews.edit_comment(session, token=token, comment_id=comment_id, data=data, client=client)
        return f"done=comment-edited#comment-{comment_id}"

    return await _submit(request, session, read_session, templates, settings, token, csrf_token, form, action)


@router.post("/{token}/comments/{comment_id}/withdraw")
async def withdraw_comment(
    request: Request,
    session: WriteSession,
    read_session: ReadSession,
    templates: Templates,
    settings: SettingsDep,
    client: Client,
    token: str,
    comment_id: int,
    csrf_token: FormText,
) -> Response:
    async def action() -> str:
        await reviews.withdraw_comment(session, token=token, comment_id=comment_id, client=client)
        return f"done=comment-withdrawn#comment-{comment_id}"

    return await _submit(request, session, read_session, templates, settings, token, csrf_token, {}, action)


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
    csrf_token: FormText,
    submission_id: FormText,
    decision: FormText = "",
    statement: FormText = "",
    signer_name: FormText = "",
    signer_title: FormText = "",
) -> Response:
    form = {"decision": decision, "statement": statement, "signer_name": signer_name, "signer_title": signer_title}

    async def action() -> str:
        data = SignOffCreate(
            decision=decision,  # type: ignore[arg-type]
            statement=statement,
            signer_name=signer_name,
            signer_title=signer_title,
            submission_id=submission_id,
        )
        receipt = await reviews.sign_off(session, token=token, data=data, client=client)
        background.add_task(scheduler.wake, receipt.round_id)
        return "done=signed#receipt"

    return await _submit(request, session, read_session, templates, settings, token, csrf_token, form, action)
