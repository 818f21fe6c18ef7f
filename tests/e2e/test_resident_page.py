"""The resident page in real Chromium (Debian's, driven by Playwright): sign in, tap Open."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from courtyard.community import Community
from devices.door import Behaviour

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A fresh page in Debian's Chromium (never a downloaded browser)."""
    if not HAVE_CHROMIUM:
        if os.environ.get("COURTYARD_REQUIRE_SERVICES") == "1":
            pytest.fail("Debian's chromium is required under CI: apt-get install -y chromium")
        pytest.skip("Debian's chromium is not installed")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        try:
            yield await context.new_page()
        finally:
            await context.close()
            await browser.close()


async def test_resident_opens_her_door_from_the_page(community: Community, page: Any) -> None:
    li = community.account("li")
    await page.goto(f"{community.url}/")
    await page.fill("#login", li.login)
    await page.fill("#password", li.password)
    await page.click("#sign-in")
    rows = page.locator("li.door")
    await rows.first.wait_for()
    names = await page.locator(".door-name").all_inner_texts()
    assert names == ["Building 1 main gate", "Building 1 garage door"]
    gate = page.locator("li.door", has_text="Building 1 main gate")
    await gate.get_by_role("button", name="Open Building 1 main gate").click()
    outcome = gate.locator(".outcome")
    await outcome.and_(page.locator('[data-status="opened"]')).wait_for(timeout=15_000)
    assert await outcome.inner_text() == "Opened"
    assert community.simulators["b1-gate"].strike_pulses == 1

    # Nobody walks through: the page says so rather than "opened".
    community.simulators["b1-garage"].set_behaviour(Behaviour.NOBODY_OPENS)
    garage = page.locator("li.door", has_text="Building 1 garage door")
    await garage.get_by_role("button").click()
    final = garage.locator('.outcome[data-status="released_not_opened"]')
    await final.wait_for(timeout=15_000)
    assert "nobody opened" in (await final.inner_text())


async def test_wrong_password_is_refused_on_the_page(community: Community, page: Any) -> None:
    await page.goto(f"{community.url}/")
    await page.fill("#login", "li")
    await page.fill("#password", "not-the-password")
    await page.click("#sign-in")
    error = page.locator("#login-error")
    await error.filter(has_text="Wrong login or password").wait_for()
    assert await page.locator("#doors-view").is_hidden()
