"""The console's desk for answering comments: the round's comments filtered and paged, an answer per
comment or one for the ticked ones, saved answer texts, the objections and the clearance, and publishing.
The result of an action is shown beside the comment it was about."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import CommentWeight, ResponseKind
from services import answer_texts, objections, responses
from services.web.answer_forms import AnswerForm, AnswerTextForm, BulkAnswerForm
from services.web.console_page import Page
from services.web.deps import (
    ConsolePage,
    FilterQuery,
    IdPath,
    PageQuery,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    SignedIn,
    Submitted,
    WriteSession,
    parse_id,
)
from services.web.forms import CsrfForm
from services.web.pages.console import _shown, _signed_in_page
from services.web.routes import ConsoleRoute, Refused, shows_refused

router = APIRouter(prefix="/console/rounds", include_in_schema=False, route_class=ConsoleRoute)
PAGE_SIZE = 50
NO_FILTERS = {"section": "", "organisation": "", "weight": "", "state": "", "q": "", "page": "1"}
STATES = ("unanswered", "draft", "published", "withdrawn")
DONE = {
    "answered": "The answer was saved as a draft; it is sent when you publish the answers.",
    "answered-many": "The answer was saved as a draft for each ticked comment.",
    "saved-text": "The answer text was saved; pick it in any answer form.",
    "published": "The answers were published: each organisation answered is being sent its feedback letter.",
}


def _state(comment: Any) -> str:
    if comment.status == "withdrawn":
        return "withdrawn"
    if comment.response is None:
        return "unanswered"
    return "published" if comment.response.published_at else "draft"


async def _answers_page(
    page: Page,
    session: AsyncSession,
    round_id: int,
    *,
    filters: dict[str, str],
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    listed = await responses.list_round_comments(session, round_id=round_id)
    register = await objections.register(session, round_id=round_id)
    clearance = await objections.clearance(session, round_id=round_id)
    saved = await answer_texts.list_texts(session)
    chosen = [
        comment
        for comment in listed
        if (not filters.get("section") or comment.section == filters["section"])
        and (not filters.get("organisation") or comment.organisation_key == filters["organisation"])
        and (not filters.get("weight") or comment.weight == filters["weight"])
        and (not filters.get("state") or _state(comment) == filters["state"])
        and (not filters.get("q") or filters["q"].casefold() in comment.text.casefold())
    ]
    number = max(1, parse_id(filters.get("page", "1") or "1") or 1)
    pages = max(1, -(-len(chosen) // PAGE_SIZE))
    number = min(number, pages)
    shown = chosen[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    query = {key: value for key, value in filters.items() if value and key != "page"}
    done = page.request.query_params.get("done", "")
    return page.render(
        "console/answers.html",
        {
            "nav": "rounds",
            "round_id": round_id,
            "comments": shown,
            "total": len(listed),
            "matching": len(chosen),
            "page_number": number,
            "pages": pages,
            "query": urlencode(query),
            "filters": filters,
            "sections": sorted({c.section for c in listed}, key=lambda s: (len(s), s)),
            "organisations": sorted(
                {(c.organisation_key, c.organisation_name) for c in listed}, key=lambda o: o[1]
            ),
            "weights": [str(weight) for weight in CommentWeight],
            "responses": [str(kind) for kind in ResponseKind],
            "states": STATES,
            "drafts": sum(1 for c in listed if _state(c) == "draft"),
            "register": register,
            "clearance": clearance,
            "saved_texts": saved,
            "state_of": {c.id: _state(c) for c in shown},
            "done_notice": DONE.get(done),
            "done_comment": parse_id(page.request.query_params.get("comment", "") or ""),
            "done_place": page.request.query_params.get("at", ""),
            "error": error,
            "problems": problems or [],
            "form": form or {},
            "refused_at": (form or {}).get("at", ""),
        },
        status_code=status_code,
    )


@router.get("/{round_id}/comments")
async def answers(
    page: ConsolePage,
    session: ReadSession,
    round_id: IdPath,
    section: FilterQuery = "",
    organisation: FilterQuery = "",
    weight: FilterQuery = "",
    state: FilterQuery = "",
    q: FilterQuery = "",
    page_number: PageQuery = "1",
) -> Response:
    filters = {
        "section": section,
        "organisation": organisation,
        "weight": weight,
        "state": state,
        "q": q,
        "page": page_number,
    }
    return await _answers_page(page, session, round_id, filters=filters)


async def _answer_refused(request: Request, session: AsyncSession, refused: Refused) -> Response:
    round_id = parse_id(str(request.path_params.get("round_id", "")))
    if round_id is None:
        raise refused.error
    page = await _signed_in_page(request)
    typed = refused.form.typed(request.path_params)
    comment_id = typed.get("comment_id")
    typed["at"] = f"comment-{comment_id}" if comment_id else "bulk"
    if isinstance(refused.form, AnswerTextForm):
        typed["at"] = "saved-texts"
    if isinstance(refused.form, CsrfForm):
        typed["at"] = "publish"
    return await _answers_page(page, session, round_id, filters=NO_FILTERS, form=typed, **_shown(refused))


def _back(round_id: int, done: str, at: str, comment_id: int | None = None) -> Response:
    extra = f"&comment={comment_id}" if comment_id else ""
    return RedirectResponse(
        f"/console/rounds/{round_id}/comments?done={done}&at={at}{extra}#{at}", status_code=303
    )


@router.post("/{round_id}/comments/{comment_id}/response")
@shows_refused(_answer_refused)
async def answer_one(
    principal: SignedIn,
    session: WriteSession,
    round_id: IdPath,
    comment_id: IdPath,
    form: Submitted[AnswerForm],
) -> Response:
    saved_id = form.saved_text_id()
    saved = await answer_texts.get_text(session, answer_text_id=saved_id) if saved_id else None
    await responses.answer_comment(
        session,
        comment_id=comment_id,
        data=form.answer(saved),
        actor=principal.actor,
        user_id=principal.user_id,
    )
    return _back(round_id, "answered", f"comment-{comment_id}", comment_id)


@router.post("/{round_id}/responses")
@shows_refused(_answer_refused)
async def answer_many(
    principal: SignedIn, session: WriteSession, round_id: IdPath, form: Submitted[BulkAnswerForm]
) -> Response:
    saved_id = form.saved_text_id()
    saved = await answer_texts.get_text(session, answer_text_id=saved_id) if saved_id else None
    await responses.answer_comments(
        session, round_id=round_id, data=form.bulk(saved), actor=principal.actor, user_id=principal.user_id
    )
    return _back(round_id, "answered-many", "bulk")


@router.post("/{round_id}/answer-texts")
@shows_refused(_answer_refused)
async def save_answer_text(
    principal: SignedIn, session: WriteSession, round_id: IdPath, form: Submitted[AnswerTextForm]
) -> Response:
    await answer_texts.save(
        session, data=form.answer_text(), actor=principal.actor, user_id=principal.user_id
    )
    return _back(round_id, "saved-text", "saved-texts")


@router.post("/{round_id}/responses/publish")
@shows_refused(_answer_refused)
async def publish(
    principal: SignedIn,
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    round_id: IdPath,
    _form: Submitted[CsrfForm],
) -> Response:
    await responses.publish(session, round_id=round_id, actor=principal.actor, settings=settings)
    background.add_task(scheduler.wake, round_id)
    return _back(round_id, "published", "publish")
