"""Time and faults together, on real parts: the Temporal dev server as a process of its own (stopped and
started again on the same SQLite file, so it comes back with its timers), the worker as a process of its
own (killed, as a crash would), a real SMTP sink and both databases. The real dev server does not skip
time, so deadlines are put seconds ahead, and reminders are made due by the clock of a time zone where
their time has passed today: a policy's time has minutes, no seconds, so waiting for one to come would
cost up to a minute. Working days are worked out here from the holiday library directly, not through
the code under test."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays as holiday_library
import httpx
import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from models.enums import OutboxStatus, Role, TaskStatus
from models.organisations import Organisation
from models.outbox import OutboxMessage
from models.reviews import AccessLink
from models.rounds import ReviewTask
from notifications.mailbox import DevMailbox, MailboxMessage
from services.cli.processes import (
    Child,
    roundtable_command,
    spawn,
    temporal_dev_server_command,
    wait_for_temporal,
)
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import (
    TEST_ACTOR,
    WorkerHandle,
    create_account,
    eventually,
    fixture_path,
    free_port,
    seed_round,
    user_id_of,
)
from tests.workflows.test_faults import worker_environment
from workflows.client import (
    Scheduler,
    launch_round,
    reconciler_schedule_id,
    replace_outdated_schedulers,
    round_workflow_id,
)
from workflows.names import PHASE_QUERY, SCHEDULER_VERSION

pytestmark = pytest.mark.slow

COORDINATOR = "coordinator@secretariat.example"
JURISDICTION = "AL"
POLICY = {"working_days_before": [1], "at": "07:00", "text": "The committee meets."}
"""One reminder, a working day before the deadline, at the earliest time a policy may have: most hours of
the world's working days are past it."""
FIRST_DEADLINE_IN = timedelta(seconds=3)
"""From the launch: long enough for the invitations and the first reminders to go out before it."""
LATE_DEADLINE_AFTER = timedelta(seconds=8)
"""After the first deadline: long enough for its escalation to go out, the worker to be killed and
Temporal stopped before it."""


class TemporalServer:
    """Temporal's dev server in a process of its own, with SQLite persistence: stopped and started again
    on the same port and file, it comes back with every workflow, timer and schedule."""

    def __init__(self, directory: Path, *extra_args: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.child: Child | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        command = temporal_dev_server_command(
            db_file=self.directory / "temporal.db", port=self.port, log_level="error"
        )
        self.child = spawn("temporal", [*command, *self.extra_args], log_dir=self.directory)
        await wait_for_temporal(self.address, child=self.child)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


@contextlib.asynccontextmanager
async def temporal_server(directory: Path, *extra_args: str) -> AsyncIterator[TemporalServer]:
    server = TemporalServer(directory, *extra_args)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the calendar, worked out here -------------------------------------------------------------------


def is_working(day: date) -> bool:
    off = holiday_library.country_holidays(JURISDICTION, years=day.year, observed=True)
    return day.weekday() < 5 and day not in off


def next_working_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_working(day):
        day += timedelta(days=1)
    return day


def zone_of_offset(hours: int) -> str:
    """The IANA zone of a fixed offset from UTC (the Etc/ area counts its signs the POSIX way round)."""
    if hours == 0:
        return "Etc/GMT"
    return f"Etc/GMT{-hours:+d}"


def offset_in_working_hours(moment: datetime) -> int | None:
    """An offset from UTC (nearest Tirane's first) at which `moment` is past the reminders' time on a
    working day, with hours to spare before they stop for the day (19:00); None when there is none, as
    on most of a weekend."""
    for hours in sorted(range(-12, 15), key=lambda hours: abs(hours - 1)):
        local = moment.astimezone(ZoneInfo(zone_of_offset(hours)))
        if time(7, 1) <= local.time() <= time(18, 30) and is_working(local.date()):
            return hours
    return None


def registry_with_zones(zones: dict[str, str]) -> bytes:
    """The fixture registry, with a time zone column saying where these organisations are."""
    rows = list(csv.DictReader(io.StringIO(fixture_path("stakeholders-albania.csv").read_text())))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*rows[0], "timezone"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "timezone": zones.get(row["key"], "")})
    return out.getvalue().encode()


# --- what the test reads -----------------------------------------------------------------------------


def decided_at(message: MailboxMessage) -> datetime:
    value = message.header("X-Roundtable-Decided-At")
    assert value, f"{message.subject!r} does not say when it was decided"
    return datetime.fromisoformat(value)


