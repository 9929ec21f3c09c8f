"""The step-up at sign-off: the code emailed to the signer's own address, and the 'authorised' box.

The round is built through the services (tests/web/test_review_page.py's helpers); the code's email is
delivered by the one delivery path to a real SMTP sink and read from the dev mailbox, as the signer reads
it. Someone holding a forwarded link has the link, not the mailbox.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from models.enums import MessageKind, Role
from models.outbox import OutboxMessage
from models.reviews import SignOff, SignOffCode
from notifications.mailbox import DevMailbox, SinkServer
from notifications.smtp import SmtpSender
from services import delivery
from services.db import Database
from services.settings import Settings
from tests.harness import create_account, csrf_of, messages_to
from tests.web.test_review_page import (
    Review,
    build_round,
    count,
    element,
    events,
    open_client,
    page_text,
)

KEY = "ministry-of-interior"
CODE_LINE = re.compile(r"^ {4}(\d{6})$", re.MULTILINE)


@dataclass
class Signer(Review):
    mailbox: DevMailbox = None  # type: ignore[assignment]

    async def deliver(self) -> None:
        """What the round's scheduler does once woken: deliver the round's due email."""
        sender = SmtpSender(delivery.smtp_config(self.settings))
        try:
            await delivery.deliver_due(
                self.db, sender, self.settings, round_id=self.built.round_id, limit=100
            )
        finally:
            await sender.close()

    def codes(self) -> list[str]:
        """The codes in the signer's mailbox, oldest first."""
        found = []
        for message in messages_to(self.mailbox, self.link.email):  # newest first
            match = CODE_LINE.search(message.text or "")
            if match:
                found.append(match.group(1))
        return found[::-1]

    async def enter(self, code: str) -> object:
        page = await self.page()
        match = re.search(r'id="sign-off-code-form".*?name="submission_id" value="([^"]+)"', page.text, re.S)
        assert match, "no code form on the page"
        return await self.http.post(
            self.path + "/sign-off/code",
            data={"csrf_token": csrf_of(page), "submission_id": match.group(1), "code": code},
        )

    async def new_code(self) -> object:
        return await self.post("/sign-off/code/new", {})


async def _signer(db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox, required: bool):
    settings = settings.model_copy(update={"smtp_host": sink.host, "smtp_port": sink.port})
    built = await build_round(db, settings, sign_off_code_required=required)
    http, scheduler = await open_client(settings, db)
    return Signer(
        db=db,
        settings=settings,
        http=http,
        scheduler=scheduler,
        built=built,
        key=KEY,
        token=built.tokens[KEY][0],
        mailbox=mailbox,
    )


@pytest.fixture
async def signer(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> AsyncIterator[Signer]:
    found = await _signer(db, settings, sink, mailbox, required=True)
    async with found.http:
        yield found


@pytest.fixture
async def link_only(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox
) -> AsyncIterator[Signer]:
    found = await _signer(db, settings, sink, mailbox, required=False)
    async with found.http:
        yield found


def wrong_codes(right: str, how_many: int) -> list[str]:
    return [code for code in (f"{n:06d}" for n in range(123456, 123456 + how_many + 1)) if code != right][
        :how_many
    ]


@pytest.mark.parametrize("required", [False, True])
async def test_a_sign_off_without_the_authorised_box_is_refused_and_nothing_is_recorded(
    db: Database, settings: Settings, sink: SinkServer, mailbox: DevMailbox, required: bool
) -> None:
    signer = await _signer(db, settings, sink, mailbox, required=required)
    async with signer.http:
        response = await signer.sign_off("approve", authorised="")
        assert response.status_code == 422, response.text
        section = element(response.text, "sign-off")
        assert "authorised to sign off for your organisation; nothing was recorded" in section
        assert 'id="sign-off-form"' in section  # the form again, what was typed in it
        assert 'value="Arben Hoxha"' in section
        assert await count(db, SignOff) == 0
        assert await count(db, SignOffCode) == 0
        assert await events(db, "signoff.recorded") == []


async def test_without_the_code_setting_the_link_signs_and_says_so(link_only: Signer) -> None:
    response = await link_only.sign_off("approve")
    assert response.status_code == 303
    assert "done=signed" in response.headers["location"]
    async with link_only.db.session() as session:
        (record,) = (await session.exec(select(SignOff))).all()
    assert record.verified_by == "link_only"
    (event,) = await events(link_only.db, "signoff.recorded")
    assert event.data["verified_by"] == "link_only"
    assert "the review link alone" in page_text(await link_only.page())


async def test_signing_off_takes_the_code_emailed_to_the_signers_own_address(signer: Signer) -> None:
    page = await signer.page()
    form = re.search(r'id="sign-off-form".*?name="submission_id" value="([^"]+)"', page.text, re.S)
    assert form
    data = {
        "csrf_token": csrf_of(page),
        "submission_id": form.group(1),
        "decision": "approve",
        "statement": "Agreed by the directorate.",
        "signer_name": "Arben Hoxha",
        "signer_title": "Secretary General",
        "authorised": "yes",
    }
    first = await signer.http.post(signer.path + "/sign-off", data=data)
    again = await signer.http.post(signer.path + "/sign-off", data=data)  # a double click: one code
    assert first.status_code == again.status_code == 303
    assert first.headers["location"].endswith("done=code-sent#sign-off")
    assert signer.scheduler.woken == [signer.built.round_id] * 2  # the code goes now, not at the next turn
    assert await count(signer.db, SignOff) == 0
    assert await count(signer.db, SignOffCode) == 1

    page = await signer.page(first.headers["location"])
    section = element(page.text, "sign-off")
    assert "We have emailed you a code." in section
    assert signer.link.email in section
    assert "Agreed by the directorate." in section  # what waits for the code
    assert 'id="sign-off-code-form"' in section

    await signer.deliver()
    (code,) = signer.codes()
    # The outbox keeps neither the code nor anything that makes it without the secret key.
    async with signer.db.session() as session:
        row = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.kind == MessageKind.sign_off_code))
        ).one()
    assert row.to_email == signer.link.email
    assert code not in json.dumps(row.context) + row.subject

    confirmed = await signer.enter(f"{code[:3]} {code[3:]}")  # as copied from the email, with a space
    assert confirmed.status_code == 303, confirmed.text  # type: ignore[attr-defined]
    assert confirmed.headers["location"].endswith("done=signed#receipt")  # type: ignore[attr-defined]
    receipt = element((await signer.page()).text, "receipt")
    assert "a code emailed to the signer" in receipt
    async with signer.db.session() as session:
        (record,) = (await session.exec(select(SignOff))).all()
    assert (record.verified_by, record.statement, record.signer_title) == (
        "emailed_code",
        "Agreed by the directorate.",
        "Secretary General",
    )
    (event,) = await events(signer.db, "signoff.recorded")
    assert event.data["verified_by"] == "emailed_code"
    assert event.data["signer_email"] == signer.link.email
    headers = await create_account(signer.db, "auditor@audit.example", Role.auditor)
    register = await signer.http.get(f"/api/v1/rounds/{signer.built.round_id}/sign-offs", headers=headers)
    assert [item["verified_by"] for item in register.json()] == ["emailed_code"]
    # The same confirmation sent again (a double click) gets the receipt, not a refusal.
    repeated = await signer.http.post(
        signer.path + "/sign-off/code",
        data={"csrf_token": csrf_of(page), "submission_id": form.group(1), "code": code},
    )
    assert repeated.status_code == 303


