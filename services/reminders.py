"""Reminders: when each open task is due one, and the one email a day each person gets for all of theirs.

A round's policy says how many working days before a task's deadline, and at what local time (the
organisation's time zone, else the round's), its contacts are reminded. A reminder that could not go out
at its time (the worker was down) still goes out later that day, until `REMINDERS_UNTIL`; a day missed
altogether is skipped, and of several reminders due at once only the nearest the deadline goes.

What decides is `send_reminders`, run by a round's scheduler at a reminder's time. It gathers, for every
person one of the round's reminders is for, every reminder of theirs due now in any open round, and puts
one message in the outbox keyed by the person and their local day: two rounds deciding at the same
moment cannot both send it (the key is unique, and the loser finds the winner's record of each task). A
row of `task_reminders` per task, deadline and offset says it was decided, so a retried activity, a
restarted worker or a second scheduler adds nothing, and a new deadline starts afresh.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.documents import Section
from models.enums import CommentStatus, Language, MessageKind, ReminderStatus, RoundStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import AccessLink, Comment
from models.rounds import REMINDERS_UNTIL, ReminderPolicy, ReviewTask, Round, TaskReminder
from services import outbox, working_days
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.formatting import when_text
from services.hashing import sha256_hex
from services.invitations import organisation_name, sender_name
from services.outbox import Mail
from services.settings import Settings

TASK_REMINDERS: Table = TaskReminder.__table__  # type: ignore[attr-defined]
REMINDED_STATUSES = (TaskStatus.invited, TaskStatus.opened, TaskStatus.commenting)
"""Tasks whose contacts have their invitation and owe a sign-off."""


@dataclass(frozen=True)
class Moment:
    """One reminder of a task's deadline: when it is due, and until when that day it may still go."""

    working_days_before: int
    due_at: datetime
    until: datetime


def moments_of(
    *, deadline: datetime, policy: ReminderPolicy, jurisdiction: str, timezone: str
) -> list[Moment]:
    """The reminders a deadline calls for under a policy, earliest first; none at or after the deadline."""
    deadline_day = working_days.local_date(deadline, timezone)
    found = []
    for offset in policy.working_days_before:
        day = working_days.working_day_before(jurisdiction, deadline_day, offset)
        due_at = working_days.at_local(day, policy.clock(), timezone)
        if due_at < deadline:
            until = min(working_days.at_local(day, REMINDERS_UNTIL, timezone), deadline)
            found.append(Moment(offset, due_at, until))
    return sorted(found, key=lambda moment: moment.due_at)


@dataclass
class _TaskTiming:
    task: ReviewTask
    round: Round
    organisation: Organisation
    moments: list[Moment]
    decided: set[int] = field(default_factory=set)

    @property
    def timezone(self) -> str:
        return self.organisation.timezone or self.round.timezone

    def _open_moments(self) -> list[Moment]:
        """Not yet decided, and not overtaken by a later reminder already decided."""
        nearest = min(self.decided, default=None)
        return [
            moment
            for moment in self.moments
            if moment.working_days_before not in self.decided
            and (nearest is None or moment.working_days_before < nearest)
        ]

    def due(self, now: datetime) -> tuple[Moment | None, list[Moment]]:
        """The reminder to send now (if any), and the earlier ones it overtakes."""
        passed = [moment for moment in self._open_moments() if moment.due_at <= now]
        if not passed:
            return None, []
        latest = passed[-1]
        if now < latest.until:
            return latest, passed[:-1]
        return None, passed

    def next_at(self, now: datetime) -> datetime | None:
        upcoming = [moment.due_at for moment in self._open_moments() if moment.due_at > now]
        return min(upcoming, default=None)


