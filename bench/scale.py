"""Scale: one round with 10,000 organisations runs to completion on the embedded stack.

Launch (20,000 invitations into the SMTP sink), every focal point signs off with the token from the link in
their email (through the review use case the sign-off form calls; the HTTP path under load is
bench/review_load.py), the round closes and the coordinator's notice arrives.
Checked: no invitation twice, every sign-off recorded, the scheduler completed without a history-limit
error (its history length is reported), and the worker's memory stays bounded (peak RSS, and how much it
grew between the end of the launch and the close).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psutil
from sqlmodel import func, select

from bench.common import (
    BENCH_ACTOR_ID,
    PeakRss,
    Report,
    Row,
    arguments,
    available_backends,
    create_coordinator,
    embedded_stack,
    fresh_database,
    seed_round,
    wait_until,
    workdir,
)

COORDINATOR = "secretariat@interior.gov.example"
CONCURRENCY = 32


def _extra(parser: Any) -> None:
    parser.add_argument("--organisations", type=int, default=None, help="organisations in the round")


async def _round_state(db: Any, round_id: int) -> dict[str, Any]:
    from models.reviews import SignOff
    from models.rounds import Round

    async with db.session() as session:
        round_ = await session.get(Round, round_id)
        sign_offs = (await session.exec(select(func.count()).where(SignOff.round_id == round_id))).one()
        distinct = (
            await session.exec(
                select(func.count(func.distinct(SignOff.task_id))).where(SignOff.round_id == round_id)
            )
        ).one()
    assert round_ is not None
    return {
        "status": str(round_.status),
        "reason": str(round_.close_reason),
        "sign_offs": sign_offs,
        "distinct_tasks": distinct,
    }


async def _focal_point_addresses(db: Any, round_id: int) -> set[str]:
    from models.enums import ContactRole
    from models.reviews import AccessLink

    async with db.session() as session:
        rows = await session.exec(
            select(AccessLink.email).where(
                AccessLink.round_id == round_id, AccessLink.role == ContactRole.focal_point
            )
        )
        return set(rows.all())


async def _sign_off_everyone(
    db: Any, scheduler: Any, tokens: list[str], settings: Any
) -> tuple[int, list[str], list[float]]:
    """Each focal point signs off through the review use case the sign-off form calls, CONCURRENCY at a
    time, and the one that settles the round wakes its scheduler as the form does. (The HTTP path is
    measured under load by bench/review_load.py; here the point is the round's end-to-end behaviour at
    scale, within the time `make bench` has.) Returns (signed, problems, latencies)."""
    from models.enums import Decision
    from models.reviews import SignOffCreate
    from services import links, reviews

    queue: asyncio.Queue[str] = asyncio.Queue()
    for token in tokens:
        queue.put_nowait(token)
    ok = 0
    problems: list[str] = []
    latencies: list[float] = []
    client = links.ClientInfo(ip="127.0.0.1", user_agent="bench/scale")

    async def focal_point() -> None:
        nonlocal ok
        while not queue.empty():
            token = queue.get_nowait()
            began = time.perf_counter()
            try:
                async with db.write_session() as session:
                    outcome = await reviews.sign_off(
                        session,
                        token=token,
                        data=SignOffCreate(
                            decision=Decision.approve,
                            statement="Agreed by the directorate.",
                            signer_name="Elira Marku",
                            signer_title="Director General",
                            submission_id=uuid.uuid4().hex,
                            authorised=True,
                        ),
                        client=client,
                        settings=settings,
                    )
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - began)
            ok += 1
            if outcome.round_settled:
                await scheduler.wake(outcome.receipt.round_id)

    await asyncio.gather(*(focal_point() for _ in range(CONCURRENCY)))
    return ok, problems, sorted(latencies)


async def _history(client: Any, workflow_id: str) -> tuple[str, int, int]:
    """Status of the scheduler's last run, events in its last history, and runs (continue-as-new)."""
    handle = client.get_workflow_handle(workflow_id)
    # The scheduler records the closing notice and then ends: let it finish.
    await asyncio.wait_for(handle.result(), timeout=120)
    description = await handle.describe()
    runs = 1
    history = await handle.fetch_history()
    events = len(history.events)
    first = history.events[0].workflow_execution_started_event_attributes
    while first.continued_execution_run_id:
        runs += 1
        previous = await client.get_workflow_handle(
            workflow_id, run_id=first.continued_execution_run_id
        ).fetch_history()
        first = previous.events[0].workflow_execution_started_event_attributes
    status = description.status.name if description.status else "unknown"
    return status, events, runs


