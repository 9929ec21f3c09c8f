"""The closed vocabularies of the domain."""

from enum import StrEnum


class Role(StrEnum):
    coordinator = "coordinator"
    auditor = "auditor"
    admin = "admin"


class OrganisationKind(StrEnum):
    ministry = "ministry"
    agency = "agency"
    independent = "independent"
    municipality = "municipality"
    association = "association"
    civil_society = "civil_society"
    diaspora = "diaspora"
    academia = "academia"
    international = "international"
    other = "other"


class Language(StrEnum):
    sq = "sq"
    en = "en"


class DraftFormat(StrEnum):
    markdown = "markdown"
    docx = "docx"


class RoundStatus(StrEnum):
    draft = "draft"
    open = "open"
    closed = "closed"
    cancelled = "cancelled"


class CloseReason(StrEnum):
    all_signed_off = "all_signed_off"
    deadline = "deadline"  # rounds closed by older versions, which closed at the deadline
    coordinator = "coordinator"  # closed by the coordinator (at or before the deadline), with a reason
    cancelled = "cancelled"


class SilenceMeaning(StrEnum):
    """What an organisation's silence means when the round closes."""

    no_response = "no_response"
    content = "content"  # "a nil return means content"


class TaskStatus(StrEnum):
    pending = "pending"  # created; no invitation delivered yet
    invited = "invited"  # at least one contact has been emailed
    opened = "opened"  # a contact has opened the review page in a browser
    commenting = "commenting"  # comments written, no sign-off yet
    signed_off = "signed_off"
    overdue = "overdue"  # the deadline (and grace period) passed without a sign-off; escalated
    withdrawn = "withdrawn"  # the coordinator took the organisation out of the round
    no_response = "no_response"  # the round closed without a sign-off
    deemed_content = "deemed_content"  # closed without a sign-off in a round where silence means content
    cancelled = "cancelled"  # the round was cancelled


class ContactRole(StrEnum):
    focal_point = "focal_point"
    alternate = "alternate"
    delegate = "delegate"  # a colleague a focal point or alternate handed the task to


class ExtensionRequestStatus(StrEnum):
    pending = "pending"
    granted = "granted"
    refused = "refused"


class CommentKind(StrEnum):
    general = "general"
    editorial = "editorial"
    substantive = "substantive"
    legal = "legal"


class ConsultationRole(StrEnum):
    """What an organisation is in a round: its sign-off counts for clearance, or its opinion is asked."""

    approver = "approver"
    consulted = "consulted"


class CommentWeight(StrEnum):
    """How much a comment weighs: an objection must be resolved before the organisation can agree."""

    objection = "objection"
    proposal = "proposal"
    remark = "remark"


class ResponseKind(StrEnum):
    """What the coordinator made of a comment."""

    accepted = "accepted"
    partially_accepted = "partially_accepted"
    rejected = "rejected"
    noted = "noted"


class ObjectionState(StrEnum):
    open = "open"  # not answered yet, or the answer is not published
    resolved = "resolved"  # answered accepted (or partly accepted) and published
    maintained = "maintained"  # answered rejected or noted and published: the organisation still objects


class CommentStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"


class Decision(StrEnum):
    approve = "approve"
    approve_with_comments = "approve_with_comments"
    object = "object"
    no_opinion = "no_opinion"


class SignOffVerification(StrEnum):
    """How the person who signed off was known to be the link's contact."""

    emailed_code = "emailed_code"  # they entered the code emailed to the contact's address at signing
    link_only = "link_only"  # the round asks for no code: holding the link was enough


class MessageKind(StrEnum):
    invitation = "invitation"
    round_closed = "round_closed"
    reminder = "reminder"  # one a day per person: every task of theirs with a reminder due that day
    escalation = "escalation"  # to an organisation's escalation contact: its task is overdue
    escalation_summary = "escalation_summary"  # to the coordinator: which tasks became overdue
    deadline_extended = "deadline_extended"
    round_cancelled = "round_cancelled"
    extension_requested = "extension_requested"  # to the coordinator
    extension_refused = "extension_refused"  # to the focal point who asked
    handover = "handover"  # to the colleague a task was handed to, with a link of their own
    task_withdrawn = "task_withdrawn"  # to an organisation taken out of a round
    lost_link = "lost_link"  # asked for on the lost-link page: every working link of the person
    feedback = "feedback"  # on publication of the answers: each of the organisation's comments and its answer
    # Asked for on the console's forgot-password page: a single-use link; then the notice of the change.
    password_reset = "password_reset"  # noqa: S105 - a message kind
    password_changed = "password_changed"  # noqa: S105 - a message kind
    sign_off_code = "sign_off_code"  # to the signer's own address: the code that confirms their sign-off


class ReminderStatus(StrEnum):
    sent = "sent"  # included in that day's reminder to the task's contacts
    skipped = "skipped"  # a later reminder of the same deadline was due by the time it could go out


class OutboxStatus(StrEnum):
    pending = "pending"  # to be delivered from due_at on (an attempt may hold it for a lease)
    sent = "sent"  # the mail server accepted it
    failed = "failed"  # refused for good (5xx, malformed address), or given up after retrying
    cancelled = "cancelled"  # no longer worth sending: its link was withdrawn or its round is over


class ActorKind(StrEnum):
    user = "user"  # a signed-in coordinator, auditor or admin
    link = "link"  # a focal point or alternate acting through an emailed link
    system = "system"  # the scheduler and its activities
