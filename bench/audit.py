"""Audit trail: append, export and verify rates on 1,000,000 events, with peak memory.

For each backend the trail is filled to N events of the shapes the service writes (email.sent from the
delivery batches, comment.added and signoff.recorded from the review page). Appending a million events
through the ORM would take most of the time budget, so the bulk of the trail is inserted with the raw
driver from the very same hash chain (models.audit.event_document/event_hash, which `verify` checks), and
a measured sample is appended through `services.audit.trail.append_many` on top of it: one event per write
transaction, and batches of the delivery batch size. Then the whole chain is exported (the CLI's
`audit export`, i.e. `export_lines` to a file, and `GET /api/v1/audit/export` from the web app under
uvicorn), with the peak RSS of the exporting process, and the export is verified (`verify_lines` in
process and `roundtable audit verify --head` as a command).

Baselines, measured in the same run on the same rows: a bare insert with the raw driver (sqlite3
executemany, asyncpg COPY), a bare read with the raw driver and json.dumps per row, and a bare SHA-256
of every line of the exported file (the floor of any verifier).

    .venv/bin/python -m bench.audit [--smoke] [--runs N] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.common import (
    BENCH_SECRET,
    PYTHON,
    PeakRss,
    Report,
    Row,
    arguments,
    available_backends,
    free_port,
    fresh_database,
    median,
    spawn,
    start_web,
    wait_for_port,
    workdir,
)
from models.audit import GENESIS_HASH, Actor, event_document, event_hash
from models.enums import ActorKind, Role

VERIFY_TARGET = 200_000  # events/s
EXPORT_MEMORY_TARGET_MIB = 200
OUTREACH_BATCH = 200  # Settings.mail_batch_size: events per append_many in the delivery batches
FILL_CHUNK = 20_000
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SYSTEM = Actor(kind=ActorKind.system, id="scheduler")
SECTIONS = [
    {"number": number, "heading": heading, "sha256": hashlib.sha256(heading.encode()).hexdigest()}
    for number, heading in enumerate(
        ["Hyrje", "Qëllimet strategjike", "Migracioni i rregullt", "Qeverisja", "Monitorimi"], start=1
    )
]
COLUMNS = (
    "seq",
    "at",
    "actor_kind",
    "actor_id",
    "actor_email",
    "action",
    "round_id",
    "task_id",
    "data",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class Sizes:
    events: int
    single_transactions: int
    batched_events: int


def sizes(smoke: bool) -> Sizes:
    if smoke:
        return Sizes(events=5_000, single_transactions=20, batched_events=1_000)
    return Sizes(events=1_000_000, single_transactions=300, batched_events=20_000)


# --- realistic events ---------------------------------------------------------------------------------


def event_shape(number: int) -> tuple[Actor, str, int, int, dict[str, Any]]:
    """Actor, action, round, task and data of the `number`th event: mostly invitations sent, then
    comments and sign-offs, as a round of a few hundred organisations writes them."""
    round_id = 1 + number // 50_000
    task_id = 1 + number % 5_000
    kind = number % 20
    if kind < 12:
        return (
            SYSTEM,
            "email.sent",
            round_id,
            task_id,
            {
                "kind": "invitation",
                "link_id": 2 * task_id,
                "to": f"pika.kontakti+{task_id}@ministria-{task_id % 88}.gov.example",
                "message_id": f"<{number:08d}.{round_id}@roundtable.migracioni.gov.example>",
            },
        )
    reviewer = Actor(
        kind=ActorKind.link, id=str(2 * task_id), email=f"pika.kontakti+{task_id}@ministria.gov.example"
    )
    if kind < 18:
        return (
            reviewer,
            "comment.added",
            round_id,
            task_id,
            {
                "comment_id": number,
                "section": 1 + number % 5,
                "paragraph": 1 + number % 9,
                "kind": "proposed_change",
                "body": "Propozojmë të shtohet një afat i qartë për raportimin vjetor të institucioneve.",
                "proposed_wording": "Raporti vjetor dorëzohet brenda 31 marsit të vitit pasardhës.",
                "ip": f"10.{number % 250}.{task_id % 250}.7",
            },
        )
    return (
        reviewer,
        "signoff.recorded",
        round_id,
        task_id,
        {
            "organisation": f"ministria-{task_id % 88}",
            "decision": "approve_with_comments",
            "statement": None,
            "signer_name": "Arben Hoxha",
            "signer_title": "Drejtor i Përgjithshëm",
            "signer_email": reviewer.email,
            "link_id": 2 * task_id,
            "sections": SECTIONS,
            "comments": 3,
            "ip": f"10.{number % 250}.{task_id % 250}.7",
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0",
        },
    )


class FillChain:
    """Seq 1..count of the bulk fill. The chain is computed once with the service's own hashing (so the
    result verifies) and shared by the backends; each backend gets the rows in chunks."""

    def __init__(self, count: int) -> None:
        self.count = count
        started = time.perf_counter()
        self.hashes: list[str] = []
        previous = GENESIS_HASH
        for seq in range(1, count + 1):
            actor, action, round_id, task_id, data = event_shape(seq)
            document = event_document(
                seq=seq,
                at=self.at(seq),
                actor=actor,
                action=action,
                round_id=round_id,
                task_id=task_id,
                data=data,
                prev_hash=previous,
            )
            previous = event_hash(document)
            self.hashes.append(previous)
        self.seconds = time.perf_counter() - started

    @staticmethod
    def at(seq: int) -> datetime:
        return START + timedelta(microseconds=1_500 * seq)

    @property
    def head(self) -> tuple[int, str]:
        return self.count, self.hashes[-1]

    def chunks(self, *, sqlite: bool) -> Iterator[list[tuple[Any, ...]]]:
        """Rows as the ORM stores them: SQLite keeps `at` as naive UTC text, PostgreSQL as timestamptz;
        `data` is JSON text on both."""
        for first in range(1, self.count + 1, FILL_CHUNK):
            rows = []
            for seq in range(first, min(first + FILL_CHUNK, self.count + 1)):
                actor, action, round_id, task_id, data = event_shape(seq)
                at: Any = self.at(seq)
                if sqlite:
                    at = at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
                rows.append(
                    (
                        seq,
                        at,
                        str(actor.kind),
                        actor.id,
                        actor.email,
                        action,
                        round_id,
                        task_id,
                        json.dumps(data),
                        self.hashes[seq - 2] if seq > 1 else GENESIS_HASH,
                        self.hashes[seq - 1],
                    )
                )
            yield rows


# --- append: raw baseline (the bulk fill), then the service ------------------------------------------


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database
    return database


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def bulk_fill(url: str, chain: FillChain, *, sqlite: bool) -> float:
    """Insert the fill with the raw driver; returns the seconds spent inserting (the rows are built
    untimed), i.e. the bare-insert baseline. Moves the chain head to the end of the fill."""
    inserting = 0.0
    insert = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    head = "UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1"
    if sqlite:
        connection = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            for rows in chain.chunks(sqlite=True):
                started = time.perf_counter()
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(insert, rows)
                connection.execute("COMMIT")
                inserting += time.perf_counter() - started
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(head, chain.head)
            connection.execute("COMMIT")
        finally:
            connection.close()
        return inserting
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for rows in chain.chunks(sqlite=False):
            started = time.perf_counter()
            await connection.copy_records_to_table("audit_events", records=rows, columns=COLUMNS)
            inserting += time.perf_counter() - started
        await connection.execute(head.replace("?", "$1", 1).replace("?", "$2", 1), *chain.head)
        await connection.execute("ANALYZE audit_events")
    finally:
        await connection.close()
    return inserting


async def service_appends(url: str, *, first: int, size: Sizes) -> tuple[float, float]:
    """Events/s through append_many in write transactions: one event per transaction (a sign-off, a
    comment), and delivery-sized batches. Returns (single, batched)."""
    from services.audit import trail
    from services.db import Database

    db = Database(url)
    try:
        number = first
        started = time.perf_counter()
        for _ in range(size.single_transactions):
            actor, action, round_id, task_id, data = event_shape(number)
            async with db.write_session() as session:
                await trail.append(
                    session, actor=actor, action=action, round_id=round_id, task_id=task_id, data=data
                )
                await session.commit()
            number += 1
        single = size.single_transactions / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(size.batched_events // OUTREACH_BATCH):
            events = [as_new_event(number + offset) for offset in range(OUTREACH_BATCH)]
            number += OUTREACH_BATCH
            async with db.write_session() as session:
                await trail.append_many(session, events=events)
                await session.commit()
        batched = size.batched_events / (time.perf_counter() - started)
        return single, batched
    finally:
        await db.dispose()


def as_new_event(number: int) -> Any:
    from services.audit.trail import NewEvent

    actor, action, round_id, task_id, data = event_shape(number)
    return NewEvent(action=action, actor=actor, round_id=round_id, task_id=task_id, data=data)


async def auditor_token(url: str) -> str:
    from models.users import UserCreate
    from services import users
    from services.db import Database

    db = Database(url)
    try:
        async with db.write_session() as session:
            _user, token = await users.create_user(
                session, data=UserCreate(email="auditor@audit.example", role=Role.auditor), actor=SYSTEM
            )
        return token
    finally:
        await db.dispose()


async def chain_head(url: str) -> tuple[int, str]:
    from services.audit import browse
    from services.db import Database

    db = Database(url)
    try:
        async with db.session() as session:
            head = await browse.chain_head(session)
            return head.seq, head.hash
    finally:
        await db.dispose()


# --- export -------------------------------------------------------------------------------------------


def app_env(url: str) -> dict[str, str]:
    return {
        "ROUNDTABLE_DATABASE_URL": url,
        "ROUNDTABLE_SECRET_KEY": BENCH_SECRET,
        "ROUNDTABLE_ENVIRONMENT": "production",
    }


def run_measured(
    name: str, command: list[str], *, directory: Path, env: dict[str, str]
) -> tuple[float, float]:
    """Run a command to its end; (seconds, peak RSS in MiB). Fails with its output if it fails."""
    started = time.perf_counter()
    child = spawn(name, command, workdir=directory, env=env)
    with PeakRss(every=0.02) as peak:
        peak.watch(name, child.pid)
        status = child.process.wait()
    seconds = time.perf_counter() - started
    if status not in (0,):
        raise RuntimeError(f"{' '.join(command)} exited with {status}:\n{child.tail()}")
    return seconds, peak.mib(name)


async def http_export(url: str, token: str, target: Path, *, directory: Path) -> tuple[float, float]:
    """Stream GET /api/v1/audit/export from the web app under uvicorn to a file; (seconds, peak RSS MiB)."""
    port = free_port()
    web = start_web(directory, app_env(url), port=port, workers=1)
    try:
        await wait_for_port(port, child=web)
        with PeakRss(every=0.02) as peak:
            peak.watch("web", web.pid)
            await asyncio.sleep(0.2)  # the idle footprint is sampled before the export starts
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client,
                client.stream("GET", "/api/v1/audit/export", headers=headers) as response,
            ):
                response.raise_for_status()
                with target.open("wb") as output:
                    async for chunk in response.aiter_raw(1 << 16):
                        output.write(chunk)
            seconds = time.perf_counter() - started
        return seconds, peak.mib("web")
    finally:
        web.stop()


async def bare_read(url: str, target: Path, *, sqlite: bool) -> float:
    """The raw driver reading every row in seq order and json.dumps of each to a file; seconds."""
    query = f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY seq"
    started = time.perf_counter()
    with target.open("w", encoding="utf-8") as output:
        if sqlite:
            connection = sqlite3.connect(sqlite_path(url))
            try:
                for row in connection.execute(query):
                    output.write(json.dumps(row, ensure_ascii=False) + "\n")
            finally:
                connection.close()
        else:
            connection = await asyncpg.connect(asyncpg_dsn(url))
            try:
                async with connection.transaction():
                    async for record in connection.cursor(query, prefetch=2_000):
                        output.write(json.dumps(tuple(record), ensure_ascii=False, default=str) + "\n")
            finally:
                await connection.close()
    return time.perf_counter() - started


# --- verify -------------------------------------------------------------------------------------------


def verify_in_process(path: Path, head: tuple[int, str]) -> float:
    from services.audit.verify import verify_lines

    started = time.perf_counter()
    with path.open("rb") as lines:
        result = verify_lines(lines, expected_head=head)
    seconds = time.perf_counter() - started
    if not result.ok or result.last_seq != head[0]:
        raise RuntimeError(f"the export does not verify: {result.describe()}")
    return seconds


def bare_sha256(path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            hashlib.sha256(line).hexdigest()
    return time.perf_counter() - started


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --- one backend --------------------------------------------------------------------------------------


async def bench_backend(
    backend: str, chain: FillChain, args: Any, report: Report, size: Sizes, *, first: bool
) -> None:
    """Append and the HTTP export on every backend; the CLI export and the verification (which reads
    only the exported file, whatever database it came from) on the first backend only, to keep
    `make bench` within its time."""
    name = f"audit ({backend})"
    sqlite = backend == "sqlite"
    details: dict[str, Any] = {}
    report.details[backend] = details
    with workdir(f"audit-{backend}") as directory:
        async with fresh_database(backend, directory) as url:
            print(f"-- {backend}: bulk fill of {chain.count:,} events (raw driver, same hash chain)")
            inserting = await bulk_fill(url, chain, sqlite=sqlite)
            bare_insert = chain.count / inserting
            print(f"-- {backend}: appends through services.audit.trail.append_many")
            single, batched = await service_appends(url, first=chain.count + 1, size=size)
            token = await auditor_token(url)
            head = await chain_head(url)
            events = head[0]
            details.update(
                events=events,
                filled_by_raw_insert=chain.count,
                appended_through_service=size.single_transactions + size.batched_events,
                other_events="user.created and the like from creating the auditor account",
                append_single_event_transactions=size.single_transactions,
                append_batch_size=OUTREACH_BATCH,
            )
            report.add(
                Row(
                    name,
                    "append, 1 event per transaction",
                    single,
                    "events/s",
                    bare_insert,
                    "raw driver bulk insert",
                    single / bare_insert,
                    "ours/baseline",
                )
            )
            report.add(
                Row(
                    name,
                    f"append, batches of {OUTREACH_BATCH}",
                    batched,
                    "events/s",
                    bare_insert,
                    "raw driver bulk insert",
                    batched / bare_insert,
                    "ours/baseline",
                )
            )

            print(f"-- {backend}: export of {events:,} events")
            env = app_env(url)
            cli_file, web_file, raw_file = (directory / f"{what}.jsonl" for what in ("cli", "web", "raw"))
            web_seconds, web_rss = await http_export(url, token, web_file, directory=directory)
            raw_seconds = await bare_read(url, raw_file, sqlite=sqlite)
            raw_file.unlink()
            bare_export = events / raw_seconds
            details.update(
                export_file_mib=round(web_file.stat().st_size / 2**20, 1),
                export_http_seconds=round(web_seconds, 2),
                export_bare_read_seconds=round(raw_seconds, 2),
            )
            memory_target = f"< {EXPORT_MEMORY_TARGET_MIB} MB for 1M events"
            if first:
                cli_seconds, cli_rss = run_measured(
                    "export",
                    [PYTHON, "-m", "services.cli", "audit", "export", "-o", str(cli_file)],
                    directory=directory,
                    env=env,
                )
                if file_digest(cli_file) != file_digest(web_file):
                    raise RuntimeError("the CLI and HTTP exports differ")
                cli_file.unlink()
                details.update(
                    export_cli_and_http_byte_identical=True,
                    export_cli_peak_rss_mib=round(cli_rss, 1),
                    export_cli_seconds_including_startup=round(cli_seconds, 2),
                )
                report.add(
                    Row(
                        name,
                        "export, `audit export` to a file",
                        events / cli_seconds,
                        "events/s",
                        bare_export,
                        "raw read + json.dumps",
                        bare_export / (events / cli_seconds),
                        "baseline/ours",
                    )
                )
                report.add(
                    Row(
                        name,
                        "export peak RSS, `audit export`",
                        cli_rss,
                        "MiB",
                        target=memory_target,
                        met=cli_rss < EXPORT_MEMORY_TARGET_MIB,
                    )
                )
            report.add(
                Row(
                    name,
                    "export, GET /api/v1/audit/export",
                    events / web_seconds,
                    "events/s",
                    bare_export,
                    "raw read + json.dumps",
                    bare_export / (events / web_seconds),
                    "baseline/ours",
                )
            )
            report.add(
                Row(
                    name,
                    "export peak RSS, web process",
                    web_rss,
                    "MiB",
                    target=memory_target,
                    met=web_rss < EXPORT_MEMORY_TARGET_MIB,
                )
            )

        if not first:
            return
        # Verification reads only the file: the database is dropped by now, nothing else runs meanwhile.
        print(f"-- {backend}: verify")
        # Alternated, so that a change in the load of the shared machine hits both alike.
        verify_runs, sha_runs = [], []
        for _ in range(args.runs):
            verify_runs.append(verify_in_process(web_file, head))
            sha_runs.append(bare_sha256(web_file))
        verify, sha = median(verify_runs), median(sha_runs)
        command_seconds, command_rss = run_measured(
            "verify",
            [
                PYTHON,
                "-m",
                "services.cli",
                "audit",
                "verify",
                str(web_file),
                "--head",
                f"{head[0]}:{head[1]}",
            ],
            directory=directory,
            env={},
        )
    target = f">= {VERIFY_TARGET:,} events/s"
    report.add(
        Row(
            name,
            "verify, verify_lines",
            events / verify,
            "events/s",
            events / sha,
            "sha256 per line",
            verify / sha,
            "baseline/ours",
            target,
            events / verify >= VERIFY_TARGET,
        )
    )
    report.add(
        Row(
            name,
            "verify, `roundtable audit verify`",
            events / command_seconds,
            "events/s",
            events / sha,
            "sha256 per line",
            command_seconds / sha,
            "baseline/ours",
            target,
            events / command_seconds >= VERIFY_TARGET,
        )
    )
    details.update(
        verify_command_seconds_including_startup=round(command_seconds, 2),
        verify_command_peak_rss_mib=round(command_rss, 1),
    )


async def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    report = Report("audit", args.smoke)
    size = sizes(args.smoke)
    backends = await available_backends(args.backends, report)
    fill = size.events - size.single_transactions - size.batched_events
    print(f"-- computing the hash chain of the {fill:,} events of the bulk fill")
    chain = FillChain(fill)
    report.details.update(
        fill_chain_seconds=round(chain.seconds, 2),
        method=(
            "the trail is filled with the raw driver from the service's own hash chain (event_document, "
            "event_hash), then a sample is appended through services.audit.trail.append_many; rates of "
            "single "
            "figures that take the whole trail (export, verify command) are one run, the in-process verify "
            "and its baseline are the median of --runs; the command figures include interpreter start-up"
        ),
    )
    started = time.perf_counter()
    for number, backend in enumerate(backends):
        await bench_backend(backend, chain, args, report, size, first=number == 0)
    report.details["run_seconds"] = round(time.perf_counter() - started + chain.seconds, 1)
    report.print()
    print(f"\nwritten: {report.write()}")


if __name__ == "__main__":
    asyncio.run(main())
