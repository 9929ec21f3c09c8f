"""Every console page and the review page, in Chromium: no serious or critical accessibility violation
(axe-core), no sideways scrolling of the page at 390 px, and the writing actions work without JavaScript.

A round of four organisations is built through the services and launched; two focal points comment
(one objection), one signs off; the app is served over HTTP by uvicorn. No Temporal: the scheduler's
wake-ups are recorded (the pages must not depend on them). SQLite only: this is about the pages.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect
from sqlmodel import col, select

from models.enums import CommentKind, CommentWeight, Decision
from models.reviews import Comment, CommentCreate, SignOff, SignOffCreate
from models.rounds import ReviewTask, Round
from services import comments, reviews
from services.db import Database
from services.links import ClientInfo
from services.settings import Settings
from services.web.app import create_app
from tests.e2e.helpers import (
    COORDINATOR,
    PageProblems,
    axe_problems,
    browser_context,
    create_login,
    open_details,
    phone_problems,
    save_screenshot,
    set_language_cookie,
    sign_in,
)
from tests.harness import SIGNING_SETTINGS, ServedApp, fixture_path
from tests.web.test_review_page import BuiltRound, RecordingScheduler, build_round

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

ZONE = "Europe/Tirane"
KEYS = ["ministry-of-interior", "ministry-of-finance", "municipality-tirane", "people-s-advocate"]
SECTIONS = ["1", "4", "Annex 1"]
CLIENT = ClientInfo(ip="198.51.100.7", user_agent="accessibility test")


@dataclass
class Site:
    url: str
    db: Database
    built: BuiltRound
    round_id: int


async def _comment(
    db: Database, built: BuiltRound, key: str, number: str, body: str, weight: CommentWeight
) -> None:
    section = next(section for section in built.sections if section.number == number)
    async with db.write_session() as session:
        await comments.add_comment(
            session,
            token=built.tokens[key][0],
            data=CommentCreate(
                section_id=section.id or 0,
                kind=CommentKind.substantive,
                weight=weight,
                body=body,
                proposed_wording="…with the regional employment offices.",
                submission_id=uuid.uuid4().hex,
            ),
            client=CLIENT,
        )


@pytest.fixture
async def site(db: Database, settings: Settings) -> AsyncIterator[Site]:
    settings = settings.model_copy(update={"timezone": ZONE})
    await create_login(db, COORDINATOR)
    built = await build_round(db, settings, keys=KEYS, section_numbers=SECTIONS)
    await _comment(
        db,
        built,
        "ministry-of-finance",
        "4",
        "The costing of the labour-migration measures is missing.",
        CommentWeight.objection,
    )
    await _comment(
        db,
        built,
        "ministry-of-finance",
        "1",
        "Name the ministry that leads the monitoring.",
        CommentWeight.proposal,
    )
    await _comment(
        db,
        built,
        "municipality-tirane",
        "4",
        "Municipalities need a role in the reintegration services.",
        CommentWeight.remark,
    )
    async with db.write_session() as session:
        await reviews.sign_off(
            session,
            token=built.tokens["municipality-tirane"][0],
            data=SignOffCreate(
                decision=Decision.approve_with_comments,
                statement="Approved, subject to our comment on section 4.",
                signer_name="Erion Veliaj",
                signer_title="Mayor",
                submission_id=uuid.uuid4().hex,
                authorised=True,
            ),
            client=CLIENT,
            settings=SIGNING_SETTINGS,
        )
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    settings.public_base_url = served.url
    async with served:
        yield Site(url=served.url, db=db, built=built, round_id=built.round_id)


def console_pages(round_id: int) -> list[tuple[str, str]]:
    """(name, path) of every console page a coordinator reads, signed in."""
    return [
        ("console-rounds", "/console"),
        ("console-new-round", "/console/rounds/new"),
        ("console-round", f"/console/rounds/{round_id}"),
        ("console-comments", f"/console/rounds/{round_id}/comments"),
        ("console-report", f"/console/rounds/{round_id}/report"),
        ("console-organisations", "/console/organisations"),
        ("console-documents", "/console/documents"),
        ("console-audit", "/console/audit"),
    ]


async def _check(page: Page, name: str, path: str, base_url: str, problems: list[str]) -> None:
    """Open the page and check it: found, accessible, fits a phone. Problems are collected, not raised,
    so that one run lists every page's."""
    response = await page.goto(f"{base_url}{path}")
    status = response.status if response else None
    if status != 200:
        problems.append(f"{name} ({path}): answered {status}, not 200")
        return
    await _check_here(page, name, problems)


