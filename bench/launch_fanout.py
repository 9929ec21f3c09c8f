"""Launch fan-out: from the launch call to the last invitation accepted by the SMTP sink.

Per size and backend, each run gets a fresh database seeded from the fixture registry (two contacts per
organisation), a fresh Temporal dev server (SQLite persistence), an SMTP sink process and the real worker
process; the clock starts just before `launch_round` (what POST /rounds/{id}/launch does) and stops at
the sink's time of the last of the 2N invitations. In the same run, on the same machine:

(a) the SMTP limit: a bare script sending 2N messages of an invitation's size over 8 reused connections;
(b) the naive design: one child workflow per organisation, each sending its two emails from one activity
    over a new connection (bench/naive_fanout.py), on its own fresh dev server. Once per size, and only at
    100 and 1,000 organisations (--naive-sizes): on a busy 2-core machine the dev server completes a few
    such children a second, so one run at 1,000 takes minutes and 5,000 would not fit `make bench`; one
    run is enough for a target that ours beats several times over.

Ours runs on SQLite at every size and on PostgreSQL at 1,000 organisations only (the target's size), to
keep the whole benchmark within its share of `make bench`.

Runs of ours, (a) and (b) are interleaved so that load from other users of the machine falls on all three.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench import naive_fanout, smtp_baseline
from bench.common import (
    BENCH_ACTOR_ID,
    DRAFT_MD,
    PYTHON,
    Child,
    PeakRss,
    Report,
    Row,
    arguments,
    available_backends,
    bench_settings,
    fresh_database,
    median,
    new_task_queue,
    registry_csv,
    roundtable_env,
    smtp_sink,
    spawn,
    start_worker,
    temporal_dev_server,
    wait_until,
    workdir,
)

NAME = "launch_fanout"
PUBLIC_BASE_URL = "https://roundtable.gov.example"
FULL_SIZES = (100, 1000, 5000)
SMOKE_SIZES = (20,)
NAIVE_SIZES = "100,1000"
TARGET_SIZE = 1000


# --- seeding and waiting, shared with bench/deadline_storm.py -----------------------------------------


async def seed_consultation(
    database_url: str,
    *,
    organisations: int,
    deadline: datetime,
    coordinator_email: str | None = None,
    title: str = "Migration strategy",
) -> int:
    """Registry, draft and a draft round consulting every organisation on every section; with
    `coordinator_email`, created by that coordinator (who is told when the round closes)."""
    from models.audit import Actor
    from models.enums import ActorKind, Role
    from models.rounds import RoundCreate
    from models.users import UserCreate
    from services import documents, rounds, users
    from services import organisations as registry
    from services.db import Database

    actor = Actor(kind=ActorKind.system, id=BENCH_ACTOR_ID)
    db = Database(database_url)
    try:
        user_id = None
        if coordinator_email:
            async with db.write_session() as session:
                user, _token = await users.create_user(
                    session,
                    data=UserCreate(email=coordinator_email, role=Role.coordinator, full_name="Coordinator"),
                    actor=actor,
                )
                user_id = user.id
        async with db.write_session() as session:
            await registry.import_csv(session, content=registry_csv(organisations), actor=actor)
        async with db.write_session() as session:
            document = await documents.create_document(
                session, title=title, filename="draft.md", content=DRAFT_MD.read_bytes(), actor=actor
            )
        async with db.write_session() as session:
            created = await rounds.create_round(
                session,
                data=RoundCreate(title=title, document_version_id=document.versions[0].id, deadline=deadline),
                actor=actor,
                user_id=user_id,
            )
        return created.id
    finally:
        await db.dispose()


async def wait_for_pollers(client: Client, task_queue: str, *, children: list[Child]) -> None:
    """Until a worker polls the task queue for both workflow and activity tasks (it has started)."""

    async def pollers() -> int:
        kinds = 0
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
                )
            )
            kinds += bool(described.pollers)
        return kinds

    await wait_until(
        pollers, lambda n: n == 2, timeout=60, every=0.1, what="worker polling", children=children
    )


# --- the three measurements ---------------------------------------------------------------------------


async def measure_ours(backend: str, organisations: int) -> dict[str, Any]:
    from models.audit import Actor
    from models.enums import ActorKind
    from services.db import Database
    from workflows.client import Scheduler, launch_round

    expected = 2 * organisations
    with workdir("launch") as directory:
        async with fresh_database(backend, directory) as url:
            round_id = await seed_consultation(
                url, organisations=organisations, deadline=datetime.now(UTC) + timedelta(days=14)
            )
            async with temporal_dev_server(directory) as (address, temporal), smtp_sink(directory) as sink:
                env = roundtable_env(
                    database_url=url,
                    temporal_address=address,
                    sink_port=sink.port,
                    public_base_url=PUBLIC_BASE_URL,
                    task_queue=new_task_queue("launch"),
                )
                settings = bench_settings(env)
                worker = start_worker(directory, env)
                db = Database(url)
                try:
                    scheduler = Scheduler(settings)
                    client = await scheduler.client()
                    await wait_for_pollers(client, settings.task_queue, children=[worker, temporal])
                    with PeakRss() as rss:
                        rss.watch("worker", worker.pid)
                        rss.watch("temporal", temporal.pid)
                        started = time.time()
                        await launch_round(
                            db, scheduler, round_id=round_id, actor=Actor(kind=ActorKind.system, id="bench")
                        )
                        last = await sink.wait_for(
                            expected, timeout=60 + organisations * 0.05, children=[worker, temporal]
                        )
                    await asyncio.sleep(0.3)  # a late duplicate would show up here
                    return {
                        "seconds": last - started,
                        "messages": sink.count(),
                        "duplicates": sink.duplicates(),
                        "worker_mib": rss.mib("worker"),
                        "temporal_mib": rss.mib("temporal"),
                    }
                finally:
                    worker.stop()
                    await db.dispose()


async def measure_smtp_limit(messages: int) -> float:
    payloads = smtp_baseline.copies(smtp_baseline.sample_invitation(), messages)
    with workdir("launch-smtp") as directory:
        async with smtp_sink(directory) as sink:
            started = await smtp_baseline.blast(sink.port, payloads)
            last = await sink.wait_for(messages, timeout=120)
            return last - started


async def measure_naive(organisations: int) -> float:
    with workdir("launch-naive") as directory:
        async with temporal_dev_server(directory) as (address, temporal), smtp_sink(directory) as sink:
            queue = new_task_queue("naive")
            worker = spawn(
                "naive-worker",
                [
                    PYTHON,
                    "-m",
                    "bench.naive_fanout",
                    "worker",
                    "--address",
                    address,
                    "--task-queue",
                    queue,
                    "--smtp-port",
                    str(sink.port),
                ],
                workdir=directory,
            )
            try:
                client = await Client.connect(address)
                await wait_for_pollers(client, queue, children=[worker, temporal])
                started = time.time()
                await naive_fanout.start(
                    client, organisations=organisations, task_queue=queue, workflow_id="naive-round"
                )
                last = await sink.wait_for(
                    2 * organisations, timeout=60 + organisations * 0.5, children=[worker, temporal]
                )
                return last - started
            finally:
                worker.stop()


# --- the report ---------------------------------------------------------------------------------------


def _runs_for(size: int, runs: int) -> int:
    """Medians of `runs` at the target's size; the other sizes once (the time budget of `make bench`)."""
    return runs if size == TARGET_SIZE else 1


