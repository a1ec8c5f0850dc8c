"""Print the built book to one PDF, offline: headless Chromium prints each page, pypdf joins them.

    make pdf                          # after `make book`: .venv/bin/python scripts/print_pdf.py
    python scripts/print_pdf.py --html _build/html [--output FILE]

The site is served on 127.0.0.1 and every page of _toc.yml, in order, is opened in the Debian
Chromium (``/usr/bin/chromium``) through Playwright, which never downloads a browser. Before a page
is printed, MathJax has typeset it (``MathJax.startup.promise`` and no ``.math`` element left
untypeset), every image has loaded (lazy ones are made eager), and the solutions, which the pages
show as closed dropdowns, are opened; the plotting code the pages hide stays hidden. The pages are
printed as A4 with the theme's print style (no sidebars or header buttons), then joined into one
file with a bookmark per page, its title.

The default output is ``HTML/pdf/bilevel-book.pdf``, or ``bilevel-book-student.pdf`` for the
student site (a site without ``notebooks/clean/``). scripts/sphinx_downloads.py runs this at the
end of every build when Chromium is installed, and the site's download menus link to it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PDF_DIR = "pdf"
TYPESET_TIMEOUT_MS = 180_000  # per page (load, typeset, print); the library reference is ~180 sheets

# Wait until MathJax has typeset the page and every image has loaded; open the solutions.
PREPARE_JS = r"""
async () => {
  for (const img of document.images) { img.loading = "eager"; }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all(Array.from(document.images).map((img) => img.complete ? null :
    new Promise((done) => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  for (const el of document.querySelectorAll(".solution, .solution-content, .toggle-hidden")) {
    el.classList.remove("toggle-hidden");
    const details = el.closest("details");
    if (details) { details.open = true; }
    for (const inner of el.querySelectorAll("details")) { inner.open = true; }
  }
  for (const details of document.querySelectorAll("details")) {
    if (details.querySelector(".solution, .solution-content") || details.closest(".solution")) {
      details.open = true;
    }
  }
  const untypeset = [...document.querySelectorAll("span.math, div.math")]
    .filter((el) => !el.querySelector("mjx-container")).length;
  const broken = Array.from(document.images).filter((img) => img.naturalWidth === 0).map((img) => img.src);
  return {untypeset, broken, title: document.title};
}
"""


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def toc_pages(root: Path = ROOT) -> list[str]:
    sys.path.insert(0, str(root / "tests"))
    try:
        from bookbuild import toc_pages as pages
    finally:
        sys.path.remove(str(root / "tests"))
    return pages()


def pdf_name(student: bool) -> str:
    """The PDF's file name in the site's pdf/ folder."""
    return "bilevel-book-student.pdf" if student else "bilevel-book.pdf"


def is_student_site(html: Path) -> bool:
    """The student site has no clean (with solutions) notebooks."""
    return not (Path(html) / "notebooks" / "clean").exists()


def page_title(title: str) -> str:
    """The page's own title, without the book's name the theme appends."""
    return title.split(" — ")[0].split(" &#8212; ")[0].strip()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def print_book(html: Path, output: Path | None = None, pages: list[str] | None = None, root: Path = ROOT) -> Path:
    """Print the pages (default: every page of _toc.yml) of the site ``html`` into one PDF."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader, PdfWriter

    html = Path(html).resolve()
    if not (html / "index.html").is_file():
        raise FileNotFoundError(f"html={html}: no index.html there (build the book first)")
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium is not installed: install it with `apt-get install -y chromium`")
    output = Path(output) if output else html / PDF_DIR / pdf_name(is_student_site(html))
    pages = pages or toc_pages(root)
    handler = functools.partial(_Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    writer = PdfWriter()
    problems = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.emulate_media(media="print")
                page.set_default_timeout(TYPESET_TIMEOUT_MS)
                for docname in pages:
                    page.goto(f"http://127.0.0.1:{server.server_address[1]}/{docname}.html", wait_until="load")
                    state = page.evaluate(PREPARE_JS)
                    if state["untypeset"] or state["broken"]:
                        problems.append(f"{docname}: {state['untypeset']} untypeset maths, images {state['broken']}")
                    data = page.pdf(
                        format="A4",
                        print_background=True,
                        margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
                    )
                    start = len(writer.pages)
                    for sheet in PdfReader(io.BytesIO(data)).pages:
                        writer.add_page(sheet)
                    writer.add_outline_item(title=page_title(state["title"]), page_number=start)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    if problems:
        raise RuntimeError("not printed, the pages are not ready: " + "; ".join(problems))
    writer.add_metadata({"/Title": "Bilevel Methods for Image Reconstruction"})
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".pdf.part")
    with partial.open("wb") as file:
        writer.write(file)
    partial.replace(output)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--html", type=Path, default=ROOT / "_build" / "html", help="the built site (default: _build/html)"
    )
    parser.add_argument("--output", type=Path, help="the PDF (default: HTML/pdf/bilevel-book[-student].pdf)")
    args = parser.parse_args(argv)
    path = print_book(args.html, args.output)
    print(f"{path.stat().st_size / 1e6:.1f} MB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
