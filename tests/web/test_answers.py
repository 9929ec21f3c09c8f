"""The coordinator answers comments through the API: one at a time, several at once, then publishes them;
every organisation answered gets one feedback letter, and the objection register and the clearance follow.
Real scheduler, SMTP sink and review links."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import col, func, select

from models.enums import MessageKind
from models.outbox import OutboxMessage
from models.responses import CommentResponse
from models.reviews import CommentCreate, SignOffCreate
from services import comments, reviews
from services.db import Database
from services.links import ClientInfo
from tests.conftest import Stack
from tests.harness import SIGNING_SETTINGS, eventually, messages_to
from tests.web.test_round_changes import INTERIOR, TIRANE_COUNTER, launched_round, link_of

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="test")


def token_of(stack: Stack, address: str, words: str) -> str:
    return link_of(stack, address, words).rsplit("/t/", 1)[1]


async def comment(db: Database, token: str, body: str, *, weight: str = "remark", section: str = "4") -> int:
    async with db.session() as session:
        from models.documents import Section

        section_id = (await session.exec(select(Section.id).where(Section.number == section))).first()
    async with db.write_session() as session:
        made = await comments.add_comment(
            session,
            token=token,
            data=CommentCreate(
                section_id=section_id or 0, body=body, weight=weight, submission_id=uuid.uuid4().hex
            ),
            client=CLIENT,
        )
    return made.id


async def sign(db: Database, token: str, decision: str, statement: str = "") -> None:
    async with db.write_session() as session:
        await reviews.sign_off(
            session,
            token=token,
            data=SignOffCreate(
                decision=decision,
                statement=statement,
                signer_name="Arben Hoxha",
                signer_title="Director",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=CLIENT,
            settings=SIGNING_SETTINGS,
        )


async def round_of(stack: Stack, round_id: int) -> dict[str, Any]:
    response = await stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.auditor)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def drafted(db: Database) -> int:
    async with db.session() as session:
        return int((await session.exec(select(func.count()).select_from(CommentResponse))).one())


async def letters(db: Database) -> int:
    async with db.session() as session:
        return int(
            (
                await session.exec(
                    select(func.count()).where(col(OutboxMessage.kind) == MessageKind.feedback)
                )
            ).one()
        )


async def test_answers_are_drafted_published_together_and_each_organisation_gets_one_letter(
    stack: Stack,
) -> None:
    round_id = await launched_round(stack)
    interior = token_of(stack, INTERIOR, "konsultim")
    tirane = token_of(stack, TIRANE_COUNTER, "konsultim")
    objection = await comment(
        stack.db, interior, "Article 12 contradicts the Law on Foreigners.", weight="objection"
    )
    editorial = await comment(stack.db, interior, '=HYPERLINK("x") is a typo for the heading.')
    first = await comment(stack.db, tirane, "Municipalities need a budget line for the counters.")
    second = await comment(stack.db, tirane, "Budget the migration counters in every municipality.")
    withdrawn = await comment(stack.db, tirane, "Withdrawn later.")
    async with stack.db.write_session() as session:
        await comments.withdraw_comment(session, token=tirane, comment_id=withdrawn, client=CLIENT)

    listed = await stack.http.get(f"/api/v1/rounds/{round_id}/comments", headers=stack.auditor)
    assert listed.status_code == 200, listed.text
    by_id = {item["id"]: item for item in listed.json()}
    assert by_id[objection]["weight"] == "objection"
    assert by_id[objection]["organisation_key"] == "ministry-of-interior"
    assert by_id[objection]["role"] == "approver"
    assert by_id[objection]["section"] == "4"
    assert by_id[objection]["type"] == "general"
    assert by_id[objection]["text"] == "Article 12 contradicts the Law on Foreigners."
    assert by_id[objection]["response"] is None
    assert by_id[withdrawn]["status"] == "withdrawn"  # listed, marked, not dropped

    register = (await stack.http.get(f"/api/v1/rounds/{round_id}/objections", headers=stack.auditor)).json()
    assert [(item["comment_id"], item["state"]) for item in register] == [(objection, "open")]
    clearance = (await round_of(stack, round_id))["clearance"]
    assert clearance["cleared"] is False
    assert any("not answered yet" in line for line in clearance["blocking"])

    # A rejection needs its reason; nothing is written without one.
    refused = await stack.http.put(
        f"/api/v1/comments/{editorial}/response", json={"response": "rejected"}, headers=stack.coordinator
    )
    assert refused.status_code == 422, refused.text
    assert "justification" in refused.text
    assert await drafted(stack.db) == 0
    auditor = await stack.http.put(
        f"/api/v1/comments/{editorial}/response", json={"response": "noted"}, headers=stack.auditor
    )
    assert auditor.status_code == 403

    answered = await stack.http.put(
        f"/api/v1/comments/{objection}/response",
        json={"response": "accepted", "justification": "", "new_wording": "Article 12 follows the Law."},
        headers=stack.coordinator,
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["published_at"] is None  # a draft until published
    bulk = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses",
        json={
            "comment_ids": [first, second],
            "response": "partially_accepted",
            "justification": "The action plan funds counters in the twelve regional centres first.",
        },
        headers=stack.coordinator,
    )
    assert bulk.status_code == 200, bulk.text
    assert [item["comment_id"] for item in bulk.json()] == [first, second]
    bad_bulk = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses",
        json={"comment_ids": [first, withdrawn], "response": "noted", "justification": ""},
        headers=stack.coordinator,
    )
    assert bad_bulk.status_code == 409, bad_bulk.text
    assert str(withdrawn) in bad_bulk.text
    unknown = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses",
        json={"comment_ids": [first, 999999], "response": "noted", "justification": ""},
        headers=stack.coordinator,
    )
    assert unknown.status_code == 422
    assert "999999" in unknown.text
    assert await drafted(stack.db) == 3  # the refused bulk answers changed nothing

    # Drafts are private: nobody has been told, and the objection is still open.
    assert await letters(stack.db) == 0
    register = (await stack.http.get(f"/api/v1/rounds/{round_id}/objections", headers=stack.auditor)).json()
    assert register[0]["state"] == "open"

    published = await stack.http.post(
        f"/api/v1/rounds/{round_id}/responses/publish", headers=stack.coordinator
    )
    assert published.status_code == 200, published.text
    assert published.json()["published"] == 3
    assert published.json()["organisations"] == 2
    assert published.json()["letters"] == 4  # focal point and alternate of each organisation
    again = await stack.http.post(f"/api/v1/rounds/{round_id}/responses/publish", headers=stack.coordinator)
    assert again.status_code == 409, again.text
    assert await letters(stack.db) == 4

    await eventually(lambda: _feedback_to(stack, TIRANE_COUNTER), lambda found: len(found) == 1, timeout=30)
    (letter,) = await _feedback_to(stack, TIRANE_COUNTER)
    assert "Municipalities need a budget line for the counters." in letter.text
    assert "twelve regional centres" in letter.text
    assert "Pranuar pjesërisht" in letter.text  # Tirana works in Albanian
    assert "Withdrawn later." not in letter.text
    assert "twelve regional centres" in letter.html
    (interior_letter,) = await _feedback_to(stack, INTERIOR)
    assert "Article 12 follows the Law." in interior_letter.text
    assert "ende në shqyrtim" in interior_letter.text  # the typo comment has no answer yet

    register = (await stack.http.get(f"/api/v1/rounds/{round_id}/objections", headers=stack.auditor)).json()
    assert register[0]["state"] == "resolved"
    listed = {
        item["id"]: item
        for item in (
            await stack.http.get(f"/api/v1/rounds/{round_id}/comments", headers=stack.auditor)
        ).json()
    }
    assert listed[first]["response"]["response"] == "partially_accepted"
    assert listed[first]["response"]["published_at"] is not None


async def _feedback_to(stack: Stack, address: str) -> list[Any]:
    return [
        message
        for message in messages_to(stack.mailbox, address)
        if "comments" in message.subject.lower() or "komentet" in message.subject.lower()
    ]


async def test_clearance_needs_every_approver_and_no_objection_maintained(stack: Stack) -> None:
    round_id = await launched_round(stack)
    interior = token_of(stack, INTERIOR, "konsultim")
    tirane = token_of(stack, TIRANE_COUNTER, "konsultim")
    objection = await comment(
        stack.db, tirane, "The counters must not close on Saturdays.", weight="objection"
    )
    await sign(stack.db, tirane, "object", statement="Saturday service is required by our council.")
    assert (await round_of(stack, round_id))["clearance"]["cleared"] is False
    await sign(stack.db, interior, "approve")
    clearance = (await round_of(stack, round_id))["clearance"]
    assert clearance["approved"] == clearance["approvers"] == 1
    assert clearance["cleared"] is False  # the municipality's objection is not answered yet

    await stack.http.put(
        f"/api/v1/comments/{objection}/response",
        json={
            "response": "rejected",
            "justification": "Saturday opening is for each municipality to decide.",
        },
        headers=stack.coordinator,
    )
    await stack.http.post(f"/api/v1/rounds/{round_id}/responses/publish", headers=stack.coordinator)
    clearance = (await round_of(stack, round_id))["clearance"]
    assert clearance["cleared"] is False
    assert clearance["objections_maintained"] == 1
    assert any("maintained" in line and "Tiran" in line for line in clearance["blocking"])

    await stack.http.put(
        f"/api/v1/comments/{objection}/response",
        json={"response": "accepted", "justification": "", "new_wording": "Counters open on Saturdays."},
        headers=stack.coordinator,
    )
    assert (await round_of(stack, round_id))["clearance"]["objections_open"] == 1  # redrafted, not published
    await stack.http.post(f"/api/v1/rounds/{round_id}/responses/publish", headers=stack.coordinator)
    clearance = (await round_of(stack, round_id))["clearance"]
    assert clearance == {**clearance, "cleared": True, "blocking": []}
