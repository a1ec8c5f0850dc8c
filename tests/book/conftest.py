"""Fixtures of the browser tests (test_browser.py and the other Chromium checks of the pages)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from bookbuild import ROOT, log_excerpt
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


@pytest.fixture(scope="session")
def student(tmp_path_factory) -> Path:
    """The student edition's html/ folder, built once into a temporary directory exactly as
    ``make student`` does (test_student_build.py, test_downloads.py). BILEVEL_STUDENT_HTML=DIR
    reuses an existing student build's html/ folder instead (for working on these checks only)."""
    reuse = os.environ.get("BILEVEL_STUDENT_HTML")
    if reuse:
        html = Path(reuse).resolve()
        if not (html / "index.html").is_file():
            raise pytest.UsageError(f"BILEVEL_STUDENT_HTML={reuse}: no index.html there")
        return html
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_student
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    out = tmp_path_factory.mktemp("student")
    proc = build_student.build(out, capture=True)
    if proc.returncode != 0:
        pytest.fail(
            f"the student build failed (exit {proc.returncode}):\n{log_excerpt(proc.stdout + proc.stderr)}",
            pytrace=False,
        )
    return out / "html"
