"""The lost-link page (/links/lost): a contact of an open task gets one message with fresh links to every
review page of theirs; anybody else gets the very same page, in about the same time, and nothing.

Against the real parts (the `stack`: the Temporal dev server, a worker, an SMTP sink) where a message
must arrive; the app alone, with the scheduler's wake-ups recorded, where only the answers matter.
"""

from __future__ import annotations

import random
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from models.audit import AuditEvent
from models.enums import MessageKind, OutboxStatus, TaskStatus
from models.outbox import OutboxMessage
from models.reviews import AccessLink, SignOffCreate
from models.rounds import ReviewTask
from models.throttle import ThrottleCount
from notifications.mailbox import MailboxMessage
from services import lost_links, reviews, rounds
from services.db import Database
from services.links import ClientInfo
from services.settings import Settings
from services.throttle import Limit
from services.web.app import create_app
from tests.conftest import Stack
from tests.harness import SIGNING_SETTINGS, TEST_ACTOR, csrf_of, eventually, messages_to, seed_round
from tests.web.test_review_page import RecordingScheduler, build_round
from workflows.client import launch_round

INTERIOR_FP = "migration.fp@ministry-of-interior.gov.example"
INTERIOR_ALT = "migration.alt@ministry-of-interior.gov.example"
TIRANE_FP = "sporteli.migracionit@tirane.bashki.example"
TIRANE_ALT = "zv.sporteli@tirane.bashki.example"
FINANCE_FP = "migration.fp@ministry-of-finance.gov.example"
UNKNOWN = "nobody.here@ministry-of-interior.gov.example"
ANSWER = "If this address belongs to a focal point or alternate of an open consultation"
CSRF_VALUE = re.compile(r'name="csrf_token" value="[^"]+"')
REVIEW_PATH = re.compile(r"http://testserver(/t/[A-Za-z0-9_-]+)")


# ----------------------------------------------------------------------------------------- helpers


async def launched(stack: Stack, keys: list[str]) -> int:
    """A round of these organisations, launched, its invitations delivered."""
    round_id = await seed_round(stack.db, deadline=datetime.now(UTC) + timedelta(days=7), keys=keys)
    await launch_round(stack.db, stack.scheduler, round_id=round_id, actor=TEST_ACTOR)
    await all_mail_delivered(stack.db)
    return round_id


async def pending_mail(db: Database) -> int:
    async with db.session() as session:
        return (
            await session.exec(select(func.count()).where(OutboxMessage.status == OutboxStatus.pending))
        ).one()


async def all_mail_delivered(db: Database) -> None:
    await eventually(lambda: pending_mail(db), lambda count: count == 0)


async def lost_link_rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as session:
        return list(
            (
                await session.exec(
                    select(OutboxMessage)
                    .where(OutboxMessage.kind == MessageKind.lost_link)
                    .order_by(col(OutboxMessage.id))
                )
            ).all()
        )


def lost_link_messages(stack: Stack, address: str) -> list[MailboxMessage]:
    return [
        message
        for message in messages_to(stack.mailbox, address)
        if (message.header("Message-ID") or "").startswith("<lost_link.")
    ]


async def ask(http: httpx.AsyncClient, email: str) -> httpx.Response:
    """What a browser does: open the page, type the address, send the form."""
    page = await http.get("/links/lost")
    assert page.status_code == 200
    return await http.post("/links/lost", data={"csrf_token": csrf_of(page), "email": email})


def without_csrf(page: httpx.Response) -> str:
    return CSRF_VALUE.sub('name="csrf_token" value=""', page.text)


async def delivered_lost_link(stack: Stack, address: str) -> MailboxMessage:
    (message,) = await eventually(
        lambda: _now(lost_link_messages(stack, address)), lambda found: len(found) >= 1
    )
    return message


async def _now(value):  # type: ignore[no-untyped-def]
    return value


@dataclass
class Bare:
    """The app without Temporal: wake-ups recorded, the answers read."""

    db: Database
    settings: Settings
    http: httpx.AsyncClient
    scheduler: RecordingScheduler


