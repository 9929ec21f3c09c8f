"""One place that turns errors into responses: JSON for the API, a page for people."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import DomainError, ServiceUnavailable, TooManyRequests
from services.web import csrf, security_headers
from services.web.i18n import N_

log = logging.getLogger(__name__)


_REVIEW_TOKEN = re.compile(r"(/t/)[^/?#\s\"]+")


def redact(path: str) -> str:
    """A path or URL fit for a log line: the review token of /t/{token} replaced, so it is never written."""
    return _REVIEW_TOKEN.sub(r"\1<token>", path)


class RedactReviewTokens(logging.Filter):
    """Removes review tokens from access-log lines (uvicorn logs every request path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def is_bad_data(exc: BaseException) -> bool:
    """Whether the database refused a value itself (SQLSTATE class 22, 'data exception': a number out
    of range, a text too long, a NUL character), as opposed to failing."""
    if isinstance(exc, DataError):
        return True
    seen: BaseException | None = getattr(exc, "orig", None) or exc
    while seen is not None:
        if str(getattr(seen, "sqlstate", "") or "").startswith("22"):
            return True
        seen = seen.__cause__
    return False


RETRY_BUSY_SECONDS = 2
"""Retry-After of a request that gave up waiting for a lock or a connection: the wait is usually short."""
RETRY_UNREACHABLE_SECONDS = 5
"""Retry-After of a request that found the database unreachable: a restart or a fail-over takes longer."""

_BUSY_SQLSTATES = frozenset({"55P03", "57014", "40001", "40P01"})
"""lock_not_available (lock_timeout), query_canceled (statement_timeout), serialization_failure,
deadlock_detected: the statement gave up or was chosen to give way, and its transaction is rolled back."""
_UNREACHABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
"""Connection exceptions, insufficient resources (too many connections, out of memory or disk), operator
intervention (shut down, crashed, starting up, pg_terminate_backend)."""
_SQLITE_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_SQLITE_UNREACHABLE = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error, the driver's error it wraps (`orig`) and what each was raised from."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([current.__cause__, getattr(current, "orig", None)])


def database_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """What to answer (503) when the database did not serve a request, as opposed to refusing it: too
    busy (a lock or a statement that timed out, every pooled connection in use) or out of reach (refused,
    timed out, lost, shut down). None for anything else, which is a bug.

    Also for a bare TimeoutError or ConnectionError: what the database driver raises where SQLAlchemy
    does not wrap it (a server gone silent under the check of a pooled connection), and whatever else
    raises them has not answered either."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return ServiceUnavailable(
            "a part of the service did not answer in time. Try again in a moment.",
            retry_after=RETRY_UNREACHABLE_SECONDS,
        )
    busy = ServiceUnavailable(
        "the database is busy and this request gave up waiting for it; nothing was changed. "
        "Try again in a moment.",
        retry_after=RETRY_BUSY_SECONDS,
    )
    if isinstance(exc, PoolTimeout):
        return busy
    unreachable = isinstance(exc, DBAPIError) and exc.connection_invalidated
    for cause in _causes(exc):
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        sqlite_code = (getattr(cause, "sqlite_errorcode", 0) or 0) & 0xFF
        if sqlstate in _BUSY_SQLSTATES or sqlite_code in _SQLITE_BUSY:
            return busy
        if (
            sqlstate.startswith(_UNREACHABLE_SQLSTATE_PREFIXES)
            or sqlite_code in _SQLITE_UNREACHABLE
            or isinstance(cause, OSError)
        ):
            unreachable = True
    if not unreachable:
        return None
    return ServiceUnavailable(
        "the database cannot be reached at the moment. Try again in a moment.",
        retry_after=RETRY_UNREACHABLE_SECONDS,
    )


def _driver_error(exc: BaseException) -> str:
    """The driver's message, for a log line: not the statement and its parameters, which may hold
    whatever a person typed."""
    orig = getattr(exc, "orig", None)
    shown = orig if isinstance(orig, BaseException) else exc
    return f"{type(shown).__name__}: {shown}"


def wants_html(request: Request) -> bool:
    """People get pages, programs get JSON: everything under /api/ is JSON, and so is a request that
    asks for JSON rather than HTML; the rest (review links opened from any mail client) gets a page."""
    if request.url.path.startswith("/api/"):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/json" not in accept


def _body(error: str, detail: str, problems: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if problems:
        body["problems"] = problems
    return body


LINK_REFUSALS = frozenset({"invalid_link", "link_gone"})
"""Errors of a review link that does not open: their page points to the lost-link page."""
LINK_GONE = "link_gone"
"""A link that worked and works no more (its task settled and the grace period over, revoked, replaced,
cancelled): its page holds the lost-link form itself, so that getting the current links is one step."""
PAGE_TITLES = (
    N_("Invalid link"),
    N_("Link gone"),
    N_("Not found"),
    N_("Forbidden"),
    N_("Unauthorized"),
    N_("Conflict"),
    N_("Invalid input"),
    N_("Bad request"),
    N_("Csrf failed"),
    N_("Too many requests"),
    N_("Too large"),
    N_("Unavailable"),
    N_("Round closed"),
    N_("Deadline passed"),
    N_("Already signed off"),
    N_("Comment withdrawn"),
)
"""The titles the error page gives the errors people meet most (an error's code in words), for the
catalogs: the page shows each in its language."""


def _page(
    request: Request,
    status: int,
    title: str,
    detail: str,
    problems: list[str] | None = None,
    *,
    lost_link: bool = False,
    lost_link_form: bool = False,
) -> Response:
    state = request.app.state.roundtable
    templates: Jinja2Templates = state.templates
    context = {
        "title": title,
        "detail": detail,
        "problems": problems or [],
        "status": status,
        "lost_link": lost_link and not lost_link_form,
        "lost_link_form": lost_link_form,
    }
    if lost_link_form:  # a form: its CSRF token and cookie
        return csrf.render(request, templates, state.settings, "error.html", context, status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {**context, "csrf_token": ""}, status_code=status
    )


_REQUEST_PARTS = ("body", "query", "path")
TEXT_PROBLEMS = {
    "line_break": N_("{label}: contains a line break; write it on one line"),
    "control_character": N_(
        "{label}: contains the control character {character}, which cannot be shown; remove it"
    ),
    "bidi_control": N_(
        "{label}: contains the hidden direction character {character}, which can make the text display in "
        "another order than it is written; remove it"
    ),
}
"""The words for what `models.text` refuses in a field, by the error's type."""


def _as_written(text: str) -> str:
    return text


def describe_validation(
    exc: RequestValidationError | ValidationError,
    *,
    labels: Mapping[str, str] | None = None,
    messages: Mapping[str, str] | None = None,
    translate: Callable[[str], str] = _as_written,
) -> list[str]:
    """What is wrong, one line per problem: the one translator of validation errors, for the API and every
    form.

    Without `labels` (programs, and forms that name no fields), each problem is its field's dotted place
    and the validation's own words: "title: String should have at least 3 characters". A form for people
    passes its field labels and gets words for them: "Your title or position: give at least 2 characters";
    `messages` gives the whole line for a field (`name`) or for one kind of error on it (`name.type`).
    `translate` (a page's gettext) gives the words, labels and messages in the page's language."""
    problems = []
    for error in exc.errors():
        if labels is None:
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in _REQUEST_PARTS)
            message = str(error.get("msg", "invalid"))
            problems.append(f"{where}: {message}" if where else message)
        else:
            problems.append(_in_words(error, labels, messages or {}, translate))
    return problems


def _in_words(
    error: Any, labels: Mapping[str, str], messages: Mapping[str, str], translate: Callable[[str], str]
) -> str:
    name = str(error["loc"][0]) if error.get("loc") else ""
    kind = error.get("type", "")
    given = messages.get(f"{name}.{kind}") or messages.get(name)
    if given:
        return translate(given)
    label = translate(labels.get(name, name))
    context = error.get("ctx") or {}
    if kind == "value_error":
        return translate(str(context.get("error", error.get("msg", "invalid"))))
    if kind in TEXT_PROBLEMS:
        return translate(TEXT_PROBLEMS[kind]).format(label=label, character=context.get("character", ""))
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        if minimum <= 1 or not str(error.get("input") or "").strip():
            return translate(N_("{label}: this is required")).format(label=label)
        return translate(N_("{label}: give at least {minimum} characters")).format(
            label=label, minimum=minimum
        )
    if kind == "string_too_long":
        return translate(N_("{label}: this is longer than the {maximum} characters allowed")).format(
            label=label, maximum=context.get("max_length")
        )
    if kind == "enum":
        return translate(N_("{label}: choose one of {options}")).format(
            label=label, options=context.get("expected", translate(N_("the options offered")))
        )
    return f"{label}: {error.get('msg', 'invalid')}"


async def domain_error_response(request: Request, exc: DomainError) -> Response:
    """The answer to a refusal: a page for people, JSON for programs (also for the middlewares that
    refuse a request before it reaches a route)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    if exc.status_code == 503:
        headers = {"Retry-After": str(getattr(exc, "retry_after", ServiceUnavailable.retry_after))}
    elif isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    if wants_html(request):
        page = _page(
            request,
            exc.status_code,
            exc.error.replace("_", " ").capitalize(),
            exc.detail,
            exc.problems,
            lost_link=exc.error in LINK_REFUSALS,
            lost_link_form=exc.error == LINK_GONE,
        )
        if exc.status_code in (429, 503) and headers:
            page.headers.update(headers)
        return page
    return JSONResponse(
        _body(exc.error, exc.detail, exc.problems), status_code=exc.status_code, headers=headers
    )


HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def install(app: FastAPI) -> None:
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactReviewTokens) for existing in access_log.filters):
        access_log.addFilter(RedactReviewTokens())

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return await domain_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = describe_validation(exc)
        detail = "the request is not valid: " + "; ".join(problems)
        if wants_html(request):
            return _page(request, 422, N_("The form is not valid"), detail, problems)
        return JSONResponse(_body("invalid_input", detail, problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = HTTP_ERRORS.get(exc.status_code, "http_error")
        detail = str(exc.detail)
        if wants_html(request):
            return _page(request, exc.status_code, detail, detail)
        return JSONResponse(_body(error, detail), status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, redact(request.url.path), exc_info=exc)
        detail = N_("something went wrong on our side; please try again in a moment.")
        if wants_html(request):
            response = _page(request, 500, N_("Internal error"), detail)
        else:
            response = JSONResponse(_body("internal_error", detail), status_code=500)
        # Starlette answers an unhandled error from outside every middleware: the browser's defences
        # are added here, or the one page that went wrong would go without them.
        for name, value in security_headers.headers_for(request.app.state.roundtable.settings):
            response.headers.setdefault(name.decode(), value.decode())
        response.headers.setdefault("content-security-policy", security_headers.CONTENT_SECURITY_POLICY)
        return response

    async def out_of_range(request: Request, exc: Exception) -> Response:
        # A safety net: input the validation let through but the database cannot hold (a number beyond
        # its integer range, text longer than a column). Still the client's input, so a 4xx; logged,
        # because the request should have been refused before it reached the database.
        log.warning(
            "input refused by the database on %s %s: %s", request.method, redact(request.url.path), exc
        )
        detail = N_(
            "a value in the request cannot be stored: a number too large, a text too long, "
            "or a character that is not allowed (such as NUL)"
        )
        if wants_html(request):
            return _page(request, 422, N_("The form is not valid"), detail)
        return JSONResponse(_body("invalid_input", detail), status_code=422)

    async def database_error(request: Request, exc: Exception) -> Response:
        if is_bad_data(exc):
            return await out_of_range(request, exc)
        unavailable = database_unavailable(exc)
        if unavailable is not None:
            where = redact(request.url.path)
            log.warning("database unavailable on %s %s: %s", request.method, where, _driver_error(exc))
            return await domain_error(request, unavailable)
        return await unexpected(request, exc)

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeout, database_error)
    app.add_exception_handler(TimeoutError, database_error)
    app.add_exception_handler(ConnectionError, database_error)
    app.add_exception_handler(OverflowError, out_of_range)

    app.add_exception_handler(Exception, unexpected)
