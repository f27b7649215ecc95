"""A letter's HTML printed to PDF by Chromium (Debian's, driven by Playwright; never a downloaded one).

Chromium is what the desk's browser tests already drive, and it prints the very HTML the person
would read in an e-mail, so the PDF cannot say anything else. The page gets no network and no
JavaScript: the letter is self-contained (inline style, no image, no script).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
PDF_TIMEOUT_S = 60.0


class PdfError(Exception):
    """No PDF could be made; the message says what to install or set."""


def html_to_pdf(html: str, chromium: Path = DEFAULT_CHROMIUM, timeout_s: float = PDF_TIMEOUT_S) -> bytes:
    """The PDF of `html`, printed on A4 by a headless Chromium started for it (about a second)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise PdfError("a PDF needs the playwright package: pip install 'erasure-pipeline[pdf]' "
                       "(no browser download: it drives Debian's chromium)") from None
    if not chromium.exists():
        raise PdfError(f"{chromium}: no Chromium there; apt-get install chromium, or set "
                       "ERASURE_CHROMIUM_PATH to its executable")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS,
                                                 timeout=timeout_s * 1000)
            try:
                context = browser.new_context(java_script_enabled=False, offline=True)
                page = context.new_page()
                page.route("**/*", lambda route: route.abort())  # the letter loads nothing from anywhere
                page.set_content(html, wait_until="load", timeout=timeout_s * 1000)
                pdf: bytes = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
                return pdf
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise PdfError(f"Chromium could not print the letter: {str(exc).splitlines()[0][:200]}") from None
