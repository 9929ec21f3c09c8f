"""The focal point's review page under /t/{token}: read, comment, edit, withdraw, sign off.

Rounds are built directly through the services (no scheduler needed); the app is served through
httpx's ASGI transport, as a browser would use it: cookies kept, HTML asked for, forms posted.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select as select_table
from sqlalchemy import text, update
from sqlmodel import SQLModel, col, select

from models.audit import AuditChainHead, AuditEvent
from models.documents import Section
from models.enums import CommentStatus, TaskStatus
from models.organisations import Organisation
from models.reviews import AccessLink, Comment, SignOff
from models.rounds import ReviewTask, Round
from services import links, rounds, scheduling
from services.db import Database
from services.errors import ServiceUnavailable
from services.settings import Settings
from services.web.app import create_app
from services.web.i18n import COOKIE as LANGUAGE_COOKIE
from tests.harness import TEST_ACTOR, csrf_of, fixture_path, seed_round
from workflows.client import Scheduler

KEYS = ["ministry-of-interior", "municipality-tirane"]
SECTIONS = ["1", "4", "Annex 1"]
BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) RoundtableTest/1.0",
}


class RecordingScheduler(Scheduler):
    """No Temporal here: wake-ups are recorded instead of sent (the page must not depend on them)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.woken: list[int] = []

    async def client(self):  # type: ignore[no-untyped-def]
        raise ServiceUnavailable("no scheduler in this test")

    async def wake(self, round_id: int) -> None:
        self.woken.append(round_id)


@dataclass
class BuiltRound:
    round_id: int
    version_id: int
    links: dict[str, list[AccessLink]]
    """Per organisation key: the focal point's link first, then the alternate's."""
    sections: list[Section]
    """The sections of the draft, in document order."""
    tokens: dict[str, list[str]]
    """The review token of each link in `links`, as its invitation would carry it."""
    tasks: dict[str, int] = field(default_factory=dict)


async def build_round(
    db: Database,
    settings: Settings,
    *,
    keys: list[str] | None = None,
    section_numbers: list[str] | None = None,
    deadline: datetime | None = None,
    draft: bytes | None = None,
    **options: Any,
) -> BuiltRound:
    """Registry, draft, round and launch (which issues the links), through the services; `options` are
    further RoundCreate fields."""
    round_id = await seed_round(
        db,
        deadline=deadline or datetime.now(UTC) + timedelta(days=7),
        keys=keys or KEYS,
        section_numbers=section_numbers or SECTIONS,
        draft=draft,
        **options,
    )
    async with db.session() as session:
        created = await session.get(Round, round_id)
    assert created is not None
    version_id = created.document_version_id
    async with db.write_session() as session:
        assert await rounds.launch(session, round_id=created.id, actor=TEST_ACTOR, settings=settings)
    async with db.session() as session:
        rows = (
            await session.exec(
                select(AccessLink, Organisation.key, ReviewTask.id)
                .join(ReviewTask, col(ReviewTask.id) == AccessLink.task_id)
                .join(Organisation, col(Organisation.id) == ReviewTask.organisation_id)
                .where(AccessLink.round_id == created.id)
                .order_by(col(AccessLink.role).desc())  # focal_point before alternate
            )
        ).all()
        sections = list(
            (
                await session.exec(
                    select(Section)
                    .where(Section.document_version_id == version_id)
                    .order_by(col(Section.position))
                )
            ).all()
        )
    by_key: dict[str, list[AccessLink]] = {}
    tokens: dict[str, list[str]] = {}
    tasks: dict[str, int] = {}
    for link, key, task_id in rows:
        by_key.setdefault(key, []).append(link)
        tasks[key] = task_id or 0
        # What sending the invitation does; the token exists only in this test's memory.
        async with db.write_session() as session:
            token = await links.reissue_token(session, link_id=link.id, actor=TEST_ACTOR)
        tokens.setdefault(key, []).append(token)
    return BuiltRound(
        round_id=created.id,
        version_id=version_id,
        links=by_key,
        sections=sections,
        tokens=tokens,
        tasks=tasks,
    )


@dataclass
class Review:
    """One focal point's view: their link's path, the round, and a browser-like client."""

    db: Database
    settings: Settings
    http: httpx.AsyncClient
    scheduler: RecordingScheduler
    built: BuiltRound
    key: str
    token: str

    @property
    def path(self) -> str:
        return f"/t/{self.token}"

    @property
    def link(self) -> AccessLink:
        return self.built.links[self.key][0]

    @property
    def task_id(self) -> int:
        return self.built.tasks[self.key]

    def section(self, number: str) -> Section:
        (found,) = [section for section in self.built.sections if section.number == number]
        return found

    def token_of(self, key: str, index: int = 0) -> str:
        return self.built.tokens[key][index]

    async def page(self, path: str | None = None) -> httpx.Response:
        response = await self.http.get(path or self.path)
        assert response.status_code == 200, response.text
        return response

    async def post(self, suffix: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        if csrf:
            data = {"csrf_token": csrf_of(await self.page()), **data}
        return await self.http.post(self.path + suffix, data=data)

    async def add_comment(self, number: str, body: str, **extra: str) -> httpx.Response:
        """Fill in and send the section's comment form as the page offers it."""
        page = await self.page()
        section_id = self.section(number).id
        data = {
            "csrf_token": csrf_of(page),
            "submission_id": comment_submission_of(page, section_id),
            "section_id": str(section_id),
            "body": body,
            **extra,
        }
        return await self.http.post(self.path + "/comments", data=data)

    async def sign_off(self, decision: str = "approve", **extra: str) -> httpx.Response:
        page = await self.page()
        submission_id = extra.pop("submission_id", None)
        data = {
            "csrf_token": csrf_of(page),
            "submission_id": submission_of(page) if submission_id is None else submission_id,
            "decision": decision,
            "statement": "",
            "signer_name": "Arben Hoxha",
            "signer_title": "Director of Policy",
            "authorised": "yes",
            **extra,
        }
        return await self.http.post(self.path + "/sign-off", data=data)


def submission_of(page: httpx.Response) -> str:
    """The submission id of the page's sign-off form."""
    match = re.search(r'id="sign-off-form".*?name="submission_id" value="([^"]+)"', page.text, re.DOTALL)
    assert match, "no sign-off form on the page"
    return match.group(1)


def comment_submission_of(page: httpx.Response, section_id: int) -> str:
    """The submission id of the form that adds a comment on the section."""
    match = re.search(
        rf'name="submission_id" value="([^"]+)">\s*'
        rf'<input type="hidden" name="section_id" value="{section_id}"',
        page.text,
    )
    assert match, f"no comment form for section {section_id} on the page"
    return match.group(1)


class _Element(HTMLParser):
    """Finds the element with an id, and the markup inside it (up to its own closing tag)."""

    def __init__(self, markup: str, wanted: str) -> None:
        super().__init__(convert_charrefs=False)
        self.wanted, self.depth, self.tag = wanted, 0, ""
        self.start = self.end = -1
        self._lines = [0]
        for line in markup.splitlines(keepends=True):
            self._lines.append(self._lines[-1] + len(line))
        self.feed(markup)

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.start < 0 and ("id", self.wanted) in attrs:
            self.tag, self.depth, self.start = tag, 1, self._offset()
        elif self.start >= 0 and self.end < 0 and tag == self.tag:
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.start >= 0 and self.end < 0 and tag == self.tag:
            self.depth -= 1
            if self.depth == 0:
                self.end = self._offset()


def element(markup: str, element_id: str) -> str:
    """The markup of the element with the id, its own tags included; fails if there is none."""
    found = _Element(markup, element_id)
    assert found.start >= 0, f"no element with id {element_id!r} on the page"
    assert found.end > found.start, f"the element {element_id!r} does not end"
    return markup[found.start : found.end]


def assert_error_above(response: httpx.Response, element_id: str, form_marker: str, message: str) -> None:
    """The page's one error message is inside the element, right above the refused form (the form's
    marker follows it)."""
    assert response.text.count('id="form-error"') == 1
    inside = element(response.text, element_id)
    error = element(inside, "form-error")
    assert message in page_text(httpx.Response(200, text=error))
    assert form_marker in inside[inside.index(error) + len(error) :]


def new_submission() -> str:
    return uuid.uuid4().hex


def page_text(response: httpx.Response) -> str:
    """The visible text of a page, tags dropped and whitespace collapsed, for wording checks."""
    without_tags = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(html.unescape(without_tags).split())


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for 'nothing changed' checks; but the rate limits' counters, which count
    every request to a link (a page fetched included) and are no part of the record."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with db.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name == "throttle_counts":
                continue
            rows = (await connection.execute(select_table(table))).all()
            tables[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return tables


async def count(db: Database, model: Any, *conditions: Any) -> int:
    async with db.session() as session:
        return len((await session.exec(select(model).where(*conditions))).all())


async def events(db: Database, action: str | None = None) -> list[AuditEvent]:
    async with db.session() as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq))
        if action:
            query = query.where(AuditEvent.action == action)
        return list((await session.exec(query)).all())


