"""The forms the pages post, one model each, and how each becomes the input of its use case.

Every field is plain text with a default (FormModel), so that a form with a field missing or mangled is
read all the same, and refused with a message on its page and what was typed. Turning it into the use
case's input (`comment()`, `round_create()`, `upload()`, ...) is where it is checked: those raise
InvalidInput, or the ValidationError of the input model, which the route's class shows on the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from fastapi import UploadFile
from pydantic import ValidationError

from models.contacts import check_email
from models.extensions import ExtensionCreate, ExtensionGrant, ExtensionRefusal
from models.organisations import OrganisationUpdate
from models.reviews import CommentCreate, CommentUpdate, HandoverCreate, SignOffCreate
from models.rounds import ContactReplace, ReasonGiven, ReminderPolicy, RoundCreate, RoundUpdate, TaskAdd
from models.users import ApiTokenCreate
from services.errors import InvalidInput
from services.formatting import parse_local_datetime
from services.web.deps import FormModel, parse_id
from services.web.i18n import N_
from services.web.uploads import Uploaded, read_upload

NUL_REFUSED = N_("the text contains a NUL character, which cannot be stored; remove it and try again")


def _refuse_nul(*values: str) -> None:
    if any("\x00" in value for value in values):
        raise InvalidInput(NUL_REFUSED)


class CsrfForm(FormModel):
    """A form that is only its button: launching, signing out, withdrawing a comment, clearing the
    mailbox."""


# ------------------------------------------------------------------------------- the review page

REVIEW_LABELS = {
    "section_id": N_("Section"),
    "paragraph": N_("Paragraph"),
    "kind": N_("Type"),
    "weight": N_("Weight"),
    "body": N_("Comment"),
    "proposed_wording": N_("Proposed wording"),
    "decision": N_("Decision"),
    "statement": N_("Statement"),
    "signer_name": N_("Your full name"),
    "signer_title": N_("Your title or position"),
    "wanted_deadline": N_("New deadline wanted"),
    "reason": N_("Why your organisation needs more time"),
    "colleague_name": N_("Your colleague's name"),
    "colleague_email": N_("Your colleague's email"),
    "note": N_("A note for your colleague"),
}
FORM_INCOMPLETE = N_(
    "the form is incomplete or comes from an old copy of this page; check it below and submit it again"
)
REVIEW_MESSAGES = {"submission_id": FORM_INCOMPLETE, "body.string_too_short": N_("the comment is empty")}


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
        _refuse_nul(
            self.submission_id, self.body, self.kind, self.weight, self.paragraph, self.proposed_wording
        )
        section = parse_id(self.section_id)
        if section is None:
            raise InvalidInput(N_("choose the section your comment is about"))
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


NOT_AUTHORISED = N_(
    "tick the box to confirm that you are authorised to sign off for your organisation; nothing was recorded"
)


class SignOffForm(ReviewForm):
    """The sign-off; `authorised` is the box the signer ticks to say they may sign for the organisation
    (a browser insists on it, but a form posted without it is refused all the same)."""

    submission_id: str = ""
    decision: str = ""
    statement: str = ""
    signer_name: str = ""
    signer_title: str = ""
    authorised: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "decision": self.decision,
            "statement": self.statement,
            "signer_name": self.signer_name,
            "signer_title": self.signer_title,
            "authorised": bool(self.authorised),
        }

    def sign_off(self) -> SignOffCreate:
        _refuse_nul(
            self.submission_id,
            self.decision,
            self.statement,
            self.signer_name,
            self.signer_title,
            self.authorised,
        )
        if not self.authorised:
            raise InvalidInput(NOT_AUTHORISED, error="not_authorised")
        return SignOffCreate.model_validate(
            {
                "decision": self.decision,
                "statement": self.statement,
                "signer_name": self.signer_name,
                "signer_title": self.signer_title,
                "submission_id": self.submission_id,
                "authorised": True,
            }
        )


class SignOffCodeForm(ReviewForm):
    """The code emailed to the signer, confirming the sign-off that waits for it; `submission_id` is that
    sign-off form's, so a confirmation sent twice gets the receipt."""

    code: str = ""
    submission_id: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        # The code is not put back: a wrong one is no use to see again.
        return {"entering_code": True}

    def checked_code(self) -> str:
        _refuse_nul(self.code, self.submission_id)
        return self.code


