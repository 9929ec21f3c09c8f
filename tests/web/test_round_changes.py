"""What a coordinator changes in a round under way, through the API, with the real scheduler, SMTP sink and
review pages: procedures and their minimum, extensions (whole round, one organisation, past the maximum),
closing early, cancelling, and the task list."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holiday_library
from sqlmodel import col, func, select

from models.audit import AuditEvent
from models.enums import MessageKind
from models.extensions import ExtensionCreate
from models.outbox import OutboxMessage
from services import escalations, extensions
from services.db import Database
from tests.conftest import Stack
from tests.harness import TEST_ACTOR, csrf_of, eventually, fixture_path, messages_to

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
        "sign_off_code_required": False,
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
    # Delivered is recorded a moment after the server took the message.
    await eventually(
        lambda: tasks_of(stack, round_id),
        lambda tasks: {task["status"] for task in tasks.values()} == {"invited"},
    )
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
        assert (await stack.http.get(link)).status_code == 410
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


# ------------------------------------------------------------------ what focal points ask and do


def submission_of(page: Any, form_id: str) -> str:
    form = page.text.split(f'id="{form_id}"', 1)[1]
    match = re.search(r'name="submission_id" value="([^"]+)"', form)
    assert match, f"no submission id in {form_id}"
    return match.group(1)


async def post_review_form(stack: Stack, link: str, action: str, **fields: str) -> Any:
    page = await stack.http.get(link)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_of(page), **fields}
    if action == "extension-request" and 'id="extension-form"' in page.text:
        data.setdefault("submission_id", submission_of(page, "extension-form"))
    return await stack.http.post(f"{link}/{action}", data=data)


async def test_a_focal_point_asks_for_more_time_and_the_coordinator_grants_another_date(stack: Stack) -> None:
    round_id = await launched_round(stack)
    link = link_of(stack, TIRANE_COUNTER, "konsultim")
    wanted = working_days_from_today(16)
    asked = await post_review_form(
        stack,
        link,
        "extension-request",
        wanted_deadline=wanted.strftime("%Y-%m-%dT%H:%M"),
        reason="The municipal council meets after the deadline.",
    )
    assert asked.status_code == 303, asked.text
    page = await stack.http.get(asked.headers["location"])
    assert "has not answered yet" in page.text
    assert 'id="extension-form"' not in page.text
    again = await post_review_form(
        stack,
        link,
        "extension-request",
        submission_id=uuid.uuid4().hex,
        wanted_deadline=working_days_from_today(18).strftime("%Y-%m-%dT%H:%M"),
        reason="And again.",
    )
    assert again.status_code == 409, again.text  # one request at a time
    assert "not answered yet" in again.text
    (request,) = (
        await stack.http.get(f"/api/v1/rounds/{round_id}/extension-requests", headers=stack.coordinator)
    ).json()
    assert (request["organisation_key"], request["status"]) == ("municipality-tirane", "pending")
    assert datetime.fromisoformat(request["wanted_deadline"]) == wanted
    (asked_mail,) = await eventually(
        lambda: _messages(stack, "coordinator@secretariat.example"), lambda found: len(found) == 1
    )
    assert "asks for more time" in asked_mail.subject

    granted_date = working_days_from_today(14)
    granted = await stack.http.post(
        f"/api/v1/extension-requests/{request['id']}/grant",
        json={"deadline": granted_date.isoformat(), "note": "Two more days than the others, not four."},
        headers=stack.coordinator,
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["status"] == "granted"
    tasks = await tasks_of(stack, round_id)
    assert datetime.fromisoformat(tasks["municipality-tirane"]["deadline"]) == granted_date
    (asked_entry,) = tasks["municipality-tirane"]["extension_requests"]
    assert (asked_entry["status"], datetime.fromisoformat(asked_entry["granted_deadline"])) == (
        "granted",
        granted_date,
    )
    assert tasks["ministry-of-interior"]["deadline"] != tasks["municipality-tirane"]["deadline"]
    await eventually(lambda: _count(stack), lambda count: count == 4 + 1 + 2)
    (notice,) = [m for m in messages_to(stack.mailbox, TIRANE_COUNTER) if "Afat i ri" in m.subject]
    assert "Two more days than the others, not four." in notice.text
    twice = await stack.http.post(
        f"/api/v1/extension-requests/{request['id']}/refuse",
        json={"note": "Changed my mind"},
        headers=stack.coordinator,
    )
    assert twice.status_code == 409


async def test_a_refused_request_tells_the_focal_point_why(stack: Stack) -> None:
    round_id = await launched_round(stack)
    link = link_of(stack, INTERIOR, "konsultim")
    before = await tasks_of(stack, round_id)
    asked = await post_review_form(
        stack,
        link,
        "extension-request",
        wanted_deadline=working_days_from_today(20).strftime("%Y-%m-%dT%H:%M"),
        reason="Our minister is abroad.",
    )
    assert asked.status_code == 303, asked.text
    (request,) = (
        await stack.http.get(f"/api/v1/rounds/{round_id}/extension-requests", headers=stack.auditor)
    ).json()
    no_note = await stack.http.post(
        f"/api/v1/extension-requests/{request['id']}/refuse", json={}, headers=stack.coordinator
    )
    assert no_note.status_code == 422
    refused = await stack.http.post(
        f"/api/v1/extension-requests/{request['id']}/refuse",
        json={"note": "The Council of Ministers meets on the deadline's next day."},
        headers=stack.coordinator,
    )
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    after = await tasks_of(stack, round_id)
    assert {key: task["deadline"] for key, task in after.items()} == {
        key: task["deadline"] for key, task in before.items()
    }
    assert [entry["status"] for entry in after["ministry-of-interior"]["extension_requests"]] == ["refused"]
    await eventually(lambda: _count(stack), lambda count: count == 4 + 1 + 1)
    (answer,) = [m for m in messages_to(stack.mailbox, INTERIOR) if "Pa zgjatje" in m.subject]
    assert "The Council of Ministers meets on the deadline's next day." in answer.text
    (url,) = {url for url in answer.links if "/t/" in url}
    page = await stack.http.get(url.split("http://testserver", 1)[-1])
    assert "Ask the coordinator for more time" in page.text  # answered: may ask again


async def test_a_focal_point_hands_over_and_the_colleague_signs_off_with_a_link_of_their_own(
    stack: Stack,
) -> None:
    round_id = await launched_round(stack)
    link = link_of(stack, INTERIOR, "konsultim")
    handed = await post_review_form(
        stack,
        link,
        "handover",
        colleague_name="Drita Leka",
        colleague_email="drita.leka@ministry-of-interior.gov.example",
        note="You drafted the return chapter: please take this one.",
    )
    assert handed.status_code == 303, handed.text
    await eventually(lambda: _count(stack), lambda count: count == 5)
    (handover,) = messages_to(stack.mailbox, "drita.leka@ministry-of-interior.gov.example")
    assert "You drafted the return chapter" in handover.text
    (colleague_url,) = {url for url in handover.links if "/t/" in url}
    colleague = colleague_url.split("http://testserver", 1)[-1]
    assert colleague != link
    stale_form = csrf_of(await stack.http.get(link))
    signed = await post_review_form(
        stack,
        colleague,
        "sign-off",
        submission_id=uuid.uuid4().hex,
        decision="approve",
        statement="",
        signer_name="Drita Leka",
        signer_title="Director of Migration",
        authorised="on",
    )
    assert signed.status_code == 303, signed.text
    original = await stack.http.get(link)
    assert original.status_code == 200
    assert "Your organisation has signed off" in original.text
    (event,) = await events(stack.db, "task.handed_over")
    assert event.data["from"]["email"] == INTERIOR
    assert event.data["to"]["email"] == "drita.leka@ministry-of-interior.gov.example"
    (sign_off,) = (await stack.http.get(f"/api/v1/rounds/{round_id}/sign-offs", headers=stack.auditor)).json()
    assert sign_off["signer_email"] == "drita.leka@ministry-of-interior.gov.example"
    assert "Hand over to this colleague" not in original.text
    refused = await stack.http.post(
        f"{link}/handover",
        data={
            "csrf_token": stale_form,
            "colleague_name": "Too Late",
            "colleague_email": "late@ministry-of-interior.gov.example",
        },
    )
    assert refused.status_code == 409, refused.text


async def test_a_replaced_contact_s_link_stops_at_once_and_the_new_one_is_invited(stack: Stack) -> None:
    round_id = await launched_round(stack)
    old = link_of(stack, TIRANE_COUNTER, "konsultim")
    replaced = await stack.http.put(
        f"/api/v1/rounds/{round_id}/tasks/municipality-tirane/contacts",
        json={
            "role": "focal_point",
            "email": "arta.hoxha@tirane.bashki.example",
            "name": "Arta Hoxha",
            "reason": "The migration counter's head moved to another post.",
        },
        headers=stack.coordinator,
    )
    assert replaced.status_code == 200, replaced.text
    assert (await stack.http.get(old)).status_code == 410
    await eventually(lambda: _count(stack), lambda count: count == 5)
    new = link_of(stack, "arta.hoxha@tirane.bashki.example", "konsultim")
    page = await stack.http.get(new)
    assert page.status_code == 200
    assert "arta.hoxha@tirane.bashki.example" in page.text
    alternate = link_of(stack, "zv.sporteli@tirane.bashki.example", "konsultim")
    assert (await stack.http.get(alternate)).status_code == 200  # the other contact is untouched
    (event,) = await events(stack.db, "task.contact_replaced")
    assert event.data["revoked"][0]["email"] == TIRANE_COUNTER
    as_delegate = await stack.http.put(
        f"/api/v1/rounds/{round_id}/tasks/municipality-tirane/contacts",
        json={"role": "delegate", "email": "x@tirane.bashki.example", "reason": "nope"},
        headers=stack.coordinator,
    )
    assert as_delegate.status_code == 422


async def test_adding_and_withdrawing_organisations_mid_round(stack: Stack) -> None:
    round_id = await launched_round(stack)
    own_deadline = working_days_from_today(13)
    added = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks",
        json={"organisation_key": "ministry-of-finance", "deadline": own_deadline.isoformat()},
        headers=stack.coordinator,
    )
    assert added.status_code == 201, added.text
    assert added.json()["organisation_key"] == "ministry-of-finance"
    assert datetime.fromisoformat(added.json()["deadline"]) == own_deadline
    await eventually(lambda: _count(stack), lambda count: count == 6)
    finance = link_of(stack, "migration.fp@ministry-of-finance.gov.example", "konsultim")
    assert (await stack.http.get(finance)).status_code == 200
    twice = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks",
        json={"organisation_key": "ministry-of-finance"},
        headers=stack.coordinator,
    )
    assert twice.status_code == 409
    unknown = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks",
        json={"organisation_key": "ministry-of-magic"},
        headers=stack.coordinator,
    )
    assert unknown.status_code == 422

    tirane = link_of(stack, TIRANE_COUNTER, "konsultim")
    withdrawn = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks/municipality-tirane/withdraw",
        json={"reason": "The strategy no longer concerns municipalities."},
        headers=stack.coordinator,
    )
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    assert (await stack.http.get(tirane)).status_code == 410
    await eventually(lambda: _count(stack), lambda count: count == 8)
    (told,) = [m for m in messages_to(stack.mailbox, TIRANE_COUNTER) if "Nuk nevojitet" in m.subject]
    assert "no longer concerns municipalities" in told.text
    again = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks/municipality-tirane/withdraw",
        json={"reason": "again"},
        headers=stack.coordinator,
    )
    assert again.status_code == 409


async def test_resending_gives_each_contact_a_fresh_link_and_the_old_one_still_works(stack: Stack) -> None:
    round_id = await launched_round(stack)
    first = link_of(stack, INTERIOR, "konsultim")
    for _ in range(2):  # a double click sends once
        resent = await stack.http.post(
            f"/api/v1/rounds/{round_id}/tasks/ministry-of-interior/resend", headers=stack.coordinator
        )
        assert resent.status_code == 200, resent.text
    await eventually(lambda: _count(stack), lambda count: count >= 6)
    invitations = [m for m in messages_to(stack.mailbox, INTERIOR) if "konsultim" in m.subject]
    assert len(invitations) == 2
    links = {url.split("http://testserver", 1)[-1] for m in invitations for url in m.links if "/t/" in url}
    assert first in links
    (second,) = links - {first}
    assert (await stack.http.get(first)).status_code == 200
    assert (await stack.http.get(second)).status_code == 200


async def test_a_sign_off_reopened_at_the_organisation_s_request_stays_on_record_as_superseded(
    stack: Stack,
) -> None:
    round_id = await launched_round(stack)
    link = link_of(stack, INTERIOR, "konsultim")
    for signer in ("Elira Marku", "Elira Marku (second)"):
        signed = await post_review_form(
            stack,
            link,
            "sign-off",
            submission_id=uuid.uuid4().hex,
            decision="approve",
            statement="",
            signer_name=signer,
            signer_title="Director General",
            authorised="on",
        )
        assert signed.status_code == 303, signed.text
        if signer == "Elira Marku":
            reopened = await stack.http.post(
                f"/api/v1/rounds/{round_id}/tasks/ministry-of-interior/reopen",
                json={"reason": "The ministry signed the wrong version of its statement."},
                headers=stack.coordinator,
            )
            assert reopened.status_code == 200, reopened.text
            assert reopened.json()["status"] == "invited"
            assert "Sign off for the organisation" in (await stack.http.get(link)).text
    register = (await stack.http.get(f"/api/v1/rounds/{round_id}/sign-offs", headers=stack.auditor)).json()
    assert [(entry["signer_name"], entry["superseded_at"] is not None) for entry in register] == [
        ("Elira Marku", True),
        ("Elira Marku (second)", False),
    ]
    assert register[0]["superseded_reason"] == "The ministry signed the wrong version of its statement."
    not_signed = await stack.http.post(
        f"/api/v1/rounds/{round_id}/tasks/municipality-tirane/reopen",
        json={"reason": "nothing"},
        headers=stack.coordinator,
    )
    assert not_signed.status_code == 409
