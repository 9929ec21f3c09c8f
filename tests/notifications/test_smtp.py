"""SmtpSender against real aiosmtpd servers: delivery, reuse of connections and the failure taxonomy."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notifications import DevMailbox, OutgoingEmail, SmtpConfig, SmtpSender
from notifications.mailbox import SinkServer, serve_smtp
from tests.notifications.support import RecordingSink, invitations, unused_port

MakeSender = Callable[..., SmtpSender]


async def test_fifty_invitations_arrive_once_each_as_text_and_html(
    smtp_server: SinkServer, sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    emails = invitations(50)
    async with make_sender(smtp_server.port, connections=4) as sender:
        results = await sender.send_many(emails)

    assert [result.ok for result in results] == [True] * 50
    assert [result.email for result in results] == emails
    assert all(result.error is None and not result.retryable for result in results)
    mailbox = DevMailbox(mail_dir)
    assert mailbox.count() == 50
    expected = {email.message_id: email for email in emails}
    seen: set[str] = set()
    for entry in mailbox.list(limit=100):
        message = mailbox.get(entry.key)
        message_id = message.header("Message-ID")
        assert message_id in expected
        assert message_id not in seen
        seen.add(message_id)
        email = expected[message_id]
        assert (message.header("Content-Type") or "").startswith("multipart/alternative")
        assert message.text == email.text
        assert message.html == email.html
        link_id = email.headers["X-Roundtable-Purpose"].removeprefix("invitation:")
        assert message.links == [f"http://testserver/t/token-{link_id}"]
        assert message.subject == email.subject
        assert message.subject.startswith("Ftesë për konsultim: Strategjia Kombëtare për Qeverisjen")
        assert "Seksionet për shqyrtim" in message.text
        assert "Arbën Çela" in message.to
        assert message.header("X-Roundtable-Envelope-To") == email.to_address
        assert entry.received_at.tzinfo is not None
    assert seen == set(expected)
    assert sink.sessions_opened <= 4


async def test_connections_are_reused_across_batches_until_close(
    smtp_server: SinkServer, sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    sender = make_sender(smtp_server.port, connections=4)
    try:
        for batch in range(3):
            results = await sender.send_many(invitations(50, prefix=f"b{batch}-"))
            assert all(result.ok for result in results)
        assert sink.sessions_opened <= 4
        assert sender.connections_opened == sink.sessions_opened
        await sender.close()
        # A closed sender still works; it simply opens connections again.
        assert (await sender.send(invitations(1, prefix="after-close-")[0])).ok
        assert sink.sessions_opened == sender.connections_opened
    finally:
        await sender.close()
    assert DevMailbox(mail_dir).count() == 151


async def test_concurrent_batches_share_the_connections(
    smtp_server: SinkServer, sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    async with make_sender(smtp_server.port, connections=3) as sender:
        first, second = await asyncio.gather(
            sender.send_many(invitations(40, prefix="one-")), sender.send_many(invitations(40, prefix="two-"))
        )

    assert all(result.ok for result in first + second)
    assert sink.sessions_opened <= 3
    assert DevMailbox(mail_dir).count() == 80


async def test_a_refused_recipient_is_a_permanent_failure_and_the_rest_are_delivered(
    smtp_server: SinkServer, sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    emails = invitations(20)
    sink.rcpt_replies[emails[7].to_address] = "550 5.1.1 no such user"

    async with make_sender(smtp_server.port) as sender:
        results = await sender.send_many(emails)

    refused = results[7]
    assert not refused.ok
    assert not refused.retryable
    assert refused.smtp_code == 550
    assert refused.error == "550 5.1.1 no such user"
    assert all(result.ok for index, result in enumerate(results) if index != 7)
    assert DevMailbox(mail_dir).count() == 19
    assert DevMailbox(mail_dir).for_recipient(emails[7].to_address) == []


async def test_a_rejected_message_is_a_permanent_failure(
    smtp_server: SinkServer, sink: RecordingSink, make_sender: MakeSender
) -> None:
    sink.data_reply = "554 5.6.0 message rejected"

    async with make_sender(smtp_server.port) as sender:
        results = await sender.send_many(invitations(5))

    assert [(result.ok, result.retryable, result.smtp_code) for result in results] == [
        (False, False, 554)
    ] * 5


async def test_a_deferral_is_retryable_and_keeps_the_connection(
    smtp_server: SinkServer, sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    emails = invitations(12)
    sink.rcpt_replies[emails[3].to_address] = "451 4.7.1 greylisted, try again later"

    async with make_sender(smtp_server.port, connections=2) as sender:
        results = await sender.send_many(emails)
        sink.data_reply = "451 4.3.0 queue full, try again later"
        deferred = await sender.send_many(invitations(6, prefix="later-"))

    assert (results[3].ok, results[3].retryable, results[3].smtp_code) == (False, True, 451)
    assert all(result.ok for index, result in enumerate(results) if index != 3)
    assert all(not result.ok and result.retryable and result.smtp_code == 451 for result in deferred)
    assert "queue full" in (deferred[0].error or "")
    assert sink.sessions_opened <= 2
    assert DevMailbox(mail_dir).count() == 11


async def test_nothing_listening_makes_every_result_retryable_without_raising(
    make_sender: MakeSender,
) -> None:
    emails = invitations(50)
    started = time.monotonic()

    async with make_sender(unused_port(), connections=4) as sender:
        results = await sender.send_many(emails)

    assert time.monotonic() - started < 5
    assert len(results) == 50
    assert [result.email for result in results] == emails
    assert all(not result.ok and result.retryable for result in results)
    assert "cannot connect" in (results[0].error or "")


async def test_a_server_that_drops_its_connections_gets_them_reopened(
    smtp_server: SinkServer,
    sink: RecordingSink,
    mail_dir: Path,
    make_sender: MakeSender,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="notifications.smtp")
    async with make_sender(smtp_server.port, connections=3) as sender:
        assert all(result.ok for result in await sender.send_many(invitations(9, prefix="before-")))
        opened_before = sink.sessions_opened
        # As a restarting relay or an idle timeout would; the sender still believes its connections open.
        smtp_server.drop_connections()
        after = await sender.send_many(invitations(9, prefix="after-"))

    assert all(result.ok for result in after), [result.error for result in after]
    assert "reconnecting to send" in caplog.text  # found out mid-conversation, and sent again
    assert sink.sessions_opened > opened_before
    mailbox = DevMailbox(mail_dir)
    message_ids = [mailbox.get(entry.key).header("Message-ID") for entry in mailbox.list()]
    assert len(message_ids) == len(set(message_ids)) == 18


async def test_a_server_that_goes_away_mid_batch_yields_retryable_results(
    mail_dir: Path, make_sender: MakeSender
) -> None:
    ten_filed = asyncio.Event()

    class TellAfterTen(RecordingSink):
        async def handle_DATA(self, server_: SMTP, session: Session, envelope: Envelope) -> str:
            reply = await super().handle_DATA(server_, session, envelope)
            if sum(1 for _ in (mail_dir / "new").iterdir()) >= 10:
                ten_filed.set()
            return reply

    server = await serve_smtp(TellAfterTen(mail_dir), "127.0.0.1", 0)
    async with make_sender(server.port, connections=2) as sender:
        sending = asyncio.create_task(sender.send_many(invitations(200)))
        await ten_filed.wait()
        await server.close()
        results = await sending

    delivered = [result for result in results if result.ok]
    failed = [result for result in results if not result.ok]
    assert len(delivered) >= 10
    assert failed
    assert all(result.retryable for result in failed)
    assert len(delivered) == DevMailbox(mail_dir).count()


class TooBusy(asyncio.Protocol):
    """What a relay at its connection limit does: a 421 greeting, then hang up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 too many connections, try later\r\n")
        transport.close()