async def comments_of(db: Database, task_id: int) -> list[Comment]:
    async with db.session() as session:
        return list((await session.exec(select(Comment).where(Comment.task_id == task_id))).all())


async def open_client(
    settings: Settings, db: Database, *, language: str | None = "en"
) -> tuple[httpx.AsyncClient, RecordingScheduler]:
    """A browser on the app. The fixture's organisations work in Albanian: these tests read the page in
    English, as a focal point who chose English with the page's switch would (its cookie); `language=None`
    is a browser that has chosen nothing."""
    scheduler = RecordingScheduler(settings)
    app = create_app(settings, db=db, scheduler=scheduler)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50123)),
        base_url="http://testserver",
        headers=BROWSER_HEADERS,
        cookies={LANGUAGE_COOKIE: language} if language else None,
    )
    return client, scheduler


@pytest.fixture
async def review(db: Database, settings: Settings) -> AsyncIterator[Review]:
    built = await build_round(db, settings)
    http, scheduler = await open_client(settings, db)
    async with http:
        token = built.tokens["ministry-of-interior"][0]
        yield Review(
            db=db,
            settings=settings,
            http=http,
            scheduler=scheduler,
            built=built,
            key="ministry-of-interior",
            token=token,
        )


async def set_deadline(db: Database, round_id: int, deadline: datetime) -> None:
    """The round's deadline and every task's, as if the round had been created with it."""
    async with db.write_session() as session:
        await session.exec(update(Round).where(col(Round.id) == round_id).values(deadline=deadline))
        await session.exec(
            update(ReviewTask).where(col(ReviewTask.round_id) == round_id).values(deadline=deadline)
        )
        await session.commit()


# ------------------------------------------------------------------------------------------ reading


async def test_the_page_shows_what_the_focal_point_must_review(review: Review) -> None:
    page = await review.page()
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    text = page_text(page)
    assert "Migration strategy, round 1" in text
    assert "Ministry of Interior" in text
    assert "Ministria e Brendshme" in text
    assert "Municipality of Tiranë" not in text  # another organisation's task is not shown
    deadline = (await _round(review)).deadline
    assert f"Deadline {deadline:%-d %B %Y}" in text or f"{deadline:%-d %b %Y}" in text, text[:600]
    assert "Status open" in text
    for number, heading in [
        ("1", "Purpose and scope"),
        ("4", "Labour migration"),
        ("Annex 1", "Action Plan"),
    ]:
        assert f"{number}. {heading}" in text
    assert "Context and migration trends" not in text  # section 2 is not assigned
    for paragraph in ("1.1", "1.4", "4.1", "4.2", "4.5"):
        anchor = "p-" + paragraph.replace(".", "-")
        assert f'id="{anchor}"' in page.text
        assert f'<option value="{paragraph}"' in page.text
    assert 'id="p-2-1"' not in page.text
    assert review.section("4").sha256[:12] in page.text
    assert 'id="sign-off-form"' in page.text


async def test_fetching_the_page_changes_nothing(review: Review) -> None:
    await review.add_comment("4", "A comment before the prefetches.")
    # A mail scanner: no cookies, no Accept header, HEAD and GET.
    before = await snapshot(review.db)
    scanner = httpx.AsyncClient(transport=review.http._transport, base_url="http://testserver")
    async with scanner:
        for _ in range(3):
            assert (await scanner.get(review.path)).status_code == 200
            assert (await review.http.get(review.path)).status_code == 200
        assert (await scanner.head(review.path)).status_code in (200, 405)
    after = await snapshot(review.db)
    assert after == before
    assert review.scheduler.woken == []


async def test_the_alternate_sees_the_organisations_comments_and_others_do_not(review: Review) -> None:
    assert (await review.add_comment("4", "Comment by the focal point.")).status_code == 303
    alternate = await review.page("/t/" + review.token_of("ministry-of-interior", 1))
    assert "Comment by the focal point." in alternate.text
    assert "migration.alt@ministry-of-interior.gov.example" in alternate.text
    other = await review.page("/t/" + review.token_of("municipality-tirane"))
    assert "Comment by the focal point." not in other.text
    assert "Municipality of Tiranë" in other.text


# ----------------------------------------------------------------------------------------- comments


