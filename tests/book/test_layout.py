"""Nothing on a page is cut off sideways, and every cell shows its text output in one box.

Headless Chromium (tests/pagecheck.py) opens every page of ``_toc.yml`` as a reader without a kernel
would, with every collapsed block opened first (hidden cell inputs, solutions, dropdowns), so that
what a reader can unfold is measured too.

**Width, at 1280×900.** An element is *over-wide* when a reader cannot see all of it without
scrolling inside it or past the text column:

* its own box is narrower than its content (``scrollWidth > clientWidth``: it scrolls or clips);
* or the nearest box around it that scrolls or clips (``overflow-x`` not ``visible``, e.g. the
  theme's table wrapper or an output box) is narrower than its content, and the element is what
  sticks out of it;
* or its right edge lies beyond the right edge of the text column (``article.bd-article``).

The elements checked: code blocks (``div.highlight pre``, chapter cells and ``literalinclude``
alike), cell outputs (each output box of ``div.cell_output``), display equations (MathJax's
``mjx-container[display]``) and tables. :data:`SCROLLS_ON_PURPOSE` names the elements allowed to
scroll in their own box, each with the reason: none. :data:`PENDING` would name elements that are
over-wide today and fixed by work under way elsewhere: none; an entry that no longer matches an
over-wide element fails, so the list can only shrink.

**One output box per cell.** A cell that prints its output in pieces shows them as separate boxes,
one under the other, with gaps between them. The rule: two *adjacent* output boxes of one cell that
are both text (stdout or stderr stream, or a ``text/plain`` result: ``div.output.stream``,
``div.output.stderr``, ``div.output.text_plain``) are one output split in two. Text next to a
figure, an HTML table or a widget is not a split: those are different outputs.

**Phone, at 390×844.** Code and tables may scroll inside their own box there (no 40-character
column holds them), but nothing may stick out of the screen: no element of the page's article
reaches past the viewport's right edge unless a box around it scrolls or clips it, and the page
itself does not scroll sideways.

The checker is tested to fail on a synthetic page with an over-wide code line, table and equation
and a split output.
"""

from __future__ import annotations

import pytest
from bookbuild import ROOT, toc_pages

pytestmark = pytest.mark.slow

TOC_PAGES = toc_pages()
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Elements that scroll inside their own box on purpose: {docname: {description substring: reason}}.
SCROLLS_ON_PURPOSE: dict[str, dict[str, str]] = {}

# Over-wide today and to be fixed by work under way elsewhere: {docname: {description substring:
# reason}}. Every entry must still match an over-wide element of its page, so that the entry of a
# fixed element fails the test until it is removed from here. Empty: nothing is pending.
PENDING: dict[str, dict[str, str]] = {}

# Open everything a reader can unfold: <details> (hidden cell inputs), sphinx-togglebutton's
# dropdowns (gated solutions) and sphinx-design dropdowns.
_OPEN_ALL_JS = r"""
() => {
  document.querySelectorAll("details").forEach((d) => { d.open = true; });
  document.querySelectorAll(".toggle-hidden").forEach((el) => el.classList.remove("toggle-hidden"));
  document.querySelectorAll("button.toggle-button[aria-expanded=false]")
    .forEach((b) => b.setAttribute("aria-expanded", "true"));
}
"""

