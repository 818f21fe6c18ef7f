"""The courier and resident parcel pages in real Chromium (Debian's, driven by Playwright).

A whole community with its RS-485 lines runs: the cloud, the gateway, the lock board of bank A
(``bank-a-0`` on line ``lockers-a``, lock n = compartment n) and its terminal. The test plays the
courier's and the resident's hands at the simulated lock board; the pages see only the REST API.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from courtyard.community import Community
from courtyard.seed import CommunityAccount

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
WAIT_MS = 15_000
UNIT = "1-201"  # li's household (courtyard/seed.py default_plan)

pytestmark = [pytest.mark.browser, pytest.mark.community(rs485=True, meter_interval_s=3600)]


class Hands:
    """The person at bank A's lockers, acting on the community's simulated lock board."""

    def __init__(self, community: Community) -> None:
        assert community.cabinet is not None, "the community runs without its RS-485 lines"
        self.cabinet = community.cabinet

    def open_doors(self) -> list[int]:
        with self.cabinet.hands() as b:
            return [n for n in range(1, b.locks + 1) if b.compartment(n).door_open]

    def pulses(self, lock: int) -> int:
        with self.cabinet.hands() as b:
            return b.compartment(lock).pulses

    def put_parcel(self, lock: int) -> None:
        with self.cabinet.hands() as b:
            b.put_parcel(lock)

    def take_parcel(self, lock: int) -> None:
        with self.cabinet.hands() as b:
            b.take_parcel(lock)

    def close_door(self, lock: int) -> None:
        with self.cabinet.hands() as b:
            b.close_door(lock)


NewPage = Callable[[], Awaitable[Any]]


@pytest.fixture
async def new_page() -> AsyncIterator[NewPage]:
    """Fresh phone-sized pages in Debian's Chromium (never a downloaded browser), each in its
    own context (its own sessionStorage); no page may raise a JavaScript error."""
    if not HAVE_CHROMIUM:
        if os.environ.get("COURTYARD_REQUIRE_SERVICES") == "1":
            pytest.fail("Debian's chromium is required under CI: apt-get install -y chromium")
        pytest.skip("Debian's chromium is not installed")
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        contexts: list[Any] = []

        async def make() -> Any:
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            contexts.append(context)
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            return page

        try:
            yield make
        finally:
            for context in contexts:
                await context.close()
            await browser.close()
    assert errors == [], errors


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


async def sign_in(page: Any, url: str, account: CommunityAccount) -> None:
    await page.goto(url)
    await page.fill("#login", account.login)
    await page.fill("#password", account.password)
    await page.click("#sign-in")


def is_mark_read(response: Any) -> bool:
    """The resident page marking a notification read."""
    return response.request.method == "POST" and bool(
        re.search(r"/api/v1/notifications/\d+/read$", response.url)
    )


async def open_for_courier(page: Any, no: int, again: bool = False) -> None:
    """Wait until the courier's page names compartment ``no`` as open, and says what to do."""
    verb = "is open again" if again else "is open"
    shown = page.locator('#progress[data-status="open"]', has_text=f"Compartment {no} {verb}")
    await shown.wait_for(timeout=WAIT_MS)
    assert await shown.inner_text() == (
        f"Compartment {no} {verb} — put the parcel in and close the door"
    )


async def courier_deposit(page: Any, size: str, by: str, who: str) -> str:
    """Fill the courier's form, confirm the recipient, tap deposit; the recipient line shown."""
    await page.locator(f'#sizes input[value="{size}"]').check()
    await page.get_by_role("radio", name="By phone" if by == "phone" else "By unit").check()
    await page.get_by_label("Phone number" if by == "phone" else "Unit", exact=True).fill(who)
    await page.get_by_role("button", name="Find recipient").click()
    recipient = page.locator("#recipient")
    await recipient.wait_for(timeout=WAIT_MS)
    shown = str(await recipient.inner_text())
    await page.get_by_role("button", name="Open a compartment").click()
    return shown


