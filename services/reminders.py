"""Reminders: when each open task is due one, and the one email a day each person gets for all of theirs.

A round's policy says how many working days before a task's deadline, and at what local time (the
organisation's time zone, else the round's), its contacts are reminded. A reminder that could not go out
at its time (the worker was down) still goes out later that day, until `REMINDERS_UNTIL`; a day missed
altogether is skipped, and of several reminders due at once only the nearest the deadline goes.

What decides is `send_reminders`, run by a round's scheduler at a reminder's time. When one of the round's
reminders is due, it decides every reminder due now in every open round, one message per person keyed by
the person and their local day, in one transaction; decisions take turns (one SQLite writer, an advisory
lock on PostgreSQL). So two rounds' schedulers cannot both send a person their digest: the one that comes
second finds the first's record of each task and adds nothing. A row of `task_reminders` per task,
deadline and offset says it was decided, so a retried activity, a restarted worker or a second scheduler
adds nothing, and a new deadline starts afresh.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import SYSTEM_ACTOR
from models.enums import CommentStatus, Language, MessageKind, ReminderStatus, RoundStatus, TaskStatus
from models.rounds import REMINDERS_UNTIL, ReminderPolicy, Round
from models.tables import (
    ACCESS_LINKS,
    COMMENTS,
    ORGANISATIONS,
    REVIEW_TASKS,
    ROUNDS,
    SECTIONS,
    TASK_REMINDERS,
)
from services import outbox, working_days
from services.audit import trail
from services.audit.trail import NewEvent
from services.db import transactional
from services.formatting import when_text
from services.hashing import sha256_hex
from services.invitations import local_name, sender_name
from services.outbox import Mail
from services.settings import Settings

REMINDED_STATUSES = (TaskStatus.invited, TaskStatus.opened, TaskStatus.commenting)
"""Tasks whose contacts have their invitation and owe a sign-off."""
DECISION_LOCK = 0x52454D494E44  # PostgreSQL advisory lock key: "REMIND"
IDS_PER_STATEMENT = 500
"""Task ids per IN list (SQLite caps the parameters of one statement)."""


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


@dataclass(frozen=True)
class _RoundTerms:
    """What a round's reminders need of it, read once per round."""

    id: int
    title: str
    timezone: str
    jurisdiction: str
    policy: ReminderPolicy


@dataclass
class _TaskTiming:
    """A task owing a sign-off, as plain values (a decision reads thousands), and its reminders."""

    task_id: int
    round: _RoundTerms
    deadline: datetime
    organisation_key: str
    organisation_name_en: str
    organisation_name_sq: str
    organisation_language: str
    organisation_timezone: str | None
    moments: list[Moment]
    decided: set[int] = field(default_factory=set)

    @property
    def timezone(self) -> str:
        return self.organisation_timezone or self.round.timezone

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


class _Scope:
    """Which owing tasks a statement covers: those of one round, or those of every open round whose
    deadline is still ahead (a reminder is always before its deadline). Statements are built once."""

    def __init__(self, condition: Any) -> None:
        owing = sa.and_(
            ROUNDS.c.status == RoundStatus.open,
            REVIEW_TASKS.c.status.in_([str(status) for status in REMINDED_STATUSES]),
            condition,
        )
        tasks_of_open_rounds = REVIEW_TASKS.join(ROUNDS, ROUNDS.c.id == REVIEW_TASKS.c.round_id)
        self.tasks = (
            sa.select(
                REVIEW_TASKS.c.id,
                REVIEW_TASKS.c.deadline,
                ORGANISATIONS.c.key,
                ORGANISATIONS.c.name_en,
                ORGANISATIONS.c.name_sq,
                ORGANISATIONS.c.language,
                ORGANISATIONS.c.timezone,
                REVIEW_TASKS.c.round_id,
            )
            .select_from(
                tasks_of_open_rounds.join(ORGANISATIONS, ORGANISATIONS.c.id == REVIEW_TASKS.c.organisation_id)
            )
            .where(owing)
            .order_by(REVIEW_TASKS.c.id)
        )
        self.decided = (
            sa.select(TASK_REMINDERS.c.task_id, TASK_REMINDERS.c.working_days_before)
            .select_from(
                tasks_of_open_rounds.join(TASK_REMINDERS, TASK_REMINDERS.c.task_id == REVIEW_TASKS.c.id)
            )
            .where(owing, TASK_REMINDERS.c.deadline == REVIEW_TASKS.c.deadline)
        )
        self.links = (
            sa.select(ACCESS_LINKS.c.id, ACCESS_LINKS.c.task_id, ACCESS_LINKS.c.email, ACCESS_LINKS.c.name)
            .select_from(tasks_of_open_rounds.join(ACCESS_LINKS, ACCESS_LINKS.c.task_id == REVIEW_TASKS.c.id))
            .where(owing, ACCESS_LINKS.c.revoked_at.is_(None))
            .order_by(ACCESS_LINKS.c.id)
        )


