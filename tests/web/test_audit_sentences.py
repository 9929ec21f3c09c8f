"""The audit log as a coordinator or an auditor reads it: each event a sentence naming the organisation,
the person and the round, the event as recorded kept beside it."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from models.audit import Actor
from models.enums import ActorKind, Decision, Role
from models.extensions import ExtensionCreate
from models.reviews import SignOffCreate
from services import extensions, reviews
from services.audit import trail
from services.db import Database
from services.links import ClientInfo
from services.settings import Settings
from services.web.app import create_app
from tests.harness import SIGNING_SETTINGS, TEST_ACTOR, user_id_of
from tests.web.test_console import AUDITOR, COORDINATOR, HTML, ZONE, create_login, sign_in
from tests.web.test_review_page import build_round

FINANCE_FP = "migration.fp@ministry-of-finance.gov.example"


@pytest.fixture
async def reader(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    await create_login(db, COORDINATOR, Role.coordinator)
    await create_login(db, AUDITOR, Role.auditor)
    app = create_app(settings.model_copy(update={"timezone": ZONE}), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=HTML
    ) as client:
        yield client


def sentences(page: httpx.Response) -> list[str]:
    """The sentences of the page, as text."""
    found = re.findall(r'<p class="audit-sentence">(.*?)</p>', page.text, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", sentence)).strip() for sentence in found]


async def test_events_read_as_sentences_with_names_and_the_record_beside_them(
    db: Database, settings: Settings, reader: httpx.AsyncClient
) -> None:
    built = await build_round(db, settings, keys=["ministry-of-finance", "municipality-tirane"])
    coordinator = Actor(kind=ActorKind.user, id=str(await user_id_of(db, COORDINATOR)), email=COORDINATOR)
    new_deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    async with db.write_session() as session:
        await extensions.extend(
            session,
            round_id=built.round_id,
            data=ExtensionCreate(deadline=new_deadline, reason="the minister asked for it"),
            actor=coordinator,
            settings=settings,
        )
    async with db.write_session() as session:
        await reviews.sign_off(
            session,
            token=built.tokens["ministry-of-finance"][0],
            data=SignOffCreate(
                decision=Decision.approve,
                signer_name="Ana Hoxha",
                signer_title="Director",
                submission_id="sign-off-1",
                authorised=True,
            ),
            client=ClientInfo(ip="198.51.100.7", user_agent="test"),
            settings=SIGNING_SETTINGS,
        )
    async with db.write_session() as session:
        await trail.append(
            session, actor=TEST_ACTOR, action="future.thing_done", round_id=built.round_id, data={"x": 1}
        )
        await session.commit()
    await sign_in(reader, AUDITOR)

    page = await reader.get(f"/console/audit?round_id={built.round_id}")

    assert page.status_code == 200
    said = sentences(page)
    round_name = f"#{built.round_id} “Migration strategy, round 1”"
    local = new_deadline.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M")
    assert f"The system (test) created round {round_name} with 2 organisations, deadline" in said[0]
    assert any(
        sentence.startswith(f"The system (test) launched round {round_name}: 2 organisations invited")
        for sentence in said
    )
    assert f"Review links were made for Ministry of Finance in round {round_name}: {FINANCE_FP}" in " ".join(
        said
    )
    assert (
        f"Coordinator {COORDINATOR} extended the deadline of round {round_name} to {local}: "
        "“the minister asked for it”."
    ) in said
    assert (
        f"Ministry of Finance ({FINANCE_FP}) signed off round {round_name}: approve. "
        "Signed by Ana Hoxha, Director. Signed with the review link alone (no code asked)."
    ) in said
    assert f"The system (test) recorded “future.thing_done”. Round {round_name}." in said
    # The record stays available: action, actor and the data as JSON, under each sentence.
    assert "<code>signoff.recorded</code>" in page.text
    assert (
        "&#34;signer_name&#34;: &#34;Ana Hoxha&#34;" in page.text
        or '"signer_name": "Ana Hoxha"' in html.unescape(page.text)
    )
    # Times in Tirana's time, not UTC.
    assert "UTC</td>" not in page.text


async def test_registry_events_read_as_sentences(db: Database, reader: httpx.AsyncClient) -> None:
    await sign_in(reader)
    from tests.web.test_registry import REGISTRY, confirm, preview

    await confirm(reader, await preview(reader, REGISTRY))
    page = await reader.get("/console/audit")
    said = sentences(page)
    assert f"Coordinator {COORDINATOR} signed in to the console." in said
    assert f"Coordinator {COORDINATOR} imported the registry: 88 created, 0 updated, 0 unchanged." in said
    assert any(sentence.startswith("The system (test) created the account") for sentence in said)
