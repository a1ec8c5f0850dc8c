"""Accessibility of the rendered book: axe-core inside headless Chromium, offline.

Every page of ``_toc.yml``, from the session's build (the ``book`` fixture, or an existing build
named by ``BILEVEL_BUILT_HTML``), served on 127.0.0.1, is loaded at 1280 px; once MathJax has
typeset it, axe-core is injected from the file bundled with the installed ``axe-playwright-python``
package (``axe.min.js``: no network, no npm) and run on the whole document.

A page fails on any violation of impact "critical" or "serious", except the ones listed in
:data:`NOT_OURS`: those come from markup the book's sources do not write (the theme,
sphinx-book-theme / PyData; Sphinx; sphinxcontrib-bibtex; the ipywidgets HTML manager that renders
saved widget state), and each entry gives the rule, the elements (regular expressions on axe's CSS
selector and on the element's HTML), whose markup it is and why. Delete an entry when its source
fixes it; an entry that no longer matches anything on any page fails
``test_every_tolerated_violation_still_occurs``, so the list cannot go stale silently.

The check can fail: a synthetic page with an image without ``alt`` text, an unlabelled input and
low-contrast text is reported, each by its rule.

axe accepts any alt text, and Sphinx writes an image's own path as its alt when a figure cell has
no ``mystnb.image.alt``: a static check of the built HTML fails on such placeholders (and on
missing or empty alt text), with its own planted-fault test.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from bookbuild import toc_pages
from pagecheck import SiteServer

pytestmark = pytest.mark.slow

TOC_PAGES = toc_pages()
FAILING_IMPACTS = ("critical", "serious")
AXE_TIMEOUT_MS = 120_000


def axe_script() -> Path:
    """``axe.min.js`` of the installed axe-playwright-python (axe-core, bundled: nothing fetched)."""
    try:
        import axe_playwright_python
    except ImportError:  # pragma: no cover - requirements-dev.txt pins it
        pytest.skip("axe-playwright-python is not installed (requirements-dev.txt pins it)")
    path = Path(os.path.dirname(axe_playwright_python.__file__)) / "axe.min.js"
    if not path.is_file():
        pytest.fail(f"axe-playwright-python has no axe.min.js at {path}", pytrace=False)
    return path


@dataclass(frozen=True)
class Finding:
    rule: str
    impact: str
    selector: str
    html: str

    def __str__(self) -> str:
        return f"[{self.impact}] {self.rule}: {self.selector}  {self.html[:160]}"


@dataclass(frozen=True)
class Tolerated:
    """A violation in markup the book does not write, tolerated until its source fixes it."""

    rule: str
    selector: str  # regular expression, matched (re.search) against axe's CSS selector of the node
    element: str  # regular expression, matched against the start of the node's HTML
    source: str  # whose markup it is
    reason: str

    def matches(self, finding: Finding) -> bool:
        return (
            finding.rule == self.rule
            and re.search(self.selector, finding.selector) is not None
            and re.search(self.element, finding.html) is not None
        )


# Critical/serious violations in markup the book's sources do not write: the theme
# (sphinx-book-theme 1.x on pydata-sphinx-theme), Sphinx and sphinxcontrib-bibtex
# (the ipywidgets manager is no longer in the static pages). The book's own markup (chapters, figures, captions, our CSS, the static viewers of
# bilevel_lib.book.viz) has no entry here: a violation there always fails.
NOT_OURS: list[Tolerated] = [
    Tolerated(
        rule="definition-list",
        selector=r"^#bilevel_lib\\\..* > dl$",
        element=r"^<dl>$",
        source="Sphinx (Python domain)",
        reason="a signature longer than python_maximum_signature_line_length is written one parameter per "
        "line as <dl><dd>…</dd></dl> inside the <dt>, a <dl> without <dt>; library reference page only",
    ),
    Tolerated(
        rule="aria-required-children",
        selector=r"^\.citation-list$",
        element=r'^<div role="list" class="citation-list">',
        source="docutils / sphinxcontrib-bibtex",
        reason="the bibliography is a role=list whose children are citations (role=doc-biblioentry) "
        "and back-links, not listitems; references page only",
    ),
]


# axe judges the page as laid out: wait for MathJax, the web fonts and the images, or a code block
# measured in a fallback font may overflow (scrollable-region-focusable) only for that moment.
_PAGE_READY_JS = """
async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }
  await document.fonts.ready;
  await Promise.all([...document.images].map((img) => img.complete ? null :
    new Promise((resolve) => { img.addEventListener("load", resolve); img.addEventListener("error", resolve); })));
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}
"""

_RUN_AXE_JS = """
async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact,
    nodes: v.nodes.map((n) => ({target: n.target.map(String).join(" "), html: n.html, impact: n.impact})),
  }));
}
"""


def run_axe(browser, url: str) -> list[Finding]:
    """All axe-core violations of the page at ``url`` (every impact), one Finding per element."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(url, wait_until="networkidle", timeout=AXE_TIMEOUT_MS)
        page.evaluate(_PAGE_READY_JS)
        page.add_script_tag(path=str(axe_script()))
        violations = page.evaluate(_RUN_AXE_JS)
    finally:
        context.close()
    return [
        Finding(v["id"], node.get("impact") or v["impact"] or "unknown", node["target"], node["html"])
        for v in violations
        for node in v["nodes"]
    ]


