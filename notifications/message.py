"""One outgoing email, and the MIME message that carries it.

``serialize_message`` writes the bytes that go over SMTP; ``build_message`` gives the same message as an
``EmailMessage`` for code that wants to inspect it. The bytes are written directly rather than through
``EmailMessage`` because building and flattening the email package's header objects costs more than the
rest of sending an invitation, and would alone cap the rate of a batch (bench/launch_fanout shows the
rate). The tests hold the two views to the same content through the stdlib parser.
"""

from __future__ import annotations

import quopri
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, parseaddr, quote
from functools import lru_cache

from notifications.rendering import RenderedEmail

MESSAGE_ID_DOMAIN = "roundtable"
MAX_LINE_OCTETS = 998
HEADER_WIDTH = 78

# Characters an RFC 2047 "Q" encoded word may carry as themselves (section 5, rule 3, the strictest);
# Q rather than base64 keeps mostly-ASCII Albanian subjects and names legible in the raw source.
_Q_CHARACTER = {character: character for character in string.ascii_letters + string.digits + "!*+-/"}
_Q_CHARACTER[" "] = "_"
_ENCODED_WORD_LENGTH = 75
_ENCODED_WORD_OVERHEAD = len("=?utf-8?q??=")
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_ADDRESS = re.compile(r"^[^\s<>\"(),;:@]+@[^\s<>\"(),;:@]+$")
_OWN_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "Reply-To",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    )
)


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to_address: str
    to_name: str
    subject: str
    text: str
    html: str
    # Chosen by the caller from what the email is for, so that a retried send carries the same id and the
    # receiving side (and our own records) can recognise a duplicate.
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    # Whom a reply reaches, as a mailbox ("Name <address>", see `mailbox`): the sender's address is the
    # service's own, which nobody reads.
    reply_to: str | None = None

    @classmethod
    def from_rendered(
        cls,
        rendered: RenderedEmail,
        *,
        to_address: str,
        to_name: str,
        message_id: str,
        headers: dict[str, str] | None = None,
        reply_to: str | None = None,
    ) -> OutgoingEmail:
        return cls(
            to_address=to_address,
            to_name=to_name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=message_id,
            headers=dict(headers or {}),
            reply_to=reply_to,
        )


def message_id_for(purpose_key: str, domain: str = MESSAGE_ID_DOMAIN) -> str:
    """A stable Message-ID for what an email is for: "invitation:3f2a" -> "<invitation.3f2a@roundtable>"."""
    local = re.sub(r"\.{2,}", ".", _NOT_ATEXT.sub(".", purpose_key)).strip(".")
    if not local:
        raise ValueError(f"purpose key {purpose_key!r} has nothing usable in a Message-ID")
    return f"<{local}@{domain}>"


def mailbox(name: str, address: str) -> str:
    """ "Name <address>" as stored and configured (the name quoted, not encoded: encoding is the writer's
    job), which `parseaddr` reads back as (name, address). ValueError for a name or an address that is not
    one line, or an address this sender cannot use."""
    _single_line("mailbox", name)
    if not _ADDRESS.match(_single_line("mailbox", address)) or not address.isascii():
        raise ValueError(f"{address!r} is not an address this sender can use")
    name = name.strip()
    return f'"{quote(name)}" <{address}>' if name else address


def envelope_address(mailbox: str) -> str:
    """The bare address of a header value such as "Roundtable <roundtable@example.org>"."""
    _, address = parseaddr(mailbox)
    if not _ADDRESS.match(address):
        raise ValueError(f"{mailbox!r} does not contain a usable email address")
    return address


def serialize_message(
    email: OutgoingEmail, mail_from: str, *, date: datetime | None = None, eight_bit: bool = True
) -> bytes:
    """The multipart/alternative message (text, then HTML) as CRLF bytes; ValueError if anything is malformed.

    eight_bit=False is for a server without 8BITMIME: the bodies then go as quoted-printable.
    """
    if not _MESSAGE_ID.match(email.message_id):
        raise ValueError(f"Message-ID {email.message_id!r} is not <left@right>")
    text_encoding, text_body = _body(email.text, eight_bit)
    html_encoding, html_body = _body(email.html, eight_bit)
    boundary = _boundary(text_body, html_body)
    headers = [
        ("From", _from_header(mail_from)),
        *([("Reply-To", _parsed_mailbox("Reply-To", email.reply_to))] if email.reply_to else []),
        ("To", _mailbox("To", email.to_name, email.to_address)),
        ("Subject", _unstructured("Subject", email.subject)),
        ("Date", format_datetime(date or datetime.now(UTC))),
        ("Message-ID", email.message_id),
        # RFC 3834: tells well-behaved autoresponders not to answer; the second header is Exchange's own
        # spelling of the same wish, and government mail mostly runs on Exchange.
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
    ]
    for name, value in email.headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _OWN_HEADERS:
            raise ValueError(f"header {name!r} cannot be set by the caller")
        headers.append((name, _unstructured(name, value)))
    headers += [("MIME-Version", "1.0"), ("Content-Type", f'multipart/alternative;\n boundary="{boundary}"')]
    message = "".join(f"{name}: {value}\n" for name, value in headers)
    message += (
        f"\n--{boundary}\n"
        f"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: {text_encoding}\n\n"
        f"{text_body}\n--{boundary}\n"
        f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: {html_encoding}\n\n"
        f"{html_body}\n--{boundary}--\n"
    )
    return message.replace("\n", "\r\n").encode("utf-8")


