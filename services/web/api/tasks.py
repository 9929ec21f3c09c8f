"""A round's review tasks while it runs: the list, and the coordinator's changes to them."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, status

from models.rounds import ContactReplace, ReasonGiven, TaskAdd, TaskRead
from services import task_changes, tasks
from services.web.access import API
from services.web.deps import (
    ApiPrincipal,
    IdPath,
    OrganisationKeyPath,
    ReadSession,
    SchedulerDep,
    SettingsDep,
    WriteSession,
)
from services.web.routes import ApiRoute

router = APIRouter(prefix=f"{API}/rounds/{{round_id}}/tasks", tags=["tasks"], route_class=ApiRoute)


@router.get("", response_model=list[TaskRead])
async def round_tasks(session: ReadSession, round_id: IdPath) -> list[TaskRead]:
    """Every organisation's task: status, own deadline (local time and working days left), reminders sent,
    escalation, last activity."""
    return await tasks.list_tasks(session, round_id=round_id)


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
async def add_organisation(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    data: TaskAdd,
) -> TaskRead:
    """Consult one more organisation in a round under way; its contacts are invited at once."""
    added = await task_changes.add_organisation(
        session, round_id=round_id, data=data, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return added


@router.post("/{organisation_key}/withdraw", response_model=TaskRead)
async def withdraw_organisation(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    data: ReasonGiven,
) -> TaskRead:
    """Take the organisation out of the round: its links stop working and it is told why."""
    withdrawn = await task_changes.withdraw_organisation(
        session,
        round_id=round_id,
        key=organisation_key,
        reason=data.reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return withdrawn


@router.post("/{organisation_key}/resend", response_model=TaskRead)
async def resend_links(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
) -> TaskRead:
    """Send the focal point and alternate their invitation again, each with a fresh link."""
    resent = await task_changes.resend_links(
        session, round_id=round_id, key=organisation_key, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return resent


@router.put("/{organisation_key}/contacts", response_model=TaskRead)
async def replace_contact(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    data: ContactReplace,
) -> TaskRead:
    """Replace the focal point or the alternate for this round: the old link stops working at once, the
    new person is invited."""
    replaced = await task_changes.replace_contact(
        session, round_id=round_id, key=organisation_key, data=data, actor=principal.actor, settings=settings
    )
    background.add_task(scheduler.wake, round_id)
    return replaced


@router.post("/{organisation_key}/reopen", response_model=TaskRead)
async def reopen_sign_off(
    session: WriteSession,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    principal: ApiPrincipal,
    background: BackgroundTasks,
    round_id: IdPath,
    organisation_key: OrganisationKeyPath,
    data: ReasonGiven,
) -> TaskRead:
    """At the organisation's request, reopen its sign-off (the earlier one stays, superseded)."""
    reopened = await task_changes.reopen_sign_off(
        session,
        round_id=round_id,
        key=organisation_key,
        reason=data.reason,
        actor=principal.actor,
        settings=settings,
    )
    background.add_task(scheduler.wake, round_id)
    return reopened