_OF_ROUND = _Scope(REVIEW_TASKS.c.round_id == sa.bindparam("round_id"))
_ALL_AHEAD = _Scope(REVIEW_TASKS.c.deadline > sa.bindparam("now"))
_ROUND_TERMS = sa.select(
    ROUNDS.c.id, ROUNDS.c.title, ROUNDS.c.timezone, ROUNDS.c.jurisdiction, ROUNDS.c.reminder_policy
).where(ROUNDS.c.id.in_(sa.bindparam("round_ids", expanding=True)))
_SECTIONS_OF_TASKS = sa.select(REVIEW_TASKS.c.id, REVIEW_TASKS.c.section_ids).where(
    REVIEW_TASKS.c.id.in_(sa.bindparam("task_ids", expanding=True))
)
_COMMENTED_SECTIONS = sa.select(COMMENTS.c.task_id, COMMENTS.c.section_id).where(
    COMMENTS.c.task_id.in_(sa.bindparam("task_ids", expanding=True)),
    COMMENTS.c.status == CommentStatus.active,
)
_SECTIONS = sa.select(SECTIONS.c.id, SECTIONS.c.number, SECTIONS.c.heading).where(
    SECTIONS.c.id.in_(sa.bindparam("section_ids", expanding=True))
)


def _chunks(ids: set[int]) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[start : start + IDS_PER_STATEMENT] for start in range(0, len(ordered), IDS_PER_STATEMENT)]


async def _rows(session: AsyncSession, statement: Any, params: dict[str, Any]) -> list[Any]:
    # Plain rows on the session's connection: a decision reads thousands, the ORM's bookkeeping is waste.
    connection = await session.connection()
    return list((await connection.execute(statement, params)).all())


async def _round_terms(session: AsyncSession, *, round_ids: set[int]) -> dict[int, _RoundTerms]:
    terms = {}
    for chunk in _chunks(round_ids):
        for round_id, title, timezone, jurisdiction, policy in await _rows(
            session, _ROUND_TERMS, {"round_ids": chunk}
        ):
            terms[round_id] = _RoundTerms(
                round_id, title, timezone, jurisdiction, ReminderPolicy.model_validate(policy or {})
            )
    return terms


async def _timings(
    session: AsyncSession,
    *,
    scope: _Scope,
    params: dict[str, Any],
    terms: dict[int, _RoundTerms] | None = None,
) -> list[_TaskTiming]:
    """`terms`: of the rounds concerned, when the caller has them."""
    found = await _rows(session, scope.tasks, params)
    if terms is None:
        terms = await _round_terms(session, round_ids={row[-1] for row in found})
    # A decision covers thousands of tasks sharing a few deadlines, zones and policies.
    moments_for: dict[tuple[Any, ...], list[Moment]] = {}
    timings = []
    for task_id, deadline, key, name_en, name_sq, language, organisation_timezone, round_id in found:
        round_ = terms[round_id]
        timezone = organisation_timezone or round_.timezone
        moments_key = (deadline, round_id, timezone)
        moments = moments_for.get(moments_key)
        if moments is None:
            moments = moments_for[moments_key] = moments_of(
                deadline=deadline, policy=round_.policy, jurisdiction=round_.jurisdiction, timezone=timezone
            )
        if moments:
            timings.append(
                _TaskTiming(
                    task_id,
                    round_,
                    deadline,
                    key,
                    name_en,
                    name_sq,
                    str(language),
                    organisation_timezone,
                    moments,
                )
            )
    if timings:
        by_task = {timing.task_id: timing for timing in timings}
        for task_id, offset in await _rows(session, scope.decided, params):
            timing = by_task.get(task_id)
            if timing is not None:
                timing.decided.add(offset)
    return timings