async def run_once(backend: str, organisations: int, report: Report) -> None:
    from models.audit import Actor
    from models.enums import ActorKind
    from services.db import Database
    from workflows.client import launch_round, round_workflow_id

    label = f"scale {organisations:,} orgs ({backend})"
    with workdir("scale") as directory:
        async with fresh_database(backend, directory) as database_url:
            seeded = time.perf_counter()
            round_id = await seed_round(
                database_url,
                organisations=organisations,
                created_by=await create_coordinator(database_url, COORDINATOR),
            )
            seeding = time.perf_counter() - seeded
            async with embedded_stack(directory, database_url, name="scale", capture_links=True) as stack:
                scheduler, sink, worker, temporal = stack.scheduler, stack.sink, stack.worker, stack.temporal
                db = Database(database_url)
                try:
                    with PeakRss() as memory:
                        memory.watch("worker", worker.pid)
                        memory.watch("temporal", temporal.pid)
                        invitations = organisations * 2
                        started = time.time()
                        await launch_round(
                            db,
                            scheduler,
                            round_id=round_id,
                            actor=Actor(kind=ActorKind.system, id=BENCH_ACTOR_ID),
                        )
                        last = await sink.wait_for(invitations, timeout=1800, children=[worker, temporal])
                        launch_seconds = last - started
                        worker_after_launch = psutil.Process(worker.pid).memory_info().rss / 2**20
                        focal_points = await _focal_point_addresses(db, round_id)
                        links = [
                            link
                            for recipient, link in sink.links_by_recipient().items()
                            if recipient in focal_points
                        ]
                        signing = time.perf_counter()
                        tokens = [link.split("/t/", 1)[1] for link in links]
                        ok, problems, latencies = await _sign_off_everyone(
                            db, scheduler, tokens, stack.settings
                        )
                        signing_seconds = time.perf_counter() - signing
                        if problems or ok != organisations:
                            raise SystemExit(
                                f"{label}: {ok} of {organisations} signed off; {len(problems)} refused, "
                                f"first: {problems[:1]}"
                            )

                        async def state() -> dict[str, Any]:
                            return await _round_state(db, round_id)

                        await wait_until(
                            state,
                            lambda found: found["status"] == "closed",
                            timeout=600,
                            every=0.2,
                            what="the round closed",
                            children=[worker, temporal],
                        )
                        closed_after = time.perf_counter() - signing - signing_seconds
                        await sink.wait_for(invitations + 1, timeout=120, children=[worker])
                        final = await _round_state(db, round_id)
                        worker_at_close = psutil.Process(worker.pid).memory_info().rss / 2**20
                    status, events, runs = await _history(
                        await scheduler.client(), round_workflow_id(stack.settings, round_id)
                    )
                finally:
                    await db.dispose()
                duplicates = sink.duplicates()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    report.details[label] = {
        "seeding_s": round(seeding, 2),
        "launch_to_last_invitation_s": round(launch_seconds, 2),
        "sign_offs_ok": ok,
        "sign_off_errors": len(problems),
        "signing_s": round(signing_seconds, 2),
        "sign_off_p99_ms": round(p99, 1),
        "close_after_last_sign_off_s": round(closed_after, 2),
        "round": final,
        "scheduler_status": status,
        "scheduler_history_events": events,
        "scheduler_runs": runs,
        "duplicate_emails": duplicates,
        "worker_rss_after_launch_mib": round(worker_after_launch, 1),
        "worker_rss_at_close_mib": round(worker_at_close, 1),
        "peak_rss_mib": {name: round(memory.mib(name), 1) for name in ("worker", "temporal")},
    }
    completed = (
        final["status"] == "closed"
        and final["reason"] == "all_signed_off"
        and final["sign_offs"] == final["distinct_tasks"] == organisations
        and ok == organisations
        and not problems
        and duplicates == 0
        and status == "COMPLETED"
    )
    report.add(Row(label, "launch -> last invitation", launch_seconds, "s"))
    report.add(Row(label, "invitations/s", invitations / launch_seconds, "/s"))
    report.add(Row(label, "sign-offs through the review use case/s", ok / signing_seconds, "/s"))
    report.add(Row(label, "last sign-off -> round closed", closed_after, "s"))
    report.add(
        Row(
            label,
            "completed: all signed, closed, no duplicates",
            1.0 if completed else 0.0,
            "",
            target="1 (yes)",
            met=completed,
        )
    )
    report.add(
        Row(
            label,
            "scheduler history events (limit 51,200)",
            float(events),
            "",
            target="< 10,240 (no continue-as-new needed)",
            met=status == "COMPLETED" and events < 10_240,
        )
    )
    report.add(
        Row(
            label,
            "worker peak RSS",
            memory.mib("worker"),
            "MiB",
            target="< 300 MiB",
            met=memory.mib("worker") < 300,
        )
    )
    report.add(Row(label, "Temporal server peak RSS", memory.mib("temporal"), "MiB"))
    if not completed:
        raise SystemExit(f"{label}: the round did not complete cleanly: {report.details[label]}")


async def main() -> None:
    # SQLite, the embedded default, unless told (--backends postgresql for production's database).
    args = arguments(
        "One round of 10,000 organisations run to completion on the embedded stack.",
        extra=_extra,
        backends=("sqlite",),
    )
    organisations = args.organisations or (30 if args.smoke else 10_000)
    report = Report("scale", smoke=args.smoke)
    for backend in await available_backends(args.backends, report):
        await run_once(backend, organisations, report)
    report.print()
    print(f"\nresults: {report.write()}")


if __name__ == "__main__":
    asyncio.run(main())
