"""The review page and its writes under load, against bare FastAPI baselines measured in the same run.

Per backend: a launched, open round consulting thousands of organisations (tokens issued as the
invitations would, without email); the app under uvicorn; and the bare app of bench/baseline_web.py under
uvicorn with the same options and workers. Then, C concurrent keep-alive clients for D seconds each (the
load generator runs in its own process):

- GET /t/{token} over many focal points' pages, against a bare Jinja2 page of the same byte size;
- POST a comment (a fresh submission id each, CSRF cookie and form token from a page fetched first),
  against a bare route inserting one row (aiosqlite, or asyncpg on PostgreSQL);
- POST a sign-off, each of a distinct task until the tasks run out, against the same bare insert.

Afterwards the rows are counted (every 303 is one comment or sign-off in the database, none twice) and
the audit chain is exported and verified.

    .venv/bin/python -m bench.review_load [--smoke] [--runs N] [--backends sqlite,postgresql]
                                          [--duration S] [--clients C] [--workers W] [--profile DIR]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import baseline_web
from bench.common import (
    PYTHON,
    Child,
    Report,
    Row,
    arguments,
    available_backends,
    free_port,
    fresh_database,
    issue_focal_point_tokens,
    launch,
    median,
    new_task_queue,
    roundtable_env,
    seed_round,
    start_uvicorn,
    start_web,
    wait_for_port,
    workdir,
)
from bench.loadgen import Request, Result, Spec, run_in_process

PAGE_RPS_TARGET = 0.5
PAGE_P99_MS = 100.0
WRITE_RPS_TARGET = 0.25
WRITE_P99_MS = 200.0
GET_PAGES = 200
WARM_UP_S = 2.0
COMMENT_TASKS = 256
FORM = "application/x-www-form-urlencoded"


def extra(parser: Any) -> None:
    parser.add_argument("--duration", type=float, default=None, help="seconds per scenario (30; 0.5 smoke)")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (64; 8 smoke)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers, ours and the baselines'")
    parser.add_argument(
        "--organisations", type=int, default=None, help="round size (enough that sign-offs last)"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy our workers into this folder")


async def prepare_round(url: str, organisations: int) -> tuple[int, list[str]]:
    """A round launched and opened through the services, as its scheduler does, and its tokens."""
    round_id = await seed_round(url, organisations=organisations)
    await launch(url, round_id=round_id)
    return round_id, await issue_focal_point_tokens(url, round_id=round_id)


def start_baseline(directory: Path, *, port: int, workers: int, page_bytes: Path, database: str) -> Child:
    return start_uvicorn(
        "baseline",
        "bench.baseline_web:create_app",
        directory,
        {"BASELINE_PAGE_BYTES_FILE": str(page_bytes), "BASELINE_DATABASE": database},
        port=port,
        workers=workers,
    )


async def form_credentials(port: int, token: str) -> tuple[str, str, int, list[int]]:
    """What a browser holds after opening the page: the CSRF cookie and form token; and the page's size
    and the sections it offers a comment form for."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        page = await client.get(f"/t/{token}")
        page.raise_for_status()
    cookie = page.cookies["rt_csrf"]
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token on the review page"
    sections = [int(s) for s in re.findall(r'name="section_id" value="(\d+)"', page.text)]
    assert re.search(r'id="sign-off-form".*?name="submission_id" value="[0-9a-f]{32}"', page.text, re.DOTALL)
    return cookie, match.group(1), len(page.content), sections


def load(
    port: int, clients: int, duration: float, requests: list[Request], expect: list[int], mode: str = "cycle"
) -> Result:
    return run_in_process(
        Spec(port=port, clients=clients, duration=duration, requests=requests, expect=expect, mode=mode)
    )


