"""Real SMTP servers on free ports, filing into Maildirs, and senders pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from notifications import SmtpConfig, SmtpSender
from notifications.mailbox import SinkServer, serve_smtp
from tests.notifications.support import MAIL_FROM, RecordingSink


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    return tmp_path / "maildir"


@pytest.fixture
def sink(mail_dir: Path) -> RecordingSink:
    return RecordingSink(mail_dir)


@pytest.fixture
async def smtp_server(sink: RecordingSink) -> AsyncIterator[SinkServer]:
    server = await serve_smtp(sink, "127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def make_sender() -> Callable[..., SmtpSender]:
    def make(port: int, **options: Any) -> SmtpSender:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "connections": 4,
            "mail_from": MAIL_FROM,
            "timeout": 5.0,
            "local_hostname": "roundtable.test",
        }
        settings.update(options)
        return SmtpSender(SmtpConfig(**settings))

    return make
