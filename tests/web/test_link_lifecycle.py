"""A review link's life and the limits around it: it works until its task is settled (and the later of
the deadline and the settlement is a grace period past), then answers 410 with the lost-link form, as a
revoked, replaced or cancelled link does; a link reaches only its own task; a scanner's GET and HEAD
change nothing; guessing tokens is throttled and finds nothing; the token is kept out of the logs and out
of the address bar.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import RoundStatus, TaskStatus
from models.reviews import AccessLink, Comment
from models.rounds import ReviewTask, Round
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.conftest import Stack
from tests.harness import ServedApp, csrf_of, messages_to
from tests.web.test_lost_link import INTERIOR_ALT, INTERIOR_FP, all_mail_delivered, ask, launched
from tests.web.test_review_page import (
    BROWSER_HEADERS,
    RecordingScheduler,
    Review,
    build_round,
    comment_submission_of,
    open_client,
)

GONE = "This review link no longer works"
CSRF_FIELD = re.compile(r'name="csrf_token" value="[^"]+"')
LINK = re.compile(r"https?://[^/\s\"]+(/t/[A-Za-z0-9_-]+)")


@pytest.fixture
async def review(db: Database, settings: Settings) -> AsyncIterator[Review]:
    built = await build_round(db, settings)
    http, scheduler = await open_client(settings, db)
    async with http:
        yield Review(
            db=db,
            settings=settings,
            http=http,
            scheduler=scheduler,
            built=built,
            key="ministry-of-interior",
            token=built.tokens["ministry-of-interior"][0],
        )


async def set_task(db: Database, task_id: int, **values: object) -> None:
    async with db.write_session() as session:
        await session.exec(update(ReviewTask).where(col(ReviewTask.id) == task_id).values(**values))
        await session.commit()


def gone_page(response: httpx.Response) -> str:
    """The 410 page without its CSRF token, which differs per browser, and the link's own address (its
    language switch)."""
    assert response.status_code == 410, response.text[:300]
    assert GONE in response.text
    assert 'action="/links/lost#form-error"' in response.text
    return re.sub(r"/t/[A-Za-z0-9_-]+", "/t/…", CSRF_FIELD.sub("", response.text))


# -------------------------------------------------------------------------------------- lifetime


async def test_a_signed_off_link_works_through_its_grace_then_answers_410_with_the_lost_link_form(
    review: Review,
) -> None:
    assert (await review.sign_off("approve")).status_code == 303
    receipt = await review.page()
    assert "receipt" in receipt.text  # signed off, before the deadline: the receipt stays to be read
    # The grace: 48 hours after the later of the deadline and the sign-off.
    async with review.db.write_session() as session:
        await session.exec(
            update(Round).where(col(Round.id) == review.built.round_id).values(grace_period_hours=48)
        )
        await session.commit()
    now = datetime.now(UTC)
    await set_task(
        review.db, review.task_id, deadline=now - timedelta(hours=47), completed_at=now - timedelta(days=3)
    )
    assert (await review.http.get(review.path)).status_code == 200
    await set_task(review.db, review.task_id, deadline=now - timedelta(hours=49))
    gone = await review.http.get(review.path)
    gone_page(gone)
    # The form on that page works: it is the lost-link form, with its own CSRF token.
    asked = await review.http.post(
        "/links/lost", data={"csrf_token": csrf_of(gone), "email": review.link.email}
    )
    assert asked.status_code == 200
    assert "a message with their links is on its way" in asked.text
    # Its forms are refused the same way: nothing more is recorded through it.
    refused = await review.http.post(review.path + "/comments", data={"csrf_token": csrf_of(gone)})
    assert refused.status_code == 410


async def test_revoked_replaced_and_cancelled_links_answer_the_same_410_page(review: Review) -> None:
    alternate = "/t/" + review.token_of("ministry-of-interior", 1)
    tirane = "/t/" + review.token_of("municipality-tirane")
    async with review.db.write_session() as session:
        await session.exec(
            update(AccessLink)
            .where(col(AccessLink.id) == review.link.id)
            .values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
    await set_task(review.db, review.built.tasks["municipality-tirane"], status=TaskStatus.withdrawn)
    revoked = gone_page(await review.http.get(review.path))
    withdrawn = gone_page(await review.http.get(tirane))
    assert (await review.http.get(alternate)).status_code == 200  # the alternate's link is its own
    async with review.db.write_session() as session:
        await session.exec(
            update(Round).where(col(Round.id) == review.built.round_id).values(status=RoundStatus.cancelled)
        )
        await session.commit()
    cancelled = gone_page(await review.http.get(alternate))
    assert revoked == withdrawn == cancelled  # nothing tells why


async def test_a_closed_rounds_unsigned_link_stops_after_the_grace(review: Review) -> None:
    now = datetime.now(UTC)
    await set_task(
        review.db,
        review.task_id,
        status=TaskStatus.no_response,
        deadline=now - timedelta(days=2),
        completed_at=now - timedelta(minutes=1),
    )
    async with review.db.write_session() as session:
        await session.exec(
            update(Round)
            .where(col(Round.id) == review.built.round_id)
            .values(status=RoundStatus.closed, grace_period_hours=1)
        )
        await session.commit()
    assert (await review.http.get(review.path)).status_code == 200  # within the grace after the close
    await set_task(review.db, review.task_id, completed_at=now - timedelta(hours=1, minutes=1))
    gone_page(await review.http.get(review.path))


# ------------------------------------------------------------------------------- its own task only


async def test_a_link_reaches_only_its_own_task(review: Review) -> None:
    tirane_token = review.token_of("municipality-tirane")
    page = await review.page("/t/" + tirane_token)
    section = review.section("4").id
    added = await review.http.post(
        f"/t/{tirane_token}/comments",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": comment_submission_of(page, section),
            "section_id": str(section),
            "body": "Tirana's own comment.",
        },
    )
    assert added.status_code == 303
    async with review.db.session() as session:
        (comment,) = (await session.exec(select(Comment))).all()
    own = await review.page()
    for action, data in [
        ("edit", {"body": "Overwritten by another organisation.", "section_id": str(section)}),
        ("withdraw", {}),
    ]:
        refused = await review.http.post(
            f"{review.path}/comments/{comment.id}/{action}", data={"csrf_token": csrf_of(own), **data}
        )
        assert refused.status_code == 404, action
        assert "your organisation has no such comment" in refused.text
    async with review.db.session() as session:
        (after,) = (await session.exec(select(Comment))).all()
    assert (after.body, after.status, after.revision) == ("Tirana's own comment.", comment.status, 1)


# --------------------------------------------------------------------------------- the address bar


async def test_the_page_takes_its_token_out_of_the_address_bar(review: Review) -> None:
    page = await review.page()
    assert 'data-address="/links/lost"' in page.text  # review.js replaces the address with this
    script = await review.http.get("/static/review.js")
    assert "history.replaceState" in script.text
    assert page.headers["referrer-policy"] == "no-referrer"
    # Its forms post to the link's own paths: no token travels to another site in a Referer.
    actions = re.findall(r'<form method="post" action="([^"]+)"', page.text)
    assert actions
    assert all(action.startswith(review.path + "/") for action in actions)


# -------------------------------------------------------------------------- scanners change nothing


async def observed(db: Database) -> tuple[object, ...]:
    """What a coordinator and an auditor see change when a link is used: task statuses and activity,
    links opened, the audit chain's head."""
    async with db.session() as session:
        tasks = (
            await session.exec(select(ReviewTask.id, ReviewTask.status, ReviewTask.last_activity_at))
        ).all()
        links = (
            await session.exec(select(AccessLink.id, AccessLink.invited_at, AccessLink.revoked_at))
        ).all()
        head = (
            await session.exec(select(AuditEvent.seq, AuditEvent.hash).order_by(col(AuditEvent.seq).desc()))
        ).first()
    return tuple(sorted(tasks)), tuple(sorted(links, key=repr)), head


