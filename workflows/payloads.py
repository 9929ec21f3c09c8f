"""What crosses the Temporal boundary: IDs and small plain results, nothing from the database layer.

Times travel as ISO 8601 strings with their offset: the SDK's default converter does not decode datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundRef:
    """The round an activity works on; `as_of` is the scheduler's clock for time-based decisions."""

    round_id: int
    as_of: str | None = None


@dataclass(frozen=True)
class RoundPlanResult:
    status: str  # draft | open | closed
    deadline: str
    invitations_due: int
    claims_lapse_at: str | None  # invitations claimed by an attempt that may have died are due again then
    close_reason: str | None


@dataclass(frozen=True)
class SendResult:
    sent: int
    refused: int
    retry_later: int
    # The batch was full and nothing was refused for now: more invitations are probably due.
    more_due: bool = False
