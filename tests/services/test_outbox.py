"""The outbox against a real SMTP server (aiosmtpd) on both databases: deciders that race, servers that
refuse for good or for now, servers that are down, and attempts that overlap or die half-way."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import delete, update
from sqlmodel import col, select

from models.enums import Language, MessageKind, OutboxStatus
from models.outbox import OutboxMessage
from models.reviews import AccessLink, LinkToken
from notifications.mailbox import DevMailbox, SinkServer, serve_smtp
from notifications.smtp import SmtpSender
from services import delivery, outbox, review_page, rounds, scheduling
from services.audit import browse
from services.db import Database
from services.errors import Gone
from services.outbox import Mail
from services.settings import Settings
from tests.harness import TEST_ACTOR, seed_round
from tests.notifications.support import RecordingSink, round_closed_context, unused_port

THREE = ["ministry-of-interior", "ministry-of-finance", "municipality-tirane"]  # six contacts
NOTICE_TO = "secretariat@interior.gov.example"


class SlowSink(RecordingSink):
    """A mail server that takes its time over every message, as a busy relay does."""

    delay = 0.3

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def slow_sink(tmp_path: Path) -> AsyncIterator[tuple[SinkServer, DevMailbox]]:
    async with await serve_smtp(SlowSink(tmp_path / "slow"), "127.0.0.1", 0) as server:
        yield server, DevMailbox(tmp_path / "slow")


def pointed_at(settings: Settings, port: int, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "outbox_retry_start_seconds": 0.5,
            "outbox_retry_max_seconds": 2,
            **changes,
        }
    )


async def deliver(db: Database, settings: Settings, *, round_id: int | None) -> delivery.DeliveryOutcome:
    sender = SmtpSender(delivery.smtp_config(settings))
    try:
        return await delivery.deliver_due(db, sender, settings, round_id=round_id, limit=200)
    finally:
        await sender.close()


def notice(key: str = "round_closed:test", to: str = NOTICE_TO) -> Mail:
    return Mail(
        key=key,
        kind=MessageKind.round_closed,
        to_email=to,
        language=Language.en,
        context=round_closed_context(),
    )


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list(await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))))


async def launched_round(db: Database, settings: Settings) -> int:
    """A launched round of three organisations: its six invitations are in the outbox, not yet sent."""
    round_id = await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=5), keys=THREE)
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
    return round_id


def recipients(mailbox: DevMailbox) -> Counter[str]:
    return Counter(parseaddr(entry.to)[1] for entry in mailbox.list())


async def test_two_deciders_racing_for_one_key_give_one_row_and_one_email(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    async def decide() -> None:
        async with db.write_session() as session:
            await outbox.enqueue(session, mails=[notice()])
            await asyncio.sleep(0.05)  # both transactions are open at once
            await session.commit()

    await asyncio.gather(decide(), decide())
    async with db.write_session() as session:  # and once more, after both committed
        await outbox.enqueue(session, mails=[notice()])
        await session.commit()

    assert [row.key for row in await rows(db)] == ["round_closed:test"]
    outcome = await deliver(db, pointed_at(settings, sink.port), round_id=None)
    assert (outcome.sent, outcome.refused, outcome.retry_later) == (1, 0, 0)
    assert recipients(mailbox) == Counter({NOTICE_TO: 1})
    again = await deliver(db, pointed_at(settings, sink.port), round_id=None)
    assert again.claimed == 0
    assert mailbox.count() == 1
    (row,) = await rows(db)
    assert row.status == OutboxStatus.sent
    assert row.sent_at is not None
    assert row.subject
    assert row.message_id.startswith("<round_closed.test@")


async def test_a_permanent_refusal_is_recorded_and_never_retried(
    db: Database, settings: Settings, sink: SinkServer, sink_handler: RecordingSink, mailbox: DevMailbox
) -> None:
    sink_handler.rcpt_replies[NOTICE_TO] = "550 5.1.1 no such user"
    async with db.write_session() as session:
        await outbox.enqueue(session, mails=[notice()])
        await session.commit()
    settings = pointed_at(settings, sink.port)

    outcome = await deliver(db, settings, round_id=None)

    assert (outcome.sent, outcome.refused, outcome.retry_later) == (0, 1, 0)
    (row,) = await rows(db)
    assert row.status == OutboxStatus.failed
    assert "550" in (row.last_error or "")
    del sink_handler.rcpt_replies[NOTICE_TO]  # the server would take it now: it is not tried again
    await asyncio.sleep(settings.outbox_retry_max_seconds + 0.2)
    assert (await deliver(db, settings, round_id=None)).claimed == 0
    assert mailbox.count() == 0
    async with db.session() as session:
        page = await browse.list_events(session, action="email.failed")
    assert [event.data["to"] for event in page.events] == [NOTICE_TO]


async def test_a_temporary_refusal_is_retried_with_backoff_and_delivered_once(
    db: Database, settings: Settings, sink: SinkServer, sink_handler: RecordingSink, mailbox: DevMailbox
) -> None:
    sink_handler.rcpt_replies[NOTICE_TO] = "451 4.3.0 try again later"
    async with db.write_session() as session:
        await outbox.enqueue(session, mails=[notice()])
        await session.commit()
    settings = pointed_at(settings, sink.port, outbox_retry_start_seconds=1.0)

    first = await deliver(db, settings, round_id=None)
    assert (first.sent, first.retry_later) == (0, 1)
    (row,) = await rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.pending, 1)
    assert row.due_at > datetime.now(UTC)
    assert "451" in (row.last_error or "")
    assert (await deliver(db, settings, round_id=None)).claimed == 0  # not before its time

    await asyncio.sleep(1.1)
    second = await deliver(db, settings, round_id=None)  # still refused: the wait doubles
    assert second.retry_later == 1
    (row,) = await rows(db)
    assert row.attempts == 2
    assert row.due_at - datetime.now(UTC) > timedelta(seconds=1.5)

    del sink_handler.rcpt_replies[NOTICE_TO]
    await asyncio.sleep(2.1)
    third = await deliver(db, settings, round_id=None)
    assert third.sent == 1
    assert recipients(mailbox) == Counter({NOTICE_TO: 1})
    await asyncio.sleep(0.3)
    assert (await deliver(db, settings, round_id=None)).claimed == 0
    assert mailbox.count() == 1


async def test_a_stopped_mail_server_is_retried_and_each_invitation_delivered_once_it_is_back(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    port = unused_port()
    settings = pointed_at(settings, port)
    round_id = await launched_round(db, settings)

    down = await deliver(db, settings, round_id=round_id)
    assert (down.sent, down.retry_later) == (0, 6)
    async with db.session() as session:
        tokens = (await session.exec(select(LinkToken))).all()
    assert tokens == []  # nothing was delivered, so no token of those attempts may open anything

    mailbox = DevMailbox(tmp_path / "back")
    async with await serve_smtp(RecordingSink(tmp_path / "back"), "127.0.0.1", port):
        await asyncio.sleep(settings.outbox_retry_start_seconds + 0.1)
        back = await deliver(db, settings, round_id=round_id)
        assert back.sent == 6
        await asyncio.sleep(settings.outbox_retry_max_seconds + 0.2)
        assert (await deliver(db, settings, round_id=round_id)).claimed == 0
    assert set(recipients(mailbox).values()) == {1}
    assert len(recipients(mailbox)) == 6
    for message in (mailbox.get(entry.key) for entry in mailbox.list()):
        (token,) = {url.rsplit("/t/", 1)[1] for url in message.links if "/t/" in url}
        async with db.session() as session:
            page = await review_page.review_page(session, token=token)
        assert page.context.link.email == parseaddr(message.to)[1]


async def test_overlapping_attempts_send_each_invitation_once(
    db: Database, settings: Settings, slow_sink: tuple[SinkServer, DevMailbox]
) -> None:
    """A retry that starts while the first attempt is still sending (a slow server) finds nothing to send."""
    server, mailbox = slow_sink
    settings = pointed_at(settings, server.port, smtp_connections=1)
    round_id = await launched_round(db, settings)

    outcomes = await asyncio.gather(
        deliver(db, settings, round_id=round_id), deliver(db, settings, round_id=round_id)
    )

    assert sum(outcome.sent for outcome in outcomes) == 6
    assert len(recipients(mailbox)) == 6
    assert set(recipients(mailbox).values()) == {1}


async def test_a_claim_left_by_a_dead_attempt_lapses_and_both_copies_of_a_repeated_link_work(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink.port, outbox_lease_seconds=1)
    round_id = await launched_round(db, settings)
    # An attempt claims the invitations and makes their tokens, the server takes the emails, and the
    # worker dies before it records that.
    async with db.write_session() as session:
        taken, outcome = await session.run_sync(delivery._take, round_id, 200, settings)
        await session.commit()
    recorder = delivery._Recorder(db, settings, outcome, delivery._Leases(db, settings, {}))
    claimed = await delivery._written(taken, settings, recorder)
    assert len(claimed) == 6
    first_tokens = {row.email.to_address: row.email.text for row in claimed}
    async with db.session() as session:
        assert (await outbox.plan(session, round_id=round_id)).due == 0  # held by the dead attempt

    await asyncio.sleep(1.1)  # its lease lapses
    async with db.session() as session:
        assert (await outbox.plan(session, round_id=round_id)).due == 6
    outcome = await deliver(db, settings, round_id=round_id)
    assert outcome.sent == 6
    assert mailbox.count() == 6
    for address, text in first_tokens.items():
        (old_url,) = [word for word in text.split() if "/t/" in word]
        (message,) = [mailbox.get(entry.key) for entry in mailbox.for_recipient(address)]
        (new_url,) = [url for url in message.links if "/t/" in url]
        assert old_url != new_url
        for url in (old_url, new_url):  # the copy the dead attempt sent still opens the page
            async with db.session() as session:
                page = await review_page.review_page(session, token=url.rsplit("/t/", 1)[1])
            assert page.context.link.email == address


async def test_a_withdrawn_link_is_not_emailed(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink.port)
    round_id = await launched_round(db, settings)
    async with db.write_session() as session:
        await session.exec(
            update(AccessLink)
            .where(col(AccessLink.email).startswith("migration.alt@ministry-of-finance"))
            .values(revoked_at=datetime.now(UTC))
        )
        await session.commit()

    outcome = await deliver(db, settings, round_id=round_id)

    assert (outcome.sent, outcome.cancelled) == (5, 1)
    assert mailbox.count() == 5
    cancelled = [row for row in await rows(db) if row.status == OutboxStatus.cancelled]
    assert [row.to_email for row in cancelled] == ["migration.alt@ministry-of-finance.gov.example"]


async def test_a_message_that_cannot_be_written_fails_without_stopping_the_others(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    broken = Mail(
        key=f"round_closed:{uuid.uuid4().hex}",
        kind=MessageKind.round_closed,
        to_email=NOTICE_TO,
        language=Language.en,
        context={"round_title": "missing everything else"},
    )
    async with db.write_session() as session:
        await outbox.enqueue(session, mails=[broken, notice(to="coordinator@secretariat.example")])
        await session.commit()

    outcome = await deliver(db, pointed_at(settings, sink.port), round_id=None)

    assert (outcome.sent, outcome.refused) == (1, 1)
    statuses = {row.to_email: (row.status, row.last_error) for row in await rows(db)}
    assert statuses[NOTICE_TO][0] == OutboxStatus.failed
    assert "cannot be written" in (statuses[NOTICE_TO][1] or "")
    assert recipients(mailbox) == Counter({"coordinator@secretariat.example": 1})


async def test_tokens_of_a_revoked_link_open_nothing(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = pointed_at(settings, sink.port)
    round_id = await launched_round(db, settings)
    await deliver(db, settings, round_id=round_id)
    address = "sporteli.migracionit@tirane.bashki.example"
    (message,) = [mailbox.get(entry.key) for entry in mailbox.for_recipient(address)]
    (url,) = [url for url in message.links if "/t/" in url]
    async with db.write_session() as session:
        await session.exec(
            update(AccessLink).where(AccessLink.email == address).values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
    async with db.session() as session:
        with pytest.raises(Gone):
            await review_page.review_page(session, token=url.rsplit("/t/", 1)[1])


async def test_the_scheduler_gives_a_round_launched_without_invitations_the_ones_it_lacks_once(
    db: Database, settings: Settings
) -> None:
    """What a round launched by an older version looks like: links, but no outbox rows."""
    round_id = await launched_round(db, settings)
    async with db.write_session() as session:
        await session.exec(delete(OutboxMessage).where(col(OutboxMessage.round_id) == round_id))
        await session.commit()

    async with db.write_session() as session:
        first = await scheduling.open_round(session, round_id=round_id, settings=settings)
    async with db.write_session() as session:
        second = await scheduling.open_round(session, round_id=round_id, settings=settings)

    assert (first.links, first.invitations, second.invitations) == (0, 6, 0)
    async with db.session() as session:
        links = (await session.exec(select(AccessLink).where(AccessLink.round_id == round_id))).all()
    assert sorted(row.key for row in await rows(db)) == sorted(
        f"invitation:{link.task_id}:{link.role}" for link in links
    )
    assert {row.link_id for row in await rows(db)} == {link.id for link in links}


class LateSink(RecordingSink):
    """A relay that takes the message but answers only after the sender has stopped waiting."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(1.0)
        return reply