async def main(args: argparse.Namespace) -> Report:
    report = Report(NAME, smoke=args.smoke)
    sizes = SMOKE_SIZES if args.smoke else tuple(int(size) for size in args.sizes.split(","))
    backends = await available_backends(args.backends, report)
    naive_sizes = set(sizes) if args.smoke else {int(n) for n in args.naive_sizes.split(",") if n.strip()}
    report.details.update(
        {
            "sizes": sizes,
            "backends": backends,
            "runs": {size: _runs_for(size, args.runs) for size in sizes},
            "naive_sizes": naive_sizes,
            "contacts_per_organisation": 2,
            "notes": [
                *report.details.get("notes", []),
                f"(b), the naive design, runs once per size and only at {sorted(naive_sizes)} organisations"
                " (minutes per run at 1,000)",
                f"sizes other than {TARGET_SIZE} organisations are measured once (time budget)",
                f"PostgreSQL is measured at {TARGET_SIZE} organisations only (time budget)",
            ],
        }
    )
    raw: dict[str, Any] = {}
    for size in sizes:
        runs = _runs_for(size, args.runs)
        smtp: list[float] = []
        naive: list[float] = []
        size_backends = [b for b in backends if b == "sqlite" or size == TARGET_SIZE or args.smoke]
        ours: dict[str, list[dict[str, Any]]] = {backend: [] for backend in size_backends}
        for run in range(runs):
            for backend in size_backends:
                result = await measure_ours(backend, size)
                ours[backend].append(result)
                print(f"   {size} orgs, {backend}, run {run + 1}: ours {result['seconds']:.2f} s", flush=True)
            smtp.append(await measure_smtp_limit(2 * size))
            print(f"   {size} orgs, run {run + 1}: (a) SMTP limit {smtp[-1]:.2f} s", flush=True)
            if size in naive_sizes and run == 0:
                naive.append(await measure_naive(size))
                print(f"   {size} orgs, run {run + 1}: (b) naive {naive[-1]:.2f} s", flush=True)
        raw[str(size)] = {"ours": ours, "smtp_limit": smtp, "naive": naive}
        smtp_s = median(smtp)
        naive_s = median(naive) if naive else None
        for backend in size_backends:
            _rows(report, size, backend, ours[backend], smtp_s, naive_s, runs, len(naive))
    report.details["raw"] = raw
    return report


