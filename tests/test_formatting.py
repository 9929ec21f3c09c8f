"""Reading a date and time typed by a person in the deployment's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.errors import InvalidInput
from services.formatting import parse_local_datetime

TIRANA = "Europe/Tirane"


@pytest.mark.parametrize(
    ("text", "zone", "expected_utc"),
    [
        ("2026-12-15T17:00", TIRANA, datetime(2026, 12, 15, 16, 0, tzinfo=UTC)),  # winter: UTC+1
        ("2026-07-15T17:00", TIRANA, datetime(2026, 7, 15, 15, 0, tzinfo=UTC)),  # summer: UTC+2
        ("  2026-12-15T17:00:30 ", TIRANA, datetime(2026, 12, 15, 16, 0, 30, tzinfo=UTC)),
        ("2026-12-15 17:00", "America/New_York", datetime(2026, 12, 15, 22, 0, tzinfo=UTC)),
        ("2026-12-15T17:00", "UTC", datetime(2026, 12, 15, 17, 0, tzinfo=UTC)),
        # Either side of the hour that is skipped or repeated is fine.
        ("2027-03-28T01:59", TIRANA, datetime(2027, 3, 28, 0, 59, tzinfo=UTC)),
        ("2027-03-28T03:00", TIRANA, datetime(2027, 3, 28, 1, 0, tzinfo=UTC)),
        ("2026-10-25T01:59", TIRANA, datetime(2026, 10, 24, 23, 59, tzinfo=UTC)),
        ("2026-10-25T03:00", TIRANA, datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
    ],
)
def test_a_wall_clock_time_is_read_in_the_zone(text: str, zone: str, expected_utc: datetime) -> None:
    parsed = parse_local_datetime(text, timezone=zone)
    assert parsed.tzinfo is not None
    assert parsed == expected_utc
    assert parsed.replace(tzinfo=None) == datetime.fromisoformat(text.strip())  # the typed wall-clock time


def test_a_value_with_its_own_offset_is_kept() -> None:
    parsed = parse_local_datetime("2026-12-15T17:00+05:00", timezone=TIRANA)
    assert parsed.utcoffset() == timedelta(hours=5)
    assert parsed == datetime(2026, 12, 15, 17, 0, tzinfo=timezone(timedelta(hours=5)))


def test_a_time_skipped_when_the_clocks_go_forward_is_refused() -> None:
    # The last Sunday of March 2027: 02:00-03:00 does not exist in Tirana.
    with pytest.raises(InvalidInput) as refused:
        parse_local_datetime("2027-03-28T02:30", timezone=TIRANA)
    assert refused.value.detail == (
        "2027-03-28 02:30 does not exist in Europe/Tirane: the clocks go forward then. Pick another time."
    )


def test_a_time_that_happens_twice_when_the_clocks_go_back_is_refused() -> None:
    # The last Sunday of October 2026: 02:00-03:00 happens twice in Tirana (UTC+2, then UTC+1).
    with pytest.raises(InvalidInput) as refused:
        parse_local_datetime("2026-10-25T02:30", timezone=TIRANA)
    assert refused.value.detail == (
        "2026-10-25 02:30 happens twice in Europe/Tirane: the clocks go back then. "
        "Pick a time outside that hour."
    )
    with pytest.raises(InvalidInput, match="happens twice in America/New_York"):
        parse_local_datetime("2026-11-01T01:15", timezone="America/New_York")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Give a date and a time, e.g. 2026-12-15T17:00."),
        ("   ", "Give a date and a time, e.g. 2026-12-15T17:00."),
        (
            "next tuesday",
            "'next tuesday' is not a date and time (expected a date and a time, e.g. 2026-12-15T17:00).",
        ),
        ("2026-13-01T10:00", "'2026-13-01T10:00' is not a date and time"),
        ("2026-02-30T10:00", "is not a date and time"),
        ("2026-12-15T25:00", "is not a date and time"),
        ("15/12/2026 17:00", "is not a date and time"),
        ("2026-12-15", "'2026-12-15' has no time of day"),
        ("²⁰²⁶-12-15T17:00", "is not a date and time"),
        ("2026-12-15T17:00\x00", "That is not a date and time"),
        ("2" * 5000, "That is not a date and time"),
        ("9999-12-31T23:59", "is too far in the past or the future"),  # beyond year 9999 in UTC
        ("0001-01-01T00:00+05:00", "is too far in the past or the future"),
    ],
)
def test_what_is_not_a_date_and_time_is_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_local_datetime(text, timezone="America/New_York")
    assert message in refused.value.detail
    assert refused.value.status_code == 422
    assert "\x00" not in refused.value.detail
