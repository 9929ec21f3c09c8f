"""Reminder storm: 100 open rounds of 100 organisations each, with one reminder of every task due at the
same moment, and each person told once that day of all their tasks.

The registry has 2,000 organisations, each with one contact (its focal point), and each organisation is
consulted in 5 of the rounds: 10,000 tasks, 2,000 people, each the contact of 5 tasks in 5 rounds. Every
round's reminder policy is one reminder, 1 working day before a deadline of 17:00 the next working day.
When it comes due, each person must get exactly one email, a digest listing all 5 of their tasks, whichever
round's scheduler decides it (services/reminders.py). Checked: one digest per person in the SMTP sink
(counted by recipient), no Message-ID twice, each digest lists every task of its person, and every task
has its reminder recorded as sent. Measured: from the moment the reminders are due to the last digest in
the sink, against the SMTP limit for the same number of messages; and the worker's peak RSS meanwhile.

How the reminders come due (`--trigger`, printed with the figures):

- `timer` (the full run's default): the real path end to end, and what is measured best. The rounds' `at`
  is set to the first whole local minute at least 20 s + 0.2 s a round ahead, every scheduler plans again
  and sleeps on its own timer until then, and at that minute the schedulers run `send_reminders` in the
  worker and deliver with `deliver_mail`. Measured from that minute. The rounds' time zone is one where it
  is working hours now (bench/reminder_clock.py): Europe/Tirane, the default, when it is.
- `wake` (the smoke default: a timer to the next minute would make `make bench-smoke` wait up to one):
  the same path, but `at` is the current minute, so the reminders are due as soon as the policy is
  written; then every scheduler is woken. Measured from the write.
- `as-of`, used by either when no time zone is in working hours (weekends, holidays; see
  bench/reminder_clock.py): the benchmark itself calls the `send_reminders` use case for every round, 20
  at a time as the worker's activity slots would, with the scheduler's `as_of` set to 09:00 on the next
  working day, then wakes the schedulers, which deliver. Measured from the first call. The worker's RSS
  then covers the delivery only.

Set-up, not measured: a fresh database, the registry, the rounds created and launched through the
services with every invitation recorded as sent, the real worker, a fresh Temporal dev server and the SMTP
sink; for `timer` and `wake` the reminder policy is written once every scheduler is asleep.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import reminder_clock, smtp_baseline
from bench.common import (
    EmbeddedStack,
    PeakRss,
    Report,
    Row,
    arguments,
    available_backends,
    create_rounds,
    embedded_stack,
    fresh_database,
    median,
    registry_csv,
    seed_draft,
    seed_registry,
    wait_until,
    workdir,
)
from bench.storms import launch_as_invited, tally, wake_until_asleep

NAME = "reminder_storm"
TRIGGERS = ("auto", "timer", "wake", "as-of")
REMINDER_TEXT = "The committee meets the day after the deadline."
SHORT_PERIOD_REASON = "The committee meets the day after the deadline."
"""A round of one working day needs a reason (services/rounds.py, check_period)."""
DECIDING_AT_ONCE = 20  # the worker's max_concurrent_activities
RSS_TARGET_MIB = 300


@dataclass(frozen=True)
class Shape:
    rounds: int
    organisations_per_round: int
    rounds_per_person: int

    @property
    def tasks(self) -> int:
        return self.rounds * self.organisations_per_round

    @property
    def people(self) -> int:
        return self.tasks // self.rounds_per_person

    def label(self, backend: str, trigger: str) -> str:
        return (
            f"{self.rounds} rounds x {self.organisations_per_round} orgs, {self.people:,} people, "
            f"{backend}, {trigger}"
        )


FULL = Shape(rounds=100, organisations_per_round=100, rounds_per_person=5)
SMOKE = Shape(rounds=3, organisations_per_round=5, rounds_per_person=3)


def consulted(shape: Shape, keys: list[str]) -> list[list[str]]:
    """The organisations of each round: in each of `rounds_per_person` passes every organisation is dealt,
    in a shuffled order, to one round of that pass. So each is in that many rounds, never twice in one,
    and the rounds overlap differently in each pass."""
    per_pass, uneven = divmod(shape.rounds, shape.rounds_per_person)
    if uneven or per_pass * shape.organisations_per_round != len(keys):
        raise ValueError(f"{shape} does not deal {len(keys)} organisations evenly")
    size = shape.organisations_per_round
    rounds = []
    for number in range(shape.rounds_per_person):
        dealt = random.Random(number).sample(keys, len(keys))
        rounds += [sorted(dealt[start : start + size]) for start in range(0, len(dealt), size)]
    return rounds


@dataclass(frozen=True)
class Plan:
    """When the reminders of a run come due and how."""

    trigger: str
    zone: str
    deadline: datetime
    as_of: datetime | None = None
    """For `as-of`: the scheduler's time the benchmark decides at."""


