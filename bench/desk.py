"""The coordinator's desk (issue 10): the console's round page, its dashboard fragment, the answers page and
the round's downloads, against GET /api/v1/rounds/{id}/comments measured in the same run.

Per backend: a launched round consulting the 88 organisations of the shared registry
(../shared/fixtures/stakeholders-albania.csv; generated organisations if it is absent), N comments made
through the focal points' links (services.comments.add_comment with their tokens), half of them answered
in bulk and published (services.responses), all through the services. Then the app under uvicorn (one
worker, no Temporal: these pages never need it), read over HTTP by one keep-alive client, one request at a
time, signed in as the round's coordinator (a console session cookie for the pages, its API token for the
API):

- GET /api/v1/rounds/{id}/comments, the JSON of every comment with its answer: the baseline;
- GET /console/rounds/{id} (the round page with its dashboard) and /console/rounds/{id}/dashboard (the
  fragment the page refreshes every 30 s): median and p95 over R requests;
- GET /console/rounds/{id}/comments, the answers page (50 comments a page): its first page, its last page
  and the unanswered ones;
- GET /api/v1/rounds/{id}/comment-matrix.xlsx, .docx, report.pdf and report.docx: time per file (median of
  --runs) and size.

The light requests are interleaved, baseline first, so that a change in the load of the shared machine
hits them all alike. Every figure is printed with its ratio to the JSON baseline; none is asserted.

    .venv/bin/python -m bench.desk [--smoke] [--runs N] [--backends sqlite,postgresql]
                                   [--comments N] [--requests R]
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BENCH_PERIOD,
    REPO,
    Report,
    Row,
    arguments,
    available_backends,
    bench_actor,
    bench_settings,
    create_rounds,
    free_port,
    fresh_database,
    issue_focal_point_tokens,
    launch,
    median,
    new_task_queue,
    percentile,
    roundtable_env,
    seed_draft,
    seed_registry,
    start_web,
    wait_for_port,
    workdir,
)

SHARED_REGISTRY = REPO.parent / "shared" / "fixtures" / "stakeholders-albania.csv"
ORGANISATIONS = 88
FULL_COMMENTS = 2_000
SMOKE_COMMENTS = 40
FULL_REQUESTS = 30
SMOKE_REQUESTS = 5
WARM_UP = 2
"""Requests per route before measuring: a process's first requests compile templates and statements."""
BULK = 100
"""Comments per bulk answer (the API takes up to 1,000)."""
COORDINATOR = "desk@secretariat.gov.example"
PASSWORD = "bench desk password"
BASELINE = "GET comments JSON"
PAGE_SIZE = 50  # the answers page's (services/web/pages/console_answers.py)
REGISTRY_COLUMNS = [
    "key",
    "name_en",
    "name_sq",
    "kind",
    "focal_point_name",
    "focal_point_email",
    "alternate_email",
    "escalation_email",
    "language",
]
BODIES = [
    "Article {n} leaves open who publishes the annual migration report and by when; please name the "
    "institution and the date.",
    "The action plan assigns the reception centres to the municipalities without a budget line; the "
    "strategy should say how they are funded in {n} years.",
    "Neni {n} bie ndesh me ligjin për të huajt: afati për leje qëndrimi duhet të jetë i njëjtë me atë të "
    "ligjit.",
    "Typo: 'migratoin' in paragraph {n}.",
    "The indicators of objective {n} have no baseline and no source; we propose INSTAT's labour force "
    "survey as the source and 2024 as the baseline year.",
]


@dataclass
class Seeded:
    round_id: int
    api_token: str
    session_secret: str
    comments: int
    answered: int
    organisations: int
    registry: str
    seconds: dict[str, float] = field(default_factory=dict)


def _extra(parser: Any) -> None:
    parser.add_argument("--comments", type=int, default=None, help=f"comments ({FULL_COMMENTS:,}; smoke 40)")
    parser.add_argument("--requests", type=int, default=None, help="requests per page (30; smoke 5)")


