"""The dev mailbox: what the sink files, and how the viewer lists and opens it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifications import DevMailbox, MaildirSink, SmtpConfig, SmtpSender, parse_links, start_sink
from notifications.mailbox import RECEIVED_AT_HEADER, MaildirWriter
from notifications.message import serialize_message
from tests.notifications.support import MAIL_FROM, invitations, unused_port


def file_invitations(directory: Path, count: int, *, prefix: str = "fp") -> list[str]:
    sink = MaildirSink(directory)
    keys = []
    for email in invitations(count, prefix=prefix):
        keys.append(
            sink.store("sekretariati@example.org", [email.to_address], serialize_message(email, MAIL_FROM))
        )
    return keys


def test_links_are_found_in_order_without_trailing_punctuation() -> None:
    text = (
        "Open http://testserver/t/abc. Or (https://example.org/a?b=1&c=2), "
        "again http://testserver/t/abc, and ftp://nothing.example or mailto:x@example.org!"
    )

    assert parse_links(text) == ["http://testserver/t/abc", "https://example.org/a?b=1&c=2"]
    assert parse_links("no links here") == []


def test_a_mailbox_that_does_not_exist_yet_is_empty(tmp_path: Path) -> None:
    mailbox = DevMailbox(tmp_path / "nowhere")

    assert mailbox.count() == 0
    assert mailbox.list() == []
    assert mailbox.clear() == 0
    with pytest.raises(KeyError):
        mailbox.get("1.M1P1Q1.host")


def test_stored_messages_are_listed_newest_first_and_paged(tmp_path: Path) -> None:
    keys = file_invitations(tmp_path, 12)
    mailbox = DevMailbox(tmp_path)

    assert mailbox.count() == 12
    entries = mailbox.list(limit=5)
    assert [entry.key for entry in entries] == keys[::-1][:5]
    assert [entry.key for entry in mailbox.list(limit=5, offset=10)] == keys[1::-1]
    assert mailbox.list(offset=12) == []
    newest = entries[0]
    assert newest.subject.startswith("Ftesë për konsultim: ")
    assert newest.to == "Arbën Çela <fp0011@bashkia.example>"
    assert newest.from_ == MAIL_FROM
    assert newest.received_at.tzinfo is not None
    assert abs(datetime.now(UTC) - newest.received_at) < timedelta(minutes=1)
    assert entries[0].received_at >= entries[-1].received_at


def test_a_message_opens_with_text_html_headers_and_links(tmp_path: Path) -> None:
    [key] = file_invitations(tmp_path, 1)
    [email] = invitations(1)
    message = DevMailbox(tmp_path).get(key)

    assert message.key == key
    assert message.text == email.text
    assert message.html == email.html
    assert message.links == ["http://testserver/t/token-fp0000"]
    assert message.header("message-id") == email.message_id
    assert message.header("X-Roundtable-Envelope-To") == "fp0000@bashkia.example"
    assert message.header("Return-Path") == "<sekretariati@example.org>"
    assert message.header(RECEIVED_AT_HEADER) is not None
    assert ("Auto-Submitted", "auto-generated") in message.headers
    assert message.raw.startswith(b"Return-Path: ")


@pytest.mark.parametrize("key", ["../../etc/passwd", "..", ".hidden", "a/b", "", "x:2,S", "nope"])
def test_keys_that_name_no_message_are_refused(tmp_path: Path, key: str) -> None:
    file_invitations(tmp_path, 1)

    with pytest.raises(KeyError):
        DevMailbox(tmp_path).get(key)


def test_messages_can_be_found_by_recipient_deleted_and_cleared(tmp_path: Path) -> None:
    keys = file_invitations(tmp_path, 4)
    mailbox = DevMailbox(tmp_path)

    [found] = mailbox.for_recipient("FP0002@bashkia.example")
    assert found.key == keys[2]
    mailbox.delete(keys[2])
    assert mailbox.for_recipient("fp0002@bashkia.example") == []
    with pytest.raises(KeyError):
        mailbox.delete(keys[2])
    assert mailbox.count() == 3
    assert mailbox.clear() == 3
    assert mailbox.count() == 0


def test_files_from_another_maildir_writer_are_listed_by_modification_time(tmp_path: Path) -> None:
    file_invitations(tmp_path, 2)
    foreign = tmp_path / "cur" / "from-a-mail-client:2,S"
    foreign.write_bytes(
        b"From: someone@example.org\nSubject: moved by a client\n\nhello http://example.org/x\n"
    )
    # Newer than the invitations for sure: on a busy machine all three can share one mtime tick.
    newest = max(path.stat().st_mtime for path in tmp_path.glob("*/*")) + 5
    os.utime(foreign, (newest, newest))
    mailbox = DevMailbox(tmp_path)

    assert mailbox.count() == 3
    assert mailbox.list(limit=1)[0].subject == "moved by a client"
    message = mailbox.get("from-a-mail-client")
    assert message.links == ["http://example.org/x"]
    assert message.html is None


def test_ten_thousand_messages_stay_quick_to_count_and_list(tmp_path: Path) -> None:
    content = serialize_message(invitations(1)[0], MAIL_FROM)
    writer = MaildirWriter(tmp_path)
    for _ in range(10_000):
        writer.add(content)
    last = writer.add(content.replace(b"fp0000@", b"latest@"))
    mailbox = DevMailbox(tmp_path)

    started = time.perf_counter()
    assert mailbox.count() == 10_001
    counted = time.perf_counter()
    page = mailbox.list(limit=50)
    listed = time.perf_counter()

    assert page[0].key == last
    assert "latest@bashkia.example" in page[0].to
    assert len(page) == 50
    assert counted - started < 0.5
    assert listed - counted < 1.0


async def test_the_threaded_sink_receives_over_smtp(tmp_path: Path) -> None:
    port = unused_port()
    controller = start_sink(tmp_path / "mail", port=port)
    try:
        config = SmtpConfig(host="127.0.0.1", port=port, connections=2, mail_from=MAIL_FROM, timeout=5.0)
        async with SmtpSender(config) as sender:
            results = await sender.send_many(invitations(6))
    finally:
        controller.stop()

    assert all(result.ok for result in results)
    mailbox = DevMailbox(tmp_path / "mail")
    assert mailbox.count() == 6
    links = {link for entry in mailbox.list() for link in mailbox.get(entry.key).links}
    assert links == {f"http://testserver/t/token-fp{number:04d}" for number in range(6)}