async def _timings(session: AsyncSession, *, condition: Any) -> list[_TaskTiming]:
    rows = (
        await session.exec(
            select(ReviewTask, Round, Organisation)
            .join(Round, col(Round.id) == ReviewTask.round_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(
                Round.status == RoundStatus.open,
                col(ReviewTask.status).in_([str(status) for status in REMINDED_STATUSES]),
                condition,
            )
            .order_by(col(ReviewTask.id))
        )
    ).all()
    timings = []
    for task, round_, organisation in rows:
        policy = round_.reminders()
        timezone = organisation.timezone or round_.timezone
        moments = moments_of(
            deadline=task.deadline, policy=policy, jurisdiction=round_.jurisdiction, timezone=timezone
        )
        if moments:
            timings.append(_TaskTiming(task, round_, organisation, moments))
    if timings:
        decided = await session.exec(
            select(TaskReminder.task_id, TaskReminder.deadline, TaskReminder.working_days_before).where(
                col(TaskReminder.task_id).in_([timing.task.id for timing in timings])
            )
        )
        by_task = {timing.task.id: timing for timing in timings}
        for task_id, deadline, offset in decided:
            timing = by_task[task_id]
            if deadline == timing.task.deadline:
                timing.decided.add(offset)
    return timings


@dataclass(frozen=True)
class ReminderPlan:
    due: int
    """Tasks of the round with a reminder to send now."""
    next_at: datetime | None
    """When the next one becomes due (the scheduler's clock)."""


async def plan(session: AsyncSession, *, round_id: int, now: datetime) -> ReminderPlan:
    timings = await _timings(session, condition=col(ReviewTask.round_id) == round_id)
    due = sum(1 for timing in timings if timing.due(now)[0] is not None)
    upcoming = [moment for timing in timings if (moment := timing.next_at(now)) is not None]
    return ReminderPlan(due=due, next_at=min(upcoming, default=None))


@dataclass
class _Item:
    timing: _TaskTiming
    moment: Moment
    link: AccessLink


@transactional
async def send_reminders(session: AsyncSession, *, round_id: int, now: datetime, settings: Settings) -> int:
    """Decide the reminders due now for the round's tasks: one message per person and local day, listing
    every task of theirs (in any open round) with a reminder due now. Returns the messages added."""
    own = await _timings(session, condition=col(ReviewTask.round_id) == round_id)
    timings = {timing.task.id or 0: timing for timing in own}
    people: set[str] = set()
    # Everyone a due task is for, and every task of theirs due now, until nothing new turns up: each
    # person's one message of the day is decided here, whole, with all its tasks.
    newly_due = {task_id for task_id, timing in timings.items() if timing.due(now)[0] is not None}
    while newly_due:
        contacts = await _working_links(session, col(AccessLink.task_id).in_(sorted(newly_due)))
        new_people = {link.email for link in contacts} - people
        people |= new_people
        if not new_people:
            break
        held = await _working_links(session, col(AccessLink.email).in_(sorted(new_people)))
        unseen = sorted({link.task_id for link in held} - set(timings))
        found = await _timings(session, condition=col(ReviewTask.id).in_(unseen)) if unseen else []
        timings.update((timing.task.id or 0, timing) for timing in found)
        newly_due = {timing.task.id or 0 for timing in found if timing.due(now)[0] is not None}
    overtaken = [(timing, passed) for timing in timings.values() if (passed := timing.due(now)[1])]
    if not people:
        await _insert_decided(
            session, [_decided(t, m, ReminderStatus.skipped, now, []) for t, ms in overtaken for m in ms]
        )
        await session.commit()
        return 0
    items: dict[str, list[_Item]] = defaultdict(list)
    for link in await _working_links(session, col(AccessLink.email).in_(sorted(people))):
        timing = timings.get(link.task_id)
        moment = timing.due(now)[0] if timing is not None else None
        if timing is not None and moment is not None:
            items[link.email].append(_Item(timing, moment, link))
    missing = await _missing_sections(session, list(timings.values()))
    mails: list[Mail] = []
    for email, of_person in sorted(items.items()):
        of_person.sort(key=lambda item: (item.timing.task.deadline, item.timing.task.id))
        mails.append(_digest(email, of_person, missing, now, settings, deciding_round=round_id))
    added = await outbox.enqueue_new(session, mails=mails)
    sent: dict[tuple[int, int], list[str]] = defaultdict(list)
    for mail, (_email, of_person) in zip(mails, sorted(items.items()), strict=True):
        if mail.key in added:
            for item in of_person:
                sent[item.timing.task.id or 0, item.moment.working_days_before].append(mail.key)
    decided_rows = []
    events = []
    for timing in timings.values():
        moment, _passed = timing.due(now)
        if moment is None:
            continue
        keys = sent.get((timing.task.id or 0, moment.working_days_before), [])
        decided_rows.append(
            _decided(timing, moment, ReminderStatus.sent if keys else ReminderStatus.skipped, now, keys)
        )
        if keys:
            events.append(
                NewEvent(
                    action="task.reminded",
                    actor=SYSTEM_ACTOR,
                    round_id=timing.round.id,
                    task_id=timing.task.id,
                    data={
                        "organisation": timing.organisation.key,
                        "deadline": timing.task.deadline.isoformat(),
                        "working_days_before": moment.working_days_before,
                        "due_at": moment.due_at.isoformat(),
                        "messages": keys,
                    },
                )
            )
    decided_rows += [
        _decided(timing, moment, ReminderStatus.skipped, now, [])
        for timing, passed in overtaken
        for moment in passed
    ]
    await _insert_decided(session, decided_rows)
    await trail.append_many(session, events=events)
    await session.commit()
    return len(added)


def _decided(
    timing: _TaskTiming, moment: Moment, status: ReminderStatus, now: datetime, keys: list[str]
) -> dict[str, Any]:
    return {
        "task_id": timing.task.id,
        "round_id": timing.round.id,
        "deadline": timing.task.deadline,
        "working_days_before": moment.working_days_before,
        "due_at": moment.due_at,
        "status": status,
        "decided_at": now,
        "outbox_keys": keys,
    }


async def _working_links(session: AsyncSession, condition: Any) -> list[AccessLink]:
    return list(
        (
            await session.exec(
                select(AccessLink)
                .where(condition, col(AccessLink.revoked_at).is_(None))
                .order_by(col(AccessLink.id))
            )
        ).all()
    )


async def _insert_decided(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(TASK_REMINDERS).on_conflict_do_nothing(
        index_elements=["task_id", "deadline", "working_days_before"]
    )
    await session.exec(statement, params=rows)


async def _missing_sections(
    session: AsyncSession, timings: list[_TaskTiming]
) -> dict[int, list[dict[str, str]]]:
    """Per task, its assigned sections that have no comment of the organisation yet."""
    task_ids = [timing.task.id for timing in timings]
    commented: dict[int, set[int]] = defaultdict(set)
    for task_id, section_id in await session.exec(
        select(Comment.task_id, Comment.section_id).where(
            col(Comment.task_id).in_(task_ids), Comment.status == CommentStatus.active
        )
    ):
        commented[task_id].add(section_id)
    section_ids = {section_id for timing in timings for section_id in timing.task.section_ids}
    sections = {
        section_id: {"number": number, "heading": heading}
        for section_id, number, heading in await session.exec(
            select(Section.id, Section.number, Section.heading).where(
                col(Section.id).in_(sorted(section_ids))
            )
        )
    }
    return {
        timing.task.id or 0: [
            sections[section_id]
            for section_id in timing.task.section_ids
            if section_id not in commented[timing.task.id or 0] and section_id in sections
        ]
        for timing in timings
    }


def reminder_key(email: str, day: str) -> str:
    # An address may be 320 characters; the key names the person by a digest of it.
    return f"reminder:{sha256_hex(email.lower())[:24]}:{day}"


def _digest(
    email: str,
    items: list[_Item],
    missing: dict[int, list[dict[str, str]]],
    now: datetime,
    settings: Settings,
    *,
    deciding_round: int,
) -> Mail:
    first = items[0]
    language = Language(first.timing.organisation.language)
    timezone = first.timing.timezone
    day = working_days.local_date(now, timezone).isoformat()
    entries = []
    for item in items:
        timing = item.timing
        organisation = timing.organisation
        entries.append(
            {
                "link_id": item.link.id,
                "round_title": timing.round.title,
                "organisation_name": organisation_name(organisation, language),
                "deadline_text": when_text(timing.task.deadline, timezone=timing.timezone, language=language),
                "working_days_left": working_days.working_days_left(
                    timing.round.jurisdiction, now, timing.task.deadline, timing.timezone
                ),
                "has_comments": len(missing.get(timing.task.id or 0, [])) < len(timing.task.section_ids),
                "sections_without_comments": missing.get(timing.task.id or 0, []),
                "coordinator_text": timing.round.reminders().text,
            }
        )
    return Mail(
        key=reminder_key(email, day),
        kind=MessageKind.reminder,
        to_email=email,
        to_name=first.link.name,
        language=language,
        context={
            "contact_name": first.link.name,
            "items": entries,
            "decided_at": now.isoformat(),
            "sender_name": sender_name(settings),
        },
        # Delivered by the scheduler that decided it, at once: the rounds of its other tasks may be asleep.
        round_id=deciding_round,
        task_id=first.timing.task.id if len(items) == 1 else None,
    )
