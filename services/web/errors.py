"""One place that turns errors into responses: JSON for the API, a page for people."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import DomainError

log = logging.getLogger(__name__)


def wants_html(request: Request) -> bool:
    path = request.url.path
    return not path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _body(error: str, detail: str, problems: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if problems:
        body["problems"] = problems
    return body


def _page(request: Request, status: int, title: str, detail: str, problems: list[str] | None = None) -> Response:
    templates = request.app.state.roundtable.templates
    return templates.TemplateResponse(  # type: ignore[no-any-return]
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
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if wants_html(request):
            return _page(request, exc.status_code, exc.error.replace("_", " ").capitalize(), exc.detail, exc.problems)
        return JSONResponse(_body(exc.error, exc.detail, exc.problems), status_code=exc.status_code, headers=headers)

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

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        detail = "something went wrong on our side; please try again in a moment."
        if wants_html(request):
            return _page(request, 500, "Internal error", detail)
        return JSONResponse(_body("internal_error", detail), status_code=500)
