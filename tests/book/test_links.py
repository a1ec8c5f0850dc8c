"""Links of the whole built site, offline: every ``.html`` file under the build, not only the
pages of ``_toc.yml`` (the index, search and module-index pages too).

For each ``href`` and ``src`` attribute of any element:

* an internal URL (no scheme, no host) must resolve to a file in the build (a folder means its
  ``index.html``), relative to the page that holds it;
* an ``#anchor``, on an internal URL to an HTML page or on a bare ``#anchor``, must be the ``id``
  (or ``name``) of an element of the target page (an empty fragment, ``href="#"``, is the top);
* an external URL (``http:``, ``https:``, ``//host``) is not fetched (no network): the test lists
  them, each with the pages that hold it, in its output (``pytest -s``) and in
  ``_build/external-links.txt``.

``data:``, ``mailto:``, ``javascript:`` and ``tel:`` URLs are not links to files and are skipped.
Two HTML files of the theme under ``_static/`` are Jinja templates copied verbatim, not pages
(:data:`NOT_PAGES`); the test checks they still are.

The check can fail: a synthetic site with a missing page, a missing image, a broken anchor in
another page and a broken anchor in the same page reports each one.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bookbuild import ROOT

# HTML files of the build that are not pages: templates of pydata-sphinx-theme / sphinx-book-theme
# that Sphinx copies into _static/ as they are (their URLs are Jinja expressions, "{{ pathto(...) }}").
NOT_PAGES = {
    "_static/webpack-macros.html": "pydata-sphinx-theme's Jinja macros for its CSS/JS, copied verbatim",
    "_static/sbt-webpack-macros.html": "sphinx-book-theme's Jinja macros for its CSS/JS, copied verbatim",
}
SKIPPED_SCHEMES = ("data:", "mailto:", "javascript:", "tel:")
EXTERNAL_REPORT = ROOT / "_build" / "external-links.txt"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name") and tag != "meta":
                self.anchors.add(value)
            elif name in ("href", "src"):
                self.urls.append((tag, name, value))

    handle_startendtag = handle_starttag


@dataclass
class Page:
    urls: list[tuple[str, str, str]]
    anchors: set[str]


@dataclass
class LinkReport:
    broken: list[str] = field(default_factory=list)
    external: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # url → pages
    checked: int = 0
    pages: int = 0


def parse_page(path: Path) -> Page:
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    collector.close()
    return Page(collector.urls, collector.anchors)


def site_pages(site: Path) -> list[str]:
    """Every .html file of the build (posix paths relative to it), except NOT_PAGES."""
    return sorted(rel for rel in (p.relative_to(site).as_posix() for p in site.rglob("*.html")) if rel not in NOT_PAGES)


def check_site(site: Path) -> LinkReport:
    """Resolve every href/src of every page of the built site ``site``; see the module docstring."""
    site = Path(site)
    report = LinkReport()
    cache: dict[str, Page] = {}

    def page(rel: str) -> Page:
        if rel not in cache:
            cache[rel] = parse_page(site / rel)
        return cache[rel]

    for rel in site_pages(site):
        report.pages += 1
        for tag, attr, url in page(rel).urls:
            url = url.strip()
            if not url or url.lower().startswith(SKIPPED_SCHEMES):
                continue
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                report.external[url].add(rel)
                continue
            report.checked += 1
            where = f"{rel}: <{tag} {attr}={url!r}>"
            path = unquote(parts.path)
            if path:
                base = "" if path.startswith("/") else posixpath.dirname(rel)
                target = posixpath.normpath(posixpath.join(base, path.lstrip("/")))
                if target.startswith(".."):
                    report.broken.append(f"{where}: points outside the site ({target})")
                    continue
                if (site / target).is_dir():
                    target = posixpath.join(target, "index.html")
                if not (site / target).is_file():
                    report.broken.append(f"{where}: no file {target} in the build")
                    continue
            else:
                target = rel
            fragment = unquote(parts.fragment)
            if fragment and target.endswith(".html") and target not in NOT_PAGES:
                if fragment not in page(target).anchors:
                    report.broken.append(f"{where}: {target} has no element with id {fragment!r}")
    report.broken = sorted(set(report.broken))
    return report


def test_not_pages_are_still_templates(book):
    """The NOT_PAGES exemptions hold only while those files are Jinja templates, not pages."""
    for rel, reason in NOT_PAGES.items():
        path = book.html_dir / rel
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "{% macro" in text and "<html" not in text.lower(), (
                f"{rel} is exempt as {reason!r}, but it looks like a page now"
            )


def test_every_internal_link_of_the_site_resolves(book):
    report = check_site(book.html_dir)
    assert report.pages > 10 and report.checked > 100, f"suspiciously little was checked: {report}"
    lines = [f"{url}  ({len(pages)} pages, e.g. {sorted(pages)[0]})" for url, pages in sorted(report.external.items())]
    EXTERNAL_REPORT.parent.mkdir(parents=True, exist_ok=True)
    EXTERNAL_REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(
        f"\n{report.pages} HTML files, {report.checked} internal URLs checked; "
        f"{len(report.external)} external URLs (not fetched):\n  " + "\n  ".join(lines)
    )
    assert not report.broken, f"{len(report.broken)} broken internal links:\n  " + "\n  ".join(report.broken)


def test_the_check_fails_on_planted_broken_links(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    (tmp_path / "index.html").write_text(
        '<html><body><h1 id="top">t</h1>'
        '<a href="sub/page.html#here">ok</a> <a href="#top">ok</a> <a href="#">ok</a> <a href="sub/">ok</a>'
        '<img src="img.png" alt="ok"> <a href="https://example.org/x">external</a> <a href="mailto:a@b">mail</a>'
        '<a href="sub/page.html#nowhere">bad anchor</a> <a href="missing.html">bad page</a>'
        '<img src="sub/missing.png" alt="bad image"> <a href="#gone">bad local anchor</a>'
        "</body></html>",
        encoding="utf-8",
    )
    (tmp_path / "sub" / "page.html").write_text('<p id="here">x</p><a href="../index.html#top">ok</a>', "utf-8")
    (tmp_path / "sub" / "index.html").write_text("<p>folder index</p>", encoding="utf-8")
    report = check_site(tmp_path)
    assert len(report.broken) == 4, report.broken
    expected = [
        r"sub/page\.html has no element with id 'nowhere'",
        r"no file missing\.html",
        r"no file sub/missing\.png",
        r"index\.html: <a href='#gone'>: index\.html has no element with id 'gone'",
    ]
    for pattern in expected:
        assert any(re.search(pattern, line) for line in report.broken), (pattern, report.broken)
    assert set(report.external) == {"https://example.org/x"}


@pytest.mark.parametrize("rel", sorted(NOT_PAGES))
def test_not_pages_are_skipped_by_name_only(tmp_path, rel):
    """A broken link in a file that is not in NOT_PAGES is reported even under _static/."""
    (tmp_path / "_static").mkdir()
    (tmp_path / rel).write_text('<a href="{{ pathto(x) }}">t</a>', encoding="utf-8")
    (tmp_path / "_static" / "other.html").write_text('<a href="nothing.html">t</a>', encoding="utf-8")
    broken = check_site(tmp_path).broken
    assert broken == ["_static/other.html: <a href='nothing.html'>: no file _static/nothing.html in the build"]
