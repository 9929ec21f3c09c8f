"""One place that turns errors into responses: JSON for the API, a page for people."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import DomainError

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


def _page(
    request: Request, status: int, title: str, detail: str, problems: list[str] | None = None
) -> Response:
    templates: Jinja2Templates = request.app.state.roundtable.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": title, "detail": detail, "problems": problems or [], "status": status},
        status_code=status,
    )


def describe_validation(exc: RequestValidationError | ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        message = str(error.get("msg", "invalid"))
        problems.append(f"{where}: {message}" if where else message)
    return problems


def install(app: FastAPI) -> None:
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactReviewTokens) for existing in access_log.filters):
        access_log.addFilter(RedactReviewTokens())

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if wants_html(request):
            return _page(
                request, exc.status_code, exc.error.replace("_", " ").capitalize(), exc.detail, exc.problems
            )
        return JSONResponse(
            _body(exc.error, exc.detail, exc.problems), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = describe_validation(exc)
        detail = "the request is not valid: " + "; ".join(problems)
        if wants_html(request):
            return _page(request, 422, "The form is not valid", detail, problems)
        return JSONResponse(_body("invalid_input", detail, problems), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = str(exc.detail)
        if wants_html(request):
            return _page(request, exc.status_code, detail, detail)
        return JSONResponse(_body(error, detail), status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, redact(request.url.path), exc_info=exc)
        detail = "something went wrong on our side; please try again in a moment."
        if wants_html(request):
            return _page(request, 500, "Internal error", detail)
        return JSONResponse(_body("internal_error", detail), status_code=500)

    async def out_of_range(request: Request, exc: Exception) -> Response:
        # A safety net: input the validation let through but the database cannot hold (a number beyond
        # its integer range, text longer than a column). Still the client's input, so a 4xx; logged,
        # because the request should have been refused before it reached the database.
        log.warning(
            "input refused by the database on %s %s: %s", request.method, redact(request.url.path), exc
        )
        detail = (
            "a value in the request cannot be stored: a number too large, a text too long, "
            "or a character that is not allowed (such as NUL)"
        )
        if wants_html(request):
            return _page(request, 422, "The form is not valid", detail)
        return JSONResponse(_body("invalid_input", detail), status_code=422)

    async def database_error(request: Request, exc: Exception) -> Response:
        if is_bad_data(exc):
            return await out_of_range(request, exc)
        return await unexpected(request, exc)

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(OverflowError, out_of_range)

    app.add_exception_handler(Exception, unexpected)