# One problem per over-wide element: {kind, where, text, excess}. Also the split outputs.
_LAYOUT_JS = r"""
() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const colRect = column.getBoundingClientRect();
  const colStyle = getComputedStyle(column);
  const colRight = colRect.right - parseFloat(colStyle.paddingRight || "0") - parseFloat(colStyle.borderRightWidth || "0");
  const clips = (el) => !["visible", ""].includes(getComputedStyle(el).overflowX);
  const where = (el) => {
    // the nearest heading above the element: a reader's way of finding it
    let node = el;
    while (node && node !== column) {
      if (node.tagName === "SECTION" && node.id) return "#" + node.id;
      node = node.parentElement;
    }
    return "(top of page)";
  };
  const label = (el) => (el.innerText || el.textContent || el.getAttribute("aria-label") || "")
    .replace(/\s+/g, " ").trim().slice(0, 70);
  const kindOf = (el) => {
    if (el.matches("mjx-container")) return "display equation";
    if (el.matches("table")) return "table";
    if (el.closest(".cell_output")) return "cell output";
    return "code block";
  };
  const seen = new Set();
  const candidates = [];
  const add = (el) => { if (!seen.has(el)) { seen.add(el); candidates.push(el); } };
  column.querySelectorAll("div.highlight pre").forEach(add);
  column.querySelectorAll("div.cell_output > *:not(script)").forEach(add);
  column.querySelectorAll('mjx-container[display="true"]').forEach(add);
  column.querySelectorAll("table").forEach(add);
  const wide = [];
  for (const el of candidates) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;  // not rendered
    let excess = 0;
    let how = "";
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      excess = el.scrollWidth - el.clientWidth;
      how = "scrolls in its own box";
    }
    for (let box = el.parentElement; !excess && box && box !== column.parentElement; box = box.parentElement) {
      if (!clips(box)) continue;
      const boxRect = box.getBoundingClientRect();
      if (box.scrollWidth > box.clientWidth + 1 && rect.right > boxRect.left + box.clientWidth + 1) {
        excess = Math.max(box.scrollWidth - box.clientWidth, rect.right - boxRect.left - box.clientWidth);
        how = `scrolls in ${box.tagName.toLowerCase()}.${[...box.classList].join(".")}`;
      }
      break;  // only the nearest clipping box
    }
    if (!excess && rect.right > colRight + 1) {
      excess = rect.right - colRight;
      how = "sticks out of the column";
    }
    if (excess) {
      let chars = 0;
      if (el.matches("pre")) chars = Math.max(...el.innerText.split("\n").map((l) => l.length));
      wide.push({kind: kindOf(el), where: where(el), text: label(el), excess: Math.round(excess), how, chars});
    }
  }
  const textBox = (el) => el.matches("div.output.stream, div.output.stderr, div.output.text_plain");
  const split = [];
  for (const out of column.querySelectorAll("div.cell_output")) {
    const boxes = [...out.children].filter((el) => el.tagName !== "SCRIPT");
    let run = 0;
    let longest = 0;
    for (const el of boxes) {
      run = textBox(el) ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    if (longest > 1) split.push({where: where(out), text: label(out), boxes: longest});
  }
  // the column in characters of the code font, for the report
  const pre = column.querySelector("div.cell_input div.highlight pre, div.highlight pre");
  let columnChars = 0;
  if (pre) {
    const probe = document.createElement("span");
    probe.textContent = "x".repeat(100);
    probe.style.whiteSpace = "pre";
    pre.appendChild(probe);
    const charWidth = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const s = getComputedStyle(pre);
    columnChars = Math.floor((pre.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)) / charWidth);
  }
  return {wide, split, columnChars, columnPx: Math.round(colRight - colRect.left)};
}
"""

# At phone width: elements of the article that reach past the screen and are not inside a box
# that scrolls or clips them; and whether the page itself scrolls sideways.
_PHONE_JS = r"""
() => {
  const column = document.querySelector("article.bd-article") || document.body;
  const right = document.documentElement.clientWidth;
  const clips = (el) => !["visible", ""].includes(getComputedStyle(el).overflowX);
  const out = [];
  for (const el of column.querySelectorAll("*")) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.right <= right + 1) continue;
    let clipped = false;
    for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
      if (clips(box) && box.getBoundingClientRect().right <= right + 1) { clipped = true; break; }
    }
    if (clipped) continue;
    // report the outermost offender only
    if (out.some((o) => o.el.contains(el))) continue;
    out.push({el, text: `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}: ` +
      (el.innerText || "").replace(/\s+/g, " ").trim().slice(0, 60), excess: Math.round(rect.right - right)});
  }
  const doc = document.scrollingElement || document.documentElement;
  return {sticking: out.map(({text, excess}) => ({text, excess})),
          pageScroll: Math.max(0, doc.scrollWidth - doc.clientWidth)};
}
"""


