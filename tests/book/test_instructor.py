"""The instructor page (chapters/instructor.md) has notes for every chapter of the book.

Under its heading "Chapter by chapter" there must be one ``### <chapter title>`` section for each
page of the "Chapters" part of _toc.yml (read when the tests run, so a new chapter fails here until
its section is written), in the order of _toc.yml, and no section for a page that is not a
chapter. Each section gives learning goals ("What students should leave with."), the time in
class ("In class (about N minutes"), and suggested assignments that name every exercise of the
chapter by its label (``{ref}`<slug>-exN```) and no exercise that does not exist.

A second part, "Which exercises need a kernel", is a table with one row per exercise of those
chapters (each exactly once, none that does not exist), saying whether a student can do it from
the static page ("no"), needs a kernel only for a numerical check ("for the check", "for (b)"...)
or needs one for the exercise itself ("yes"), and what the student does.

Source checks only (fast); the rendered page is checked by the book build (-W -n), which fails on
a reference to a label that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from bookbuild import ROOT, source_file, toc_chapters
from exercise_source import parse

INSTRUCTOR = ROOT / "chapters" / "instructor.md"
SECTION_PART = "## Chapter by chapter"
GOALS = re.compile(r"\*\*What students should leave with\.\*\*")
IN_CLASS = re.compile(r"\*\*In class \(about (\d+) minutes")
ASSIGNMENTS = re.compile(r"\*\*Suggested assignments\.\*\*(?P<text>.*)", re.DOTALL)
EXERCISE_REF = re.compile(r"\{ref\}`([\w-]+-ex\d+)`")


@dataclass
class Chapter:
    docname: str
    title: str
    exercises: list[str]


def chapter_info(docname: str) -> Chapter:
    path = source_file(docname)
    title = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert title, f"{docname}: no '# title' line"
    return Chapter(docname, title[1].strip(), parse(path).labels)


def sections(text: str) -> dict[str, str]:
    """``### heading`` → body, for the subsections of "Chapter by chapter" (in page order)."""
    if SECTION_PART not in text:
        return {}
    part = text.split(SECTION_PART, 1)[1]
    part = re.split(r"^## ", part, maxsplit=1, flags=re.MULTILINE)[0]
    found = {}
    for block in re.split(r"^### ", part, flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        found[heading.strip()] = body
    return found


def problems(text: str, chapters: list[Chapter]) -> list[str]:
    """What is missing or wrong in an instructor page for these chapters (empty if nothing)."""
    found = sections(text)
    if not found:
        return [f"no '{SECTION_PART}' part with '### <chapter title>' sections"]
    out = []
    titles = [chapter.title for chapter in chapters]
    for chapter in chapters:
        body = found.get(chapter.title)
        if body is None:
            out.append(f"{chapter.docname}: no section '### {chapter.title}'")
            continue
        if not GOALS.search(body):
            out.append(f"{chapter.title}: no learning goals ('**What students should leave with.**')")
        if not IN_CLASS.search(body):
            out.append(f"{chapter.title}: no time in class ('**In class (about N minutes)...**')")
        assignments = ASSIGNMENTS.search(body)
        if not assignments:
            out.append(f"{chapter.title}: no '**Suggested assignments.**'")
            continue
        named = EXERCISE_REF.findall(assignments["text"])
        unknown = [label for label in named if label not in chapter.exercises]
        if unknown:
            out.append(f"{chapter.title}: assignments name exercises that are not in the chapter: {unknown}")
        unnamed = [label for label in chapter.exercises if label not in named]
        if unnamed:
            out.append(f"{chapter.title}: assignments do not mention {unnamed}")
    stale = [heading for heading in found if heading not in titles]
    if stale:
        out.append(f"sections for pages that are not chapters in _toc.yml: {stale}")
    order = [heading for heading in found if heading in titles]
    if order != [title for title in titles if title in found]:
        out.append(f"sections are not in the order of _toc.yml: {order}")
    return out


CHAPTERS = toc_chapters("Chapters")


def test_the_toc_has_chapters():
    assert CHAPTERS, "_toc.yml has no part captioned 'Chapters' (or it lists no pages)"


def test_instructor_page_covers_every_chapter():
    text = INSTRUCTOR.read_text(encoding="utf-8")
    found = problems(text, [chapter_info(docname) for docname in CHAPTERS])
    assert not found, "chapters/instructor.md:\n" + "\n".join(found)


def test_the_check_fails_on_a_page_that_misses_things():
    """The check above can fail: a missing chapter, a missing part, an unknown and an unmentioned
    exercise, a stale section and a wrong order are all reported."""
    chapters = [
        Chapter("chapters/a", "Alpha", ["a-ex1", "a-ex2"]),
        Chapter("chapters/b", "Beta", ["b-ex1"]),
        Chapter("chapters/c", "Gamma", ["c-ex1"]),
    ]
    good = (
        "# For instructors\n\n## Chapter by chapter\n\n"
        "### Alpha\n\n**What students should leave with.** A.\n\n**In class (about 60 minutes).** A.\n\n"
        "**Suggested assignments.** {ref}`a-ex1` and {ref}`a-ex2`.\n\n"
        "### Beta\n\n**What students should leave with.** B.\n\n**In class (about 45 minutes).** B.\n\n"
        "**Suggested assignments.** {ref}`b-ex1`.\n\n"
        "### Gamma\n\n**What students should leave with.** C.\n\n**In class (about 30 minutes).** C.\n\n"
        "**Suggested assignments.** {ref}`c-ex1`.\n\n"
        "## Course plans\n\n{ref}`a-ex9` outside the sections is not checked.\n"
    )
    assert problems(good, chapters) == []
    without_gamma = good.split("### Gamma")[0] + "## Course plans\n"
    assert problems(without_gamma, chapters) == ["chapters/c: no section '### Gamma'"]
    broken = (
        good.replace("{ref}`a-ex2`", "{ref}`a-ex3`")
        .replace("**In class (about 45 minutes).** B.", "B in class.")
        .replace("### Gamma", "### Delta")
    )
    found = problems(broken, chapters)
    assert any("not in the chapter: ['a-ex3']" in p for p in found), found
    assert any("do not mention ['a-ex2']" in p for p in found), found
    assert any(p.startswith("Beta: no time in class") for p in found), found
    assert any("no section '### Gamma'" in p for p in found), found
    assert any("not chapters in _toc.yml: ['Delta']" in p for p in found), found
    swapped = good.replace("### Alpha", "### TMP").replace("### Beta", "### Alpha").replace("### TMP", "### Beta")
    assert any("not in the order" in p for p in problems(swapped, chapters))
    assert problems("# For instructors\n", chapters) == [
        f"no '{SECTION_PART}' part with '### <chapter title>' sections"
    ]


@pytest.mark.parametrize("docname", CHAPTERS)
def test_every_chapter_states_its_time(docname):
    """The summary table of the instructor page reads "Time for this chapter: about N minutes,
    plus M minutes for the exercises" from each chapter's overview; without it the row shows —."""
    text = source_file(docname).read_text(encoding="utf-8")
    assert re.search(r"Time for this chapter: about \d+ minutes, plus \d+ minutes for the exercises", text), (
        f"{docname}: the overview should say 'Time for this chapter: about N minutes, plus M minutes "
        "for the exercises' (the instructor page's table reads it)"
    )


KERNEL_PART = "## Which exercises need a kernel"
KERNEL_ROW = re.compile(r"^\| \{ref\}`([\w-]+-ex\d+)` \| ([^|]+?) \| ([^|]*?) \|$", re.MULTILINE)
KERNEL_NEEDS = re.compile(r"^(no|yes|for the check|for \([a-z]\)(?: and \([a-z]\))?)$")


def kernel_problems(text: str, exercises: list[str]) -> list[str]:
    """What is missing or wrong in the kernel table of an instructor page (empty if nothing)."""
    if KERNEL_PART not in text:
        return [f"no '{KERNEL_PART}' part"]
    part = re.split(r"^## ", text.split(KERNEL_PART, 1)[1], maxsplit=1, flags=re.MULTILINE)[0]
    rows = KERNEL_ROW.findall(part)
    out = []
    labels = [label for label, _, _ in rows]
    missing = [label for label in exercises if label not in labels]
    if missing:
        out.append(f"exercises without a row: {missing}")
    unknown = [label for label in labels if label not in exercises]
    if unknown:
        out.append(f"rows for exercises that do not exist: {unknown}")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        out.append(f"exercises with more than one row: {repeated}")
    for label, need, what in rows:
        if not KERNEL_NEEDS.match(need.strip()):
            out.append(f"{label}: 'needs a kernel' is {need.strip()!r}, not no / yes / for the check / for (x)")
        if not what.strip():
            out.append(f"{label}: says nothing about what the student does")
    return out


def test_instructor_page_says_which_exercises_need_a_kernel():
    exercises = [label for docname in CHAPTERS for label in chapter_info(docname).exercises]
    found = kernel_problems(INSTRUCTOR.read_text(encoding="utf-8"), exercises)
    assert not found, "chapters/instructor.md:\n" + "\n".join(found)


def test_the_kernel_check_fails_on_a_bad_table():
    good = (
        "## Which exercises need a kernel\n\n| Exercise | Needs a kernel | What |\n| --- | --- | --- |\n"
        "| {ref}`a-ex1` | no | a derivation |\n| {ref}`a-ex2` | for (b) | (b) runs a solve |\n"
        "| {ref}`b-ex1` | yes | coding |\n\n## Course plans\n\n| {ref}`z-ex9` | maybe | outside |\n"
    )
    exercises = ["a-ex1", "a-ex2", "b-ex1"]
    assert kernel_problems(good, exercises) == []
    assert kernel_problems(good, [*exercises, "b-ex2"]) == ["exercises without a row: ['b-ex2']"]
    assert kernel_problems(good, exercises[:2]) == ["rows for exercises that do not exist: ['b-ex1']"]
    doubled = good.replace("| {ref}`b-ex1` | yes", "| {ref}`a-ex1` | yes")
    assert "exercises with more than one row: ['a-ex1']" in kernel_problems(doubled, ["a-ex1", "a-ex2"])
    vague = good.replace("| no | a derivation |", "| maybe | a derivation |")
    assert any("'maybe'" in p for p in kernel_problems(vague, exercises))
    silent = good.replace("| yes | coding |", "| yes |  |")
    assert any("says nothing" in p for p in kernel_problems(silent, exercises))
    assert kernel_problems("# page\n", exercises) == [f"no '{KERNEL_PART}' part"]
