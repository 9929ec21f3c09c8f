"""A 20-working-day public consultation on the fixture registry, walked on Temporal's time-skipping server.

Everything real but the clock: the round's scheduler and its activities on a worker, SQLite, an SMTP sink
(aiosmtpd) that files every message. A few organisations sign off or comment at once; the others stay
silent; one diaspora association sits in New York. Prints, from what the sink received, every reminder
and escalation grouped by local day and time and kind, and how long the weeks took to walk.

    .venv/bin/python -m bench.round_in_time [--registry PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from models.audit import SYSTEM_ACTOR
from models.enums import CommentKind, Decision, Role
from models.organisations import Organisation
from models.reviews import AccessLink, CommentCreate, SignOffCreate
from models.rounds import ReviewTask, RoundCreate
from models.users import UserCreate
from notifications.mailbox import DevMailbox, MaildirSink, serve_smtp
from notifications.smtp import SmtpSender
from services import comments, documents, organisations, reviews, rounds, users, working_days
from services.db import Database
from services.delivery import smtp_config
from services.links import ClientInfo
from services.migrate import upgrade
from services.settings import Environment, Settings
from workflows.client import Scheduler, launch_round
from workflows.worker import build_worker

SHARED = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
NEW_YORK = "diaspora-professionals-association"
COORDINATOR = "coordinator@secretariat.example"
CLIENT = ClientInfo(ip="127.0.0.1", user_agent="bench")


def twentieth_working_day() -> datetime:
    today = working_days.local_date(datetime.now(UTC), working_days.DEFAULT_TIMEZONE)
    day = working_days.add_working_days("AL", today, 20)
    return working_days.at_local(day, clock(17, 0), working_days.DEFAULT_TIMEZONE)


async def main(registry: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/roundtable.db"
        await upgrade(url)
        db = Database(url)
        sink_dir = Path(scratch) / "mail"
        settings = Settings(
            database_url=url,
            environment=Environment.test,
            secret_key="bench-" + "x" * 40,
            public_base_url="http://127.0.0.1:8000",
            data_dir=scratch,
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            _env_file=None,
        )
        async with await serve_smtp(MaildirSink(sink_dir), "127.0.0.1", 0) as sink:
            settings = settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port})
            mailbox = DevMailbox(sink_dir)
            round_id, deadline = await _round(db, registry)
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=str(Path(sys.executable).with_name("temporal-test-server")),
                test_server_startup_timeout=timedelta(seconds=60),
            )
            sender = SmtpSender(smtp_config(settings))
            worker = build_worker(env.client, db=db, sender=sender, settings=settings)
            started = time.perf_counter()
            try:
                async with worker:
                    scheduler = Scheduler(settings, client=env.client)
                    with env.auto_time_skipping_disabled():
                        await launch_round(db, scheduler, round_id=round_id, actor=SYSTEM_ACTOR)
                        invited = await _wait_for(mailbox, lambda count: count >= 150, seconds=120)
                        await _first_answers(db, mailbox, settings)
                    await env.sleep(deadline - datetime.now(UTC) + timedelta(days=1))
                    with env.auto_time_skipping_disabled():
                        await _wait_until_quiet(mailbox)
            finally:
                await sender.close()
                await env.shutdown()
                await db.dispose()
            walked = time.perf_counter() - started
            _report(mailbox, deadline, invited, walked)


async def _round(db: Database, registry: Path) -> tuple[int, datetime]:
    async with db.write_session() as session:
        await organisations.import_csv(session, content=registry.read_bytes(), actor=SYSTEM_ACTOR)
    async with db.write_session() as session:
        found = (await session.exec(select(Organisation).where(Organisation.key == NEW_YORK))).first()
        if found is not None:
            found.timezone = "America/New_York"
            session.add(found)
            await session.commit()
    async with db.write_session() as session:
        document = await documents.create_document(
            session,
            title="National Strategy on Migration Governance",
            filename="draft.md",
            content=(SHARED / "draft-migration-governance-strategy.md").read_bytes(),
            actor=SYSTEM_ACTOR,
        )
    deadline = twentieth_working_day()
    async with db.write_session() as session:
        coordinator, _token = await users.create_user(
            session, data=UserCreate(email=COORDINATOR, role=Role.coordinator), actor=SYSTEM_ACTOR
        )
    async with db.write_session() as session:
        created = await rounds.create_round(
            session,
            data=RoundCreate(
                title="National Strategy on Migration Governance: public consultation",
                document_version_id=document.versions[0].id,
                deadline=deadline,
                procedure="public_consultation",
                # What is measured is the round in time; signing off with a code is tests/' business.
                sign_off_code_required=False,
            ),
            actor=SYSTEM_ACTOR,
            user_id=coordinator.id,
        )
    return created.id, deadline


async def _first_answers(db: Database, mailbox: DevMailbox, settings: Settings) -> None:
    """Ten ministries sign off at once, ten organisations comment on one section and go quiet."""
    tokens = {}
    for entry in mailbox.list(limit=10_000):
        message = mailbox.get(entry.key)
        for link in message.links:
            if "/t/" in link:
                tokens[parseaddr(message.to)[1]] = link.rsplit("/t/", 1)[1]
    async with db.session() as session:
        contacts = (
            await session.exec(
                select(Organisation.key, Organisation.kind, AccessLink.email, ReviewTask.section_ids)
                .join(ReviewTask, col(ReviewTask.organisation_id) == Organisation.id)
                .join(AccessLink, col(AccessLink.task_id) == ReviewTask.id)
                .where(AccessLink.role == "focal_point")
                .order_by(col(Organisation.key))
            )
        ).all()
    ministries = [row for row in contacts if row[1] == "ministry"][:10]
    others = [row for row in contacts if row[1] != "ministry"][:10]
    for _key, _kind, email, _sections in ministries:
        async with db.write_session() as session:
            await reviews.sign_off(
                session,
                token=tokens[email],
                data=SignOffCreate(
                    decision=Decision.approve,
                    signer_name="Director General",
                    signer_title="Director General",
                    submission_id=uuid.uuid4().hex,
                    authorised=True,
                ),
                client=CLIENT,
                settings=settings,
            )
    for _key, _kind, email, sections in others:
        async with db.write_session() as session:
            await comments.add_comment(
                session,
                token=tokens[email],
                data=CommentCreate(
                    section_id=sections[0],
                    kind=CommentKind.substantive,
                    body="Please name the lead institution for this measure.",
                    submission_id=uuid.uuid4().hex,
                ),
                client=CLIENT,
            )


async def _wait_for(mailbox: DevMailbox, accept: Callable[[int], bool], *, seconds: float) -> int:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        count = mailbox.count()
        if accept(count):
            await asyncio.sleep(1)
            return mailbox.count()
        await asyncio.sleep(0.2)
    return mailbox.count()


async def _wait_until_quiet(mailbox: DevMailbox) -> None:
    last, still = -1, 0
    while still < 4:
        count = mailbox.count()
        still = still + 1 if count == last else 0
        last = count
        await asyncio.sleep(0.5)


def _report(mailbox: DevMailbox, deadline: datetime, invited: int, walked: float) -> None:
    rows: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    seen: Counter[str] = Counter()
    for entry in mailbox.list(limit=100_000):
        message = mailbox.get(entry.key)
        seen[message.header("Message-ID") or ""] += 1
        decided = message.header("X-Roundtable-Decided-At")
        if decided is None:
            continue
        to = parseaddr(message.to)[1]
        zone = "America/New_York" if "diaspora-professionals" in to else "Europe/Tirane"
        if to == COORDINATOR:
            zone = "Europe/Tirane"
        local = datetime.fromisoformat(decided).astimezone(ZoneInfo(zone))
        subject = message.subject
        kind = (
            "reminder"
            if subject.startswith(("Kujtesë", "Reminder"))
            else "escalation summary"
            if "overdue:" in subject
            else "escalation"
        )
        rows[(local.strftime("%a %d %b %Y %H:%M"), zone, kind)].append(to)
    print(f"deadline {deadline.astimezone(ZoneInfo('Europe/Tirane')):%a %d %b %Y %H:%M} Europe/Tirane")
    print(f"{invited} invitations; time-skipped walk took {walked:.1f} s")
    print(f"duplicates by Message-ID: {sum(1 for count in seen.values() if count > 1)}")
    print()
    print("| local date and time | zone | kind | emails | to |")
    print("|---|---|---|---|---|")
    for (when, zone, kind), recipients in sorted(
        rows.items(), key=lambda item: datetime.strptime(item[0][0], "%a %d %b %Y %H:%M")
    ):
        shown = ", ".join(sorted(recipients)[:2]) + (
            f" and {len(recipients) - 2} more" if len(recipients) > 2 else ""
        )
        print(f"| {when} | {zone} | {kind} | {len(recipients)} | {shown} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=SHARED / "stakeholders-albania.csv")
    asyncio.run(main(parser.parse_args().registry))
