"""A focal point's visit in a real browser: read, comment on a paragraph, edit, sign off by double-click.

Served over real HTTP by uvicorn; Chromium runs review.js. SQLite only: this is about the page.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import update
from sqlmodel import col, select

from models.audit import AuditEvent
from models.enums import TaskStatus
from models.organisations import Organisation
from models.reviews import Comment, SignOff
from models.rounds import ReviewTask
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.e2e.conftest import CHROMIUM
from tests.harness import ServedApp, eventually
from tests.web.test_review_page import SECTIONS, RecordingScheduler, build_round

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]
SCREENSHOTS = Path("/tmp")


async def test_a_focal_point_comments_edits_and_signs_off(
    chromium: Browser, db: Database, settings: Settings, backend: str
) -> None:
    started = time.monotonic()
    built = await build_round(db, settings)
    token = built.tokens["ministry-of-interior"][0]
    sections = {section.number: section for section in built.sections}
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    settings.public_base_url = served.url
    async with served:
        context = await chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Console errors, and every failed response of the page's own requests (the browser's own
        # /favicon.ico probe is neither: base.html declares no icon, see the report).
        page.on(
            "console",
            lambda message: (
                errors.append(message.text)
                if message.type == "error" and not message.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda response: (
                errors.append(f"{response.status} {response.url}") if response.status >= 400 else None
            ),
        )

        # The focal point opens the emailed link: in the organisation's language, Albanian. They switch
        # to English with the header's link (no script involved), and the pages stay English after.
        await page.goto(f"{served.url}/t/{token}")
        await expect(page.locator("html")).to_have_attribute("lang", "sq")
        await expect(page.locator("h1")).to_have_text("Migration strategy, round 1")
        await page.locator(".language-switch").get_by_role("link", name="English").click()
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await page.goto(f"{served.url}/t/{token}")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator(".facts")).to_contain_text("Ministry of Interior")
        intro = page.locator(".draft-intro")
        await expect(intro.locator("h2")).to_contain_text(
            "National Strategy on Migration Governance 2026–2030"
        )
        await expect(intro).to_contain_text("Version 0.9, prepared by the Technical Secretariat")
        await page.get_by_role("link", name="4. Labour migration").click()
        section = page.locator(f"#s-{sections['4'].id}")
        await expect(section.locator("h2")).to_have_text("4. Labour migration")
        await expect(section.locator("#p-4-2")).to_contain_text("labour shortage list")
        await page.screenshot(path=str(SCREENSHOTS / "roundtable-review-page.png"), full_page=True)

        # Clicking paragraph number 4.2 opens the section's comment form with 4.2 chosen.
        add_form = section.locator("details.add-comment")
        await expect(add_form).not_to_have_attribute("open", "")
        await section.locator("#p-4-2 .para-number").click()
        await expect(add_form).to_have_attribute("open", "")
        await expect(add_form.locator("select[name=paragraph]")).to_have_value("4.2")
        body = add_form.locator("textarea[name=body]")
        await expect(body).to_be_focused()
        await page.keyboard.type("The list should also be agreed with the regional employment offices.")
        await add_form.locator("select[name=kind]").select_option("substantive")
        await add_form.locator("textarea[name=proposed_wording]").fill(
            "…agreed with employers' organisations, trade unions and regional employment offices."
        )
        # An impatient double click: one comment (the script sends the form once, the server would
        # record a second submission of the same form once anyway).
        await add_form.get_by_role("button", name="Save comment").dblclick()

        await expect(page.get_by_role("status")).to_have_text("Your comment was saved.")
        comment = page.locator("article.comment")
        await expect(comment).to_have_count(1)
        await expect(comment).to_contain_text("regional employment offices.")
        await expect(comment).to_contain_text("¶ 4.2")
        await expect(comment.locator("blockquote.proposal")).to_contain_text("trade unions and regional")
        assert re.search(r"#comment-\d+$", page.url)

        # Edits it.
        await comment.locator("summary", has_text="Edit or withdraw").click()
        edit = comment.locator("form[action*='/edit#']")
        await expect(edit.locator("select[name=paragraph]")).to_have_value("4.2")
        await edit.locator("textarea[name=body]").fill(
            "Agree the list with the regional employment offices too."
        )
        await edit.get_by_role("button", name="Save changes").click()
        await expect(page.get_by_role("status")).to_have_text("Your comment was updated.")
        await expect(page.locator("article.comment")).to_contain_text("regional employment offices too.")
        await expect(page.locator("article.comment .comment-meta")).to_contain_text("edited")

        # Signs off, double-clicking the button.
        form = page.locator("#sign-off-form")
        await form.locator("input[value=approve_with_comments]").check()
        await form.locator("textarea[name=statement]").fill("Approved subject to our comment on 4.2.")
        await form.locator("input[name=signer_name]").fill("Arben Hoxha")
        await form.locator("input[name=signer_title]").fill("Director of Migration Policy")
        await form.locator("input[name=authorised]").check()
        await form.get_by_role("button", name="Sign off for the organisation").dblclick()

        await page.wait_for_url(re.compile(r"done=signed"))
        receipt = page.locator("#receipt")
        await expect(receipt).to_contain_text("Arben Hoxha, Director of Migration Policy")
        await expect(receipt).to_contain_text("Approve with comments")
        for number in SECTIONS:
            await expect(receipt.locator("code.hash-full", has_text=sections[number].sha256)).to_have_count(1)
        await expect(page.locator("#sign-off-form")).to_have_count(0)
        await expect(page.locator(".badge")).to_have_text("signed off")
        await page.screenshot(path=str(SCREENSHOTS / "roundtable-review-receipt.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{served.url}/t/{token}")
        await page.screenshot(path=str(SCREENSHOTS / "roundtable-review-phone.png"), full_page=False)
        await context.close()

    async with db.session() as session:
        sign_offs = (await session.exec(select(SignOff))).all()
        comments = (await session.exec(select(Comment))).all()
    assert len(sign_offs) == 1
    assert sign_offs[0].signer_title == "Director of Migration Policy"
    assert [(c.paragraph, c.revision, str(c.kind)) for c in comments] == [("4.2", 2, "substantive")]
    assert errors == []
    assert time.monotonic() - started < 30


async def test_opening_the_link_again_from_webmail_keeps_the_first_tab_working(
    chromium: Browser, db: Database, settings: Settings, backend: str
) -> None:
    """The focal point opens the link from webmail, starts typing, opens the link from webmail again in
    another tab (a cross-site navigation), then sends the comment from the first tab: it is recorded."""
    built = await build_round(db, settings)
    token = built.tokens["ministry-of-interior"][0]
    section_id = next(section.id for section in built.sections if section.number == "4")
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    async with served:
        context = await chromium.new_context()
        await context.add_cookies([{"name": "rt_lang", "value": "en", "url": served.url}])  # chose English
        webmail = "https://webmail.example/inbox"
        link = f'<a id="review" href="{served.url}/t/{token}" target="_blank" rel="noopener">Review</a>'
        await context.route(
            "https://webmail.example/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body=f"<!doctype html>{link}"),
        )
        inbox = await context.new_page()
        await inbox.goto(webmail)

        async with context.expect_page() as opened:
            await inbox.click("#review")
        first = await opened.value
        await first.wait_for_load_state()
        add_form = first.locator(f"#s-{section_id} details.add-comment")
        await add_form.locator("summary").click()
        await add_form.locator("textarea[name=body]").fill(
            "Typed in the first tab, sent after the second opened."
        )

        async with context.expect_page() as opened_again:
            await inbox.click("#review")
        second = await opened_again.value
        await second.wait_for_load_state()
        await expect(second.locator("h1")).to_have_text("Migration strategy, round 1")

        await add_form.get_by_role("button", name="Save comment").click()
        await expect(first.get_by_role("status")).to_have_text("Your comment was saved.")
        cookies = [cookie for cookie in await context.cookies() if cookie["name"] == "rt_csrf"]
        assert [cookie["sameSite"] for cookie in cookies] == ["Lax"]
        await context.close()

    async with db.session() as session:
        comments = (await session.exec(select(Comment))).all()
    assert [comment.body for comment in comments] == ["Typed in the first tab, sent after the second opened."]


async def test_a_browser_opening_the_link_marks_the_task_opened_and_a_plain_fetch_does_not(
    chromium: Browser, db: Database, settings: Settings, backend: str
) -> None:
    """A mail scanner fetches the link and runs no script: the task stays invited. The focal point's
    browser runs the page's script: the task is opened, once, however often the page is shown."""
    built = await build_round(db, settings)
    token = built.tokens["ministry-of-interior"][0]
    async with db.write_session() as session:
        await session.exec(
            update(ReviewTask)
            .where(col(ReviewTask.round_id) == built.round_id)
            .values(status=TaskStatus.invited)
        )
        await session.commit()
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    async with served:
        async with httpx.AsyncClient(base_url=served.url) as scanner:
            assert (await scanner.get(f"/t/{token}")).status_code == 200
            assert (await scanner.head(f"/t/{token}")).status_code in (200, 405)
        assert await _status_of_interior(db) == "invited"

        context = await chromium.new_context()
        page = await context.new_page()
        for _ in range(2):
            await page.goto(f"{served.url}/t/{token}")
            await expect(page.locator("h1")).to_have_text("Migration strategy, round 1")
            await eventually(lambda: _status_of_interior(db), lambda status: status == "opened", timeout=10)
        await context.close()

    async with db.session() as session:
        opened = (await session.exec(select(AuditEvent).where(AuditEvent.action == "task.opened"))).all()
    assert len(opened) == 1


