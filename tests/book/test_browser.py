"""The rendered book in a real browser: headless Chromium (the Debian package) driven by Playwright.

* Every page of _toc.yml, from the session's build (the ``book`` fixture), served on 127.0.0.1:
  no console error, no untypeset TeX, no missing image, no broken internal link
  (tests/pagecheck.py). Screenshots go to ``_build/screenshots/`` with ``report.txt``
  (page weights and load times).
* Every control of every page (range input, select, button in an output) is moved through all
  its positions without a kernel, and the picture it drives changes each time; no ipywidgets view,
  state or manager is in a static page. The checker is shown to fail on a dead control.
* The live widget: the running-example chapter, converted to a notebook with jupytext, runs in
  Voilà (a Jupyter server with a kernel from this environment); the explorer shows its live
  ipywidgets panel there, and moving the ε and σ sliders redraws the result, with no kernel error.
* The checker itself can fail: a synthetic page with raw ``$$x$$``, a console error, a missing
  image and a broken link is reported as such.

Skips (with the reason) only when Chromium is not installed: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from bookbuild import ROOT, source_file, toc_pages
from pagecheck import SiteServer, check_page

pytestmark = pytest.mark.slow

SCREENSHOTS = ROOT / "_build" / "screenshots"
TOC_PAGES = toc_pages()
LIVE_CHAPTER = "chapters/running_example"
VOILA_START_TIMEOUT_S = 60
VOILA_RENDER_TIMEOUT_S = 150  # Voilà runs the whole chapter before the widget appears
WIDGET_UPDATE_TIMEOUT_S = 60


def _shot_name(docname: str) -> str:
    return docname.replace("/", "__") + ".png"


@pytest.fixture(scope="session")
def page_reports():
    """Collects one PageReport per page; writes _build/screenshots/report.txt at the end."""
    reports = {}
    yield reports
    if reports:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        lines = [f"{'page':<40} {'HTML KB':>8} {'loaded KB':>10} {'seconds':>8}  problems"]
        for docname, r in reports.items():
            lines.append(f"{docname:<40} {r.html_kb:8.0f} {r.total_kb:10.0f} {r.seconds:8.1f}  {len(r.problems)}")
        (SCREENSHOTS / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- every page of the book ------------------------------------------------------------------


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_page_renders_cleanly_in_chromium(browser, site, book, page_reports, docname):
    report = check_page(
        browser, site.url(f"{docname}.html"), book.html_dir, screenshot=SCREENSHOTS / _shot_name(docname)
    )
    page_reports[docname] = report
    assert not report.problems, f"{docname} in Chromium ({report.url}):\n  " + "\n  ".join(report.problems)


# --- every control of every page changes its picture ------------------------------------------

# The book's controls live in cell outputs; each drives the picture of its explorer (or, for any
# other control, of its output). Theme controls (sidebar toggles) are not in outputs; the copy
# buttons that sphinx-copybutton adds to output code blocks drive no picture and are skipped.
_CONTROLS_JS = """
() => {
  const controls = [...document.querySelectorAll(
    ".cell_output input[type=range], .cell_output select, .cell_output button, "
    + ".bl-explorer input[type=range], .bl-explorer select, .bl-explorer button")]
    .filter((el) => !el.classList.contains("copybtn"));  // sphinx-copybutton's, on every code block
  return [...new Set(controls)].map((el, i) => {
    el.setAttribute("data-check-control", String(i));
    const label = (el.labels && el.labels[0] && el.labels[0].textContent)
      || el.getAttribute("aria-label") || el.tagName.toLowerCase();
    const positions = el.tagName === "SELECT" ? el.options.length
      : el.type === "range" ? Math.round((Number(el.max) - Number(el.min)) / Number(el.step || 1)) + 1 : 1;
    return {index: i, tag: el.tagName.toLowerCase(), label: label.trim(), positions: positions};
  });
}
"""

_PICTURE_JS = """
(i) => {
  const el = document.querySelector(`[data-check-control="${i}"]`);
  const box = el.closest(".bl-explorer") || el.closest(".cell_output");
  const img = box && box.querySelector("img");
  return img ? img.getAttribute("src") : null;
}
"""

# ipywidgets views or state rendered in a static page: a reader would get controls that cannot work
_IPYWIDGETS_JS = """
() => {
  const found = [];
  for (const sel of [".widget-slider", ".jupyter-widgets", ".widget-vbox", ".widget-output",
                     'script[type="application/vnd.jupyter.widget-view+json"]',
                     'script[type="application/vnd.jupyter.widget-state+json"]',
                     'script[src*="embed-amd"]', 'script[src*="require.js"]']) {
    const n = document.querySelectorAll(sel).length;
    if (n) found.push(`${n} × ${sel}`);
  }
  const text = [...document.querySelectorAll(".cell_output")].map((el) => el.innerText).join("\\n");
  const repr = text.match(/\\b(VBox|HBox|interactive|IntSlider|FloatSlider|Dropdown)\\(/);
  if (repr) found.push(`the text repr of a widget: ${repr[0]}`);
  return found;
}
"""


def _move(page, control, position: int) -> None:
    handle = page.locator(f'[data-check-control="{control["index"]}"]')
    if control["tag"] == "select":
        handle.select_option(index=position)
    elif control["tag"] == "input":
        low = float(handle.get_attribute("min") or 0)
        step = float(handle.get_attribute("step") or 1)
        value = low + position * step
        handle.fill(f"{value:g}")  # sets the value and fires "input"
    else:
        handle.click()


def _picture_after_move(page, index: int, old, timeout_ms: int = 2000):
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        src = page.evaluate(_PICTURE_JS, index)
        if src != old or time.monotonic() > deadline:
            return src
        page.wait_for_timeout(50)


def dead_controls(page) -> list[str]:
    """Problems with the controls of the loaded ``page``: each control in an output is moved through
    all its positions (a button is clicked), and its picture must change at every move; no
    ipywidgets view, state or manager may be in the page."""
    problems = [f"ipywidgets in the static page: {hit}" for hit in page.evaluate(_IPYWIDGETS_JS)]
    for control in page.evaluate(_CONTROLS_JS):
        name = f"{control['tag']} {control['label']!r}"
        src = page.evaluate(_PICTURE_JS, control["index"])
        if src is None:
            problems.append(f"{name} drives no picture")
            continue
        if control["tag"] == "button":
            moves = [0]
        else:
            start = page.locator(f'[data-check-control="{control["index"]}"]')
            current = start.evaluate(
                "(el) => el.tagName === 'SELECT' ? el.selectedIndex : "
                "Math.round((Number(el.value) - Number(el.min)) / Number(el.step || 1))"
            )
            # every other position, then back to the start: each move must change the picture
            moves = [p for p in range(control["positions"]) if p != current] + [current]
            if control["positions"] < 2:
                problems.append(f"{name} has a single position")
                continue
        for position in moves:
            _move(page, control, position)
            new = _picture_after_move(page, control["index"], src)
            if new == src:
                problems.append(f"{name}: moving it to position {position} did not change its picture")
                break
            src = new
    return problems


def _pages_with_controls(book) -> list[str]:
    return [doc for doc in TOC_PAGES if re.search(r'<(select|input type="range")', book.page(doc))]


@pytest.mark.parametrize("docname", TOC_PAGES)
def test_every_control_changes_its_picture(browser, site, book, docname):
    """On every page, every control of an output (range input, select, button) is moved through
    all its positions and the picture it drives changes each time, without a kernel; no
    ipywidgets control is rendered."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(site.url(f"{docname}.html"), wait_until="load")
        problems = dead_controls(page)
    finally:
        context.close()
    assert not problems, f"{docname}:\n  " + "\n  ".join(problems)


def test_the_chapters_with_a_live_panel_have_a_static_one(book):
    """Each chapter whose panel is live in a notebook has its precomputed viewer in the page."""
    pages = [doc for doc in TOC_PAGES if "bl-explorer" in book.page(doc)]
    for chapter in (
        "chapters/running_example",
        "chapters/tuning_beta",
        "chapters/implicit_differentiation",
        "chapters/unrolling",
        "chapters/single_level",
        "chapters/single_double_loop",
        "chapters/case_studies",
    ):
        if chapter in TOC_PAGES:
            assert chapter in pages, f"{chapter} has no precomputed explorer"


# --- the checker can fail ----------------------------------------------------------------------

BROKEN_PAGE = """<!DOCTYPE html><html><head><title>broken</title></head><body>
<p>Display math that nobody typeset: $$x^2 + y^2$$ and inline <span class="math">\\(\\alpha\\)</span>.</p>
<pre>$$ in a code block is fine $$</pre>
<img src="missing.png" alt="gone">
<a href="nowhere.html">a page that does not exist</a>
<a href="#no-such-anchor">an anchor that does not exist</a>
<a href="#here" id="here">an anchor that exists</a>
<a href="https://example.org/">external links are not followed</a>
<script>console.error("something broke");</script>
</body></html>"""

CLEAN_PAGE = """<!DOCTYPE html><html><head><title>clean</title></head><body>
<p id="top">Plain text with a price of 5 dollars, and code: <code>$$x$$</code>.</p>
<a href="#top">back to top</a> <a href="broken.html">the other page</a>
</body></html>"""


MATH_PAGE = """<!DOCTYPE html><html><head><title>math</title>
<script>window.MathJax = {tex: {macros: {R: "\\\\mathbb{R}"}}};</script>
<script defer src="mathjax/tex-mml-chtml.js"></script></head><body>
<p>Typeset: <span class="math">\\(x \\in \\R^2\\)</span>.</p>
<p>Undefined macro: <span class="math">\\(\\notamacro{x}\\)</span>.</p>
<p>TeX error: <span class="math">\\(x^1^2\\)</span>.</p>
</body></html>"""


def test_checker_reports_a_broken_page(browser, tmp_path):
    (tmp_path / "broken.html").write_text(BROKEN_PAGE, encoding="utf-8")
    (tmp_path / "clean.html").write_text(CLEAN_PAGE, encoding="utf-8")
    (tmp_path / "math.html").write_text(MATH_PAGE, encoding="utf-8")
    (tmp_path / "mathjax").symlink_to(ROOT / "_vendor" / "mathjax")  # the book's own MathJax
    with SiteServer(tmp_path) as server:
        broken = check_page(browser, server.url("broken.html"), tmp_path)
        clean = check_page(browser, server.url("clean.html"), tmp_path)
        math = check_page(browser, server.url("math.html"), tmp_path)
    problems = "\n".join(broken.problems)
    assert "console error: something broke" in problems
    assert "untypeset TeX in the text: 'Display math that nobody typeset: $$x^2" in problems
    assert "math element without mjx-container: '\\\\(\\\\alpha\\\\)'" in problems
    assert "missing image: missing.png" in problems
    assert "broken link 'nowhere.html'" in problems
    assert "broken link '#no-such-anchor'" in problems
    assert "in a code block" not in problems and "#here" not in problems and "example.org" not in problems
    assert not clean.problems, clean.problems
    assert [p for p in math.problems if "undefined macro" in p and "notamacro" in p], math.problems
    assert [p for p in math.problems if p.startswith("MathJax error") and "notamacro" not in p], math.problems
    assert len(math.problems) == 2, math.problems  # the typeset \\(x \\in \\R^2\\) is fine


def _viewer(frames, dead: bool = False) -> str:
    """A two-axis viewer made by the library (a working control), optionally with one dead control."""
    import io

    from PIL import Image

    from bilevel_lib.book.viz import Axis, viewer_html

    def png(value):
        buffer = io.BytesIO()
        Image.new("L", (4, 4), value).save(buffer, format="png")
        return buffer.getvalue()

    axes = [Axis("a", "a", (0, 1, 2), ("0", "1", "2"), "slider"), Axis("b", "b", ("x", "y"), ("x", "y"), "dropdown")]
    # frames[i] is the value of each grid point; equal values give equal frames
    markup = viewer_html(axes, [png(v) for v in frames], [""] * 6, (0, 0))
    if dead:
        markup += '<div class="cell_output"><img src="data:image/png;base64,AAAA" alt=""><input type="range" min="0" max="3" value="0"></div>'
    return markup


def test_control_checker_fails_on_a_dead_control(browser, tmp_path):
    pages = {
        "working.html": _viewer([0, 40, 80, 120, 160, 200]),
        # moving b at a = 0 changes nothing (frames 0 and 1 are equal)
        "dead-axis.html": _viewer([0, 0, 80, 120, 160, 200]),
        "dead-input.html": _viewer([0, 40, 80, 120, 160, 200], dead=True),
        "ipywidgets.html": '<div class="cell_output"><div class="jupyter-widgets widget-slider">x</div>'
        "<pre>VBox(children=(IntSlider(value=1),))</pre></div>"
        '<script type="application/vnd.jupyter.widget-view+json">{}</script>',
    }
    for name, body in pages.items():
        (tmp_path / name).write_text(f"<!DOCTYPE html><html><body>{body}</body></html>", encoding="utf-8")
    found = {}
    with SiteServer(tmp_path) as server:
        context = browser.new_context()
        page = context.new_page()
        for name in pages:
            page.goto(server.url(name), wait_until="load")
            found[name] = dead_controls(page)
        context.close()
    assert found["working.html"] == [], found["working.html"]
    assert found["dead-axis.html"] == ["select 'b': moving it to position 1 did not change its picture"]
    assert found["dead-input.html"] == ["input 'input': moving it to position 1 did not change its picture"]
    problems = "\n".join(found["ipywidgets.html"])
    for hit in (".widget-slider", ".jupyter-widgets", "widget-view+json", "the text repr of a widget: VBox("):
        assert hit in problems, found["ipywidgets.html"]


# --- live widgets in Voilà ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_http(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Voilà exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"Voilà did not answer on {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def voila_notebook(tmp_path_factory):
    """The chapter as an .ipynb (Voilà does not read MyST markdown), plus a Voilà server for it."""
    import jupytext
    import nbformat

    work = tmp_path_factory.mktemp("voila")
    notebook = jupytext.read(source_file(LIVE_CHAPTER))
    path = work / f"{Path(LIVE_CHAPTER).name}.ipynb"
    nbformat.write(notebook, path)
    port = _free_port()
    log = (work / "voila.log").open("w")
    env = {
        **os.environ,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / "config"),  # no user configuration
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(path),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            _wait_for_http(f"http://127.0.0.1:{port}/", proc, VOILA_START_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as err:
            log.flush()
            tail = (work / "voila.log").read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"{err}\n--- Voilà log ---\n{tail}", pytrace=False)
        yield f"http://127.0.0.1:{port}/", work / "voila.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


_FIND_WIDGET_JS = """
(labels) => {
  // the widget's box: the smallest VBox holding every slider label and an output image
  const boxes = [...document.querySelectorAll(".widget-vbox")].filter((box) =>
    labels.every((label) => [...box.querySelectorAll(".widget-label")].some((l) => l.textContent.trim() === label)));
  if (!boxes.length) return null;
  const box = boxes[boxes.length - 1];
  const img = box.querySelector(".widget-output img, .jp-OutputArea img");
  return img ? img.getAttribute("src") : "";
}
"""

# Error outputs: tracebacks and stderr, which the kernel sends for a failing cell or callback
_OUTPUT_TEXT_JS = """
() => [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map((el) => el.innerText).join("\\n")
"""


def _image_src(page, labels):
    return page.evaluate(_FIND_WIDGET_JS, labels)


def _set_slider(page, label: str, value: str) -> None:
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).last
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