@pytest.fixture
async def bare(db: Database, settings: Settings) -> AsyncIterator[Bare]:
    scheduler = RecordingScheduler(settings)
    app = create_app(settings, db=db, scheduler=scheduler)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield Bare(db, settings, http, scheduler)


async def launched_bare(bare: Bare, keys: list[str] | None) -> int:
    round_id = await seed_round(bare.db, deadline=datetime.now(UTC) + timedelta(days=7), keys=keys)
    async with bare.db.write_session() as session:
        await rounds.launch(session, round_id=round_id, actor=TEST_ACTOR, settings=bare.settings)
    return round_id


# ------------------------------------------------------------------------------ a contact's links


async def test_a_contact_gets_one_message_whose_links_open_each_of_their_review_pages(stack: Stack) -> None:
    first = await launched(stack, ["ministry-of-interior", "municipality-tirane"])
    second = await launched(stack, ["ministry-of-interior"])
    (invitation, *_) = messages_to(stack.mailbox, INTERIOR_FP)
    invited_token = review_token_of(invitation)

    # Typed as people type: spaces around it, capitals anywhere.
    answer = await ask(stack.http, "  Migration.FP@Ministry-of-Interior.GOV.example ")
    assert answer.status_code == 200
    assert ANSWER in answer.text

    message = await delivered_lost_link(stack, INTERIOR_FP)
    paths = REVIEW_PATH.findall(message.text)
    assert len(paths) == 2, message.text
    assert message.subject == "Lidhjet tuaja të shqyrtimit: 2 konsultime"  # the organisation's language
    assert set(REVIEW_PATH.findall(" ".join(message.links))) == set(paths)  # the HTML part's links too
    shown = set()
    for path in paths:
        page = await stack.http.get(path)
        assert page.status_code == 200, page.text[:300]
        shown |= {int(number) for number in re.findall(r"Consultation round (\d+)", page.text)}
    assert shown == {first, second}
    # The links sent before keep working.
    assert (await stack.http.get(f"/t/{invited_token}")).status_code == 200

    await all_mail_delivered(stack.db)  # recorded just after the sink has it
    (row,) = await lost_link_rows(stack.db)
    assert (row.status, row.round_id, row.task_id, row.to_email) == (
        OutboxStatus.sent,
        first,
        None,
        INTERIOR_FP,
    )
    async with stack.db.session() as session:
        events = list(
            (await session.exec(select(AuditEvent).where(AuditEvent.action == "link.resent"))).all()
        )
        links = {
            link.id for link in (await session.exec(select(AccessLink))).all() if link.email == INTERIOR_FP
        }
    assert {event.data["link_id"] for event in events} == links
    assert {event.round_id for event in events} == {first, second}
    assert all(event.data["message"] == row.key for event in events)
    # No token is written anywhere but in the email.
    trail = await stack.http.get("/api/v1/audit/export", headers=stack.auditor)
    assert trail.status_code == 200
    for path in paths:
        assert path.removeprefix("/t/") not in trail.text
    # Nobody else got anything.
    assert lost_link_messages(stack, INTERIOR_ALT) == []
    assert lost_link_messages(stack, TIRANE_FP) == []


def review_token_of(message: MailboxMessage) -> str:
    (path,) = set(REVIEW_PATH.findall(message.text or ""))
    return str(path).removeprefix("/t/")


