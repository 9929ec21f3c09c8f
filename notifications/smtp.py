"""The SMTP adapter of the email port: a few reused connections, each drained by its own worker.

Why this shape: a new connection per message spends most of its time on the handshake, and one
connection leaves the server idle between replies. A round invites two contacts per organisation, so
connections are opened lazily, kept across batches until close(), and a batch is spread over all of them
at once (bench/launch_fanout measures the result against a bare sender).

How failures are classified (the caller records them and decides whether to try again later):

- 5xx reply to MAIL, RCPT or DATA (550 no such user, 554 rejected): permanent, ok=False, retryable=False.
- 4xx reply (451 try later, 452 full): retryable. The connection is kept, because the server said so
  politely and has already been sent RSET; a 421 (server closing) also drops it.
- Disconnected mid-conversation: the connection is reopened and the message sent once more on it, since a
  server that closes idle connections is the usual cause; if that fails too the message is retryable.
  A disconnect after the data went out may deliver twice; the deterministic Message-ID lets that be seen.
- Timeouts: retryable, the connection is dropped (its state is unknown), and the message marked uncertain:
  it may have been delivered.
- Cannot connect, TLS or login fails: retryable. That connection's worker stops for the batch and hands
  its message back to the other workers; when no worker is left, every remaining message is reported
  with the connection error, so an unreachable server costs one connect timeout per batch, not per email.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
)

from notifications.message import OutgoingEmail, envelope_address, serialize_message
from notifications.sending import DeliveryResult, EmailSender, ResultCallback

__all__ = ["DeliveryResult", "EmailSender", "SmtpConfig", "SmtpSender"]

log = logging.getLogger(__name__)

TLS_MODES = ("none", "starttls", "tls")
QUIT_TIMEOUT = 5.0
SERVER_CLOSING = 421


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """What the SMTP adapter needs; the service layer builds it from Settings."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # kept out of logs and tracebacks
    tls: str = "none"  # none | starttls | tls (implicit TLS, usually port 465)
    connections: int = 8
    mail_from: str = "Roundtable <roundtable@localhost>"
    timeout: float = 30.0
    # None lets aiosmtplib use the machine's FQDN in EHLO.
    local_hostname: str | None = None
    validate_certs: bool = True
    # A PEM bundle to trust instead of the system store, for a relay with a certificate from an internal CA.
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if str(self.tls) not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, got {self.tls!r}")
        if self.username and not self.password:
            raise ValueError("an SMTP username needs a password")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")
        envelope_address(self.mail_from)


class _ConnectFailed(Exception):
    pass


