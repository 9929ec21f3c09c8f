"""A small round through the API, the scheduler, a real SMTP sink and the review pages."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from tests.conftest import Stack
from tests.harness import csrf_of, eventually, fixture_path, messages_to

FOCAL_POINTS = {
    "ministry-of-interior": "migration.fp@ministry-of-interior.gov.example",
    "municipality-tirane": "sporteli.migracionit@tirane.bashki.example",
    "iom-albania-observer": "consultation@iom-albania-observer.org.example",
}
KEYS = list(FOCAL_POINTS)


async def setup_round(stack: Stack, keys: list[str], deadline: datetime | None = None) -> int:
    headers = stack.coordinator
    with fixture_path("stakeholders-albania.csv").open("rb") as registry:
        response = await stack.http.post(
            "/api/v1/organisations/import",
            files={"file": ("registry.csv", registry, "text/csv")},
            headers=headers,
        )
    assert response.status_code == 200, response.text
    with fixture_path("draft-migration-governance-strategy.md").open("rb") as draft:
        response = await stack.http.post(
            "/api/v1/documents",
            files={"file": ("draft.md", draft, "text/markdown")},
            data={"title": "Migration governance strategy"},
            headers=headers,
        )
    assert response.status_code == 201, response.text
    version = response.json()["versions"][0]
    response = await stack.http.post(
        "/api/v1/rounds",
        json={
            "title": "Migration strategy, round 1",
            "document_version_id": version["id"],
            "deadline": (deadline or datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "organisation_keys": keys,
            "minimum_period_reason": "the committee meets next week",
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def review_path(message_text: str) -> str:
    (url,) = re.findall(r"http://testserver(/t/[A-Za-z0-9_-]+)", message_text)
    return url


async def test_a_round_runs_from_launch_to_close(stack: Stack) -> None:
    round_id = await setup_round(stack, KEYS)
    first = await stack.http.post(f"/api/v1/rounds/{round_id}/launch", headers=stack.coordinator)
    second = await stack.http.post(f"/api/v1/rounds/{round_id}/launch", headers=stack.coordinator)
    assert (first.status_code, first.json()["launched"]) == (202, True)
    assert (second.status_code, second.json()["launched"]) == (202, False)

    # Two contacts each for the ministry and the municipality, one for IOM.
    await eventually(lambda: _count(stack), lambda count: count >= 5)
    # The emails are recorded (and the tasks marked invited) just after the sink has them.
    await eventually(
        lambda: stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.auditor),
        lambda response: {task["status"] for task in response.json()["tasks"]} == {"invited"},
    )

    for key in KEYS:
        (invitation,) = messages_to(stack.mailbox, FOCAL_POINTS[key])
        path = review_path(invitation.text or "")
        page = await stack.http.get(path)
        assert page.status_code == 200
        section_id = re.search(r'name="section_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
        comment = await stack.http.post(
            f"{path}/comments",
            data={
                "csrf_token": csrf_of(page),
                "section_id": section_id,
                "body": f"Comment from {key}",
                "kind": "editorial",
                "submission_id": uuid.uuid4().hex,
            },
        )
        assert comment.status_code == 303, comment.text
        page = await stack.http.get(path)
        assert f"Comment from {key}" in page.text
        signed = await stack.http.post(
            f"{path}/sign-off",
            data={
                "csrf_token": csrf_of(page),
                "submission_id": "sub-" + key[:20],
                "decision": "approve_with_comments",
                "statement": "",
                "signer_name": "Arben Hoxha",
                "signer_title": "Director of Policy",
                "authorised": "yes",
            },
        )
        assert signed.status_code == 303, signed.text
        # The round asks for the code (the default): the scheduler, woken, delivers it to the signer.
        assert signed.headers["location"].endswith("done=code-sent#sign-off")
        address = FOCAL_POINTS[key]
        code = await eventually(
            lambda: _async(_code_for(stack, address)),  # noqa: B023 (awaited within the iteration)
            lambda found: found is not None,
            timeout=30,
        )
        page = await stack.http.get(path)
        submission = re.search(  # type: ignore[union-attr]
            r'id="sign-off-code-form".*?name="submission_id" value="([^"]+)"', page.text, re.S
        ).group(1)
        confirmed = await stack.http.post(
            f"{path}/sign-off/code",
            data={"csrf_token": csrf_of(page), "submission_id": submission, "code": code},
        )
        assert confirmed.status_code == 303, confirmed.text
        assert confirmed.headers["location"].endswith("done=signed#receipt")

    closed = await eventually(
        lambda: stack.http.get(f"/api/v1/rounds/{round_id}", headers=stack.auditor),
        lambda response: response.json()["status"] == "closed",
    )
    assert closed.json()["close_reason"] == "all_signed_off"
    sign_offs = (await stack.http.get(f"/api/v1/rounds/{round_id}/sign-offs", headers=stack.auditor)).json()
    assert [item["verified_by"] for item in sign_offs] == ["emailed_code"] * 3
    notice = await eventually(
        lambda: _async(messages_to(stack.mailbox, "coordinator@secretariat.example")),
        lambda found: len(found) == 1,
    )
    assert "closed" in (notice[0].subject or "").lower()


def _code_for(stack: Stack, address: str) -> str | None:
    for message in messages_to(stack.mailbox, address):
        found = re.search(r"^ {4}(\d{6})$", message.text or "", re.MULTILINE)
        if found:
            return found.group(1)
    return None


async def _count(stack: Stack) -> int:
    return stack.mailbox.count()


async def _async(value):  # type: ignore[no-untyped-def]
    return value
