"""Sphinx extension (``sphinx.local_extensions`` in _config.yml): the book to take away, and its links.

At the end of every HTML build (``build-finished``), scripts/export_notebooks.py writes each
notebook page of _toc.yml as a clean ``.ipynb`` (no outputs, MyST turned into plain Markdown) into
the site, under ``notebooks/clean/`` and ``notebooks/student/`` (no solutions), with a zip of each
set. The student build (``hide_solutions: true``) writes only the student set.

On each notebook page, the theme's download menu offers that page's notebook instead of the
executed one it copies to ``_sources/`` (which keeps MyST markup that Colab or VS Code show raw),
and the launch menu gets an "Open in Colab" entry next to Binder. Colab opens notebooks from a
GitHub repository only; the clean notebooks are build products, never committed, so the entry
points at the published site's branch of the ``repository:`` of _config.yml
(``bilevel_notebooks_branch``, default ``gh-pages``, where ``ghp-import -n -p -f _build/html``
publishes the site): ``https://colab.research.google.com/github/<owner>/<repo>/blob/gh-pages/
notebooks/clean/<page>.ipynb``.

With ``bilevel_pdf`` (default true) and Chromium installed, scripts/print_pdf.py then prints every
page of _toc.yml into ``pdf/bilevel-book.pdf`` (``pdf/bilevel-book-student.pdf`` on the student
site), and every page's download menu links to it. Without Chromium there is no PDF and no link
(the build says so).
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

from sphinx.util import logging

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_notebooks  # noqa: E402 - this folder is on the path for local extensions anyway
import print_pdf  # noqa: E402

LOGGER = logging.getLogger(__name__)
COLAB = "https://colab.research.google.com/github"


def variants(config) -> tuple[str, ...]:
    """The notebook sets a build carries: the student site has no clean (solutions) set."""
    return ("student",) if config.hide_solutions else export_notebooks.VARIANTS


def colab_url(config, docname: str, variant: str) -> str | None:
    """Colab's URL of a page's notebook on the published branch, or None without a GitHub repository."""
    theme = config.html_theme_options or {}
    parts = urlsplit(theme.get("repository_url", ""))
    owner_repo = parts.path.strip("/").removesuffix(".git")
    if parts.netloc != "github.com" or owner_repo.count("/") != 1:
        return None
    path = export_notebooks.notebook_path(variant, docname)
    return f"{COLAB}/{owner_repo}/blob/{config.bilevel_notebooks_branch}/{path}"


def _notebook_pages(app) -> set[str]:
    if not hasattr(app, "_bilevel_notebook_pages"):
        app._bilevel_notebook_pages = {doc for doc, _ in export_notebooks.notebook_pages(Path(app.srcdir))}
    return app._bilevel_notebook_pages


def pdf_path(config) -> str:
    """Where the PDF goes, relative to the site root."""
    return f"{print_pdf.PDF_DIR}/{print_pdf.pdf_name(bool(config.hide_solutions))}"


def check_pdf(app):
    app._bilevel_pdf = bool(app.config.bilevel_pdf) and print_pdf.find_chromium() is not None
    if app.config.bilevel_pdf and not app._bilevel_pdf:
        LOGGER.info("no PDF of the book: Chromium is not installed (apt-get install -y chromium)")


def add_buttons(app, pagename, templatename, context, doctree):
    buttons = context.get("header_buttons")
    if buttons is None:
        return
    pathto = context["pathto"]
    sets = variants(app.config)
    notebook_page = pagename in _notebook_pages(app)
    pdf = [
        {
            "type": "link",
            "url": pathto(pdf_path(app.config), 1),
            "text": "whole book (.pdf)",
            "tooltip": "Download the whole book as one PDF" + (" (no solutions)" if app.config.hide_solutions else ""),
            "icon": "fas fa-book",
            "label": "download-book-pdf-button",
        }
    ]
    if not getattr(app, "_bilevel_pdf", False):
        pdf = []
    if not notebook_page and not pdf:
        return
    downloads = [
        {
            "type": "link",
            "url": pathto(export_notebooks.notebook_path(variant, pagename), 1),
            "text": ".ipynb" if variant == "clean" or len(sets) == 1 else ".ipynb (student)",
            "tooltip": (
                "Download this page as a notebook without solutions (no outputs: run it)"
                if variant == "student"
                else "Download this page as a notebook (no outputs: run it)"
            ),
            "icon": "fas fa-code",
            "label": f"download-{variant}-notebook-button",
        }
        for variant in sets
    ] + [
        {
            "type": "link",
            "url": pathto(export_notebooks.zip_path(variant), 1),
            "text": "all notebooks (.zip)" if variant == "clean" or len(sets) == 1 else "student notebooks (.zip)",
            "tooltip": "Download every chapter as a notebook, in one zip",
            "icon": "fas fa-file-zipper",
            "label": f"download-{variant}-zip-button",
        }
        for variant in sets
    ]
    downloads = (downloads if notebook_page else []) + pdf
    group = next((b for b in buttons if b.get("label") == "download-buttons"), None)
    if group is None:  # the student site has no theme download menu (no page sources there)
        group = {
            "type": "group",
            "tooltip": "Download this page",
            "icon": "fas fa-download",
            "buttons": [],
            "label": "download-buttons",
        }
        buttons.insert(0, group)
    # The theme's ".ipynb" is the executed notebook with MyST markup: ours replaces it.
    kept = [b for b in group["buttons"] if b.get("label") != "download-notebook-button"]
    group["buttons"] = downloads + kept

    url = colab_url(app.config, pagename, sets[0])
    launch = next((b for b in buttons if b.get("label") == "launch-buttons"), None)
    if notebook_page and url and launch is not None:
        launch["buttons"].append(
            {
                "type": "link",
                "text": "Colab",
                "tooltip": "Open this page's notebook in Colab",
                "icon": "_static/images/logo_colab.png",
                "url": url,
                "label": "colab-launch-button",
            }
        )


def export(app, exception):
    if exception is not None or app.builder.name not in {"html", "dirhtml"}:
        return
    root = Path(app.srcdir)
    resolved = export_notebooks.Resolved.from_env(
        app.env,
        Path(app.outdir).parent / "jupyter_execute",
        [root / name for name in app.config.bibtex_bibfiles],
    )
    written = export_notebooks.export_all(resolved, Path(app.outdir), variants(app.config), root=root)
    size = sum(path.stat().st_size for path in written) / 1024
    LOGGER.info(f"notebooks ({', '.join(variants(app.config))}): {len(written)} files ({size:.0f} KB) in notebooks/")
    if getattr(app, "_bilevel_pdf", False):
        pdf = print_pdf.print_book(Path(app.outdir), Path(app.outdir) / pdf_path(app.config), root=root)
        LOGGER.info(f"the book as one PDF: {pdf.stat().st_size / 1e6:.1f} MB in {pdf_path(app.config)}")


def setup(app):
    app.setup_extension("sphinx_exercise")  # defines hide_solutions
    app.add_config_value("bilevel_notebooks_branch", "gh-pages", "html", types=[str])
    app.add_config_value("bilevel_pdf", True, "html", types=[bool])
    app.connect("builder-inited", check_pdf)
    app.connect("html-page-context", add_buttons, priority=600)  # after the theme's buttons (501)
    app.connect("build-finished", export)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
