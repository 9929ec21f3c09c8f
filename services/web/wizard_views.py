"""What the new-round wizard shows: its choices, a draft as the wizard fills it in again, the planned
period, and the previews of the invitation and of the review page. Read-only: the wizard's changes go
through rounds.create_round, update_draft and delete_draft."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import ConsultationRole, Language, MessageKind, OrganisationKind, RoundStatus
from models.organisations import Organisation
from models.rounds import ReviewTask, RoundRead, default_role
from models.types import utcnow
from notifications.rendering import render_email
from services import documents, invitations, rounds, working_days
from services.documents import SectionView
from services.errors import Conflict, DomainError, NotFound
from services.formatting import parse_local_datetime
from services.procedures import Procedure, all_procedures
from services.rounds import PlannedPeriod
from services.settings import Settings
from services.web import console_views
from services.web.console_views import VersionChoice
from services.web.forms import RoundForm
from services.web.i18n import N_

JURISDICTION = "AL"
"""The console opens rounds in the default jurisdiction, as RoundCreate does."""
EXAMPLE_TOKEN = "EXAMPLE-LINK-PREVIEW-ONLY"  # noqa: S105 - a stand-in that opens no link
"""Where a real invitation has the recipient's own link; under /t/ it opens the 'invalid link' page."""
HOLIDAY_YEARS = 3
"""Years of public holidays the page gives its script, to count working days as the server does."""

NOT_A_DRAFT = N_(
    "This round has been launched: it can no longer be edited or deleted. Its page has the changes a "
    "round under way allows (extensions, organisations added or withdrawn)."
)


@dataclass(frozen=True)
class OrganisationChoice:
    key: str
    name: str
    kind: OrganisationKind
    language: Language
    default_role: ConsultationRole


@dataclass(frozen=True)
class KindGroup:
    kind: OrganisationKind
    organisations: list[OrganisationChoice]


@dataclass(frozen=True)
class WizardChoices:
    """The draft versions (newest first), the active organisations by kind, the procedures."""

    versions: list[VersionChoice]
    groups: list[KindGroup]
    procedures: list[Procedure]

    @property
    def organisations(self) -> int:
        return sum(len(group.organisations) for group in self.groups)

    def version(self, version_id: str) -> VersionChoice | None:
        """The version of that id (as the form has it), else the newest one."""
        for version in self.versions:
            if str(version.id) == version_id:
                return version
        return self.versions[0] if self.versions else None


async def wizard_choices(session: AsyncSession) -> WizardChoices:
    listed = await console_views.new_round_choices(session)
    rows = (
        await session.exec(
            select(Organisation)
            .where(col(Organisation.archived_at).is_(None))
            .order_by(col(Organisation.name_en), col(Organisation.key))
        )
    ).all()
    by_kind: dict[OrganisationKind, list[OrganisationChoice]] = {}
    for organisation in rows:
        by_kind.setdefault(organisation.kind, []).append(
            OrganisationChoice(
                key=organisation.key,
                name=organisation.name_en,
                kind=organisation.kind,
                language=organisation.language,
                default_role=default_role(organisation.kind),
            )
        )
    return WizardChoices(
        versions=listed.versions,
        groups=[KindGroup(kind, by_kind[kind]) for kind in OrganisationKind if kind in by_kind],
        procedures=list(all_procedures().values()),
    )


def _local_input(moment: datetime, timezone: str) -> str:
    """A moment as a datetime-local value in `timezone`."""
    return moment.astimezone(working_days.zone(timezone)).strftime("%Y-%m-%dT%H:%M")


def new_form(timezone: str) -> dict[str, Any]:
    """A new round's form: the default procedure, and a deadline that gives it exactly its minimum."""
    form = RoundForm().typed({})
    procedure = all_procedures()[form["procedure"]]
    today = working_days.local_date(utcnow(), timezone)
    day = working_days.add_working_days(JURISDICTION, today, procedure.minimum_working_days)
    # all_sections None: every organisation's "All sections" box is ticked.
    return {**form, "deadline": f"{day.isoformat()}T17:00", "all_sections": None}


