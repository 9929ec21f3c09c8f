"""Helpers for the notification tests: a recording SMTP handler, free ports and realistic emails."""

from __future__ import annotations

import socket
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from notifications import OutgoingEmail, message_id_for, render_email
from notifications.mailbox import MaildirSink

MAIL_FROM = "Sekretariati Teknik <sekretariati@migracioni.gov.example>"
# Real titles carry an en dash; written as an escape so that linters do not take it for a hyphen.
STRATEGY_SQ = "Strategjia Kombëtare për Qeverisjen e Migracionit 2026\u20132030"
STRATEGY_EN = "National Strategy on Migration Governance 2026\u20132030"


class RecordingSink(MaildirSink):
    """The dev sink, plus a count of SMTP sessions and replies the test chooses for chosen recipients."""

    def __init__(self, directory: Path, *, rcpt_replies: dict[str, str] | None = None) -> None:
        super().__init__(directory)
        self.sessions_opened = 0
        self.rcpt_replies = dict(rcpt_replies or {})
        self.data_reply: str | None = None

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions_opened += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)


def unused_port() -> int:
    """A port nothing listens on (bound once to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def invitation_context(**overrides: object) -> dict[str, object]:
    context: dict[str, object] = {
        "round_title": STRATEGY_SQ,
        "organisation_name": "Ministria e Shëndetësisë dhe Mbrojtjes Sociale",
        "contact_name": "Arbën Çela",
        "contact_role": "focal_point",
        "deadline_text": "15 dhjetor 2026, 17:00 (Europe/Tirane)",
        "sections": [
            {"number": "1", "heading": "Qëllimi dhe fusha e zbatimit"},
            {"number": "4", "heading": "Migracioni i punës"},
            {"number": "7", "heading": "Kthimi dhe riintegrimi"},
        ],
        "link_url": "http://testserver/t/ZmFrZS10b2tlbi1mb3ItdGVzdHM",
        "sender_name": "Sekretariati Teknik",
    }
    context.update(overrides)
    return context


def round_closed_context(**overrides: object) -> dict[str, object]:
    context: dict[str, object] = {
        "round_title": STRATEGY_EN,
        "closed_at_text": "16 December 2026, 17:00 (Europe/Tirane)",
        "reason": "deadline",
        "counts": {"organisations": 12, "signed_off": 9, "no_response": 3, "comments": 57},
        "decisions": {"approve": 4, "approve_with_comments": 3, "object": 2},
        "no_response": ["Bashkia Cërrik", "Bashkia Dibër", "Institute of Statistics"],
        "objections": ["Ministry of Finance", "Bank of Albania"],
        "round_url": "http://testserver/console/rounds/7",
    }
    context.update(overrides)
    return context


def invitations(count: int, *, language: str = "sq", prefix: str = "fp") -> list[OutgoingEmail]:
    """One invitation per organisation, each with its own link and a Message-ID derived from it."""
    emails = []
    for number in range(count):
        link_id = f"{prefix}{number:04d}"
        rendered = render_email(
            "invitation",
            language,
            invitation_context(
                link_url=f"http://testserver/t/token-{link_id}", organisation_name=f"Bashkia {number}"
            ),
        )
        emails.append(
            OutgoingEmail.from_rendered(
                rendered,
                to_address=f"{link_id}@bashkia.example",
                to_name="Arbën Çela",
                message_id=message_id_for(f"invitation:{link_id}"),
                headers={"X-Roundtable-Purpose": f"invitation:{link_id}"},
            )
        )
    return emails
