"""The MIME message: multipart/alternative, encoded headers, a stable Message-ID, nothing injectable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from notifications import OutgoingEmail, build_message, message_id_for, render_email
from notifications.message import serialize_message
from tests.notifications.support import MAIL_FROM, invitation_context

TEAM = "Sekretariati Teknik \u2013 Migracioni"
LONG_ALBANIAN_TITLE = (
    "Strategjia Kombëtare për Qeverisjen e Migracionit dhe Plani i Veprimit për Diasporën, "
    "Kthimin e Qëndrueshëm dhe Riintegrimin e Shtetasve Shqiptarë 2026\u20132030"
)


def an_email(**overrides: object) -> OutgoingEmail:
    rendered = render_email("invitation", "sq", invitation_context())
    email = OutgoingEmail.from_rendered(
        rendered,
        to_address="migration.fp@ministry-of-interior.gov.example",
        to_name="Arbën Çela",
        message_id=message_id_for("invitation:3f2a9c"),
    )
    return dataclasses.replace(email, **overrides)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(message, EmailMessage)
    return message


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_message_is_multipart_alternative_text_first_then_html() -> None:
    email = an_email()
    message = build_message(email, MAIL_FROM, date=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert parts[0].get_content() == email.text
    assert parts[1].get_content() == email.html
    assert message["Subject"] == email.subject
    assert message["Message-ID"] == "<invitation.3f2a9c@roundtable>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Tue, 01 Dec 2026 09:30:00 +0000"
    assert message["MIME-Version"] == "1.0"
    [to] = message["To"].addresses
    assert to == Address("Arbën Çela", addr_spec="migration.fp@ministry-of-interior.gov.example")
    [sender] = message["From"].addresses
    assert sender == Address("Sekretariati Teknik", addr_spec="sekretariati@migracioni.gov.example")


def test_headers_on_the_wire_are_ascii_and_folded() -> None:
    email = an_email(subject=f"Ftesë për konsultim: {LONG_ALBANIAN_TITLE}", to_name="Ëndrit Çaushi-Përmeti")
    raw = serialize_message(email, f"{TEAM} <sekretariati@migracioni.gov.example>")

    for line in header_lines(raw):
        assert line.isascii()
        assert len(line) <= 78, line
    message = parse(raw)
    assert message["Subject"] == email.subject
    assert message["To"].addresses[0].display_name == "Ëndrit Çaushi-Përmeti"
    assert message["From"].addresses[0].display_name == TEAM


def test_a_long_ascii_subject_folds_between_words_and_unfolds_intact() -> None:
    subject = "Consultation invitation: " + " ".join(["National Strategy on Migration Governance"] * 4)
    raw = serialize_message(an_email(subject=subject), MAIL_FROM)

    assert all(len(line) <= 78 for line in header_lines(raw))
    assert parse(raw)["Subject"] == subject


def test_an_ascii_name_with_a_comma_is_quoted() -> None:
    message = build_message(an_email(to_name="Focal Point, Ministry of Interior"), MAIL_FROM)

    assert message["To"].addresses[0].display_name == "Focal Point, Ministry of Interior"
    assert message["To"].addresses[0].addr_spec == "migration.fp@ministry-of-interior.gov.example"


def test_an_ascii_value_that_looks_encoded_is_not_decoded_by_the_reader() -> None:
    message = build_message(an_email(subject="Round =?utf-8?q?x?= 2"), MAIL_FROM)

    assert message["Subject"] == "Round =?utf-8?q?x?= 2"


def test_bodies_go_8bit_and_stay_readable_in_the_raw_message() -> None:
    raw = serialize_message(an_email(), MAIL_FROM)

    assert b"Content-Transfer-Encoding: 8bit" in raw
    assert "Seksionet për shqyrtim".encode() in raw
    assert b"http://testserver/t/ZmFrZS10b2tlbi1mb3ItdGVzdHM\r\n" in raw


def test_a_line_too_long_for_smtp_goes_quoted_printable() -> None:
    text = "Paragrafi " + "shumë i gjatë ë " * 100 + "\n"
    raw = serialize_message(an_email(text=text), MAIL_FROM)

    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = parse(raw)
    assert message.get_body(("plain",)).get_content() == text  # type: ignore[union-attr]


def test_without_8bitmime_the_bodies_go_quoted_printable() -> None:
    email = an_email()
    raw = serialize_message(email, MAIL_FROM, eight_bit=False)

    assert raw.isascii()
    message = parse(raw)
    assert message.get_body(("plain",)).get_content() == email.text  # type: ignore[union-attr]
    assert message.get_body(("html",)).get_content() == email.html  # type: ignore[union-attr]


def test_extra_headers_are_added() -> None:
    message = build_message(an_email(headers={"X-Roundtable-Purpose": "invitation:3f2a9c"}), MAIL_FROM)

    assert message["X-Roundtable-Purpose"] == "invitation:3f2a9c"


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Invitation\r\nBcc: everyone@example.org"},
        {"to_name": "Arbën\nBcc: everyone@example.org"},
        {"to_address": "someone@example.org>\r\nRCPT TO:<other@example.org"},
        {"to_address": "not an address"},
        {"to_address": "përdorues@shembull.example"},
        {"message_id": "invitation-3f2a9c"},
        {"headers": {"Subject": "a second subject"}},
        {"headers": {"X-Bad Name": "value"}},
        {"headers": {"X-Roundtable-Purpose": "one\nBcc: everyone@example.org"}},
    ],
)
def test_malformed_values_are_refused_not_sent(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"address|single line|Message-ID|cannot be set"):
        serialize_message(an_email(**overrides), MAIL_FROM)


def test_mail_from_must_hold_an_address() -> None:
    with pytest.raises(ValueError, match="usable email address"):
        serialize_message(an_email(), "Roundtable")


def test_message_id_is_stable_and_valid() -> None:
    assert message_id_for("invitation:3f2a9c") == "<invitation.3f2a9c@roundtable>"
    assert message_id_for("invitation:3f2a9c") == message_id_for("invitation:3f2a9c")
    assert message_id_for("reminder:7 (2)", domain="gov.example") == "<reminder.7.2@gov.example>"
    with pytest.raises(ValueError, match="nothing usable"):
        message_id_for(":::")
