"""Who a round's email comes from and whom a reply reaches, as a real SMTP server (aiosmtpd) receives it,
on both databases: the secretariat's name on the service's address, and Reply-To the round's contact, else
the coordinator who created the round."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from models.enums import Language, MessageKind, Role
from models.outbox import OutboxMessage
from models.rounds import Round
from notifications.mailbox import DevMailbox, SinkServer
from notifications.message import OutgoingEmail, mailbox, serialize_message
from notifications.smtp import SmtpSender
from services import delivery, outbox, rounds, task_changes
from services.db import Database
from services.outbox import Mail
from services.settings import Settings
from services.web.app import create_app
from tests.harness import TEST_ACTOR, create_account, seed_round, user_id_of

ALBANIAN = "Sekretariati i Komitetit Ndërministror"
CONTACT = ("Arta Hoxha", "arta.hoxha@kryeministria.gov.example")
COORDINATOR = "coordinator@secretariat.example"
INTERIOR = "ministry-of-interior"  # a focal point and an alternate
FOCAL_POINT = "migration.fp@ministry-of-interior.gov.example"


def pointed_at(settings: Settings, sink: SinkServer, **changes: object) -> Settings:
    return settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port, **changes})


async def launched(db: Database, settings: Settings, **options: object) -> int:
    round_id = await seed_round(
        db, deadline=datetime.now(UTC) + timedelta(days=5), keys=[INTERIOR], **options
    )
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    return round_id


async def deliver(db: Database, settings: Settings, *, round_id: int | None) -> delivery.DeliveryOutcome:
    sender = SmtpSender(delivery.smtp_config(settings))
    try:
        return await delivery.deliver_due(db, sender, settings, round_id=round_id, limit=100)
    finally:
        await sender.close()


def received(mailbox_: DevMailbox, address: str = FOCAL_POINT) -> list[EmailMessage]:
    """What the server filed for an address, parsed from the raw bytes it got (not the viewer's reading)."""
    found = []
    for entry in mailbox_.for_recipient(address):
        message = BytesParser(policy=policy.default).parsebytes(mailbox_.get(entry.key).raw)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def header_lines(message: EmailMessage) -> list[str]:
    return [name.lower() for name in message]


async def set_contact(db: Database, round_id: int, name: str, address: str | None) -> None:
    """As the round would be if its contact were changed (or written by hand into the database)."""
    async with db.write_session() as session:
        await session.exec(
            update(Round).where(col(Round.id) == round_id).values(contact_name=name, contact_email=address)
        )
        await session.commit()


async def test_an_invitation_comes_from_the_secretariat_and_replies_reach_the_round_s_contact(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(
        settings,
        sink,
        mail_from="Roundtable <noreply@roundtable.gov.example>",
        secretariat_name="Cabinet office",
    )
    round_id = await launched(db, settings, contact_name=CONTACT[0], contact_email=CONTACT[1])

    assert (await deliver(db, settings, round_id=round_id)).sent == 2

    (message,) = received(mailbox)
    assert parseaddr(str(message["From"])) == ("Cabinet office", "noreply@roundtable.gov.example")
    assert parseaddr(str(message["Reply-To"])) == CONTACT
    assert header_lines(message).count("reply-to") == 1
    assert "Cabinet office" in mailbox.get(mailbox.for_recipient(FOCAL_POINT)[0].key).text  # its signature


async def test_the_invitation_carries_the_coordinator_s_cover_message_and_whom_to_ask(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink)
    cover = "Please pay attention to section 4.\nThe committee meets on 15 January <b>sharp</b>."
    round_id = await launched(
        db, settings, contact_name=CONTACT[0], contact_email=CONTACT[1], cover_message=cover
    )

    await deliver(db, settings, round_id=round_id)

    letter = mailbox.get(mailbox.for_recipient(FOCAL_POINT)[0].key)
    assert cover in letter.text
    assert f"{CONTACT[0]}, {CONTACT[1]}" in letter.text
    assert "The committee meets on 15 January &lt;b&gt;sharp&lt;/b&gt;." in (letter.html or "")
    assert "<b>sharp</b>" not in (letter.html or "")


async def test_without_a_contact_replies_reach_the_coordinator_who_created_the_round(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    await create_account(db, COORDINATOR, Role.coordinator)
    settings = pointed_at(settings, sink)
    round_id = await launched(db, settings, created_by=await user_id_of(db, COORDINATOR))

    await deliver(db, settings, round_id=round_id)

    (message,) = received(mailbox)
    assert parseaddr(str(message["From"])) == ("Consultation secretariat", "roundtable@localhost")
    assert parseaddr(str(message["Reply-To"])) == ("", COORDINATOR)


async def test_with_neither_a_contact_nor_a_coordinator_there_is_no_reply_to(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink)
    round_id = await launched(db, settings)

    await deliver(db, settings, round_id=round_id)

    (message,) = received(mailbox)
    assert "reply-to" not in header_lines(message)


async def test_an_albanian_secretariat_name_arrives_encoded_and_reads_back_exactly(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink, secretariat_name=ALBANIAN)
    round_id = await launched(db, settings, contact_name="Drejtoria e Përgjithshme", contact_email=CONTACT[1])

    await deliver(db, settings, round_id=round_id)

    (entry,) = mailbox.for_recipient(FOCAL_POINT)
    raw = mailbox.get(entry.key).raw
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    assert head.isascii()  # the names travel as RFC 2047 encoded words, not raw UTF-8
    (message,) = received(mailbox)
    assert parseaddr(str(message["From"])) == (ALBANIAN, "roundtable@localhost")
    assert parseaddr(str(message["Reply-To"])) == ("Drejtoria e Përgjithshme", CONTACT[1])
    assert ALBANIAN in mailbox.get(entry.key).text


@pytest.mark.parametrize(
    "hostile",
    [
        "Arta\r\nBcc: spy@attacker.example",
        "Arta\nBcc: spy@attacker.example",
        "Arta\rBcc: spy@attacker.example",
        "Arta\r\n\r\nA body of the attacker's",
        'Arta" <spy@attacker.example>, "x',
    ],
)
async def test_a_line_break_in_the_contact_s_name_cannot_add_a_header(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox, hostile: str
) -> None:
    settings = pointed_at(settings, sink)
    round_id = await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=5), keys=[INTERIOR])
    await set_contact(db, round_id, hostile, CONTACT[1])  # past the API's checks, as if written by hand
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)

    assert (await deliver(db, settings, round_id=round_id)).sent == 2

    (message,) = received(mailbox)
    assert "bcc" not in header_lines(message)
    assert header_lines(message).count("reply-to") == 1
    # One mailbox, the contact's: the name is shown on one line, whatever it holds.
    ((name, address),) = getaddresses([str(message["Reply-To"])])
    assert address == CONTACT[1]
    assert name == " ".join(hostile.replace("\r", " ").replace("\n", " ").split())
    # The letter names the contact on one line too: nothing of the name stands on a line of its own.
    text = mailbox.get(mailbox.for_recipient(FOCAL_POINT)[0].key).text
    assert [line for line in text.splitlines() if "attacker's" in line and CONTACT[1] not in line] == []
    assert mailbox.for_recipient("spy@attacker.example") == []