async def test_connections_the_server_refuses_leave_their_messages_to_the_others(
    sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    accepted = 0

    def limited() -> asyncio.Protocol:
        nonlocal accepted
        accepted += 1
        return SMTP(sink, hostname="limited") if accepted <= 2 else TooBusy()

    server = await asyncio.get_running_loop().create_server(limited, "127.0.0.1", 0)
    try:
        async with make_sender(server.sockets[0].getsockname()[1], connections=4) as sender:
            results = await sender.send_many(invitations(30))
    finally:
        server.close()
        await server.wait_closed()

    assert all(result.ok for result in results), [result.error for result in results if not result.ok]
    assert sink.sessions_opened == 2
    assert DevMailbox(mail_dir).count() == 30


async def test_a_malformed_email_fails_alone_and_permanently(
    smtp_server: SinkServer, mail_dir: Path, make_sender: MakeSender
) -> None:
    good, bad = invitations(2)
    bad = OutgoingEmail(
        to_address="no address here",
        to_name=bad.to_name,
        subject=bad.subject,
        text=bad.text,
        html=bad.html,
        message_id=bad.message_id,
    )

    async with make_sender(smtp_server.port) as sender:
        results = await sender.send_many([bad, good])

    assert (results[0].ok, results[0].retryable) == (False, False)
    assert results[1].ok
    assert DevMailbox(mail_dir).count() == 1


async def test_a_contact_without_a_name_is_addressed_by_address_alone(
    smtp_server: SinkServer, mail_dir: Path, make_sender: MakeSender
) -> None:
    [email] = invitations(1)
    nameless = dataclasses.replace(email, to_name=None)  # type: ignore[arg-type]  # as a DB row may have it

    async with make_sender(smtp_server.port) as sender:
        result = await sender.send(nameless)

    assert result.ok
    mailbox = DevMailbox(mail_dir)
    assert mailbox.list()[0].to == email.to_address


async def test_an_empty_batch_opens_nothing(
    smtp_server: SinkServer, sink: RecordingSink, make_sender: MakeSender
) -> None:
    async with make_sender(smtp_server.port) as sender:
        assert await sender.send_many([]) == []
    assert sink.sessions_opened == 0


def test_config_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="tls must be one of"):
        SmtpConfig(host="127.0.0.1", port=25, tls="ssl")
    with pytest.raises(ValueError, match="at least 1"):
        SmtpConfig(host="127.0.0.1", port=25, connections=0)
    with pytest.raises(ValueError, match="usable email address"):
        SmtpConfig(host="127.0.0.1", port=25, mail_from="Roundtable")
    with pytest.raises(ValueError, match="needs a password"):
        SmtpConfig(host="127.0.0.1", port=25, username="roundtable")
    assert "hunter2" not in repr(
        SmtpConfig(host="127.0.0.1", port=25, username="roundtable", password="hunter2")
    )


