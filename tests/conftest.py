import os
import subprocess
import sys
from pathlib import Path

import pytest

# make tests/problems.py and tests/bookbuild.py importable as plain modules
sys.path.insert(0, str(Path(__file__).parent))

from bookbuild import BuiltBook, jupyter_book_command, run_build  # noqa: E402


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> BuiltBook:
    """The real build, ``jupyter-book build <repo> --all -W -n --keep-going``, run once per test
    session into a temporary directory (``_build/`` is left alone). test_book checks its log and
    pages, test_browser opens them in Chromium, test_student_build compares with it."""
    reuse = os.environ.get("BILEVEL_BUILT_HTML")
    if reuse:  # for working on the page checks only: an existing build's html/ folder, not rebuilt
        html = Path(reuse).resolve()
        if not (html / "index.html").is_file():
            raise pytest.UsageError(f"BILEVEL_BUILT_HTML={reuse}: no index.html there")
        return BuiltBook(subprocess.CompletedProcess(["(reused build)"], 0, "", ""), html)
    out = tmp_path_factory.mktemp("book")
    return run_build(jupyter_book_command(out), out / "_build" / "html")
