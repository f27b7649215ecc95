"""The desk in real headless Chromium (Debian's, driven by Playwright; no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.devstack.broker import Broker
from tests.desk_fixtures import OFFICER, Desk, seeded_desk

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def desk(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    yield from seeded_desk(tmp_path_factory.mktemp("browser-desk"), kafka)


def test_officer_confirms_a_manual_system_of_an_overdue_request(desk: Desk) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_context(accept_downloads=True).new_page()
        page.goto(f"{desk.url}/")
        expect(page).to_have_url(f"{desk.url}/login")
        page.get_by_label("User").fill(OFFICER[0])
        page.get_by_label("Password").fill(OFFICER[1])
        page.get_by_role("button", name="Log in").click()

        page.locator("select[name=deadline]").select_option("overdue")
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("#requests tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("overdue")
        rows.first.get_by_role("link").click()

        expect(page.locator("#request-status")).to_have_text("in_progress")
        vendor = page.locator("#systems tr[data-system=paper-vendor]")
        expect(vendor).to_contain_text("manual")
        vendor.get_by_label("outcome").select_option("erased")
        vendor.get_by_label("note").fill("confirmed by letter 2026-11-20")
        vendor.get_by_role("button", name="Confirm").click()

        expect(page.locator("#request-status")).to_have_text("completed")
        expect(page.locator("#systems tr[data-system=paper-vendor]")).to_contain_text("erased")
        expect(page.locator("#timeline")).to_contain_text("manual confirmed")
        confirmed = page.locator("#timeline tr", has_text="manual confirmed")
        expect(confirmed.locator(".author")).to_have_text(OFFICER[0])
        page.screenshot(path=str(ARTIFACTS / "request-page.png"), full_page=True)

        with page.expect_download() as download_info:
            page.locator("#certificate").click()
        download = download_info.value
        target = ARTIFACTS / download.suggested_filename
        download.save_as(target)
        certificate = target.read_text()
        assert "Certificate of erasure" in certificate and desk.overdue_manual in certificate
        assert "paper-vendor" in certificate and "confirmed by olivia" in certificate
        browser.close()
    assert (ARTIFACTS / "request-page.png").stat().st_size > 10_000