async def _check_here(page: Page, name: str, problems: list[str]) -> None:
    problems.extend(await axe_problems(page, name))
    problems.extend(await phone_problems(page, name))
    await page.set_viewport_size({"width": 390, "height": 844})
    await save_screenshot(page, f"phone-{name}")
    await page.set_viewport_size({"width": 1280, "height": 900})


async def test_every_page_is_accessible_and_fits_a_phone(shared_chromium: Browser, site: Site) -> None:
    problems: list[str] = []
    watcher = PageProblems()
    async with browser_context(shared_chromium) as context:
        page = watcher.watch(await context.new_page())
        await _check(page, "console-login", "/console/login", site.url, problems)
        await sign_in(page, site.url)
        for name, path in console_pages(site.round_id):
            await _check(page, name, path, site.url, problems)

        # The registry import's preview: the fixture registry chosen, before anything is imported.
        await page.goto(f"{site.url}/console/organisations")
        await open_details(page.locator("details:has(input[type=file])"))
        upload = page.locator("form:has(input[type=file])").first
        await upload.locator("input[type=file]").set_input_files(
            str(fixture_path("stakeholders-albania.csv"))
        )
        await upload.get_by_role("button", name="Preview the import").click()
        await expect(page.get_by_role("heading", name="Check the import")).to_be_visible()
        await expect(page.get_by_role("button", name="Confirm the import")).to_be_visible()
        await _check_here(page, "console-import-preview", problems)

    # The review page, in each language, as a focal point who did not sign off yet sees it.
    token = site.built.tokens["ministry-of-interior"][0]
    for lang in ("sq", "en"):
        async with browser_context(shared_chromium) as context:
            await set_language_cookie(context, site.url, lang)
            page = watcher.watch(await context.new_page())
            await _check(page, f"review-{lang}", f"/t/{token}", site.url, problems)
            await expect(page.locator("html")).to_have_attribute("lang", lang)
    assert not problems, "\n".join(problems)
    assert watcher.seen == []


async def test_without_javascript_a_focal_point_comments_and_signs_off(
    shared_chromium: Browser, site: Site
) -> None:
    """Plain HTML forms: the comment is saved and shown, the sign-off recorded and its receipt shown."""
    token = site.built.tokens["ministry-of-interior"][0]
    section = next(section for section in site.built.sections if section.number == "4")
    async with browser_context(shared_chromium, java_script=False) as context:
        await set_language_cookie(context, site.url, "en")
        page = await context.new_page()
        await page.goto(f"{site.url}/t/{token}")
        add = page.locator(f"#s-{section.id} details.add-comment")
        await add.locator("summary").click()
        await add.locator("select[name=paragraph]").select_option("4.2")
        await add.locator("select[name=kind]").select_option("substantive")
        await add.locator("select[name=weight]").select_option("objection")
        await add.locator("textarea[name=body]").fill("Without a script: the list needs the unions' view.")
        await add.get_by_role("button", name="Save comment").click()
        await expect(page.get_by_role("status")).to_contain_text("Your comment was saved.")
        await expect(page.locator("article.comment")).to_contain_text("the list needs the unions' view")

        form = page.locator("#sign-off-form")
        await form.locator("input[value=object]").check()
        await form.locator("textarea[name=statement]").fill("We object until the list is agreed.")
        await form.locator("input[name=signer_name]").fill("Arben Hoxha")
        await form.locator("input[name=signer_title]").fill("Director of Migration Policy")
        await form.locator("input[name=authorised]").check()
        await form.locator("button[type=submit]").click()
        await page.wait_for_url(re.compile(r"done=signed"))
        receipt = page.locator("#receipt")
        await expect(receipt).to_contain_text("Arben Hoxha, Director of Migration Policy")
        await expect(receipt).to_contain_text("Object")
        await save_screenshot(page, "nojs-review-signed-off")

    async with site.db.session() as session:
        task_id = site.built.tasks["ministry-of-interior"]
        recorded = (await session.exec(select(Comment).where(Comment.task_id == task_id))).all()
        sign_offs = (await session.exec(select(SignOff).where(SignOff.task_id == task_id))).all()
    assert [(comment.paragraph, str(comment.weight)) for comment in recorded] == [("4.2", "objection")]
    assert [str(sign_off.decision) for sign_off in sign_offs] == ["object"]