@dataclass(frozen=True)
class ReminderPlan:
    due: int
    """Tasks of the round with a reminder to send now."""
    next_at: datetime | None
    """When the next one becomes due (the scheduler's clock)."""


async def plan(session: AsyncSession, *, round_: Round, now: datetime) -> ReminderPlan:
    assert round_.id is not None
    terms = {
        round_.id: _RoundTerms(
            round_.id, round_.title, round_.timezone, round_.jurisdiction, round_.reminders()
        )
    }
    timings = await _timings(session, scope=_OF_ROUND, params={"round_id": round_.id}, terms=terms)
    due = sum(1 for timing in timings if timing.due(now)[0] is not None)
    upcoming = [moment for timing in timings if (moment := timing.next_at(now)) is not None]
    return ReminderPlan(due=due, next_at=min(upcoming, default=None))


@dataclass(frozen=True)
class _Link:
    id: str
    task_id: int
    email: str
    name: str


@dataclass
class _Item:
    timing: _TaskTiming
    moment: Moment
    link: _Link


@transactional
async def send_reminders(session: AsyncSession, *, round_id: int, now: datetime, settings: Settings) -> int:
    """Decide the reminders due now: one message per person and local day, listing every task of theirs
    (in any open round) with a reminder due now. Returns the messages added.

    The round's scheduler calls it at a reminder's time. If anything of the round is due, every reminder
    due now in every open round is decided here, in one transaction: the schedulers of other rounds due at
    the same moment (a person's digest spans their rounds) then find theirs decided and add nothing. One
    decision at a time: SQLite has one writer, and on PostgreSQL an advisory lock makes the others wait
    for this one and then see what it decided."""
    if session.get_bind().dialect.name == "postgresql":
        await session.exec(select(func.pg_advisory_xact_lock(DECISION_LOCK)))
    own = await _timings(session, scope=_OF_ROUND, params={"round_id": round_id})
    if any(timing.due(now)[0] is not None for timing in own):
        timings = await _timings(session, scope=_ALL_AHEAD, params={"now": now})
    else:
        timings = own
    decisions = [(timing, *timing.due(now)) for timing in timings]
    due = {timing.task_id: (timing, moment) for timing, moment, _passed in decisions if moment is not None}
    overtaken = [
        _decided(timing, moment, ReminderStatus.skipped, now, [])
        for timing, _moment, passed in decisions
        for moment in passed
    ]
    items: dict[str, list[_Item]] = defaultdict(list)
    if due:
        for link_id, task_id, email, name in await _rows(session, _ALL_AHEAD.links, {"now": now}):
            if task_id in due:
                link = _Link(link_id, task_id, email, name)
                timing, moment = due[task_id]
                items[email].append(_Item(timing, moment, link))
    missing = await _missing_sections(session, [timing for timing, _moment in due.values()])
    people = sorted(items.items())
    digests = _Digests(now, settings, missing, deciding_round=round_id)
    mails = [digests.of(email, of_person) for email, of_person in people]
    added = await outbox.enqueue_new(session, mails=mails)
    sent: dict[int, list[str]] = defaultdict(list)
    for mail, (_email, of_person) in zip(mails, people, strict=True):
        if mail.key in added:
            for item in of_person:
                sent[item.timing.task_id].append(mail.key)
    decided_rows = list(overtaken)
    events = []
    for task_id, (timing, moment) in due.items():
        keys = sent.get(task_id, [])
        decided_rows.append(
            _decided(timing, moment, ReminderStatus.sent if keys else ReminderStatus.skipped, now, keys)
        )
        if keys:
            events.append(
                NewEvent(
                    action="task.reminded",
                    actor=SYSTEM_ACTOR,
                    round_id=timing.round.id,
                    task_id=task_id,
                    data={
                        "organisation": timing.organisation_key,
                        "deadline": timing.deadline.isoformat(),
                        "working_days_before": moment.working_days_before,
                        "due_at": moment.due_at.isoformat(),
                        "messages": keys,
                    },
                )
            )
    await _insert_decided(session, decided_rows)
    await trail.append_many(session, events=events)
    await session.commit()
    return len(added)


def _decided(
    timing: _TaskTiming, moment: Moment, status: ReminderStatus, now: datetime, keys: list[str]
) -> dict[str, Any]:
    return {
        "task_id": timing.task_id,
        "round_id": timing.round.id,
        "deadline": timing.deadline,
        "working_days_before": moment.working_days_before,
        "due_at": moment.due_at,
        "status": status,
        "decided_at": now,
        "outbox_keys": keys,
    }


