"""The coordinator's answers to comments, and the round's objections."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from models.responses import (
    BulkResponse,
    CommentResponseRead,
    ObjectionRead,
    PublicationRead,
    ResponseSet,
    RoundCommentRead,
)
from services import objections, responses
from services.web.access import API
from services.web.deps import (
    ApiPrincipal,
    IdPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    WriteSession,
)
from services.web.routes import ApiRoute

router = APIRouter(prefix=API, tags=["comments and answers"], route_class=ApiRoute)


@router.get("/rounds/{round_id}/comments", response_model=list[RoundCommentRead])
async def round_comments(session: ReadSession, round_id: IdPath) -> list[RoundCommentRead]:
    """Every comment of the round, withdrawn ones included (marked), in the draft's order, with its answer."""
    return await responses.list_round_comments(session, round_id=round_id)


@router.put("/comments/{comment_id}/response", response_model=CommentResponseRead)
async def answer_comment(
    session: WriteSession, principal: ApiPrincipal, comment_id: IdPath, data: ResponseSet
) -> CommentResponseRead:
    """Draft the answer to one comment (a justification is required for rejected and partly accepted)."""
    return await responses.answer_comment(
        session, comment_id=comment_id, data=data, actor=principal.actor, user_id=principal.user_id
    )


@router.post("/rounds/{round_id}/responses", response_model=list[CommentResponseRead])
async def answer_comments(
    session: WriteSession, principal: ApiPrincipal, round_id: IdPath, data: BulkResponse
) -> list[CommentResponseRead]:
    """One answer to several similar comments of the round, all of them or none."""
    return await responses.answer_comments(
        session, round_id=round_id, data=data, actor=principal.actor, user_id=principal.user_id
    )


@router.post("/rounds/{round_id}/responses/publish", response_model=PublicationRead)
async def publish(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
) -> PublicationRead:
    """Publish the drafted answers: every organisation answered gets one feedback letter."""
    published = await responses.publish(session, round_id=round_id, actor=principal.actor, settings=settings)
    background.add_task(scheduler.wake, round_id)
    return published


@router.get("/rounds/{round_id}/objections", response_model=list[ObjectionRead])
async def objection_register(session: ReadSession, round_id: IdPath) -> list[ObjectionRead]:
    """The round's objections: open, resolved by an accepted answer, or maintained after a rejection."""
    return await objections.register(session, round_id=round_id)