async def test_a_comment_on_a_paragraph_with_proposed_wording_is_shown_and_audited(review: Review) -> None:
    body = (
        "The shortage list should also be agreed with the regional employment offices.\n\nSecond paragraph."
    )
    wording = "…agreed with employers' organisations, trade unions and regional employment offices."
    response = await review.add_comment(
        "4", body, paragraph="4.2", kind="substantive", proposed_wording=wording
    )
    assert response.status_code == 303, response.text
    (comment,) = await comments_of(review.db, review.task_id)
    assert (
        response.headers["location"]
        == f"{review.path}?done=comment-added&comment={comment.id}#comment-{comment.id}"
    )

    page = await review.http.get(response.headers["location"])
    # The notice is in the comment the page jumps to, not at the top of the page.
    assert "Your comment was saved." in element(page.text, f"comment-{comment.id}")
    assert page.text.count("Your comment was saved.") == 1
    assert (comment.paragraph, str(comment.kind), comment.body, comment.proposed_wording) == (
        "4.2",
        "substantive",
        body,
        wording,
    )
    assert comment.author_email == "migration.fp@ministry-of-interior.gov.example"
    assert comment.section_id == review.section("4").id
    assert comment.revision == 1
    shown = page.text[page.text.index(f'id="comment-{comment.id}"') :]
    shown_text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", shown)).split())
    assert " ".join(body.split()) in shown_text
    assert wording in shown_text
    assert 'href="#p-4-2"' in shown
    assert "substantive" in shown

    (event,) = await events(review.db, "comment.added")
    assert event.data["body"] == body
    assert event.data["proposed_wording"] == wording
    assert (event.data["section"], event.data["paragraph"], event.data["kind"]) == ("4", "4.2", "substantive")
    assert event.data["comment_id"] == comment.id
    assert event.actor_kind == "link"
    assert event.actor_id == review.link.id
    assert (event.round_id, event.task_id) == (review.built.round_id, review.task_id)


async def test_a_comment_on_the_whole_section(review: Review) -> None:
    response = await review.add_comment("Annex 1", "The budget column needs a total.", kind="editorial")
    assert response.status_code == 303, response.text
    (comment,) = await comments_of(review.db, review.task_id)
    assert comment.paragraph is None
    assert comment.proposed_wording is None
    page = await review.page()
    assert "whole section" in page_text(page)


async def test_every_comment_form_has_its_own_submission_id_and_sends_once(review: Review) -> None:
    page = await review.page()
    # Each form's action ends in #form-error: refused, the page shows its message right above the form.
    forms = re.findall(r'<form method="post" action="/t/[^"]+/comments#form-error"[^>]*>', page.text)
    assert len(forms) == len(SECTIONS)
    assert all("data-once" in form for form in forms)
    ids = [comment_submission_of(page, review.section(number).id) for number in SECTIONS]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert submission_of(page) not in ids
    again = await review.page()
    assert comment_submission_of(again, review.section("4").id) not in ids  # fresh on every rendering


async def test_a_double_submitted_comment_records_one(review: Review) -> None:
    page = await review.page()
    section_id = review.section("4").id
    form = {
        "csrf_token": csrf_of(page),
        "submission_id": comment_submission_of(page, section_id),
        "section_id": str(section_id),
        "body": "Sent with a double click on a slow connection.",
        "paragraph": "4.2",
    }
    responses = await asyncio.gather(
        *(review.http.post(review.path + "/comments", data=form) for _ in range(3))
    )
    assert [response.status_code for response in responses] == [303] * 3, [r.text[-300:] for r in responses]
    (comment,) = await comments_of(review.db, review.task_id)
    assert {response.headers["location"] for response in responses} == {
        f"{review.path}?done=comment-added&comment={comment.id}#comment-{comment.id}"
    }
    assert len(await events(review.db, "comment.added")) == 1
    # The same form sent again later (the browser's back button, then submit): still the one comment.
    later = await review.http.post(review.path + "/comments", data=form)
    assert later.headers["location"].endswith(f"#comment-{comment.id}")
    assert len(await comments_of(review.db, review.task_id)) == 1
    # A new form for the same text is a new comment: the person chose to send it again.
    fresh = await review.add_comment("4", form["body"], paragraph="4.2")
    assert fresh.status_code == 303
    assert len(await comments_of(review.db, review.task_id)) == 2


@pytest.mark.parametrize("submission_id", [None, "", "short", "x" * 65])
async def test_a_comment_without_a_valid_submission_id_is_refused_with_the_text_kept(
    review: Review, submission_id: str | None
) -> None:
    page = await review.page()
    body = "A comment from a form that lost its hidden field."
    data = {"csrf_token": csrf_of(page), "section_id": str(review.section("4").id), "body": body}
    if submission_id is not None:
        data["submission_id"] = submission_id
    before = await snapshot(review.db)
    response = await review.http.post(review.path + "/comments", data=data)
    assert response.status_code == 422, response.text
    text = page_text(response)
    assert "Not recorded." in text
    assert (
        "the form is incomplete or comes from an old copy of this page; check it below and submit it again"
        in text
    )
    # The text is back in the section's form, which has a new submission id: one click sends it.
    assert f'id="add-{review.section("4").id}-body">{body}</textarea>' in response.text
    retry = comment_submission_of(response, review.section("4").id)
    assert retry != submission_id
    assert await snapshot(review.db) == before
    sent = await review.http.post(
        review.path + "/comments", data={**data, "csrf_token": csrf_of(response), "submission_id": retry}
    )
    assert sent.status_code == 303, sent.text


async def test_the_page_shows_the_drafts_title_and_preamble_above_the_sections(review: Review) -> None:
    page = await review.page()
    intro = re.search(r'<section class="panel draft-intro".*?</section>', page.text, re.DOTALL)
    assert intro, "no draft introduction on the page"
    intro_text = page_text(httpx.Response(200, text=intro.group(0)))
    assert (
        "National Strategy on Migration Governance 2026–2030 — Draft for inter-institutional consultation"
        in (intro_text)
    )
    assert (
        "Version 0.9, prepared by the Technical Secretariat of the Inter-Ministerial Committee" in intro_text
    )
    assert page.text.index("draft-intro") < page.text.index(f'id="s-{review.section("1").id}"')


