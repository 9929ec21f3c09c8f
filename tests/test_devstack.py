"""`roundtable dev --demo`, what `make run` starts: every part up, demo data in, Ctrl-C stops all, and a
second start resumes the same data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import free_port

pytestmark = pytest.mark.slow


def start(cwd: Path, ports: list[int]) -> subprocess.Popen[str]:
    web, temporal, ui, mail = ports
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "dev",
            "--demo",
            "--port",
            str(web),
            "--temporal-port",
            str(temporal),
            "--temporal-ui-port",
            str(ui),
            "--mail-port",
            str(mail),
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def read_banner(process: subprocess.Popen[str], timeout: float = 90) -> str:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Roundtable is running" in line:
            return "".join(lines)
    raise AssertionError("no start-up banner:\n" + "".join(lines))


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=40)


def wait_for(probe, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_the_dev_stack_starts_with_demo_data_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(4)]
    base = f"http://127.0.0.1:{ports[0]}"

    first = start(tmp_path, ports)
    try:
        banner = read_banner(first)
        assert f"{base}/console" in banner
        assert f"http://127.0.0.1:{ports[2]}" in banner  # the Temporal UI
        assert "Demo round 1 was launched" in banner
        token = re.search(r"Coordinator API token (\S+)", banner).group(1)  # type: ignore[union-attr]
        assert httpx.get(f"{base}/readyz").json()["status"] == "ready"
        # 12 demo organisations: 12 focal points and 6 alternates are invited.
        inbox = wait_for(lambda: httpx.get(f"{base}/dev/mail").text.count('href="' + base + "/t/") == 18)
        assert inbox, "the dev mailbox did not receive the 18 invitations"
        assert httpx.get(f"http://127.0.0.1:{ports[2]}").status_code == 200
    finally:
        assert stop(first) == 0
    for port in ports:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}", timeout=2)

    second = start(tmp_path, ports)
    try:
        banner = read_banner(second)
        assert "Demo round" not in banner  # the database was not empty: nothing loaded twice
        token = re.search(r"Coordinator API token (\S+)", banner).group(1)  # type: ignore[union-attr]
        rounds = httpx.get(f"{base}/api/v1/rounds", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(round_["id"], round_["status"]) for round_ in rounds] == [(1, "open")]
        detail = httpx.get(f"{base}/api/v1/rounds/1", headers={"Authorization": f"Bearer {token}"}).json()
        assert detail["counts"]["invited"] == 12
    finally:
        assert stop(second) == 0
    assert (tmp_path / ".roundtable" / "temporal.db").exists()
