"""An EmailSender that keeps what it is given, for tests of the layers above that need no SMTP server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from notifications.message import OutgoingEmail
from notifications.sending import DeliveryResult, EmailSender


class MemorySender(EmailSender):
    def __init__(self, failures: Mapping[str, bool] | None = None) -> None:
        """failures maps a recipient address to whether its failure is retryable."""
        self.sent: list[OutgoingEmail] = []
        self.failures = dict(failures or {})
        self.closed = False

    async def send_many(self, emails: Sequence[OutgoingEmail]) -> list[DeliveryResult]:
        results = []
        for email in emails:
            retryable = self.failures.get(email.to_address)
            if retryable is None:
                self.sent.append(email)
                results.append(DeliveryResult.delivered(email))
            else:
                reply = "451 4.3.0 try again later" if retryable else "550 5.1.1 no such user"
                results.append(
                    DeliveryResult.failed(email, reply, retryable=retryable, smtp_code=int(reply[:3]))
                )
        return results

    async def close(self) -> None:
        self.closed = True

    def to(self, address: str) -> list[OutgoingEmail]:
        return [email for email in self.sent if email.to_address == address]