async def test_a_scanners_get_and_head_on_every_emailed_link_change_nothing(stack: Stack) -> None:
    await launched(stack, ["ministry-of-interior"])  # the invitations
    assert (await ask(stack.http, INTERIOR_FP)).status_code == 200  # a lost-link message
    await all_mail_delivered(stack.db)
    # The alternate hands the task over: the colleague's email carries a link of its own.
    (alternate_invitation, *_) = messages_to(stack.mailbox, INTERIOR_ALT)
    alternate = LINK.findall(alternate_invitation.text)[0]
    page = await stack.http.get(alternate)
    handed = await stack.http.post(
        alternate + "/handover",
        data={
            "csrf_token": csrf_of(page),
            "colleague_email": "colleague@ministry-of-interior.gov.example",
            "colleague_name": "Elira Dema",
            "note": "",
        },
    )
    assert handed.status_code == 303, handed.text[:300]
    await all_mail_delivered(stack.db)
    emailed = {
        path
        for address in (INTERIOR_FP, INTERIOR_ALT, "colleague@ministry-of-interior.gov.example")
        for message in messages_to(stack.mailbox, address)
        for path in LINK.findall(message.text + " ".join(message.links))
    }
    assert len(emailed) >= 3
    before = await observed(stack.db)
    app = create_app(stack.settings, db=stack.db, scheduler=RecordingScheduler(stack.settings))
    # A mail scanner: no cookies, no script, GET and HEAD of each link, twice.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.50", 1)), base_url="http://testserver"
    ) as scanner:
        for path in sorted(emailed):
            for _ in range(2):
                assert (await scanner.get(path)).status_code == 200, path
                head = await scanner.head(path)
                assert (head.status_code, head.content) == (200, b""), path
    assert await observed(stack.db) == before