async def _status_of_interior(db: Database) -> str:
    async with db.session() as session:
        statuses = {
            key: str(status)
            for key, status in await session.exec(
                select(Organisation.key, ReviewTask.status).join(
                    ReviewTask, col(ReviewTask.organisation_id) == Organisation.id
                )
            )
        }
    return statuses["ministry-of-interior"]


async def test_a_refused_sign_off_shows_its_message_in_view_above_the_form_in_albanian(
    chromium: Browser, db: Database, settings: Settings, backend: str
) -> None:
    """On a phone, in the organisation's Albanian: a sign-off the server refuses comes back with the
    browser at its message (the form's action ends in #form-error), right above the form, with what was
    typed; neither page has a serious or critical accessibility violation."""
    from axe_core_python.async_playwright import Axe

    built = await build_round(db, settings)
    token = built.tokens["ministry-of-interior"][0]
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    axe = Axe()
    async with served:
        context = await chromium.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        await page.goto(f"{served.url}/t/{token}")
        await expect(page.locator("html")).to_have_attribute("lang", "sq")
        form = page.locator("#sign-off-form")
        await form.locator("input[value=approve_with_comments]").check()
        await form.locator("input[name=signer_name]").fill("Arben Hoxha")
        await form.locator("input[name=signer_title]").fill("Drejtor i Politikave")
        await form.locator("input[name=authorised]").check()
        pages = [await axe.run(page)]
        await form.get_by_role("button", name="Jepni qëndrimin përfundimtar të institucionit").click()

        error = page.locator("#sign-off #form-error")
        await expect(error).to_contain_text("„Miratim me komente” kërkon të paktën një koment")
        await expect(error).to_be_in_viewport()
        # The refused form's page keeps its anchor; the token has left the address bar.
        assert page.url.endswith("#form-error")
        assert "/t/" not in page.url
        await expect(page.locator("#sign-off-form input[name=signer_title]")).to_have_value(
            "Drejtor i Politikave"
        )
        pages.append(await axe.run(page))
        await context.close()
    for result in pages:
        serious = [
            (violation["id"], [node["target"] for node in violation["nodes"]])
            for violation in result["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == []
