"""The registry's pages and the audit log in Chromium: accessible (axe-core: nothing serious or
critical), no sideways scrolling at 390 px, and the preview → confirm import and the contacts form work
without JavaScript. A launched round of two organisations gives the preview open tasks to talk about."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlmodel import col, select

from models.organisations import Organisation
from models.reviews import AccessLink
from services.db import Database
from services.settings import Settings
from services.web.app import create_app
from tests.e2e.helpers import (
    COORDINATOR,
    axe_problems,
    browser_context,
    create_login,
    open_details,
    phone_problems,
    save_screenshot,
    set_language_cookie,
    sign_in,
)
from tests.harness import ServedApp, fixture_path
from tests.web.test_review_page import RecordingScheduler, build_round

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("backend", ["sqlite"])]

ZONE = "Europe/Tirane"
OLD_FP = "migration.fp@ministry-of-interior.gov.example"
NEW_FP = "arta.hoxha@interior.gov.example"


@dataclass
class Site:
    url: str
    db: Database
    round_id: int


@pytest.fixture
async def site(db: Database, settings: Settings) -> AsyncIterator[Site]:
    settings = settings.model_copy(update={"timezone": ZONE})
    await create_login(db, COORDINATOR)
    built = await build_round(db, settings, keys=["ministry-of-interior", "municipality-tirane"])
    app = create_app(settings, db=db, scheduler=RecordingScheduler(settings))
    served = ServedApp(app)
    settings.public_base_url = served.url
    async with served:
        yield Site(url=served.url, db=db, round_id=built.round_id)


async def _problems(page: Page, name: str) -> list[str]:
    found = await axe_problems(page, name) + await phone_problems(page, name)
    await page.set_viewport_size({"width": 390, "height": 844})
    await save_screenshot(page, f"phone-{name}")
    await page.set_viewport_size({"width": 1280, "height": 900})
    return found


async def test_the_registry_pages_without_javascript(
    shared_chromium: Browser, site: Site, tmp_path: Path
) -> None:
    changed = tmp_path / "registry with notes.csv"
    registry = fixture_path("stakeholders-albania.csv").read_text(encoding="utf-8").splitlines()
    registry[0] += ",notes"
    registry[1:] = [line + ",called in May" for line in registry[1:]]
    changed.write_text("\n".join(registry).replace(OLD_FP, NEW_FP) + "\n", encoding="utf-8")
    problems: list[str] = []

    async with browser_context(shared_chromium, java_script=False) as context:
        page = await context.new_page()
        await sign_in(page, site.url)

        await page.goto(f"{site.url}/console/organisations?q=ministry")
        problems += await _problems(page, "registry-search")
        await open_details(page.locator("details:has(input[type=file])"))
        upload = page.locator("form:has(input[type=file])").first
        await upload.locator("input[type=file]").set_input_files(str(changed))
        await upload.get_by_role("button", name="Preview the import").click()
        await expect(page.get_by_role("heading", name="Check the import")).to_be_visible()
        await expect(page.locator("#open-rounds")).to_contain_text(NEW_FP)
        await expect(page.locator("#ignored-columns")).to_contain_text("notes")
        problems += await _problems(page, "registry-preview-open-rounds")
        await page.get_by_label("Also change the contacts of open tasks", exact=False).check()
        await page.get_by_role("button", name="Confirm the import").click()
        await expect(page.locator("#import-result")).to_contain_text("0 created, 1 updated, 87 unchanged")
        await expect(page.locator("#import-result")).to_contain_text("The contact of 1 open task was changed")

        await page.goto(f"{site.url}/console/organisations/municipality-tirane")
        problems += await _problems(page, "registry-organisation")
        await page.get_by_label("Email (empty: no alternate)").fill("")
        await page.get_by_label("Language of its emails and pages").select_option("en")
        await page.get_by_role("button", name="Save the contacts").click()
        await expect(page.locator("#saved")).to_contain_text("The contacts were saved")
        await page.get_by_label("Email (required)").fill("not an address")
        await page.get_by_role("button", name="Save the contacts").click()
        await expect(page.locator("#form-error")).to_contain_text("Focal point's email")
        problems += await _problems(page, "registry-organisation-refused")

        for lang in ("en", "sq"):
            await set_language_cookie(context, site.url, lang)
            await page.goto(f"{site.url}/console/audit?round_id={site.round_id}")
            problems += await _problems(page, f"audit-{lang}")
        await expect(page.locator(".audit-sentence").first).to_contain_text("krijoi konsultimin")

    assert not problems, "\n".join(problems)
    async with site.db.session() as session:
        interior = (
            await session.exec(select(Organisation).where(Organisation.key == "ministry-of-interior"))
        ).one()
        tirane = (
            await session.exec(select(Organisation).where(Organisation.key == "municipality-tirane"))
        ).one()
        working = (
            await session.exec(
                select(AccessLink.email).where(
                    AccessLink.round_id == site.round_id, col(AccessLink.revoked_at).is_(None)
                )
            )
        ).all()
    assert interior.focal_point_email == NEW_FP
    assert (tirane.alternate_email, str(tirane.language)) == (None, "en")
    assert NEW_FP in working
    assert OLD_FP not in working