async def test_without_javascript_the_coordinator_extends_the_deadline(
    shared_chromium: Browser, site: Site
) -> None:
    later = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=10)
    async with browser_context(shared_chromium, java_script=False) as context:
        page = await context.new_page()
        await sign_in(page, site.url)
        await page.goto(f"{site.url}/console/rounds/{site.round_id}")
        form = page.locator(f"form[action='/console/rounds/{site.round_id}/extend']").filter(
            has_not=page.locator("input[name=organisation_keys]")
        )
        await form.locator("input[name=deadline]").fill(f"{later.isoformat()}T17:00")
        await form.locator("input[name=reason]").fill("The ministries asked for the budget calendar.")
        await form.locator("button[type=submit]").click()
        await expect(page.get_by_role("status").first).to_contain_text("The deadline was extended")
        await expect(page.locator("main")).to_contain_text(f"{later.day} {later:%B} {later.year}, 17:00")
        await save_screenshot(page, "nojs-console-extended")

    async with site.db.session() as session:
        round_ = await session.get(Round, site.round_id)
        deadlines = dict(
            (
                await session.exec(
                    select(ReviewTask.id, ReviewTask.deadline).where(
                        col(ReviewTask.round_id) == site.round_id
                    )
                )
            ).all()
        )
    assert round_ is not None
    expected = datetime(later.year, later.month, later.day, 17, tzinfo=ZoneInfo(ZONE)).astimezone(UTC)
    assert round_.deadline == expected
    # Every organisation still to sign off has the new deadline (the one that signed off keeps its own).
    assert {deadlines[site.built.tasks[key]] for key in KEYS if key != "municipality-tirane"} == {expected}


async def test_without_javascript_the_coordinator_answers_a_comment(
    shared_chromium: Browser, site: Site
) -> None:
    """The comments page's answer form, posted plainly: the answer is shown with the comment."""
    async with site.db.session() as session:
        objection = (
            await session.exec(select(Comment).where(Comment.weight == CommentWeight.objection))
        ).one()
    async with browser_context(shared_chromium, java_script=False) as context:
        page = await context.new_page()
        await sign_in(page, site.url)
        response = await page.goto(f"{site.url}/console/rounds/{site.round_id}/comments")
        assert response is not None
        assert response.status == 200, "no comments page"
        card = page.locator(f"#comment-{objection.id}")
        await open_details(card.locator("details"))
        await card.locator("select[name=response]").select_option("partially_accepted")
        await card.locator("textarea[name=justification]").fill("The costing follows in the action plan.")
        await card.get_by_role("button", name="Save the answer as a draft").click()
        card = page.locator(f"#comment-{objection.id}")
        await expect(card.get_by_role("status")).to_be_visible()
        await expect(card).to_contain_text(
            re.compile(r"Part(ly|ially) accepted — The costing follows in the action plan\.")
        )
        await save_screenshot(page, "nojs-console-answered")
