"""`roundtable dev`: the whole embedded stack in one terminal, with its data under ./.roundtable/.

Temporal's dev server (SQLite persistence), the worker and the web app run as child processes; the dev
mailbox (an SMTP sink writing a Maildir) runs in this process. Ctrl-C stops every child. A second run
finds the same data: the database, the Temporal state (rounds in flight continue) and the mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from notifications.mailbox import serve_sink
from services.cli import demo
from services.cli.processes import (
    Child,
    roundtable_command,
    spawn,
    stop_all,
    temporal_dev_server_command,
    wait_for_temporal,
    wait_until,
)
from services.db import Database
from services.migrate import upgrade
from services.settings import Settings, get_settings


@dataclass(frozen=True)
class DevPorts:
    """Where the embedded stack listens, all on 127.0.0.1."""

    web: int = 8000
    temporal: int = 7233
    temporal_ui: int = 8233
    mail: int = 1025

    def all(self) -> tuple[int, ...]:
        return (self.web, self.temporal, self.temporal_ui, self.mail)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _dev_secret(data_dir: Path) -> str:
    """One secret per checkout, kept so emailed links keep working across restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _environment(data_dir: Path, ports: DevPorts) -> dict[str, str]:
    env = {
        "ROUNDTABLE_ENVIRONMENT": "development",
        "ROUNDTABLE_DATA_DIR": str(data_dir),
        "ROUNDTABLE_SECRET_KEY": _dev_secret(data_dir),
        "ROUNDTABLE_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.web}",
        "ROUNDTABLE_SMTP_HOST": "127.0.0.1",
        "ROUNDTABLE_SMTP_PORT": str(ports.mail),
        "ROUNDTABLE_SMTP_TLS": "none",
        "ROUNDTABLE_TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
    }
    env.setdefault(
        "ROUNDTABLE_DATABASE_URL",
        os.environ.get("ROUNDTABLE_DATABASE_URL", f"sqlite:///{data_dir / 'roundtable.db'}"),
    )
    return env


async def _wait_for_temporal(address: str, child: Child) -> None:
    try:
        await wait_for_temporal(address, child=child)
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"Temporal did not start: {exc}") from None


async def _wait_for_web(url: str, child: Child, timeout: float = 60) -> None:
    async with httpx.AsyncClient() as client:

        async def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/healthz")).status_code == 200
            return False

        try:
            await wait_until(healthy, bool, timeout=timeout, every=0.3, what="the web app", children=[child])
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"the web app did not start: {exc}") from None


async def _prepare_demo(
    settings: Settings, load: bool, web_url: str
) -> tuple[demo.DemoAccess | None, int | None]:
    """Load the demo into an empty database and launch its round the way a coordinator would: by the API."""
    database = Database.from_settings(settings)
    try:
        round_id = await demo.load(database) if load and await demo.is_empty(database) else None
        access = await demo.issue_tokens(database) if await demo.has_demo_accounts(database) else None
    finally:
        await database.dispose()
    if round_id is not None and access is not None:
        async with httpx.AsyncClient(base_url=web_url, timeout=30) as client:
            launched = await client.post(
                f"/api/v1/rounds/{round_id}/launch",
                headers={"Authorization": f"Bearer {access.coordinator_token}"},
            )
        if launched.status_code != 202:
            raise SystemExit(f"the demo round could not be launched: {launched.text}")
    return access, round_id


def _banner(
    settings: Settings, ports: DevPorts, access: demo.DemoAccess | None, new_round: int | None
) -> str:
    base = f"http://127.0.0.1:{ports.web}"
    lines = [
        "",
        f"  Web app and console   {base}/console",
        f"  Dev mailbox           {base}/dev/mail   (every email sent, with clickable links)",
        f"  API docs              {base}/docs        (OpenAPI: {base}/openapi.json)",
        f"  Temporal UI           http://127.0.0.1:{ports.temporal_ui}   (watch the round workflows)",
        f"  SMTP sink             127.0.0.1:{ports.mail}",
        f"  Data and logs         {settings.data_dir}/",
    ]
    if access:
        lines += [
            "",
            f"  Console sign-in       coordinator: {demo.COORDINATOR_EMAIL} / {demo.DEMO_PASSWORD}",
            f"                        auditor:     {demo.AUDITOR_EMAIL} / {demo.DEMO_PASSWORD}",
            f"  Coordinator API token {access.coordinator_token}",
            f"  Auditor API token     {access.auditor_token}",
            "",
            f'  Try: curl -H "Authorization: Bearer {access.coordinator_token}" {base}/api/v1/rounds',
        ]
    if new_round:
        lines += [
            "",
            f"  Demo round {new_round} was launched: its invitations are arriving in the dev mailbox.",
        ]
    if not access:
        lines += [
            "",
            "  No demo accounts: create one with `roundtable users create --email E --role coordinator`.",
        ]
    lines += [
        "",
        "Roundtable is running. Ctrl-C stops everything; `make run` again resumes with the same data.",
    ]
    return "\n".join(lines) + "\n"


async def _supervise(children: list[Child]) -> Child | None:
    """Wait for Ctrl-C / SIGTERM (None) or for a child to stop on its own (that child)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        for child in children:
            if not child.running():
                return child
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    return None


def _data_dir() -> Path:
    data_dir = Path(os.environ.get("ROUNDTABLE_DATA_DIR", ".roundtable")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


async def _run(*, load_demo: bool, ports: DevPorts) -> int:
    data_dir = _data_dir()
    os.environ.update(_environment(data_dir, ports))
    get_settings.cache_clear()
    settings = get_settings()
    busy = [port for port in ports.all() if not _port_free("127.0.0.1", port)]
    if busy:
        print(
            f"ports already in use on 127.0.0.1: {busy}. Is another `roundtable dev` running?",
            file=sys.stderr,
        )
        return 1
    await upgrade(settings.database_url)
    sink = await serve_sink(data_dir / "mail", "127.0.0.1", ports.mail)
    children: list[Child] = []
    try:
        logs = data_dir / "logs"
        temporal = spawn(
            "temporal",
            temporal_dev_server_command(
                db_file=data_dir / "temporal.db",
                port=ports.temporal,
                ui_port=ports.temporal_ui,
                namespace=settings.temporal_namespace,
            ),
            log_dir=logs,
        )
        children.append(temporal)
        await _wait_for_temporal(settings.temporal_address, temporal)
        children.append(spawn("worker", roundtable_command("worker"), log_dir=logs))
        web = spawn(
            "web", roundtable_command("web", "--host", "127.0.0.1", "--port", str(ports.web)), log_dir=logs
        )
        children.append(web)
        await _wait_for_web(f"http://127.0.0.1:{ports.web}", web)
        access, new_round = await _prepare_demo(settings, load_demo, f"http://127.0.0.1:{ports.web}")
        print(_banner(settings, ports, access, new_round), flush=True)
        stopped = await _supervise(children)
        if stopped is not None:
            print(
                f"{stopped.name} stopped unexpectedly (see {stopped.log}); stopping the rest.",
                file=sys.stderr,
            )
            return 1
        print("\nstopping…", flush=True)
        return 0
    finally:
        stop_all(children)
        await sink.close()


def run_dev_stack(*, demo: bool, ports: DevPorts) -> int:
    return asyncio.run(_run(load_demo=demo, ports=ports))
