"""The book build is a test: every chapter executes without an error or a warning, and the
rendered pages work offline (MathJax comes from the book itself; no page needs a widget manager).

Runs the real build, ``jupyter-book build <repo> --all -W -n --keep-going``, once per test
session into a temporary directory (``_build/`` is left alone; the ``book`` fixture in
tests/conftest.py, shared with the browser and student-build tests), then checks its output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from bookbuild import ROOT, toc_pages
from bookbuild import log_excerpt as _log_excerpt

pytestmark = pytest.mark.slow

SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
STYLESHEET_TAG = re.compile(r"<link\b[^>]*\brel=\"stylesheet\"[^>]*>", re.IGNORECASE)
SRC_ATTR = re.compile(r"\bsrc=\"([^\"]*)\"")
HREF_ATTR = re.compile(r"\bhref=\"([^\"]*)\"")
WIDGET_SCRIPT = re.compile(r"<script[^>]*(application/vnd\.jupyter\.widget-(?:state|view)\+json|embed-amd|require\.js)")
ERROR_OUTPUT = re.compile(r"class=\"output (?:traceback|error)\b")
STDERR_OUTPUT = re.compile(r"<div class=\"output stderr[^\"]*\">(.*?)</pre>", re.DOTALL)
PYTHON_WARNING = re.compile(r"\b\w*Warning:")

# The session-scoped `book` fixture (tests/conftest.py) runs the build once for all tests.
TOC_PAGES = toc_pages()


def _is_external(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def test_library_comes_from_this_repo():
    import bilevel_lib

    location = Path(bilevel_lib.__file__).resolve()
    assert location.is_relative_to(ROOT), (
        f"bilevel_lib is imported from {location}, not from this repo: run `make test` "
        "(it installs the repo with `pip install -e .`)"
    )


def test_build_succeeds_without_warnings(book):
    if book.proc.returncode != 0:
        pytest.fail(
            f"jupyter-book build failed (exit {book.proc.returncode}); a cell error or any "
            f"Sphinx warning fails it.\n{_log_excerpt(book.log)}",
            pytrace=False,
        )


def test_vendored_assets_named_in_config_are_in_the_site(book):
    """mathjax_path (relative to _static/) points at a file in the site; no widget manager is loaded."""
    sphinx_config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    sphinx_config = sphinx_config["sphinx"]["config"]
    assert sphinx_config["nb_ipywidgets_js"] == {}, "the pages need no widget manager (book.explorer)"
    urls = [sphinx_config["mathjax_path"]]
    external = [url for url in urls if _is_external(url)]
    assert not external, f"_config.yml loads assets from the network: {external}"
    missing = [url for url in urls if not book.resolve("_static/page", url).is_file()]
    assert not missing, f"not in the built site (vendor them into _vendor/): {missing}"


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_is_built(book, docname):
    book.page(docname)


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_loads_only_local_assets(book, docname):
    html = book.page(docname)
    srcs = [m.group(1) for tag in SCRIPT_TAG.findall(html) if (m := SRC_ATTR.search(tag))]
    sheets = [m.group(1) for tag in STYLESHEET_TAG.findall(html) if (m := HREF_ATTR.search(tag))]
    external = [url for url in srcs + sheets if _is_external(url)]
    assert not external, f"{docname} loads scripts or styles from the network: {external}"

    mathjax = [url for url in srcs if "mathjax" in url.lower()]
    assert mathjax, f"{docname} does not load MathJax"
    for url in mathjax:
        assert book.resolve(docname, url).is_file(), f"{docname}: {url} is not in the site"


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_has_no_widget_state_or_manager(book, docname):
    """Explorers render as precomputed frames (nb_mime_priority_overrides); widget views, their saved
    state (dropped by scripts/sphinx_no_widget_state.py) and a widget manager have no place in a page."""
    found = sorted(set(WIDGET_SCRIPT.findall(book.page(docname))))
    assert not found, f"{docname} carries ipywidgets scripts: {found}"


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_has_no_error_output(book, docname):
    html = book.page(docname)
    assert "Traceback" not in html, f"{docname} shows a traceback"
    assert not ERROR_OUTPUT.search(html), f"{docname} has an error output cell"


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_has_no_python_warning_output(book, docname):
    html = book.page(docname)
    warnings = [
        re.sub(r"<[^>]+>", "", text).strip()[:300]
        for text in STDERR_OUTPUT.findall(html)
        if PYTHON_WARNING.search(text)
    ]
    assert not warnings, f"{docname} shows Python warnings in its outputs: {warnings}"