class SignOffNewCodeForm(ReviewForm):
    """Asking for another code: only its button; refused, it is answered where the code is entered."""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"entering_code": True}


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

NOT_AN_ADDRESS = N_("Enter the email address the invitation was sent to, e.g. name@ministry.gov.al.")


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


ROUND_NO_VERSION = N_("Choose the draft version the round consults on.")
ROUND_NO_ORGANISATIONS = N_("Tick at least one organisation to consult.")
ROUND_NO_SECTIONS = N_(
    "Each organisation ticked reviews something: tick “All sections” or at least one section for these:"
)
ROUND_VERSION_CHANGED = N_(
    "You chose another draft version: its sections are shown now. Choose again which sections each "
    "organisation reviews."
)
ROUND_BAD_REMINDERS = N_(
    "Reminders: give working days before the deadline as numbers, e.g. 7, 2, 1 (or none)."
)
UPDATE = "update"
"""The wizard's other button: show the form again with the chosen version's sections and the working
days counted, saving nothing (what a browser without JavaScript needs to see them)."""


class RoundForm(FormModel):
    """The new-round wizard, and the same wizard editing a draft. Who is consulted is the organisations
    ticked (`organisations`: their keys); each one's role is a select (`role`: "key:role"), and what
    it reviews is "All sections" (`all_sections`: keys) or the sections ticked (`sections`:
    "key:number"), sections of the version the matrix was shown for (`matrix_version`)."""

    title: str = ""
    purpose: str = ""
    document_version_id: str = ""
    matrix_version: str = ""
    deadline: str = ""
    organisations: list[str] = []
    role: list[str] = []
    all_sections: list[str] = []
    sections: list[str] = []
    procedure: str = "interministerial"
    minimum_period_reason: str = ""
    grace_period_hours: str = "0"
    silence_means: str = "no_response"
    sign_off_code: str = "required"
    """"required": signing off asks for the code emailed to the signer; "link_only": the link signs."""
    reminder_days: str = "7, 2, 1"
    reminder_at: str = "09:00"
    reminder_text: str = ""
    cover_message: str = ""
    contact_name: str = ""
    contact_email: str = ""
    action: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        roles: dict[str, str] = {}
        for value in self.role:
            key, _, role = value.partition(":")
            roles[key] = role
        return {
            "title": self.title,
            "purpose": self.purpose,
            "document_version_id": self.document_version_id,
            "matrix_version": self.matrix_version,
            "deadline": self.deadline,
            "organisations": list(self.organisations),
            "roles": roles,
            "all_sections": list(self.all_sections),
            "sections": list(self.sections),
            "procedure": self.procedure,
            "minimum_period_reason": self.minimum_period_reason,
            "grace_period_hours": self.grace_period_hours,
            "silence_means": self.silence_means,
            "sign_off_code": self.sign_off_code,
            "reminder_days": self.reminder_days,
            "reminder_at": self.reminder_at,
            "reminder_text": self.reminder_text,
            "cover_message": self.cover_message,
            "contact_name": self.contact_name,
            "contact_email": self.contact_email,
        }

    @property
    def updating(self) -> bool:
        return self.action == UPDATE

    def _reminder_policy(self) -> ReminderPolicy:
        days = []
        for part in re.split(r"[\s,;]+", self.reminder_days.strip()):
            if not part:
                continue
            if not part.isascii() or not part.isdigit():
                raise InvalidInput(ROUND_BAD_REMINDERS)
            days.append(int(part))
        return ReminderPolicy(working_days_before=days, at=self.reminder_at.strip(), text=self.reminder_text)

    def _who_reviews_what(self, version_id: int) -> dict[str, Any]:
        """organisation_keys, roles and assignments (for those not reviewing every section)."""
        keys = list(dict.fromkeys(key.strip() for key in self.organisations if key.strip()))
        if not keys:
            raise InvalidInput(ROUND_NO_ORGANISATIONS)
        roles: dict[str, str] = {}
        for value in self.role:
            key, _, role = value.partition(":")
            if key in keys:
                roles[key] = role
        chosen: dict[str, list[str]] = {}
        for value in self.sections:
            key, _, number = value.partition(":")
            chosen.setdefault(key, []).append(number)
        everything = set(self.all_sections)
        assignments = {key: chosen.get(key, []) for key in keys if key not in everything}
        empty = [key for key, numbers in assignments.items() if not numbers]
        if empty:
            raise InvalidInput(ROUND_NO_SECTIONS, problems=empty)
        # The section boxes were those of the version shown; numbers of another version could match
        # sections that are not the ones the coordinator meant.
        if assignments and parse_id(self.matrix_version) != version_id:
            raise InvalidInput(ROUND_VERSION_CHANGED)
        return {"organisation_keys": keys, "roles": roles, "assignments": assignments or None}

    def _fields(self, timezone: str) -> dict[str, Any]:
        version_id = parse_id(self.document_version_id)
        if version_id is None:
            raise InvalidInput(ROUND_NO_VERSION)
        _refuse_nul(
            self.title,
            self.purpose,
            self.cover_message,
            self.contact_name,
            self.reminder_text,
            self.minimum_period_reason,
        )
        return {
            "title": self.title.strip(),  # the input model checks the length before it strips
            "purpose": self.purpose,
            "document_version_id": version_id,
            "deadline": parse_local_datetime(self.deadline, timezone=timezone),
            **self._who_reviews_what(version_id),
            "procedure": self.procedure,
            "minimum_period_reason": self.minimum_period_reason.strip() or None,
            "grace_period_hours": self.grace_period_hours.strip() or "0",
            "silence_means": self.silence_means,
            # Anything but an explicit "link only" keeps the code: the safer reading of a mangled form.
            "sign_off_code_required": self.sign_off_code != "link_only",
            "reminder_policy": self._reminder_policy(),
            "cover_message": self.cover_message,
            "contact_name": self.contact_name,
            "contact_email": self.contact_email.strip() or None,
        }

    def round_create(self, timezone: str) -> RoundCreate:
        """The round as the use case takes it; InvalidInput or ValidationError says what is wrong."""
        return RoundCreate.model_validate({**self._fields(timezone), "timezone": timezone})

    def round_update(self, timezone: str) -> RoundUpdate:
        """The whole draft as the wizard shows it: every field given, so the draft becomes what the form
        says (section_numbers null: those on "All sections" review every section of the version)."""
        return RoundUpdate.model_validate({**self._fields(timezone), "section_numbers": None})


