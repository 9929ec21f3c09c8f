"""The `roundtable` command as an operator runs it: a real process against a real database."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.settings import Settings
from services.web.app import create_app


def roundtable(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={"ROUNDTABLE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        check=False,
    )


async def test_users_create_prints_a_working_token_as_its_last_line(settings: Settings) -> None:
    created = roundtable(
        settings, "users", "create", "--email", "Auditor@KLSH.gov.example", "--role", "auditor"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"rt_[A-Za-z0-9_-]{43}", token)

    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        me = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        write = await http.post(
            "/api/v1/organisations", json={}, headers={"Authorization": f"Bearer {token}"}
        )
    assert me.json() == {"user_id": 1, "email": "auditor@klsh.gov.example", "role": "auditor"}
    assert write.status_code == 403

    again = roundtable(
        settings, "users", "create", "--email", "auditor@klsh.gov.example", "--role", "auditor"
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    another = roundtable(settings, "users", "token", "--email", "auditor@klsh.gov.example")
    assert another.returncode == 0
    assert another.stdout.strip().splitlines()[-1] != token


def test_users_create_refuses_an_unknown_role(settings: Settings) -> None:
    refused = roundtable(settings, "users", "create", "--email", "a@b.example", "--role", "superuser")
    assert refused.returncode == 2
    assert "superuser" in refused.stderr


def test_audit_verify_needs_an_existing_file(settings: Settings, tmp_path: Path) -> None:
    missing = roundtable(settings, "audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    verified = roundtable(settings, "audit", "verify", str(empty))
    assert (verified.returncode, verified.stdout.strip()) == (1, "FAILED: the file holds no events")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n", encoding="utf-8")
    refused = roundtable(settings, "audit", "verify", str(garbage))
    assert refused.returncode == 1
    assert "line 1" in refused.stdout


def test_users_create_explains_a_bad_email_without_a_traceback(settings: Settings) -> None:
    refused = roundtable(settings, "users", "create", "--email", "not-an-email", "--role", "auditor")
    assert refused.returncode == 2
    assert "email: not a valid email address" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # refused before any database is opened
def test_web_and_worker_refuse_unsafe_production_settings_with_one_line(settings: Settings) -> None:
    cases = [
        ({"ROUNDTABLE_SECRET_KEY": "a" * 40}, "ROUNDTABLE_SECRET_KEY has fewer than 10 different characters"),
        (
            {
                "ROUNDTABLE_SECRET_KEY": "Qm3v9-Zr7kT_x2LpW8sN4bY6cF1hJ5dG0aE",
                "ROUNDTABLE_PUBLIC_BASE_URL": "http://rt.gov.example",
            },
            "ROUNDTABLE_PUBLIC_BASE_URL 'http://rt.gov.example' is not an https:// address",
        ),
    ]
    started = [
        (
            said,
            subprocess.Popen(
                [sys.executable, "-m", "services.cli", command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={"ROUNDTABLE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin", **env},
            ),
        )
        for env, said in cases
        for command in ("web", "worker")
    ]
    for said, process in started:
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 2, err
        assert err.strip().splitlines() == [err.strip()]  # one line
        assert said in err
        assert "Traceback" not in err


async def test_the_access_log_never_holds_a_review_token(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    """The web command's uvicorn options, on a real server: the access log writes /t/<token>."""
    import uvicorn

    from services.cli import uvicorn_options
    from tests.harness import free_port

    options = uvicorn_options()
    assert options["proxy_headers"] is False  # X-Forwarded-For is the app's to read (services.web.proxies)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, lifespan="off", **options)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    secret = "S3cretTok3n-abcdefghijklmnopqrstuvwxyz012345"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await http.get(f"/t/{secret}?lang=en")
        await http.get(f"/t/{secret}/comments")
    server.should_exit = True
    await serving
    logged = capsys.readouterr()
    lines = (logged.out + logged.err).splitlines()
    assert any('"GET /t/<token>?lang=en HTTP/1.1" 404' in line for line in lines), lines
    assert secret not in logged.out + logged.err
