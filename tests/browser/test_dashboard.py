"""The dashboard in real Chromium: log in, open each page, pause and resume a job, run one
now and watch it finish (a real worker runs it), a wrong token refused, a read token with
no buttons. One browser and one server for the module; screenshots in .artifacts/dashboard/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from cronlink.records.runs import Tier
from cronlink.store import Store, store_for
from cronlink.web.server import serving
from tests.acceptance.dashboard_kit import app, history, tokens
from tests.acceptance.worker_kit import running_worker

# One pytest process runs them all: one Chromium install (apt-get takes one at a time).
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("browser")]

SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "dashboard"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PHONE = {"width": 390, "height": 844}


@dataclass
class Site:
    url: str
    store: Store
    tokens: dict[str, str]
    browser: Browser

    async def page(self, scope: str | None = "operate", **options: object) -> Page:
        """A page in a fresh browser context (its own cookies), logged in with `scope`."""
        context = await self.browser.new_context(**options)  # type: ignore[arg-type]
        page = await context.new_page()
        if scope is not None:
            await page.goto(self.url + "/dashboard/login")
            await page.fill("#token", self.tokens[scope])
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("Overview")
        return page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    store = store_for(f"sqlite:///{tmp_path_factory.mktemp('dash') / 'cronlink.db'}")
    await store.open()
    made = await tokens(store)
    await history(store, "tick", 40)
    await history(store, "nightly", 5)
    async with (
        serving(store, app, "127.0.0.1", 0) as url,
        running_worker(store, Tier.LIGHT, app.jobs),
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        yield Site(url, store, made, browser)
        await browser.close()
    await store.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_an_operator_logs_in_and_opens_each_page(site: Site) -> None:
    page = await site.page()
    await expect(page.locator(".figures")).to_contain_text("45 runs in the last 24 h")
    await expect(page.locator(".chart svg")).to_be_visible()
    await shot(page, "overview")
    await page.click("text=tick")
    await expect(page.locator("h1")).to_contain_text("tick")
    await expect(page.locator(".schedule ol li")).to_have_count(10)
    await expect(page.locator(".chart svg rect")).to_have_count(40)
    await shot(page, "job")
    await page.click("table a >> nth=0")
    await expect(page.locator("h1")).to_contain_text("Run")
    await expect(page.locator("#state")).to_have_text("dead")
    await shot(page, "run")
    for name in ("Connections", "Automations"):
        await page.click(f"nav >> text={name}")
        await expect(page.locator("h1")).to_have_text(name)
        await shot(page, name.lower())
    await page.click("nav >> text=Usage")
    await expect(page.locator("h1")).to_have_text("Usage and cost")
    await expect(page.locator(".chart svg")).to_be_visible()
    await shot(page, "usage")
    await page.click("text=Log out")
    await expect(page.locator("h1")).to_have_text("Log in")
    await page.goto(site.url + "/dashboard")
    await expect(page.locator("h1")).to_have_text("Log in")
    await page.context.close()


async def test_pause_resume_and_run_now(site: Site) -> None:
    page = await site.page()
    await page.goto(site.url + "/dashboard/jobs/tick")
    await page.click("button:has-text('Pause')")
    await expect(page.locator("h1 .tag")).to_have_text("paused")
    assert "tick" in await site.store.paused_jobs()
    await shot(page, "job-paused")
    await page.click("button:has-text('Resume')")
    await expect(page.locator("h1 .tag")).to_have_count(0)
    assert "tick" not in await site.store.paused_jobs()
    await page.click("button:has-text('Run now')")
    await expect(page.locator("#state")).to_have_text("succeeded", timeout=20_000)
    await expect(page.locator(".log")).to_contain_text("ticked on attempt 1")
    await shot(page, "run-now-finished")
    await page.context.close()


async def test_a_wrong_token_is_refused(site: Site) -> None:
    page = await site.page(None)
    await page.goto(site.url + "/dashboard/login")
    await page.fill("#token", "clk_" + "w" * 43)
    async with page.expect_response("**/dashboard/login") as answer:
        await page.click("button[type=submit]")
    assert (await answer.value).status == 401
    await expect(page.locator(".problem")).to_have_text("That token was not accepted.")
    await shot(page, "wrong-token")
    await page.goto(site.url + "/dashboard/jobs/tick")
    await expect(page.locator("h1")).to_have_text("Log in")
    await page.context.close()


async def test_a_read_token_sees_no_buttons_and_the_pages_fit_a_phone(site: Site) -> None:
    page = await site.page("read", viewport=PHONE, is_mobile=True, device_scale_factor=2)
    overflow = "document.documentElement.scrollWidth - window.innerWidth"
    assert await page.evaluate(overflow) <= 0  # wide tables scroll in their own box
    await shot(page, "phone-overview")
    await page.goto(site.url + "/dashboard/jobs/tick")
    await expect(page.locator("h1")).to_contain_text("tick")
    await expect(page.locator(".actions")).to_have_count(0)
    await expect(page.locator("button:has-text('Pause')")).to_have_count(0)
    await expect(page.locator("button:has-text('Run now')")).to_have_count(0)
    assert await page.evaluate(overflow) <= 0
    await shot(page, "phone-job-read-only")
    await page.context.close()