# --- data ---------------------------------------------------------------------------------------------


def registry() -> tuple[bytes, str]:
    """The shared registry if it is there, else as many organisations generated; (CSV, where from)."""
    if SHARED_REGISTRY.exists():
        return SHARED_REGISTRY.read_bytes(), str(SHARED_REGISTRY)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REGISTRY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for number in range(1, ORGANISATIONS + 1):
        key = f"institution-{number:03d}"
        writer.writerow(
            {
                "key": key,
                "name_en": f"Institution {number}",
                "name_sq": f"Institucioni {number}",
                "kind": "ministry" if number <= 11 else "municipality",
                "focal_point_name": f"Focal Point, Institution {number}",
                "focal_point_email": f"migration.fp@{key}.gov.example",
                "alternate_email": f"migration.alt@{key}.gov.example",
                "escalation_email": f"secretary.general@{key}.gov.example",
                "language": "sq" if number % 2 else "en",
            }
        )
    return out.getvalue().encode("utf-8"), f"generated ({ORGANISATIONS} organisations)"


async def create_desk_user(url: str) -> tuple[int, str, str]:
    """The coordinator, with a password; (user id, API token, console session secret)."""
    from models.enums import Role
    from models.users import UserCreate
    from services import users
    from services.db import Database

    db = Database(url)
    try:
        async with db.write_session() as session:
            user, token = await users.create_user(
                session,
                data=UserCreate(
                    email=COORDINATOR, role=Role.coordinator, full_name="Desk Coordinator", password=PASSWORD
                ),
                actor=bench_actor(),
            )
        async with db.write_session() as session:
            _principal, secret = await users.sign_in(
                session, email=COORDINATOR, password=PASSWORD, ip="127.0.0.1"
            )
        return user.id, token, secret
    finally:
        await db.dispose()


async def task_sections(url: str, round_id: int) -> list[list[int]]:
    """The sections each task reviews, in task order (the order of the focal points' tokens)."""
    from sqlmodel import col, select

    from models.rounds import ReviewTask
    from services.db import Database

    db = Database(url)
    try:
        async with db.session() as session:
            tasks = (
                await session.exec(
                    select(ReviewTask).where(ReviewTask.round_id == round_id).order_by(col(ReviewTask.id))
                )
            ).all()
        return [list(task.section_ids) for task in tasks]
    finally:
        await db.dispose()


def comment_data(number: int, sections: list[int]) -> Any:
    from models.enums import CommentKind, CommentWeight
    from models.reviews import CommentCreate

    weight = (
        CommentWeight.objection
        if number % 10 == 0
        else CommentWeight.proposal
        if number % 3 == 0
        else CommentWeight.remark
    )
    kinds = list(CommentKind)
    return CommentCreate(
        section_id=sections[number % len(sections)],
        kind=kinds[number % len(kinds)],
        weight=weight,
        body=BODIES[number % len(BODIES)].format(n=number % 40 + 1),
        proposed_wording=(
            f"The Ministry of Interior publishes the report by 31 March of each year ({number})."
            if weight == CommentWeight.proposal
            else None
        ),
        submission_id=f"bench-desk-{number:08d}",
    )