@contextlib.contextmanager
def profiled(directory: Path | None, name: str, web: Child) -> Any:
    """py-spy on each of our uvicorn workers while a scenario runs (flame graphs into `directory`)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                str(Path(PYTHON).with_name("py-spy")),
                "record",
                "--pid",
                str(worker.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(directory / f"{name}-{worker.pid}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for worker in psutil.Process(web.pid).children()
        if "spawn_main" in " ".join(worker.cmdline())
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(2)
        for spy in spies:
            spy.wait(timeout=60)


async def counts(url: str, round_id: int) -> dict[str, Any]:
    """The rows the writes left, and the audit chain checked end to end."""
    from sqlalchemy import func
    from sqlmodel import select

    from models.audit import AuditEvent
    from models.enums import TaskStatus
    from models.reviews import Comment, SignOff
    from models.rounds import ReviewTask
    from services.audit import browse, verify
    from services.db import Database

    db = Database(url)
    try:
        async with db.session() as session:

            async def scalar(query: Any) -> int:
                return int((await session.exec(query)).one())

            found = {
                "comments": await scalar(
                    select(func.count()).select_from(Comment).where(Comment.round_id == round_id)
                ),
                "comment_submissions": await scalar(
                    select(func.count(func.distinct(Comment.submission_id))).where(
                        Comment.round_id == round_id
                    )
                ),
                "sign_offs": await scalar(
                    select(func.count()).select_from(SignOff).where(SignOff.round_id == round_id)
                ),
                "signed_tasks": await scalar(
                    select(func.count())
                    .select_from(ReviewTask)
                    .where(ReviewTask.round_id == round_id, ReviewTask.status == TaskStatus.signed_off)
                ),
                "comment_events": await scalar(
                    select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "comment.added")
                ),
                "sign_off_events": await scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action == "signoff.recorded")
                ),
            }
            lines = [line async for line in browse.export_lines(session)]
        verified = verify.verify_lines(lines)
        found["audit"] = verified.describe()
        found["audit_ok"] = verified.ok
        found["audit_events"] = verified.events
        return found
    finally:
        await db.dispose()


async def run_backend(backend: str, args: Any, report: Report, duration: float, organisations: int) -> None:
    with workdir(f"review-{backend}") as directory:
        async with fresh_database(backend, directory) as url:
            started = time.monotonic()
            round_id, tokens = await prepare_round(url, organisations)
            took = time.monotonic() - started
            print(f"[{backend}] round {round_id}: {len(tokens)} focal points ready in {took:.1f} s")
            web_port, baseline_port = free_port(), free_port()
            env = roundtable_env(
                database_url=url,
                # Nothing listens there: these routes never need the scheduler, and the one sign-off that
                # settles a round only wakes it in a background task, best effort.
                temporal_address=f"127.0.0.1:{free_port()}",
                sink_port=free_port(),
                public_base_url=f"http://127.0.0.1:{web_port}",
                task_queue=new_task_queue("review"),
            )
            database = str(directory / "baseline.db") if backend == "sqlite" else url
            await baseline_web.prepare(database)
            size_file = directory / "page-bytes"
            # Both start together (their start-up is most of a smoke run); the bare app reads the size of
            # its page on its first request, which comes after ours was measured.
            web = start_web(directory, env, port=web_port, workers=args.workers)
            baseline = start_baseline(
                directory, port=baseline_port, workers=args.workers, page_bytes=size_file, database=database
            )
            try:
                await wait_for_port(web_port, child=web)
                page_tokens = tokens[:GET_PAGES]
                comment_tokens = tokens[GET_PAGES : GET_PAGES + COMMENT_TASKS]
                sign_off_tokens = tokens[GET_PAGES + COMMENT_TASKS :]
                cookie, csrf_token, page_bytes, sections = await form_credentials(web_port, page_tokens[0])
                size_file.write_text(str(page_bytes))
                try:
                    await wait_for_port(baseline_port, child=baseline)
                    await measure(
                        backend,
                        args,
                        report,
                        duration,
                        url,
                        round_id,
                        web,
                        web_port,
                        baseline_port,
                        page_tokens,
                        comment_tokens,
                        sign_off_tokens,
                        cookie,
                        csrf_token,
                        sections,
                        page_bytes,
                    )
                finally:
                    baseline.stop()
            finally:
                baseline.stop()
                web.stop()


async def measure(
    backend: str,
    args: Any,
    report: Report,
    duration: float,
    url: str,
    round_id: int,
    web: Child,
    web_port: int,
    baseline_port: int,
    page_tokens: list[str],
    comment_tokens: list[str],
    sign_off_tokens: list[str],
    cookie: str,
    csrf_token: str,
    sections: list[int],
    page_bytes: int,
) -> None:
    # At smoke sizes `make test` runs this beside the suite on the same PostgreSQL server: the pools that
    # full-size clients fill would leave the suite's tests too few of its connections.
    clients = args.clients or (8 if args.smoke else 64)
    cookie_header = {"Cookie": f"rt_csrf={cookie}"}
    form_headers = {**cookie_header, "Content-Type": FORM}
    get_requests = [Request("GET", f"/t/{token}", cookie_header) for token in page_tokens]
    comment_requests = [
        Request(
            "POST",
            f"/t/{token}/comments",
            form_headers,
            f"csrf_token={csrf_token}&submission_id=__SID__&section_id={sections[n % len(sections)]}"
            "&kind=general&paragraph=&body=Please+state+who+publishes+the+annual+report.&proposed_wording=",
        )
        for n, token in enumerate(comment_tokens)
    ]
    sign_off_requests = [
        Request(
            "POST",
            f"/t/{token}/sign-off",
            form_headers,
            f"csrf_token={csrf_token}&submission_id=__SID__&decision=approve&statement="
            "&signer_name=Arta+Hoxha&signer_title=Director+of+Migration+Policy&authorised=on",
        )
        for token in sign_off_tokens
    ]
    bare_page = [Request("GET", "/page")]
    bare_insert = [Request("POST", "/insert", {"Content-Type": FORM}, "body=Please+state+who+publishes.")]
    figures: dict[str, list[Result]] = {
        name: [] for name in ("page", "bare_page", "comment", "sign_off", "bare_insert")
    }
    # A process's first requests compile templates and statements and render the draft: under 64
    # clients that start-up lands in the p99 of a short run. Both apps are warmed alike, and the comments
    # posted meanwhile are counted with the rest.
    warm_up = min(WARM_UP_S, duration)
    warm = {
        "bare_page": await asyncio.to_thread(load, baseline_port, clients, warm_up, bare_page, [200]),
        "bare_insert": await asyncio.to_thread(load, baseline_port, clients, warm_up, bare_insert, [303]),
        "page": await asyncio.to_thread(load, web_port, clients, warm_up, get_requests, [200]),
        "comment": await asyncio.to_thread(load, web_port, clients, warm_up, comment_requests, [303]),
    }
    remaining = list(sign_off_requests)
    per_run = max(1, len(remaining) // args.runs)
    for run in range(args.runs):
        # Baseline and ours alternate, so that a burst of load from elsewhere hits both alike.
        figures["bare_page"].append(
            await asyncio.to_thread(load, baseline_port, clients, duration, bare_page, [200])
        )
        with profiled(args.profile, f"{backend}-page", web):
            figures["page"].append(
                await asyncio.to_thread(load, web_port, clients, duration, get_requests, [200])
            )
        figures["bare_insert"].append(
            await asyncio.to_thread(load, baseline_port, clients, duration, bare_insert, [303])
        )
        with profiled(args.profile, f"{backend}-comment", web):
            figures["comment"].append(
                await asyncio.to_thread(load, web_port, clients, duration, comment_requests, [303])
            )
        batch, remaining = remaining[:per_run], remaining[per_run:]
        with profiled(args.profile, f"{backend}-sign-off", web):
            figures["sign_off"].append(
                await asyncio.to_thread(load, web_port, clients, duration, batch, [303], "once")
            )
        summary = ", ".join(
            f"{name} {results[-1].rps:,.0f}/s p99 {results[-1].p99_ms:.0f} ms"
            for name, results in figures.items()
        )
        print(f"[{backend}] run {run + 1}/{args.runs}: {summary}")
    found = await counts(url, round_id)
    posted_comments = sum(r.statuses.get("303", 0) for r in [warm["comment"], *figures["comment"]])
    posted_sign_offs = sum(r.statuses.get("303", 0) for r in figures["sign_off"])
    rows_ok = {
        "comment": found["comments"]
        == posted_comments
        == found["comment_submissions"]
        == found["comment_events"],
        "sign_off": found["sign_offs"]
        == posted_sign_offs
        == found["signed_tasks"]
        == found["sign_off_events"],
    }
    report.details[backend] = {
        "page_bytes": page_bytes,
        "clients": clients,
        "workers": args.workers,
        "duration_s": duration,
        "organisations": len(page_tokens) + len(comment_tokens) + len(sign_off_tokens),
        "posted": {"comments": posted_comments, "sign_offs": posted_sign_offs},
        "database": found,
        "rows_ok": rows_ok,
        "runs": {name: [asdict(r) for r in results] for name, results in figures.items()},
        "warm_up": {name: asdict(result) for name, result in warm.items()},
    }
    if any(r.exhausted for r in figures["sign_off"]):
        report.details[backend]["note"] = (
            "sign-offs ran out of tasks before the duration: req/s is over the time they lasted"
        )

    def med(name: str, attribute: str) -> float:
        return median([getattr(r, attribute) for r in figures[name]])

    def errors(name: str) -> int:
        return sum(r.errors for r in figures[name]) + (warm[name].errors if name in warm else 0)

    cases = [
        ("GET /t/{token}", "page", "bare_page", "bare Jinja2 page", PAGE_RPS_TARGET, PAGE_P99_MS, None),
        ("POST comment", "comment", "bare_insert", "bare insert", WRITE_RPS_TARGET, WRITE_P99_MS, "comment"),
        (
            "POST sign-off",
            "sign_off",
            "bare_insert",
            "bare insert",
            WRITE_RPS_TARGET,
            WRITE_P99_MS,
            "sign_off",
        ),
    ]
    for label, ours, base, base_name, rps_target, p99_target, rows in cases:
        name = f"review_load {backend}: {label}"
        ratio = med(ours, "rps") / med(base, "rps")
        report.add(
            Row(
                name,
                "req/s",
                med(ours, "rps"),
                "req/s",
                med(base, "rps"),
                base_name,
                ratio,
                "ours/baseline",
                f">= {rps_target}",
                ratio >= rps_target,
            )
        )
        report.add(Row(name, "p50", med(ours, "p50_ms"), "ms", med(base, "p50_ms"), base_name))
        report.add(
            Row(
                name,
                "p99",
                med(ours, "p99_ms"),
                "ms",
                med(base, "p99_ms"),
                base_name,
                None,
                None,
                f"< {p99_target:.0f} ms",
                med(ours, "p99_ms") < p99_target,
            )
        )
        report.add(
            Row(name, "errors", errors(ours), "", errors(base), base_name, None, None, "0", errors(ours) == 0)
        )
        if rows is not None:
            count_key = "comments" if rows == "comment" else "sign_offs"
            report.add(
                Row(
                    name,
                    "rows in database",
                    found[count_key],
                    "",
                    None,
                    None,
                    None,
                    None,
                    "== 303 answers, no duplicates",
                    rows_ok[rows],
                )
            )
    report.add(
        Row(
            f"review_load {backend}: audit chain",
            "events verified",
            found["audit_events"],
            "",
            None,
            None,
            None,
            None,
            "intact",
            bool(found["audit_ok"]),
        )
    )


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], extra)
    if "--runs" not in sys.argv:
        args.runs = 1  # 5 scenarios x 30 s x 2 backends already fill the run's time budget
    duration = args.duration or (0.5 if args.smoke else 30.0)
    organisations = args.organisations or (GET_PAGES + COMMENT_TASKS + (300 if args.smoke else 6_000))
    report = Report("review_load", smoke=args.smoke)
    for backend in await available_backends(args.backends, report):
        await run_backend(backend, args, report, duration, organisations)
    report.print()
    print(f"\nwritten to {report.write()}")


if __name__ == "__main__":
    asyncio.run(main())