ERROR_LINE = re.compile(r"Traceback|Error\b|Exception\b|Warning\b")


def _error_lines(page) -> list[str]:
    return [line for line in page.evaluate(_OUTPUT_TEXT_JS).splitlines() if ERROR_LINE.search(line)]


def _errors_shown(page) -> str:
    errors = _error_lines(page)
    return f"; the page shows: {errors[:10]}" if errors else ""


def _wait_for_new_image(page, labels, old: str, timeout_s: float) -> str:
    """The new image once the widget has redrawn; ``old`` on a timeout or an error output."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = _image_src(page, labels)
        if src and src != old:
            return src
        if _error_lines(page):
            return old
        page.wait_for_timeout(250)
    return old


def test_live_widget_redraws_in_voila(browser, voila_notebook):
    url, log_path = voila_notebook
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console = []
    page.on("console", lambda msg: msg.type == "error" and console.append(msg.text))
    page.on("pageerror", lambda err: console.append(f"uncaught exception: {err}"))
    labels = ["ε", "σ"]
    try:
        page.goto(url, wait_until="load", timeout=VOILA_RENDER_TIMEOUT_S * 1000)
        page.wait_for_function(
            f"() => ({_FIND_WIDGET_JS})({labels!r})", timeout=VOILA_RENDER_TIMEOUT_S * 1000, polling=500
        )
        first = _image_src(page, labels)
        assert first.startswith("data:image/png"), "the widget shows no image before the sliders move"

        _set_slider(page, "ε", "0.1")
        second = _wait_for_new_image(page, labels, first, WIDGET_UPDATE_TIMEOUT_S)
        assert second != first, f"moving the ε slider did not redraw the result{_errors_shown(page)}"

        _set_slider(page, "σ", "0.2")
        third = _wait_for_new_image(page, labels, second, WIDGET_UPDATE_TIMEOUT_S)
        assert third != second, f"moving the σ slider did not redraw the result{_errors_shown(page)}"

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "voila__running_example.png"), full_page=True)
        errors = _error_lines(page)
    finally:
        context.close()
    assert not errors, f"the chapter shows errors in Voilà: {errors[:10]}"
    kernel = [msg for msg in console if re.search(r"kernel", msg, re.IGNORECASE)]
    assert not kernel, f"kernel errors in the browser console: {kernel}"
    server_log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in server_log, f"Voilà's log has a traceback:\n{server_log[-3000:]}"
