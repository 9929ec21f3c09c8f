"""The round page and its dashboard fragment, and where on it the result of an action is shown.

A person who resends an organisation's links, or whose form on that organisation's row is refused, reads
the outcome on that row: the action redirects to `?done=resent&task=<key>#task-<key>`, and the page puts
the notice in the row (the table's page is the one holding that row). A round's own actions (extend for
everyone, close, cancel, launch) are told beside the round's forms or at the top. A refused form comes
back (its page is the POST's answer, so the browser is at the top): the message is at the top with a link
to the form, and again next to the form, which is open with what was typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi.responses import RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import RoundStatus
from services.dashboard import check_page
from services.web import console_views
from services.web.console_page import NOTICES, Page
from services.web.deps import parse_id

ROW_NOTICES = frozenset(
    {"resent", "withdrawn", "replaced", "reopened", "granted", "refused", "added", "extended"}
)
"""Notices of an action on one organisation: told in its row when the redirect names it."""
ROUND_ACTION_NOTICES = frozenset({"extended"})
"""Notices of a round's action told beside the round's forms (when no row is named)."""
ROW_ACTIONS = frozenset({"withdraw", "resend", "contacts", "reopen", "grant", "refuse"})


@dataclass(frozen=True)
class Place:
    """Where on the round page a notice or a refused form's message goes: the top, the round's forms
    (`round-actions`), or an organisation's row (`task`); `action` names the form."""

    area: str = "top"
    task: str | None = None
    request: int | None = None
    action: str = ""

    @property
    def anchor(self) -> str:
        if self.area == "task" and self.task:
            return f"task-{self.task}"
        if self.area == "round-actions":
            return "round-actions"
        return "main"

    def is_row(self, key: str) -> bool:
        return self.area == "task" and self.task == key


TOP = Place()


def back_to(round_id: int, done: str, *, task: str | None = None) -> Response:
    """The redirect after an action: to the row it was taken on, or to the round's forms."""
    if task:
        key = quote(task, safe="")
        return RedirectResponse(
            f"/console/rounds/{round_id}?done={done}&task={key}#task-{key}", status_code=303
        )
    anchor = "#round-actions" if done in ROUND_ACTION_NOTICES else ""
    return RedirectResponse(f"/console/rounds/{round_id}?done={done}{anchor}", status_code=303)


def refused_place(path: str, path_params: Mapping[str, Any], typed: Mapping[str, Any]) -> Place:
    """Where the form a refused POST came from is on the round page, from the path it was posted to."""
    action = path.rstrip("/").rsplit("/", 1)[-1]
    if action in {"grant", "refuse"}:
        return Place(area="task", request=parse_id(str(path_params.get("request_id", ""))), action=action)
    if action in ROW_ACTIONS:
        return Place(area="task", task=str(path_params.get("organisation_key", "")), action=action)
    if action == "extend":
        keys = typed.get("organisation_keys") or []
        if isinstance(keys, list) and len(keys) == 1:
            return Place(area="task", task=str(keys[0]), action=action)
        return Place(area="round-actions", action=action)
    if action in {"tasks", "close", "cancel"}:
        return Place(area="round-actions", action="add" if action == "tasks" else action)
    return TOP


async def render(
    page: Page,
    session: AsyncSession,
    round_id: int,
    *,
    query: str = "",
    status: str = "",
    page_number: str = "",
    task: str = "",
    fragment: bool = False,
    status_code: int = 200,
    error: str | None = None,
    problems: list[str] | None = None,
    form: dict[str, Any] | None = None,
    place: Place | None = None,
) -> Response:
    """The round page (or, with `fragment`, only its dashboard) with its notice or refusal in place."""
    done = page.request.query_params.get("done", "")
    if place is None:  # a GET: the notice of the action just taken, if any
        if status_code == 200 and done in ROW_NOTICES and task:
            place = Place(area="task", task=task, action=done)
        elif done in ROUND_ACTION_NOTICES:
            place = Place(area="round-actions", action=done)
        else:
            place = TOP
    overview = await console_views.round_overview(
        session,
        round_id=round_id,
        query=query,
        status=status,
        page=check_page(page_number),
        focus=place.task,
    )
    board = overview.dashboard
    if place.area == "task" and place.task is None and place.request is not None:
        place = Place(
            area="task", task=board.row_of_request(place.request), request=place.request, action=place.action
        )
    shown = {row.key for row in board.table.rows}
    actions_shown = page.principal is not None and board.round.status == RoundStatus.open
    if (place.area == "task" and place.task not in shown) or (
        place.area == "round-actions" and not actions_shown
    ):
        place = TOP  # the row is not on this page of the table (or the forms are gone): tell it at the top
    notice = NOTICES.get(done) if status_code == 200 else None
    return page.render(
        "console/round_dashboard.html" if fragment else "console/round.html",
        {
            "nav": "rounds",
            "overview": overview,
            "board": board,
            "draft_status": RoundStatus.draft,
            "place": place,
            "notice": notice if place.area == "top" else None,
            "placed_notice": notice if place.area != "top" else None,
            "error": error,
            "problems": problems or [],
            "form": form or {},
        },
        status_code=status_code,
    )