async def _insert_decided(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(TASK_REMINDERS).on_conflict_do_nothing(
        index_elements=["task_id", "deadline", "working_days_before"]
    )
    await session.exec(statement, params=rows)


async def _missing_sections(session: AsyncSession, timings: list[_TaskTiming]) -> dict[int, _Sections]:
    """Per task, its assigned sections, and those that have no comment of the organisation yet."""
    assigned: dict[int, list[int]] = {}
    commented: dict[int, set[int]] = defaultdict(set)
    for chunk in _chunks({timing.task_id for timing in timings}):
        assigned.update(await _rows(session, _SECTIONS_OF_TASKS, {"task_ids": chunk}))
        for task_id, section_id in await _rows(session, _COMMENTED_SECTIONS, {"task_ids": chunk}):
            commented[task_id].add(section_id)
    sections = {}
    for chunk in _chunks({section_id for ids in assigned.values() for section_id in ids}):
        for section_id, number, heading in await _rows(session, _SECTIONS, {"section_ids": chunk}):
            sections[section_id] = {"number": number, "heading": heading}
    return {
        task_id: _Sections(
            assigned=len(ids),
            without_comments=[
                sections[section_id]
                for section_id in ids
                if section_id not in commented[task_id] and section_id in sections
            ],
        )
        for task_id, ids in assigned.items()
    }


@dataclass(frozen=True)
class _Sections:
    assigned: int
    without_comments: list[dict[str, str]]


def reminder_key(email: str, day: str) -> str:
    # An address may be 320 characters; the key names the person by a digest of it.
    return f"reminder:{sha256_hex(email.lower())[:24]}:{day}"


class _Digests:
    """The day's message of each person; dates and counts shared by thousands of tasks are worked out once."""

    def __init__(
        self,
        now: datetime,
        settings: Settings,
        missing: dict[int, _Sections],
        *,
        deciding_round: int,
    ) -> None:
        self.now = now
        self.missing = missing
        self.deciding_round = deciding_round
        self.sender_name = sender_name(settings)
        self._deadline_texts: dict[tuple[datetime, str, str], str] = {}
        self._days_left: dict[tuple[str, datetime, str], int] = {}

    def _deadline_text(self, deadline: datetime, timezone: str, language: str) -> str:
        key = (deadline, timezone, language)
        if key not in self._deadline_texts:
            self._deadline_texts[key] = when_text(deadline, timezone=timezone, language=language)
        return self._deadline_texts[key]

    def _working_days_left(self, jurisdiction: str, deadline: datetime, timezone: str) -> int:
        key = (jurisdiction, deadline, timezone)
        if key not in self._days_left:
            self._days_left[key] = working_days.working_days_left(jurisdiction, self.now, deadline, timezone)
        return self._days_left[key]

    def of(self, email: str, items: list[_Item]) -> Mail:
        items.sort(key=lambda item: (item.timing.deadline, item.timing.task_id))
        first = items[0]
        language = Language(first.timing.organisation_language)
        day = working_days.local_date(self.now, first.timing.timezone).isoformat()
        entries = []
        for item in items:
            timing = item.timing
            sections = self.missing.get(timing.task_id, _Sections(0, []))
            has_comments = len(sections.without_comments) < sections.assigned
            entries.append(
                {
                    "link_id": item.link.id,
                    "round_title": timing.round.title,
                    "organisation_name": local_name(
                        language, timing.organisation_name_en, timing.organisation_name_sq
                    ),
                    "deadline_text": self._deadline_text(timing.deadline, timing.timezone, language),
                    "working_days_left": self._working_days_left(
                        timing.round.jurisdiction, timing.deadline, timing.timezone
                    ),
                    "has_comments": has_comments,
                    "sections_assigned": sections.assigned,
                    # None commented yet: the email says "any of its N sections" rather than list them all.
                    "sections_without_comments": sections.without_comments if has_comments else [],
                    "coordinator_text": timing.round.policy.text,
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
                "decided_at": self.now.isoformat(),
                "sender_name": self.sender_name,
            },
            # Delivered by the scheduler that decided it, at once: the rounds of its other tasks may be
            # asleep.
            round_id=self.deciding_round,
            task_id=first.timing.task_id if len(items) == 1 else None,
            about_rounds=tuple(sorted({item.timing.round.id for item in items})),
        )
