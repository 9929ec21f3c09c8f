"""Throttling what strangers may ask for: counters per subject in fixed windows, kept in the database.

A limit allows so many requests of one kind per subject (a client address, an email address) in a
window of fixed length that starts at a multiple of that length. `count` adds one request to each of
its subjects' counters in one statement (an upsert, so two web processes counting at once both count)
and says where each counter stands; the caller decides what being over a limit means. Subjects are kept
only as digests keyed by the service's secret, so the table holds no address anyone typed. Rows of ended
windows are deleted as requests come in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from models.throttle import ThrottleCount
from services.errors import TooManyRequests

THROTTLE_COUNTS: Table = ThrottleCount.__table__  # type: ignore[attr-defined]
PRUNE_AT_ONCE = 200
"""Ended windows deleted by one request at most: the pruning must cost every request about the same."""


@dataclass(frozen=True)
class Limit:
    scope: str
    """What is counted, e.g. "lost_link.ip"."""
    allowed: int
    """Requests per subject and window; the next one is over the limit."""
    window: timedelta


@dataclass(frozen=True)
class Counted:
    limit: Limit
    count: int
    """Requests in this window so far, this one included."""
    window_ends: datetime

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit.allowed

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the window ends (at least one): the Retry-After of a refused request."""
        return max(1, math.ceil((self.window_ends - now).total_seconds()))


def refusal(template: str, *, retry_after: int) -> TooManyRequests:
    """The 429 of a request over a limit: `template`'s {wait} says how long in words ("a minute", "12
    minutes"), Retry-After in seconds."""
    minutes = max(1, -(-retry_after // 60))
    return TooManyRequests(
        template.format(wait="a minute" if minutes == 1 else f"{minutes} minutes"),
        error="too_many_requests",
        retry_after=retry_after,
    )


def subject_digest(secret_key: str, subject: str) -> str:
    return hmac.new(secret_key.encode(), f"throttle:{subject}".encode(), hashlib.sha256).hexdigest()[:40]


def client_subject(ip: str | None) -> str:
    """A client address as one subject: an IPv6 client is its /64 (one subscriber's network has them
    all), anything unreadable is counted as one unknown client."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def window_of(limit: Limit, now: datetime) -> tuple[datetime, datetime]:
    length = limit.window.total_seconds()
    start = math.floor(now.timestamp() / length) * length
    begins = datetime.fromtimestamp(start, UTC)
    return begins, begins + limit.window


async def count(
    session: AsyncSession, *, hits: Sequence[tuple[Limit, str]], now: datetime, secret_key: str
) -> list[Counted]:
    """Count one request against each (limit, subject), in the caller's transaction (the caller commits;
    a rollback counts nothing). Returns where each counter stands, in the order given. The counters' rows
    stay locked until the caller's transaction ends, so requests of one subject are counted one at a time.
    Each (limit, subject) once: one statement cannot count a row twice."""
    if not hits:
        return []
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    ended = (
        select(THROTTLE_COUNTS.c.key)
        .where(THROTTLE_COUNTS.c.expires_at <= now)
        .limit(PRUNE_AT_ONCE)
        .with_for_update(skip_locked=True)  # another request deleting them need not be waited for
    )
    await session.exec(delete(THROTTLE_COUNTS).where(THROTTLE_COUNTS.c.key.in_(ended)))
    rows: list[dict[str, Any]] = []
    for limit, subject in hits:
        key, window_ends = _key(limit, subject, now, secret_key)
        rows.append({"key": key, "count": 1, "expires_at": window_ends})
    statement = (
        dialect.insert(THROTTLE_COUNTS)
        .values(rows)
        .on_conflict_do_update(index_elements=["key"], set_={"count": THROTTLE_COUNTS.c.count + 1})
        .returning(THROTTLE_COUNTS.c.key, THROTTLE_COUNTS.c.count)
    )
    counts = {row.key: row.count for row in await session.exec(statement)}
    return [
        Counted(limit, counts[row["key"]], row["expires_at"])
        for row, (limit, _subject) in zip(rows, hits, strict=True)
    ]


def _key(limit: Limit, subject: str, now: datetime, secret_key: str) -> tuple[str, datetime]:
    begins, window_ends = window_of(limit, now)
    return f"{limit.scope}:{subject_digest(secret_key, subject)}:{int(begins.timestamp())}", window_ends


async def record(
    session: AsyncSession, *, hits: Sequence[tuple[Limit, str]], now: datetime, secret_key: str
) -> list[Counted]:
    """Count one request against each of `hits` in a short transaction of its own."""
    counted = await count(session, hits=hits, now=now, secret_key=secret_key)
    await session.commit()
    return counted