async def test_a_settled_task_or_a_closed_round_sends_nothing(stack: Stack) -> None:
    await launched(stack, ["ministry-of-interior", "municipality-tirane"])
    closing = await launched(stack, ["ministry-of-finance"])
    # The ministry of the interior signs off: its contacts have nothing left to do.
    async with stack.db.write_session() as session:
        await reviews.sign_off(
            session,
            token=_first_token(stack, INTERIOR_FP),
            data=SignOffCreate(
                decision="approve",  # type: ignore[arg-type]
                signer_name="Arben Hoxha",
                signer_title="Director of Policy",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=ClientInfo(ip="127.0.0.1", user_agent="test"),
            settings=SIGNING_SETTINGS,
        )
    closed = await stack.http.post(
        f"/api/v1/rounds/{closing}/close", json={"reason": "the law was withdrawn"}, headers=stack.coordinator
    )
    assert closed.status_code == 200, closed.text
    async with stack.db.session() as session:
        statuses = (await session.exec(select(ReviewTask.status).where(ReviewTask.round_id == closing))).all()
    assert list(statuses) == [TaskStatus.no_response]

    answers = [
        await ask(stack.http, address) for address in (INTERIOR_FP, INTERIOR_ALT, FINANCE_FP, TIRANE_ALT)
    ]
    assert {(answer.status_code, without_csrf(answer)) for answer in answers} == {
        (200, without_csrf(answers[0]))
    }
    # The one who still has something to do gets their message; when it is there, the others' would be.
    message = await delivered_lost_link(stack, TIRANE_ALT)
    assert len(REVIEW_PATH.findall(message.text)) == 1
    await all_mail_delivered(stack.db)
    assert [row.to_email for row in await lost_link_rows(stack.db)] == [TIRANE_ALT]
    for address in (INTERIOR_FP, INTERIOR_ALT, FINANCE_FP):
        assert lost_link_messages(stack, address) == []


def _first_token(stack: Stack, address: str) -> str:
    (invitation, *_) = messages_to(stack.mailbox, address)
    return review_token_of(invitation)


async def test_repeated_requests_send_one_message(stack: Stack) -> None:
    await launched(stack, ["municipality-tirane"])
    answers = [await ask(stack.http, TIRANE_FP) for _ in range(3)]
    assert {(answer.status_code, without_csrf(answer)) for answer in answers} == {
        (200, without_csrf(answers[0]))
    }
    await delivered_lost_link(stack, TIRANE_FP)
    await all_mail_delivered(stack.db)
    assert len(await lost_link_rows(stack.db)) == 1
    assert len(lost_link_messages(stack, TIRANE_FP)) == 1


async def test_an_address_over_its_limit_gets_no_more_messages(bare: Bare) -> None:
    """Windows of messages (15 minutes) and of the address's limit (3 an hour), at chosen moments."""
    await launched_bare(bare, ["municipality-tirane"])
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    client = ClientInfo(ip="192.0.2.7", user_agent=None)
    decided = []
    for minutes in (1, 5, 16, 31, 46, 50):
        async with bare.db.write_session() as session:
            outcome = await lost_links.request_links(
                session,
                email=TIRANE_FP,
                client=client,
                settings=bare.settings,
                now=hour + timedelta(minutes=minutes),
            )
        decided.append(outcome.round_id is not None)
    # 1: sent; 5: the same window; 16 and 31: new windows; 46 and 50: over 3 requests this hour.
    assert decided == [True, False, True, False, False, False]
    assert len(await lost_link_rows(bare.db)) == 2


# ---------------------------------------------------------------------------- the same for everyone


async def test_known_and_unknown_addresses_get_byte_identical_answers(bare: Bare) -> None:
    await launched_bare(bare, ["ministry-of-interior"])
    known = await ask(bare.http, INTERIOR_FP)
    unknown = await ask(bare.http, UNKNOWN)
    over_its_limit = [await ask(bare.http, INTERIOR_ALT) for _ in range(3)][-1]

    assert known.status_code == unknown.status_code == over_its_limit.status_code == 200
    assert without_csrf(known) == without_csrf(unknown) == without_csrf(over_its_limit)
    assert csrf_of(known) == csrf_of(unknown)  # one browser, one token: the pages are the same bytes
    assert known.content == unknown.content
    assert ANSWER in known.text
    assert UNKNOWN not in unknown.text  # the address is not echoed
    assert INTERIOR_FP not in known.text
    ignored = {"date", "server"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }
    assert "set-cookie" not in known.headers
    rows = await lost_link_rows(bare.db)
    assert [row.to_email for row in rows] == [INTERIOR_FP, INTERIOR_ALT]
    # Of the unknown address nothing is kept but its counter.
    async with bare.db.session() as session:
        counters = list((await session.exec(select(ThrottleCount))).all())
        events = list(
            (await session.exec(select(AuditEvent).where(AuditEvent.action == "link.resent"))).all()
        )
    assert all(UNKNOWN not in counter.key and "@" not in counter.key for counter in counters)
    assert all(event.round_id is not None for event in events)
    assert len(events) == 2
    # Each message's round scheduler is woken, apart from the request (when the loop gets to it).
    woken = await eventually(lambda: _now(list(bare.scheduler.woken)), lambda found: len(found) == 2)
    assert woken == [rows[0].round_id, rows[1].round_id]


async def test_known_and_unknown_addresses_take_about_as_long(
    bare: Bare, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contacts of every organisation, each asked for once, in pairs with an unknown address of the same
    domain (in random order within each pair): the time one pair's two requests differ by is what the
    machine's other work affects least. Its median must be small; the figures are printed (pytest -s)."""
    monkeypatch.setattr(
        lost_links, "PER_CLIENT", Limit("lost_link.ip", allowed=100_000, window=timedelta(minutes=15))
    )
    await launched_bare(bare, None)
    async with bare.db.session() as session:
        contacts = sorted({link.email for link in (await session.exec(select(AccessLink))).all()})
    pairs = min(len(contacts), 80)
    page = await bare.http.get("/links/lost")
    token = csrf_of(page)

    async def timed(address: str) -> float:
        started = time.perf_counter()
        answer = await bare.http.post("/links/lost", data={"csrf_token": token, "email": address})
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200
        return elapsed * 1000

    for index in range(5):  # warm up: the first requests build statements and caches
        await timed(f"warm.{index}@{uuid.uuid4().hex}.example")
    order = random.Random(7)
    known_ms: list[float] = []
    unknown_ms: list[float] = []
    for contact in contacts[:pairs]:
        stranger = f"nobody.{uuid.uuid4().hex[:8]}@{contact.partition('@')[2]}"
        if order.random() < 0.5:
            known_ms.append(await timed(contact))
            unknown_ms.append(await timed(stranger))
        else:
            unknown_ms.append(await timed(stranger))
            known_ms.append(await timed(contact))
    assert len(await lost_link_rows(bare.db)) == pairs
    difference = statistics.median(k - u for k, u in zip(known_ms, unknown_ms, strict=True))
    typical = statistics.median(unknown_ms)
    print(
        f"\nlost link ({bare.db.engine.dialect.name}, {pairs} pairs): median known "
        f"{statistics.median(known_ms):.2f} ms, unknown {typical:.2f} ms, "
        f"median difference within a pair {difference:+.2f} ms"
    )
    # Loose enough for a busy machine running the suite in two processes; the figures are what to read.
    assert abs(difference) < max(2.0, 0.15 * typical)


# -------------------------------------------------------------------------------------- throttling


async def test_a_client_over_its_limit_is_answered_429_with_retry_after_whatever_the_address(
    bare: Bare,
) -> None:
    await launched_bare(bare, ["ministry-of-interior"])
    for index in range(5):
        assert (await ask(bare.http, f"someone.{index}@example.org")).status_code == 200
    known = await ask(bare.http, INTERIOR_FP)
    unknown = await ask(bare.http, UNKNOWN)
    for refused in (known, unknown):
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 15 * 60
        assert "Too many requests" in refused.text
    assert without_csrf(known).replace(INTERIOR_FP, "") == without_csrf(unknown).replace(UNKNOWN, "")
    assert await lost_link_rows(bare.db) == []  # the contact was not looked at
    # Another client is not held up.
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bare.http._transport.app, client=("198.51.100.9", 4000)),  # type: ignore[attr-defined]
        base_url="http://testserver",
    )
    async with other:
        assert (await ask(other, INTERIOR_FP)).status_code == 200
    assert [row.to_email for row in await lost_link_rows(bare.db)] == [INTERIOR_FP]


