"""The round dashboard and the list of rounds, as the coordinator reads them (read models, no writes).

The dashboard says where a round stands: how many organisations are at each status (and what share of
the round that is), whether the draft is cleared and what blocks it, the period and the working days
left; a row per organisation (role, status, last activity, comments and objections, decision,
reminders, escalation, email, requests for more time), overdue first, searchable and paged; the
round's comments per section by weight; and the round's latest events as sentences.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.audit import AuditEvent
from models.documents import Section
from models.enums import (
    CommentStatus,
    CommentWeight,
    ConsultationRole,
    RoundStatus,
    TaskStatus,
)
from models.extensions import ExtensionRequestRead
from models.outbox import OutboxMessageRead
from models.reviews import AccessLink, Comment
from models.rounds import ReviewTask, Round, RoundRead, TaskRead, TaskSummary
from models.types import utcnow
from services import extension_requests, outbox, rounds, tasks, working_days
from services.audit import browse, sentences
from services.errors import InvalidInput
from services.objections import APPROVING
from services.scheduling import OPEN_TASK_STATUSES

PAGE_SIZE = 25
"""Organisations per page of the dashboard's table."""
ROUNDS_PAGE_SIZE = 25
TIMELINE_SIZE = 30
"""The latest events the dashboard tells; the audit log has the rest."""
QUIET_ACTIONS = ("email.sent", "link.token_issued")
"""Left out of the timeline: one per email delivered and per link sent (each row lists its emails)."""

STATUS_ORDER: tuple[TaskStatus, ...] = (
    TaskStatus.overdue,
    TaskStatus.pending,
    TaskStatus.invited,
    TaskStatus.opened,
    TaskStatus.commenting,
    TaskStatus.signed_off,
    TaskStatus.deemed_content,
    TaskStatus.no_response,
    TaskStatus.withdrawn,
    TaskStatus.cancelled,
)
"""The table's order after the late ones: who still owes something first, the settled after."""
_RANK = {status: rank for rank, status in enumerate(STATUS_ORDER)}
WEIGHTS: tuple[CommentWeight, ...] = (CommentWeight.objection, CommentWeight.proposal, CommentWeight.remark)


@dataclass(frozen=True)
class StatusCount:
    """One bar of the progress: the organisations at a status, and their share of the round."""

    status: TaskStatus
    count: int
    percent: int


@dataclass(frozen=True)
class Contact:
    role: str
    email: str
    name: str


@dataclass(frozen=True)
class TaskRow:
    """An organisation's line of the table."""

    summary: TaskSummary
    timing: TaskRead | None
    late: bool
    """Past its deadline without a sign-off: overdue, or in the grace period before it is."""
    comments_by_weight: dict[str, int]
    emails: list[OutboxMessageRead]
    email_states: dict[str, int]
    """Delivery state -> how many of its emails are in it (sent, pending, failed, cancelled)."""
    requests: list[ExtensionRequestRead]
    """Its requests for more time, newest first."""
    contacts: list[Contact]
    """Its working links' people."""

    @property
    def key(self) -> str:
        return self.summary.organisation_key

    @property
    def objections(self) -> int:
        return self.comments_by_weight.get(CommentWeight.objection, 0)

    @property
    def pending_requests(self) -> list[ExtensionRequestRead]:
        return [request for request in self.requests if request.status == "pending"]

    @property
    def last_activity_at(self) -> datetime | None:
        return self.timing.last_activity_at if self.timing else None

    @property
    def is_open(self) -> bool:
        return self.summary.status in OPEN_TASK_STATUSES


@dataclass(frozen=True)
class TaskTable:
    """The page of rows shown, after the search and the status filter."""

    rows: list[TaskRow]
    matched: int
    total: int
    page: int
    pages: int
    query: str
    status: str

    @property
    def filtered(self) -> bool:
        return bool(self.query or self.status)


@dataclass(frozen=True)
class SectionCount:
    """A section's active comments by weight."""

    number: str
    heading: str
    by_weight: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_weight.values())


