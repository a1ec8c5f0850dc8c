"""``make lint`` is part of the tests: ruff's format check and linter are clean on the code, and the
linter on the chapters' code cells (scripts/lint.py, settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_lint_is_clean():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lint.py")], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, (
        f"make lint failed (fix with: python scripts/lint.py --fix):\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    )
    assert "lint: clean" in run.stdout


def test_lint_sees_a_violation(tmp_path):
    """The check can fail: ruff, with the project's settings, flags an unused import and bad formatting."""
    ruff = Path(sys.executable).with_name("ruff")
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx=1\n", encoding="utf-8")
    lint = subprocess.run(
        [str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), str(bad)], capture_output=True, text=True
    )
    assert lint.returncode != 0 and "F401" in lint.stdout
    fmt = subprocess.run(
        [str(ruff), "format", "--check", "--config", str(ROOT / "pyproject.toml"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert fmt.returncode != 0
