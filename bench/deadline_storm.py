"""Deadline storm: 1,000 invited tasks whose deadline passes at the same instant.

At the deadline (the round has no grace period) every unsigned task becomes overdue and is escalated: one
`escalation` email per task to its organisation's escalation contact, and one `escalation_summary` to the
coordinator (services/escalations.py). The round stays open. Measured from the deadline instant until all
N + 1 of them are in the SMTP sink; checked: each escalation contact and the coordinator got exactly one
(counted by recipient), no Message-ID came twice, and every task is overdue in the database.

Set-up, not measured: a fresh database with a coordinator and a round of N organisations (each with its
own escalation contact), created with an ordinary deadline weeks ahead, launched and its links issued
through the services, every invitation recorded as sent (as the worker records it), the real worker and a
fresh Temporal dev server; then the deadline of the round and of every task is moved a few seconds ahead
and the round's scheduler woken, and the clock starts once its timer is set for that instant.

Baseline, in the same run: the SMTP limit for the same number of messages (N + 1) over 8 reused
connections (bench/smtp_baseline.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import smtp_baseline
from bench.common import (
    Report,
    Row,
    arguments,
    available_backends,
    create_coordinator,
    embedded_stack,
    fresh_database,
    median,
    seed_round,
    wait_until,
    workdir,
)
from bench.storms import launch_as_invited, tally, wake_until_asleep

NAME = "deadline_storm"
FULL_SIZE = 1000
SMOKE_SIZE = 20
LEAD = 10.0  # seconds from moving the deadline to it: the scheduler plans again first, on a busy machine
COORDINATOR = "coordinator@migracioni.gov.example"


async def move_deadline(database_url: str, round_id: int, deadline: datetime) -> None:
    """The round's deadline and each task's (escalation goes by the task's own), as an extension would
    set them, but earlier: no procedure lets a coordinator shorten a launched round."""
    from sqlmodel import col, update

    from models.rounds import ReviewTask, Round
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            await session.exec(update(Round).where(col(Round.id) == round_id).values(deadline=deadline))
            await session.exec(
                update(ReviewTask).where(col(ReviewTask.round_id) == round_id).values(deadline=deadline)
            )
            await session.commit()
    finally:
        await db.dispose()


async def escalation_contacts(db: Any, round_id: int) -> set[str]:
    from sqlmodel import col, select

    from models.organisations import Organisation
    from models.rounds import ReviewTask

    async with db.session() as session:
        rows = await session.exec(
            select(Organisation.escalation_email)
            .join(ReviewTask, col(ReviewTask.organisation_id) == Organisation.id)
            .where(ReviewTask.round_id == round_id)
        )
        return {address for address in rows if address}


async def overdue_tasks(db: Any, round_id: int) -> int:
    from sqlmodel import col, func, select

    from models.enums import TaskStatus
    from models.rounds import ReviewTask

    async with db.session() as session:
        return int(
            (
                await session.exec(
                    select(func.count()).where(
                        col(ReviewTask.round_id) == round_id,
                        ReviewTask.status == TaskStatus.overdue,
                        col(ReviewTask.escalated_at).is_not(None),
                    )
                )
            ).one()
        )


async def measure_ours(backend: str, organisations: int) -> dict[str, Any]:
    from services.db import Database

    with workdir("storm") as directory:
        async with fresh_database(backend, directory) as url:
            round_id = await seed_round(
                url, organisations=organisations, created_by=await create_coordinator(url, COORDINATOR)
            )
            await launch_as_invited(url, [round_id])
            async with embedded_stack(directory, url, name="storm") as stack:
                scheduler, sink, worker, temporal = stack.scheduler, stack.sink, stack.worker, stack.temporal
                db = Database(url)
                try:
                    expected = await escalation_contacts(db, round_id) | {COORDINATOR}
                    if len(expected) != organisations + 1:
                        raise RuntimeError(f"{len(expected) - 1} escalation contacts for {organisations}")
                    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD + 1)
                    await move_deadline(url, round_id, deadline)
                    # The worker started this round's scheduler when it started, and it sleeps until the
                    # old deadline's moment: it plans again when woken.
                    await scheduler.start_round(round_id)
                    await wake_until_asleep(scheduler, [round_id], deadline, children=[worker, temporal])

                    async def overdue() -> int:
                        return await overdue_tasks(db, round_id)

                    await wait_until(
                        overdue,
                        lambda count: count == organisations,
                        timeout=60 + LEAD,
                        every=0.01,
                        what="every task overdue",
                        children=[worker],
                    )
                    overdue_seen = time.time()
                    last = await sink.wait_for(
                        len(expected), timeout=60 + organisations * 0.05, children=[worker, temporal]
                    )
                    await asyncio.sleep(0.3)  # a repeated message would show up here
                    received = tally(sink, expected)
                    if received.missing or received.unexpected:
                        raise RuntimeError(f"not one message per contact: {received.describe()}")
                    return {
                        "seconds": last - deadline.timestamp(),
                        "overdue_seen_after": overdue_seen - deadline.timestamp(),
                        "messages": received.received,
                        "twice": len(received.twice) + received.duplicate_message_ids,
                    }
                finally:
                    await db.dispose()


async def main(args: argparse.Namespace) -> Report:
    report = Report(NAME, smoke=args.smoke)
    size = SMOKE_SIZE if args.smoke else FULL_SIZE
    backends = await available_backends(args.backends, report)
    report.details.update({"organisations": size, "messages": size + 1, "runs": args.runs})
    ours: dict[str, list[dict[str, Any]]] = {backend: [] for backend in backends}
    smtp: list[float] = []
    for run in range(args.runs):
        for backend in backends:
            result = await measure_ours(backend, size)
            ours[backend].append(result)
            print(f"   {size} tasks, {backend}, run {run + 1}: {result['seconds']:.2f} s", flush=True)
        smtp.append(await smtp_baseline.time_to_sink(size + 1))
        print(f"   {size + 1} messages, run {run + 1}: SMTP limit {smtp[-1]:.2f} s", flush=True)
    report.details["raw"] = {"ours": ours, "smtp_limit": smtp}
    smtp_s = median(smtp)
    for backend in backends:
        results = ours[backend]
        ours_s = median([result["seconds"] for result in results])
        label = f"{size} tasks, {backend}, median of {len(results)}"
        report.add(
            Row(
                NAME,
                f"deadline to every escalation and the summary in sink ({label})",
                ours_s,
                "s",
                baseline=smtp_s,
                baseline_name=f"SMTP limit, {size + 1} msgs",
                ratio=ours_s / smtp_s,
                ratio_name="ours/baseline",
                target="≤ 3",
                met=ours_s / smtp_s <= 3,
            )
        )
        report.add(
            Row(
                NAME,
                f"deadline to every task overdue in the database ({label})",
                median([result["overdue_seen_after"] for result in results]),
                "s",
            )
        )
        twice = max(result["twice"] for result in results)
        report.add(Row(NAME, f"emails sent twice ({label})", twice, "", target="= 0", met=twice == 0))
    return report


if __name__ == "__main__":
    arguments_ = arguments(__doc__ or NAME, smoke_backends=("sqlite",))
    result = asyncio.run(main(arguments_))
    result.print()
    print(f"\nwritten to {Path(result.write()).relative_to(Path.cwd())}")