@dataclass(frozen=True)
class Dashboard:
    round: RoundRead
    now: datetime
    working_days_left: int
    deadline_passed: bool
    statuses: list[StatusCount]
    table: TaskTable
    sections: list[SectionCount]
    timeline: list[sentences.DescribedEvent]
    timeline_more: bool
    requests: list[ExtensionRequestRead]
    """Every request for more time of the round, newest first."""
    round_emails: list[OutboxMessageRead]
    """The round's own email (closing notice, the coordinator's summaries): of no task."""
    emails: dict[int | None, list[OutboxMessageRead]] = field(default_factory=dict)
    """Every email of the round by task id (None: the round's own)."""
    timings: dict[str, TaskRead] = field(default_factory=dict)

    @property
    def refreshing(self) -> bool:
        """Whether the page keeps itself up to date: while the round is open."""
        return self.round.status == RoundStatus.open

    @property
    def status_choices(self) -> tuple[TaskStatus, ...]:
        return STATUS_ORDER

    @property
    def section_max(self) -> int:
        return max((section.total for section in self.sections), default=0)

    @property
    def task_keys(self) -> set[str]:
        return {task.organisation_key for task in self.round.tasks}

    def row_of_request(self, request_id: int) -> str | None:
        for request in self.requests:
            if request.id == request_id:
                return request.organisation_key
        return None


