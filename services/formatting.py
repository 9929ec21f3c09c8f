"""Dates as people read them, in the organisation's language and the deployment's time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from models.enums import Language


def when_text(moment: datetime, *, timezone: str, language: Language | str = Language.en) -> str:
    """E.g. "15 December 2026, 17:00 (Europe/Tirane)" or "15 dhjetor 2026, 17:00 (Europe/Tirane)"."""
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{format_datetime(local, 'd MMMM y, HH:mm', locale=str(language))} ({timezone})"