async def test_a_hostile_preamble_is_shown_without_its_markup(db: Database, settings: Settings) -> None:
    draft = fixture_path("draft-migration-governance-strategy.md").read_text()
    title, rest = draft.split("\n", 1)
    hostile = (
        f"{title}\n\nPrepared by the <b>Secretariat</b>. <script>alert('x')</script>"
        '<img src=x onerror="alert(1)"> [a link](javascript:alert(2)) and [the ministry](https://example.org).\n'
        f"{rest}"
    )
    built = await build_round(db, settings, draft=hostile.encode())
    http, _ = await open_client(settings, db)
    async with http:
        page = await http.get("/t/" + built.tokens["ministry-of-interior"][0])
    assert page.status_code == 200
    intro = re.search(r'<section class="panel draft-intro".*?</section>', page.text, re.DOTALL)
    assert intro
    shown = intro.group(0)
    assert "Prepared by the" in shown
    # Markup the draft may not carry is escaped or dropped, never live.
    assert "<script" not in shown
    assert "<img" not in shown
    assert 'href="javascript:' not in shown
    assert 'href="https://example.org"' in shown


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("paragraph not in the section", "section 4 has no paragraph 2.1"),
        ("section not assigned", "not among the sections assigned to your organisation"),
        ("section of another draft", "not among the sections assigned to your organisation"),
        ("empty body", "the comment is empty"),
        ("blank body", "the comment is empty"),
        ("unknown kind", "Type: choose one of 'general', 'editorial', 'substantive' or 'legal'"),
        ("section id not a number", "choose the section your comment is about"),
        ("body too long", "Comment: this is longer than the 20000 characters allowed"),
        ("NUL character", "the text contains a NUL character"),
    ],
)
async def test_a_bad_comment_is_refused_with_the_typed_text_kept(
    review: Review, case: str, message: str
) -> None:
    section_id = str(review.section("4").id)
    body = "My carefully typed comment that must not be lost."
    wording = "My proposed wording, also typed with care."
    extra: dict[str, str] = {"paragraph": "4.3", "kind": "legal"}
    if case == "paragraph not in the section":
        extra["paragraph"] = "2.1"
    elif case == "section not assigned":
        section_id = str(review.section("2").id)
    elif case == "section of another draft":
        section_id = "999999"
    elif case == "empty body":
        body = ""
    elif case == "blank body":
        body = "   \n  "
    elif case == "unknown kind":
        extra["kind"] = "rude"
    elif case == "section id not a number":
        section_id = "four"
    elif case == "body too long":
        body = "x" * 20_001
    elif case == "NUL character":
        wording = "Wording with a \x00 NUL in it."
    before = await snapshot(review.db)
    response = await review.post(
        "/comments",
        {
            "submission_id": new_submission(),
            "section_id": section_id,
            "body": body,
            "proposed_wording": wording,
            **extra,
        },
    )
    assert response.status_code == 422, response.text
    assert "text/html" in response.headers["content-type"]
    text = page_text(response)
    assert "Not recorded." in text
    assert message in text
    if body.strip() and len(body) < 1000:
        assert body in response.text, "the typed comment was not kept"
    assert wording in response.text, "the typed proposed wording was not kept"
    assert await snapshot(review.db) == before
    if case in ("section not assigned", "section of another draft", "section id not a number"):
        # No form on the page is the one it came from: the message and the text are above the sections.
        assert response.text.index('id="form-error"') < response.text.index("draft-intro")
    else:
        assert_error_above(response, f"add-{section_id}", 'name="submission_id"', message)


async def test_editing_a_comment_makes_revision_2_and_audits_before_and_after(review: Review) -> None:
    await review.add_comment("4", "Original text.", paragraph="4.1", kind="general")
    (comment,) = await comments_of(review.db, review.task_id)
    response = await review.post(
        f"/comments/{comment.id}/edit",
        {"body": "Revised text.", "paragraph": "4.3", "kind": "legal", "proposed_wording": "New wording."},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].endswith(
        f"?done=comment-edited&comment={comment.id}#comment-{comment.id}"
    )
    (edited,) = await comments_of(review.db, review.task_id)
    assert (edited.revision, edited.body, edited.paragraph, str(edited.kind), edited.proposed_wording) == (
        2,
        "Revised text.",
        "4.3",
        "legal",
        "New wording.",
    )
    assert edited.created_at == comment.created_at
    assert edited.updated_at > comment.updated_at
    (event,) = await events(review.db, "comment.edited")
    assert event.data["before"]["body"] == "Original text."
    assert event.data["before"]["paragraph"] == "4.1"
    assert event.data["after"]["body"] == "Revised text."
    assert event.data["after"]["paragraph"] == "4.3"
    assert event.data["after"]["proposed_wording"] == "New wording."
    assert event.data["revision"] == 2
    page = await review.page()
    assert "Revised text." in page.text
    assert "Original text." not in page.text
    assert "edited" in page_text(page)

    # Saving the form unchanged records nothing new and does not fail.
    before = await snapshot(review.db)
    again = await review.post(
        f"/comments/{comment.id}/edit",
        {"body": "Revised text.", "paragraph": "4.3", "kind": "legal", "proposed_wording": "New wording."},
    )
    assert again.status_code == 303, again.text
    assert await snapshot(review.db) == before


async def test_a_bad_edit_is_refused_with_the_typed_text_kept(review: Review) -> None:
    await review.add_comment("4", "Original text.", paragraph="4.1")
    (comment,) = await comments_of(review.db, review.task_id)
    before = await snapshot(review.db)
    response = await review.post(
        f"/comments/{comment.id}/edit",
        {"body": "Edited but bad paragraph.", "paragraph": "9.9", "kind": "general"},
    )
    assert response.status_code == 422
    assert "section 4 has no paragraph 9.9" in page_text(response)
    assert "Edited but bad paragraph." in response.text
    article = element(response.text, f"comment-{comment.id}")
    assert_error_above(
        response, f"comment-{comment.id}", f'action="/t/{review.token}/comments/{comment.id}/edit', "9.9"
    )
    assert '<details class="comment-edit" open>' in article  # the edit form is open, with what was typed
    assert await snapshot(review.db) == before


async def test_withdrawing_a_comment(review: Review) -> None:
    await review.add_comment("1", "To be withdrawn.", paragraph="1.2")
    (comment,) = await comments_of(review.db, review.task_id)
    response = await review.post(f"/comments/{comment.id}/withdraw", {})
    assert response.status_code == 303, response.text
    (withdrawn,) = await comments_of(review.db, review.task_id)
    assert withdrawn.status == CommentStatus.withdrawn
    assert withdrawn.body == "To be withdrawn."
    (event,) = await events(review.db, "comment.withdrawn")
    assert event.data["comment_id"] == comment.id
    page = await review.http.get(response.headers["location"])
    assert "Your comment was withdrawn." in element(page.text, f"comment-{comment.id}")
    article = page.text[page.text.index(f'id="comment-{comment.id}"') :]
    article = article[: article.index("</article>")]
    assert "withdrawn" in page_text(httpx.Response(200, text=article))
    assert "/edit" not in article  # no more editing
    # A withdrawn comment can be changed no more.
    again = await review.post(f"/comments/{comment.id}/edit", {"body": "Back again?"})
    assert again.status_code == 409
    assert "withdrawn" in page_text(again)
    twice = await review.post(f"/comments/{comment.id}/withdraw", {})
    assert twice.status_code == 409
    assert len(await events(review.db, "comment.withdrawn")) == 1


async def test_a_focal_point_cannot_touch_another_organisations_comment(review: Review, db: Database) -> None:
    other_path = "/t/" + review.token_of("municipality-tirane")
    page = await review.page(other_path)
    section_id = re.search(r'name="section_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    await review.http.post(
        other_path + "/comments",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": new_submission(),
            "section_id": section_id,
            "body": "Tiranë's.",
        },
    )
    (theirs,) = await comments_of(db, review.built.tasks["municipality-tirane"])
    before = await snapshot(db)
    edit = await review.post(f"/comments/{theirs.id}/edit", {"body": "Hijacked"})
    withdraw = await review.post(f"/comments/{theirs.id}/withdraw", {})
    assert (edit.status_code, withdraw.status_code) == (404, 404)
    assert "no such comment" in page_text(edit)
    assert await snapshot(db) == before


