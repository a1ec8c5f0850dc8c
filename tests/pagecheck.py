"""Open rendered pages in headless Chromium and report what a reader would see go wrong.

Used by tests/test_browser.py. Chromium is the Debian package (``/usr/bin/chromium``), driven by
Playwright's Python package through ``executable_path``: Playwright never downloads a browser here.

:func:`check_page` reports, for one page:

* console errors, uncaught exceptions and failed requests (a 404 for a script or an image, or any
  attempt to reach the network: the pages must work offline);
* untypeset TeX: ``$$``, ``\\(``, ``\\[``, ``\\begin{`` or ``$...\\cmd...$`` left in the text
  outside code, math elements (``.math``) that MathJax did not turn into ``mjx-container``, and
  TeX errors that MathJax rendered in red (``mjx-merror``, or an undefined macro's name);
* missing images (``naturalWidth == 0`` once loading has finished);
* broken internal links: an ``<a href>`` to a page of the site that does not exist, or to an
  anchor that no element of the target page has.
"""

from __future__ import annotations

import functools
import http.server
import posixpath
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# Flags without which Chromium's own background connections are refused in a sandbox without
# internet (and which keep it from phoning home anyway). Playwright adds --headless and a fresh
# temporary --user-data-dir itself; --no-sandbox because the tests may run as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "install it with `apt-get install -y chromium` (.ci/run does this when it can)"

# Settle time: MathJax and the widget manager typeset after "load"; wait for a clean page up to this.
SETTLE_TIMEOUT_MS = 8000


