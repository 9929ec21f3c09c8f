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


class CloseReason(StrEnum):
    all_signed_off = "all_signed_off"
    deadline = "deadline"


class TaskStatus(StrEnum):
    pending = "pending"  # created; no invitation delivered yet
    invited = "invited"  # at least one contact has been emailed
    signed_off = "signed_off"
    no_response = "no_response"  # the round closed without a sign-off


class ContactRole(StrEnum):
    focal_point = "focal_point"
    alternate = "alternate"


class CommentKind(StrEnum):
    general = "general"
    editorial = "editorial"
    substantive = "substantive"
    legal = "legal"


class CommentStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"


class Decision(StrEnum):
    approve = "approve"
    approve_with_comments = "approve_with_comments"
    object = "object"
    no_opinion = "no_opinion"


class MessageKind(StrEnum):
    invitation = "invitation"
    round_closed = "round_closed"


class OutboxStatus(StrEnum):
    pending = "pending"  # to be delivered from due_at on (an attempt may hold it for a lease)
    sent = "sent"  # the mail server accepted it
    failed = "failed"  # refused for good (5xx, malformed address), or given up after retrying
    cancelled = "cancelled"  # no longer worth sending: its link was withdrawn or its round is over


class ActorKind(StrEnum):
    user = "user"  # a signed-in coordinator, auditor or admin
    link = "link"  # a focal point or alternate acting through an emailed link
    system = "system"  # the scheduler and its activities
