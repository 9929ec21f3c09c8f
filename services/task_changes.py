"""The coordinator's changes to a round's tasks while it runs: add an organisation, withdraw one, resend
its links, replace a contact, reopen a sign-off at the organisation's request. Each is one transaction
with its audit event and whatever emails it decides (through the outbox)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import Actor
from models.documents import Section
from models.enums import ContactRole, Language, MessageKind, OutboxStatus, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink, Comment, SignOff
from models.rounds import ContactReplace, ReviewTask, Round, TaskAdd, TaskRead, default_role
from models.types import utcnow
from services import invitations, links, outbox, tasks
from services.audit import trail
from services.db import transactional
from services.errors import Conflict, InvalidInput, NotFound
from services.invitations import organisation_name, sender_name
from services.outbox import Mail
from services.rounds import get_round_row
from services.scheduling import OPEN_TASK_STATUSES
from services.settings import Settings

RESEND_ONCE_WITHIN = timedelta(minutes=1)
"""A second resend of a task this soon after the last one (a double click) sends nothing more."""


async def _open_round(session: AsyncSession, round_id: int) -> Round:
    round_ = await get_round_row(session, round_id=round_id, lock=True)
    if round_.status != RoundStatus.open:
        raise Conflict(f"round {round_id} is {round_.status}: its tasks can be changed only while it is open")
    return round_


async def _task_of(session: AsyncSession, round_id: int, key: str) -> tuple[ReviewTask, Organisation]:
    found = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id, Organisation.key == key)
            .with_for_update(of=ReviewTask)
        )
    ).first()
    if found is None:
        raise NotFound(f"{key!r} is not consulted in round {round_id}")
    return found


async def _task_read(session: AsyncSession, round_id: int, key: str) -> TaskRead:
    return next(
        task for task in await tasks.list_tasks(session, round_id=round_id) if task.organisation_key == key
    )


@transactional
async def add_organisation(
    session: AsyncSession, *, round_id: int, data: TaskAdd, actor: Actor, settings: Settings
) -> TaskRead:
    """Consult one more organisation: its task has the round's deadline or its own, its contacts are
    invited at once."""
    round_ = await _open_round(session, round_id)
    organisation = (
        await session.exec(
            select(Organisation).where(
                Organisation.key == data.organisation_key, col(Organisation.archived_at).is_(None)
            )
        )
    ).first()
    if organisation is None:
        raise InvalidInput(f"no organisation {data.organisation_key!r} in the registry")
    existing = (
        await session.exec(
            select(ReviewTask).where(
                ReviewTask.round_id == round_id, ReviewTask.organisation_id == organisation.id
            )
        )
    ).first()
    if existing is not None:
        raise Conflict(
            f"{data.organisation_key} is already consulted in this round (its task is {existing.status})"
        )
    deadline = data.deadline or round_.deadline
    if deadline <= utcnow():
        raise InvalidInput("the organisation's deadline must be in the future")
    sections = (
        await session.exec(
            select(Section.id, Section.number)
            .where(Section.document_version_id == round_.document_version_id)
            .order_by(col(Section.position))
        )
    ).all()
    by_number = {number: section_id for section_id, number in sections}
    wanted = data.section_numbers or list(by_number)
    unknown = [number for number in wanted if number not in by_number]
    if unknown:
        raise InvalidInput(f"section_numbers: no such section in this draft: {', '.join(unknown)}")
    task = ReviewTask(
        round_id=round_id,
        organisation_id=organisation.id or 0,
        role=data.role or default_role(organisation.kind),
        section_ids=[by_number[number] or 0 for number in dict.fromkeys(wanted)],
        deadline=deadline,
    )
    session.add(task)
    await session.flush()
    await trail.append(
        session,
        actor=actor,
        action="task.added",
        round_id=round_id,
        task_id=task.id,
        data={"organisation": organisation.key, "deadline": deadline.isoformat(), "sections": wanted},
    )
    await invitations.issue(session, round_=round_, settings=settings)
    await session.commit()
    return await _task_read(session, round_id, organisation.key)


@transactional
async def withdraw_organisation(
    session: AsyncSession, *, round_id: int, key: str, reason: str, actor: Actor, settings: Settings
) -> TaskRead:
    """Take an organisation out of the round: its task is withdrawn, its links stop working, email not
    yet sent to it is not sent, and whoever was invited is told why."""
    round_ = await _open_round(session, round_id)
    task, organisation = await _task_of(session, round_id, key)
    if task.status not in OPEN_TASK_STATUSES:
        raise Conflict(f"{key} has settled its task ({task.status}); there is nothing to withdraw")
    now = utcnow()
    working = await _working_links(session, task)
    # Told: whoever had a message with a link of this task (their invitation, a handover).
    invited = set(
        (
            await session.exec(
                select(OutboxMessage.link_id).where(
                    OutboxMessage.task_id == task.id,
                    col(OutboxMessage.kind).in_([MessageKind.invitation, MessageKind.handover]),
                    OutboxMessage.status == OutboxStatus.sent,
                )
            )
        ).all()
    )
    await session.exec(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.task_id) == task.id,
            col(OutboxMessage.status) == OutboxStatus.pending,
            or_(col(OutboxMessage.claimed_until).is_(None), col(OutboxMessage.claimed_until) < now),
        )
        .values(status=OutboxStatus.cancelled, last_error="not sent: the organisation was withdrawn")
    )
    await session.exec(
        update(AccessLink)
        .where(col(AccessLink.task_id) == task.id, col(AccessLink.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    status_before = task.status
    task.status = TaskStatus.withdrawn
    task.completed_at = now
    session.add(task)
    language = Language(organisation.language)
    await outbox.enqueue(
        session,
        mails=[
            Mail(
                key=f"task_withdrawn:{task.id}:{link.id}",
                kind=MessageKind.task_withdrawn,
                to_email=link.email,
                to_name=link.name,
                language=language,
                context={
                    "contact_name": link.name,
                    "round_title": round_.title,
                    "organisation_name": organisation_name(organisation, language),
                    "reason": reason,
                    "sender_name": sender_name(settings),
                },
                round_id=round_id,
                task_id=task.id,
            )
            for link in working
            if link.id in invited
        ],
    )
    await trail.append(
        session,
        actor=actor,
        action="task.withdrawn",
        round_id=round_id,
        task_id=task.id,
        data={"organisation": key, "reason": reason, "status_before": str(status_before)},
    )
    await session.commit()
    return await _task_read(session, round_id, key)


async def _working_links(session: AsyncSession, task: ReviewTask) -> list[AccessLink]:
    return list(
        (
            await session.exec(
                select(AccessLink)
                .where(AccessLink.task_id == task.id, col(AccessLink.revoked_at).is_(None))
                .order_by(col(AccessLink.created_at))
            )
        ).all()
    )


async def _invite_again(
    session: AsyncSession, round_: Round, task: ReviewTask, *, key: str, settings: Settings
) -> list[AccessLink]:
    """The task's focal point and alternate get their invitation again, under `key` (see
    `invitations.invitations_for_links`); returns their links."""
    working = [link for link in await _working_links(session, task) if link.role != ContactRole.delegate]
    mails = await invitations.invitations_for_links(
        session, round_=round_, link_ids=[link.id for link in working], key=key, settings=settings
    )
    await outbox.enqueue(session, mails=mails)
    return working


@transactional
async def resend_links(
    session: AsyncSession, *, round_id: int, key: str, actor: Actor, settings: Settings
) -> TaskRead:
    """Send the organisation's focal point and alternate their invitation again, each with a fresh token
    (the earlier ones keep working). Asked twice within a minute, it sends once."""
    round_ = await _open_round(session, round_id)
    task, _organisation = await _task_of(session, round_id, key)
    if task.status not in OPEN_TASK_STATUSES:
        raise Conflict(f"{key} has settled its task ({task.status}); its links no longer take anything")
    now = utcnow()
    # Counted from the last resend, not by the clock's minute: two clicks either side of hh:mm:00 are
    # still one. The task row is locked, so two clicks at once take turns here.
    last_resent = (
        await session.exec(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.task_id == task.id,
                col(OutboxMessage.key).like(f"invitation:{task.id}:%:resent:%"),
                col(OutboxMessage.created_at) > now - RESEND_ONCE_WITHIN,
            )
            .limit(1)
        )
    ).first()
    if last_resent is not None:
        await session.rollback()
        return await _task_read(session, round_id, key)
    working = await _invite_again(
        session,
        round_,
        task,
        key=f"invitation:{{task_id}}:{{role}}:resent:{{link_id}}:{now.strftime('%Y%m%dT%H%M%S%f')}",
        settings=settings,
    )
    await trail.append(
        session,
        actor=actor,
        action="task.links_resent",
        round_id=round_id,
        task_id=task.id,
        data={"organisation": key, "links": [link.id for link in working]},
    )
    await session.commit()
    return await _task_read(session, round_id, key)


@transactional
async def replace_contact(
    session: AsyncSession, *, round_id: int, key: str, data: ContactReplace, actor: Actor, settings: Settings
) -> TaskRead:
    """Put someone else in a contact's place for this round: the old person's link stops working at once
    (it stays on record, revoked), the new one gets a link of their own and an invitation."""
    await replace_contact_in_transaction(
        session, round_id=round_id, key=key, data=data, actor=actor, settings=settings
    )
    await session.commit()
    return await _task_read(session, round_id, key)


async def replace_contact_in_transaction(
    session: AsyncSession, *, round_id: int, key: str, data: ContactReplace, actor: Actor, settings: Settings
) -> None:
    """replace_contact's change and its audit event, in the caller's transaction, which commits it (a
    registry import that changes the contacts of open tasks with the registry, all or nothing)."""
    round_ = await _open_round(session, round_id)
    task, _organisation = await _task_of(session, round_id, key)
    if task.status not in OPEN_TASK_STATUSES:
        raise Conflict(f"{key} has settled its task ({task.status}); its contacts cannot change any more")
    now = utcnow()
    current = [link for link in await _working_links(session, task) if link.role == data.role]
    if any(link.email == data.email for link in current):
        raise Conflict(f"{data.email} is already this task's {data.role.replace('_', ' ')}")
    for link in current:
        link.revoked_at = now
        session.add(link)
    await session.flush()
    row = links.new_link_row(
        task_id=task.id or 0,
        round_id=round_id,
        role=data.role,
        email=data.email,
        name=data.name,
        created_at=now,
    )
    session.add(AccessLink.model_validate(row))
    await session.flush()
    mails = await invitations.invitations_for_links(
        session,
        round_=round_,
        link_ids=[str(row["id"])],
        key="invitation:{task_id}:{role}:{link_id}",
        settings=settings,
    )
    await outbox.enqueue(session, mails=mails)
    await trail.append(
        session,
        actor=actor,
        action="task.contact_replaced",
        round_id=round_id,
        task_id=task.id,
        data={
            "organisation": key,
            "role": str(data.role),
            "revoked": [{"link_id": link.id, "email": link.email} for link in current],
            "link_id": row["id"],
            "email": data.email,
            "reason": data.reason,
        },
    )


@transactional
async def reopen_sign_off(
    session: AsyncSession, *, round_id: int, key: str, reason: str, actor: Actor, settings: Settings
) -> TaskRead:
    """At the organisation's request, undo its sign-off so it can sign again: the earlier one stays in
    the record, superseded; the task takes comments again until its deadline; its contacts get their
    link again."""
    round_ = await _open_round(session, round_id)
    task, _organisation = await _task_of(session, round_id, key)
    standing = (
        await session.exec(
            select(SignOff).where(SignOff.task_id == task.id, col(SignOff.superseded_at).is_(None))
        )
    ).first()
    if task.status != TaskStatus.signed_off or standing is None:
        raise Conflict(f"{key} has not signed off ({task.status}); there is nothing to reopen")
    if links.writable_until(task, round_) <= utcnow():
        raise Conflict(f"{key}'s deadline has passed: extend it first, then reopen the sign-off")
    now = utcnow()
    standing.superseded_at = now
    standing.superseded_reason = reason
    session.add(standing)
    commented = (
        await session.exec(select(Comment.id).where(Comment.task_id == task.id).limit(1))
    ).first() is not None
    task.status = TaskStatus.commenting if commented else TaskStatus.invited
    task.decision = None
    task.completed_at = None
    session.add(task)
    await _invite_again(
        session,
        round_,
        task,
        key=f"invitation:{{task_id}}:{{role}}:reopened:{standing.id}",
        settings=settings,
    )
    await trail.append(
        session,
        actor=actor,
        action="signoff.reopened",
        round_id=round_id,
        task_id=task.id,
        data={
            "organisation": key,
            "sign_off_id": standing.id,
            "audit_seq": standing.audit_seq,
            "reason": reason,
        },
    )
    await session.commit()
    return await _task_read(session, round_id, key)
