"""Focal points' requests for more time, as the coordinator answers them."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from models.extensions import ExtensionGrant, ExtensionRefusal, ExtensionRequestRead
from services import extension_requests
from services.web.access import API
from services.web.deps import ApiPrincipal, IdPath, ReadSession, SchedulerDep, SettingsDep, WriteSession
from services.web.routes import ApiRoute

router = APIRouter(prefix=API, tags=["extension requests"], route_class=ApiRoute)


@router.get("/rounds/{round_id}/extension-requests", response_model=list[ExtensionRequestRead])
async def list_requests(session: ReadSession, round_id: IdPath) -> list[ExtensionRequestRead]:
    """Every request of the round, oldest first, with its answer."""
    return await extension_requests.list_requests(session, round_id=round_id)


@router.post("/extension-requests/{request_id}/grant", response_model=ExtensionRequestRead)
async def grant(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    request_id: IdPath,
    data: ExtensionGrant,
) -> ExtensionRequestRead:
    """Extend the organisation's deadline to the date asked for (or `deadline`); its contacts are told."""
    granted = await extension_requests.grant(
        session,
        request_id=request_id,
        data=data,
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, granted.round_id)
    return granted


@router.post("/extension-requests/{request_id}/refuse", response_model=ExtensionRequestRead)
async def refuse(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    request_id: IdPath,
    data: ExtensionRefusal,
) -> ExtensionRequestRead:
    """Refuse the request; whoever asked is told why."""
    refused = await extension_requests.refuse(
        session,
        request_id=request_id,
        data=data,
        actor=principal.actor,
        user_id=principal.user_id,
        settings=settings,
    )
    background.add_task(scheduler.wake, refused.round_id)
    return refused