async def test_a_forwarded_link_without_the_code_cannot_sign(signer: Signer) -> None:
    """Someone the invitation was forwarded to has the link but not the signer's mailbox: they submit
    the sign-off and guess codes. Nothing is recorded, and after 5 wrong tries the code is dead."""
    assert (await signer.sign_off("approve")).status_code == 303
    await signer.deliver()
    (right,) = signer.codes()
    guesses = wrong_codes(right, 5)
    for number, guess in enumerate(guesses, start=1):
        response = await signer.enter(guess)
        text = page_text(response)  # type: ignore[arg-type]
        if number < 5:
            assert response.status_code == 422  # type: ignore[attr-defined]
            assert "That code is not right." in text
            assert f"{5 - number} tries left" in text
        else:
            assert response.status_code == 409  # type: ignore[attr-defined]
            assert "entered wrongly 5 times and no longer works" in text
    assert 'id="sign-off-code-form"' not in (await signer.page()).text  # only "send a new code" is left
    # Not even the right code works now.
    page = await signer.page()
    late = await signer.http.post(
        signer.path + "/sign-off/code",
        data={"csrf_token": csrf_of(page), "submission_id": "x" * 32, "code": right},
    )
    assert late.status_code == 409
    assert await count(signer.db, SignOff) == 0
    refused = await events(signer.db, "signoff.code_refused")
    assert [event.data["attempts"] for event in refused] == [1, 2, 3, 4, 5]
    assert {event.data["ip"] for event in refused} == {"203.0.113.7"}


async def test_a_new_code_replaces_the_old_and_codes_are_limited(signer: Signer) -> None:
    assert (await signer.sign_off("approve")).status_code == 303
    await signer.deliver()
    resent = await signer.new_code()
    assert resent.status_code == 303  # type: ignore[attr-defined]
    await signer.deliver()
    old, _new = signer.codes()
    assert (await signer.enter(old)).status_code == 422  # type: ignore[attr-defined]
    # A third code is the last for 15 minutes: the fourth is refused, and says when to ask again.
    assert (await signer.new_code()).status_code == 303  # type: ignore[attr-defined]
    throttled = await signer.new_code()
    assert throttled.status_code == 429  # type: ignore[attr-defined]
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60  # type: ignore[attr-defined]
    assert "Three codes have been sent" in element(throttled.text, "sign-off")  # type: ignore[attr-defined]
    assert await count(signer.db, SignOffCode) == 3
    await signer.deliver()
    *_, latest = signer.codes()
    assert (await signer.enter(latest)).status_code == 303  # type: ignore[attr-defined]
    assert await count(signer.db, SignOff) == 1


async def test_an_expired_code_is_refused_and_a_new_one_works(signer: Signer) -> None:
    assert (await signer.sign_off("approve")).status_code == 303
    await signer.deliver()
    (code,) = signer.codes()
    async with signer.db.write_session() as session:
        await session.exec(
            update(SignOffCode)
            .where(col(SignOffCode.task_id) == signer.task_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    page = await signer.page()
    assert "This code no longer works" in page_text(page)
    expired = await signer.http.post(
        signer.path + "/sign-off/code",
        data={"csrf_token": csrf_of(page), "submission_id": "x" * 32, "code": code},
    )
    assert expired.status_code == 409
    assert "This code has expired" in page_text(expired)
    assert (await signer.new_code()).status_code == 303  # type: ignore[attr-defined]
    await signer.deliver()
    _, fresh = signer.codes()
    assert (await signer.enter(fresh)).status_code == 303  # type: ignore[attr-defined]


async def test_the_code_is_written_in_the_organisations_language(signer: Signer) -> None:
    assert (await signer.sign_off("approve")).status_code == 303
    await signer.deliver()
    (message,) = [m for m in messages_to(signer.mailbox, signer.link.email) if CODE_LINE.search(m.text or "")]
    # The fixture's ministry works in Albanian.
    assert (message.subject or "").startswith("Kodi juaj për të konfirmuar")
    assert CODE_LINE.search(message.text or "")
