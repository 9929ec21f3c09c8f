"""The hash-chained audit trail: appends under concurrency, the export, and what verification catches."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from models.audit import GENESIS_HASH, Actor
from models.enums import ActorKind
from services import audit
from services.db import Database

ACTOR = Actor(kind=ActorKind.user, id="3", email="secretariat@interior.gov.example")


async def export(db: Database) -> list[str]:
    async with db.session() as session:
        return [line async for line in audit.export_lines(session)]


async def append(db: Database, index: int) -> None:
    async with db.write_session() as session:
        await audit.append(
            session,
            actor=ACTOR,
            action="comment.added",
            round_id=1,
            task_id=index,
            data={"body": f"Nr. {index} ë"},
        )
        await session.commit()


@pytest.fixture
async def chain(db: Database) -> list[str]:
    """Forty events written by forty concurrent writers."""
    await asyncio.gather(*(append(db, index) for index in range(40)))
    return await export(db)


async def test_concurrent_writers_build_one_gapless_chain(db: Database, chain: list[str]) -> None:
    events = [json.loads(line) for line in chain]
    assert [event["seq"] for event in events] == list(range(1, 41))
    assert sorted(event["task_id"] for event in events) == list(range(40))
    assert events[0]["prev_hash"] == GENESIS_HASH
    async with db.session() as session:
        head = await audit.chain_head(session)
    assert (head.seq, head.hash) == (40, events[-1]["hash"])


def test_the_format_is_checkable_by_a_short_script(chain: list[str]) -> None:
    """What README documents: SHA-256 over the canonical JSON of the event without its hash."""
    previous = GENESIS_HASH
    for line in chain:
        event = json.loads(line)
        claimed = event.pop("hash")
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert event["prev_hash"] == previous
        assert hashlib.sha256(canonical).hexdigest() == claimed
        previous = claimed


def test_an_intact_export_verifies_and_names_its_head(chain: list[str]) -> None:
    result = audit.verify_lines(chain)
    last = json.loads(chain[-1])
    assert result.ok
    assert result.describe() == f"OK: 40 events, seq 1..40, hash chain intact. Head: 40:{last['hash']}"
    assert audit.verify_lines(chain, expected_head=(40, last["hash"])).ok


def edited(line: str, **changes: object) -> str:
    event = json.loads(line)
    event.update(changes)
    return json.dumps(event, ensure_ascii=False)


@pytest.mark.parametrize(
    ("damage", "bad_seq", "reason"),
    [
        (lambda lines: [*lines[:9], edited(lines[9], data={"body": "changed"}), *lines[10:]], 10, "altered"),
        (lambda lines: [*lines[:9], *lines[10:]], 11, "expected seq 10"),
        (lambda lines: lines[2:], 3, "starts at seq 3"),
        (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 3, "expected seq 2"),
        (lambda lines: [edited(lines[0], prev_hash="1" * 64), *lines[1:]], 1, "genesis"),
        (
            lambda lines: [*lines[:5], edited(lines[5], prev_hash=json.loads(lines[3])["hash"]), *lines[6:]],
            6,
            "prev_hash",
        ),
    ],
    ids=["edited", "removed", "cut-off start", "reordered", "forged start", "relinked"],
)
def test_damage_is_caught_at_the_first_bad_event(chain: list[str], damage, bad_seq: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    result = audit.verify_lines(damage(chain))
    assert not result.ok
    assert result.bad_seq == bad_seq
    assert reason in (result.reason or "")
    assert result.describe().startswith(f"FAILED at seq {bad_seq}")


def test_a_noted_head_catches_a_cut_off_end_and_a_rewritten_chain(chain: list[str]) -> None:
    noted = (30, json.loads(chain[29])["hash"])
    assert audit.verify_lines(chain, expected_head=noted).ok  # later events are fine

    cut = audit.verify_lines(chain[:25], expected_head=noted)
    assert not cut.ok
    assert "ends at seq 25, before the noted head at seq 30" in (cut.reason or "")

    rewritten = rehash([*chain[:9], edited(chain[9], data={"body": "changed"}), *chain[10:]])
    assert audit.verify_lines(rewritten).ok  # self-consistent, so only the noted head can tell
    caught = audit.verify_lines(rewritten, expected_head=noted)
    assert (caught.ok, caught.bad_seq) == (False, 30)
    assert "rewritten" in (caught.reason or "")


def rehash(lines: list[str]) -> list[str]:
    """What someone with write access to the database could do: recompute every hash after an edit."""
    previous, fixed = GENESIS_HASH, []
    for line in lines:
        event = json.loads(line)
        event.pop("hash")
        event["prev_hash"] = previous
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        event["hash"] = previous = hashlib.sha256(canonical).hexdigest()
        fixed.append(json.dumps(event, ensure_ascii=False))
    return fixed


def test_empty_and_unreadable_files_fail() -> None:
    assert audit.verify_lines([]).reason == "the file holds no events"
    assert not audit.verify_lines(["\n", "  "]).ok
    garbage = audit.verify_lines(['{"seq": 1'])
    assert (garbage.ok, garbage.bad_line) == (False, 1)
    assert "unreadable" in (garbage.reason or "")
