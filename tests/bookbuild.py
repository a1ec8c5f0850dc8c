"""Helpers shared by the tests that build the book (test_book, test_browser, test_student_build,
test_exercises, test_binder): the pages listed in _toc.yml and one way to run the real build.

Nothing here hard-codes a chapter: every list is read from _toc.yml when the tests run, so a
chapter added to the table of contents is checked by every test at once.
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 3600  # each cell also has its own limit (execute.timeout in _config.yml)
BUILD_FLAGS = ["--all", "-W", "-n", "--keep-going"]  # the Makefile's BUILD_FLAGS


def _docname(path: str) -> str:
    return str(Path(path).with_suffix("")) if Path(path).suffix in {".md", ".ipynb"} else path


def toc_entries() -> list[tuple[str | None, str]]:
    """(part caption, docname) for every page of _toc.yml, in order; the root has caption None."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = [(None, _docname(toc["root"]))]

    def walk(items, caption):
        for entry in items or []:
            if "file" in entry:
                entries.append((caption, _docname(entry["file"])))
            walk(entry.get("sections"), caption)
            walk(entry.get("chapters"), caption)

    for part in toc.get("parts") or []:
        walk(part.get("chapters"), part.get("caption"))
    walk(toc.get("chapters"), None)
    walk(toc.get("sections"), None)
    return entries


def toc_pages() -> list[str]:
    """Docnames listed in _toc.yml (root, parts, chapters, sections), in order."""
    return [docname for _, docname in toc_entries()]


def toc_chapters(caption: str = "Chapters") -> list[str]:
    """Docnames of the part of _toc.yml with this caption (the numbered chapters)."""
    return [docname for part, docname in toc_entries() if part == caption]


def source_file(docname: str) -> Path:
    """The source of a page: docname.md (or .ipynb) in the repo."""
    for suffix in (".md", ".ipynb"):
        path = ROOT / f"{docname}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {docname!r}, but there is no {docname}.md or .ipynb")


def is_notebook(path: Path) -> bool:
    """A MyST-markdown page is a notebook when its front matter has a jupytext/kernelspec header."""
    if path.suffix == ".ipynb":
        return True
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    header = text.split("---", 2)[1]
    return "kernelspec:" in header


class BuiltBook:
    """The output of one ``jupyter-book build`` run."""

    def __init__(self, proc: subprocess.CompletedProcess, html_dir: Path, seconds: float = 0.0):
        self.proc = proc
        self.html_dir = html_dir
        self.seconds = seconds

    @property
    def log(self) -> str:
        return f"{self.proc.stdout}\n{self.proc.stderr}"

    def page(self, docname: str) -> str:
        path = self.html_dir / f"{docname}.html"
        assert path.is_file(), f"{docname}: no {path.relative_to(self.html_dir)} in the build"
        return path.read_text(encoding="utf-8")

    def resolve(self, docname: str, url: str) -> Path:
        """The file a page-relative URL points to inside the built site."""
        page_dir = posixpath.dirname(docname)
        target = posixpath.normpath(posixpath.join(page_dir, url.split("?")[0].split("#")[0]))
        return self.html_dir / target


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
KERNEL_NOISE = "Kernel is running over TCP without encryption"  # printed by every kernel start


def log_excerpt(log: str, tail: int = 150) -> str:
    lines = [ln for ln in ANSI_ESCAPE.sub("", log).splitlines() if KERNEL_NOISE not in ln]
    flagged = [ln for ln in lines if re.search(r"WARNING|ERROR|Error|Traceback", ln)]
    return "\n".join(["--- warnings and errors ---", *flagged[:100], f"--- last {tail} lines ---", *lines[-tail:]])


def jupyter_book_command(out: Path, *extra: str) -> list[str]:
    """``jupyter-book build ROOT --path-output OUT --all -W -n --keep-going [extra]`` run with the
    test's interpreter (so the venv's jupyter-book, wherever the venv lives)."""
    return [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        *BUILD_FLAGS,
        *extra,
    ]


def run_build(cmd: list[str], html_dir: Path) -> BuiltBook:
    import time

    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    return BuiltBook(proc, html_dir, time.perf_counter() - start)