def failing(findings: list[Finding]) -> list[Finding]:
    """The critical and serious findings that no NOT_OURS entry explains."""
    return [f for f in findings if f.impact in FAILING_IMPACTS and not any(known.matches(f) for known in NOT_OURS)]


@pytest.fixture(scope="session")
def axe_findings():
    """docname → findings, filled by the per-page test; read by the staleness check."""
    return {}


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_has_no_serious_accessibility_violation(browser, site, docname, axe_findings):
    findings = run_axe(browser, site.url(f"{docname}.html"))
    axe_findings[docname] = findings
    bad = failing(findings)
    assert not bad, f"{docname}: {len(bad)} critical/serious axe-core violations:\n  " + "\n  ".join(map(str, bad))


def test_every_tolerated_violation_still_occurs(axe_findings):
    """An entry of NOT_OURS that matches nothing on any page is stale: remove it."""
    if len(axe_findings) < len(TOC_PAGES):
        pytest.skip("needs the per-page axe runs of this session (run the whole file)")
    everything = [f for findings in axe_findings.values() for f in findings]
    stale = [known for known in NOT_OURS if not any(known.matches(f) for f in everything)]
    assert not stale, "NOT_OURS entries that no page shows any more:\n  " + "\n  ".join(
        f"{t.rule} {t.selector!r}" for t in stale
    )


_BAD_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>planted violations</title></head>
<body><main>
<h1>Planted violations</h1>
<p style="color:#bbbbbb;background:#ffffff">Light grey text on white.</p>
<img src="dot.png">
<input type="range" min="0" max="4" value="1">
</main></body></html>
"""

# a 1×1 PNG
_DOT_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a3fd6f2b0000000049454e44ae426082"
)


def test_the_check_fails_on_planted_violations(browser, tmp_path):
    """An image without alt text, an unlabelled slider and low-contrast text are all serious or
    critical, so a page with them fails the check above."""
    (tmp_path / "bad.html").write_text(_BAD_PAGE, encoding="utf-8")
    (tmp_path / "dot.png").write_bytes(_DOT_PNG)
    with SiteServer(tmp_path) as server:
        findings = run_axe(browser, server.url("bad.html"))
    rules = {f.rule for f in failing(findings)}
    assert {"image-alt", "label", "color-contrast"} <= rules, findings


# --- alt text that axe accepts but a reader cannot use --------------------------------------


class _Images(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def placeholder_alt_texts(html_text: str) -> list[str]:
    """Images whose alt text is missing, empty or only a file name: Sphinx writes the image's path
    as its alt when a figure cell has no ``mystnb.image.alt``, which axe's image-alt rule accepts."""
    parser = _Images()
    parser.feed(html_text)
    out = []
    for image in parser.images:
        src, alt = image.get("src") or "", (image.get("alt") or "").strip()
        if image.get("role") in ("presentation", "none"):
            continue
        name = src.rsplit("/", 1)[-1]
        if not alt or alt == src or alt == name or re.fullmatch(r"[\w./-]+\.(png|jpe?g|svg|gif|webp)", alt):
            out.append(f"<img src={src[:80]!r} alt={alt[:80]!r}>")
    return out


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_every_image_has_alt_text_that_describes_it(book, docname):
    bad = placeholder_alt_texts(book.page(docname))
    assert not bad, f"{docname}: images without a real alt text (give the cell mystnb.image.alt):\n  " + "\n  ".join(
        bad
    )


def test_the_alt_check_fails_on_placeholders():
    page = (
        '<img src="../_images/ab12.png" alt="../_images/ab12.png"> <img src="x/fig.png" alt="fig.png">'
        ' <img src="y.png"> <img src="z.png" alt=" "> <img src="ok.png" alt="A curve falling to zero.">'
        ' <img src="d.png" alt="" role="presentation"> <script>var s = "<img src=q.png>";</script>'
    )
    assert len(placeholder_alt_texts(page)) == 4