def _draft(detail: RoundRead) -> RoundRead:
    if detail.status != RoundStatus.draft:
        raise Conflict(NOT_A_DRAFT)
    return detail


async def draft_form(session: AsyncSession, *, round_id: int, choices: WizardChoices) -> dict[str, Any]:
    """A draft round as the wizard shows it to be edited; 409 once the round is launched."""
    detail = _draft(await rounds.get_round(session, round_id=round_id))
    version = choices.version(str(detail.document_version_id))
    every = [section.number for section in version.sections] if version else []
    policy = detail.reminder_policy
    return {
        "title": detail.title,
        "purpose": detail.purpose,
        "document_version_id": str(detail.document_version_id),
        "matrix_version": str(detail.document_version_id),
        "deadline": _local_input(detail.deadline, detail.timezone),
        "organisations": [task.organisation_key for task in detail.tasks],
        "roles": {task.organisation_key: str(task.role) for task in detail.tasks},
        "all_sections": [
            task.organisation_key for task in detail.tasks if sorted(task.section_numbers) == sorted(every)
        ],
        "sections": [
            f"{task.organisation_key}:{number}" for task in detail.tasks for number in task.section_numbers
        ],
        "procedure": detail.procedure,
        "minimum_period_reason": detail.minimum_period_reason or "",
        "grace_period_hours": str(detail.grace_period_hours),
        "silence_means": str(detail.silence_means),
        "sign_off_code": "required" if detail.sign_off_code_required else "link_only",
        "reminder_days": ", ".join(str(days) for days in policy.working_days_before),
        "reminder_at": policy.at,
        "reminder_text": policy.text,
        "cover_message": detail.cover_message,
        "contact_name": detail.contact_name,
        "contact_email": detail.contact_email or "",
    }


async def draft_of(session: AsyncSession, *, round_id: int) -> RoundRead:
    """The draft round (404 unknown, 409 launched), for the pages that show it."""
    return _draft(await rounds.get_round(session, round_id=round_id))


def period_hint(form: dict[str, Any], timezone: str) -> PlannedPeriod | None:
    """The working days the typed deadline leaves under the chosen procedure, or None when the form does
    not say yet (no deadline, one that is no date, an unknown procedure): its refusal says why."""
    try:
        deadline = parse_local_datetime(str(form.get("deadline") or ""), timezone=timezone)
        return rounds.planned_period(
            deadline=deadline,
            procedure_key=str(form.get("procedure") or ""),
            jurisdiction=JURISDICTION,
            timezone=timezone,
        )
    except (DomainError, ValueError, OverflowError):
        return None


def calendar(timezone: str) -> dict[str, str]:
    """Today (local) and the public holidays on working weekdays ahead, for the page's script to count
    working days as the server does while the coordinator types."""
    today = working_days.local_date(utcnow(), timezone)
    days = (today + timedelta(days=offset) for offset in range(366 * HOLIDAY_YEARS))
    holidays = [
        day.isoformat()
        for day in days
        if day.weekday() < 5 and not working_days.is_working_day(JURISDICTION, day)
    ]
    return {"today": today.isoformat(), "holidays": " ".join(holidays)}


# ------------------------------------------------------------------------------------------ previews


@dataclass(frozen=True)
class InvitationPreview:
    """The invitation one contact gets, as delivered (subject, text, HTML), with an example link."""

    round: RoundRead
    language: Language
    organisation_key: str
    organisation_name: str
    to: str
    subject: str
    text: str
    html: str
    example_link: str
    sender: str
    reply_to: str
    languages: dict[Language, int]
    """How many organisations of the round read each language."""


