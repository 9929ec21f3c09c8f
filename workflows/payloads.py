"""What crosses the Temporal boundary: IDs and small plain results, nothing from the database layer.

Each activity has an input type of its own. Times travel as ISO 8601 strings with their offset (the SDK's
default converter does not decode datetimes); an activity that decides by the scheduler's clock gets it in
a required `as_of`, so time-skipping tests and replays decide alike.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundRef:
    """The round a scheduler runs for: the workflow's input."""

    round_id: int


@dataclass(frozen=True)
class OpenRoundInput:
    round_id: int


@dataclass(frozen=True)
class OpenRoundResult:
    links: int
    invitations: int


@dataclass(frozen=True)
class PlanRoundInput:
    round_id: int
    as_of: str


@dataclass(frozen=True)
class RoundPlanResult:
    status: str  # draft | open | closed
    deadline: str
    close_reason: str | None
    mail_due: int
    next_mail_in: float | None  # seconds until the next email not yet due becomes due
    acts_now: bool
    finished: bool  # closed or cancelled, with nothing left to deliver
    reminders_due: int = 0  # tasks with a reminder to decide now
    escalations_due: int = 0  # tasks past their deadline and grace period
    next_event_at: str | None = None  # the next reminder or escalation moment (the scheduler's clock)
    next_reminder_at: str | None = None  # the next reminder moment alone


@dataclass(frozen=True)
class RemindersResult:
    added: int  # messages added, the round's to deliver
    plan: RoundPlanResult  # the round's plan after the decision


@dataclass(frozen=True)
class CloseRoundInput:
    round_id: int
    as_of: str


@dataclass(frozen=True)
class SendRemindersInput:
    round_id: int
    as_of: str


@dataclass(frozen=True)
class EscalateInput:
    round_id: int
    as_of: str


@dataclass(frozen=True)
class DeliverMailInput:
    round_id: int | None  # None: email that belongs to no round


@dataclass(frozen=True)
class DeliveryResult:
    sent: int
    refused: int
    retry_later: int
    cancelled: int
    more_due: bool  # the batch was full and the server accepting: more is probably due at once


@dataclass(frozen=True)
class ReconcileInput:
    """The reconciler reads everything else from the database."""

    as_of: str


@dataclass(frozen=True)
class ReconcileResult:
    schedulers: int  # rounds whose scheduler was found running or started
    woken: int  # of them, rounds with something due now that were told to look
    failed: int  # rounds that could not be seen to this time (logged; tried again next period)
    mail_sent: int  # email of no round delivered