def _open(browser, url: str, viewport: dict):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.goto(url, wait_until="networkidle", timeout=60_000)
    page.evaluate("async () => { if (window.MathJax?.startup?.promise) await window.MathJax.startup.promise; }")
    page.evaluate(_OPEN_ALL_JS)
    page.wait_for_timeout(300)  # fonts and the unfolded blocks lay out
    return context, page


def measure_page(browser, url: str) -> dict:
    """Over-wide elements and split outputs at 1280×900 (see the module docstring)."""
    context, page = _open(browser, url, DESKTOP)
    try:
        return page.evaluate(_LAYOUT_JS)
    finally:
        context.close()


def measure_phone(browser, url: str) -> dict:
    """What sticks out of a 390 px screen."""
    context, page = _open(browser, url, PHONE)
    try:
        return page.evaluate(_PHONE_JS)
    finally:
        context.close()


def layout_problems(docname: str, result: dict) -> list[str]:
    """The measurements as sentences, minus the elements of :data:`SCROLLS_ON_PURPOSE` and
    :data:`PENDING`; a pending entry that matches nothing is a problem too."""
    allowed = {**SCROLLS_ON_PURPOSE.get(docname, {}), **PENDING.get(docname, {})}
    problems = []
    for key in PENDING.get(docname, {}):
        if not any(key in w["text"] for w in result["wide"]):
            problems.append(f"PENDING names {key!r}, which is no longer over-wide: remove it from PENDING")
    for w in result["wide"]:
        if any(key in w["text"] for key in allowed):
            continue
        chars = f", longest line {w['chars']} characters" if w["chars"] else ""
        problems.append(
            f"{w['kind']} at {w['where']} is {w['excess']} px wider than its column ({w['how']}{chars}): {w['text']!r}"
        )
    for s in result["split"]:
        problems.append(f"cell output at {s['where']} split into {s['boxes']} text boxes: {s['text']!r}")
    return problems


def phone_problems(result: dict) -> list[str]:
    problems = [f"sticks out of a 390 px screen by {s['excess']} px: {s['text']!r}" for s in result["sticking"]]
    if result["pageScroll"]:
        problems.append(f"the page scrolls sideways by {result['pageScroll']} px at 390 px")
    return problems


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_nothing_is_wider_than_the_column_and_outputs_are_whole(browser, site, docname):
    result = measure_page(browser, site.url(f"{docname}.html"))
    problems = layout_problems(docname, result)
    assert not problems, (
        f"{docname} at 1280 px (code column {result['columnChars']} characters, {result['columnPx']} px):\n  "
        + "\n  ".join(problems)
    )


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_nothing_sticks_out_of_a_phone_screen(browser, site, docname):
    problems = phone_problems(measure_phone(browser, site.url(f"{docname}.html")))
    assert not problems, f"{docname} at 390 px:\n  " + "\n  ".join(problems)


def test_exceptions_name_pages_of_the_book_with_a_reason():
    for exceptions in (SCROLLS_ON_PURPOSE, PENDING):
        assert set(exceptions) <= set(TOC_PAGES)
        assert all(reason.strip() for entries in exceptions.values() for reason in entries.values())


# --- the checker can fail ----------------------------------------------------------------------

_COLUMN_CSS = """
body { margin: 0; }
article.bd-article { max-width: 600px; padding: 0 10px; box-sizing: border-box; }
pre { overflow: auto; font-family: monospace; }
div.cell_output .output { max-width: 100%; overflow-x: auto; }
.pst-scrollable-table-container { overflow-x: auto; }
"""

_LONG = "x = " + " + ".join(f"value_{i}" for i in range(40))

WIDE_PAGE = f"""<!DOCTYPE html><html><head><title>wide</title><style>{_COLUMN_CSS}</style>
<script>window.MathJax = {{}};</script><script defer src="mathjax/tex-mml-chtml.js"></script></head>
<body><article class="bd-article"><section id="wide">
<div class="cell"><div class="cell_input"><div class="highlight"><pre>{_LONG}</pre></div></div>
<div class="cell_output"><div class="output stream"><div class="highlight"><pre>first print</pre></div></div>
<div class="output stream"><div class="highlight"><pre>second print</pre></div></div>
<div class="output stream"><div class="highlight"><pre>third print</pre></div></div></div></div>
<div class="pst-scrollable-table-container"><table><tr>{"<td>a wide table cell</td>" * 30}</tr></table></div>
<div class="math">\\[{" + ".join(f"a_{{{i}}} b_{{{i}}}" for i in range(60))}\\]</div>
</section></article></body></html>"""