# ---------------------------------------------------------------------------------- guessing tokens


# Past the first misses (counted in the database on either backend by the tests above and below), every
# refusal is answered from the process's memory: one backend is enough for the ten thousand.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_ten_thousand_random_tokens_find_nothing_and_are_throttled(review: Review) -> None:
    app = create_app(review.settings, db=review.db, scheduler=RecordingScheduler(review.settings))
    started = time.perf_counter()
    statuses: dict[int, int] = {}
    retry_after: set[str] = set()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.99", 1)), base_url="http://testserver"
    ) as guesser:
        for _ in range(10_000):
            answer = await guesser.get(
                f"/t/{secrets.token_urlsafe(32)}", headers={"Accept": "application/json"}
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            if answer.status_code == 429:
                retry_after.add(answer.headers["retry-after"])
                assert answer.json()["error"] == "too_many_requests"
        # The real link, asked by the same client, is refused too until the window ends.
        assert (await guesser.get(review.path)).status_code == 429
    elapsed = time.perf_counter() - started
    assert set(statuses) == {404, 429}
    assert statuses[404] == review.settings.rate_limit_unknown_tokens
    assert statuses[429] == 10_000 - statuses[404]
    assert all(1 <= int(seconds) <= 15 * 60 for seconds in retry_after)
    print(f"\n10,000 random tokens: {statuses} in {elapsed:.1f} s")
    assert elapsed < 30
    # Another client is not affected.
    assert (await review.http.get(review.path)).status_code == 200


async def test_link_requests_are_limited_per_client_with_retry_after(
    db: Database, settings: Settings
) -> None:
    limited = settings.model_copy(update={"rate_limit_link_requests": 10})
    built = await build_round(db, limited, keys=["ministry-of-interior"])
    token = built.tokens["ministry-of-interior"][0]
    http, _scheduler = await open_client(limited, db)
    async with http:
        answers = [await http.get(f"/t/{token}") for _ in range(12)]
    assert [answer.status_code for answer in answers] == [200] * 10 + [429] * 2
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    assert "Too many requests" in answers[-1].text  # the app's error page


@pytest.mark.serial  # it bounds time: other processes' load must not make it fail
async def test_an_unknown_token_takes_about_as_long_as_a_known_one(review: Review) -> None:
    """Known tokens past their life (410) against unknown ones (404), in pairs, over HTTP as a guesser
    would time them: both are looked up by their digest, so nothing in the time tells how near a guess
    came, and a miss is counted after its answer has gone. Each request on a connection of its own, since
    a kept-alive connection's next request waits for the last one's counting. Loose: the figures are
    printed."""
    unlimited = review.settings.model_copy(
        update={"rate_limit_link_requests": 10**6, "rate_limit_unknown_tokens": 10**6}
    )
    app = create_app(unlimited, db=review.db, scheduler=RecordingScheduler(unlimited))
    async with review.db.write_session() as session:
        await session.exec(update(AccessLink).values(revoked_at=datetime.now(UTC)))
        await session.commit()
    known = review.token
    near = known[:-2] + ("AA" if not known.endswith("AA") else "BB")  # all but the last characters right
    async with (
        ServedApp(app) as served,
        httpx.AsyncClient(
            base_url=served.url,
            headers=BROWSER_HEADERS,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http,
    ):

        async def timed(token: str, status: int) -> float:
            started = time.perf_counter()
            answer = await http.get(f"/t/{token}")
            elapsed = time.perf_counter() - started
            assert answer.status_code == status
            await asyncio.sleep(0.01)  # the server counts a miss after its answer: not in the next one's time
            return elapsed * 1000

        for _ in range(5):
            await timed(known, 410)
            await timed(near, 404)
        pairs = [
            (await timed(known, 410), await timed(near, 404), await timed(secrets.token_urlsafe(32), 404))
            for _ in range(40)
        ]
    known_ms = statistics.median(k for k, _n, _r in pairs)
    near_ms = statistics.median(n for _k, n, _r in pairs)
    random_ms = statistics.median(r for _k, _n, r in pairs)
    print(f"\nknown (410) {known_ms:.2f} ms, near miss {near_ms:.2f} ms, random {random_ms:.2f} ms")
    assert abs(near_ms - random_ms) < max(2.0, 0.25 * random_ms)
    assert abs(known_ms - near_ms) < max(5.0, 0.5 * known_ms)
