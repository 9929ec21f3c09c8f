"""Every dependency the routers use, as Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import Role
from models.users import CredentialKind
from services import users
from services.db import Database
from services.errors import Forbidden, Unauthorized
from services.reviews import ClientInfo
from services.settings import Settings
from services.users import Principal
from services.web.state import AppState
from workflows.client import Scheduler

CONSOLE_COOKIE = "rt_session"


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.roundtable
    return state


State = Annotated[AppState, Depends(app_state)]


def _settings(state: State) -> Settings:
    return state.settings


def _db(state: State) -> Database:
    return state.db


def _scheduler(state: State) -> Scheduler:
    return state.scheduler


def _templates(state: State) -> Jinja2Templates:
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

_bearer = HTTPBearer(auto_error=False)


async def _api_principal(
    db: DatabaseDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
    async with db.session() as session:
        return await users.authenticate(session, secret=credentials.credentials, kind=CredentialKind.api)


ApiPrincipal = Annotated[Principal, Depends(_api_principal)]


def _require(*roles: Role):  # type: ignore[no-untyped-def]
    allowed = {str(role) for role in roles}

    def check(principal: ApiPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"the {principal.role} role may not do this; it needs: {', '.join(sorted(allowed))}")
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


def _client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Client = Annotated[ClientInfo, Depends(_client_info)]
