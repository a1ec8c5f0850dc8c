"""Fixtures of the browser tests (test_browser.py and the other Chromium checks of the pages)."""

from __future__ import annotations

import pytest
from pagecheck import INSTALL_HINT, SiteServer, find_chromium, launch


@pytest.fixture(scope="session")
def browser():
    if find_chromium() is None:
        pytest.skip(f"Chromium is not installed: {INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def site(book):
    if book.proc.returncode != 0 and not (book.html_dir / "index.html").is_file():
        pytest.fail("the book build failed; see test_book.py::test_build_succeeds_without_warnings", pytrace=False)
    with SiteServer(book.html_dir) as server:
        yield server