async def add_comments(url: str, tokens: list[str], sections: list[list[int]], count: int) -> list[int]:
    """`count` comments through the focal points' links, spread over the organisations; their ids."""
    from services import comments
    from services.db import Database
    from services.links import ClientInfo

    client = ClientInfo(ip="198.51.100.10", user_agent="bench.desk")
    db = Database(url)
    try:
        ids = []
        for number in range(count):
            task = number % len(tokens)
            async with db.write_session() as session:
                view = await comments.add_comment(
                    session,
                    token=tokens[task],
                    data=comment_data(number // len(tokens), sections[task]),
                    client=client,
                )
            ids.append(view.id)
        return ids
    finally:
        await db.dispose()


async def answer_and_publish(url: str, round_id: int, comment_ids: list[int], user_id: int) -> int:
    """Every other comment answered (in bulk, the kinds in turn) and the answers published; how many."""
    from models.enums import ResponseKind
    from models.responses import BulkResponse
    from services import responses
    from services.db import Database

    chosen = comment_ids[::2]
    kinds = list(ResponseKind)
    db = Database(url)
    try:
        for batch, start in enumerate(range(0, len(chosen), BULK)):
            kind = kinds[batch % len(kinds)]
            data = BulkResponse(
                comment_ids=chosen[start : start + BULK],
                response=kind,
                justification=(
                    "The strategy sets the direction; the action plan 2025-2027 names the institution, the "
                    "budget line and the date for each measure."
                    if kind in (ResponseKind.rejected, ResponseKind.partially_accepted)
                    else ""
                ),
                new_wording=(
                    "The Ministry of Interior publishes the annual migration report by 31 March."
                    if kind in (ResponseKind.accepted, ResponseKind.partially_accepted)
                    else None
                ),
            )
            async with db.write_session() as session:
                await responses.answer_comments(
                    session, round_id=round_id, data=data, actor=bench_actor(), user_id=user_id
                )
        async with db.write_session() as session:
            published = await responses.publish(
                session,
                round_id=round_id,
                actor=bench_actor(),
                settings=bench_settings({"ROUNDTABLE_DATABASE_URL": url}),
            )
        return published.published
    finally:
        await db.dispose()


async def seed(url: str, comments: int) -> Seeded:
    from models.rounds import RoundCreate

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    content, source = registry()
    await seed_registry(url, content)
    user_id, token, secret = await create_desk_user(url)
    version_id = await seed_draft(url, title="Migration governance strategy")
    data = RoundCreate(
        title="Migration governance strategy",
        document_version_id=version_id,
        deadline=datetime.now(UTC) + BENCH_PERIOD,
        sign_off_code_required=False,
    )
    (round_id,) = await create_rounds(url, [data], created_by=user_id)
    await launch(url, round_id=round_id)
    tokens = await issue_focal_point_tokens(url, round_id=round_id)
    sections = await task_sections(url, round_id)
    seconds["round"] = time.perf_counter() - started
    started = time.perf_counter()
    ids = await add_comments(url, tokens, sections, comments)
    seconds["comments"] = time.perf_counter() - started
    started = time.perf_counter()
    answered = await answer_and_publish(url, round_id, ids, user_id)
    seconds["answers"] = time.perf_counter() - started
    return Seeded(
        round_id=round_id,
        api_token=token,
        session_secret=secret,
        comments=len(ids),
        answered=answered,
        organisations=len(tokens),
        registry=source,
        seconds=seconds,
    )


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    path: str
    console: bool
    media_type: str


@dataclass
class Timed:
    seconds: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def ms(self) -> list[float]:
        return sorted(1000 * s for s in self.seconds)


async def fetch(client: httpx.AsyncClient, target: Target, headers: dict[str, str]) -> tuple[float, int]:
    """One request, read to its end; (seconds, bytes). A redirect (signed out) or an error fails the run."""
    started = time.perf_counter()
    response = await client.get(target.path, headers=headers)
    seconds = time.perf_counter() - started
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
        target.media_type
    ):
        raise RuntimeError(
            f"GET {target.path}: {response.status_code} {response.headers.get('content-type')}: "
            f"{response.text[:500]}"
        )
    return seconds, len(response.content)


def check_baseline(body: bytes, seeded: Seeded) -> None:
    """The JSON lists every comment and the published answers: the round is what the figures say."""
    import json

    listed = json.loads(body)
    published = sum(1 for c in listed if c["response"] and c["response"]["published_at"])
    if len(listed) != seeded.comments or published != seeded.answered:
        raise RuntimeError(
            f"the JSON lists {len(listed)} comments, {published} answers published; "
            f"seeded {seeded.comments} and {seeded.answered}"
        )


