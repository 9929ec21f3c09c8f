"""Deadline storm: 1,000 invited tasks whose deadline passes at the same instant.

Measured from the deadline instant until every task is no_response, the round is closed and the
coordinator's round-closed notice is in the SMTP sink (none twice). Escalation emails do not exist yet, so
the only email of the storm is that notice; once they exist they belong in the same wait.

Set-up, not measured: a fresh database with a coordinator and a round of N organisations, launched and its
links issued through the services, every invitation recorded as sent (as the worker records it), the
real worker and a fresh Temporal dev server; then the deadline is moved a few seconds ahead and the
round's scheduler started, so it is asleep until the deadline when the clock starts.

Baseline, in the same run: the SMTP limit for the same number of messages (N, one per task) over 8 reused
connections, as a storm of escalation emails would need at best.
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
    launch,
    median,
    seed_round,
    wait_until,
    workdir,
)

NAME = "deadline_storm"
FULL_SIZE = 1000
SMOKE_SIZE = 20
LEAD = 2.0  # seconds between scheduling the round and its deadline (and at most one more)
COORDINATOR = "coordinator@migracioni.gov.example"


async def launched_and_invited(database_url: str, round_id: int) -> None:
    """Launch the round through the services (links and invitations are issued with it), then record
    every invitation as sent, as the outbox records a delivered one (no email: the storm is what is
    measured)."""
    from sqlmodel import col, update

    from models.enums import OutboxStatus, TaskStatus
    from models.outbox import OutboxMessage
    from models.reviews import AccessLink
    from models.rounds import ReviewTask
    from models.types import utcnow
    from services.db import Database

    await launch(database_url, round_id=round_id)
    db = Database(database_url)
    try:
        now = utcnow()
        async with db.write_session() as session:
            await session.exec(
                update(AccessLink).where(col(AccessLink.round_id) == round_id).values(invited_at=now)
            )
            await session.exec(
                update(OutboxMessage)
                .where(col(OutboxMessage.round_id) == round_id)
                .values(status=OutboxStatus.sent, sent_at=now, attempts=1)
            )
            await session.exec(
                update(ReviewTask)
                .where(col(ReviewTask.round_id) == round_id)
                .values(status=TaskStatus.invited, invited_at=now)
            )
            await session.commit()
    finally:
        await db.dispose()


async def set_deadline(database_url: str, round_id: int, deadline: datetime) -> None:
    from sqlmodel import col, update

    from models.rounds import Round
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            await session.exec(update(Round).where(col(Round.id) == round_id).values(deadline=deadline))
            await session.commit()
    finally:
        await db.dispose()


async def measure_ours(backend: str, organisations: int) -> dict[str, Any]:
    from sqlmodel import col, func, select

    from models.enums import RoundStatus, TaskStatus
    from models.rounds import ReviewTask, Round
    from services.db import Database

    with workdir("storm") as directory:
        async with fresh_database(backend, directory) as url:
            round_id = await seed_round(
                url,
                organisations=organisations,
                deadline=datetime.now(UTC) + timedelta(days=14),
                created_by=await create_coordinator(url, COORDINATOR),
            )
            await launched_and_invited(url, round_id)
            async with embedded_stack(directory, url, name="storm") as stack:
                scheduler, sink, worker, temporal = stack.scheduler, stack.sink, stack.worker, stack.temporal
                db = Database(url)
                try:
                    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD + 1)
                    await set_deadline(url, round_id, deadline)
                    handle = await scheduler.start_round(round_id)
                    # The worker schedules open rounds when it starts, so this one's scheduler may have
                    # planned already, from the deadline as it was before: it re-plans when woken.
                    await scheduler.wake(round_id)

                    async def phase() -> str:
                        return str(await handle.query("phase"))

                    await wait_until(phase, lambda p: p == "waiting", timeout=30, what="scheduler asleep")
                    if time.time() >= deadline.timestamp():
                        raise RuntimeError("the scheduler fell asleep after the deadline; raise LEAD")

                    async def closed() -> bool:
                        async with db.session() as session:
                            status = (
                                await session.exec(select(Round.status).where(Round.id == round_id))
                            ).one()
                        return bool(status == RoundStatus.closed)

                    await wait_until(
                        closed, bool, timeout=60 + LEAD, every=0.01, what="round closed", children=[worker]
                    )
                    closed_seen = time.time()
                    last = await sink.wait_for(1, timeout=60, children=[worker, temporal])
                    await asyncio.sleep(0.3)  # a repeated notice would show up here
                    async with db.session() as session:
                        no_response = (
                            await session.exec(
                                select(func.count()).where(
                                    col(ReviewTask.round_id) == round_id,
                                    ReviewTask.status == TaskStatus.no_response,
                                )
                            )
                        ).one()
                    if no_response != organisations:
                        raise RuntimeError(f"{no_response} of {organisations} tasks marked no_response")
                    return {
                        "seconds": last - deadline.timestamp(),
                        "closed_seen_after": closed_seen - deadline.timestamp(),
                        "messages": sink.count(),
                        "duplicates": sink.duplicates(),
                    }
                finally:
                    await db.dispose()


async def main(args: argparse.Namespace) -> Report:
    report = Report(NAME, smoke=args.smoke)
    size = SMOKE_SIZE if args.smoke else FULL_SIZE
    backends = await available_backends(args.backends, report)
    report.details.update(
        {
            "organisations": size,
            "runs": args.runs,
            "notes": [
                *report.details.get("notes", []),
                "escalation emails do not exist yet: measured is marking every task no_response, closing the"
                " round and the coordinator's round-closed notice reaching the sink",
            ],
        }
    )
    ours: dict[str, list[dict[str, Any]]] = {backend: [] for backend in backends}
    smtp: list[float] = []
    for run in range(args.runs):
        for backend in backends:
            result = await measure_ours(backend, size)
            ours[backend].append(result)
            print(f"   {size} tasks, {backend}, run {run + 1}: {result['seconds']:.2f} s", flush=True)
        smtp.append(await smtp_baseline.time_to_sink(size))
        print(f"   {size} messages, run {run + 1}: SMTP limit {smtp[-1]:.2f} s", flush=True)
    report.details["raw"] = {"ours": ours, "smtp_limit": smtp}
    smtp_s = median(smtp)
    for backend in backends:
        results = ours[backend]
        ours_s = median([result["seconds"] for result in results])
        label = f"{size} tasks, {backend}, median of {len(results)}"
        report.add(
            Row(
                NAME,
                f"deadline to all marked, closed, notice in sink ({label})",
                ours_s,
                "s",
                baseline=smtp_s,
                baseline_name=f"SMTP limit, {size} msgs",
                ratio=ours_s / smtp_s,
                ratio_name="ours/baseline",
                target="≤ 3",
                met=ours_s / smtp_s <= 3,
            )
        )
        report.add(
            Row(
                NAME,
                f"deadline to round closed in the database ({label})",
                median([result["closed_seen_after"] for result in results]),
                "s",
            )
        )
        duplicates = max(result["duplicates"] for result in results)
        report.add(
            Row(NAME, f"emails sent twice ({label})", duplicates, "", target="= 0", met=duplicates == 0)
        )
    return report


if __name__ == "__main__":
    arguments_ = arguments(__doc__ or NAME, smoke_backends=("sqlite",))
    result = asyncio.run(main(arguments_))
    result.print()
    print(f"\nwritten to {Path(result.write()).relative_to(Path.cwd())}")
