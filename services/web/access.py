"""Who may call what: every route of the app, and the callers it admits, in one table.

`ACCESS` maps each operation, (METHOD, path template as the route declares it), to the callers it lets
through. It is the table that is enforced, not a description of it: each route class (routes.py) looks up
its route's line when the route is built and admits exactly those callers, and the app factory checks that
the app and the table name the same operations. A route missing from the table does not get built, and a
line naming no route stops the app from starting.

Adding a route: add its line here, e.g. `("POST", "/api/v1/rounds/{round_id}/close"): CHANGERS`, with the
path template exactly as the app serves it (router prefixes included) and one of the sets below (or another
set of `Caller`s). HEAD is GET's; a mount is listed as `/its/path/{path:path}`. tests/web/test_access.py
then calls the route as every kind of caller and fails where the app does other than its line says.

What "admits" means depends on the credential the route class reads:
- API routes (`ApiRoute`): a bearer token; without a valid one 401, with a role not listed 403.
- Console routes (`ConsoleRoute`): the session cookie; signed out, a redirect to sign in; a role not
  listed, 403.
- Review routes (`ReviewRoute`): the review token in the path (`{token}`, which a link holder's line
  requires); a token that opens no link gets the 'invalid link' page (404), a withdrawn link 403. The use
  case behind the route resolves the token, a form's inside the transaction that records it (where a
  withdrawal cannot overtake the check), and the route class makes sure that a refused link is never
  answered as a refused form.
- Everything else (`PublicRoute`, and the framework's own routes: the OpenAPI spec, its viewers, the
  static files) admits anyone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount


class Caller(StrEnum):
    """Who is calling, by the credential they hold."""

    anonymous = "anonymous"
    link_holder = "link_holder"
    """Holds a review link's token (the focal point or the alternate of a task)."""
    coordinator = "coordinator"
    auditor = "auditor"
    admin = "admin"


Operation = tuple[str, str]
"""(METHOD, path template), e.g. ("GET", "/api/v1/rounds/{round_id}")."""

ANYONE = frozenset(Caller)
LINK_HOLDER = frozenset({Caller.link_holder})
READERS = frozenset({Caller.coordinator, Caller.auditor, Caller.admin})
"""Anyone signed in: auditors read everything."""
CHANGERS = frozenset({Caller.coordinator, Caller.admin})
"""Changes data: coordinators and admins, never auditors."""
ADMINS = frozenset({Caller.admin})
"""Manages other people's accounts."""
OWN_CREDENTIALS = READERS
"""One's own API tokens and console sessions: auditors too manage theirs (they change no data by it)."""

API = "/api/v1"

