"""The port every email goes through: a batch in, one result per email out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from notifications.message import OutgoingEmail

MAX_ERROR_LENGTH = 500


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    email: OutgoingEmail
    ok: bool
    # What went wrong, short enough to store next to the sent-message record; None when ok.
    error: str | None = None
    # True when the same email may succeed later (server busy, unreachable, 4xx); False when it was
    # delivered or can never be (5xx, malformed address).
    retryable: bool = False
    smtp_code: int | None = None
    # True when the message may have reached the server although we have no reply to say so (a timeout
    # or a lost connection after the data went out): the caller must treat it as possibly delivered.
    uncertain: bool = False

    @classmethod
    def delivered(cls, email: OutgoingEmail) -> DeliveryResult:
        return cls(email=email, ok=True)

    @classmethod
    def failed(
        cls,
        email: OutgoingEmail,
        error: str,
        *,
        retryable: bool,
        smtp_code: int | None = None,
        uncertain: bool = False,
    ) -> DeliveryResult:
        return cls(
            email=email,
            ok=False,
            error=error[:MAX_ERROR_LENGTH],
            retryable=retryable,
            smtp_code=smtp_code,
            uncertain=uncertain,
        )


ResultCallback = Callable[[int, DeliveryResult], None]
"""Told each email's result (its index in the batch) as soon as it is known: the caller can record an
accepted message at once instead of after the whole batch."""


class EmailSender(Protocol):
    async def send_many(
        self, emails: Sequence[OutgoingEmail], *, on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        """One result per email, in the same order; per-email failures are reported, never raised."""
        ...

    async def close(self) -> None:
        """Let go of connections; the sender may still be used afterwards and reconnects lazily."""
        ...

    async def send(self, email: OutgoingEmail) -> DeliveryResult:
        [result] = await self.send_many([email])
        return result