async def test_courier_deposits_and_resident_collects_from_the_pages(
    new_page: NewPage, community: Community
) -> None:
    hands = Hands(community)
    li = community.account("li")
    assert li.unit == UNIT
    assert li.phone is not None
    assert li.name is not None

    # -- the courier --------------------------------------------------------------------------
    courier = await new_page()
    await sign_in(courier, f"{community.url}/courier", community.account("courier"))
    bank = courier.get_by_role("radio", name=re.compile("Building 1 lobby"))
    await bank.wait_for(timeout=WAIT_MS)
    assert await bank.is_checked()  # the only bank is chosen
    for size, free in (("mini", 4), ("S", 6), ("M", 4), ("L", 2)):
        choice = courier.locator("#sizes .choice", has=courier.locator(f'[value="{size}"]'))
        assert await choice.get_by_role("radio").is_enabled()
        assert f"{free} free" in await choice.inner_text()

    shown = await courier_deposit(courier, "S", "phone", li.phone)
    assert shown == f"Unit {UNIT} · phone {masked(li.phone)}"
    progress = courier.locator("#progress")
    # The page names the compartment while its door is open (the gateway's parcel.opened).
    await open_for_courier(courier, 5)
    # The gateway opened the smallest free S compartment, once; the courier's hands fill it.
    assert hands.open_doors() == [5]
    assert hands.pulses(5) == 1
    hands.put_parcel(5)
    hands.close_door(5)
    await courier.locator('#progress[data-status="deposited"]').wait_for(timeout=WAIT_MS)
    assert await progress.inner_text() == "Deposited in compartment 5"
    row = courier.locator("#parcels li.parcel", has_text=f"Unit {UNIT}")
    await row.locator(".parcel-state", has_text="In the locker").wait_for(timeout=WAIT_MS)
    assert "compartment 5" in await row.inner_text()
    # Only the unit and the masked phone: never the number or the name.
    text = await courier.locator("body").inner_text()
    assert li.phone not in text
    assert li.name not in text
    assert masked(li.phone) in text

    # -- the resident -------------------------------------------------------------------------
    resident = await new_page()
    # Shown, the unread note is marked read (the response is awaited: no sleeping).
    async with resident.expect_response(is_mark_read, timeout=WAIT_MS) as marked:
        await sign_in(resident, f"{community.url}/", li)
    assert (await marked.value).status == 200
    waiting = resident.locator('#parcels li.parcel[data-state="waiting"]')
    await waiting.wait_for(timeout=WAIT_MS)
    assert await waiting.count() == 1
    parcel_id = await waiting.get_attribute("data-parcel-id")
    parcel = resident.locator(f'#parcels li.parcel[data-parcel-id="{parcel_id}"]')
    assert await parcel.locator(".parcel-where").inner_text() == "Building 1 lobby · compartment 5"
    assert "Arrived" in await parcel.locator(".parcel-meta").inner_text()
    assert await parcel.locator(".parcel-state").inner_text() == "Waiting for you"
    note = resident.locator("#notes li.note")
    assert await note.count() == 1
    assert "A parcel is waiting for you in Building 1 lobby · compartment 5" in (
        await note.inner_text()
    )
    # The badge and the highlight say what was new when the list was shown.
    assert await resident.locator("#notes-badge").inner_text() == "1"
    assert await resident.locator("#notes li.note.unread").count() == 1

    await parcel.get_by_role("button", name="Show code").click()
    digits = parcel.locator(".code-digits")
    await digits.filter(has_text=re.compile(r"^\d{6,8}$")).wait_for(timeout=WAIT_MS)
    code = str(await digits.inner_text())
    qr = parcel.locator("img.qr")
    loaded = "img => img.complete && img.naturalWidth > 0"
    await resident.wait_for_function(loaded, arg=await qr.element_handle(), timeout=WAIT_MS)
    assert (await qr.get_attribute("src") or "").startswith("blob:")
    # The courier's page, refreshed, never carries the code.
    await courier.get_by_role("button", name="Refresh").click()
    await row.locator(".parcel-state", has_text="In the locker").wait_for(timeout=WAIT_MS)
    assert code not in await courier.content()

    before = hands.pulses(5)
    await parcel.get_by_role("button", name="Open remotely").click()
    confirm = parcel.locator(".confirm")
    await confirm.wait_for(timeout=WAIT_MS)
    assert "Open Building 1 lobby · compartment 5 now?" in await confirm.inner_text()
    await confirm.get_by_role("button", name="Open now").click()
    outcome = parcel.locator('.outcome[data-status="opened"]')
    await outcome.wait_for(timeout=WAIT_MS)
    assert await outcome.inner_text() == "Opened"
    picked = parcel.and_(resident.locator('[data-state="picked_up"]'))
    await picked.wait_for(timeout=WAIT_MS)
    assert await picked.locator(".parcel-state").inner_text() == "Picked up"
    assert await picked.locator(".actions").is_hidden()
    assert await picked.locator(".code").is_hidden()
    assert hands.pulses(5) == before + 1
    assert hands.open_doors() == [5]
    hands.take_parcel(5)
    hands.close_door(5)

    # Loaded again, the note is read (as the cloud now says): no badge, no highlight.
    await resident.get_by_role("button", name="Refresh").click()
    await resident.locator("#notes li.note:not(.unread)").wait_for(timeout=WAIT_MS)
    assert await resident.locator("#notes-badge").is_hidden()
    assert await resident.locator("#notes li.note").count() == 1