def _folded(text: str) -> str:
    """Lower case without accents, so "ministria" finds "Ministrisë" and "Ç" is found by "c"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(character for character in decomposed if not unicodedata.combining(character))


def check_status(status: str) -> str:
    """The status filter of the table: empty (every status), or a task status."""
    chosen = status.strip()
    if not chosen:
        return ""
    if chosen not in {str(value) for value in TaskStatus}:
        known = ", ".join(str(value) for value in STATUS_ORDER)
        raise InvalidInput(
            f"'{chosen[:40]}' is not a status of an organisation's task; the statuses are {known}."
        )
    return chosen


def check_page(page: str) -> int | None:
    """A page number typed in the address: None when none is given (the first, or the focused row's)."""
    text = page.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise InvalidInput(f"'{text[:10]}' is not a page number.")
    return int(text)


async def build(
    session: AsyncSession,
    *,
    round_id: int,
    query: str = "",
    status: str = "",
    page: int | None = None,
    focus: str | None = None,
    now: datetime | None = None,
) -> Dashboard:
    """The dashboard of a round. `query` searches names, keys and contacts; `status` keeps one status;
    `page` is the page of the table (by default the first, or the one that holds `focus`, the row an
    action was just taken on)."""
    status = check_status(status)
    query = query.strip()[:200]
    now = now or utcnow()
    detail = await rounds.get_round(session, round_id=round_id)
    timings = {
        task.organisation_key: task for task in await tasks.list_tasks(session, round_id=round_id, now=now)
    }
    emails: dict[int | None, list[OutboxMessageRead]] = defaultdict(list)
    for message in await outbox.messages_of_round(session, round_id=round_id):
        emails[message.task_id].append(message)
    requests = list(reversed(await extension_requests.list_requests(session, round_id=round_id)))
    by_task: dict[int, list[ExtensionRequestRead]] = defaultdict(list)
    for request in requests:
        by_task[request.task_id].append(request)
    weights = await _comments_by_task(session, round_id)
    contacts = await _contacts(session, round_id)
    round_open = detail.status == RoundStatus.open
    rows = [
        TaskRow(
            summary=summary,
            timing=timings.get(summary.organisation_key),
            late=summary.status == TaskStatus.overdue
            or (round_open and summary.status in OPEN_TASK_STATUSES and summary.deadline <= now),
            comments_by_weight=weights.get(summary.id, {}),
            emails=emails.get(summary.id, []),
            email_states=dict(Counter(str(message.status) for message in emails.get(summary.id, []))),
            requests=by_task.get(summary.id, []),
            contacts=contacts.get(summary.id, []),
        )
        for summary in detail.tasks
    ]
    rows.sort(
        key=lambda row: (
            not row.late,
            _RANK.get(row.summary.status, len(_RANK)),
            row.summary.deadline,
            _folded(row.summary.organisation_name),
        )
    )
    counts = Counter(task.status for task in detail.tasks)
    total = len(detail.tasks)
    statuses = [
        StatusCount(
            status=value, count=counts[value], percent=round(100 * counts[value] / total) if total else 0
        )
        for value in STATUS_ORDER
        if counts[value]
    ]
    matching = [row for row in rows if _matches(row, query) and (not status or row.summary.status == status)]
    pages = max(1, math.ceil(len(matching) / PAGE_SIZE))
    if page is None:
        page = 1
        if focus:
            for index, row in enumerate(matching):
                if row.key == focus:
                    page = index // PAGE_SIZE + 1
                    break
    page = min(page, pages)
    timeline, more = await _timeline(session, round_id, detail.timezone)
    return Dashboard(
        round=detail,
        now=now,
        working_days_left=working_days.working_days_left(
            detail.jurisdiction, now, detail.deadline, detail.timezone
        )
        if detail.deadline > now
        else 0,
        deadline_passed=detail.deadline <= now,
        statuses=statuses,
        table=TaskTable(
            rows=matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            matched=len(matching),
            total=total,
            page=page,
            pages=pages,
            query=query,
            status=status,
        ),
        sections=await _sections(session, detail),
        timeline=timeline,
        timeline_more=more,
        requests=requests,
        round_emails=emails.get(None, []),
        emails=dict(emails),
        timings=timings,
    )


def _matches(row: TaskRow, query: str) -> bool:
    if not query:
        return True
    summary = row.summary
    haystack = " ".join(
        [
            summary.organisation_name,
            summary.organisation_key,
            str(summary.organisation_kind).replace("_", " "),
            str(summary.role),
            *(contact.email for contact in row.contacts),
            *(contact.name for contact in row.contacts),
        ]
    )
    folded = _folded(haystack)
    return all(word in folded for word in _folded(query).split())


async def _comments_by_task(session: AsyncSession, round_id: int) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for task_id, weight, count in await session.exec(
        select(Comment.task_id, Comment.weight, func.count())
        .where(Comment.round_id == round_id, Comment.status == CommentStatus.active)
        .group_by(col(Comment.task_id), col(Comment.weight))
    ):
        found[task_id][str(weight)] = count
    return found


async def _contacts(session: AsyncSession, round_id: int) -> dict[int, list[Contact]]:
    found: dict[int, list[Contact]] = defaultdict(list)
    for link in await session.exec(
        select(AccessLink)
        .where(AccessLink.round_id == round_id, col(AccessLink.revoked_at).is_(None))
        .order_by(col(AccessLink.task_id), col(AccessLink.role).desc(), col(AccessLink.created_at))
    ):
        found[link.task_id].append(Contact(role=str(link.role), email=link.email, name=link.name))
    return found


async def _sections(session: AsyncSession, detail: RoundRead) -> list[SectionCount]:
    """Every section of the round's draft with its active comments by weight; the comments of an
    organisation withdrawn from the round are left out, as they are of its outcome."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for section_id, weight, count in await session.exec(
        select(Comment.section_id, Comment.weight, func.count())
        .join(ReviewTask, col(ReviewTask.id) == Comment.task_id)
        .where(
            Comment.round_id == detail.id,
            Comment.status == CommentStatus.active,
            ReviewTask.status != TaskStatus.withdrawn,
        )
        .group_by(col(Comment.section_id), col(Comment.weight))
    ):
        counts[section_id][str(weight)] = count
    sections = await session.exec(
        select(Section.id, Section.number, Section.heading)
        .where(Section.document_version_id == detail.document_version_id)
        .order_by(col(Section.position))
    )
    return [
        SectionCount(
            number=number,
            heading=heading,
            by_weight={
                str(weight): counts.get(section_id or 0, {}).get(str(weight), 0) for weight in WEIGHTS
            },
        )
        for section_id, number, heading in sections
    ]


async def _timeline(
    session: AsyncSession, round_id: int, timezone: str
) -> tuple[list[sentences.DescribedEvent], bool]:
    """The round's latest events, newest first, as sentences; True when there are older ones."""
    rows = list(
        (
            await session.exec(
                select(AuditEvent)
                .where(AuditEvent.round_id == round_id, col(AuditEvent.action).not_in(QUIET_ACTIONS))
                .order_by(col(AuditEvent.seq).desc())
                .limit(TIMELINE_SIZE + 1)
            )
        ).all()
    )
    more = len(rows) > TIMELINE_SIZE
    events = [browse.to_read(event) for event in rows[:TIMELINE_SIZE]]
    # The names of the events' organisations, rounds and people, as the audit log looks them up.
    names = await sentences._names(session, events, timezone)
    return [
        sentences.DescribedEvent(event=event, at=row.at, parts=sentences.describe(event, names))
        for event, row in zip(events, rows, strict=False)
    ], more


# ----------------------------------------------------------------------------------- the rounds list


@dataclass(frozen=True)
class RoundLine:
    """A round as the list shows it: its status, deadline and where its organisations stand."""

    id: int
    title: str
    status: RoundStatus
    deadline: datetime
    timezone: str
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    organisations: int
    approvers: int
    approved: int
    signed_off: int
    overdue: int
    comments: int

    @property
    def consulted(self) -> int:
        return self.organisations - self.approvers


@dataclass(frozen=True)
class RoundList:
    lines: list[RoundLine]
    matched: int
    total: int
    page: int
    pages: int
    query: str
    status: str

    @property
    def filtered(self) -> bool:
        return bool(self.query or self.status)


def check_round_status(status: str) -> str:
    chosen = status.strip()
    if not chosen:
        return ""
    if chosen not in {str(value) for value in RoundStatus}:
        known = ", ".join(str(value) for value in RoundStatus)
        raise InvalidInput(f"'{chosen[:40]}' is not a status of a round; the statuses are {known}.")
    return chosen


async def round_list(
    session: AsyncSession, *, query: str = "", status: str = "", page: int | None = None
) -> RoundList:
    """Rounds newest first, a page at a time, with what their organisations have done; `query` searches
    titles (and a round's number), `status` keeps rounds of one status."""
    status = check_round_status(status)
    query = query.strip()[:200]
    conditions = []
    if status:
        conditions.append(col(Round.status) == status)
    for word in query.split():
        if word.lstrip("#").isascii() and word.lstrip("#").isdigit() and len(word) <= 10:
            conditions.append(
                (col(Round.id) == int(word.lstrip("#")))
                | col(Round.title).ilike(f"%{_like(word)}%", escape="\\")
            )
        else:
            conditions.append(col(Round.title).ilike(f"%{_like(word)}%", escape="\\"))
    total = (await session.exec(select(func.count()).select_from(Round))).one()
    matched = (await session.exec(select(func.count()).select_from(Round).where(*conditions))).one()
    pages = max(1, math.ceil(matched / ROUNDS_PAGE_SIZE))
    page = min(page or 1, pages)
    found = list(
        (
            await session.exec(
                select(Round)
                .where(*conditions)
                .order_by(col(Round.created_at).desc(), col(Round.id).desc())
                .offset((page - 1) * ROUNDS_PAGE_SIZE)
                .limit(ROUNDS_PAGE_SIZE)
            )
        ).all()
    )
    ids = [round_.id for round_ in found]
    approver = col(ReviewTask.role) == ConsultationRole.approver
    signed = col(ReviewTask.status) == TaskStatus.signed_off
    figures = {
        round_id: (
            organisations,
            int(approvers or 0),
            int(approved or 0),
            int(signed_off or 0),
            int(late or 0),
        )
        for round_id, organisations, approvers, approved, signed_off, late in (
            await session.exec(
                select(  # type: ignore[call-overload]
                    ReviewTask.round_id,
                    func.count(),
                    func.sum(case((approver, 1), else_=0)),
                    func.sum(
                        case(
                            (
                                approver & signed & col(ReviewTask.decision).in_([str(d) for d in APPROVING]),
                                1,
                            ),
                            else_=0,
                        )
                    ),
                    func.sum(case((signed, 1), else_=0)),
                    func.sum(case((col(ReviewTask.status) == TaskStatus.overdue, 1), else_=0)),
                )
                .where(col(ReviewTask.round_id).in_(ids), col(ReviewTask.status) != TaskStatus.withdrawn)
                .group_by(col(ReviewTask.round_id))
            )
        ).all()
    }
    comments = dict(
        (
            await session.exec(
                select(Comment.round_id, func.count())
                .where(col(Comment.round_id).in_(ids), Comment.status == CommentStatus.active)
                .group_by(col(Comment.round_id))
            )
        ).all()
    )
    lines = []
    for round_ in found:
        organisations, approvers, approved, signed_off, late = figures.get(round_.id or 0, (0, 0, 0, 0, 0))
        lines.append(
            RoundLine(
                id=round_.id or 0,
                title=round_.title,
                status=round_.status,
                deadline=round_.deadline,
                timezone=round_.timezone,
                created_at=round_.created_at,
                launched_at=round_.launched_at,
                closed_at=round_.closed_at,
                organisations=organisations,
                approvers=approvers,
                approved=approved,
                signed_off=signed_off,
                overdue=late,
                comments=comments.get(round_.id or 0, 0),
            )
        )
    return RoundList(
        lines=lines, matched=matched, total=total, page=page, pages=pages, query=query, status=status
    )


def _like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
