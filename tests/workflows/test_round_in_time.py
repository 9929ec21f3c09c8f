"""The round in time, on the time-skipping Temporal server: weeks pass in seconds while the activities use
the real database and a real SMTP sink. Expected days are worked out here from the holiday library
directly, not through the code under test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_library
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from models.documents import Section
from models.enums import CommentKind, Decision, Role
from models.reviews import CommentCreate, SignOffCreate
from models.rounds import ReviewTask
from notifications.mailbox import DevMailbox, MailboxMessage
from services import comments, reviews, round_endings
from services.db import Database
from services.links import ClientInfo
from services.settings import Settings
from tests.conftest import TEMPORAL_TEST_SERVER
from tests.harness import (
    SIGNING_SETTINGS,
    TEST_ACTOR,
    WorkerHandle,
    create_account,
    eventually,
    messages_to,
    seed_round,
    user_id_of,
)
from workflows.client import Scheduler, launch_round

TIRANE = ZoneInfo("Europe/Tirane")
CLIENT = ClientInfo(ip="127.0.0.1", user_agent="pytest")
INTERIOR = "migration.fp@ministry-of-interior.gov.example"
FINANCE = "migration.fp@ministry-of-finance.gov.example"
FINANCE_ALTERNATE = "migration.alt@ministry-of-finance.gov.example"
TIRANE_COUNTER = "sporteli.migracionit@tirane.bashki.example"
COORDINATOR = "coordinator@secretariat.example"
KEYS = ["ministry-of-interior", "ministry-of-finance", "municipality-tirane"]


def albanian_holidays(start: date) -> holiday_library.HolidayBase:
    return holiday_library.country_holidays("AL", years=range(start.year, start.year + 3), observed=True)


def is_working(day: date, off: holiday_library.HolidayBase) -> bool:
    return day.weekday() < 5 and day not in off


def working_day_before(day: date, count: int, off: holiday_library.HolidayBase) -> date:
    for _ in range(count):
        day -= timedelta(days=1)
        while not is_working(day, off):
            day -= timedelta(days=1)
    return day


def working_days_between(start: date, end: date, off: holiday_library.HolidayBase) -> int:
    return sum(1 for n in range(1, (end - start).days + 1) if is_working(start + timedelta(n), off))


def twenty_working_days_over_a_holiday(today: date) -> tuple[date, date]:
    """The 20th working day from today as the deadline's day, and a weekday public holiday the period runs
    over. When no holiday falls in the next 20 working days, the round starts... later is impossible (the
    time-skipping server starts now), so its deadline moves to just after the next weekday holiday."""
    off = albanian_holidays(today)
    deadline_day = today
    for _ in range(20):
        deadline_day += timedelta(days=1)
        while not is_working(deadline_day, off):
            deadline_day += timedelta(days=1)
    crossed = [day for day in off if today < day < deadline_day and day.weekday() < 5]
    if crossed:
        return min(crossed), deadline_day
    holiday = min(day for day in off if day > deadline_day and day.weekday() < 5)
    deadline_day = holiday
    for _ in range(2):
        deadline_day += timedelta(days=1)
        while not is_working(deadline_day, off):
            deadline_day += timedelta(days=1)
    return holiday, deadline_day


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEMPORAL_TEST_SERVER), test_server_startup_timeout=timedelta(seconds=60)
    )
    try:
        yield env
    finally:
        await env.shutdown()


def decided_at(message: MailboxMessage) -> datetime:
    value = message.header("X-Roundtable-Decided-At")
    assert value, f"{message.subject!r} does not say when it was decided"
    return datetime.fromisoformat(value).astimezone(TIRANE)


def of_kind(mailbox: DevMailbox, address: str, words: str) -> list[MailboxMessage]:
    return [message for message in messages_to(mailbox, address) if words in message.subject]


async def first_token(mailbox: DevMailbox, address: str) -> str:
    (invitation,) = of_kind(mailbox, address, "konsultim")
    (token,) = {url.rsplit("/t/", 1)[1] for url in invitation.links if "/t/" in url}
    return token


async def test_a_public_consultation_reminds_and_escalates_on_albanian_working_days(
    db: Database, stack_settings: Settings, time_skipping_env: WorkflowEnvironment, mailbox: DevMailbox
) -> None:
    today = datetime.now(TIRANE).date()
    holiday, deadline_day = twenty_working_days_over_a_holiday(today)
    off = albanian_holidays(today)
    deadline = datetime.combine(deadline_day, time(17, 0), tzinfo=TIRANE)
    expected_days = {n: working_day_before(deadline_day, n, off) for n in (7, 2, 1)}
    assert today < holiday < deadline_day
    assert working_days_between(today, deadline_day, off) >= 20

    await create_account(db, COORDINATOR, Role.coordinator)
    round_id = await seed_round(
        db,
        deadline=deadline,
        keys=KEYS,
        created_by=await user_id_of(db, COORDINATOR),
        procedure="public_consultation",
        minimum_period_reason=None,
        reminder_policy={
            "working_days_before": [7, 2, 1],
            "at": "09:00",
            "text": "The committee meets soon.",
        },
    )
    scheduler = Scheduler(stack_settings, client=time_skipping_env.client)
    async with WorkerHandle(time_skipping_env.client, db, stack_settings):
        with time_skipping_env.auto_time_skipping_disabled():
            await launch_round(db, scheduler, round_id=round_id, actor=TEST_ACTOR)
            await eventually(lambda: _count(mailbox), lambda count: count == 6)
            # The interior ministry signs off at once; finance comments on one section and goes quiet.
            await _sign_off(db, await first_token(mailbox, INTERIOR))
            async with db.session() as session:
                section_ids = (await session.exec(select(ReviewTask.section_ids))).first() or []
                by_id = {
                    section.id: (section.number, section.heading)
                    for section in await session.exec(select(Section).where(col(Section.id).in_(section_ids)))
                }
            expected_sections = [by_id[section_id] for section_id in section_ids]
            section_id = section_ids[0]
            async with db.write_session() as session:
                await comments.add_comment(
                    session,
                    token=await first_token(mailbox, FINANCE),
                    data=CommentCreate(
                        section_id=section_id,
                        kind=CommentKind.substantive,
                        body="The return procedure needs a deadline.",
                        submission_id=uuid.uuid4().hex,
                    ),
                    client=CLIENT,
                )
        # Weeks pass; the scheduler sleeps from one reminder to the next and to the deadline.
        await time_skipping_env.sleep(deadline - datetime.now(UTC) + timedelta(days=2))
        with time_skipping_env.auto_time_skipping_disabled():
            await eventually(lambda: _count(mailbox), lambda count: count >= 6 + 12 + 2 + 1)

    for address in (FINANCE, FINANCE_ALTERNATE, TIRANE_COUNTER):
        reminders = sorted(of_kind(mailbox, address, "Kujtesë"), key=decided_at)
        moments = [decided_at(message) for message in reminders]
        assert [moment.date() for moment in moments] == [expected_days[n] for n in (7, 2, 1)], address
        assert all(time(9, 0) <= moment.time() < time(9, 1) for moment in moments), moments
        assert all(is_working(moment.date(), off) for moment in moments)
        assert [
            next(words for words in ("7 ditë pune", "2 ditë pune", "1 ditë pune") if words in message.text)
            for message in reminders
        ] == ["7 ditë pune", "2 ditë pune", "1 ditë pune"]
        assert all("The committee meets soon." in message.text for message in reminders)
    # What is missing: finance commented on its first section, Tiranë on none.
    finance_reminder = of_kind(mailbox, FINANCE, "Kujtesë")[0].text
    tirane_reminder = of_kind(mailbox, TIRANE_COUNTER, "Kujtesë")[0].text
    sections = len(expected_sections)
    assert f"pa komente ende për asnjë nga {sections} seksionet e caktuara" in tirane_reminder
    missing = finance_reminder.split("pa komente ende për ", 1)[1].split("\n", 1)[0]
    assert [f"{number}. {heading}" in missing for number, heading in expected_sections] == [False] + [
        True
    ] * (sections - 1)
    assert of_kind(mailbox, INTERIOR, "Kujtesë") == []  # who has signed off gets none

    for escalation_contact in (
        "secretary.general@ministry-of-finance.gov.example",
        "kryetari@tirane.bashki.example",
    ):
        (escalation,) = messages_to(mailbox, escalation_contact)
        assert deadline <= decided_at(escalation) < deadline + timedelta(minutes=1)
        assert "Afati ka kaluar" in escalation.subject
    assert messages_to(mailbox, "secretary.general@ministry-of-interior.gov.example") == []
    (summary,) = messages_to(mailbox, COORDINATOR)
    assert "2 organisations overdue" in summary.subject
    assert "Ministry of Finance" in summary.text
    assert "Municipality of Tiranë" in summary.text
    assert mailbox.count() == 6 + 3 * 4 + 2 + 1  # nothing twice: invitations, reminders, escalations, summary

    async with db.session() as session:
        statuses = {task.organisation_id: str(task.status) for task in await session.exec(select(ReviewTask))}
    assert sorted(statuses.values()) == ["overdue", "overdue", "signed_off"]
    async with db.write_session() as session:
        closed = await round_endings.close_early(
            session, round_id=round_id, reason="The committee met.", actor=TEST_ACTOR, settings=stack_settings
        )
    assert (closed.counts.no_response, closed.counts.signed_off) == (2, 1)


async def _count(mailbox: DevMailbox) -> int:
    return mailbox.count()


async def _sign_off(db: Database, token: str) -> None:
    async with db.write_session() as session:
        await reviews.sign_off(
            session,
            token=token,
            data=SignOffCreate(
                decision=Decision.approve,
                statement="",
                signer_name="Elira Marku",
                signer_title="Director General",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=CLIENT,
            settings=SIGNING_SETTINGS,
        )