# --------------------------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize("case", ["no cookie", "wrong token", "no token field", "token of another cookie"])
async def test_a_post_without_a_valid_csrf_token_is_refused_and_the_text_kept(
    review: Review, case: str
) -> None:
    page = await review.page()
    token = csrf_of(page)
    section_id = review.section("4").id
    body = "My carefully typed comment on the labour shortage list."
    statement = "Our statement, typed with care before the form expired."
    data = {
        "csrf_token": token,
        "submission_id": comment_submission_of(page, section_id),
        "section_id": str(section_id),
        "body": body,
    }
    if case == "wrong token":
        data["csrf_token"] = "0" * 64
    elif case == "no token field":
        del data["csrf_token"]
    elif case == "token of another cookie":
        other, _ = await open_client(review.settings, review.db)
        async with other:
            data["csrf_token"] = csrf_of(await other.get(review.path))
    if case == "no cookie":
        review.http.cookies.delete("rt_csrf")
    before = await snapshot(review.db)
    for suffix, form, typed in [
        ("/comments", data, body),
        (
            "/sign-off",
            {
                **{name: value for name, value in data.items() if name != "body"},
                "submission_id": submission_of(page),
                "decision": "object",
                "statement": statement,
                "signer_name": "Arben Hoxha",
                "signer_title": "Director of Policy",
                "authorised": "yes",
            },
            statement,
        ),
    ]:
        response = await review.http.post(review.path + suffix, data=form)
        assert response.status_code == 403, response.text
        assert "text/html" in response.headers["content-type"]
        text = page_text(response)
        assert "Not recorded." in text
        assert "did not come from this site, so nothing was recorded" in text
        assert "4. Labour migration" in text  # the review page itself, not a bare error page
        # What was typed is there to copy, read-only: not put back into a form ready to send.
        assert re.search(
            rf"<textarea readonly[^>]*>{re.escape(html.escape(typed, quote=False))}</textarea>", response.text
        )
        assert response.text.count(html.escape(typed, quote=False)) == 1
    assert await snapshot(review.db) == before

    # The page that refused the form carries a valid token (and cookie): sending again from it works.
    again = await review.http.post(
        review.path + "/comments",
        data={**data, "csrf_token": csrf_of(response), "submission_id": new_submission()},
    )
    assert again.status_code == 303, again.text
    (comment,) = await comments_of(review.db, review.task_id)
    assert comment.body == body


