from __future__ import annotations

from fastapi import APIRouter, status

from models.reviews import CommentRead, SignOffRead
from models.rounds import RoundCreate, RoundLaunchRead, RoundListItem, RoundRead
from services import comments, reports, rounds
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


@router.get("/{round_id}/comments", response_model=list[CommentRead])
async def round_comments(session: ReadSession, round_id: IdPath) -> list[CommentRead]:
    """Every comment of the round, withdrawn ones included, in section order."""
    return await comments.list_comments(session, round_id=round_id)
