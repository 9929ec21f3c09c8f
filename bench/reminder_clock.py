"""When bench/reminder_storm.py can let reminders come due on the real clock.

A reminder goes out at its round's local time of day, between 07:00 and 17:00, on a working day of the
round's jurisdiction (models/rounds.py, services/reminders.py). So the storm's rounds are put in a time
zone where it is working hours now: the round's own default, Europe/Tirane, when it is, else the zone
whose local time is nearest mid-morning (a round's time zone is the secretariat's choice; nothing else
about the rounds changes). On a weekend or a holiday there is no such zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from models.rounds import EARLIEST_REMINDER, LATEST_REMINDER
from services import working_days

JURISDICTION = "AL"
HOME_ZONE = "Europe/Tirane"
REGIONS = ("Africa", "America", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")
LATEST_START = time(15, 0)
"""A zone is chosen only before this local time, to leave the set-up time before the latest reminder."""
MID_MORNING = time(10, 0)
AS_OF_AT = time(9, 0)
"""When a round's reminders go out unless its coordinator says otherwise."""
DEADLINE_AT = time(17, 0)


def _local(now: datetime, zone: str) -> datetime:
    return now.astimezone(ZoneInfo(zone))


def in_working_hours(now: datetime, zone: str) -> bool:
    local = _local(now, zone)
    return (
        working_days.is_working_day(JURISDICTION, local.date())
        and EARLIEST_REMINDER <= local.time() <= LATEST_START
    )


def working_hours_zone(now: datetime) -> str | None:
    """Europe/Tirane if it is working hours there, else the zone nearest mid-morning that is in them."""
    if in_working_hours(now, HOME_ZONE):
        return HOME_ZONE
    zones = sorted(name for name in available_timezones() if name.split("/", 1)[0] in REGIONS)

    def from_mid_morning(zone: str) -> float:
        local = _local(now, zone)
        return abs((local - datetime.combine(local.date(), MID_MORNING, local.tzinfo)).total_seconds())

    return min((zone for zone in zones if in_working_hours(now, zone)), key=from_mid_morning, default=None)


def next_working_day(day: date) -> date:
    return working_days.next_working_day(JURISDICTION, day)


def deadline_after(day: date, zone: str) -> datetime:
    """17:00 local on the first working day after `day`: a reminder one working day before falls on it."""
    return working_days.at_local(next_working_day(day), DEADLINE_AT, zone)


def local_today(now: datetime, zone: str) -> date:
    return _local(now, zone).date()


def reminder_minute(now: datetime, zone: str, *, lead: float) -> datetime:
    """The first whole local minute at least `lead` seconds ahead (`lead` 0: the current minute, which
    is due at once); refused past the latest time a reminder may be set for."""
    if lead <= 0:
        moment = now.replace(second=0, microsecond=0)
    else:
        ahead = now + timedelta(seconds=lead)
        moment = ahead.replace(second=0, microsecond=0)
        if moment < ahead:
            moment += timedelta(minutes=1)
    local = _local(moment, zone)
    if not EARLIEST_REMINDER <= local.time() <= LATEST_REMINDER:
        raise RuntimeError(f"{local:%H:%M} in {zone} is outside the hours reminders may be set for")
    return moment.astimezone(UTC)


def as_of_morning(now: datetime) -> tuple[datetime, datetime]:
    """For deciding by the scheduler's `as_of` instead of the real clock: 09:00 on the next working day
    in Europe/Tirane, and a deadline the working day after it, at 17:00."""
    day = next_working_day(local_today(now, HOME_ZONE))
    return working_days.at_local(day, AS_OF_AT, HOME_ZONE), deadline_after(day, HOME_ZONE)


def hh_mm(moment: datetime, zone: str) -> str:
    return f"{_local(moment, zone):%H:%M}"