ACCESS: dict[Operation, frozenset[Caller]] = {
    # The JSON API, with bearer tokens.
    ("GET", f"{API}/me"): READERS,
    ("GET", f"{API}/me/tokens"): OWN_CREDENTIALS,
    ("POST", f"{API}/me/tokens"): OWN_CREDENTIALS,
    ("DELETE", f"{API}/me/tokens/{{token_id}}"): OWN_CREDENTIALS,
    ("GET", f"{API}/users/{{user_id}}/tokens"): ADMINS,
    ("DELETE", f"{API}/users/{{user_id}}/tokens/{{token_id}}"): ADMINS,
    ("DELETE", f"{API}/users/{{user_id}}/sessions"): ADMINS,
    ("POST", f"{API}/organisations/import"): CHANGERS,
    ("GET", f"{API}/organisations"): READERS,
    ("POST", f"{API}/organisations"): CHANGERS,
    ("GET", f"{API}/organisations/{{key}}"): READERS,
    ("PATCH", f"{API}/organisations/{{key}}"): CHANGERS,
    ("DELETE", f"{API}/organisations/{{key}}"): CHANGERS,
    ("POST", f"{API}/documents"): CHANGERS,
    ("GET", f"{API}/documents"): READERS,
    ("GET", f"{API}/documents/{{document_id}}"): READERS,
    ("POST", f"{API}/documents/{{document_id}}/versions"): CHANGERS,
    ("POST", f"{API}/rounds"): CHANGERS,
    ("GET", f"{API}/rounds"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}"): READERS,
    ("PATCH", f"{API}/rounds/{{round_id}}"): CHANGERS,
    ("DELETE", f"{API}/rounds/{{round_id}}"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/launch"): CHANGERS,
    ("GET", f"{API}/rounds/{{round_id}}/sign-offs"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/comments"): READERS,
    ("PUT", f"{API}/comments/{{comment_id}}/response"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/responses"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/responses/publish"): CHANGERS,
    ("GET", f"{API}/rounds/{{round_id}}/objections"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/comment-matrix.xlsx"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/comment-matrix.docx"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/report.pdf"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/report.docx"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/report.html"): READERS,
    ("GET", f"{API}/rounds/{{round_id}}/tasks"): READERS,
    ("POST", f"{API}/rounds/{{round_id}}/tasks"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/tasks/{{organisation_key}}/withdraw"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/tasks/{{organisation_key}}/resend"): CHANGERS,
    ("PUT", f"{API}/rounds/{{round_id}}/tasks/{{organisation_key}}/contacts"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/tasks/{{organisation_key}}/reopen"): CHANGERS,
    ("GET", f"{API}/rounds/{{round_id}}/extension-requests"): READERS,
    ("POST", f"{API}/extension-requests/{{request_id}}/grant"): CHANGERS,
    ("POST", f"{API}/extension-requests/{{request_id}}/refuse"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/extensions"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/close"): CHANGERS,
    ("POST", f"{API}/rounds/{{round_id}}/cancel"): CHANGERS,
    ("GET", f"{API}/audit/events"): READERS,
    ("GET", f"{API}/audit/head"): READERS,
    ("GET", f"{API}/audit/export"): READERS,
    # The focal point's review pages: the token in the path is the credential.
    ("GET", "/t/{token}"): LINK_HOLDER,
    ("POST", "/t/{token}/comments"): LINK_HOLDER,
    ("POST", "/t/{token}/comments/{comment_id}/edit"): LINK_HOLDER,
    ("POST", "/t/{token}/comments/{comment_id}/withdraw"): LINK_HOLDER,
    ("POST", "/t/{token}/sign-off"): LINK_HOLDER,
    ("POST", "/t/{token}/sign-off/code"): LINK_HOLDER,
    ("POST", "/t/{token}/sign-off/code/new"): LINK_HOLDER,
    ("POST", "/t/{token}/opened"): LINK_HOLDER,
    ("POST", "/t/{token}/extension-request"): LINK_HOLDER,
    ("POST", "/t/{token}/handover"): LINK_HOLDER,
    # Anything else under /t/ (a mangled link) gets the same 'invalid link' page, whoever asks.
    ("GET", "/t/{rest:path}"): ANYONE,
    ("POST", "/t/{rest:path}"): ANYONE,
    # The lost-link page: anyone types an address; a contact of an open task gets their links by email.
    ("GET", "/links/lost"): ANYONE,
    ("POST", "/links/lost"): ANYONE,
    # The coordinator console, with the session cookie.
    ("GET", "/console/login"): ANYONE,
    ("POST", "/console/login"): ANYONE,
    ("POST", "/console/logout"): ANYONE,
    # Forgotten passwords: anyone asks; the emailed link's token is the credential of the reset itself.
    ("GET", "/console/password/forgot"): ANYONE,
    ("POST", "/console/password/forgot"): ANYONE,
    ("GET", "/console/password/reset/{reset_token}"): ANYONE,
    ("POST", "/console/password/reset/{reset_token}"): ANYONE,
    # One's own account: API tokens and console sessions.
    ("GET", "/console/account"): OWN_CREDENTIALS,
    ("POST", "/console/account/tokens"): OWN_CREDENTIALS,
    ("POST", "/console/account/tokens/{token_id}/revoke"): OWN_CREDENTIALS,
    ("POST", "/console/account/sessions/{session_id}/end"): OWN_CREDENTIALS,
    ("POST", "/console/account/sessions/end-others"): OWN_CREDENTIALS,
    ("GET", "/console"): READERS,
    ("GET", "/console/rounds/new"): READERS,
    ("POST", "/console/rounds"): CHANGERS,
    ("GET", "/console/rounds/{round_id}"): READERS,
    ("GET", "/console/rounds/{round_id}/dashboard"): READERS,
    ("GET", "/console/rounds/{round_id}/edit"): READERS,
    ("POST", "/console/rounds/{round_id}/edit"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/delete"): CHANGERS,
    ("GET", "/console/rounds/{round_id}/preview/invitation"): READERS,
    ("GET", "/console/rounds/{round_id}/preview/review"): READERS,
    ("POST", "/console/rounds/{round_id}/launch"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/extend"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/close"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/cancel"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/tasks"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/tasks/{organisation_key}/withdraw"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/tasks/{organisation_key}/resend"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/tasks/{organisation_key}/contacts"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/tasks/{organisation_key}/reopen"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/extension-requests/{request_id}/grant"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/extension-requests/{request_id}/refuse"): CHANGERS,
    ("GET", "/console/rounds/{round_id}/report"): READERS,
    ("GET", "/console/rounds/{round_id}/comments"): READERS,
    ("POST", "/console/rounds/{round_id}/comments/{comment_id}/response"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/responses"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/responses/publish"): CHANGERS,
    ("POST", "/console/rounds/{round_id}/answer-texts"): CHANGERS,
    ("GET", "/console/rounds/{round_id}/comment-matrix.xlsx"): READERS,
    ("GET", "/console/rounds/{round_id}/comment-matrix.docx"): READERS,
    ("GET", "/console/rounds/{round_id}/report.pdf"): READERS,
    ("GET", "/console/rounds/{round_id}/report.docx"): READERS,
    ("GET", "/console/rounds/{round_id}/report.html"): READERS,
    ("GET", "/console/organisations"): READERS,
    ("POST", "/console/organisations/import"): CHANGERS,
    ("POST", "/console/organisations/import/confirm"): CHANGERS,
    ("GET", "/console/organisations/{organisation_key}"): READERS,
    ("POST", "/console/organisations/{organisation_key}/contacts"): CHANGERS,
    ("GET", "/console/documents"): READERS,
    ("POST", "/console/documents"): CHANGERS,
    ("POST", "/console/documents/{document_id}/versions"): CHANGERS,
    ("GET", "/console/audit"): READERS,
    ("GET", "/console/audit/export"): READERS,
    # The dev mailbox, without sign-in: it exists only outside production (see DEVELOPMENT_ONLY).
    ("GET", "/dev/mail"): ANYONE,
    ("POST", "/dev/mail/clear"): ANYONE,
    ("GET", "/dev/mail/{key}"): ANYONE,
    # Health, the front page, and what the framework serves itself.
    ("GET", "/healthz"): ANYONE,
    ("GET", "/readyz"): ANYONE,
    ("GET", "/"): ANYONE,
    ("GET", "/openapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/docs/oauth2-redirect"): ANYONE,
    ("GET", "/redoc"): ANYONE,
    ("GET", "/static/{path:path}"): ANYONE,
}

DEVELOPMENT_ONLY = frozenset(operation for operation in ACCESS if operation[1].startswith("/dev/"))
"""Operations the app serves only outside production."""


class NotInAccessTable(LookupError):
    """A route that services/web/access.py does not list: it is not built, so that nothing is served that
    nobody decided who may call."""


def callers_of(method: str, path: str) -> frozenset[Caller]:
    try:
        return ACCESS[(method, path)]
    except KeyError:
        raise NotInAccessTable(
            f"{method} {path} is not in the access table: add its line to ACCESS in services/web/access.py, "
            "with the callers it admits"
        ) from None


def methods_of(methods: Iterable[str]) -> list[str]:
    """A route's methods as the table lists them: HEAD is GET's."""
    listed = set(methods)
    if "GET" in listed:
        listed.discard("HEAD")
    return sorted(listed)


def operations(app: FastAPI) -> dict[Operation, object]:
    """Every operation the app serves, with the route serving it, routers and mounts included."""
    found: dict[Operation, object] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            found[("GET", f"{route.path}/{{path:path}}")] = route
            continue
        for method in methods_of(context.methods or ()):
            found[(method, context.path or "")] = route
    return found


class AccessTableMismatch(RuntimeError):
    """The app and the access table do not name the same operations."""


def check(app: FastAPI, *, production: bool, table: Mapping[Operation, frozenset[Caller]] = ACCESS) -> None:
    """Stop the app from starting unless every operation it serves is in the table and enforced as its line
    says, and every line of the table is an operation it serves."""
    served = operations(app)
    problems = []
    for (method, path), route in sorted(served.items(), key=lambda item: (item[0][1], item[0][0])):
        line = table.get((method, path))
        if line is None:
            problems.append(f"{method} {path} is served but not in the access table")
        elif isinstance(route, APIRoute):
            # What the route's class admits, looked up when it was built (routes.AccessRoute.callers).
            enforced: Mapping[str, frozenset[Caller]] | None = getattr(route, "callers", None)
            if enforced is None:
                problems.append(
                    f"{method} {path} is served by a route class that enforces nothing: give its router "
                    "one of services/web/routes.py"
                )
            elif enforced.get(method) != line:
                problems.append(
                    f"{method} {path} was built as {route.path}, whose line may differ: include its router "
                    "without a prefix (each router carries its whole prefix)"
                )
        elif line != ANYONE:
            problems.append(f"{method} {path} is served by the framework, which admits anyone")
        if production and (method, path) in DEVELOPMENT_ONLY:
            problems.append(f"{method} {path} is served in production")
    expected = {operation for operation in table if not (production and operation in DEVELOPMENT_ONLY)}
    problems += [
        f"{method} {path} is in the access table but not served"
        for method, path in sorted(expected - set(served))
    ]
    if problems:
        raise AccessTableMismatch("the app and services/web/access.py disagree:\n  " + "\n  ".join(problems))
