"""Every dependency the routers use, as Annotated aliases: the routers define none of their own.

The cheap ones are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, and that hop cost more than the whole lookup on every request."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Role
from models.users import CredentialKind
from notifications.mailbox import DevMailbox
from services import users
from services.db import Database
from services.errors import Forbidden, Unauthorized
from services.links import ClientInfo
from services.settings import Settings
from services.users import Principal
from services.web.console_page import Page, may_change
from services.web.state import AppState
from workflows.client import Scheduler

CONSOLE_COOKIE = "rt_session"


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.roundtable
    return state


State = Annotated[AppState, Depends(app_state)]


async def _settings(state: State) -> Settings:
    return state.settings


async def _db(state: State) -> Database:
    return state.db


async def _scheduler(state: State) -> Scheduler:
    return state.scheduler


async def _templates(state: State) -> Jinja2Templates:
    return state.templates


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_db)]
SchedulerDep = Annotated[Scheduler, Depends(_scheduler)]
Templates = Annotated[Jinja2Templates, Depends(_templates)]


async def _read_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    async with db.session() as session:
        yield session


async def _write_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    async with db.write_session() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(_read_session)]
WriteSession = Annotated[AsyncSession, Depends(_write_session)]

MAX_ID = 2_147_483_647
"""The largest key an INTEGER column holds on every database; larger ids cannot exist."""
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
_ASCII_DIGITS = re.compile(r"[0-9]{1,10}")


def parse_id(text: str) -> int | None:
    """An id typed into a form or a query string, or None when it is not one.

    Strict: ASCII digits only (str.isdigit() also accepts superscript '²' and Arabic-Indic digits,
    which int() refuses or reads as another number), and within 1..MAX_ID, the ids a database holds.
    """
    text = text.strip()
    if not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


KeyPath = Annotated[
    str, Path(min_length=1, max_length=80, description="Registry key, e.g. ministry-of-interior.")
]
SeqQuery = Annotated[int, Query(ge=0, le=MAX_ID, description="Events after this seq; 0 for the start.")]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]
ActionQuery = Annotated[str | None, Query(max_length=64, description="Only events of this action.")]
CountQuery = Annotated[int | None, Query(ge=0, le=MAX_ID)]
PageNumberQuery = Annotated[int, Query(ge=1, le=MAX_ID)]

# Forms and uploads. The pages read every field as optional text and check it themselves, so that a bad
# or missing field gets the form back with a message rather than a bare validation error.
FormText = Annotated[str, Form()]
FormList = Annotated[list[str] | None, Form()]
OptionalFile = Annotated[UploadFile | None, File()]
UploadedFile = Annotated[UploadFile, File()]
DraftFile = Annotated[UploadFile, File(description="The draft: Markdown (.md) or Word (.docx).")]
DraftTitle = Annotated[str, Form(max_length=500)]

_bearer = HTTPBearer(auto_error=False)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_REQUIRED = "an API token is required: send 'Authorization: Bearer <token>'"  # noqa: S105 - a message


async def _authenticate(request: Request) -> Principal:
    """The principal behind the request's bearer token, or Unauthorized. Done once per request."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    scheme, _, secret = request.headers.get("authorization", "").strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized(TOKEN_REQUIRED)
    if len(secret) > 200:
        raise Unauthorized("the token is not valid")
    db: Database = request.app.state.roundtable.db
    async with db.session() as session:
        principal = await users.authenticate(session, secret=secret, kind=CredentialKind.api)
    request.state.principal = principal
    return principal


class ApiRoute(APIRoute):
    """An API operation that checks the token before anything else, the body included: a request
    without a valid token gets 401 and an auditor's write gets 403, whatever the request carries."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            principal = await _authenticate(request)
            if request.method not in READ_METHODS and principal.role == Role.auditor:
                raise Forbidden("the auditor role can read everything but change nothing")
            return await handler(request)

        return authenticated


async def _api_principal(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    return await _authenticate(request)


ApiPrincipal = Annotated[Principal, Depends(_api_principal)]


def _require(*roles: Role):  # type: ignore[no-untyped-def]
    allowed = {str(role) for role in roles}

    async def check(principal: ApiPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"the {principal.role} role may not do this; it needs: {', '.join(sorted(allowed))}"
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(_require(Role.coordinator, Role.auditor, Role.admin))]
"""Anyone signed in: auditors read everything."""
Coordinator = Annotated[Principal, Depends(_require(Role.coordinator, Role.admin))]
"""Changes data: coordinators and admins, never auditors."""


async def _console_principal(request: Request, db: DatabaseDep) -> Principal | None:
    secret = request.cookies.get(CONSOLE_COOKIE)
    if not secret:
        return None
    async with db.session() as session:
        try:
            return await users.authenticate(session, secret=secret, kind=CredentialKind.console)
        except Unauthorized:
            return None


ConsolePrincipal = Annotated[Principal | None, Depends(_console_principal)]


class SignInRequired(Exception):
    """No valid console session; the console's routes answer with a redirect to the sign-in page."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__(next_path)
        self.next_path = next_path


async def _signed_in(request: Request, principal: ConsolePrincipal) -> Principal:
    if principal is None:
        # After signing in, come back to the page asked for; a form's target is no page to come back to.
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(here if request.method == "GET" else None)
    return principal


SignedIn = Annotated[Principal, Depends(_signed_in)]


async def _changer(principal: SignedIn) -> Principal:
    if not may_change(principal):
        raise Forbidden(
            f"You are signed in as {principal.role}: you can read everything in the console but change "
            "nothing. Coordinators and admins make changes.",
        )
    return principal


Changer = Annotated[Principal, Depends(_changer)]
"""A signed-in coordinator or admin; an auditor gets 403."""


async def _console_page(
    request: Request, templates: Templates, settings: SettingsDep, principal: SignedIn
) -> Page:
    return Page(request, templates, settings, principal)


async def _sign_in_page(request: Request, templates: Templates, settings: SettingsDep) -> Page:
    return Page(request, templates, settings, None)


ConsolePage = Annotated[Page, Depends(_console_page)]
"""A console page for the signed-in user; signed out, the route redirects to the sign-in page."""
SignInPage = Annotated[Page, Depends(_sign_in_page)]
"""A console page that needs nobody signed in: the sign-in form itself, signing out."""


async def _client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Client = Annotated[ClientInfo, Depends(_client_info)]


async def _mailbox(settings: SettingsDep) -> DevMailbox:
    # Where `roundtable dev` runs its SMTP sink.
    return DevMailbox(FilePath(settings.data_dir) / "mail")


Mailbox = Annotated[DevMailbox, Depends(_mailbox)]