def _rows(
    report: Report,
    size: int,
    backend: str,
    results: list[dict[str, Any]],
    smtp_s: float,
    naive_s: float | None,
    runs: int,
    naive_runs: int,
) -> None:
    messages = 2 * size
    ours_s = median([result["seconds"] for result in results])
    label = f"{size} orgs, {backend}, median of {runs}" if runs > 1 else f"{size} orgs, {backend}, 1 run"
    at_target = size == TARGET_SIZE
    ratio_a = ours_s / smtp_s
    report.add(
        Row(
            NAME,
            f"time to last invitation ({label})",
            ours_s,
            "s",
            baseline=smtp_s,
            baseline_name="(a) SMTP limit",
            ratio=ratio_a,
            ratio_name="ours/(a)",
            target="≤ 3" if at_target else None,
            met=ratio_a <= 3 if at_target else None,
        )
    )
    if naive_s is not None:
        ratio_b = naive_s / ours_s
        report.add(
            Row(
                NAME,
                f"time to last invitation ({label})",
                ours_s,
                "s",
                baseline=naive_s,
                baseline_name="(b) naive fan-out" + (", 1 run" if naive_runs == 1 < runs else ""),
                ratio=ratio_b,
                ratio_name="(b)/ours",
                target="≥ 5" if at_target else None,
                met=ratio_b >= 5 if at_target else None,
            )
        )
    report.add(
        Row(
            NAME,
            f"invitations/s ({label})",
            messages / ours_s,
            "msg/s",
            baseline=messages / smtp_s,
            baseline_name="(a) SMTP limit",
        )
    )
    duplicates = max(result["duplicates"] for result in results)
    report.add(
        Row(NAME, f"duplicate invitations ({label})", duplicates, "", target="= 0", met=duplicates == 0)
    )
    report.add(
        Row(NAME, f"peak RSS, worker ({label})", max(result["worker_mib"] for result in results), "MiB")
    )
    report.add(
        Row(
            NAME,
            f"peak RSS, Temporal server ({label})",
            max(result["temporal_mib"] for result in results),
            "MiB",
        )
    )


def _extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(str(size) for size in FULL_SIZES))
    parser.add_argument("--naive-sizes", default=NAIVE_SIZES, help="sizes baseline (b) runs at ('' for none)")


if __name__ == "__main__":
    arguments_ = arguments(__doc__ or NAME, _extra, smoke_backends=("sqlite",))
    result = asyncio.run(main(arguments_))
    result.print()
    print(f"\nwritten to {Path(result.write()).relative_to(Path.cwd())}")
