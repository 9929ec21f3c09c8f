"""The caller's own account (whose token this is, their API tokens), and admins' view of anyone's."""

from __future__ import annotations

from fastapi import APIRouter

from models.enums import Role
from models.users import (
    ApiTokenCreate,
    ApiTokenIssued,
    CredentialKind,
    CredentialRead,
    MeRead,
    SessionsEnded,
)
from services import accounts
from services.web.access import API
from services.web.deps import ApiPrincipal, IdPath, ReadSession, SettingsDep, WriteSession
from services.web.routes import ApiRoute

router = APIRouter(prefix=API, tags=["accounts"], route_class=ApiRoute)


@router.get("/me", response_model=MeRead)
async def me(principal: ApiPrincipal) -> MeRead:
    """Whose token this is."""
    return MeRead(user_id=principal.user_id, email=principal.email, role=Role(principal.role))


@router.get("/me/tokens", response_model=list[CredentialRead])
async def my_tokens(session: ReadSession, principal: ApiPrincipal) -> list[CredentialRead]:
    """Your API tokens, newest first, with when each expires and was last used (never the secret)."""
    return await accounts.api_tokens(session, user_id=principal.user_id)


@router.post("/me/tokens", response_model=ApiTokenIssued, status_code=201)
async def issue_my_token(
    session: WriteSession, settings: SettingsDep, principal: ApiPrincipal, data: ApiTokenCreate
) -> ApiTokenIssued:
    """A new API token of yours; its secret is in this answer only. It expires after `lifetime_days`
    (default and at most the service's `api_token_lifetime_days`)."""
    return await accounts.issue_token(
        session,
        user_id=principal.user_id,
        data=data,
        longest_days=settings.api_token_lifetime_days,
        actor=principal.actor,
    )


@router.delete("/me/tokens/{token_id}", response_model=CredentialRead)
async def revoke_my_token(session: WriteSession, principal: ApiPrincipal, token_id: IdPath) -> CredentialRead:
    """Revoke one of your API tokens (the one of this request too, if you name it); 404 for any other."""
    return await accounts.revoke(
        session,
        user_id=principal.user_id,
        credential_id=token_id,
        kind=CredentialKind.api,
        actor=principal.actor,
    )


@router.get("/users/{user_id}/tokens", response_model=list[CredentialRead])
async def user_tokens(session: ReadSession, user_id: IdPath) -> list[CredentialRead]:
    """The user's API tokens, newest first (admins)."""
    return await accounts.api_tokens(session, user_id=user_id)


@router.delete("/users/{user_id}/tokens/{token_id}", response_model=CredentialRead)
async def revoke_user_token(
    session: WriteSession, principal: ApiPrincipal, user_id: IdPath, token_id: IdPath
) -> CredentialRead:
    """Revoke one of the user's API tokens (admins)."""
    return await accounts.revoke(
        session, user_id=user_id, credential_id=token_id, kind=CredentialKind.api, actor=principal.actor
    )


@router.delete("/users/{user_id}/sessions", response_model=SessionsEnded)
async def end_user_sessions(session: WriteSession, principal: ApiPrincipal, user_id: IdPath) -> SessionsEnded:
    """End every console session of the user (admins): they sign in again."""
    ended = await accounts.end_sessions(session, user_id=user_id, actor=principal.actor, reason="admin")
    return SessionsEnded(ended=ended)