def plan_for(requested: str, smoke: bool, now: datetime) -> tuple[Plan, str | None]:
    """The plan, and a note when the real clock cannot be used and `as-of` stands in."""
    trigger = ("wake" if smoke else "timer") if requested == "auto" else requested
    zone = reminder_clock.working_hours_zone(now) if trigger != "as-of" else None
    note = None
    if trigger != "as-of" and zone is None:
        if requested != "auto":
            raise SystemExit(f"--trigger {requested} needs working hours on a working day in some zone")
        note = (
            "no time zone is in working hours on a working day now: the reminders were decided by calling "
            "send_reminders with as_of (on a weekday the storm runs through the schedulers)"
        )
        trigger = "as-of"
    if zone is None:
        as_of, deadline = reminder_clock.as_of_morning(now)
        return Plan("as-of", reminder_clock.HOME_ZONE, deadline, as_of), note
    today = reminder_clock.local_today(now, zone)
    return Plan(trigger, zone, reminder_clock.deadline_after(today, zone)), note


# --- set-up -----------------------------------------------------------------------------------------


async def seed_rounds(database_url: str, shape: Shape, plan: Plan) -> tuple[list[int], set[str]]:
    """The registry (one contact per organisation), the draft and the rounds, launched; the round ids
    and every contact's address."""
    from models.rounds import ReminderPolicy, RoundCreate

    content = registry_csv(shape.people, alternates=False)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"))))
    await seed_registry(database_url, content)
    version_id = await seed_draft(database_url)
    # For `timer` and `wake` the reminder's time is known only once the stack is up: none until then.
    policy = (
        ReminderPolicy(
            working_days_before=[1], at=reminder_clock.AS_OF_AT.strftime("%H:%M"), text=REMINDER_TEXT
        )
        if plan.trigger == "as-of"
        else ReminderPolicy(working_days_before=[], text=REMINDER_TEXT)
    )
    round_ids = await create_rounds(
        database_url,
        [
            RoundCreate(
                title=f"Migration strategy, consultation {number + 1}",
                document_version_id=version_id,
                deadline=plan.deadline,
                organisation_keys=keys,
                timezone=plan.zone,
                minimum_period_reason=SHORT_PERIOD_REASON,
                reminder_policy=policy,
            )
            for number, keys in enumerate(consulted(shape, [row["key"] for row in rows]))
        ],
    )
    await launch_as_invited(database_url, round_ids)
    return round_ids, {row["focal_point_email"] for row in rows}


async def set_reminder(database_url: str, round_ids: list[int], *, at: str) -> None:
    """The policy a coordinator would have chosen, had they known when the set-up ends: one reminder,
    1 working day before the deadline, at `at` local time (validated as the API would)."""
    from sqlmodel import col, update

    from models.rounds import ReminderPolicy, Round
    from services.db import Database

    policy = ReminderPolicy(working_days_before=[1], at=at, text=REMINDER_TEXT).model_dump()
    db = Database(database_url)
    try:
        async with db.write_session() as session:
            await session.exec(
                update(Round).where(col(Round.id).in_(round_ids)).values(reminder_policy=policy)
            )
            await session.commit()
    finally:
        await db.dispose()


async def all_waiting(stack: EmbeddedStack, round_ids: list[int]) -> None:
    """Every round's scheduler running and asleep (the worker's reconciler starts them; this makes sure)."""
    handles = [await stack.scheduler.start_round(round_id) for round_id in round_ids]

    async def waiting() -> int:
        phases = await asyncio.gather(*(handle.query("phase") for handle in handles))
        return sum(1 for phase in phases if phase == "waiting")

    await wait_until(
        waiting,
        lambda count: count == len(handles),
        timeout=120,
        every=0.25,
        what="every scheduler asleep",
        children=[stack.worker, stack.temporal],
    )


async def wake_all(stack: EmbeddedStack, round_ids: list[int]) -> None:
    await asyncio.gather(*(stack.scheduler.wake(round_id) for round_id in round_ids))


# --- the storm --------------------------------------------------------------------------------------


