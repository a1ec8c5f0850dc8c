"""One spelling throughout (issue 13): British -ise/-yse/-our/-re in the book's prose and the library's
docstrings and comments. Code (identifiers, keyword arguments, module paths, inline code, math) keeps
its own names (``optimizer=``, ``scipy.optimize``), and proper names stay as their authors wrote them
(the optimized gradient method, disciplined parametrized programming). The word list and the rules
live in ``spelling.py``; ``python tests/book/spelling.py --fix FILE...`` applies them."""

from __future__ import annotations

from pathlib import Path

import pytest
from spelling import fix_page, fix_python, page_words, python_american_words

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "intro.md", ROOT / "README.md", *sorted((ROOT / "chapters").glob("*.md"))]
MODULES = sorted((ROOT / "bilevel_lib").rglob("*.py"))


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_prose_of_every_page_is_british(path: Path):
    found = [f"{path.name}:{line}: {word!r} (write {uk!r})" for line, word, uk in page_words(path.read_text())]
    assert not found, "American spellings (fix with tests/book/spelling.py --fix):\n" + "\n".join(found)


def test_the_docstrings_and_comments_of_the_library_are_british():
    found = []
    for path in MODULES:
        source = path.read_text()
        for offset, word, uk in python_american_words(source):
            line = source[:offset].count("\n") + 1
            found.append(f"{path.relative_to(ROOT)}:{line}: {word!r} (write {uk!r})")
    assert not found, "American spellings (fix with tests/book/spelling.py --fix):\n" + "\n".join(found)


PLANTED_PAGE = """---
title: planted
---
# Optimization of the regularizer

The minimizer is at the center; we analyze its behavior (the **optimized
gradient method** and disciplined parametrized programming are names).

```{code-cell} ipython3
from scipy.optimize import minimize
```

Call `minimize` or `training.optimizers` with `optimizer=Adam()`; $\\min_x$ is math.
"""


def test_checker_flags_american_prose_and_spares_code_math_and_names():
    words = [word for _, word, _ in page_words(PLANTED_PAGE)]
    assert words == ["Optimization", "regularizer", "minimizer", "center", "analyze", "behavior"]
    fixed = fix_page(PLANTED_PAGE)
    assert "# Optimisation of the regulariser" in fixed
    assert "minimiser is at the centre; we analyse its behaviour (the **optimized\ngradient method**" in fixed
    assert "from scipy.optimize import minimize" in fixed and "`optimizer=Adam()`" in fixed
    assert page_words(fixed) == []


PLANTED_MODULE = '''"""Minimize the cost with an optimizer."""


def train(optimizer, size=3):
    """One step of the optimizer.

    optimizer : object
        Any optimizer with ``step``; see ``scipy.optimize.minimize``.
    """
    message = "optimizer must have a step method"  # an argument's name: code, not prose
    return optimizer, message  # normalize nothing
'''


def test_checker_flags_american_docstrings_and_comments_only():
    words = [word for _, word, _ in python_american_words(PLANTED_MODULE)]
    assert words == ["Minimize", "optimizer", "optimizer", "optimizer", "normalize"]
    fixed = fix_python(PLANTED_MODULE)
    assert '"""Minimise the cost with an optimiser."""' in fixed
    assert "    optimizer : object\n        Any optimiser with ``step``" in fixed
    assert '"optimizer must have a step method"' in fixed and "def train(optimizer, size=3)" in fixed
