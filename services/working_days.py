"""The working-day clock: which days count in a jurisdiction, and moments in a person's time zone.

Working days are Monday to Friday except the jurisdiction's public holidays, observed days included, as
the `holidays` package keeps them. Periods are counted from the day after one date to another, inclusive.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from services.errors import InvalidInput

DEFAULT_JURISDICTION = "AL"
DEFAULT_TIMEZONE = "Europe/Tirane"
MAX_SCAN_DAYS = 3 * 366
"""No real period needs more; a walk that goes further has been given nonsense."""


@functools.cache
def supported_jurisdictions() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


def check_jurisdiction(code: str) -> str:
    """The code as the holiday library knows it (upper case), or a 422."""
    normalised = code.strip().upper()
    if normalised not in supported_jurisdictions():
        raise InvalidInput(f"jurisdiction {code!r} is not a country code whose public holidays are known")
    return normalised


def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name, or a 422."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"time zone {name!r} is not an IANA time zone") from exc


@functools.cache
def _holidays(jurisdiction: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(jurisdiction, years=year, observed=True))


def holiday_name(jurisdiction: str, day: date) -> str | None:
    found = holidays.country_holidays(jurisdiction, years=day.year, observed=True).get(day)
    return str(found) if found else None


def is_working_day(jurisdiction: str, day: date) -> bool:
    return day.weekday() < 5 and day not in _holidays(jurisdiction, day.year)


def working_days_between(jurisdiction: str, start: date, end: date) -> int:
    """Working days after `start` up to and including `end` (0 when `end` is not after `start`)."""
    if end <= start:
        return 0
    if (end - start).days > MAX_SCAN_DAYS:
        raise InvalidInput("the period is longer than three years")
    return sum(
        1
        for offset in range(1, (end - start).days + 1)
        if is_working_day(jurisdiction, start + timedelta(offset))
    )


def working_day_before(jurisdiction: str, day: date, count: int) -> date:
    """The `count`-th working day before `day`."""
    found = day
    for _ in range(count):
        found -= timedelta(days=1)
        while not is_working_day(jurisdiction, found):
            found -= timedelta(days=1)
    return found


def add_working_days(jurisdiction: str, day: date, count: int) -> date:
    """The `count`-th working day after `day`."""
    found = day
    for _ in range(count):
        found = next_working_day(jurisdiction, found)
    return found


def next_working_day(jurisdiction: str, day: date) -> date:
    """The first working day after `day`."""
    found = day + timedelta(days=1)
    while not is_working_day(jurisdiction, found):
        found += timedelta(days=1)
    return found


def local_date(moment: datetime, timezone: str) -> date:
    return moment.astimezone(zone(timezone)).date()


def at_local(day: date, clock: time, timezone: str) -> datetime:
    """That wall-clock time of that day in the zone, in UTC (a time skipped by a clock change moves on)."""
    local = datetime.combine(day, clock, tzinfo=zone(timezone))
    return local.astimezone(UTC)


def working_days_left(jurisdiction: str, now: datetime, deadline: datetime, timezone: str) -> int:
    """Working days after today (in the zone) up to and including the deadline's day."""
    return working_days_between(jurisdiction, local_date(now, timezone), local_date(deadline, timezone))
