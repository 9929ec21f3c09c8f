"""The forms the pages post, one model each, and how each becomes the input of its use case.

Every field is plain text with a default (FormModel), so that a form with a field missing or mangled is
read all the same, and refused with a message on its page and what was typed. Turning it into the use
case's input (`comment()`, `round_create()`, `upload()`, ...) is where it is checked: those raise
InvalidInput, or the ValidationError of the input model, which the route's class shows on the page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import UploadFile
from pydantic import ValidationError

from models.contacts import check_email
from models.extensions import ExtensionCreate, ExtensionGrant, ExtensionRefusal
from models.reviews import CommentCreate, CommentUpdate, HandoverCreate, SignOffCreate
from models.rounds import ContactReplace, ReasonGiven, ReminderPolicy, RoundCreate, TaskAdd
from services.errors import InvalidInput
from services.formatting import parse_local_datetime
from services.web.deps import FormModel, parse_id
from services.web.uploads import Uploaded, read_upload

NUL_REFUSED = "the text contains a NUL character, which cannot be stored; remove it and try again"


def _refuse_nul(*values: str) -> None:
    if any("\x00" in value for value in values):
        raise InvalidInput(NUL_REFUSED)


class CsrfForm(FormModel):
    """A form that is only its button: launching, signing out, withdrawing a comment, clearing the
    mailbox."""


# ------------------------------------------------------------------------------- the review page

REVIEW_LABELS = {
    "section_id": "Section",
    "paragraph": "Paragraph",
    "kind": "Type",
    "weight": "Weight",
    "body": "Comment",
    "proposed_wording": "Proposed wording",
    "decision": "Decision",
    "statement": "Statement",
    "signer_name": "Your full name",
    "signer_title": "Your title or position",
    "wanted_deadline": "New deadline wanted",
    "reason": "Why your organisation needs more time",
    "colleague_name": "Your colleague's name",
    "colleague_email": "Your colleague's email",
    "note": "A note for your colleague",
}
FORM_INCOMPLETE = (
    "the form is incomplete or comes from an old copy of this page; check it below and submit it again"
)
REVIEW_MESSAGES = {"submission_id": FORM_INCOMPLETE, "body.string_too_short": "the comment is empty"}


class ReviewForm(FormModel):
    labels = REVIEW_LABELS
    messages = REVIEW_MESSAGES


class CommentForm(ReviewForm):
    """A new comment on a section. Its submission_id makes a repeated submission (a double click, a
    resent form) the comment recorded the first time."""

    submission_id: str = ""
    section_id: str = ""
    body: str = ""
    kind: str = "general"
    weight: str = "remark"
    paragraph: str = ""
    proposed_wording: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "section_id": parse_id(self.section_id),
            "submission_id": self.submission_id,
            "body": self.body,
            "kind": self.kind,
            "weight": self.weight,
            "paragraph": self.paragraph,
            "proposed_wording": self.proposed_wording,
        }

    def comment(self) -> CommentCreate:
        _refuse_nul(self.submission_id, self.body, self.kind, self.weight, self.paragraph, self.proposed_wording)
        section = parse_id(self.section_id)
        if section is None:
            raise InvalidInput("choose the section your comment is about")
        return CommentCreate.model_validate(
            {
                "section_id": section,
                "body": self.body,
                "kind": self.kind,
                "weight": self.weight,
                "paragraph": self.paragraph,
                "proposed_wording": self.proposed_wording,
                "submission_id": self.submission_id,
            }
        )


class CommentEditForm(ReviewForm):
    """A comment changed: the comment is the one in the route's path."""

    body: str = ""
    kind: str = "general"
    weight: str = "remark"
    paragraph: str = ""
    proposed_wording: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "editing": parse_id(path.get("comment_id", "")),
            "body": self.body,
            "kind": self.kind,
            "weight": self.weight,
            "paragraph": self.paragraph,
            "proposed_wording": self.proposed_wording,
        }

    def comment(self) -> CommentUpdate:
        _refuse_nul(self.body, self.kind, self.weight, self.paragraph, self.proposed_wording)
        return CommentUpdate.model_validate(
            {
                "body": self.body,
                "kind": self.kind,
                "weight": self.weight,
                "paragraph": self.paragraph,
                "proposed_wording": self.proposed_wording,
            }
        )