async def test_an_invitation_whose_fate_is_unknown_keeps_a_working_link_and_is_sent_again(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    mailbox = DevMailbox(tmp_path / "late")
    async with await serve_smtp(LateSink(tmp_path / "late"), "127.0.0.1", 0) as server:
        settings = pointed_at(settings, server.port, outbox_retry_start_seconds=0.2)
        round_id = await seed_round(
            db, deadline=datetime.now(UTC) + timedelta(days=5), keys=["municipality-tirane"]
        )
        async with db.write_session() as session:
            await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
        impatient = SmtpSender(replace(delivery.smtp_config(settings), timeout=0.3))
        try:
            first = await delivery.deliver_due(db, impatient, settings, round_id=round_id, limit=10)
        finally:
            await impatient.close()
        assert (first.sent, first.retry_later) == (0, 2)
        assert mailbox.count() == 2  # the relay had taken them all the same
        await asyncio.sleep(settings.outbox_retry_start_seconds)
        second = await deliver(db, settings, round_id=round_id)
        assert second.sent == 2
    copies = [mailbox.get(entry.key) for entry in mailbox.list()]
    assert len(copies) == 4
    assert len({copy.header("Message-ID") for copy in copies}) == 2  # the same two messages, each twice
    for copy in copies:  # the copies the sender gave up on open the page as well as the others
        (url,) = [url for url in copy.links if "/t/" in url]
        async with db.session() as session:
            page = await review_page.review_page(session, token=url.rsplit("/t/", 1)[1])
        assert page.context.link.email == parseaddr(copy.to)[1]
