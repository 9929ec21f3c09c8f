"""Invitations against a real SMTP server that is slow, and attempts that overlap or die half-way."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import update
from sqlmodel import select

from models.reviews import AccessLink
from notifications.mailbox import DevMailbox, SinkServer, serve_smtp
from notifications.smtp import SmtpSender
from services import outreach, review_page, rounds, scheduling
from services.db import Database
from services.errors import NotFound
from services.settings import Settings
from tests.harness import TEST_ACTOR, seed_round
from tests.notifications.support import RecordingSink

THREE = ["ministry-of-interior", "ministry-of-finance", "municipality-tirane"]  # six contacts


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


@pytest.fixture
async def open_round_id(db: Database) -> int:
    round_id = await seed_round(db, deadline=datetime.now(UTC) + timedelta(days=5), keys=THREE)
    async with db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR)
    async with db.write_session() as session:
        await scheduling.open_round(session, round_id=round_id)
    return round_id


def one_connection(settings: Settings, server: SinkServer) -> Settings:
    return settings.model_copy(
        update={"smtp_host": server.host, "smtp_port": server.port, "smtp_connections": 1}
    )


async def test_overlapping_attempts_send_each_invitation_once(
    db: Database, settings: Settings, open_round_id: int, slow_sink: tuple[SinkServer, DevMailbox]
) -> None:
    """A retry that starts while the first attempt is still sending (a slow server) finds nothing to send."""
    server, mailbox = slow_sink
    settings = one_connection(settings, server)
    first, second = SmtpSender(outreach.smtp_config(settings)), SmtpSender(outreach.smtp_config(settings))
    try:
        outcomes = await asyncio.gather(
            outreach.send_due_invitations(db, first, settings, round_id=open_round_id, limit=200),
            outreach.send_due_invitations(db, second, settings, round_id=open_round_id, limit=200),
        )
    finally:
        await first.close()
        await second.close()

    assert sum(outcome.sent for outcome in outcomes) == 6
    received = Counter(parseaddr(entry.to)[1] for entry in mailbox.list())
    assert len(received) == 6
    assert set(received.values()) == {1}


async def test_a_claim_left_by_a_dead_attempt_lapses_and_its_links_never_work(
    db: Database, settings: Settings, open_round_id: int, slow_sink: tuple[SinkServer, DevMailbox]
) -> None:
    server, mailbox = slow_sink
    settings = one_connection(settings, server)
    async with db.write_session() as session:  # an attempt claims the links, then its worker dies
        claims = await outreach._claim_due_invitations(session, round_id=open_round_id, limit=200)
    assert len(claims) == 6
    async with db.session() as session:
        plan = await scheduling.plan_round(session, round_id=open_round_id, now=datetime.now(UTC))
    assert plan.invitations_due == 0
    assert plan.claims_lapse_at is not None
    assert plan.claims_lapse_at > datetime.now(UTC) + timedelta(minutes=10)

    async with db.write_session() as session:  # the lease runs out
        await session.exec(
            update(AccessLink).values(invitation_claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    async with db.session() as session:
        plan = await scheduling.plan_round(session, round_id=open_round_id, now=datetime.now(UTC))
    assert (plan.invitations_due, plan.claims_lapse_at) == (6, None)
    sender = SmtpSender(outreach.smtp_config(settings))
    try:
        outcome = await outreach.send_due_invitations(db, sender, settings, round_id=open_round_id, limit=200)
    finally:
        await sender.close()

    assert outcome.sent == 6
    assert mailbox.count() == 6
    for claim in claims:  # what the dead attempt may have emailed opens nothing
        async with db.session() as session:
            with pytest.raises(NotFound):
                await review_page.review_page(session, token=claim.token)
    async with db.session() as session:
        stored = list(await session.exec(select(AccessLink)))
    assert all(link.invited_at and link.invitation_claimed_until is None for link in stored)