class SignOffForm(ReviewForm):
    submission_id: str = ""
    decision: str = ""
    statement: str = ""
    signer_name: str = ""
    signer_title: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "decision": self.decision,
            "statement": self.statement,
            "signer_name": self.signer_name,
            "signer_title": self.signer_title,
        }

    def sign_off(self) -> SignOffCreate:
        _refuse_nul(self.submission_id, self.decision, self.statement, self.signer_name, self.signer_title)
        return SignOffCreate.model_validate(
            {
                "decision": self.decision,
                "statement": self.statement,
                "signer_name": self.signer_name,
                "signer_title": self.signer_title,
                "submission_id": self.submission_id,
            }
        )


class ExtensionAskForm(ReviewForm):
    """A focal point's request for more time."""

    submission_id: str = ""
    wanted_deadline: str = ""
    reason: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "wanted_deadline": self.wanted_deadline,
            "reason": self.reason,
        }

    def checked_submission_id(self) -> str:
        """The form's nonce, once the form is known to be whole."""
        _refuse_nul(self.submission_id, self.wanted_deadline, self.reason)
        if not 8 <= len(self.submission_id) <= 64:
            raise InvalidInput(FORM_INCOMPLETE)
        return self.submission_id


class HandoverForm(ReviewForm):
    """The colleague a focal point hands the task to."""

    colleague_name: str = ""
    colleague_email: str = ""
    note: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "colleague_name": self.colleague_name,
            "colleague_email": self.colleague_email,
            "note": self.note,
        }

    def handover(self) -> HandoverCreate:
        _refuse_nul(self.colleague_name, self.colleague_email, self.note)
        try:
            return HandoverCreate.model_validate(
                {"name": self.colleague_name, "email": self.colleague_email, "note": self.note or None}
            )
        except ValidationError as exc:
            field = str(exc.errors()[0]["loc"][0]) if exc.errors() else ""
            problem = exc.errors()[0]["msg"] if exc.errors() else "invalid"
            label = {"name": "Your colleague's name", "email": "Your colleague's email", "note": "The note"}
            raise InvalidInput(f"{label.get(field, field)}: {problem}") from None


# ------------------------------------------------------------------------------- the lost-link page

NOT_AN_ADDRESS = "Enter the email address the invitation was sent to, e.g. name@ministry.gov.al."


class LostLinkForm(FormModel):
    email: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"email": self.email[:320]}

    def address(self) -> str:
        """The address typed, as checked as the registry checks it; InvalidInput when it is not one."""
        if "\x00" in self.email or len(self.email) > 400:
            raise InvalidInput(NOT_AN_ADDRESS)
        try:
            return check_email(self.email)
        except ValueError:
            raise InvalidInput(NOT_AN_ADDRESS) from None


# ---------------------------------------------------------------------------------------- the console


class SignInForm(FormModel):
    email: str = ""
    password: str = ""
    next: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"email": self.email, "next": self.next}  # never the password


class RoundForm(FormModel):
    """A new round. It names no labels: its messages name the fields as the API does (`title: ...`)."""

    title: str = ""
    document_version_id: str = ""
    deadline: str = ""
    organisations: str = "all"
    organisation_kinds: list[str] = []
    organisation_keys: str = ""
    sections: list[str] = []
    procedure: str = "interministerial"
    minimum_period_reason: str = ""
    grace_period_hours: str = "0"
    silence_means: str = "no_response"
    reminder_days: str = "7, 2, 1"
    reminder_at: str = "09:00"
    reminder_text: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "title": self.title,
            "document_version_id": self.document_version_id,
            "deadline": self.deadline,
            "organisations": self.organisations,
            "organisation_kinds": self.organisation_kinds,
            "organisation_keys": self.organisation_keys,
            "sections": self.sections,
            "procedure": self.procedure,
            "minimum_period_reason": self.minimum_period_reason,
            "grace_period_hours": self.grace_period_hours,
            "silence_means": self.silence_means,
            "reminder_days": self.reminder_days,
            "reminder_at": self.reminder_at,
            "reminder_text": self.reminder_text,
        }

    def _reminder_policy(self) -> ReminderPolicy:
        days = []
        for part in re.split(r"[\s,;]+", self.reminder_days.strip()):
            if not part:
                continue
            if not part.isdigit():
                raise InvalidInput(
                    "Reminders: give working days before the deadline as numbers, e.g. 7, 2, 1 (or none)."
                )
            days.append(int(part))
        return ReminderPolicy(working_days_before=days, at=self.reminder_at.strip(), text=self.reminder_text)

    def round_create(self, timezone: str) -> RoundCreate:
        """The round as the use case takes it; InvalidInput or ValidationError says what is wrong."""
        version_id = parse_id(self.document_version_id)
        if version_id is None:
            raise InvalidInput("Choose the draft version the round consults on.")
        mode = self.organisations
        keys: list[str] | None = None
        kinds: list[str] | None = None
        if mode == "kinds":
            kinds = self.organisation_kinds
            if not kinds:
                raise InvalidInput(
                    "Tick at least one kind of organisation, or choose another way to pick them."
                )
        elif mode == "keys":
            keys = [key for key in re.split(r"[\s,;]+", self.organisation_keys) if key]
            if not keys:
                raise InvalidInput("List at least one organisation key (one per line).")
        elif mode != "all":
            raise InvalidInput("Choose which organisations are consulted.")
        # Section boxes of every version are on the form; only those of the chosen version count.
        prefix = f"{version_id}:"
        numbers = [value.removeprefix(prefix) for value in self.sections if value.startswith(prefix)]
        if not numbers:
            raise InvalidInput("Tick at least one section of the chosen draft to consult on.")
        return RoundCreate(
            title=self.title.strip(),  # RoundCreate checks the length before it strips
            document_version_id=version_id,
            deadline=parse_local_datetime(self.deadline, timezone=timezone),
            organisation_keys=keys,
            organisation_kinds=kinds,  # type: ignore[arg-type]  # pydantic checks the kinds
            section_numbers=numbers,
            procedure=self.procedure,
            timezone=timezone,
            minimum_period_reason=self.minimum_period_reason.strip() or None,
            grace_period_hours=self.grace_period_hours.strip() or "0",  # type: ignore[arg-type]
            silence_means=self.silence_means,  # type: ignore[arg-type]
            reminder_policy=self._reminder_policy(),
        )