async def make_due(database_url: str, stack: EmbeddedStack, round_ids: list[int], plan: Plan) -> float:
    """Let the reminders come due as the plan says; the wall time they were due."""
    if plan.trigger == "as-of":
        assert plan.as_of is not None
        started = time.time()
        await decide_as_of(database_url, stack.settings, round_ids, plan.as_of)
        await wake_all(stack, round_ids)  # to deliver what was decided
        return started
    if plan.trigger == "wake":
        due = reminder_clock.reminder_minute(datetime.now(UTC), plan.zone, lead=0)
        await set_reminder(database_url, round_ids, at=reminder_clock.hh_mm(due, plan.zone))
        written = time.time()
        await wake_all(stack, round_ids)
        return written
    # Every scheduler plans again before the minute comes: on 2 busy cores that takes a while at 100.
    lead = 20 + 0.2 * len(round_ids)
    due = reminder_clock.reminder_minute(datetime.now(UTC), plan.zone, lead=lead)
    await set_reminder(database_url, round_ids, at=reminder_clock.hh_mm(due, plan.zone))
    await wake_until_asleep(stack.scheduler, round_ids, due, children=[stack.worker, stack.temporal])
    return due.timestamp()


async def decide_as_of(database_url: str, settings: Any, round_ids: list[int], as_of: datetime) -> None:
    from services import reminders
    from services.db import Database

    db = Database(database_url)
    slots = asyncio.Semaphore(DECIDING_AT_ONCE)

    async def decide(round_id: int) -> None:
        async with slots, db.write_session() as session:
            await reminders.send_reminders(session, round_id=round_id, now=as_of, settings=settings)

    try:
        await asyncio.gather(*(decide(round_id) for round_id in round_ids))
    finally:
        await db.dispose()


async def decided(database_url: str) -> dict[str, Any]:
    """What the database says was decided: the digests, the tasks they list, the reminders recorded."""
    from sqlmodel import func, select

    from models.enums import MessageKind
    from models.outbox import OutboxMessage
    from models.rounds import TaskReminder
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.session() as session:
            digests = (
                await session.exec(
                    select(OutboxMessage.context, OutboxMessage.created_at).where(
                        OutboxMessage.kind == MessageKind.reminder
                    )
                )
            ).all()
            statuses = dict(
                (
                    await session.exec(
                        select(TaskReminder.status, func.count()).group_by(TaskReminder.status)
                    )
                ).all()
            )
    finally:
        await db.dispose()
    contexts = [context for context, _created in digests]
    decided_at = sorted(created.timestamp() for _context, created in digests)
    return {
        "digests": len(contexts),
        "tasks_per_digest": sorted({len(context["items"]) for context in contexts}),
        "tasks_listed": len({item["link_id"] for context in contexts for item in context["items"]}),
        "reminders": {str(status): count for status, count in statuses.items()},
        "first_decided_at": decided_at[0] if decided_at else None,
        "last_decided_at": decided_at[-1] if decided_at else None,
    }