async def test_csrf_cookie_is_http_only_lax_and_not_secure_over_http(review: Review) -> None:
    fresh, _ = await open_client(review.settings, review.db)
    async with fresh:
        page = await fresh.get(review.path)
    cookie = page.headers["set-cookie"].lower()
    assert cookie.startswith("rt_csrf=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie
    assert "path=/" in cookie


@pytest.mark.parametrize(
    ("public_base_url", "request_scheme", "secure"),
    [
        ("https://roundtable.example", "http", True),  # TLS ends at the proxy: the app sees http
        ("https://roundtable.example", "https", True),
        ("http://testserver", "https", False),  # the scheme of the request is not what decides
    ],
)
async def test_cookies_are_secure_when_the_service_is_published_over_https(
    review: Review, public_base_url: str, request_scheme: str, secure: bool
) -> None:
    settings = review.settings.model_copy(update={"public_base_url": public_base_url})
    app = create_app(settings, db=review.db, scheduler=RecordingScheduler(settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"{request_scheme}://testserver",
        headers=BROWSER_HEADERS,
    ) as client:
        page = await client.get(review.path)
        assert page.status_code == 200
        csrf_cookie = page.headers["set-cookie"].lower()
    assert csrf_cookie.startswith("rt_csrf=")
    assert ("; secure" in csrf_cookie) is secure
    assert "samesite=lax" in csrf_cookie


async def test_opening_the_link_again_from_webmail_keeps_the_first_cookie(review: Review) -> None:
    """A focal point with the page open in one tab clicks the link in webmail again: a cross-site, top-level
    navigation, on which a SameSite=Lax cookie is sent. The second page must not replace the cookie, or
    the form in the first tab would be refused."""
    first_tab = await review.page()
    cookie = review.http.cookies["rt_csrf"]
    webmail_click = {
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Mode": "navigate",
        "Sec-Fetch-Dest": "document",
        "Referer": "https://webmail.example/",
    }
    second_tab = await review.http.get(review.path, headers=webmail_click)
    assert second_tab.status_code == 200
    assert "set-cookie" not in second_tab.headers
    assert review.http.cookies["rt_csrf"] == cookie
    section_id = review.section("4").id
    sent = await review.http.post(
        review.path + "/comments",
        data={
            "csrf_token": csrf_of(first_tab),
            "submission_id": comment_submission_of(first_tab, section_id),
            "section_id": str(section_id),
            "body": "Typed in the first tab.",
        },
    )
    assert sent.status_code == 303, sent.text
    assert csrf_of(second_tab) == csrf_of(first_tab)


# ----------------------------------------------------------------------------------------- sign-off


async def test_sign_off_records_a_receipt_with_the_section_hashes(review: Review) -> None:
    await review.add_comment("4", "Please add a target date.", paragraph="4.1")
    response = await review.sign_off(
        "approve_with_comments", statement="Subject to our comment on 4.1.", signer_title="Secretary General"
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == review.path + "?done=signed#receipt"

    page = await review.http.get(response.headers["location"])
    text = page_text(page)
    assert "The sign-off was recorded." in element(page.text, "receipt")  # where the page jumps to
    assert text.count("The sign-off was recorded.") == 1
    assert 'id="sign-off-form"' not in page.text
    assert "Arben Hoxha, Secretary General" in text
    assert "Approve with comments" in text
    assert "Subject to our comment on 4.1." in text
    assert "migration.fp@ministry-of-interior.gov.example" in text
    assert "Status signed off" in text
    assigned = [review.section(number) for number in SECTIONS]
    for section in assigned:
        assert f'<code class="hash-full">{section.sha256}</code>' in page.text
    assert "Save comment" not in page.text  # no more comment forms

    (sign_off,) = await _all(review.db, SignOff)
    assert sign_off.signer_name == "Arben Hoxha"
    assert sign_off.signer_title == "Secretary General"
    assert str(sign_off.decision) == "approve_with_comments"
    assert sign_off.sections == [
        {"number": s.number, "heading": s.heading, "sha256": s.sha256} for s in assigned
    ]
    assert sign_off.link_id == review.link.id
    assert sign_off.ip == "203.0.113.7"
    assert sign_off.user_agent == BROWSER_HEADERS["User-Agent"]
    async with review.db.session() as session:
        task = await session.get(ReviewTask, review.task_id)
    assert task is not None
    assert task.status == TaskStatus.signed_off
    assert str(task.decision) == "approve_with_comments"
    assert task.completed_at == sign_off.signed_at

    (event,) = await events(review.db, "signoff.recorded")
    assert event.seq == sign_off.audit_seq
    assert event.at == sign_off.signed_at
    data = event.data
    assert data["link_id"] == review.link.id
    assert data["ip"] == "203.0.113.7"
    assert data["user_agent"] == BROWSER_HEADERS["User-Agent"]
    assert [item["sha256"] for item in data["sections"]] == [section.sha256 for section in assigned]
    assert (data["decision"], data["signer_name"], data["signer_title"]) == (
        "approve_with_comments",
        "Arben Hoxha",
        "Secretary General",
    )
    assert data["statement"] == "Subject to our comment on 4.1."
    assert data["comments"] == 1
    assert review.token not in repr(data)
    assert f"event #{event.seq}" in text


async def test_a_double_submitted_sign_off_records_one(review: Review) -> None:
    page = await review.page()
    form = {
        "csrf_token": csrf_of(page),
        "submission_id": submission_of(page),
        "decision": "approve",
        "statement": "",
        "signer_name": "Arben Hoxha",
        "signer_title": "Director of Policy",
        "authorised": "yes",
    }
    # A double click, and a few more impatient clicks on top: all at once.
    responses = await asyncio.gather(
        *(review.http.post(review.path + "/sign-off", data=form) for _ in range(4))
    )
    assert [response.status_code for response in responses] == [303] * 4, [r.text[-300:] for r in responses]
    assert {response.headers["location"] for response in responses} == {review.path + "?done=signed#receipt"}
    assert await count(review.db, SignOff) == 1
    assert len(await events(review.db, "signoff.recorded")) == 1
    # And once more, after the fact: still one, still a success.
    third = await review.http.post(review.path + "/sign-off", data=form)
    assert third.status_code == 303, third.text
    assert await count(review.db, SignOff) == 1
    assert len(await events(review.db, "signoff.recorded")) == 1


async def test_two_sign_offs_held_at_the_same_point_record_one(review: Review) -> None:
    """Both submissions are made to wait at the audit chain (the last lock a sign-off takes) and then
    released together: only the lock on the task row, taken first, keeps the second from signing too."""
    page = await review.page()
    form = {
        "csrf_token": csrf_of(page),
        "submission_id": submission_of(page),
        "decision": "approve",
        "signer_name": "Arben Hoxha",
        "signer_title": "Director of Policy",
        "authorised": "yes",
    }
    async with review.db.write_session() as blocker:
        await blocker.exec(select(AuditChainHead).with_for_update())
        posts = [
            asyncio.create_task(review.http.post(review.path + "/sign-off", data=form)) for _ in range(2)
        ]
        await asyncio.sleep(0.5)
        assert not any(post.done() for post in posts)
        await blocker.rollback()
    responses = await asyncio.gather(*posts)
    assert [response.status_code for response in responses] == [303, 303], [r.text[-300:] for r in responses]
    assert await count(review.db, SignOff) == 1
    assert len(await events(review.db, "signoff.recorded")) == 1


async def test_a_second_sign_off_is_refused(review: Review) -> None:
    # The alternate opened the page before the focal point signed off, and signs as well.
    alternate_path = "/t/" + review.token_of("ministry-of-interior", 1)
    page = await review.page(alternate_path)
    assert (await review.sign_off("approve")).status_code == 303
    before = await snapshot(review.db)
    assert 'id="receipt"' in (await review.page(alternate_path)).text
    response = await review.http.post(
        alternate_path + "/sign-off",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": "another-submission-1234",
            "decision": "object",
            "statement": "We object.",
            "signer_name": "Someone Else",
            "signer_title": "Deputy",
            "authorised": "yes",
        },
    )
    assert response.status_code == 409, response.text
    text = page_text(response)
    assert "already signed off" in text
    assert "Arben Hoxha" in text
    assert "We object." in response.text  # what they typed is shown back, not silently dropped
    assert await snapshot(review.db) == before


@pytest.mark.parametrize(
    ("decision", "extra", "message"),
    [
        ("approve_with_comments", {}, "needs at least one comment"),
        ("object", {"statement": "   "}, "an objection needs a statement"),
        ("", {}, "Decision: choose one of"),
        ("maybe", {}, "Decision: choose one of"),
        ("approve", {"signer_name": ""}, "Your full name: this is required"),
        ("approve", {"signer_title": "x"}, "Your title or position: give at least 2 characters"),
        ("approve", {"submission_id": ""}, "the form is incomplete or comes from an old copy of this page"),
    ],
)
async def test_a_bad_sign_off_is_refused_and_nothing_is_stored(
    review: Review, decision: str, extra: dict[str, str], message: str
) -> None:
    before = await snapshot(review.db)
    response = await review.sign_off(decision, **extra)
    assert response.status_code == 422, response.text
    text = page_text(response)
    assert "Not recorded." in text
    assert message in text
    assert 'id="sign-off-form"' in response.text  # the form is there again, to correct
    # The message is right above the form it is about, where the form's action (#form-error) leads.
    assert_error_above(response, "sign-off", 'id="sign-off-form"', message)
    assert "Director of Policy" in response.text or "signer_title" in extra
    assert await snapshot(review.db) == before


async def test_an_objection_needs_an_active_objection_among_the_comments_and_lists_them(
    review: Review,
) -> None:
    await review.add_comment("4", "Withdrawn later.", weight="objection")
    (comment,) = await comments_of(review.db, review.task_id)
    await review.post(f"/comments/{comment.id}/withdraw", {})
    refused = await review.sign_off("approve_with_comments")
    assert refused.status_code == 422  # a withdrawn comment does not count
    statement = "Section 4 conflicts with the Law on Foreigners."
    refused = await review.sign_off("object", statement=statement)
    assert refused.status_code == 422  # the withdrawn objection does not count either
    assert "marked as an objection" in page_text(refused)
    await review.add_comment("4", "Only a remark.")
    assert (await review.sign_off("object", statement=statement)).status_code == 422
    await review.add_comment("4", "Article 12 contradicts the Law on Foreigners.", weight="objection")
    objection = [c for c in await comments_of(review.db, review.task_id) if c.weight == "objection"][-1]
    signed = await review.sign_off("object", statement=statement)
    assert signed.status_code == 303
    (event,) = await events(review.db, "signoff.recorded")
    assert event.data["statement"] == statement
    assert event.data["objections"] == [objection.id]


async def test_after_sign_off_comments_are_refused(review: Review) -> None:
    await review.add_comment("4", "Before sign-off.")
    (comment,) = await comments_of(review.db, review.task_id)
    page = await review.page()
    token = csrf_of(page)
    assert (await review.sign_off("approve_with_comments")).status_code == 303
    before = await snapshot(review.db)
    section_id = str(review.section("4").id)
    for suffix, data in [
        ("/comments", {"submission_id": new_submission(), "section_id": section_id, "body": "Too late now."}),
        (f"/comments/{comment.id}/edit", {"body": "Changed after signing."}),
        (f"/comments/{comment.id}/withdraw", {}),
    ]:
        response = await review.http.post(review.path + suffix, data={"csrf_token": token, **data})
        assert response.status_code == 409, (suffix, response.text)
        assert "already signed off" in page_text(response)
    assert await snapshot(review.db) == before


# ------------------------------------------------------------------------- where the page answers


async def test_a_refused_second_sign_off_says_so_above_the_receipt(review: Review) -> None:
    alternate_path = "/t/" + review.token_of("ministry-of-interior", 1)
    page = await review.page(alternate_path)
    assert (await review.sign_off("approve")).status_code == 303
    response = await review.http.post(
        alternate_path + "/sign-off",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": new_submission(),
            "decision": "object",
            "statement": "We object to section 4.",
            "signer_name": "Someone Else",
            "signer_title": "Deputy",
            "authorised": "yes",
        },
    )
    assert response.status_code == 409
    # The form is gone (the receipt is there instead): the message and the typed statement, to copy,
    # are in the sign-off section, above the receipt.
    assert_error_above(response, "sign-off", 'id="receipt"', "already signed off")
    assert "We object to section 4." in element(element(response.text, "sign-off"), "form-error")


async def test_a_refused_request_for_more_time_is_answered_above_its_form(review: Review) -> None:
    page = await review.page()
    before = await snapshot(review.db)
    response = await review.http.post(
        review.path + "/extension-request",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": new_submission(),
            "wanted_deadline": "2020-01-10T17:00",
            "reason": "Our legal department needs two more weeks.",
        },
    )
    assert response.status_code == 422, response.text
    assert_error_above(
        response, "more-time", 'id="extension-form"', "Ask for a date after your current deadline."
    )
    assert "Our legal department needs two more weeks." in element(response.text, "extension-form")
    assert await snapshot(review.db) == before


