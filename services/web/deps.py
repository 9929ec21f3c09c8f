"""Every dependency the routers use, as Annotated aliases (the routers define none of their own), and the
base of the forms they read.

The cheap ones are `async def` although they never await: FastAPI runs a plain `def` dependency in a
worker thread, and that hop cost more than the whole lookup on every request."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path as FilePath
from typing import Annotated, Any, ClassVar, TypeVar

from fastapi import Depends, File, Form, Path, Query, Request, UploadFile, params
from fastapi.security import HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models.users import CredentialKind
from notifications.mailbox import DevMailbox
from services import organisations, users
from services.db import Database
from services.errors import Unauthorized
from services.links import ClientInfo
from services.settings import Settings
from services.users import Principal
from services.web import proxies
from services.web.console_page import Page
from services.web.state import AppState
from workflows.client import Scheduler

CONSOLE_COOKIE = "rt_session"


def web_state(request: Request) -> AppState:
    state: AppState = request.app.state.roundtable
    return state


async def app_state(request: Request) -> AppState:
    return web_state(request)


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
OrganisationKeyPath = Annotated[
    str, Path(min_length=1, max_length=80, description="Registry key, e.g. ministry-of-interior.")
]
SeqQuery = Annotated[int, Query(ge=0, le=MAX_ID, description="Events after this seq; 0 for the start.")]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]
ActionQuery = Annotated[str | None, Query(max_length=64, description="Only events of this action.")]
FilterQuery = Annotated[str, Query(max_length=200, description="A list's filter or search words.")]
PageQuery = Annotated[str, Query(alias="page", max_length=6, description="The page of a long list, from 1.")]
CountQuery = Annotated[int | None, Query(ge=0, le=MAX_ID)]
PageNumberQuery = Annotated[int, Query(ge=1, le=MAX_ID)]
ListPageQuery = Annotated[int, Query(alias="page", ge=1, le=MAX_ID, description="The page, from 1.")]
RegistrySearchQuery = Annotated[
    str, Query(max_length=organisations.MAX_SEARCH_LENGTH, description="Part of a name, key or address.")
]
DryRunQuery = Annotated[
    bool, Query(description="Only say what the import would do (the preview); nothing is saved.")
]
ConfirmOpenRoundsQuery = Annotated[
    bool,
    Query(
        description="Also replace the contacts of open tasks whose addresses the file changes (the old "
        "link is revoked, the new contact invited); without it those tasks keep their contacts."
    ),
]

# Uploads to the API.
UploadedFile = Annotated[UploadFile, File()]
DraftFile = Annotated[UploadFile, File(description="The draft: Markdown (.md) or Word (.docx).")]
DraftTitle = Annotated[str, Form(max_length=500)]


class FormModel(BaseModel):
    """A form as a page posts it: every field plain text with a default (or a file), so that whatever
    arrives is read, and the page itself, not a bare validation error, says what is wrong with it.

    The forms are in forms.py. A route reads one as `form: Submitted[TheForm]`; its route class checks the
    form's CSRF token before anything else, and shows a refused form again with what was typed."""

    csrf_token: str = ""

    labels: ClassVar[Mapping[str, str] | None] = None
    """Field name -> its label on the page, for the messages about it (errors.describe_validation);
    None: named by their field names, in the words of the validation."""
    messages: ClassVar[Mapping[str, str]] = {}
    """The whole message for a field (`name`) or one kind of error on it (`name.error_type`)."""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        """What was typed, as the page fills its form in again; `path` holds the route's path parameters
        (the comment being edited, say)."""
        return {}


FormT = TypeVar("FormT", bound=FormModel)
Submitted = Annotated[FormT, Form()]
"""The posted form, read as one FormModel."""


def handed_over(model: type[FormModel], dependency: params.Depends) -> Any:
    """A parameter of type `model` whose value `dependency` provides, for a signature built at run time
    (routes.py hands a route the form its guard read)."""
    return Annotated[model, dependency]


BEARER = HTTPBearer(auto_error=False)
"""The API's security scheme, as the OpenAPI spec shows it; ApiRoute does the authentication."""
TOKEN_REQUIRED = "an API token is required: send 'Authorization: Bearer <token>'"  # noqa: S105 - a message


async def authenticate(request: Request) -> Principal:
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
    principal = await _authenticated(request, secret, CredentialKind.api)
    request.state.principal = principal
    return principal


async def _authenticated(request: Request, secret: str, kind: CredentialKind) -> Principal:
    """The credential's principal; its last use is written when due (at most once a minute), apart from
    the read, so that most requests write nothing."""
    state = web_state(request)
    idle = timedelta(minutes=state.settings.console_idle_minutes)
    async with state.db.session() as session:
        principal = await users.authenticate(session, secret=secret, kind=kind, idle=idle)
    if principal.touch_due:
        async with state.db.write_session() as session:
            await users.touch(session, credential_id=principal.credential_id)
    return principal


ApiPrincipal = Annotated[Principal, Depends(authenticate)]
"""Whose token it is; the route's line in the access table decided that they may call it."""


async def console_principal(request: Request) -> Principal | None:
    """Who is signed in to the console (its session cookie), or None. Looked up once per request."""
    if getattr(request.state, "console_checked", False):
        known: Principal | None = request.state.console_principal
        return known
    principal = None
    secret = request.cookies.get(CONSOLE_COOKIE)
    if secret:
        try:
            principal = await _authenticated(request, secret, CredentialKind.console)
        except Unauthorized:
            principal = None
    request.state.console_principal = principal
    request.state.console_checked = True
    return principal


ConsolePrincipal = Annotated[Principal | None, Depends(console_principal)]


class SignInRequired(Exception):
    """No valid console session; the console's routes answer with a redirect to the sign-in page."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def sign_in_target(request: Request) -> str | None:
    """Where to come back to after signing in: the page asked for; a form's target is no page to come back
    to."""
    if request.method != "GET":
        return None
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def _signed_in(request: Request, principal: ConsolePrincipal) -> Principal:
    if principal is None:
        raise SignInRequired(sign_in_target(request))
    return principal


SignedIn = Annotated[Principal, Depends(_signed_in)]
"""The signed-in user; the route's line in the access table decided that they may call it."""


def console_page(request: Request, principal: Principal | None) -> Page:
    state = web_state(request)
    return Page(request, state.templates, state.settings, principal)


async def _console_page(request: Request, principal: SignedIn) -> Page:
    return console_page(request, principal)


async def _sign_in_page(request: Request) -> Page:
    return console_page(request, None)


ConsolePage = Annotated[Page, Depends(_console_page)]
"""A console page for the signed-in user; signed out, the route redirects to the sign-in page."""
SignInPage = Annotated[Page, Depends(_sign_in_page)]
"""A console page that needs nobody signed in: the sign-in form itself, signing out."""


async def _client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=proxies.client_ip(request, web_state(request).settings),
        user_agent=request.headers.get("user-agent"),
    )


Client = Annotated[ClientInfo, Depends(_client_info)]


async def _mailbox(settings: SettingsDep) -> DevMailbox:
    # Where `roundtable dev` runs its SMTP sink.
    return DevMailbox(FilePath(settings.data_dir) / "mail")


Mailbox = Annotated[DevMailbox, Depends(_mailbox)]