def kind_of(message: MailboxMessage) -> str:
    if message.subject.startswith("Kujtesë"):
        return "reminder"
    if message.subject.startswith("Afati ka kaluar"):
        return "escalation"
    if "overdue" in message.subject:
        return "summary"
    if message.subject.startswith("Afat i ri"):
        return "extension"
    return "invitation"


def received(mailbox: DevMailbox) -> dict[tuple[str, str], list[MailboxMessage]]:
    """Every message in the sink, by (recipient, kind), reading the mailbox once."""
    found: dict[tuple[str, str], list[MailboxMessage]] = {}
    for entry in mailbox.list(limit=100_000):
        message = mailbox.get(entry.key)
        found.setdefault((parseaddr(message.to)[1], kind_of(message)), []).append(message)
    return found


async def contacts_by_organisation(db: Database, round_id: int) -> dict[str, set[str]]:
    async with db.session() as session:
        rows = await session.exec(
            select(Organisation.key, AccessLink.email)
            .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(AccessLink.round_id == round_id)
        )
        found: dict[str, set[str]] = {}
        for key, email in rows:
            found.setdefault(key, set()).add(email)
        return found


async def escalation_contacts(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = await session.exec(select(Organisation.key, Organisation.escalation_email))
        return {key: email for key, email in rows if email}


async def statuses(db: Database, round_id: int) -> dict[str, TaskStatus]:
    async with db.session() as session:
        rows = await session.exec(
            select(Organisation.key, ReviewTask.status)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
        )
        return {key: TaskStatus(status) for key, status in rows}


async def set_deadlines(db: Database, round_id: int, deadlines: dict[str, datetime]) -> None:
    """The tasks' own deadlines, written into the draft round (an extension could only move them later)."""
    async with db.write_session() as session:
        rows = await session.exec(
            select(ReviewTask, Organisation.key)
            .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
            .where(ReviewTask.round_id == round_id)
        )
        for task, key in rows.all():
            task.deadline = deadlines[key]
            session.add(task)
        await session.commit()


async def settled(client: Client, settings: Settings, db: Database, round_id: int) -> bool:
    """The round's scheduler sleeps, and nothing of the round is left to deliver."""
    async with db.session() as session:
        pending = (
            await session.exec(
                select(OutboxMessage.id).where(
                    OutboxMessage.round_id == round_id, OutboxMessage.status == OutboxStatus.pending
                )
            )
        ).first()
    if pending is not None:
        return False
    handle = client.get_workflow_handle(round_workflow_id(settings, round_id))
    return str(await handle.query(PHASE_QUERY)) == "waiting"


async def runs_of(client: Client, workflow_id: str) -> list[WorkflowExecutionDescription]:
    """Every run of a workflow, the first first, followed back from the current one through their
    histories (which, unlike the list of workflows, are up to date at once)."""
    runs = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        runs.append(await handle.describe())
        async for event in handle.fetch_history_events():
            run_id = event.workflow_execution_started_event_attributes.continued_execution_run_id
            break
        if not run_id:
            return runs[::-1]


async def has_poller(client: Client, task_queue: str) -> bool:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(answer.pollers) > 0


# --- a worker killed and Temporal restarted while a reminder and an escalation are due ---------------

REMINDED = ["ministry-of-finance", "municipality-tirane"]
"""Their reminder's time passed before the launch: they are reminded at once, before the fault."""
EXTENDED = "ministry-of-interior"
"""Its deadline passes seconds after the launch (escalated before the fault); while everything is down it
is given until tomorrow, which calls for a reminder today, its time already passed: due at once."""
LATE = "ministry-for-europe-and-foreign-affairs"
"""Its deadline passes while everything is down."""


async def test_a_reminder_and_an_escalation_due_while_the_worker_is_dead_and_temporal_stopped_go_once(
    stack_settings: Settings, db: Database, mailbox: DevMailbox, tmp_path: Path
) -> None:
    offset = offset_in_working_hours(datetime.now(UTC))
    if offset is None:
        pytest.skip("it is 07:01-18:30 on a working day in no time zone now (a weekend): no reminder is due")
    zone = zone_of_offset(offset)
    tomorrow = next_working_day(datetime.now(ZoneInfo(zone)).date())
    tomorrow_evening = datetime.combine(tomorrow, time(17, 0), tzinfo=ZoneInfo(zone))
    coordinator = await create_account(db, COORDINATOR, Role.coordinator)
    async with temporal_server(tmp_path / "temporal") as server:
        settings = stack_settings.model_copy(update={"temporal_address": server.address})
        environment = worker_environment(settings)
        client = await Client.connect(server.address)
        first = spawn("worker-first", roundtable_command("worker"), log_dir=tmp_path, env=environment)
        second: Child | None = None
        try:
            round_id = await seed_round(  # while the worker starts
                db,
                deadline=tomorrow_evening,
                keys=[*REMINDED, EXTENDED, LATE],
                created_by=await user_id_of(db, COORDINATOR),
                registry=registry_with_zones(dict.fromkeys([*REMINDED, EXTENDED], zone)),
                reminder_policy=POLICY,
            )
            app = create_app(settings, db=db, scheduler=Scheduler(settings))
            await eventually(lambda: has_poller(client, settings.task_queue), bool, timeout=60)
            escalated_first = datetime.now(UTC) + FIRST_DEADLINE_IN
            escalated_late = escalated_first + LATE_DEADLINE_AFTER
            await set_deadlines(
                db,
                round_id,
                {
                    **dict.fromkeys(REMINDED, tomorrow_evening),
                    EXTENDED: escalated_first,
                    LATE: escalated_late,
                },
            )
            await launch_round(db, Scheduler(settings, client=client), round_id=round_id, actor=TEST_ACTOR)
            contacts = await contacts_by_organisation(db, round_id)
            everyone = {address for addresses in contacts.values() for address in addresses}
            reminded_first = {address for key in REMINDED for address in contacts[key]}
            before_the_fault = len(everyone) + len(reminded_first) + 2  # an escalation and its summary
            await eventually(lambda: _count(mailbox), lambda count: count >= before_the_fault, timeout=60)
            await eventually(lambda: settled(client, settings, db, round_id), bool, timeout=30)

            first.kill()
            server.stop()
            # The fault landed before the late deadline: nothing of it was decided yet.
            assert (await statuses(db, round_id))[LATE] == TaskStatus.invited, "raise LATE_DEADLINE_AFTER"
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as http:
                extended = await http.post(
                    f"/api/v1/rounds/{round_id}/extensions",
                    json={
                        "deadline": tomorrow_evening.isoformat(),
                        "reason": "The ministry asked for one more day.",
                        "organisation_keys": [EXTENDED],
                    },
                    headers=coordinator,
                )
            assert extended.status_code == 200, extended.text
            assert extended.json()["notices"] == len(contacts[EXTENDED])
            extended_at = datetime.now(UTC)
            await asyncio.sleep(max((escalated_late - datetime.now(UTC)).total_seconds(), 0) + 0.5)

            await server.start()
            second = spawn("worker-second", roundtable_command("worker"), log_dir=tmp_path, env=environment)
            client = await Client.connect(server.address)
            # Now: the extension's notices and the reminder it calls for, the late escalation and its summary.
            expected = before_the_fault + 2 * len(contacts[EXTENDED]) + 2
            await eventually(lambda: _count(mailbox), lambda count: count >= expected, timeout=60)
            await eventually(lambda: settled(client, settings, db, round_id), bool, timeout=30)
        finally:
            first.stop()
            if second is not None:
                second.stop()
            with contextlib.suppress(Exception):
                await client.get_schedule_handle(reconciler_schedule_id(settings)).delete()

    found = received(mailbox)
    told = await escalation_contacts(db)
    for address in everyone:
        assert len(found[address, "invitation"]) == 1, address
    for address in reminded_first:  # before the fault, and not again after it
        (reminder,) = found[address, "reminder"]
        assert decided_at(reminder) < extended_at
        assert "1 ditë pune" in reminder.text  # the deadline is tomorrow
    for address in contacts[EXTENDED]:  # due while everything was down: told of the new deadline, reminded
        assert len(found[address, "extension"]) == 1, address
        (reminder,) = found[address, "reminder"]
        assert decided_at(reminder) > extended_at
        assert "1 ditë pune" in reminder.text  # the new deadline is tomorrow
        assert "The committee meets." in reminder.text
    assert {to for to, kind in found if kind == "reminder"} == reminded_first | contacts[EXTENDED]
    (first_escalation,) = found[told[EXTENDED], "escalation"]  # not again for the deadline it missed
    assert escalated_first <= decided_at(first_escalation) < extended_at
    (late_escalation,) = found[told[LATE], "escalation"]
    assert decided_at(late_escalation) >= escalated_late
    assert sorted(to for to, kind in found if kind == "escalation") == sorted([told[EXTENDED], told[LATE]])
    summaries = sorted(found[COORDINATOR, "summary"], key=decided_at)  # one for each deadline missed
    assert [summary.subject.split(":")[0] for summary in summaries] == ["1 organisation overdue"] * 2
    assert "Ministry of Interior" in summaries[0].text
    assert "Ministry for Europe and Foreign Affairs" in summaries[1].text
    assert sum(len(messages) for messages in found.values()) == expected  # nothing twice
    assert await statuses(db, round_id) == {
        **dict.fromkeys(REMINDED, TaskStatus.invited),
        EXTENDED: TaskStatus.invited,
        LATE: TaskStatus.overdue,
    }


async def _count(mailbox: DevMailbox) -> int:
    return mailbox.count()


# --- a long round continues as new, and goes on with its work ----------------------------------------

SUGGEST_AFTER = 20
"""History events after which the server suggests continuing as new (Temporal's default is 4,096): a
round's scheduler has more than this before its first sleep, so it continues at every wake-up."""
FIRST, SECOND, OPEN = "ministry-of-interior", "ministry-of-finance", "municipality-tirane"
FIRST_ESCALATION_IN = timedelta(seconds=6)
"""From the launch: the scheduler sends the invitations and goes to sleep first. It checks for the
suggestion only when it wakes, so a deadline that has passed before its first sleep is escalated by the
first run (and the test would see it never continue)."""


# Continuing as new is the workflow's own: the database behind it is the same code either way, and the
# test holds a Temporal server of its own for half a minute.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_long_round_continues_as_new_and_still_escalates_each_deadline_once(
    stack_settings: Settings, db: Database, mailbox: DevMailbox, tmp_path: Path
) -> None:
    await create_account(db, COORDINATOR, Role.coordinator)
    threshold = f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}"
    async with temporal_server(tmp_path / "temporal", "--dynamic-config-value", threshold) as server:
        settings = stack_settings.model_copy(update={"temporal_address": server.address})
        client = await Client.connect(server.address)
        round_id = await seed_round(
            db,
            deadline=datetime.now(UTC) + timedelta(days=3),
            keys=[FIRST, SECOND, OPEN],
            created_by=await user_id_of(db, COORDINATOR),
            reminder_policy={"working_days_before": []},
        )
        workflow_id = round_workflow_id(settings, round_id)
        async with WorkerHandle(client, db, settings):
            first_deadline = datetime.now(UTC) + FIRST_ESCALATION_IN
            second_deadline = first_deadline + timedelta(seconds=3)
            await set_deadlines(
                db,
                round_id,
                {FIRST: first_deadline, SECOND: second_deadline, OPEN: datetime.now(UTC) + timedelta(days=3)},
            )
            await launch_round(db, Scheduler(settings, client=client), round_id=round_id, actor=TEST_ACTOR)
            contacts = await contacts_by_organisation(db, round_id)
            invitations = sum(len(addresses) for addresses in contacts.values())
            await eventually(lambda: _count(mailbox), lambda count: count >= invitations + 4, timeout=60)
            await eventually(lambda: settled(client, settings, db, round_id), bool, timeout=30)
            runs = await runs_of(client, workflow_id)
            # A worker that starts again finds the continued scheduler up to date and leaves it running.
            replaced = await replace_outdated_schedulers(client, settings)

    assert len(runs) >= 2, "it never continued: did it reach its first sleep after FIRST_ESCALATION_IN?"
    first_run, current = runs[0], runs[-1]
    assert [run.status for run in runs[:-1]] == [WorkflowExecutionStatus.CONTINUED_AS_NEW] * (len(runs) - 1)
    assert current.status == WorkflowExecutionStatus.RUNNING
    assert (await current.memo()).get("scheduler_version") == SCHEDULER_VERSION
    assert replaced == 0
    assert first_run.close_time is not None

    found = received(mailbox)
    told = await escalation_contacts(db)
    for address in {address for addresses in contacts.values() for address in addresses}:
        assert len(found[address, "invitation"]) == 1, address
    for key, deadline in ((FIRST, first_deadline), (SECOND, second_deadline)):
        (escalation,) = found[told[key], "escalation"]
        # Decided by a run that began after the first one had continued as new, at or after the deadline.
        assert decided_at(escalation) >= max(deadline, first_run.close_time)
    assert sorted(to for to, kind in found if kind == "escalation") == sorted([told[FIRST], told[SECOND]])
    summaries = found[COORDINATOR, "summary"]  # one for each deadline missed
    assert len(summaries) == 2
    assert all(decided_at(summary) >= first_run.close_time for summary in summaries)
    assert sum(len(messages) for messages in found.values()) == invitations + 4  # nothing twice
    assert await statuses(db, round_id) == {
        FIRST: TaskStatus.overdue,
        SECOND: TaskStatus.overdue,
        OPEN: TaskStatus.invited,
    }
