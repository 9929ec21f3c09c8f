"""Dates as people read them, in the organisation's language and the deployment's time zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from models.enums import Language
from services.errors import InvalidInput


def when_text(moment: datetime, *, timezone: str, language: Language | str = Language.en) -> str:
    """E.g. "15 December 2026, 17:00 (Europe/Tirane)" or "15 dhjetor 2026, 17:00 (Europe/Tirane)"."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{format_datetime(local, 'd MMMM y, HH:mm', locale=str(language))} ({timezone})"


def parse_local_datetime(text: str, *, timezone: str) -> datetime:
    """A date and time as a person typed it (an HTML datetime-local value, e.g. 2026-12-15T17:00), read as
    the wall-clock time in `timezone`; returns an aware datetime.

    Refused with InvalidInput, with a message fit to show next to the field: an empty or malformed value,
    a date without a time, a local time that does not exist (skipped when the clocks go forward) and one
    that happens twice (when the clocks go back), since either would silently become another moment. A
    value that carries its own UTC offset is unambiguous and kept as it is.
    """
    typed_text = text.strip()
    if not typed_text:
        raise InvalidInput("Give a date and a time, e.g. 2026-12-15T17:00.")
    example = "expected a date and a time, e.g. 2026-12-15T17:00"
    what = f"'{typed_text}'" if len(typed_text) <= 40 and typed_text.isprintable() else "That"
    try:
        # datetime.fromisoformat alone would take "2026-12-15T17:00\x00": only plain characters pass.
        if not (typed_text.isascii() and typed_text.isprintable()):
            raise ValueError(typed_text)
        typed = datetime.fromisoformat(typed_text)
    except ValueError:
        raise InvalidInput(f"{what} is not a date and time ({example}).") from None
    if not re.search(r"[T ]\d", typed_text, flags=re.IGNORECASE):
        raise InvalidInput(f"{what} has no time of day ({example}).")
    zone = ZoneInfo(timezone)
    try:
        if typed.tzinfo is not None:
            typed.astimezone(UTC)  # refuses what cannot be expressed in UTC (year 1 or 9999 edges)
            return typed
        earlier, later = typed.replace(tzinfo=zone, fold=0), typed.replace(tzinfo=zone, fold=1)
        if earlier.utcoffset() == later.utcoffset():
            earlier.astimezone(UTC)
            return earlier
        # Two offsets for one wall-clock time: either it was skipped, or it happens twice.
        skipped = earlier.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != typed
    except OverflowError:
        raise InvalidInput(f"{what} is too far in the past or the future.") from None
    shown = typed.strftime("%Y-%m-%d %H:%M")
    if skipped:
        raise InvalidInput(
            f"{shown} does not exist in {timezone}: the clocks go forward then. Pick another time."
        )
    raise InvalidInput(
        f"{shown} happens twice in {timezone}: the clocks go back then. Pick a time outside that hour."
    )
