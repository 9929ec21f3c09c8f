"""What crosses the Temporal boundary: IDs and small plain results, nothing from the database layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RoundRef:
    """The round an activity works on; `as_of` is the scheduler's clock for time-based decisions."""

    round_id: int
    as_of: datetime | None = None


@dataclass(frozen=True)
class RoundPlanResult:
    status: str  # draft | open | closed
    deadline: datetime
    invitations_due: int
    open_tasks: int
    close_reason: str | None


@dataclass(frozen=True)
class SendResult:
    sent: int
    refused: int
    retry_later: int