async def test_a_request_for_more_time_is_confirmed_where_it_was_made(review: Review) -> None:
    page = await review.page()
    wanted = (await _deadline(review.db, review.built.round_id)) + timedelta(days=7)
    response = await review.http.post(
        review.path + "/extension-request",
        data={
            "csrf_token": csrf_of(page),
            "submission_id": new_submission(),
            "wanted_deadline": wanted.astimezone(ZoneInfo("Europe/Tirane")).strftime("%Y-%m-%dT%H:%M"),
            "reason": "Our legal department needs two more weeks.",
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == review.path + "?done=time-asked#more-time"
    answered = await review.http.get(response.headers["location"])
    assert "Your request for more time was sent" in element(answered.text, "more-time")
    assert page_text(answered).count("Your request for more time was sent") == 1


async def test_a_refused_handover_is_answered_above_its_form_and_a_handover_confirmed_there(
    review: Review,
) -> None:
    page = await review.page()
    form = {
        "csrf_token": csrf_of(page),
        "colleague_name": "Drita Kola",
        "colleague_email": review.link.email,  # already has a link to this task
        "note": "Please take this over.",
    }
    refused = await review.http.post(review.path + "/handover", data=form)
    assert refused.status_code == 409, refused.text
    assert_error_above(refused, "hand-over", 'name="colleague_name"', "already has a link to this task")
    assert 'value="Drita Kola"' in element(refused.text, "hand-over")  # what was typed is back

    done = await review.http.post(
        review.path + "/handover",
        data={**form, "colleague_email": "drita.kola@ministry-of-interior.gov.example"},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == review.path + "?done=handed-over#hand-over"
    answered = await review.http.get(done.headers["location"])
    assert "Your colleague has been sent a link of their own." in element(answered.text, "hand-over")


async def test_a_refused_withdrawal_is_answered_in_the_comment(review: Review) -> None:
    await review.add_comment("4", "Withdrawn twice.")
    (comment,) = await comments_of(review.db, review.task_id)
    assert (await review.post(f"/comments/{comment.id}/withdraw", {})).status_code == 303
    twice = await review.post(f"/comments/{comment.id}/withdraw", {})
    assert twice.status_code == 409
    assert_error_above(twice, f"comment-{comment.id}", "Withdrawn twice.", "withdrawn")


# ------------------------------------------------------------------------------- deadline and close


async def test_after_the_deadline_the_page_says_so_and_refuses_writes(review: Review) -> None:
    await review.add_comment("4", "Made in time.")
    (comment,) = await comments_of(review.db, review.task_id)
    page = await review.page()
    token, submission = csrf_of(page), submission_of(page)
    await set_deadline(review.db, review.built.round_id, datetime.now(UTC) - timedelta(minutes=1))

    page = await review.page()
    text = page_text(page)
    assert "deadline" in text.lower()
    assert "has passed" in text
    assert "Status deadline passed" in text
    assert "Made in time." in text  # what was recorded stays visible
    assert "Save comment" not in page.text
    assert 'id="sign-off-form"' not in page.text
    before = await snapshot(review.db)
    for suffix, data in [
        (
            "/comments",
            {
                "submission_id": new_submission(),
                "section_id": str(review.section("4").id),
                "body": "Late comment.",
            },
        ),
        (f"/comments/{comment.id}/edit", {"body": "Late edit."}),
        (f"/comments/{comment.id}/withdraw", {}),
        (
            "/sign-off",
            {
                "submission_id": submission,
                "decision": "approve",
                "signer_name": "Arben Hoxha",
                "signer_title": "Director",
                "authorised": "yes",
            },
        ),
    ]:
        response = await review.http.post(review.path + suffix, data={"csrf_token": token, **data})
        assert response.status_code == 409, (suffix, response.text)
        assert "deadline" in page_text(response)
        assert "has passed" in page_text(response)
    late = await review.http.post(
        review.path + "/comments",
        data={
            "csrf_token": token,
            "submission_id": new_submission(),
            "section_id": str(review.section("4").id),
            "body": "My late words.",
        },
    )
    assert "My late words." in late.text  # shown back so that it can be sent another way
    assert await snapshot(review.db) == before


async def test_a_round_created_with_a_near_deadline_closes_to_writes(
    db: Database, settings: Settings
) -> None:
    # Far enough for the page to be read before it on a loaded machine, near enough to wait for.
    built = await build_round(db, settings, deadline=datetime.now(UTC) + timedelta(seconds=6))
    http, _ = await open_client(settings, db)
    async with http:
        path = "/t/" + built.tokens["ministry-of-interior"][0]
        page = await http.get(path)
        assert "Status open" in page_text(page)
        await asyncio.sleep(
            max(0.0, (await _deadline(db, built.round_id) - datetime.now(UTC)).total_seconds()) + 0.1
        )
        response = await http.post(
            path + "/sign-off",
            data={
                "csrf_token": csrf_of(page),
                "submission_id": submission_of(page),
                "decision": "approve",
                "signer_name": "Arben Hoxha",
                "signer_title": "Director",
                "authorised": "yes",
            },
        )
        assert response.status_code == 409
        assert "has passed" in page_text(response)
    assert await count(db, SignOff) == 0


async def test_after_the_round_is_closed_the_page_says_so_and_refuses_writes(review: Review) -> None:
    page = await review.page()
    token, submission = csrf_of(page), submission_of(page)
    async with review.db.write_session() as session:
        assert await scheduling.close_round(
            session,
            round_id=review.built.round_id,
            now=datetime.now(UTC),
            settings=review.settings,
            note="the committee meets tomorrow",
        )
    page = await review.page()
    text = page_text(page)
    assert "round is closed" in text
    assert "Status closed" in text
    assert 'id="sign-off-form"' not in page.text
    assert "No sign-off was recorded" in text
    before = await snapshot(review.db)
    for suffix, data in [
        (
            "/comments",
            {
                "submission_id": new_submission(),
                "section_id": str(review.section("4").id),
                "body": "After close.",
            },
        ),
        (
            "/sign-off",
            {
                "submission_id": submission,
                "decision": "approve",
                "signer_name": "Arben Hoxha",
                "signer_title": "Director",
                "authorised": "yes",
            },
        ),
    ]:
        response = await review.http.post(review.path + suffix, data={"csrf_token": token, **data})
        assert response.status_code == 409, (suffix, response.text)
        assert "round is closed" in page_text(response)
    assert await snapshot(review.db) == before


# ------------------------------------------------------------------------------------- bad links


@pytest.mark.parametrize(
    "token",
    [
        "unknown-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x",
        "A" * 5000,
        "%00",
        "%FF%FE",
        "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AE%F0%9F%98%80",
        "'%20OR%201=1--",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ],
)
async def test_an_unknown_or_weird_token_gets_a_clear_404(review: Review, token: str) -> None:
    before = await snapshot(review.db)
    for client_headers in (BROWSER_HEADERS, {"Accept": "*/*"}):
        response = await review.http.get(f"/t/{token}", headers=client_headers)
        assert response.status_code == 404, response.text
        assert "text/html" in response.headers["content-type"]
        assert "This review link is not valid" in page_text(response)
        assert "<script>alert" not in response.text
    posted = await review.http.post(
        f"/t/{token}/comments", data={"csrf_token": "x", "section_id": "1", "body": "b"}
    )
    assert posted.status_code in (403, 404)
    assert await snapshot(review.db) == before


async def test_a_revoked_link_is_refused(review: Review) -> None:
    async with review.db.write_session() as session:
        await session.exec(
            update(AccessLink)
            .where(col(AccessLink.id) == review.link.id)
            .values(revoked_at=datetime.now(UTC))
        )
        await session.commit()
    response = await review.http.get(review.path)
    assert response.status_code == 410
    assert "This review link no longer works" in page_text(response)
    assert 'action="/links/lost#form-error"' in response.text  # the lost-link form, on the page itself


async def test_no_raw_token_is_stored_anywhere(review: Review) -> None:
    await review.add_comment("4", "A comment.", paragraph="4.2")
    await review.sign_off("approve_with_comments")
    tokens = [token for group in review.built.tokens.values() for token in group]
    assert len(tokens) == 4
    assert review.token in tokens
    found: list[tuple[str, str]] = []
    async with review.db.engine.connect() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await session.execute(select_table(table))).all():
                dumped = repr(tuple(row))
                found.extend((table.name, token[:8]) for token in tokens if token in dumped)
        # The tables a token could end up in, as text, explicitly.
        for name in ("access_links", "link_tokens", "audit_events", "outbox"):
            for row in (await session.execute(text(f"SELECT * FROM {name}"))).all():
                dumped = " ".join(str(value) for value in row)
                found.extend((name, token[:8]) for token in tokens if token in dumped)
    assert found == []


# ---------------------------------------------------------------------------------------- helpers


async def _round(review: Review) -> Round:
    async with review.db.session() as session:
        found = await session.get(Round, review.built.round_id)
    assert found is not None
    return found


async def _deadline(db: Database, round_id: int) -> datetime:
    async with db.session() as session:
        found = await session.get(Round, round_id)
    assert found is not None
    return found.deadline


async def _all(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.exec(select(model))).all())


async def test_only_the_sign_off_that_leaves_nothing_to_sign_wakes_the_scheduler(
    db: Database, settings: Settings
) -> None:
    built = await build_round(db, settings)
    http, scheduler = await open_client(settings, db)
    async with http:
        for count, key in enumerate(KEYS, start=1):
            path = "/t/" + built.tokens[key][0]
            page = await http.get(path)
            signed = await http.post(
                path + "/sign-off",
                data={
                    "csrf_token": csrf_of(page),
                    "submission_id": submission_of(page),
                    "decision": "approve",
                    "signer_name": "Arben Hoxha",
                    "signer_title": "Director",
                    "authorised": "yes",
                },
            )
            assert signed.status_code == 303, signed.text
            # The round closes when the last organisation signs; until then nobody needs waking.
            assert scheduler.woken == ([built.round_id] if count == len(KEYS) else [])


async def test_a_sign_off_racing_the_close_never_both_win(db: Database, settings: Settings) -> None:
    """The scheduler closes the round (its clock says the deadline passed) while the focal point signs:
    either the sign-off is recorded and counted, or it is refused; never recorded and then ignored."""
    built = await build_round(db, settings, keys=["ministry-of-interior"])
    http, _ = await open_client(settings, db)
    async with http:
        path = "/t/" + built.tokens["ministry-of-interior"][0]
        page = await http.get(path)
        form = {
            "csrf_token": csrf_of(page),
            "submission_id": submission_of(page),
            "decision": "approve",
            "signer_name": "Arben Hoxha",
            "signer_title": "Director",
            "authorised": "yes",
        }
        deadline = await _deadline(db, built.round_id)

        async def close() -> bool:
            async with db.write_session() as session:
                return await scheduling.close_round(
                    session, round_id=built.round_id, now=deadline + timedelta(seconds=1), settings=settings
                )

        signed, closed = await asyncio.gather(http.post(path + "/sign-off", data=form), close())
        if not closed:
            # The close came first and found the task unsettled (the request's rate limit was read
            # before the sign-off began); the sign-off then went through, and the next close counts it.
            assert signed.status_code == 303, signed.text
            closed = await close()
    assert closed is True
    async with db.session() as session:
        task = await session.get(ReviewTask, built.tasks["ministry-of-interior"])
        round_ = await session.get(Round, built.round_id)
    sign_offs = await count(db, SignOff)
    assert task is not None
    assert round_ is not None
    assert round_.status == "closed"
    if signed.status_code == 303:
        assert (sign_offs, task.status, round_.close_reason) == (1, TaskStatus.signed_off, "all_signed_off")
    else:
        assert signed.status_code == 409
        assert "round is closed" in page_text(signed)
        assert (sign_offs, task.status, round_.close_reason) == (0, TaskStatus.no_response, "deadline")
    closing = (await events(db, "round.closed"))[0]
    assert closing.data["tasks"] == {str(task.status): 1}


async def test_review_tokens_never_reach_the_logs(review: Review, caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn writes every request line to its access log; the app's filter takes the token out."""
    caplog.set_level(logging.INFO)
    access = logging.getLogger("uvicorn.access")
    access.info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.7:50123", "GET", f"{review.path}?done=signed", "1.1", 200
    )
    access.info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.7:50123", "POST", f"{review.path}/comments/4/edit", "1.1", 303
    )
    await review.add_comment("4", "A comment.")
    await review.http.get("/t/" + "Q" * 43)
    # What the service logs (the test's own HTTP client, httpx, logs its URLs: not the service's).
    logged = "\n".join(
        record.getMessage() for record in caplog.records if not record.name.startswith("httpx")
    )
    assert review.token not in logged
    assert "/t/<token>?done=signed" in logged
    assert "/t/<token>/comments/4/edit" in logged
