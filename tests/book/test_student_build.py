"""The student edition (``make student``, scripts/build_student.py) has the exercises but no solutions.

Builds it once into a temporary directory, exactly as ``make student`` does (the ``student`` fixture
of conftest.py), and compares it with the
normal build (the session's ``book`` fixture): for every solution of every chapter in _toc.yml's
"Chapters" part, distinctive text taken from the .md source (code lines of its cells, runs of plain
words of its prose) is in the normal build (so the comparison means something) and in no file of
the student site (pages, search index, copied sources).
"""

from __future__ import annotations

import html
import re

import pytest
from bookbuild import source_file, toc_chapters, toc_pages
from exercise_source import distinctive_snippets, normalize, parse

pytestmark = pytest.mark.slow

CHAPTERS = toc_chapters("Chapters")
TEXT_SUFFIXES = {".html", ".js", ".txt", ".md", ".ipynb", ".json", ".py"}
TAG = re.compile(r"<[^>]+>")
SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1>", re.DOTALL | re.IGNORECASE)


def page_text(markup: str) -> str:
    """What a reader can read: tags dropped (without a space: highlighted code is one <span> per
    token), entities decoded, whitespace collapsed."""
    return normalize(html.unescape(TAG.sub("", SCRIPT_OR_STYLE.sub(" ", markup))))


@pytest.fixture(scope="session")
def student_files(student) -> dict[str, str]:
    """Every text file of the student site, as text a reader (or a search) could find."""
    files = {}
    for path in sorted(student.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and "mathjax" not in path.parts:
            text = path.read_text(encoding="utf-8", errors="replace")
            text = page_text(text) if path.suffix == ".html" else normalize(text)
            files[str(path.relative_to(student))] = text
    return files


def test_student_site_has_every_page(student):
    missing = [doc for doc in toc_pages() if not (student / f"{doc}.html").is_file()]
    assert not missing, f"pages missing from the student build: {missing}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_exercises_are_kept(student, docname):
    markup = (student / f"{docname}.html").read_text(encoding="utf-8")
    for label in parse(source_file(docname)).labels:
        assert f'id="{label}"' in markup, f"{docname}: exercise {label} is missing from the student build"


@pytest.fixture(scope="session")
def outside_solutions() -> str:
    """The sources of every page of _toc.yml without their solutions: a solution's snippet that
    also occurs there (``rng = np.random.default_rng(0)``) may rightly be in the student build."""
    return "\n".join(parse(source_file(doc)).outside_solutions for doc in toc_pages())


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_solution_text_in_the_student_build(book, student_files, outside_solutions, docname):
    chapter = parse(source_file(docname))
    normal = page_text(book.page(docname))
    for solution in chapter.solutions:
        snippets = distinctive_snippets(solution, outside_solutions)
        shown = [s for s in snippets if s in normal]
        assert shown, (
            f"{docname}: found no text of the solution to {solution.argument} in the normal build, "
            f"so its absence from the student build would prove nothing (candidates: {snippets[:5]})"
        )
        leaks = {s: name for s in shown for name, text in student_files.items() if s in text}
        assert not leaks, (
            f"{docname}: text of the solution to {solution.argument} is in the student build: "
            + "; ".join(f"{s!r} in {name}" for s, name in leaks.items())
        )


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_solution_markup_in_the_student_build(student, docname):
    markup = (student / f"{docname}.html").read_text(encoding="utf-8")
    assert not re.search(r'class="[^"]*\bsolution\b', markup), f"{docname}: a solution block is left"
    assert "solution-content" not in markup, f"{docname}: solution content is left"


def test_student_site_has_no_page_sources(student):
    sources = (
        sorted(str(p.relative_to(student)) for p in (student / "_sources").rglob("*") if p.is_file())
        if (student / "_sources").exists()
        else []
    )
    assert not sources, f"the student site carries the page sources (with solutions): {sources[:5]}"
