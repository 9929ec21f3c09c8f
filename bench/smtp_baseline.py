"""The SMTP limit the email benchmarks compare with: a bare script that sends N messages of an
invitation's size with aiosmtplib over 8 reused connections, and nothing else (no database, no scheduler).

The message is a real invitation, rendered and serialized by the product's own code once, so its size and
shape match what the worker sends; each copy gets its own Message-ID so the sink can tell them apart.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from aiosmtplib import SMTP

from bench.common import smtp_sink, workdir
from notifications.message import OutgoingEmail, serialize_message
from notifications.rendering import render_email
from services.formatting import when_text

CONNECTIONS = 8
MAIL_FROM = "Sekretariati Teknik <sekretariati@migracioni.gov.example>"
ENVELOPE_FROM = "sekretariati@migracioni.gov.example"
_PLACEHOLDER_ID = "<invitation.00000000000000000000000000000000@bench.example>"


def sample_invitation(language: str = "sq") -> bytes:
    """One invitation as the worker would put it on the wire (Albanian, all sections, a review link)."""
    rendered = render_email(
        "invitation",
        language,
        {
            "round_title": "Migration strategy",
            "organisation_name": "Ministria e Brendshme",
            "contact_name": "Arta Hoxha",
            "contact_role": "focal_point",
            "deadline_text": when_text(
                datetime.now(UTC) + timedelta(days=14), timezone="Europe/Tirane", language=language
            ),
            "sections": [{"number": str(n), "heading": f"Seksioni {n} i strategjisë"} for n in range(1, 9)],
            "link_url": "https://roundtable.gov.example/t/" + "A" * 43,
            "sender_name": "Sekretariati Teknik",
        },
    )
    email = OutgoingEmail.from_rendered(
        rendered,
        to_address="migration.focal@mb.gov.example",
        to_name="Arta Hoxha",
        message_id=_PLACEHOLDER_ID,
    )
    return serialize_message(email, MAIL_FROM)


def copies(message: bytes, count: int) -> list[bytes]:
    placeholder = _PLACEHOLDER_ID.encode()
    return [
        message.replace(placeholder, f"<invitation.{number:032d}@bench.example>".encode())
        for number in range(count)
    ]


async def blast(port: int, messages: list[bytes], *, connections: int = CONNECTIONS) -> float:
    """Send every message over `connections` reused connections; returns the wall time it started
    (connecting included), for comparison with the sink's time of the last message."""
    started = time.time()
    pending = list(reversed(messages))

    async def drain(number: int) -> None:
        client = SMTP(hostname="127.0.0.1", port=port, timeout=30)
        await client.connect()
        try:
            while pending:
                content = pending.pop()
                await client.sendmail(
                    ENVELOPE_FROM, [f"contact{number}@bench.example"], content, mail_options=["BODY=8BITMIME"]
                )
        finally:
            await client.quit()

    await asyncio.gather(*(drain(number) for number in range(connections)))
    return started


async def time_to_sink(messages: int) -> float:
    """The SMTP limit: seconds for `messages` copies of a real invitation to reach a fresh sink."""
    payloads = copies(sample_invitation(), messages)
    with workdir("smtp-limit") as directory:
        async with smtp_sink(directory) as sink:
            started = await blast(sink.port, payloads)
            return await sink.wait_for(messages, timeout=120) - started
