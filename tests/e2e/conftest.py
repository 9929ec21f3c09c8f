"""End-to-end tests drive Debian's Chromium through Playwright's async API.

pytest-playwright's own fixtures are synchronous and do not mix with the suite's session-scoped asyncio
loop, so the tests launch the browser themselves with `chromium_launch_args`; `browser_type_launch_args`
is set too, for anyone running pytest-playwright's fixtures by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_LAUNCH_ARGS: dict[str, Any] = {
    "executable_path": str(CHROMIUM),
    "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    "headless": True,
}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    return dict(CHROMIUM_LAUNCH_ARGS)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**CHROMIUM_LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="session")
async def shared_chromium() -> AsyncIterator[Browser]:
    """One Chromium for every test of the run that asks for it (each test opens its own contexts)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**CHROMIUM_LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