async def _task_of(
    session: AsyncSession, *, round_id: int, organisation_key: str = "", language: Language | None = None
) -> tuple[ReviewTask, Organisation]:
    """The round's task of that organisation; else the first whose organisation reads `language`, else
    the first of all."""
    rows = (
        await session.exec(
            select(ReviewTask, Organisation)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
            .order_by(col(Organisation.name_en), col(Organisation.key))
        )
    ).all()
    if not rows:
        raise NotFound(f"round {round_id} consults no organisation")
    if organisation_key:
        for task, organisation in rows:
            if organisation.key == organisation_key:
                return task, organisation
        raise NotFound(f"organisation {organisation_key!r} is not consulted in round {round_id}")
    for task, organisation in rows:
        if organisation.language == language:
            return task, organisation
    return rows[0]


def choose_language(value: str) -> Language:
    try:
        return Language(value or Language.en)
    except ValueError:
        raise NotFound(f"there is no {value!r} language: use one of en, sq") from None


async def invitation_preview(
    session: AsyncSession, *, round_id: int, language: str, settings: Settings
) -> InvitationPreview:
    chosen = choose_language(language)
    detail = await rounds.get_round(session, round_id=round_id)
    round_ = await rounds.get_round_row(session, round_id=round_id)
    task, organisation = await _task_of(session, round_id=round_id, language=chosen)
    mail = await invitations.example_invitation(
        session, round_=round_, task=task, organisation=organisation, language=chosen, settings=settings
    )
    example_link = f"{settings.public_base_url.rstrip('/')}/t/{EXAMPLE_TOKEN}"
    rendered = render_email(MessageKind.invitation, chosen, {**mail.context, "link_url": example_link})
    reply_name = detail.contact_name
    reply_address = detail.contact_email or await rounds.coordinator_email(session, round_) or ""
    languages: dict[Language, int] = {}
    for language_of in (
        await session.exec(
            select(Organisation.language)
            .join(ReviewTask, col(ReviewTask.organisation_id) == Organisation.id)
            .where(ReviewTask.round_id == round_id)
        )
    ).all():
        languages[Language(language_of)] = languages.get(Language(language_of), 0) + 1
    return InvitationPreview(
        round=detail,
        language=chosen,
        organisation_key=organisation.key,
        organisation_name=invitations.organisation_name(organisation, chosen),
        to=f"{mail.to_name} <{mail.to_email}>" if mail.to_name else mail.to_email,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        example_link=example_link,
        sender=settings.mail_from,
        reply_to=f"{reply_name} <{reply_address}>" if reply_name and reply_address else reply_address,
        languages=languages,
    )


@dataclass(frozen=True)
class ReviewPreview:
    """The review page of one organisation of the round, as its focal point will read it."""

    round: RoundRead
    organisation: Organisation
    role: ConsultationRole
    deadline: datetime
    timezone: str
    working_days_left: int
    draft_title: str
    preamble_html: str
    sections: list[SectionView]
    organisations: list[tuple[str, str]]
    """(key, name) of every organisation of the round, to preview another."""


async def review_preview(session: AsyncSession, *, round_id: int, organisation_key: str) -> ReviewPreview:
    detail = await rounds.get_round(session, round_id=round_id)
    task, organisation = await _task_of(session, round_id=round_id, organisation_key=organisation_key)
    draft = await documents.draft_view(session, version_id=detail.document_version_id)
    timezone = organisation.timezone or detail.timezone
    return ReviewPreview(
        round=detail,
        organisation=organisation,
        role=task.role,
        deadline=task.deadline,
        timezone=timezone,
        working_days_left=working_days.working_days_left(
            detail.jurisdiction, utcnow(), task.deadline, timezone
        ),
        draft_title=draft.title,
        preamble_html=draft.preamble_html,
        sections=draft.assigned(task.section_ids),
        organisations=sorted(
            ((summary.organisation_key, summary.organisation_name) for summary in detail.tasks),
            key=lambda pair: pair[1],
        ),
    )