class RegistryForm(FormModel):
    file: UploadFile | None = None

    async def upload(self) -> Uploaded:
        return await read_upload(self.file, missing="Choose the CSV file to import.")


class DraftForm(FormModel):
    title: str = ""
    file: UploadFile | None = None

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"title": self.title}

    async def upload(self) -> Uploaded:
        return await read_upload(self.file, missing="Choose the draft file to upload (.md or .docx).")


class RevisionForm(FormModel):
    file: UploadFile | None = None

    async def upload(self) -> Uploaded:
        return await read_upload(self.file, missing="Choose the revised draft file to upload (.md or .docx).")


# ------------------------------------------------------------------- the console: a round under way


class ReasonForm(FormModel):
    """A command on a round or a task that says why: close, cancel, withdraw, reopen."""

    reason: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"reason": self.reason, "action": path.get("action", "")}

    def reason_given(self) -> ReasonGiven:
        _refuse_nul(self.reason)
        return ReasonGiven(reason=self.reason)


class ExtendForm(FormModel):
    deadline: str = ""
    reason: str = ""
    organisation_keys: list[str] = []

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"deadline": self.deadline, "reason": self.reason, "organisation_keys": self.organisation_keys}

    def extension(self, timezone: str) -> ExtensionCreate:
        _refuse_nul(self.deadline, self.reason, *self.organisation_keys)
        return ExtensionCreate(
            deadline=parse_local_datetime(self.deadline, timezone=timezone),
            reason=self.reason,
            organisation_keys=self.organisation_keys or None,
        )


class AddOrganisationForm(FormModel):
    organisation_key: str = ""
    deadline: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"organisation_key": self.organisation_key, "deadline": self.deadline}

    def task_add(self, timezone: str) -> TaskAdd:
        _refuse_nul(self.organisation_key, self.deadline)
        if not self.organisation_key.strip():
            raise InvalidInput("Choose the organisation to add.")
        deadline = parse_local_datetime(self.deadline, timezone=timezone) if self.deadline.strip() else None
        return TaskAdd(organisation_key=self.organisation_key.strip(), deadline=deadline)


class ContactForm(FormModel):
    role: str = "focal_point"
    email: str = ""
    name: str = ""
    reason: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"role": self.role, "email": self.email, "name": self.name, "reason": self.reason}

    def replacement(self) -> ContactReplace:
        _refuse_nul(self.role, self.email, self.name, self.reason)
        return ContactReplace.model_validate(
            {"role": self.role, "email": self.email, "name": self.name, "reason": self.reason}
        )


class GrantForm(FormModel):
    deadline: str = ""
    note: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"deadline": self.deadline, "note": self.note}

    def grant(self, timezone: str) -> ExtensionGrant:
        _refuse_nul(self.deadline, self.note)
        deadline = parse_local_datetime(self.deadline, timezone=timezone) if self.deadline.strip() else None
        return ExtensionGrant(deadline=deadline, note=self.note.strip() or None)


class RefuseForm(FormModel):
    note: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"note": self.note}

    def refusal(self) -> ExtensionRefusal:
        _refuse_nul(self.note)
        return ExtensionRefusal(note=self.note)
