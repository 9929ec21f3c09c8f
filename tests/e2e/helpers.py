"""What the browser tests share: a live app, the console's sign-in, and the checks every page must pass.

- `assert_accessible`: axe-core in the page; no violation of impact serious or critical.
- `assert_fits_phone`: at 390 px wide the document does not scroll sideways (a table may scroll inside
  its own wrapper).
- `save_screenshot`: a full-page PNG under tests/artifacts/, for a person to look at.
- `PageProblems`: script errors and 5xx answers seen by a page; a test ends by asserting there were none.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, Response, ViewportSize, expect

from models.enums import Role
from models.users import UserCreate
from services import users
from services.db import Database
from tests.harness import TEST_ACTOR

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SHARED_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
SERIOUS = ("serious", "critical")
PASSWORD = "correct horse battery staple"
COORDINATOR = "secretariat@interior.gov.example"


def shared_fixture(name: str) -> Path:
    """One of the team's shared fixtures (../shared/fixtures next to the repository); skips the test,
    saying why, when it is not there (a clone on its own)."""
    path = SHARED_FIXTURES / name
    if not path.is_file():
        pytest.skip(f"the shared fixture {path} is not there: these tests read the team's shared fixtures")
    return path


async def create_login(db: Database, email: str, role: Role = Role.coordinator) -> dict[str, str]:
    """An account that signs in to the console with PASSWORD; returns its API token's header."""
    async with db.write_session() as session:
        _user, token = await users.create_user(
            session, data=UserCreate(email=email, role=role, password=PASSWORD), actor=TEST_ACTOR
        )
    return {"Authorization": f"Bearer {token}"}


async def sign_in(page: Page, base_url: str, email: str = COORDINATOR, password: str = PASSWORD) -> None:
    """Through the console's sign-in form, as a person does; ends on the rounds list."""
    await page.goto(f"{base_url}/console/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/console/?(\?.*)?$"))


def save_name(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")


async def save_screenshot(page: Page, name: str) -> Path:
    """The whole page as tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{save_name(name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def serious_violations(results: dict[str, Any]) -> list[str]:
    """axe-core's serious and critical violations, one line each: rule, help, the first nodes."""
    found = []
    for violation in results.get("violations", []):
        if violation.get("impact") not in SERIOUS:
            continue
        targets = [node.get("target") for node in violation.get("nodes", [])[:3]]
        more = len(violation.get("nodes", [])) - len(targets)
        found.append(
            f"{violation['impact']} {violation['id']}: {violation.get('help', '')} "
            f"at {targets}{f' and {more} more' if more > 0 else ''}"
        )
    return found


_axe: Any = None


_WITHOUT_SCRIPTS: set[int] = set()
"""The browser contexts made with JavaScript off (by id): axe-core cannot run in them (it is a script)."""


async def axe_problems(page: Page, where: str) -> list[str]:
    """axe-core's serious and critical violations on the page as shown. A page of a context without
    JavaScript is checked as a copy of its document in a context with it (its own scripts do not run)."""
    global _axe
    if _axe is None:
        from axe_core_python.async_playwright import Axe

        _axe = Axe()
    if id(page.context) not in _WITHOUT_SCRIPTS:
        return [f"{where}: {line}" for line in serious_violations(await _axe.run(page))]
    browser = page.context.browser
    assert browser is not None
    document = await page.content()
    copy_context = await browser.new_context(viewport=page.viewport_size or DESKTOP)
    try:
        copy = await copy_context.new_page()
        await copy.route("**/*.js", lambda route: route.abort())
        await copy.goto(page.url if page.url.startswith("http") else "about:blank")
        await copy.set_content(document)
        return [f"{where}: {line}" for line in serious_violations(await _axe.run(copy))]
    finally:
        await copy_context.close()


async def assert_accessible(page: Page, where: str) -> None:
    problems = await axe_problems(page, where)
    assert not problems, "axe-core found serious or critical violations:\n" + "\n".join(problems)


_WIDEST = """(limit) => {
    const seen = [];
    for (const element of document.querySelectorAll('body *')) {
        const box = element.getBoundingClientRect();
        if (box.right <= limit + 1 || box.width === 0) continue;
        let clipped = false;
        // An absolutely placed element is clipped only by a scroller that contains it (is positioned).
        const placed = getComputedStyle(element).position === 'absolute';
        for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
            if (placed && getComputedStyle(up).position === 'static') continue;
            if (/(auto|scroll|hidden|clip)/.test(getComputedStyle(up).overflowX)
                && up.getBoundingClientRect().right <= limit + 1) { clipped = true; break; }
        }
        if (clipped) continue;
        const classes = typeof element.className === 'string' && element.className.trim()
            ? '.' + element.className.trim().split(/\\s+/).join('.') : '';
        seen.push(element.tagName.toLowerCase() + (element.id ? '#' + element.id : '') + classes
            + ' (right edge ' + Math.round(box.right) + ')');
    }
    // The innermost culprits say most: the last ones in document order are the deepest.
    return seen.slice(-6);
}"""


async def phone_problems(page: Page, where: str) -> list[str]:
    """At 390 px wide: is the document wider than the screen (scrolls sideways)? Names the widest
    elements that are not inside a scrolling wrapper of their own."""
    original = page.viewport_size
    await page.set_viewport_size(PHONE)
    try:
        width = int(await page.evaluate("document.documentElement.scrollWidth"))
        if width <= PHONE["width"] + 1:
            return []
        culprits = await page.evaluate(_WIDEST, PHONE["width"])
    finally:
        if original:
            await page.set_viewport_size(original)
    return [f"{where}: at 390 px the page is {width} px wide (scrolls sideways); widest: {culprits}"]


async def assert_fits_phone(page: Page, where: str) -> None:
    """At 390 px the document does not scroll sideways."""
    problems = await phone_problems(page, where)
    assert not problems, "\n".join(problems)


@dataclass
class PageProblems:
    """What went wrong in the pages a test drove: script errors and 5xx answers."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.seen.append(f"script error on {page.url}: {error}"))
        page.on("response", self._response)
        return page

    def _response(self, response: Response) -> None:
        if response.status >= 500:
            self.seen.append(f"{response.status} from {response.request.method} {response.url}")


@asynccontextmanager
async def browser_context(
    browser: Browser, *, java_script: bool = True, viewport: ViewportSize | None = None
) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        viewport=viewport or DESKTOP,
        locale="en-GB",
        java_script_enabled=java_script,
        accept_downloads=True,
    )
    context.set_default_timeout(15_000)
    if not java_script:
        _WITHOUT_SCRIPTS.add(id(context))
    try:
        yield context
    finally:
        _WITHOUT_SCRIPTS.discard(id(context))
        await context.close()


async def set_language_cookie(context: BrowserContext, base_url: str, lang: str) -> None:
    """As if the person had chosen the language with the switch before."""
    await context.add_cookies([{"name": "rt_lang", "value": lang, "url": base_url}])


async def expect_status(page: Page, text: str | re.Pattern[str]) -> None:
    await expect(page.get_by_role("status").first).to_contain_text(text)


async def open_details(details: Locator) -> None:
    """Open a <details> disclosure (by its summary, as a person does) unless it is open already."""
    if await details.get_attribute("open") is None:
        await details.locator("summary").first.click()
    await expect(details).to_have_attribute("open", "")
