"""``make lint``: ruff's formatter and linter on the library, tests, benchmarks and scripts, and the
linter on the chapters' code cells (each MyST notebook converted with jupytext to a temporary .ipynb,
which ruff reads).  Settings live in ``pyproject.toml`` ([tool.ruff]).  Exit status 0 when clean.

    python scripts/lint.py          # check (what make lint and the tests run)
    python scripts/lint.py --fix    # format and apply the safe fixes
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ["bilevel_lib", "tests", "benchmarks", "scripts"]


def ruff() -> list[str]:
    """The ruff of this environment (next to the running Python), else the one on PATH."""
    local = Path(sys.executable).with_name("ruff")
    found = str(local) if local.exists() else shutil.which("ruff")
    if found is None:
        raise SystemExit("ruff is not installed: it is pinned in requirements.txt (make venv installs it)")
    return [found]


def chapter_notebooks() -> list[Path]:
    """The MyST-markdown notebooks of the book: .md files whose front matter has a jupytext header."""
    pages = [ROOT / "intro.md", *sorted((ROOT / "chapters").glob("*.md"))]
    return [
        p
        for p in pages
        if p.read_text(encoding="utf-8").startswith("---")
        and "jupytext:" in p.read_text(encoding="utf-8").split("\n---", 1)[0]
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fix", action="store_true", help="format the code and apply ruff's safe fixes")
    args = parser.parse_args(argv)
    config = ["--config", str(ROOT / "pyproject.toml")]
    steps = []
    if args.fix:
        steps.append(ruff() + ["format", *config, *CODE])
        steps.append(ruff() + ["check", "--fix", *config, *CODE])
    else:
        steps.append(ruff() + ["format", "--check", *config, *CODE])
        steps.append(ruff() + ["check", *config, *CODE])
    failed = False
    for step in steps:
        failed |= subprocess.run(step, cwd=ROOT).returncode != 0
    with tempfile.TemporaryDirectory() as tmp:
        notebooks = []
        for page in chapter_notebooks():
            out = Path(tmp) / page.relative_to(ROOT).with_suffix(".ipynb")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "-o", str(out), str(page)],
                cwd=ROOT,
                check=True,
            )
            notebooks.append(out)
        if not notebooks:
            print("no chapter notebooks found", file=sys.stderr)
            return 1
        # chapters: the linter only (their layout is the prose's, not the formatter's); paths shown as sources
        run = subprocess.run(
            ruff() + ["check", *config, "--output-format", "concise", *map(str, notebooks)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        print(run.stdout.replace(tmp + "/", "").replace(".ipynb:", ".md (as notebook):"), end="")
        print(run.stderr, end="", file=sys.stderr)
        failed |= run.returncode != 0
    print("lint: " + ("FAILED" if failed else f"clean ({len(notebooks)} chapter notebooks and {', '.join(CODE)})"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
