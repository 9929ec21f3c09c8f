"""The procedures a round can follow, kept as data in `procedures.toml` (not code)."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources

from services.errors import InvalidInput

DEFAULT_PROCEDURE = "interministerial"


@dataclass(frozen=True)
class Procedure:
    key: str
    name: str
    basis: str
    minimum_working_days: int
    maximum_working_days: int | None
    reminder_working_days_before: tuple[int, ...]
    reminder_at: str


@functools.cache
def all_procedures() -> dict[str, Procedure]:
    """Every procedure of the packaged file, by key."""
    text = resources.files(__package__).joinpath("procedures.toml").read_text(encoding="utf-8")
    return {
        key: Procedure(
            key=key,
            name=entry["name"],
            basis=entry["basis"],
            minimum_working_days=int(entry["minimum_working_days"]),
            maximum_working_days=entry.get("maximum_working_days"),
            reminder_working_days_before=tuple(entry["reminder_working_days_before"]),
            reminder_at=entry["reminder_at"],
        )
        for key, entry in tomllib.loads(text).items()
    }


def get_procedure(key: str) -> Procedure:
    """The procedure of that key, or a 422 naming the ones there are."""
    procedures = all_procedures()
    if key not in procedures:
        raise InvalidInput(f"procedure {key!r} is not known; use one of: {', '.join(sorted(procedures))}")
    return procedures[key]