# ------------------------------------------------------------------------------------ refused forms


async def test_a_form_without_a_valid_csrf_token_is_refused_and_sends_nothing(bare: Bare) -> None:
    await launched_bare(bare, ["ministry-of-interior"])
    await bare.http.get("/links/lost")  # the browser has its cookie
    missing = await bare.http.post("/links/lost", data={"email": INTERIOR_FP})
    forged = await bare.http.post("/links/lost", data={"email": INTERIOR_FP, "csrf_token": "0" * 64})
    stranger = httpx.AsyncClient(transport=bare.http._transport, base_url="http://testserver")  # type: ignore[attr-defined]
    async with stranger:  # no cookie at all: a form posted from another site
        cross_site = await stranger.post("/links/lost", data={"email": INTERIOR_FP, "csrf_token": "x"})
    for refused in (missing, forged, cross_site):
        assert refused.status_code == 403
        assert "did not come from this site" in refused.text
        assert INTERIOR_FP not in refused.text  # not put back into a form one click would send
        assert ANSWER not in refused.text
    assert await lost_link_rows(bare.db) == []
    async with bare.db.session() as session:
        assert list((await session.exec(select(ThrottleCount))).all()) == []


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "   ",
        "not an email",
        "@ministry-of-interior.gov.example",
        "migration.fp@",
        INTERIOR_FP + "\r\nBcc: thief@evil.example",
        "thief@evil.example\r\nTo: " + INTERIOR_FP,
        INTERIOR_FP + "\x00",
        "a" * 100_000 + "@example.org",
        "x@" + "a" * 400 + ".example",
        "<script>alert(1)</script>@example.org",
        "migration.fp@ministry-of-interior.gov.example, thief@evil.example",
        "ëmail@shembull.al",
        "\udcff@example.org",
    ],
)
async def test_hostile_input_gets_the_neutral_answer_or_a_clear_422_never_an_error(
    bare: Bare, typed: str
) -> None:
    await launched_bare(bare, ["ministry-of-interior"])
    page = await bare.http.get("/links/lost")
    answer = await bare.http.post(
        "/links/lost",
        content=f"csrf_token={csrf_of(page)}&email={_encoded(typed)}".encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code in (200, 422), answer.text[:500]
    if answer.status_code == 200:
        assert ANSWER in answer.text
    else:
        assert "Enter the email address the invitation was sent to" in answer.text
        assert "<script>" not in answer.text
        assert len(answer.content) < 20_000  # what was typed is not echoed whole
    rows = await lost_link_rows(bare.db)
    assert all(row.to_email == INTERIOR_FP for row in rows)
    assert len(rows) <= 1


def _encoded(value: str) -> str:
    from urllib.parse import quote

    return quote(value.encode("utf-8", "surrogatepass"), safe="")


async def test_a_form_sent_twice_in_one_body_or_with_strange_fields_is_never_an_error(bare: Bare) -> None:
    page = await bare.http.get("/links/lost")
    token = csrf_of(page)
    for body in (
        f"csrf_token={token}&email=a@example.org&email=b@example.org",
        f"csrf_token={token}&email[]=a@example.org",
        f"csrf_token={token}&csrf_token={token}&email=a@example.org",
        "%ff%fe=%00",
    ):
        answer = await bare.http.post(
            "/links/lost", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert answer.status_code < 500, (body, answer.text[:300])


async def test_the_invalid_link_page_points_to_the_lost_link_page(bare: Bare) -> None:
    for path in ("/t/not-a-token-at-all-" + "x" * 20, "/t/a/b/c"):
        page = await bare.http.get(path, headers={"Accept": "text/html"})
        assert page.status_code == 404
        assert 'href="/links/lost"' in page.text
    form = await bare.http.get("/links/lost")
    assert form.status_code == 200
    assert 'name="email"' in form.text
    assert form.headers["cache-control"] == "no-store"


async def test_a_withdrawn_link_points_to_the_lost_link_page_and_is_not_sent_again(bare: Bare) -> None:
    built = await build_round(bare.db, bare.settings, keys=["ministry-of-interior"])
    focal, alternate = built.links["ministry-of-interior"]
    async with bare.db.write_session() as session:
        await session.exec(
            update(AccessLink).where(col(AccessLink.id) == focal.id).values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
    page = await bare.http.get(
        f"/t/{built.tokens['ministry-of-interior'][0]}", headers={"Accept": "text/html"}
    )
    assert page.status_code == 410
    assert 'action="/links/lost#form-error"' in page.text

    for address in (focal.email, alternate.email):
        assert (await ask(bare.http, address)).status_code == 200
    assert [row.to_email for row in await lost_link_rows(bare.db)] == [alternate.email]
