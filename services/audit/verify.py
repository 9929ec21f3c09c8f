"""Checking an exported audit trail: no database, no I/O beyond the lines it is given.

The format is documented in README.md; `roundtable audit verify FILE` runs this over a file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.audit import GENESIS_HASH, event_hash


@dataclass
class VerifyResult:
    ok: bool
    events: int
    last_seq: int | None = None
    last_hash: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return (
                f"OK: {self.events} events, seq 1..{self.last_seq}, hash chain intact. "
                f"Head: {self.last_seq}:{self.last_hash}"
            )
        if self.bad_seq is not None:
            return f"FAILED at seq {self.bad_seq} (line {self.bad_line}): {self.reason}"
        if self.bad_line:
            return f"FAILED at line {self.bad_line}: {self.reason}"
        return f"FAILED: {self.reason}"


# An export line as export_line writes it is the canonical JSON of the hashed fields with the hash
# member in its sorted place, between "data" and "prev_hash", and the integers after it. Its hashed bytes
# are then the line without `,"hash":"…"`: one SHA-256 checks it, with no JSON parsing. Lines in any
# other form (spaces, another key order or escaping) or that do not hash right take the full path.
_LINE_START = b'{"action":"'
_HASH_MEMBER = b'},"hash":"'  # the "}" closes "data", the last field before the hash in key order
_HASH_KEY_LENGTH = len(',"hash":"')
_HASH_LENGTH = _HASH_KEY_LENGTH + 64 + len('"')
_PREV_HASH_KEY = b',"prev_hash":"'
_LINE_END = re.compile(
    rb'","round_id":(?:null|-?(?:0|[1-9][0-9]*)),"seq":([1-9][0-9]*)'
    rb',"task_id":(?:null|-?(?:0|[1-9][0-9]*))\}(\n?)'
)


def verify_lines(
    lines: Iterable[str | bytes], *, expected_head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check a whole export: it starts at seq 1 from the genesis hash, every hash recomputes, every
    prev_hash is the hash before it, no seq is missing. With `expected_head` (a seq and hash noted
    earlier, e.g. from GET /api/v1/audit/head) the file must also reach that event with that very hash:
    events cut off the end, or a chain rewritten and hashed afresh, are caught too.

    A line in the exporter's exact form is checked by hashing its bytes without the hash field: for a
    line the exporter wrote, those bytes are the canonical form, so the verdict is the one re-serialising
    would give, several times faster. Any other line (spaces, another key order or escaping, a hash or
    link that does not match) is parsed and re-serialised, so a valid but differently written export
    still verifies and a failure gives the same reason as ever. Only a line whose hash was computed
    afresh over bytes that are not canonical could pass here and not there; that is a rewritten event,
    which the chain up to a noted head rules out as it rules out any other."""
    count = 0
    previous_seq = 0
    previous_hash = GENESIS_HASH
    number = 0
    head_seq, head_hash = expected_head if expected_head is not None else (None, None)
    previous_bytes = previous_hash.encode()
    sha256 = hashlib.sha256
    match_end = _LINE_END.fullmatch
    for number, raw in enumerate(lines, start=1):
        line = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        fast = False
        member = line.rfind(_HASH_MEMBER) + 1
        if member and line.startswith(_LINE_START):
            prev_at = member + _HASH_LENGTH + len(_PREV_HASH_KEY)
            end = match_end(line, prev_at + 64)
            if (
                end is not None
                and line[member + _HASH_LENGTH : prev_at] == _PREV_HASH_KEY
                and line[prev_at : prev_at + 64] == previous_bytes
                and int(end[1]) == previous_seq + 1
            ):
                digest = sha256(line[:member])
                digest.update(line[member + _HASH_LENGTH : end.start(2)])
                stored = line[member + _HASH_KEY_LENGTH : member + _HASH_LENGTH - 1]
                if digest.hexdigest().encode() == stored:
                    fast = True
                    seq, stored_hash = previous_seq + 1, stored.decode()
        if not fast:
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                seq = document["seq"]
                stored_hash = document["hash"]
            except (ValueError, KeyError, TypeError) as exc:
                reason = f"unreadable event ({exc})"
                return _failed(count, previous_seq, previous_hash, None, number, reason)
            bad = _check_event(document, seq, stored_hash, previous_seq, previous_hash)
            if bad:
                return _failed(
                    count, previous_seq, previous_hash, seq if isinstance(seq, int) else None, number, bad
                )
        if seq == head_seq and stored_hash != head_hash:
            reason = "this is not the noted head: its hash differs, so the chain up to it was rewritten"
            return _failed(count, previous_seq, previous_hash, seq, number, reason)
        count += 1
        previous_seq, previous_hash = seq, stored_hash
        previous_bytes = stored_hash.encode()
    if count == 0:
        return VerifyResult(False, 0, reason="the file holds no events")
    if expected_head is not None and previous_seq < expected_head[0]:
        reason = f"the chain ends at seq {previous_seq}, before the noted head at seq {expected_head[0]}"
        return _failed(count, previous_seq, previous_hash, None, number, reason)
    return VerifyResult(True, count, previous_seq, previous_hash)


def _failed(
    count: int, last_seq: int, last_hash: str, seq: int | None, line: int, reason: str
) -> VerifyResult:
    return VerifyResult(False, count, last_seq or None, last_hash, seq, line, reason)


def _check_event(
    document: dict[str, Any], seq: Any, stored_hash: Any, previous_seq: int, previous_hash: str
) -> str | None:
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "seq is not an integer"
    if seq != previous_seq + 1:
        if previous_seq == 0:
            return f"the file starts at seq {seq}: the events before it are missing"
        return f"expected seq {previous_seq + 1} (an event is missing or out of order)"
    if document.get("prev_hash") != previous_hash:
        return (
            "the first event does not start from the genesis hash"
            if previous_seq == 0
            else "prev_hash does not match the hash of the event before it"
        )
    try:
        recomputed = event_hash(document)
    except KeyError as exc:
        return f"field {exc} is missing"
    if recomputed != stored_hash:
        return "the event's content does not match its hash (it was altered)"
    return None
