"""What a coordinator changes in a round under way, through the API, with the real scheduler, SMTP sink and
review pages: procedures and their minimum, extensions (whole round, one organisation, past the maximum),
closing early, cancelling, and the task list."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holiday_library
from sqlmodel import col, func, select

from models.audit import AuditEvent
from models.enums import MessageKind
from models.outbox import OutboxMessage
from models.rounds import ExtensionCreate
from services import escalations, extensions
from services.db import Database
from tests.conftest import Stack
from tests.harness import TEST_ACTOR, eventually, fixture_path, messages_to

TIRANE = ZoneInfo("Europe/Tirane")
INTERIOR = "migration.fp@ministry-of-interior.gov.example"
INTERIOR_ALTERNATE = "migration.alt@ministry-of-interior.gov.example"
TIRANE_COUNTER = "sporteli.migracionit@tirane.bashki.example"
KEYS = ["ministry-of-interior", "municipality-tirane"]
OFF = holiday_library.country_holidays("AL", years=range(2026, 2032), observed=True)


def working_days_from_today(count: int) -> datetime:
    """17:00 in Tirana on the `count`-th working day from today (weekends and Albanian holidays skipped)."""
    day = datetime.now(TIRANE).date()
    for _ in range(count):
        day += timedelta(days=1)
        while day.weekday() >= 5 or day in OFF:
            day += timedelta(days=1)
    return datetime.combine(day, time(17, 0), tzinfo=TIRANE)


async def version_of_a_draft(stack: Stack) -> int:
    with fixture_path("stakeholders-albania.csv").open("rb") as registry:
        response = await stack.http.post(
            "/api/v1/organisations/import",
            files={"file": ("r.csv", registry, "text/csv")},
            headers=stack.coordinator,
        )
    assert response.status_code == 200, response.text
    with fixture_path("draft-migration-governance-strategy.md").open("rb") as draft:
        response = await stack.http.post(
            "/api/v1/documents",
            files={"file": ("draft.md", draft, "text/markdown")},
            data={"title": "Migration governance strategy"},
            headers=stack.coordinator,
        )
    assert response.status_code == 201, response.text
    return int(response.json()["versions"][0]["id"])


async def create(stack: Stack, version_id: int, **fields: Any) -> Any:
    body = {
        "title": "Migration strategy, round 1",
        "document_version_id": version_id,
        "deadline": working_days_from_today(12).isoformat(),
        "organisation_keys": KEYS,
        **fields,
    }
    return await stack.http.post("/api/v1/rounds", json=body, headers=stack.coordinator)


async def launched_round(stack: Stack, **fields: Any) -> int:
    created = await create(stack, await version_of_a_draft(stack), **fields)
    assert created.status_code == 201, created.text
    round_id = int(created.json()["id"])
    launched = await stack.http.post(f"/api/v1/rounds/{round_id}/launch", headers=stack.coordinator)
    assert launched.status_code == 202, launched.text
    await eventually(lambda: _count(stack), lambda count: count == 4)  # two contacts each
    return round_id


async def _count(stack: Stack) -> int:
    return stack.mailbox.count()


async def tasks_of(stack: Stack, round_id: int) -> dict[str, dict[str, Any]]:
    response = await stack.http.get(f"/api/v1/rounds/{round_id}/tasks", headers=stack.auditor)
    assert response.status_code == 200, response.text
    return {task["organisation_key"]: task for task in response.json()}


def link_of(stack: Stack, address: str, words: str) -> str:
    (message,) = [message for message in messages_to(stack.mailbox, address) if words in message.subject]
    (url,) = {url for url in message.links if "/t/" in url}
    return url.split("http://testserver", 1)[-1]


async def events(db: Database, action: str) -> list[AuditEvent]:
    async with db.session() as session:
        return list(await session.exec(select(AuditEvent).where(AuditEvent.action == action)))


async def outbox_count(db: Database, kind: MessageKind) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).where(col(OutboxMessage.kind) == kind))).one())


# ---------------------------------------------------------------------------------- procedures


async def test_a_round_shorter_than_its_procedure_needs_a_reason_which_is_stored_and_audited(
    stack: Stack,
) -> None:
    version_id = await version_of_a_draft(stack)
    short = working_days_from_today(6)
    refused = await create(stack, version_id, deadline=short.isoformat())
    assert refused.status_code == 422
    assert "6 working days" in refused.json()["detail"]
    assert "minimum_period_reason" in refused.json()["detail"]
    public = await create(stack, version_id, procedure="public_consultation")  # 12 of the 20 it needs
    assert public.status_code == 422
    assert "at least 20" in public.json()["detail"]

    reason = "The Council of Ministers meets on the 20th; the ministries agreed to a short round."
    created = await create(stack, version_id, deadline=short.isoformat(), minimum_period_reason=reason)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["minimum_period_reason"] == reason
    assert body["period_working_days"] == 6
    assert body["procedure"] == "interministerial"
    assert body["reminder_policy"] == {"working_days_before": [7, 2, 1], "at": "09:00", "text": ""}
    (event,) = await events(stack.db, "round.created")
    assert event.data["minimum_period_reason"] == reason
    assert event.data["period_working_days"] == 6


async def test_bad_procedure_settings_are_refused_with_the_field_named(stack: Stack) -> None:
    version_id = await version_of_a_draft(stack)
    for change, words in [
        ({"procedure": "fast_track"}, "public_consultation"),
        ({"jurisdiction": "XX"}, "jurisdiction"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"grace_period_hours": -1}, "grace_period_hours"),
        ({"silence_means": "maybe"}, "silence_means"),
        ({"reminder_policy": {"working_days_before": [0]}}, "working days"),
        ({"reminder_policy": {"at": "23:30"}}, "07:00 and 17:00"),
        ({"reminder_policy": {"at": "9am"}}, "HH:MM"),
        ({"reminder_policy": {"every": "day"}}, "every"),
    ]:
        response = await create(stack, version_id, **change)
        assert response.status_code == 422, (change, response.text)
        assert words in response.text, (change, response.text)
    listed = await stack.http.get("/api/v1/rounds", headers=stack.coordinator)
    assert listed.json() == []


# ---------------------------------------------------------------------------------- extensions


async def test_extending_the_whole_round_tells_every_contact_with_a_working_link(stack: Stack) -> None:
    round_id = await launched_round(stack)
    new_deadline = working_days_from_today(15)
    response = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={"deadline": new_deadline.isoformat(), "reason": "The draft's annex was revised."},
        headers=stack.coordinator,
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["organisation_keys"]) == sorted(KEYS)
    assert response.json()["notices"] == 4
    await eventually(lambda: _count(stack), lambda count: count == 8)
    for address in (INTERIOR, INTERIOR_ALTERNATE, TIRANE_COUNTER):
        (notice,) = [m for m in messages_to(stack.mailbox, address) if "Afat i ri" in m.subject]
        assert "The draft's annex was revised." in notice.text
        page = await stack.http.get(link_of(stack, address, "Afat i ri"))
        assert page.status_code == 200
        assert "Save comment" in page.text
    tasks = await tasks_of(stack, round_id)
    assert {datetime.fromisoformat(task["deadline"]) for task in tasks.values()} == {new_deadline}
    detail = (await stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.coordinator)).json()
    assert datetime.fromisoformat(detail["deadline"]) == new_deadline
    (event,) = await events(stack.db, "deadline.extended")
    assert event.data["reason"] == "The draft's annex was revised."
    assert event.data["whole_round"] is True

    earlier = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={"deadline": working_days_from_today(13).isoformat(), "reason": "Oops."},
        headers=stack.coordinator,
    )
    assert earlier.status_code == 422
    assert "later" in earlier.json()["detail"]
    assert await outbox_count(stack.db, MessageKind.deadline_extended) == 4


async def test_extending_one_organisation_moves_only_its_deadline(stack: Stack) -> None:
    round_id = await launched_round(stack)
    before = await tasks_of(stack, round_id)
    later = working_days_from_today(14)
    response = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={
            "deadline": later.isoformat(),
            "reason": "Mayor's request",
            "organisation_keys": ["municipality-tirane"],
        },
        headers=stack.coordinator,
    )
    assert response.status_code == 200, response.text
    assert response.json()["organisation_keys"] == ["municipality-tirane"]
    await eventually(lambda: _count(stack), lambda count: count == 6)
    after = await tasks_of(stack, round_id)
    assert after["ministry-of-interior"]["deadline"] == before["ministry-of-interior"]["deadline"]
    assert datetime.fromisoformat(after["municipality-tirane"]["deadline"]) == later
    assert after["municipality-tirane"]["working_days_left"] == 14
    assert [m.subject for m in messages_to(stack.mailbox, INTERIOR) if "Afat i ri" in m.subject] == []
    detail = (await stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.coordinator)).json()
    assert detail["deadline"] == before["ministry-of-interior"]["deadline"]
    unknown = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={"deadline": later.isoformat(), "reason": "typo", "organisation_keys": ["ministry-of-magic"]},
        headers=stack.coordinator,
    )
    assert unknown.status_code == 422
    assert "ministry-of-magic" in unknown.json()["detail"]


async def test_a_public_consultation_cannot_be_extended_past_forty_working_days(stack: Stack) -> None:
    round_id = await launched_round(
        stack, procedure="public_consultation", deadline=working_days_from_today(20).isoformat()
    )
    too_far = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={"deadline": working_days_from_today(41).isoformat(), "reason": "More hearings."},
        headers=stack.coordinator,
    )
    assert too_far.status_code == 422
    assert "at most 40" in too_far.json()["detail"]
    assert await outbox_count(stack.db, MessageKind.deadline_extended) == 0
    assert await events(stack.db, "deadline.extended") == []
    at_most = await stack.http.post(
        f"/api/v1/rounds/{round_id}/extensions",
        json={"deadline": working_days_from_today(40).isoformat(), "reason": "More hearings."},
        headers=stack.coordinator,
    )
    assert at_most.status_code == 200, at_most.text


async def test_an_overdue_task_given_more_time_takes_comments_again(stack: Stack) -> None:
    round_id = await launched_round(stack)
    review = link_of(stack, TIRANE_COUNTER, "konsultim")
    deadline = datetime.fromisoformat((await tasks_of(stack, round_id))["municipality-tirane"]["deadline"])
    async with stack.db.write_session() as session:
        escalated = await escalations.escalate_overdue(
            session, round_id=round_id, now=deadline + timedelta(minutes=1), settings=stack.settings
        )
    assert escalated == 2
    assert {task["status"] for task in (await tasks_of(stack, round_id)).values()} == {"overdue"}
    async with stack.db.write_session() as session:
        await extensions.extend(
            session,
            round_id=round_id,
            data=ExtensionCreate(
                deadline=working_days_from_today(14),
                reason="Escalated; one more week",
                organisation_keys=None,
            ),
            actor=TEST_ACTOR,
            settings=stack.settings,
        )
    tasks = await tasks_of(stack, round_id)
    assert {task["status"] for task in tasks.values()} == {"invited"}
    page = await stack.http.get(review)
    assert page.status_code == 200
    assert "Save comment" in page.text


# ------------------------------------------------------------------------------- ending a round


async def test_closing_early_settles_the_silent_and_tells_the_coordinator(stack: Stack) -> None:
    round_id = await launched_round(stack, silence_means="no_response")
    no_reason = await stack.http.post(f"/api/v1/rounds/{round_id}/close", json={}, headers=stack.coordinator)
    assert no_reason.status_code == 422
    by_auditor = await stack.http.post(
        f"/api/v1/rounds/{round_id}/close", json={"reason": "I audit"}, headers=stack.auditor
    )
    assert by_auditor.status_code == 403
    closed = await stack.http.post(
        f"/api/v1/rounds/{round_id}/close",
        json={"reason": "The committee decided today."},
        headers=stack.coordinator,
    )
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["status"], body["close_reason"], body["close_note"]) == (
        "closed",
        "coordinator",
        "The committee decided today.",
    )
    assert {task["status"] for task in body["tasks"]} == {"no_response"}
    (notice,) = await eventually(
        lambda: _messages(stack, "coordinator@secretariat.example"), lambda found: len(found) == 1
    )
    assert "you closed it (The committee decided today.)" in notice.text
    page = await stack.http.get(link_of(stack, INTERIOR, "konsultim"))
    assert "round is closed" in page.text
    again = await stack.http.post(
        f"/api/v1/rounds/{round_id}/close", json={"reason": "Twice."}, headers=stack.coordinator
    )
    assert again.status_code == 409


async def test_cancelling_tells_everyone_invited_and_every_link_stops_working(stack: Stack) -> None:
    round_id = await launched_round(stack)
    links = [
        link_of(stack, address, "konsultim") for address in (INTERIOR, INTERIOR_ALTERNATE, TIRANE_COUNTER)
    ]
    cancelled = await stack.http.post(
        f"/api/v1/rounds/{round_id}/cancel",
        json={"reason": "The government withdrew the draft."},
        headers=stack.coordinator,
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert {task["status"] for task in cancelled.json()["tasks"]} == {"cancelled"}
    for link in links:
        assert (await stack.http.get(link)).status_code == 403
    await eventually(lambda: _count(stack), lambda count: count == 8)
    for address in (INTERIOR, INTERIOR_ALTERNATE, TIRANE_COUNTER):
        (notice,) = [m for m in messages_to(stack.mailbox, address) if "anulua" in m.subject]
        assert "The government withdrew the draft." in notice.text
        assert not [url for url in notice.links if "/t/" in url]
    again = await stack.http.post(
        f"/api/v1/rounds/{round_id}/cancel", json={"reason": "Again"}, headers=stack.coordinator
    )
    assert again.status_code == 409
    (event,) = await events(stack.db, "round.cancelled")
    assert event.data["reason"] == "The government withdrew the draft."


async def _messages(stack: Stack, address: str) -> list[Any]:
    return messages_to(stack.mailbox, address)


# ------------------------------------------------------------------------------------ the task list


async def test_the_task_list_says_where_each_organisation_stands(stack: Stack) -> None:
    round_id = await launched_round(stack)
    tasks = await tasks_of(stack, round_id)
    assert sorted(tasks) == sorted(KEYS)
    for task in tasks.values():
        assert task["status"] == "invited"
        assert task["reminders_sent"] == 0
        assert task["escalated_at"] is None
        assert task["working_days_left"] == 12
        assert task["deadline_local"].endswith("17:00 (Europe/Tirane)")
    missing = await stack.http.get("/api/v1/rounds/999/tasks", headers=stack.coordinator)
    assert missing.status_code == 404
