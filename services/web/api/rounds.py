from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Response, status

from models.extensions import ExtensionCreate, ExtensionRead
from models.reviews import SignOffRead
from models.rounds import (
    ReasonGiven,
    RoundCreate,
    RoundLaunchRead,
    RoundListItem,
    RoundRead,
    RoundUpdate,
)
from services import extensions, reports, round_endings, rounds
from services.web.access import API
from services.web.deps import (
    ApiPrincipal,
    DatabaseDep,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    WriteSession,
)
from services.web.routes import ApiRoute
from workflows.client import launch_round, round_workflow_id

router = APIRouter(prefix=f"{API}/rounds", tags=["rounds"], route_class=ApiRoute)


@router.post("", response_model=RoundRead, status_code=status.HTTP_201_CREATED)
async def create_round(session: WriteSession, principal: ApiPrincipal, data: RoundCreate) -> RoundRead:
    """Create a draft round: who is consulted, on which sections, until when."""
    return await rounds.create_round(session, data=data, actor=principal.actor, user_id=principal.user_id)


@router.get("", response_model=list[RoundListItem])
async def list_rounds(session: ReadSession) -> list[RoundListItem]:
    return await rounds.list_rounds(session)


@router.get("/{round_id}", response_model=RoundRead)
async def get_round(session: ReadSession, round_id: IdPath) -> RoundRead:
    """The round's status and, per organisation, the task status, comment count and decision."""
    return await rounds.get_round(session, round_id=round_id)


@router.patch("/{round_id}", response_model=RoundRead)
async def update_round(
    session: WriteSession, principal: ApiPrincipal, round_id: IdPath, data: RoundUpdate
) -> RoundRead:
    """Change a draft round: only the fields given change (organisations kept keep their sections and
    role unless those are given). 409 once the round is launched."""
    return await rounds.update_draft(session, round_id=round_id, data=data, actor=principal.actor)


@router.delete("/{round_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_round(session: WriteSession, principal: ApiPrincipal, round_id: IdPath) -> Response:
    """Delete a draft round and its tasks; its audit events stay. 409 once the round is launched."""
    await rounds.delete_draft(session, round_id=round_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{round_id}/launch", response_model=RoundLaunchRead, status_code=status.HTTP_202_ACCEPTED)
async def launch(
    db: DatabaseDep, scheduler: SchedulerDep, settings: SettingsDep, principal: ApiPrincipal, round_id: IdPath
) -> RoundLaunchRead:
    """Open the round and start its scheduler, which sends the invitations.
    Launching twice starts nothing new."""
    launched = await launch_round(db, scheduler, round_id=round_id, actor=principal.actor)
    return RoundLaunchRead(id=round_id, launched=launched, workflow_id=round_workflow_id(settings, round_id))


@router.get("/{round_id}/sign-offs", response_model=list[SignOffRead])
async def sign_off_register(session: ReadSession, round_id: IdPath) -> list[SignOffRead]:
    """Who signed what, when, on which exact texts (section hashes), with the audit event of each."""
    return await reports.list_sign_offs(session, round_id=round_id)


@router.post("/{round_id}/extensions", response_model=ExtensionRead)
async def extend_deadline(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    data: ExtensionCreate,
) -> ExtensionRead:
    """Move the deadline of the whole round, or of the organisations named, later; everyone affected is
    told, and reminders and escalation re-plan from the new deadline."""
    extended = await extensions.extend(
        session, round_id=round_id, data=data, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return extended


@router.post("/{round_id}/close", response_model=RoundRead)
async def close_round(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    data: ReasonGiven,
) -> RoundRead:
    """Close the round now (early, or after escalation): tasks without a sign-off become no_response, or
    deemed_content where silence means content."""
    closed = await round_endings.close_early(
        session, round_id=round_id, reason=data.reason, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return closed


@router.post("/{round_id}/cancel", response_model=RoundRead)
async def cancel_round(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    data: ReasonGiven,
) -> RoundRead:
    """Cancel the round: every contact who was invited is told, and every link stops working at once."""
    cancelled = await round_endings.cancel_round(
        session, round_id=round_id, reason=data.reason, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return cancelled