async def measure(
    port: int, seeded: Seeded, *, requests: int, runs: int
) -> tuple[dict[str, Timed], dict[str, Timed], list[Target], list[Target]]:
    rid = seeded.round_id
    last_page = max(1, -(-seeded.comments // PAGE_SIZE))
    light = [
        Target(BASELINE, f"/api/v1/rounds/{rid}/comments", False, "application/json"),
        Target("GET /console/rounds/{id}", f"/console/rounds/{rid}", True, "text/html"),
        Target("GET /console/rounds/{id}/dashboard", f"/console/rounds/{rid}/dashboard", True, "text/html"),
        Target("answers page 1", f"/console/rounds/{rid}/comments", True, "text/html"),
        Target(
            f"answers page {last_page} (last)",
            f"/console/rounds/{rid}/comments?page={last_page}",
            True,
            "text/html",
        ),
        Target(
            "answers ?state=unanswered",
            f"/console/rounds/{rid}/comments?state=unanswered",
            True,
            "text/html",
        ),
    ]
    files = [
        Target(
            "comment-matrix.xlsx",
            f"/api/v1/rounds/{rid}/comment-matrix.xlsx",
            False,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        Target(
            "comment-matrix.docx",
            f"/api/v1/rounds/{rid}/comment-matrix.docx",
            False,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        Target("report.pdf", f"/api/v1/rounds/{rid}/report.pdf", False, "application/pdf"),
        Target(
            "report.docx",
            f"/api/v1/rounds/{rid}/report.docx",
            False,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ]
    api = {"Authorization": f"Bearer {seeded.api_token}"}
    console = {"Cookie": f"rt_session={seeded.session_secret}", "Accept": "text/html"}
    pages: dict[str, Timed] = {t.label: Timed() for t in light}
    downloads: dict[str, Timed] = {t.label: Timed() for t in files}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        baseline = await client.get(light[0].path, headers=api)
        baseline.raise_for_status()
        check_baseline(baseline.content, seeded)
        for _ in range(WARM_UP):
            for target in light:
                seconds, _size = await fetch(client, target, console if target.console else api)
                pages[target.label].cold.append(seconds)
        for _ in range(requests):
            for target in light:
                seconds, size = await fetch(client, target, console if target.console else api)
                pages[target.label].seconds.append(seconds)
                pages[target.label].sizes.append(size)
        # The files take long enough to build that a first one is one more figure, not a warm-up.
        for _ in range(runs):
            for target in files:
                seconds, size = await fetch(client, target, api)
                downloads[target.label].seconds.append(seconds)
                downloads[target.label].sizes.append(size)
    return pages, downloads, light, files


def rows(
    backend: str, report: Report, pages: dict[str, Timed], downloads: dict[str, Timed], seeded: Seeded
) -> None:
    name = f"desk {backend}"
    base = pages[BASELINE]
    base_p50, base_p95 = median(base.ms()), percentile(base.ms(), 0.95)
    base_kib = median(base.sizes) / 1024
    label = f"{BASELINE}, {seeded.comments:,} comments"
    report.add(Row(name, f"{BASELINE} p50", base_p50, "ms"))
    report.add(Row(name, f"{BASELINE} p95", base_p95, "ms"))
    report.add(Row(name, f"{BASELINE} size", base_kib, "KiB"))
    for title, timed in pages.items():
        if title == BASELINE:
            continue
        p50, p95 = median(timed.ms()), percentile(timed.ms(), 0.95)
        report.add(Row(name, f"{title} p50", p50, "ms", base_p50, label, p50 / base_p50, "ours/baseline"))
        report.add(Row(name, f"{title} p95", p95, "ms", base_p95, label, p95 / base_p95, "ours/baseline"))
        kib = median(timed.sizes) / 1024
        report.add(Row(name, f"{title} size", kib, "KiB", base_kib, label, kib / base_kib, "ours/baseline"))
    for title, timed in downloads.items():
        seconds = median(timed.ms())
        report.add(
            Row(name, f"{title} build", seconds, "ms", base_p50, label, seconds / base_p50, "ours/baseline")
        )
        kib = median(timed.sizes) / 1024
        report.add(Row(name, f"{title} size", kib, "KiB", base_kib, label, kib / base_kib, "ours/baseline"))


async def run_backend(backend: str, args: Any, report: Report, comments: int, requests: int) -> None:
    with workdir(f"desk-{backend}") as directory:
        async with fresh_database(backend, directory) as url:
            seeded = await seed(url, comments)
            took = ", ".join(f"{what} {seconds:.1f} s" for what, seconds in seeded.seconds.items())
            print(
                f"[{backend}] round {seeded.round_id}: {seeded.organisations} organisations, "
                f"{seeded.comments:,} comments, {seeded.answered:,} answered and published ({took}); "
                f"registry: {seeded.registry}",
                flush=True,
            )
            port = free_port()
            env = roundtable_env(
                database_url=url,
                # Nothing listens there: the pages and downloads never need the scheduler.
                temporal_address=f"127.0.0.1:{free_port()}",
                sink_port=free_port(),
                public_base_url=f"http://127.0.0.1:{port}",
                task_queue=new_task_queue("desk"),
            )
            web = start_web(Path(directory), env, port=port, workers=1)
            try:
                await wait_for_port(port, child=web)
                started = time.perf_counter()
                pages, downloads, _light, _files = await measure(
                    port, seeded, requests=requests, runs=args.runs
                )
                measuring = time.perf_counter() - started
            finally:
                web.stop()
    for title, timed in {**pages, **downloads}.items():
        ms = timed.ms()
        print(
            f"[{backend}] {title:<40} p50 {median(ms):8.1f} ms  p95 {percentile(ms, 0.95):8.1f} ms  "
            f"{median(timed.sizes) / 1024:9.1f} KiB  (n={len(ms)})",
            flush=True,
        )
    rows(backend, report, pages, downloads, seeded)
    report.details[backend] = {
        "round_id": seeded.round_id,
        "organisations": seeded.organisations,
        "registry": seeded.registry,
        "comments": seeded.comments,
        "answered_and_published": seeded.answered,
        "requests_per_page": requests,
        "warm_up_requests": WARM_UP,
        "runs_per_file": args.runs,
        "seed_seconds": {what: round(seconds, 2) for what, seconds in seeded.seconds.items()},
        "measure_seconds": round(measuring, 1),
        "warm_up_ms": {title: [round(1000 * s, 1) for s in timed.cold] for title, timed in pages.items()},
        "ms": {
            title: [round(1000 * s, 1) for s in timed.seconds]
            for title, timed in {**pages, **downloads}.items()
        },
        "bytes": {title: median(timed.sizes) for title, timed in {**pages, **downloads}.items()},
    }


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], _extra, backends=("sqlite",))
    comments = args.comments or (SMOKE_COMMENTS if args.smoke else FULL_COMMENTS)
    requests = args.requests or (SMOKE_REQUESTS if args.smoke else FULL_REQUESTS)
    report = Report("desk", smoke=args.smoke)
    report.details["method"] = (
        "one keep-alive client, one request at a time, against one uvicorn worker; the light requests "
        f"interleaved, {WARM_UP} warm-up rounds left out, p50 and p95 over --requests; each file the "
        "median of --runs; ratios to the median of GET /api/v1/rounds/{id}/comments in the same run"
    )
    started = time.perf_counter()
    for backend in await available_backends(args.backends, report):
        await run_backend(backend, args, report, comments, requests)
    report.details["run_seconds"] = round(time.perf_counter() - started, 1)
    report.print()
    print(f"\nwritten: {report.write()} ({report.details['run_seconds']} s)")


if __name__ == "__main__":
    asyncio.run(main())