NARROW_PAGE = f"""<!DOCTYPE html><html><head><title>narrow</title><style>{_COLUMN_CSS}</style>
<script>window.MathJax = {{}};</script><script defer src="mathjax/tex-mml-chtml.js"></script></head>
<body><article class="bd-article"><section id="narrow">
<div class="cell"><div class="cell_input"><div class="highlight"><pre>x = 1 + 2</pre></div></div>
<div class="cell_output"><div class="output stream"><div class="highlight"><pre>one print
and its second line</pre></div></div><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="10" height="10">
<div class="output stream"><div class="highlight"><pre>text after a figure</pre></div></div></div></div>
<div class="pst-scrollable-table-container"><table><tr><td>a</td><td>b</td></tr></table></div>
<div class="math">\\[a + b = c\\]</div>
<details><summary>hidden input</summary><div class="highlight"><pre>y = 2</pre></div></details>
</section></article></body></html>"""

HIDDEN_WIDE_PAGE = f"""<!DOCTYPE html><html><head><title>hidden</title><style>{_COLUMN_CSS}</style></head>
<body><article class="bd-article"><section id="hidden">
<details><summary>hidden input</summary><div class="highlight"><pre>{_LONG}</pre></div></details>
<div class="sticking" style="width: 2000px">a box wider than a phone</div>
</section></article></body></html>"""


def test_checker_reports_a_wide_page(browser, tmp_path):
    from pagecheck import SiteServer

    for name, text in [("wide", WIDE_PAGE), ("narrow", NARROW_PAGE), ("hidden", HIDDEN_WIDE_PAGE)]:
        (tmp_path / f"{name}.html").write_text(text, encoding="utf-8")
    (tmp_path / "mathjax").symlink_to(ROOT / "_vendor" / "mathjax")  # the book's own MathJax
    with SiteServer(tmp_path) as server:
        wide_result = measure_page(browser, server.url("wide.html"))
        wide = layout_problems("wide", wide_result)
        narrow = measure_page(browser, server.url("narrow.html"))
        hidden = layout_problems("hidden", measure_page(browser, server.url("hidden.html")))
        phone_wide = phone_problems(measure_phone(browser, server.url("hidden.html")))
        phone_narrow = phone_problems(measure_phone(browser, server.url("narrow.html")))
    text = "\n".join(wide)
    assert "code block at #wide" in text and "longest line" in text, wide
    assert "table at #wide" in text, wide
    assert "display equation at #wide" in text, wide
    assert "split into 3 text boxes: 'first print second print third print'" in text, wide
    assert len(wide) == 4, wide
    assert not layout_problems("narrow", narrow), narrow
    assert narrow["columnChars"] > 0
    assert len(hidden) == 1 and hidden[0].startswith("code block at #hidden"), hidden  # a closed <details> too
    assert any("div.sticking" in p for p in phone_wide), phone_wide
    assert any("scrolls sideways" in p for p in phone_wide), phone_wide
    assert not phone_narrow, phone_narrow
    # a PENDING entry that matches no over-wide element is reported
    PENDING["narrow"] = {"x = 1 + 2": "synthetic"}
    try:
        stale = layout_problems("narrow", narrow)
    finally:
        del PENDING["narrow"]
    assert len(stale) == 1 and "no longer over-wide" in stale[0], stale
    # an element named in SCROLLS_ON_PURPOSE is not reported
    SCROLLS_ON_PURPOSE["wide"] = {"value_0": "synthetic"}
    try:
        allowed = layout_problems("wide", wide_result)
    finally:
        del SCROLLS_ON_PURPOSE["wide"]
    assert len(allowed) == 3 and not any("code block" in p for p in allowed), allowed
