"""The API's document (/openapi.json) says what the API answers: its errors included.

FastAPI documents each route's success and a 422 whose body (`HTTPValidationError`, `detail` an array) is
not the one `errors.install` sends. Every error the API answers has one body, `ErrorBody`, whatever its
status; this module puts it in the document for each status a route can answer:

- every route: 422 (a parameter or body that does not validate), 503 with Retry-After (the database too
  busy or out of reach);
- a route that needs a token (every API route but the health checks): 401 (no token, or one not valid,
  with `WWW-Authenticate: Bearer`) and 403 (a role its access line does not admit);
- a route with a path parameter: 404 (nothing with that id or key);
- a route that changes something: 409 (the round, task or record is not in a state that allows it) and
  413 (a body over the size limit, refused while it is read).

No API route answers anything else: the limits on strangers' requests (429) are on the pages' routes.

The bearer scheme is declared, so a client generated from the document sends the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from models.api import ErrorBody
from services.web.access import ACCESS, ANYONE

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


DESCRIPTIONS = {
    401: "No bearer token, or one that is not valid, has expired or was revoked.",
    403: "The token's role may not do this (an auditor reads but changes nothing).",
    404: "Nothing with this id or key.",
    409: "The record's state does not allow this now (already launched, signed, closed…).",
    413: "The body or the file is larger than the limit.",
    422: "A parameter or the body is not valid; `problems` lists what is wrong.",
    503: "The database is busy or cannot be reached; nothing was changed. Retry after Retry-After.",
}
RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
}


def statuses_of(method: str, path: str) -> set[int]:
    """The error statuses the route `(method, path)` can answer."""
    statuses = {422, 503}
    if ACCESS.get((method, path), ANYONE) != ANYONE:
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if method in WRITE_METHODS:
        statuses |= {409, 413}
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status == 503:
        response["headers"] = RETRY_AFTER
    elif status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    return response


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app`, with the error bodies it really answers."""
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (rt_…)."}
    }
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses_of(method.upper(), path)):
                # A route that documents a status itself (the readiness check's 503) keeps its own body.
                responses.setdefault(str(status), _error_response(status))
            if ACCESS.get((method.upper(), path), ANYONE) != ANYONE:
                operation["security"] = [{"bearer": []}]
    return spec


def install(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """Serve `document(app)` as /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