class _Connection:
    """One lazily opened SMTP session that survives across messages and batches."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._client: SMTP | None = None
        self.opened = 0

    async def open(self) -> SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        self.drop()
        config = self._config
        tls = str(config.tls)
        client = SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username or None,
            password=config.password if config.username else None,
            use_tls=tls == "tls",
            start_tls=tls == "starttls",
            validate_certs=config.validate_certs,
            cert_bundle=config.ca_file,
            local_hostname=config.local_hostname,
            timeout=config.timeout,
        )
        try:
            await client.connect()
        except SMTPAuthenticationError as exc:
            raise _ConnectFailed(
                f"SMTP login refused by {config.host}:{config.port}: {exc.code} {exc.message}"
            ) from exc
        except (SMTPException, OSError) as exc:
            raise _ConnectFailed(f"cannot connect to SMTP server {config.host}:{config.port}: {exc}") from exc
        self._client = client
        self.opened += 1
        return client

    def drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def quit(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=QUIT_TIMEOUT)
        except (SMTPException, OSError):
            pass
        finally:
            client.close()


class _Batch:
    def __init__(
        self, emails: Sequence[OutgoingEmail], workers: int, on_result: ResultCallback | None
    ) -> None:
        self.emails = emails
        self.pending: deque[int] = deque(range(len(emails)))
        self.results: list[DeliveryResult | None] = [None] * len(emails)
        self.live_workers = workers
        self._on_result = on_result

    def settle(self, index: int, result: DeliveryResult) -> None:
        self.results[index] = result
        if self._on_result is not None:
            self._on_result(index, result)

    def fail_pending(self, error: str) -> None:
        while self.pending:
            index = self.pending.popleft()
            self.settle(index, DeliveryResult.failed(self.emails[index], error, retryable=True))

    def finished(self) -> list[DeliveryResult]:
        missing = [index for index, result in enumerate(self.results) if result is None]
        if missing:
            raise RuntimeError(f"batch ended with {len(missing)} emails unaccounted for")
        return [result for result in self.results if result is not None]


class SmtpSender(EmailSender):
    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        self._envelope_from = envelope_address(config.mail_from)
        self._connections = [_Connection(config) for _ in range(config.connections)]
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        for connection in self._connections:
            self._idle.put_nowait(connection)

    @property
    def connections_opened(self) -> int:
        """SMTP sessions opened since this sender was created (for logs, tests and benchmarks)."""
        return sum(connection.opened for connection in self._connections)

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send_many(
        self, emails: Sequence[OutgoingEmail], *, on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        if not emails:
            return []
        connections = await self._acquire(min(len(emails), len(self._connections)))
        batch = _Batch(emails, workers=len(connections), on_result=on_result)
        try:
            async with asyncio.TaskGroup() as workers:
                for connection in connections:
                    workers.create_task(self._work(connection, batch))
        finally:
            for connection in connections:
                self._idle.put_nowait(connection)
        return batch.finished()

    async def close(self) -> None:
        # Taking every connection first waits for batches still running on them.
        connections = [await self._idle.get() for _ in self._connections]
        try:
            await asyncio.gather(*(connection.quit() for connection in connections))
        finally:
            for connection in connections:
                self._idle.put_nowait(connection)

    async def _acquire(self, wanted: int) -> list[_Connection]:
        # A concurrent batch may hold some connections; start with whatever is free rather than wait for all.
        connections = [await self._idle.get()]
        while len(connections) < wanted and not self._idle.empty():
            connections.append(self._idle.get_nowait())
        return connections

    async def _work(self, connection: _Connection, batch: _Batch) -> None:
        try:
            while batch.pending:
                index = batch.pending.popleft()
                try:
                    batch.settle(index, await self._deliver(connection, batch.emails[index]))
                except _ConnectFailed as exc:
                    log.warning("%s", exc)
                    batch.pending.appendleft(index)
                    if batch.live_workers == 1:
                        batch.fail_pending(str(exc))
                    return
                except asyncio.CancelledError:
                    connection.drop()  # cancelled mid-conversation: the session's state is unknown
                    raise
                except Exception as exc:
                    # Raising would lose the results of every email this batch already delivered, and the
                    # caller, not knowing, would send them again.
                    log.exception("unexpected error while sending %s", batch.emails[index].message_id)
                    connection.drop()
                    batch.settle(
                        index,
                        DeliveryResult.failed(
                            batch.emails[index], f"unexpected error: {exc!r}", retryable=True, uncertain=True
                        ),
                    )
        finally:
            batch.live_workers -= 1

    async def _deliver(self, connection: _Connection, email: OutgoingEmail) -> DeliveryResult:
        for attempt in (1, 2):
            client = await connection.open()
            eight_bit = client.supports_extension("8bitmime")
            try:
                content = serialize_message(email, self._config.mail_from, eight_bit=eight_bit)
            except (ValueError, TypeError) as exc:
                return DeliveryResult.failed(email, f"malformed email: {exc}", retryable=False)
            try:
                await client.sendmail(
                    self._envelope_from,
                    [email.to_address],
                    content,
                    mail_options=["BODY=8BITMIME"] if eight_bit else [],
                )
            except SMTPHeloError as exc:
                # A refused greeting says nothing about this message; the connection is what failed.
                connection.drop()
                return DeliveryResult.failed(email, f"EHLO refused: {exc.code} {exc.message}", retryable=True)
            except SMTPRecipientsRefused as exc:
                refusal = exc.recipients[0]
                return self._refused(connection, client, email, refusal.code, refusal.message)
            except SMTPResponseException as exc:
                return self._refused(connection, client, email, exc.code, exc.message)
            except TimeoutError as exc:
                connection.drop()
                return DeliveryResult.failed(email, f"SMTP timeout: {exc}", retryable=True, uncertain=True)
            except ConnectionError as exc:
                connection.drop()
                if attempt == 1:
                    log.debug(
                        "SMTP connection lost (%s); reconnecting to send %s again", exc, email.message_id
                    )
                    continue
                return DeliveryResult.failed(
                    email, f"SMTP server disconnected: {exc}", retryable=True, uncertain=True
                )
            except (SMTPNotSupported, ValueError) as exc:  # an address aiosmtplib will not put on the wire
                return DeliveryResult.failed(email, f"cannot be sent: {exc}", retryable=False)
            except (SMTPException, OSError) as exc:
                connection.drop()
                return DeliveryResult.failed(email, f"SMTP error: {exc}", retryable=True, uncertain=True)
            return DeliveryResult.delivered(email)
        raise AssertionError("unreachable: the second attempt always returns")

    @staticmethod
    def _refused(
        connection: _Connection, client: SMTP, email: OutgoingEmail, code: int, reply: str
    ) -> DeliveryResult:
        if code == SERVER_CLOSING or not client.is_connected:
            connection.drop()
        permanent = code >= 500
        return DeliveryResult.failed(email, f"{code} {reply}", retryable=not permanent, smtp_code=code)
