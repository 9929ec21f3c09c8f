"""The whole story, on real parts, with the shared fixtures and all 88 organisations.

A coordinator imports the registry and the draft over HTTP, creates and launches a round; the scheduler
(a real Temporal dev server and worker) sends every invitation to a real SMTP sink; each focal point opens
the link found in their email, comments and signs off through the web app served by uvicorn; the round
closes; the exported audit trail verifies with `roundtable audit verify`, and stops verifying once one row
of the database is edited.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from models.audit import AuditEvent
from models.enums import Role
from notifications.mailbox import DevMailbox
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.harness import (
    ServedApp,
    WorkerHandle,
    create_account,
    csrf_of,
    eventually,
    fixture_path,
    free_port,
)
from workflows.client import Scheduler, round_workflow_id

pytestmark = pytest.mark.slow
DECISIONS = ["approve", "approve_with_comments", "object", "no_opinion"]
COMMENT_KINDS = ["general", "editorial", "substantive", "legal"]


def registry_rows() -> list[dict[str, str]]:
    text = fixture_path("stakeholders-albania.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"ROUNDTABLE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.fixture
async def served(
    stack_settings: Settings, db: Database, temporal_env: WorkflowEnvironment, mailbox: DevMailbox
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    port = free_port()
    settings = stack_settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    app = create_app(settings, db=db, scheduler=Scheduler(settings, client=temporal_env.client))
    async with (
        WorkerHandle(temporal_env.client, db, settings),
        ServedApp(app, port=port) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        yield settings, http


async def test_the_whole_story_with_88_organisations(
    served: tuple[Settings, httpx.AsyncClient],
    db: Database,
    mailbox: DevMailbox,
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
) -> None:
    settings, http = served
    coordinator = await create_account(db, "secretariat@interior.gov.example", Role.coordinator)
    auditor = await create_account(db, "auditor@kontrolli.gov.example", Role.auditor)
    organisations = registry_rows()
    assert len(organisations) == 88

    with fixture_path("stakeholders-albania.csv").open("rb") as registry:
        imported = await http.post(
            "/api/v1/organisations/import", files={"file": ("registry.csv", registry)}, headers=coordinator
        )
    result = imported.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (88, 0, 0)
    assert (result["rejected"], result["ignored_columns"], result["dry_run"]) == ([], [], False)
    with fixture_path("draft-migration-governance-strategy.md").open("rb") as draft:
        document = await http.post(
            "/api/v1/documents",
            files={"file": ("draft-migration-governance-strategy.md", draft)},
            data={"title": "National Strategy on Migration Governance 2026–2030"},
            headers=coordinator,
        )
    sections = document.json()["versions"][0]["sections"]
    assert [section["number"] for section in sections] == [*map(str, range(1, 13)), "Annex 1"]
    created = await http.post(
        "/api/v1/rounds",
        json={
            "title": "National Strategy on Migration Governance: inter-institutional consultation",
            "document_version_id": document.json()["versions"][0]["id"],
            "deadline": (datetime.now(UTC) + timedelta(days=21)).isoformat(),
            # 88 sign-offs over HTTP: the code step is the coordinator story's (test_coordinator_story).
            "sign_off_code_required": False,
        },
        headers=coordinator,
    )
    assert created.status_code == 201, created.text
    round_id = created.json()["id"]
    assert created.json()["counts"]["organisations"] == 88

    # Launch, and every focal point and alternate is invited exactly once.
    contacts = [row["focal_point_email"] for row in organisations] + [
        row["alternate_email"] for row in organisations if row["alternate_email"]
    ]
    started = time.perf_counter()
    launched = await http.post(f"/api/v1/rounds/{round_id}/launch", headers=coordinator)
    assert launched.status_code == 202
    await eventually(lambda: _count(mailbox), lambda count: count >= len(contacts), timeout=120, every=0.02)
    launch_to_last_invitation = time.perf_counter() - started
    received = Counter(parseaddr(entry.to)[1] for entry in mailbox.list(limit=10_000))
    assert received == Counter(contacts)
    print(
        f"\n[{settings.database_url.split(':')[0]}] launch -> last of {len(contacts)} invitations "
        f"in the sink: {launch_to_last_invitation:.2f} s"
    )

    # Each organisation's focal point comments and signs off through the emailed link.
    decisions = {row["key"]: DECISIONS[index % 4] for index, row in enumerate(organisations)}
    started = time.perf_counter()
    limit = asyncio.Semaphore(16)

    async def review(index: int, row: dict[str, str]) -> None:
        async with limit:
            await focal_point_reviews(settings.public_base_url, mailbox, row, decisions[row["key"]], index)

    await asyncio.gather(*(review(index, row) for index, row in enumerate(organisations)))
    print(f"88 reviews (page, comment, page, sign-off) in {time.perf_counter() - started:.2f} s")

    closed = await eventually(
        lambda: http.get(f"/api/v1/rounds/{round_id}", headers=auditor),
        lambda response: response.json()["status"] == "closed",
        timeout=60,
    )
    detail = closed.json()
    assert detail["close_reason"] == "all_signed_off"
    assert detail["counts"]["signed_off"] == 88
    assert detail["counts"]["comments"] == 88
    by_key = {task["organisation_key"]: task for task in detail["tasks"]}
    assert {key: by_key[key]["decision"] for key in decisions} == decisions
    assert all(task["comments"] == 1 for task in detail["tasks"])

    register = (await http.get(f"/api/v1/rounds/{round_id}/sign-offs", headers=auditor)).json()
    assert len(register) == 88
    expected_hashes = {section["number"]: section["sha256"] for section in sections}
    for entry in register:
        assert {item["number"]: item["sha256"] for item in entry["sections"]} == expected_hashes
    summary = await eventually(
        lambda: _async(mailbox.for_recipient("secretariat@interior.gov.example")),
        lambda found: len(found) == 1,
    )
    assert "closed" in summary[0].subject.lower()
    # Only the last sign-off woke the scheduler: a signal per organisation would hit Temporal's cap on
    # signals per workflow in a national round.
    history = await temporal_env.client.get_workflow_handle(
        round_workflow_id(settings, round_id)
    ).fetch_history()
    signals = [
        event for event in history.events if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert len(signals) == 1
    # Still exactly one invitation each, now that the scheduler is done: no late duplicates.
    after_close = Counter(parseaddr(entry.to)[1] for entry in mailbox.list(limit=10_000))
    assert after_close == Counter(contacts) + Counter(["secretariat@interior.gov.example"])

    # The auditor's export verifies; one edited row in the database makes the CLI fail at that row.
    export = tmp_path / "audit.jsonl"
    export.write_bytes((await http.get("/api/v1/audit/export", headers=auditor)).content)
    events = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert Counter(event["action"] for event in events)["signoff.recorded"] == 88
    head = (await http.get("/api/v1/audit/head", headers=auditor)).json()
    verified = run_cli(settings, "audit", "verify", str(export), "--head", f"{head['seq']}:{head['hash']}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(events)} events" in verified.stdout

    tampered_seq = next(event["seq"] for event in events if event["action"] == "signoff.recorded")
    async with db.write_session() as session:
        row = (await session.exec(select(AuditEvent).where(AuditEvent.seq == tampered_seq))).one()
        row.data["decision"] = "approve" if row.data["decision"] != "approve" else "object"
        flag_modified(row, "data")
        session.add(row)
        await session.commit()
    tampered = tmp_path / "audit-after-edit.jsonl"
    exported = run_cli(settings, "audit", "export", "--output", str(tampered))
    assert exported.returncode == 0, exported.stderr
    failed = run_cli(settings, "audit", "verify", str(tampered))
    assert failed.returncode == 1
    assert f"FAILED at seq {tampered_seq}" in failed.stdout


async def focal_point_reviews(
    base_url: str, mailbox: DevMailbox, row: dict[str, str], decision: str, index: int
) -> None:
    """One focal point in their own browser (cookie jar), from the link in their email to the receipt."""
    (entry,) = mailbox.for_recipient(row["focal_point_email"])
    message = mailbox.get(entry.key)
    (link,) = [url for url in message.links if "/t/" in url]
    async with httpx.AsyncClient(timeout=30) as http:
        await review_through_link(http, link, row, decision, index)


async def review_through_link(
    http: httpx.AsyncClient, path: str, row: dict[str, str], decision: str, index: int
) -> None:
    page = await http.get(path)
    assert page.status_code == 200
    assert row["name_en"] in page.text or row["name_en"].replace("'", "&#39;") in page.text
    section_ids = re.findall(r'name="section_id" value="(\d+)"', page.text)
    assert len(section_ids) == 13
    comment = {
        "csrf_token": csrf_of(page),
        "section_id": section_ids[index % 12],
        "paragraph": f"{index % 12 + 1}.1",
        "kind": COMMENT_KINDS[index % 4],
        # An organisation that objects marks what it cannot accept: its sign-off needs an objection.
        "weight": "objection" if decision == "object" else ("proposal", "remark")[index % 2],
        "body": f"{row['name_en']} asks to name the lead institution in paragraph {index % 12 + 1}.1.",
        "proposed_wording": "The lead institution is designated in the Action Plan.",
        "submission_id": uuid.uuid4().hex,
    }
    added = await http.post(f"{path}/comments", data=comment)
    assert added.status_code == 303, added.text
    page = await http.get(path)
    signed = await http.post(
        f"{path}/sign-off",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": uuid.uuid4().hex,
            "decision": decision,
            "statement": "Our objections are set out in the comments." if decision == "object" else "",
            "signer_name": row["focal_point_name"],
            "signer_title": "Migration focal point",
            "authorised": "yes",
        },
    )
    assert signed.status_code == 303, signed.text
    receipt = await http.get(httpx.URL(path).join(signed.headers["location"]))
    assert 'id="receipt"' in receipt.text  # in the organisation's language


async def _count(mailbox: DevMailbox) -> int:
    return mailbox.count()


async def _async(value: object) -> object:
    return value