def build_message(email: OutgoingEmail, mail_from: str, *, date: datetime | None = None) -> EmailMessage:
    """The same message as an EmailMessage (parsed from serialize_message), for inspection and tests."""
    raw = serialize_message(email, mail_from, date=date)
    # An EmailMessage holds "\n" line endings; CRLF is only how SMTP carries them.
    parsed = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(parsed, EmailMessage)
    return parsed


@lru_cache(maxsize=16)
def _from_header(mail_from: str) -> str:
    name, _ = parseaddr(mail_from)
    return _mailbox("From", name, envelope_address(mail_from))


# A round's messages share one Reply-To: encoding it once per round, not per message.
@lru_cache(maxsize=256)
def _parsed_mailbox(header: str, value: str) -> str:
    # Checked before parsing: parseaddr would read a line break as folding whitespace and let it pass.
    _single_line(header, value)
    name, address = parseaddr(value)
    return _mailbox(header, name, address)


def _single_line(header: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{header} must be a single line, got {value!r}")
    return value


def _unstructured(name: str, value: str) -> str:
    value = _single_line(name, value)
    # An ASCII value that looks like an encoded word would be decoded by the reader's client; encode it.
    if value.isascii() and "=?" not in value:
        return _fold(name, value.split(" "))
    return _fold(name, _encoded_words(value, _first_line_room(name)))


def _mailbox(header: str, name: str, address: str) -> str:
    if not _ADDRESS.match(_single_line(header, address)) or not address.isascii():
        raise ValueError(f"{header}: {address!r} is not an address this sender can use")
    name = _single_line(header, name or "").strip()  # a contact without a name on record arrives as None
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        return formataddr((name, address))
    return _fold(header, [*_encoded_words(name, _first_line_room(header)), f"<{address}>"])


def _encoded_words(value: str, first_line_room: int) -> list[str]:
    """RFC 2047 "Q" encoded words, never splitting a character's bytes, sized so that folding between
    them keeps every header line within HEADER_WIDTH (the first word also shares its line with the name)."""
    words: list[str] = []
    current = ""
    room = min(_ENCODED_WORD_LENGTH, first_line_room) - _ENCODED_WORD_OVERHEAD
    for character in value:
        encoded = _Q_CHARACTER.get(character)
        if encoded is None:
            encoded = "".join(f"={byte:02X}" for byte in character.encode("utf-8"))
        if current and len(current) + len(encoded) > room:
            words.append(f"=?utf-8?q?{current}?=")
            current = ""
            room = _ENCODED_WORD_LENGTH - _ENCODED_WORD_OVERHEAD
        current += encoded
    words.append(f"=?utf-8?q?{current}?=")
    return words


def _first_line_room(name: str) -> int:
    return max(HEADER_WIDTH - len(name) - len(": "), _ENCODED_WORD_OVERHEAD + 12)


def _fold(name: str, words: list[str]) -> str:
    # Header lines SHOULD stay within 78 characters; folding happens only between words, and unfolding
    # turns each fold back into the single space it replaced.
    lines: list[str] = []
    line: str | None = None
    room = _first_line_room(name)
    for word in words:
        if line is None:
            line = word
        elif len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, HEADER_WIDTH - 1
        else:
            line = f"{line} {word}"
    lines.append(line or "")
    return "\n ".join(lines)


def _body(content: str, eight_bit: bool) -> tuple[str, str]:
    content = content.replace("\r\n", "\n").replace("\r", "\n")
    encoded = content.encode("utf-8")
    if encoded.isascii() and _fits(encoded):
        return "7bit", content
    # 8bit keeps the raw message readable (and greppable in the dev mailbox). Quoted-printable is for a
    # server without 8BITMIME, or a line beyond SMTP's 998-octet limit.
    if eight_bit and _fits(encoded):
        return "8bit", content
    return "quoted-printable", quopri.encodestring(encoded).decode("ascii")


def _fits(encoded: bytes) -> bool:
    return max(len(line) for line in encoded.split(b"\n")) <= MAX_LINE_OCTETS


def _boundary(*bodies: str) -> str:
    while True:
        boundary = f"=_roundtable_{secrets.token_hex(12)}"
        if not any(boundary in body for body in bodies):
            return boundary