# TLS and AUTH, against a server with a throwaway self-signed certificate.

USERNAME = "roundtable"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers 535 itself (its default assumes the authenticator replied).
    return AuthResult(success=ok, handled=False)


async def test_starttls_with_login(
    certificate: tuple[Path, Path], sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    server = await serve_smtp(
        sink,
        "127.0.0.1",
        0,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    try:
        options = {"tls": "starttls", "ca_file": str(certificate[0]), "username": USERNAME}
        async with make_sender(server.port, password=PASSWORD, **options) as sender:
            delivered = await sender.send_many(invitations(5))
        async with make_sender(server.port, password="wrong", **options) as sender:
            refused = await sender.send_many(invitations(3, prefix="wrong-"))
        async with make_sender(server.port, tls="none") as sender:
            plain = await sender.send_many(invitations(2, prefix="plain-"))
    finally:
        await server.close()

    assert all(result.ok for result in delivered)
    assert all(not result.ok and result.retryable for result in refused)
    assert "login refused" in (refused[0].error or "")
    assert all(not result.ok for result in plain)  # the server insists on STARTTLS first
    assert DevMailbox(mail_dir).count() == 5


async def test_implicit_tls(
    certificate: tuple[Path, Path], sink: RecordingSink, mail_dir: Path, make_sender: MakeSender
) -> None:
    server = await serve_smtp(sink, "127.0.0.1", 0, ssl=server_context(certificate))
    try:
        async with make_sender(server.port, tls="tls", ca_file=str(certificate[0])) as sender:
            trusted = await sender.send_many(invitations(5))
        async with make_sender(server.port, tls="tls") as sender:
            untrusted = await sender.send_many(invitations(2, prefix="untrusted-"))
    finally:
        await server.close()

    assert all(result.ok for result in trusted)
    assert all(not result.ok and result.retryable for result in untrusted)  # unknown CA: never sent in clear
    assert DevMailbox(mail_dir).count() == 5