async def test_courier_reopens_and_cancels_an_empty_deposit(
    new_page: NewPage, community: Community
) -> None:
    hands = Hands(community)
    page = await new_page()
    await sign_in(page, f"{community.url}/courier", community.account("courier"))
    await page.get_by_role("radio", name=re.compile("Building 1 lobby")).wait_for(timeout=WAIT_MS)

    # An unknown unit is said so, and nothing can be deposited for it.
    await page.get_by_label("Unit", exact=True).fill("9-999")
    await page.get_by_role("button", name="Find recipient").click()
    await page.locator("#lookup-error", has_text="No such unit here").wait_for(timeout=WAIT_MS)
    assert await page.get_by_role("button", name="Open a compartment").is_disabled()

    shown = await courier_deposit(page, "M", "unit", UNIT)
    assert re.fullmatch(rf"Unit {UNIT} · phone \d{{3}}\*{{4}}\d{{4}}", shown)
    await open_for_courier(page, 11)
    assert hands.open_doors() == [11]  # the smallest M compartment

    # The courier closes the door with nothing inside: the page offers to open it again.
    hands.close_door(11)
    progress = page.locator('#progress[data-status="empty"]')
    await progress.wait_for(timeout=WAIT_MS)
    assert "Compartment 11 was closed with nothing inside" in await progress.inner_text()
    again = page.get_by_role("button", name="Open again")
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    assert await again.is_visible()
    assert await cancel.is_visible()

    await again.click()
    await open_for_courier(page, 11, again=True)
    assert hands.open_doors() == [11]
    assert hands.pulses(11) == 2

    # Still nothing to put in: close it and cancel.
    hands.close_door(11)
    await cancel.click()
    await page.locator('#progress[data-status="cancelled"]').wait_for(timeout=WAIT_MS)
    assert await page.locator("#progress").inner_text() == "Deposit cancelled"
    await page.get_by_role("button", name="New deposit").wait_for(timeout=WAIT_MS)
    assert await again.is_hidden()
    assert await cancel.is_hidden()
    row = page.locator("#parcels li.parcel", has_text=f"Unit {UNIT}")
    await row.locator(".parcel-state", has_text="Cancelled").wait_for(timeout=WAIT_MS)
    assert hands.open_doors() == []
    assert hands.pulses(11) == 2  # a cancel opens nothing


async def test_retrieve_is_offered_for_overdue_parcels_and_the_gateway_decides(
    new_page: NewPage, community: Community
) -> None:
    hands = Hands(community)
    page = await new_page()
    await sign_in(page, f"{community.url}/courier", community.account("courier"))
    await page.get_by_role("radio", name=re.compile("Building 1 lobby")).wait_for(timeout=WAIT_MS)
    await courier_deposit(page, "mini", "unit", UNIT)
    await open_for_courier(page, 1)
    assert hands.open_doors() == [1]
    hands.put_parcel(1)
    hands.close_door(1)
    await page.locator('#progress[data-status="deposited"]').wait_for(timeout=WAIT_MS)
    row = page.locator("#parcels li.parcel", has_text=f"Unit {UNIT}")
    await row.locator(".parcel-state", has_text="In the locker").wait_for(timeout=WAIT_MS)
    # Fresh: nothing to take back.
    assert await row.get_by_role("button", name="Retrieve").is_hidden()

    # The phone's clock says 73 hours later: the page offers it; the gateway's clock refuses it.
    await page.clock.set_fixed_time(time.time() + 73 * 3600)
    await page.get_by_role("button", name="Refresh").click()
    retrieve = row.get_by_role("button", name="Retrieve")
    await retrieve.wait_for(timeout=WAIT_MS)
    await retrieve.click()
    refused = row.locator('.outcome[data-status="failed"]')
    await refused.wait_for(timeout=WAIT_MS)
    assert await refused.inner_text() == "The parcel is not overdue yet"
    assert hands.open_doors() == []
    assert hands.pulses(1) == 1