async def measure_ours(backend: str, shape: Shape, plan: Plan) -> dict[str, Any]:
    with workdir("reminders") as directory:
        async with fresh_database(backend, directory) as url:
            round_ids, people = await seed_rounds(url, shape, plan)
            async with embedded_stack(directory, url, name="reminders") as stack:
                await all_waiting(stack, round_ids)
                with PeakRss() as rss:
                    rss.watch("worker", stack.worker.pid)
                    rss.watch("temporal", stack.temporal.pid)
                    due = await make_due(url, stack, round_ids, plan)
                    last = await stack.sink.wait_for(
                        shape.people,
                        timeout=120 + shape.people * 0.1,
                        children=[stack.worker, stack.temporal],
                    )
                    await asyncio.sleep(0.5)  # a repeated digest would show up here
                received = tally(stack.sink, people)
                arrivals = sorted(float(fields[0]) for fields in stack.sink.lines())
            found = await decided(url)
    if received.missing or received.unexpected:
        raise RuntimeError(f"not one digest per person: {received.describe()}")
    return {
        "seconds": last - due,
        # Where the time goes: deciding (the digests' rows written) and delivering.
        "first_decided_after": (found["first_decided_at"] or due) - due,
        "last_decided_after": (found["last_decided_at"] or due) - due,
        "first_in_sink_after": arrivals[0] - due,
        "half_in_sink_after": arrivals[len(arrivals) // 2] - due,
        "messages": received.received,
        "once": received.expected - len(received.twice),
        "twice": len(received.twice) + received.duplicate_message_ids,
        # Each person's one digest lists every task of theirs, and every task has its reminder sent.
        "complete": found["tasks_per_digest"] == [shape.rounds_per_person]
        and found["tasks_listed"] == shape.tasks
        and found["reminders"] == {"sent": shape.tasks},
        "decided": found,
        "worker_mib": rss.mib("worker"),
        "temporal_mib": rss.mib("temporal"),
    }


# --- the report -------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> Report:
    report = Report(NAME, smoke=args.smoke)
    shape = SMOKE if args.smoke else FULL
    backends = await available_backends(args.backends, report)
    report.details.update(
        {"shape": shape.__dict__ | {"people": shape.people, "tasks": shape.tasks}, "runs": args.runs}
    )
    ours: dict[str, list[dict[str, Any]]] = {backend: [] for backend in backends}
    smtp: list[float] = []
    for run in range(args.runs):
        for backend in backends:
            # Chosen afresh for each run: working hours may end in one zone while the benchmark runs.
            plan, note = plan_for(args.trigger, args.smoke, datetime.now(UTC))
            if note and note not in report.details.setdefault("notes", []):
                print(f"!! {note}")
                report.details["notes"].append(note)
            result = await measure_ours(backend, shape, plan)
            result |= {"trigger": plan.trigger, "time_zone": plan.zone, "deadline": plan.deadline.isoformat()}
            ours[backend].append(result)
            print(
                f"   {shape.label(backend, plan.trigger)} ({plan.zone}), run {run + 1}: "
                f"{result['seconds']:.2f} s (digests decided {result['first_decided_after']:.2f}"
                f"-{result['last_decided_after']:.2f} s after due, first in sink "
                f"{result['first_in_sink_after']:.2f} s, half {result['half_in_sink_after']:.2f} s), "
                f"worker peak {result['worker_mib']:.0f} MiB",
                flush=True,
            )
        smtp.append(await smtp_baseline.time_to_sink(shape.people))
        print(f"   {shape.people} messages, run {run + 1}: SMTP limit {smtp[-1]:.2f} s", flush=True)
    report.details["raw"] = {"ours": ours, "smtp_limit": smtp}
    smtp_s = median(smtp)
    for backend in backends:
        add_rows(report, shape, backend, ours[backend], smtp_s)
    return report


def add_rows(
    report: Report, shape: Shape, backend: str, results: list[dict[str, Any]], smtp_s: float
) -> None:
    ours_s = median([result["seconds"] for result in results])
    trigger = "/".join(sorted({result["trigger"] for result in results}))
    runs = f"median of {len(results)}" if len(results) > 1 else "1 run"
    label = f"{shape.label(backend, trigger)}, {runs}"
    report.add(
        Row(
            NAME,
            f"reminders due to last digest in sink ({label})",
            ours_s,
            "s",
            baseline=smtp_s,
            baseline_name=f"SMTP limit, {shape.people} msgs",
            ratio=ours_s / smtp_s,
            ratio_name="ours/baseline",
            target="≤ 3",
            met=ours_s / smtp_s <= 3,
        )
    )
    once = min(result["once"] for result in results)
    report.add(
        Row(
            NAME,
            f"people with exactly one digest ({label})",
            once,
            "",
            target=f"= {shape.people:,}",
            met=once == shape.people,
        )
    )
    listed = min(result["decided"]["tasks_listed"] for result in results)
    report.add(
        Row(
            NAME,
            f"tasks listed in their person's one digest, reminder recorded sent ({label})",
            listed,
            "",
            target=f"= {shape.tasks:,}, {shape.rounds_per_person} per digest",
            met=all(result["complete"] for result in results),
        )
    )
    twice = max(result["twice"] for result in results)
    report.add(Row(NAME, f"digests sent twice ({label})", twice, "", target="= 0", met=twice == 0))
    worker = max(result["worker_mib"] for result in results)
    report.add(
        Row(
            NAME,
            f"peak RSS, worker ({label})",
            worker,
            "MiB",
            target=f"< {RSS_TARGET_MIB} MiB",
            met=worker < RSS_TARGET_MIB,
        )
    )
    report.add(
        Row(NAME, f"peak RSS, Temporal server ({label})", max(r["temporal_mib"] for r in results), "MiB")
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="auto",
        help="how the reminders come due (see the module's docstring); auto: timer, wake at smoke sizes, "
        "as-of outside working hours",
    )


if __name__ == "__main__":
    arguments_ = arguments(__doc__ or NAME, _extra, smoke_backends=("sqlite",))
    if "--runs" not in sys.argv:
        arguments_.runs = 1  # a run sets up 100 rounds and may wait a minute for its reminder's time
    result = asyncio.run(main(arguments_))
    result.print()
    print(f"\nwritten to {Path(result.write()).relative_to(Path.cwd())}")
