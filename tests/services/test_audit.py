"""The hash-chained audit trail: appends under concurrency, the export, and what verification catches."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from sqlmodel import col, select

from models.audit import GENESIS_HASH, Actor, AuditEvent
from models.enums import ActorKind
from services.audit import browse, trail, verify
from services.db import Database

ACTOR = Actor(kind=ActorKind.user, id="3", email="secretariat@interior.gov.example")


async def export(db: Database) -> list[str]:
    async with db.session() as session:
        return [line async for line in browse.export_lines(session)]


async def append(db: Database, index: int) -> None:
    async with db.write_session() as session:
        await trail.append(
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
        head = await browse.chain_head(session)
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
    result = verify.verify_lines(chain)
    last = json.loads(chain[-1])
    assert result.ok
    assert result.describe() == f"OK: 40 events, seq 1..40, hash chain intact. Head: 40:{last['hash']}"
    assert verify.verify_lines(chain, expected_head=(40, last["hash"])).ok


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
@pytest.mark.parametrize("form", ["as edited", "canonical"])
def test_damage_is_caught_at_the_first_bad_event(
    chain: list[str], damage, bad_seq: int, reason: str, form: str
) -> None:  # type: ignore[no-untyped-def]
    """Edited lines written with spaces are re-serialised by the verifier; written in the exporter's own
    canonical form they take its fast path, which must catch the same damage."""
    damaged = damage(chain)
    result = verify.verify_lines([canonical(line) for line in damaged] if form == "canonical" else damaged)
    assert not result.ok
    assert result.bad_seq == bad_seq
    assert reason in (result.reason or "")
    assert result.describe().startswith(f"FAILED at seq {bad_seq}")


def test_a_noted_head_catches_a_cut_off_end_and_a_rewritten_chain(chain: list[str]) -> None:
    noted = (30, json.loads(chain[29])["hash"])
    assert verify.verify_lines(chain, expected_head=noted).ok  # later events are fine

    cut = verify.verify_lines(chain[:25], expected_head=noted)
    assert not cut.ok
    assert "ends at seq 25, before the noted head at seq 30" in (cut.reason or "")

    rewritten = rehash([*chain[:9], edited(chain[9], data={"body": "changed"}), *chain[10:]])
    for lines in (rewritten, [canonical(line) for line in rewritten]):
        assert verify.verify_lines(lines).ok  # self-consistent, so only the noted head can tell
        caught = verify.verify_lines(lines, expected_head=noted)
        assert (caught.ok, caught.bad_seq) == (False, 30)
        assert "rewritten" in (caught.reason or "")


def canonical(line: str) -> str:
    """A line as the exporter writes it: sorted keys, no spaces, UTF-8, one per line."""
    return json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


async def test_the_export_is_the_canonical_json_of_any_event(db: Database) -> None:
    """The export writes its lines member by member; they must stay exactly json.dumps' canonical form."""
    awkward = Actor(kind=ActorKind.link, id='7 "quoted" \\ ë', email=None)
    data = {"z": [1, None, True, 2.5, {"b": "\u2028\x00\n", "a": "🙂"}], "a": {}, "É": "tab\t"}
    async with db.write_session() as session:
        await trail.append(session, actor=awkward, action="odd.event", data=data)
        await trail.append(session, actor=ACTOR, action="comment.added", round_id=-1, task_id=0)
        await session.commit()
    lines = await export(db)
    assert [canonical(line) for line in lines] == lines
    async with db.session() as session:
        events = (await session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all()
    assert lines == [browse.export_line(event) for event in events]
    assert verify.verify_lines(lines).ok


def test_the_exporters_form_and_any_other_valid_form_verify_alike(chain: list[str]) -> None:
    assert [canonical(line) for line in chain] == chain
    spaced = [json.dumps(json.loads(line), ensure_ascii=False) for line in chain]
    mixed = [line if index % 2 else spaced[index] for index, line in enumerate(chain)]
    for lines in (
        chain,
        spaced,
        mixed,
        [line.encode() for line in chain],
        [line.rstrip("\n") for line in chain],
    ):
        result = verify.verify_lines(lines)
        assert (result.ok, result.events) == (True, 40)


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
    assert verify.verify_lines([]).reason == "the file holds no events"
    assert not verify.verify_lines(["\n", "  "]).ok
    garbage = verify.verify_lines(['{"seq": 1'])
    assert (garbage.ok, garbage.bad_line) == (False, 1)
    assert "unreadable" in (garbage.reason or "")
