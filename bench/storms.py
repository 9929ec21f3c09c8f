"""What the two storm benchmarks share (bench/deadline_storm.py, bench/reminder_storm.py): rounds launched
with their invitations recorded as delivered, schedulers seen asleep until the storm's moment, and the
sink's tally of who got what."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import Child, SinkProcess, bench_actor


async def launch_as_invited(database_url: str, round_ids: Sequence[int]) -> None:
    """Launch each round through the services (its links and invitations are issued with it), then record
    every invitation as sent, as the outbox records a delivered one: the storm is what is measured, and
    the invitations' own email would only lengthen the set-up."""
    from sqlmodel import col, update

    from models.enums import OutboxStatus, TaskStatus
    from models.outbox import OutboxMessage
    from models.reviews import AccessLink
    from models.rounds import ReviewTask
    from models.types import utcnow
    from services import rounds
    from services.db import Database
    from services.settings import Settings

    settings = Settings(database_url=database_url, _env_file=None)
    db = Database(database_url)
    try:
        for round_id in round_ids:
            async with db.write_session() as session:
                assert await rounds.launch(session, round_id=round_id, actor=bench_actor(), settings=settings)
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


async def _last_timer_fires_at(client: Any, workflow_id: str) -> datetime | None:
    from temporalio.api.enums.v1 import EventType

    history = await client.get_workflow_handle(workflow_id).fetch_history()
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    if not timers:
        return None
    last = timers[-1]
    started = last.event_time.ToDatetime(tzinfo=UTC)
    return started + last.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()


async def _not_asleep_until(
    client: Any, workflow_ids: Sequence[str], moment: datetime, tolerance: float
) -> list[str]:
    fires = await asyncio.gather(*(_last_timer_fires_at(client, wid) for wid in workflow_ids))
    return [
        wid
        for wid, at in zip(workflow_ids, fires, strict=True)
        if at is None or abs((at - moment).total_seconds()) > tolerance
    ]


async def wake_until_asleep(
    scheduler: Any,
    round_ids: Sequence[int],
    moment: datetime,
    *,
    children: Sequence[Child],
    settle: float = 5.0,
    tolerance: float = 1.0,
) -> None:
    """Wake each round's scheduler until the last timer it started fires at `moment`: it has planned
    with the rounds as they are now. (Its phase cannot tell: it still says "waiting" while a woken
    scheduler plans again.) A wake-up is best effort (one Temporal does not take in time is logged and
    dropped), so a scheduler not asleep until `moment` within `settle` seconds is woken again. Refused
    once `moment` is less than a second away: the benchmark must start from schedulers that wait."""
    from workflows.client import round_workflow_id

    client = await scheduler.client()
    by_workflow = {round_workflow_id(scheduler.settings, round_id): round_id for round_id in round_ids}
    pending = list(by_workflow)
    while pending:
        if time.time() > moment.timestamp() - 1:
            raise RuntimeError(
                f"{len(pending)} scheduler(s) not yet asleep until {moment.isoformat()}; raise the lead"
            )
        await asyncio.gather(*(scheduler.wake(by_workflow[wid]) for wid in pending))
        settled_by = min(time.time() + settle, moment.timestamp() - 1)
        while pending and time.time() < settled_by:
            for child in children:
                if not child.running():
                    raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
            await asyncio.sleep(0.25)
            pending = await _not_asleep_until(client, pending, moment, tolerance)


@dataclass(frozen=True)
class Tally:
    """What the sink received against what was expected: one message per address, none twice."""

    expected: int
    received: int
    missing: list[str]
    twice: list[str]
    """Addresses that got more than one message."""
    unexpected: list[str]
    duplicate_message_ids: int

    @property
    def exactly_once(self) -> bool:
        return not (self.missing or self.twice or self.unexpected or self.duplicate_message_ids)

    def describe(self) -> str:
        return (
            f"{self.received} messages for {self.expected} addresses: {len(self.missing)} missing "
            f"{self.missing[:3]}, {len(self.twice)} twice {self.twice[:3]}, {len(self.unexpected)} "
            f"unexpected {self.unexpected[:3]}, {self.duplicate_message_ids} Message-IDs repeated"
        )


def tally(sink: SinkProcess, expected: Collection[str]) -> Tally:
    per_recipient: Counter[str] = Counter()
    for recipients in sink.recipients():
        per_recipient.update(recipients)
    wanted = set(expected)
    return Tally(
        expected=len(wanted),
        received=sink.count(),
        missing=sorted(wanted - set(per_recipient)),
        twice=sorted(address for address, count in per_recipient.items() if count > 1),
        unexpected=sorted(set(per_recipient) - wanted),
        duplicate_message_ids=sink.duplicates(),
    )