class RegistryForm(FormModel):
    """A registry file to preview: nothing is saved until the preview is confirmed."""

    file: UploadFile | None = None

    async def upload(self) -> Uploaded:
        return await read_upload(self.file, missing=N_("Choose the CSV or XLSX file to import."))


REGISTRY_CHUNK = 700_000
"""Characters of base64 per hidden field of a preview: each stays under the 1 MiB a form field may be."""
PREVIEW_DAMAGED = N_(
    "The preview's copy of the file did not come back whole: upload the file again to see a new preview."
)


class RegistryConfirmForm(FormModel):
    """A preview confirmed: the file it was made of (base64, in hidden fields), its SHA-256, the digest of
    what it showed, and whether the contacts of open tasks change with the registry."""

    filename: str = ""
    sha256: str = ""
    plan: str = ""
    content: list[str] = []
    change_open_tasks: str = ""

    @staticmethod
    def hidden(content: bytes) -> list[str]:
        """The file as the preview's hidden fields carry it."""
        encoded = base64.b64encode(content).decode("ascii")
        return [encoded[start : start + REGISTRY_CHUNK] for start in range(0, len(encoded), REGISTRY_CHUNK)]

    def upload(self, limit: int) -> Uploaded:
        """The file the preview was made of; InvalidInput unless it is whole and the one it was."""
        if sum(len(chunk) for chunk in self.content) > 4 * (limit // 3 + 1):
            raise InvalidInput(PREVIEW_DAMAGED)
        try:
            content = base64.b64decode("".join(self.content).encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise InvalidInput(PREVIEW_DAMAGED) from None
        if not content or hashlib.sha256(content).hexdigest() != self.sha256.strip().lower():
            raise InvalidInput(PREVIEW_DAMAGED)
        return Uploaded(filename=self.filename[:300], content=content)

    def changes_open_tasks(self) -> bool:
        return self.change_open_tasks == "yes"


CONTACT_LABELS = {
    "focal_point_name": N_("Focal point's name"),
    "focal_point_email": N_("Focal point's email"),
    "alternate_name": N_("Alternate's name"),
    "alternate_email": N_("Alternate's email"),
    "escalation_email": N_("Escalation email"),
    "language": N_("Language"),
}


class OrganisationContactsForm(FormModel):
    """An organisation's contacts in the registry; an address left empty (but the focal point's) is
    removed."""

    labels = CONTACT_LABELS

    focal_point_name: str = ""
    focal_point_email: str = ""
    alternate_name: str = ""
    alternate_email: str = ""
    escalation_email: str = ""
    language: str = ""
    change_open_tasks: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {
            "focal_point_name": self.focal_point_name,
            "focal_point_email": self.focal_point_email,
            "alternate_name": self.alternate_name,
            "alternate_email": self.alternate_email,
            "escalation_email": self.escalation_email,
            "language": self.language,
            "change_open_tasks": self.change_open_tasks,
        }

    def contacts(self) -> OrganisationUpdate:
        values = self.typed({})
        del values["change_open_tasks"]
        _refuse_nul(*values.values())
        if not self.focal_point_email.strip():
            raise InvalidInput(N_("Every organisation needs its focal point's email."))
        return OrganisationUpdate.model_validate(
            {name: value.strip() or None for name, value in values.items()}
        )

    def changes_open_tasks(self) -> bool:
        return self.change_open_tasks == "yes"


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


# ------------------------------------------------------------------------- one's account, passwords

TOKEN_LABELS = {"label": N_("What the token is for"), "lifetime_days": N_("Days until it expires")}
LIFETIME_NOT_A_NUMBER = N_("Days until it expires: give a whole number of days, or leave it empty.")


class IssueTokenForm(FormModel):
    labels = TOKEN_LABELS
    label: str = ""
    lifetime_days: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"label": self.label[:200], "lifetime_days": self.lifetime_days[:10]}

    def token(self) -> ApiTokenCreate:
        _refuse_nul(self.label)
        days = self.lifetime_days.strip()
        if days and parse_id(days) is None:
            raise InvalidInput(LIFETIME_NOT_A_NUMBER)
        # A ValidationError is shown with the labels above (the route class does it).
        return ApiTokenCreate(label=self.label.strip(), lifetime_days=int(days) if days else None)


NOT_AN_ACCOUNT_ADDRESS = N_("Enter the email address you sign in with, e.g. name@ministry.gov.al.")


class ForgotPasswordForm(FormModel):
    email: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {"email": self.email[:320]}

    def address(self) -> str:
        if "\x00" in self.email or len(self.email) > 400:
            raise InvalidInput(NOT_AN_ACCOUNT_ADDRESS)
        try:
            return check_email(self.email)
        except ValueError:
            raise InvalidInput(NOT_AN_ACCOUNT_ADDRESS) from None


class ResetPasswordForm(FormModel):
    password: str = ""
    password_again: str = ""

    def typed(self, path: Mapping[str, str]) -> dict[str, Any]:
        return {}  # never a password