async def test_a_contact_address_with_a_line_break_is_not_used(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    await create_account(db, COORDINATOR, Role.coordinator)
    settings = pointed_at(settings, sink)
    round_id = await seed_round(
        db,
        deadline=datetime.now(UTC) + timedelta(days=5),
        keys=[INTERIOR],
        created_by=await user_id_of(db, COORDINATOR),
    )
    await set_contact(db, round_id, "Arta", "arta@kryeministria.gov.example\r\nBcc: spy@attacker.example")
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)

    assert (await deliver(db, settings, round_id=round_id)).sent == 2

    (message,) = received(mailbox)
    assert "bcc" not in header_lines(message)
    assert parseaddr(str(message["Reply-To"])) == ("", COORDINATOR)  # the next one who can answer


async def test_a_retry_keeps_the_reply_to_decided_and_a_resend_names_the_contact_of_its_time(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    """The Reply-To is fixed with the decision, as the message's words are: a message decided before the
    contact changed says what was decided; a resend is a decision of its own, made now."""
    settings = pointed_at(settings, sink)
    round_id = await launched(db, settings, contact_name=CONTACT[0], contact_email=CONTACT[1])
    await set_contact(db, round_id, "Besa Kola", "besa.kola@kryeministria.gov.example")

    await deliver(db, settings, round_id=round_id)
    (first,) = received(mailbox)
    assert parseaddr(str(first["Reply-To"])) == CONTACT

    async with db.write_session() as session:
        await task_changes.resend_links(
            session, round_id=round_id, key=INTERIOR, actor=TEST_ACTOR, settings=settings
        )
    await deliver(db, settings, round_id=round_id)
    newest, _first = received(mailbox)
    assert parseaddr(str(newest["Reply-To"])) == ("Besa Kola", "besa.kola@kryeministria.gov.example")


async def test_every_email_of_a_round_carries_its_reply_to_and_a_digest_of_rounds_apart_none(
    db: Database, settings: Settings
) -> None:
    """Fixed when the mail is queued, whatever decided it; a message about two rounds with different
    contacts (a day's reminder) has no one to answer for both."""
    first = await seed_round(
        db, deadline=datetime.now(UTC) + timedelta(days=5), contact_name=CONTACT[0], contact_email=CONTACT[1]
    )
    second = await seed_round(
        db,
        deadline=datetime.now(UTC) + timedelta(days=5),
        contact_email="besa.kola@kryeministria.gov.example",
    )
    twin = await seed_round(
        db, deadline=datetime.now(UTC) + timedelta(days=5), contact_name=CONTACT[0], contact_email=CONTACT[1]
    )

    def mail(key: str, round_id: int | None, about: tuple[int, ...] = ()) -> Mail:
        return Mail(
            key=key,
            kind=MessageKind.reminder,
            to_email=FOCAL_POINT,
            language=Language.en,
            context={},
            round_id=round_id,
            about_rounds=about,
        )

    async with db.write_session() as session:
        await outbox.enqueue(
            session,
            mails=[
                mail("one", first),
                mail("two", second),
                mail("apart", first, (first, second)),
                mail("alike", first, (first, twin)),
                mail("none", None),
            ],
        )
        await session.commit()
    async with db.session() as session:
        found = dict((await session.exec(select(OutboxMessage.key, OutboxMessage.reply_to))).all())
    assert found == {
        "one": mailbox(*CONTACT),
        "two": "besa.kola@kryeministria.gov.example",
        "apart": None,
        "alike": mailbox(*CONTACT),
        "none": None,
    }


def an_email(**changes: object) -> OutgoingEmail:
    email = OutgoingEmail(FOCAL_POINT, "Focal point", "Subject", "text", "<p>html</p>", "<a.b@roundtable>")
    return OutgoingEmail(**{**{name: getattr(email, name) for name in email.__slots__}, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply_to",
    [
        '"Arta" <arta@example.org>\r\nBcc: spy@attacker.example',
        '"Arta\nBcc: spy@attacker.example" <arta@example.org>',
        "arta@example.org\rBcc: spy@attacker.example",
    ],
)
def test_the_writer_refuses_a_reply_to_of_more_than_one_line(reply_to: str) -> None:
    with pytest.raises(ValueError, match="single line"):
        serialize_message(an_email(reply_to=reply_to), "Roundtable <roundtable@localhost>")


def test_a_caller_cannot_set_reply_to_through_the_extra_headers() -> None:
    with pytest.raises(ValueError, match="cannot be set"):
        serialize_message(an_email(headers={"Reply-To": "spy@attacker.example"}), "x <x@example.org>")


@pytest.mark.parametrize("name", ["Arta\r\nBcc: x@example.org", "Arta\nBcc: x@example.org"])
def test_a_mailbox_is_never_made_of_more_than_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="single line"):
        mailbox(name, "arta@example.org")


async def test_the_dev_mailbox_shows_whom_a_reply_reaches(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink)
    round_id = await launched(db, settings, contact_name="Drejtoria e Përgjithshme", contact_email=CONTACT[1])
    await deliver(db, settings, round_id=round_id)
    (entry,) = mailbox.for_recipient(FOCAL_POINT)

    app = create_app(settings, db=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as web:
        page = await web.get(f"/dev/mail/{entry.key}", headers={"Accept": "text/html"})

    assert page.status_code == 200
    shown = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", page.text))
    assert shown["Reply-To"] == f"Drejtoria e Përgjithshme &lt;{CONTACT[1]}&gt;"
    assert shown["From"] == "Consultation secretariat &lt;roundtable@localhost&gt;"
