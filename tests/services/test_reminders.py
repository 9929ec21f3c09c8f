"""Reminders across rounds: a person with open tasks in several rounds gets one message a day, whichever
round's scheduler comes first, even when two decide at the same moment; it lists every task of theirs."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.enums import ReminderStatus, TaskStatus
from models.rounds import ReviewTask, Round, TaskReminder
from notifications.mailbox import DevMailbox, SinkServer
from notifications.smtp import SmtpSender
from services import delivery, reminders, rounds
from services.db import Database
from services.rounds import get_round_row
from services.settings import Settings
from tests.harness import TEST_ACTOR, seed_round

TIRANE = ZoneInfo("Europe/Tirane")
KEYS = ["ministry-of-interior", "ministry-of-finance"]


async def plan_of(session: AsyncSession, round_id: int, *, now: datetime) -> reminders.ReminderPlan:
    return await reminders.plan(session, round_=await get_round_row(session, round_id=round_id), now=now)


async def two_rounds_due_at_nine(db: Database, settings: Settings) -> tuple[list[int], datetime]:
    """Two open rounds consulting the same ministries, each with a reminder due at 09:00 on the same
    day (one working day before a deadline the next working day), tasks invited."""
    ids = []
    for title in ("Migration strategy", "Integration action plan"):
        round_id = await seed_round(
            db,
            deadline=datetime.now(UTC) + timedelta(days=30),
            keys=KEYS,
            reminder_policy={
                "working_days_before": [1],
                "at": "09:00",
                "text": f"About the {title.lower()}.",
            },
        )
        async with db.write_session() as session:
            await session.exec(update(Round).where(col(Round.id) == round_id).values(title=title))
            await session.commit()
        async with db.write_session() as session:
            await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=settings)
        ids.append(round_id)
    # A Tuesday at least two weeks ahead that is a working day, with the Wednesday after it one too.
    off = holidays.country_holidays("AL", years=range(2026, 2040), observed=True)
    day = datetime.now(TIRANE).date() + timedelta(days=14)
    while day.weekday() != 1 or day in off or day + timedelta(days=1) in off:
        day += timedelta(days=1)
    deadline = datetime.combine(day + timedelta(days=1), time(17, 0), tzinfo=TIRANE)
    async with db.write_session() as session:
        await session.exec(
            update(ReviewTask)
            .where(col(ReviewTask.round_id).in_(ids))
            .values(deadline=deadline, status=TaskStatus.invited)
        )
        await session.commit()
    nine = datetime.combine(day, time(9, 0), tzinfo=TIRANE)
    return ids, nine


async def test_two_rounds_deciding_at_once_send_each_person_one_message_listing_both(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> None:
    settings = settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port})
    round_ids, nine = await two_rounds_due_at_nine(db, settings)
    async with db.session() as session:
        plans = [await plan_of(session, round_id, now=nine) for round_id in round_ids]
        early = await reminders.plan(
            session,
            round_=await get_round_row(session, round_id=round_ids[0]),
            now=nine - timedelta(minutes=1),
        )
    assert [plan.due for plan in plans] == [2, 2]
    assert (early.due, early.next_at) == (0, nine)

    async def decide(round_id: int) -> int:
        async with db.write_session() as session:
            return await reminders.send_reminders(session, round_id=round_id, now=nine, settings=settings)

    decided = await asyncio.gather(*(decide(round_id) for round_id in round_ids))
    assert sorted(decided) == [0, 4]  # four people, one message each, whoever decided
    again = await asyncio.gather(*(decide(round_id) for round_id in round_ids))
    assert again == [0, 0]

    sender = SmtpSender(delivery.smtp_config(settings))
    try:
        for round_id in round_ids:
            await delivery.deliver_due(db, sender, settings, round_id=round_id, limit=100)
    finally:
        await sender.close()
    received = [mailbox.get(entry.key) for entry in mailbox.list(limit=100)]
    digests = [message for message in received if message.subject.startswith("Kujtesë")]
    assert Counter(parseaddr(message.to)[1] for message in digests) == {
        "migration.fp@ministry-of-interior.gov.example": 1,
        "migration.alt@ministry-of-interior.gov.example": 1,
        "migration.fp@ministry-of-finance.gov.example": 1,
        "migration.alt@ministry-of-finance.gov.example": 1,
    }
    for message in digests:
        assert "2 konsultime" in message.subject
        assert "Migration strategy" in message.text
        assert "Integration action plan" in message.text
        assert "About the migration strategy." in message.text
        assert "About the integration action plan." in message.text
        assert len({url for url in message.links if "/t/" in url}) == 2  # a working link per task

    async with db.session() as session:
        decided_rows = (await session.exec(select(TaskReminder))).all()
        after = [await plan_of(session, round_id, now=nine) for round_id in round_ids]
    assert len(decided_rows) == 4
    assert {row.status for row in decided_rows} == {ReminderStatus.sent}
    assert [plan.due for plan in after] == [0, 0]


async def test_a_signed_off_task_and_a_day_missed_get_no_reminder(db: Database, settings: Settings) -> None:
    round_ids, nine = await two_rounds_due_at_nine(db, settings)
    async with db.write_session() as session:
        await session.exec(
            update(ReviewTask)
            .where(col(ReviewTask.round_id) == round_ids[0])
            .values(status=TaskStatus.signed_off)
        )
        await session.commit()
    evening = nine.replace(hour=20)  # the worker was down all day: too late to remind today
    async with db.session() as session:
        signed = await reminders.plan(
            session, round_=await get_round_row(session, round_id=round_ids[0]), now=nine
        )
        late = await reminders.plan(
            session, round_=await get_round_row(session, round_id=round_ids[1]), now=evening
        )
    assert signed.due == 0
    assert late.due == 0
    async with db.write_session() as session:
        assert (
            await reminders.send_reminders(session, round_id=round_ids[1], now=evening, settings=settings)
            == 0
        )
