"""The officer's overview in real headless Chromium (Debian's, driven by Playwright; no browser download):
after logging in (and reloading while the first drawing is under way), the home page draws its
charts, visible and labelled, with the colours the desk's Content-Security-Policy lets through and no
violation reported. A screenshot is kept (pytest's tmp dir, and $ERASURE_TEST_ARTIFACTS when set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from tests.desk_fixtures import OFFICER, Desk, seeded_desk
from tests.overview_seed import hold, seed_request
from tests.test_browser import CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install -y chromium)")

# chart key -> what an officer reads on it (legends, bars' names, axes)
LABELS = {
    "days-left": ["overdue", "under 2", "14 to 31"],
    "failing-systems": ["brevo", "failed", "silent"],
    "requests-per-week": ["completed with holds", "needs attention", "in progress"],
    "sweeps-per-week": ["completed"],
    "time-to-completion": ["median", "95th percentile", "paper-vendor", "site-db"],
    "holds-ending": ["ended"],
}


@pytest.fixture(scope="module")
def desk(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    """The browser test's desk (an overdue request, a failed system, a hold, a fresh request), plus a
    retention sweep and a hold ending within three months."""
    for served in seeded_desk(tmp_path_factory.mktemp("overview-desk"), kafka):
        now = datetime.now(UTC)
        seed_request(served.ledger, now - timedelta(days=5),
                     {"brevo": ("erased", 30), "site-db": ("erased", 90)}, channel="retention")
        seed_request(served.ledger, now - timedelta(days=9),
                     {"brevo": ("not_found", 20), "site-db": ("held", 60)},
                     holds=[hold("card_data", now + timedelta(days=60))])
        yield served


def keep(screenshot: Path) -> None:
    target = os.environ.get("ERASURE_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(screenshot, Path(target) / screenshot.name)


def test_the_officer_sees_the_overview_charts(desk: Desk, tmp_path: Path) -> None:
    from playwright.sync_api import ConsoleMessage, expect, sync_playwright

    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()

        def note(message: ConsoleMessage) -> None:
            console.append(f"{message.type}: {message.text}")

        page.on("console", note)
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.goto(f"{desk.url}/")
        page.get_by_label("User").fill(OFFICER[0])
        page.get_by_label("Password").fill(OFFICER[1])
        page.get_by_role("button", name="Log in").click()

        # the first page does not wait for the first drawing: it says so, and a reload shows it
        for _ in range(50):
            expect(page.locator("#overview, #overview-pending")).to_be_visible()
            if page.locator("#overview").count():
                break
            expect(page.locator("#overview-pending")).to_contain_text("reload the page in a few seconds")
            page.wait_for_timeout(200)
            page.reload()
        expect(page.locator("#overview")).to_be_visible()
        for key, labels in LABELS.items():
            svg = page.locator(f"#chart-{key} svg[role=img]")
            expect(svg).to_be_visible()
            assert svg.bounding_box()["width"] > 300, key  # type: ignore[index]
            for label in labels:
                expect(svg.locator("text", has_text=label).first).to_be_visible()
        # named for assistive technologies by the chart's own <title>
        named = page.get_by_role("img", name="Open requests by days left before their deadline")
        expect(named).to_be_visible()
        # the colours are drawn: a policy refusing them would leave the bars black
        overdue_bar = page.locator("#chart-days-left svg path[fill='#d55e00']").first
        assert overdue_bar.evaluate("bar => getComputedStyle(bar).fill") == "rgb(213, 94, 0)"
        # the figures behind a chart, as a table
        page.locator("#chart-days-left summary").click()
        expect(page.locator("#chart-days-left details table")).to_contain_text("overdue")
        # the request list is still below
        expect(page.locator("#requests tbody tr")).to_have_count(6)

        screenshot = tmp_path / "overview.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    keep(screenshot)
    assert screenshot.stat().st_size > 10_000
    refused = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not refused, refused
    assert not [line for line in console if line.startswith("pageerror")], console
