"""The dev mailbox: an SMTP sink that files every message in a Maildir, and a reader for the viewer.

Two ways to run the sink, both with the same handler:

- ``await serve_sink(directory, host, port)`` runs it in the current event loop and returns a
  ``SinkServer`` (``roundtable dev`` and the tests use this; port 0 picks a free port, read ``.port``).
- ``start_sink(directory, host, port)`` runs it in a thread of its own through aiosmtpd's ``Controller``
  (for synchronous callers); ``controller.stop()`` ends it. It needs a real port number, not 0.

Messages are stored as Maildir files (``new/<unique name>``) that any mail client or ``mailbox.Maildir``
can open. The writer skips Maildir's fsync: losing the last dev email in a power cut costs nothing, and
without it the sink files messages several times faster, so it never slows a batch.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import os
import re
import socket
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from ssl import SSLContext
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

RECEIVED_AT_HEADER = "X-Roundtable-Received-At"
ENVELOPE_TO_HEADER = "X-Roundtable-Envelope-To"
DATA_SIZE_LIMIT = 10 * 1024 * 1024
SINK_HOSTNAME = "roundtable-dev-mailbox"
ACCEPTED = "250 2.0.0 Message accepted for delivery"

_MAILDIR_SUBDIRS = ("tmp", "new", "cur")
# The unique-name scheme of Python's mailbox.Maildir: seconds.Mmicroseconds P pid Q counter .host
_MAILDIR_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.")
_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?"


def parse_links(text: str) -> list[str]:
    """Every distinct http(s) URL in a plain text, in order of first appearance."""
    links: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING_PUNCTUATION)
        if url not in links:
            links.append(url)
    return links


class MaildirWriter:
    """Files raw messages atomically: written under tmp/, then renamed into new/."""

    _sequence = itertools.count()

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        for subdir in _MAILDIR_SUBDIRS:
            (self.directory / subdir).mkdir(parents=True, exist_ok=True)
        # Keys end up in viewer URLs, so the host part keeps to characters that need no escaping anywhere.
        self._suffix = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"

    def add(self, content: bytes) -> str:
        now = time.time()
        key = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._sequence)}.{self._suffix}"
        temporary = self.directory / "tmp" / key
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        os.rename(temporary, self.directory / "new" / key)
        return key


class MaildirSink:
    """aiosmtpd handler: accepts every message for every recipient and files it in a Maildir."""

    def __init__(self, directory: Path | str) -> None:
        self.writer = MaildirWriter(directory)

    @property
    def directory(self) -> Path:
        return self.writer.directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        if content is None:
            content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.store(envelope.mail_from or "", envelope.rcpt_tos, content)
        return ACCEPTED

    def store(self, mail_from: str, rcpt_tos: builtins.list[str], content: bytes) -> str:
        # The trace headers say who the message was really for (Bcc, aliases) and when it arrived.
        trace = (
            f"Return-Path: <{_one_line(mail_from)}>\n"
            f"{ENVELOPE_TO_HEADER}: {_one_line(', '.join(rcpt_tos))}\n"
            f"{RECEIVED_AT_HEADER}: {datetime.now(UTC).isoformat(timespec='microseconds')}\n"
        )
        return self.writer.add(trace.encode("utf-8") + content.replace(b"\r\n", b"\n"))


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


class SinkServer:
    """A sink running in the current event loop; also an async context manager."""

    def __init__(self, server: asyncio.Server, sessions: weakref.WeakSet[SMTP]) -> None:
        self.server = server
        self._sessions = sessions

    @property
    def host(self) -> str:
        return str(self.server.sockets[0].getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def drop_connections(self) -> None:
        """Close every open client connection, as a server restarting or timing out idle clients would."""
        for session in builtins.list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def close(self) -> None:
        self.server.close()
        # Before Python 3.12 closing a server leaves its accepted connections open.
        self.drop_connections()
        await self.server.wait_closed()

    async def __aenter__(self) -> SinkServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_smtp(
    handler: object,
    host: str = "127.0.0.1",
    port: int = 1025,
    *,
    ssl: SSLContext | None = None,
    **smtp_options: Any,
) -> SinkServer:
    """Any aiosmtpd handler, served from the running loop.

    ssl gives implicit TLS on the listening socket; smtp_options go to aiosmtpd's SMTP (tls_context for
    STARTTLS, authenticator and auth_required for AUTH). Tests use this to stand up servers that refuse,
    defer or demand a login.
    """
    loop = asyncio.get_running_loop()
    sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
    options: dict[str, Any] = {
        "hostname": SINK_HOSTNAME,
        "data_size_limit": DATA_SIZE_LIMIT,
        "enable_SMTPUTF8": True,
        **smtp_options,
    }

    def new_session() -> SMTP:
        session = SMTP(handler, loop=loop, **options)
        sessions.add(session)
        return session

    server = await loop.create_server(new_session, host=host, port=port, ssl=ssl)
    return SinkServer(server, sessions)


async def serve_sink(directory: Path | str, host: str = "127.0.0.1", port: int = 1025) -> SinkServer:
    return await serve_smtp(MaildirSink(directory), host, port)


def start_sink(directory: Path | str, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    controller = Controller(
        MaildirSink(directory),
        hostname=host,
        port=port,
        server_hostname=SINK_HOSTNAME,
        data_size_limit=DATA_SIZE_LIMIT,
        enable_SMTPUTF8=True,
    )
    controller.start()
    return controller


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    key: str
    received_at: datetime
    from_: str
    to: str
    subject: str


@dataclass(frozen=True, slots=True)
class MailboxMessage:
    key: str
    received_at: datetime
    from_: str
    to: str
    subject: str
    text: str
    # The HTML exactly as sent; whoever shows it must sanitise it or isolate it (sandboxed iframe).
    html: str | None
    headers: builtins.list[tuple[str, str]]
    links: builtins.list[str]
    raw: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class _StoredFile:
    order: tuple[int, int, int, int]
    name: str
    path: str

    @property
    def key(self) -> str:
        return self.name.split(":", 1)[0]  # without the flags a mail client may append in cur/


class DevMailbox:
    """Reads what a MaildirSink filed. Listing sorts by file name and parses only the requested page."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def count(self) -> int:
        return sum(1 for subdir in ("new", "cur") for _ in _scan(self.directory / subdir))

    def get(self, key: str) -> MailboxMessage:
        path = self._path_of(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        text = _body(message, "plain") or ""
        return MailboxMessage(
            key=key,
            received_at=_received_at(message, path),
            from_=str(message.get("From", "")),
            to=str(message.get("To", "")),
            subject=str(message.get("Subject", "")),
            text=text,
            html=_body(message, "html"),
            headers=[(name, str(value)) for name, value in message.items()],
            links=parse_links(text),
            raw=raw,
        )

    def delete(self, key: str) -> None:
        try:
            self._path_of(key).unlink()
        except FileNotFoundError:
            raise KeyError(key) from None

    def clear(self) -> int:
        """Remove every message (and any half-written file); returns how many messages there were."""
        removed = 0
        for subdir in _MAILDIR_SUBDIRS:
            for entry in _scan(self.directory / subdir):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                if subdir != "tmp":
                    removed += 1
        return removed

    def for_recipient(self, address: str) -> builtins.list[MailboxEntry]:
        """Every message delivered to an address, newest first; parses every header, so meant for tests."""
        wanted = address.strip().lower()
        found = []
        for stored in self._newest_first():
            headers = self._headers(stored)
            if headers is None:
                continue
            recipients = str(headers.get(ENVELOPE_TO_HEADER, "")) or str(headers.get("To", ""))
            if wanted in (part.strip().lower() for part in recipients.split(",")):
                found.append(_entry(stored, headers))
        return found

    def list(self, limit: int = 100, offset: int = 0) -> builtins.list[MailboxEntry]:
        entries = []
        for stored in self._newest_first()[offset : offset + limit]:
            headers = self._headers(stored)
            if headers is not None:
                entries.append(_entry(stored, headers))
        return entries

    def _files(self) -> Iterator[_StoredFile]:
        for subdir in ("new", "cur"):
            for entry in _scan(self.directory / subdir):
                yield _StoredFile(order=_order(entry), name=entry.name, path=entry.path)

    def _newest_first(self) -> builtins.list[_StoredFile]:
        return sorted(self._files(), key=lambda stored: stored.order, reverse=True)

    def _path_of(self, key: str) -> Path:
        # The key comes from a URL: it must name a file in new/ or cur/ and nothing else.
        if not key or key.startswith(".") or "/" in key or "\\" in key or "\x00" in key or ":" in key:
            raise KeyError(key)
        candidate = self.directory / "new" / key
        if candidate.exists():
            return candidate
        for entry in _scan(self.directory / "cur"):
            if entry.name == key or entry.name.startswith(key + ":"):
                return Path(entry.path)
        raise KeyError(key)

    @staticmethod
    def _headers(stored: _StoredFile) -> EmailMessage | None:
        try:
            with open(stored.path, "rb") as file:
                head = _read_head(file)
        except FileNotFoundError:  # removed while we listed
            return None
        message = BytesHeaderParser(policy=policy.default).parsebytes(head)
        assert isinstance(message, EmailMessage)
        return message


def _scan(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.name.startswith("."):
                    yield entry
    except FileNotFoundError:
        return


def _order(entry: os.DirEntry[str]) -> tuple[int, int, int, int]:
    match = _MAILDIR_NAME.match(entry.name)
    if match:
        seconds, micros, pid, sequence = (int(group) for group in match.groups())
        return seconds, micros, sequence, pid
    # A file some other tool put there: its modification time is the best guess at its arrival.
    modified = entry.stat().st_mtime_ns
    return modified // 1_000_000_000, modified // 1000 % 1_000_000, 0, 0


def _read_head(file: Any) -> bytes:
    head = b""
    while True:
        chunk = file.read(8192)
        head += chunk
        if not chunk or b"\n\n" in head or b"\r\n\r\n" in head:
            return head


def _entry(stored: _StoredFile, headers: EmailMessage) -> MailboxEntry:
    return MailboxEntry(
        key=stored.key,
        received_at=_received_at(headers, Path(stored.path)),
        from_=str(headers.get("From", "")),
        to=str(headers.get("To", "")),
        subject=str(headers.get("Subject", "")),
    )


def _received_at(message: EmailMessage, path: Path) -> datetime:
    stamp = message.get(RECEIVED_AT_HEADER)
    if stamp is not None:
        try:
            parsed = datetime.fromisoformat(str(stamp))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except FileNotFoundError:
        return datetime.now(UTC)


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None