def find_chromium() -> str | None:
    """The path of the system Chromium, or None."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch(playwright):
    """Headless system Chromium through Playwright (no browser download)."""
    path = find_chromium()
    if path is None:
        raise FileNotFoundError(f"Chromium is not installed: {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class SiteServer:
    """Serve a directory on 127.0.0.1 (a free port) from a background thread.

    >>> with SiteServer(html_dir) as server:  # doctest: +SKIP
    ...     server.url("chapters/running_example.html")
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        handler = functools.partial(_QuietHandler, directory=str(self.directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"


@dataclass
class PageReport:
    url: str
    problems: list[str] = field(default_factory=list)
    html_kb: float = 0.0  # the HTML document itself
    total_kb: float = 0.0  # everything the page loaded (HTML, scripts, styles, fonts, images)
    seconds: float = 0.0


# --- checks that run inside the page ---------------------------------------------------------

_RAW_TEX_JS = r"""
() => {
  const skipTags = new Set(["SCRIPT", "STYLE", "PRE", "CODE", "TEXTAREA", "NOSCRIPT",
                            "MJX-CONTAINER", "MJX-ASSISTIVE-MML", "KBD", "SAMP"]);
  const skipClasses = ["highlight", "cell_input"];  // code blocks and code cells
  const pattern = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\end\{|\$[^$\s][^$]*?\\[A-Za-z]+[^$]*?\$/;
  const hits = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let skipped = false;
    for (let el = node.parentElement; el; el = el.parentElement) {
      if (skipTags.has(el.tagName) ||
          (el.classList && skipClasses.some((c) => el.classList.contains(c)))) {
        skipped = true;
        break;
      }
    }
    if (skipped) continue;
    const text = node.textContent;
    const match = text.match(pattern);
    if (match) {
      const start = Math.max(0, match.index - 40);
      hits.push(text.slice(start, match.index + 60).replace(/\s+/g, " ").trim());
    }
  }
  const untypeset = [...document.querySelectorAll("span.math, div.math")]
    .filter((el) => !el.querySelector("mjx-container"))
    .map((el) => el.textContent.replace(/\s+/g, " ").trim().slice(0, 80));
  const errors = [...document.querySelectorAll("mjx-merror")]
    .map((el) => el.getAttribute("data-mjx-error") || el.textContent.slice(0, 80));
  // undefined macros: MathJax's noundefined extension shows their name in red instead of failing
  // (CHTML draws glyphs with CSS, so read the name from the assistive MathML copy)
  for (const el of document.querySelectorAll('mjx-container mtext[mathcolor="red"]')) {
    const text = el.textContent.trim();
    if (text.startsWith("\\")) errors.push(`undefined macro ${text}`);
  }
  return {raw: hits, untypeset: untypeset, errors: errors};
}
"""

_IMAGES_LOADED_JS = """
() => Promise.all([...document.images].map((img) => img.complete ? null :
  new Promise((resolve) => { img.addEventListener("load", resolve); img.addEventListener("error", resolve); })))
"""

_MISSING_IMAGES_JS = """
() => [...document.images].filter((img) => img.complete && img.naturalWidth === 0)
  .map((img) => (img.getAttribute("src") || "").slice(0, 120) || "(no src)")
"""

_LINKS_JS = """() => [...document.querySelectorAll("a[href]")].map((a) => [a.getAttribute("href"), a.href])"""

_MATHJAX_READY_JS = """
async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }
}
"""

_PAGE_WEIGHT_JS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const html = nav ? (nav.encodedBodySize || nav.transferSize || 0) : 0;
  let total = html;
  for (const entry of performance.getEntriesByType("resource")) {
    total += entry.encodedBodySize || 0;
  }
  return [html, total];
}
"""

_CLEAN_JS = "() => { const r = (" + _RAW_TEX_JS + ")(); return !r.raw.length && !r.untypeset.length; }"


# --- links -----------------------------------------------------------------------------------

_ID_ATTR = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")


@functools.lru_cache(maxsize=256)
def _anchors(path: Path) -> frozenset:
    return frozenset(_ID_ATTR.findall(path.read_text(encoding="utf-8", errors="replace")))


def broken_links(links, origin: str, site_dir: Path) -> list[str]:
    """Links (``[raw href, resolved URL]``) that point into the site but at nothing there."""
    problems = []
    site_dir = Path(site_dir)
    for raw, resolved in links:
        if not raw or raw.startswith(("mailto:", "javascript:", "data:", "tel:")):
            continue
        parts = urlsplit(resolved)
        if f"{parts.scheme}://{parts.netloc}" != origin:
            continue  # external links are not followed (no network)
        path = posixpath.normpath(unquote(parts.path)).lstrip("/")
        target = site_dir / path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link {raw!r}: no {path or 'index.html'} in the site")
            continue
        fragment = unquote(parts.fragment)
        if fragment and target.suffix == ".html" and fragment not in _anchors(target):
            problems.append(f"broken link {raw!r}: {target.name} has no anchor #{fragment}")
    return sorted(set(problems))


# --- one page ---------------------------------------------------------------------------------


def _browser_own(url: str) -> bool:
    """Chromium asks every site for /favicon.ico by itself; the book declares no favicon."""
    return urlsplit(url).path == "/favicon.ico"


def _browser_own_message(msg) -> bool:
    location = (msg.location or {}).get("url", "")
    return _browser_own(location) and "Failed to load resource" in msg.text


def _wait_until_quiet(page, inflight: dict, timeout_s: float, quiet_s: float = 0.5) -> None:
    """Wait until no request has been in flight for ``quiet_s`` (late fonts, widget modules)."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if inflight["n"] <= 0 and time.perf_counter() - inflight["last"] >= quiet_s:
            return
        page.wait_for_timeout(100)


def check_page(
    browser, url: str, site_dir: Path, screenshot: Path | None = None, timeout_ms: int = 60_000
) -> PageReport:
    """Load ``url`` as a first-time reader would (a fresh browser context: no cookies, no local
    storage) and report the problems that reader would see."""
    report = PageReport(url)
    start = time.perf_counter()
    origin = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console, failed = [], []
    inflight = {"n": 0, "last": time.perf_counter()}

    def _started(_request):
        inflight["n"] += 1
        inflight["last"] = time.perf_counter()

    def _ended(_request):
        inflight["n"] -= 1
        inflight["last"] = time.perf_counter()

    page.on("request", _started)
    page.on("requestfinished", _ended)
    page.on("requestfailed", _ended)
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not _browser_own_message(msg)
            and console.append(
                f"console error: {msg.text}" + (f" ({msg.location.get('url', '')})" if msg.location else "")
            )
        ),
    )
    page.on("pageerror", lambda err: console.append(f"uncaught exception: {err}"))
    page.on("requestfailed", lambda req: failed.append(f"request failed: {req.url} ({req.failure})"))
    page.on(
        "response",
        lambda resp: (
            resp.status >= 400 and not _browser_own(resp.url) and failed.append(f"HTTP {resp.status} for {resp.url}")
        ),
    )
    try:
        page.goto(url, wait_until="networkidle", timeout=timeout_ms)
        page.evaluate(_MATHJAX_READY_JS)
        page.evaluate(_IMAGES_LOADED_JS)
        try:  # widgets and their labels are typeset after "load": give them a moment
            page.wait_for_function(_CLEAN_JS, timeout=SETTLE_TIMEOUT_MS, polling=200)
        except Exception:  # noqa: BLE001 - a page that stays dirty is reported below
            pass
        _wait_until_quiet(page, inflight, timeout_ms / 1000)

        tex = page.evaluate(_RAW_TEX_JS)
        report.problems += [f"untypeset TeX in the text: {hit!r}" for hit in tex["raw"]]
        report.problems += [f"math element without mjx-container: {m!r}" for m in tex["untypeset"]]
        report.problems += [f"MathJax error: {m!r}" for m in tex["errors"]]
        report.problems += [f"missing image: {src}" for src in page.evaluate(_MISSING_IMAGES_JS)]
        report.problems += broken_links(page.evaluate(_LINKS_JS), origin, site_dir)
        html, total = page.evaluate(_PAGE_WEIGHT_JS)
        report.html_kb, report.total_kb = html / 1024, total / 1024
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    report.problems = console + failed + report.problems
    report.seconds = time.perf_counter() - start
    return report
