"""The consultation report of a round, as data: what it was for and how long it ran, who was consulted as
what, who answered and what silence meant, the decisions, the comments and what became of them, the
reasons for rejection grouped (Law 146/2014 asks for a published summary of them), the objections, the
clearance and the sign-offs with the hashes of the texts signed. `report_documents` renders it."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import SilenceMeaning, TaskStatus
from models.organisations import Organisation
from models.responses import Clearance, ObjectionRead
from models.reviews import SignOffRead
from models.rounds import ReviewTask
from models.types import utcnow
from services import objections, reports, responses, rounds
from services.procedures import get_procedure

ANSWERED = frozenset({TaskStatus.signed_off})
SILENT_AT_CLOSE = frozenset({TaskStatus.no_response, TaskStatus.deemed_content})
LEFT_OUT = frozenset({TaskStatus.withdrawn})
"""Taken out of the round by the coordinator (a cancelled round's organisations were consulted all the
same)."""
RESPONSES = ("accepted", "partially_accepted", "rejected", "noted")


@dataclass(frozen=True)
class Participant:
    name: str
    kind: str
    role: str
    status: str
    decision: str
    comments: int


@dataclass(frozen=True)
class CommentRef:
    number: int
    """The comment's number in the comment matrix."""
    organisation: str
    section: str


@dataclass(frozen=True)
class RejectionReason:
    reason: str
    comments: list[CommentRef]

    @property
    def answered(self) -> str:
        """The comments it answers, by organisation: "Ministry of Interior: no. 3 (section 4), no. 9 (section
        12); Bashkia Tiranë: no. 5 (section 4)"."""
        by_organisation: dict[str, list[str]] = defaultdict(list)
        for ref in self.comments:
            by_organisation[ref.organisation].append(f"no. {ref.number} (section {ref.section})")
        return "; ".join(f"{name}: {', '.join(refs)}" for name, refs in by_organisation.items())


@dataclass(frozen=True)
class TextSigned:
    """A section's text as signed, by its SHA-256: every organisation that signed the same text of a section
    signed the same hash, so the report gives each hash once, with who signed it."""

    number: str
    heading: str
    sha256: str
    signed_by: list[str]


@dataclass
class Report:
    round_id: int
    title: str
    purpose: str
    procedure: str
    status: str
    launched_at: datetime | None
    deadline: datetime
    closed_at: datetime | None
    timezone: str
    period_working_days: int
    silence_means: str
    generated_at: datetime
    participants: list[Participant]
    consulted_by_kind_and_role: dict[tuple[str, str], int]
    answered: int
    not_answered: int
    comments_total: int
    comments_withdrawn: int
    by_section: dict[str, int]
    by_type: dict[str, int]
    by_weight: dict[str, int]
    responses: dict[str, int]
    unanswered_comments: int
    rejection_reasons: list[RejectionReason]
    objections: list[ObjectionRead]
    clearance: Clearance
    sign_offs: list[SignOffRead]
    """The sign-offs that stand (not superseded by a reopening)."""
    texts_signed: list[TextSigned]
    decisions: dict[str, int] = field(default_factory=dict)

    @property
    def silence_text(self) -> str:
        if self.silence_means == SilenceMeaning.content:
            return "An organisation that did not answer by the close is deemed content with the draft."
        return "An organisation that did not answer by the close is recorded as not having responded."


def _normalised(reason: str) -> str:
    """The same reason however it is cased, spaced or punctuated: "See Law 139/2015." and "see law
    139/2015" are one reason."""
    return " ".join(re.findall(r"\w+", reason.casefold()))


def _texts_signed(sign_offs: list[SignOffRead]) -> list[TextSigned]:
    signers: dict[tuple[str, str], list[str]] = defaultdict(list)
    headings: dict[tuple[str, str], str] = {}
    for sign_off in sign_offs:
        for section in sign_off.sections:
            key = (section["number"], section["sha256"])
            headings.setdefault(key, section.get("heading", ""))
            signers[key].append(sign_off.organisation_name)
    return [
        TextSigned(number=number, heading=headings[(number, sha)], sha256=sha, signed_by=names)
        for (number, sha), names in signers.items()
    ]


async def build(session: AsyncSession, *, round_id: int) -> Report:
    round_ = await rounds.get_round_row(session, round_id=round_id)
    tasks = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
            .order_by(col(ReviewTask.role), col(Organisation.kind), col(Organisation.name_en))
        )
    ).all()
    listed = await responses.list_round_comments(session, round_id=round_id)
    active = [comment for comment in listed if comment.status == "active"]
    per_organisation = Counter(comment.organisation_key for comment in active)
    participants = [
        Participant(
            name=organisation.name_en,
            kind=str(organisation.kind),
            role=str(task.role),
            status=str(task.status),
            decision=str(task.decision or ""),
            comments=per_organisation[organisation.key],
        )
        for task, organisation in tasks
        if task.status not in LEFT_OUT
    ]
    consulted: Counter[tuple[str, str]] = Counter((p.kind, p.role) for p in participants)
    published = [c for c in active if c.response is not None and c.response.published_at is not None]
    numbers = {comment.id: number for number, comment in enumerate(listed, start=1)}  # as in the matrix
    grouped: dict[str, list[CommentRef]] = defaultdict(list)
    wording: dict[str, str] = {}
    for comment in published:
        assert comment.response is not None
        if str(comment.response.response) != "rejected":
            continue
        key = _normalised(comment.response.justification)
        wording.setdefault(key, comment.response.justification.strip() or "(no reason given)")
        grouped[key].append(
            CommentRef(
                number=numbers[comment.id], organisation=comment.organisation_name, section=comment.section
            )
        )
    reasons = sorted(
        (RejectionReason(reason=wording[key], comments=items) for key, items in grouped.items()),
        key=lambda reason: (-len(reason.comments), reason.reason),
    )
    answered = sum(1 for p in participants if p.status in ANSWERED)
    standing = [
        s for s in await reports.list_sign_offs(session, round_id=round_id) if s.superseded_at is None
    ]
    return Report(
        round_id=round_id,
        title=round_.title,
        purpose=round_.purpose,
        procedure=get_procedure(round_.procedure).name,
        status=str(round_.status),
        launched_at=round_.launched_at,
        deadline=round_.deadline,
        closed_at=round_.closed_at,
        timezone=round_.timezone,
        period_working_days=rounds.period_of(round_, now=utcnow()),
        silence_means=str(round_.silence_means),
        generated_at=utcnow(),
        participants=participants,
        consulted_by_kind_and_role=dict(sorted(consulted.items())),
        answered=answered,
        not_answered=len(participants) - answered,
        comments_total=len(active),
        comments_withdrawn=len(listed) - len(active),
        by_section=dict(Counter(c.section for c in active)),
        by_type=dict(sorted(Counter(c.type for c in active).items())),
        by_weight=dict(sorted(Counter(c.weight for c in active).items())),
        responses={
            kind: sum(1 for c in published if c.response and str(c.response.response) == kind)
            for kind in RESPONSES
        },
        unanswered_comments=len(active) - len(published),
        rejection_reasons=reasons,
        objections=await objections.register(session, round_id=round_id),
        clearance=await objections.clearance(session, round_id=round_id),
        sign_offs=standing,
        texts_signed=_texts_signed(standing),
        decisions=dict(sorted(Counter(p.decision for p in participants if p.decision).items())),
    )
