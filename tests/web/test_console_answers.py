"""The console's desk for answering comments, as plain form posts (no JavaScript): one answer, a saved
answer text picked, one answer for ticked comments, publishing; each result shown beside what was done."""

from __future__ import annotations

import re

from models.enums import Role
from tests.conftest import Stack
from tests.harness import csrf_of, eventually, messages_to
from tests.web.test_answers import comment, token_of
from tests.web.test_console import PASSWORD, create_login, sign_in
from tests.web.test_round_changes import INTERIOR, TIRANE_COUNTER, launched_round

DESK = "desk@secretariat.example"


def block(page_text: str, element_id: str) -> str:
    """The HTML of the element with that id, up to the next article or section."""
    start = page_text.index(f'id="{element_id}"')
    ends = [page_text.find(tag, start) for tag in ("</article>", "</section>")]
    return page_text[start : min(end for end in ends if end != -1)]


async def test_a_coordinator_answers_publishes_and_sees_each_result_beside_it(stack: Stack) -> None:
    round_id = await launched_round(stack)
    interior = token_of(stack, INTERIOR, "konsultim")
    tirane = token_of(stack, TIRANE_COUNTER, "konsultim")
    objection = await comment(stack.db, interior, "Neni 12 bie ndesh me ligjin.", weight="objection")
    first = await comment(stack.db, tirane, "A budget line for the counters.")
    second = await comment(stack.db, tirane, "Fund the counters in every municipality.")
    await create_login(stack.db, DESK, Role.coordinator)
    await sign_in(stack.http, DESK, PASSWORD)
    desk = f"/console/rounds/{round_id}/comments"

    page = await stack.http.get(desk)
    assert page.status_code == 200, page.text
    assert "Not cleared" in page.text
    assert "is not answered yet" in block(page.text, "clearance")
    assert "Neni 12 bie ndesh me ligjin." in block(page.text, "objections")

    # A rejection without a reason is refused beside its comment, with what was typed kept.
    refused = await stack.http.post(
        f"{desk.rsplit('/comments', 1)[0]}/comments/{objection}/response",
        data={"csrf_token": csrf_of(page), "response": "rejected", "new_wording": "Kept text."},
    )
    assert refused.status_code == 422, refused.text
    beside = block(refused.text, f"comment-{objection}")
    assert "justification" in beside.lower()
    assert "Kept text." in beside

    saved = await stack.http.post(
        f"/console/rounds/{round_id}/answer-texts",
        data={
            "csrf_token": csrf_of(page),
            "title": "Regional centres first",
            "response": "partially_accepted",
            "text": "The action plan funds counters in the twelve regional centres first.",
        },
        follow_redirects=True,
    )
    assert saved.status_code == 200, saved.text
    assert "The answer text was saved" in block(saved.text, "saved-texts")
    (text_id,) = re.findall(r'<option value="(\d+)">Regional centres first', saved.text)[:1]

    bulk = await stack.http.post(
        f"/console/rounds/{round_id}/responses",
        data={
            "csrf_token": csrf_of(saved),
            "comment_ids": [str(first), str(second)],
            "answer_text_id": text_id,
        },
        follow_redirects=True,
    )
    assert bulk.status_code == 200, bulk.text
    assert "saved as a draft for each ticked comment" in block(bulk.text, "bulk")
    assert "twelve regional centres" in block(bulk.text, f"comment-{first}")
    assert "twelve regional centres" in block(bulk.text, f"comment-{second}")

    one = await stack.http.post(
        f"/console/rounds/{round_id}/comments/{objection}/response",
        data={"csrf_token": csrf_of(bulk), "response": "accepted", "new_wording": "Neni 12 ndjek ligjin."},
        follow_redirects=True,
    )
    assert one.status_code == 200
    assert str(one.url).endswith(f"#comment-{objection}")
    assert "saved as a draft" in block(one.text, f"comment-{objection}")
    assert "3 draft answers will be published" in one.text

    published = await stack.http.post(
        f"/console/rounds/{round_id}/responses/publish",
        data={"csrf_token": csrf_of(one)},
        follow_redirects=True,
    )
    assert published.status_code == 200
    assert "The answers were published" in block(published.text, "publish")
    assert "0 draft answers" in published.text
    await eventually(lambda: _letters(stack), lambda found: found == {INTERIOR, TIRANE_COUNTER}, timeout=30)

    again = await stack.http.post(
        f"/console/rounds/{round_id}/responses/publish", data={"csrf_token": csrf_of(published)}
    )
    assert again.status_code == 409
    assert "no answer is waiting to be published" in block(again.text, "publish")


async def _letters(stack: Stack) -> set[str]:
    return {
        address
        for address in (INTERIOR, TIRANE_COUNTER)
        if any("komentet" in message.subject for message in messages_to(stack.mailbox, address))
    }
