"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

httpx costs more CPU per request than the server under test on a 2-core machine, so it cannot be the load
side. This one builds every request's bytes in advance and parses only the status line, the framing
headers (Content-Length, chunked) and the body; redirects are recorded, never followed.

Run it in its own process (`run_in_process`), so that it neither shares the event loop of the bench
driver nor is slowed by it: `python -m bench.loadgen SPEC.json RESULT.json`.

A spec names the address, the number of clients, the duration and one scenario: a list of requests
(method, path, headers, body) drawn either in turn forever (`cycle`) or each at most once (`once`, for
work that runs out, such as sign-offs of distinct tasks: a client stops when none is left). In a body
or path, every `__SID__` becomes a fresh 32-character hex id per request (a new form submission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SID_MARK = "__SID__"
SID = b"@" * 32  # as long as the hex id that replaces it, so Content-Length holds


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class Spec:
    port: int
    clients: int
    duration: float
    requests: list[Request]
    expect: list[int]
    mode: str = "cycle"  # or "once"
    host: str = "127.0.0.1"
    warmup: float = 0.0


@dataclass
class Result:
    requests: int
    ok: int
    errors: int
    elapsed: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    exhausted: bool
    sample_errors: list[str]


def _encode(request: Request, host: str, port: int) -> tuple[bytes, bool]:
    body = request.body.replace(SID_MARK, SID.decode()).encode("utf-8")
    path = request.path.replace(SID_MARK, SID.decode())
    lines = [f"{request.method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if request.method != "GET" or body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return raw, SID in raw


class Provider:
    """Hands each client its next request: in turn forever, or each once until none is left."""

    def __init__(self, encoded: list[tuple[bytes, bool]], mode: str) -> None:
        self.encoded = encoded
        self.mode = mode
        self.next = 0

    def take(self) -> bytes | None:
        if self.next >= len(self.encoded):
            if self.mode == "once":
                return None
            self.next = 0
        raw, has_sid = self.encoded[self.next]
        self.next += 1
        if has_sid:
            raw = raw.replace(SID, uuid.uuid4().hex.encode())
        return raw


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the server keeps the connection open; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif length:
        await reader.readexactly(length)
    elif length is None and status not in (204, 304) and not (100 <= status < 200):
        await reader.read()  # no framing: the body runs to the end of the connection
        keep_alive = False
    return status, keep_alive


async def _client(
    spec: Spec,
    provider: Provider,
    stop_at: float,
    record_from: float,
    latencies: list[float],
    statuses: Counter[int],
    errors: list[str],
    finished: list[float],
) -> None:
    expected = set(spec.expect)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    clock = time.perf_counter
    try:
        while clock() < stop_at:
            raw = provider.take()
            if raw is None:
                return
            if writer is None:
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
            assert reader is not None
            started = clock()
            try:
                writer.write(raw)
                status, keep_alive = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if started >= record_from:
                    statuses[0] += 1
                    if len(errors) < 10:
                        errors.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader = writer = None
                continue
            done = clock()
            if started >= record_from:
                latencies.append(done - started)
                statuses[status] += 1
                finished.append(done)
                if status not in expected and len(errors) < 10:
                    errors.append(f"status {status} for {raw[:80]!r}")
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def run(spec: Spec) -> Result:
    provider = Provider([_encode(r, spec.host, spec.port) for r in spec.requests], spec.mode)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    finished: list[float] = []
    began = time.perf_counter()
    record_from = began + spec.warmup
    stop_at = record_from + spec.duration
    await asyncio.gather(
        *(
            _client(spec, provider, stop_at, record_from, latencies, statuses, errors, finished)
            for _ in range(spec.clients)
        )
    )
    # Work that ran out ends the measurement when its last answer arrived, not at the planned end.
    exhausted = provider.mode == "once" and provider.next >= len(provider.encoded)
    end = max(finished) if exhausted and finished else min(time.perf_counter(), stop_at)
    elapsed = max(end - record_from, 1e-9)
    latencies.sort()
    expected = set(spec.expect)
    ok = sum(count for status, count in statuses.items() if status in expected)
    total = sum(statuses.values())

    def pct(fraction: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, round(fraction * (len(latencies) - 1)))] * 1000

    return Result(
        requests=total,
        ok=ok,
        errors=total - ok,
        elapsed=elapsed,
        rps=ok / elapsed,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=latencies[-1] * 1000 if latencies else float("nan"),
        statuses={str(status): count for status, count in sorted(statuses.items())},
        exhausted=exhausted,
        sample_errors=errors,
    )


def _load_spec(path: Path) -> Spec:
    document = json.loads(path.read_text(encoding="utf-8"))
    document["requests"] = [Request(**r) for r in document["requests"]]
    return Spec(**document)


def run_in_process(spec: Spec, *, timeout: float | None = None) -> Result:
    """Run the load in a process of its own (blocking: call it from a thread in async code)."""
    with tempfile.TemporaryDirectory(prefix="roundtable-loadgen-") as directory:
        spec_path = Path(directory) / "spec.json"
        result_path = Path(directory) / "result.json"
        spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(spec_path), str(result_path)],
            check=True,
            timeout=timeout or spec.duration + spec.warmup + 120,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ},
        )
        return Result(**json.loads(result_path.read_text(encoding="utf-8")))


def main() -> None:
    spec = _load_spec(Path(sys.argv[1]))
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run
    result = runner(run(spec))
    Path(sys.argv[2]).write_text(json.dumps(asdict(result)), encoding="utf-8")


if __name__ == "__main__":
    main()
