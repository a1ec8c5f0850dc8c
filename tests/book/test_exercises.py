"""Every chapter (the "Chapters" part of _toc.yml, read when the tests run) has at least three
exercises, labelled ``<slug>-ex<n>`` (n = 1, 2, ...), each with exactly one solution that is a
dropdown, and its gated solutions are well formed (every ``solution-start`` has its ``solution-end``).

These are source checks (fast): the rendered exercises are checked by the book build, the
student edition by tests/book/test_student_build.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bookbuild import source_file, toc_chapters
from exercise_source import parse

MIN_EXERCISES = 3
CHAPTERS = toc_chapters("Chapters")


def test_the_toc_has_chapters():
    assert CHAPTERS, "_toc.yml has no part captioned 'Chapters' (or it lists no pages)"


def _slug(docname: str) -> str:
    return Path(docname).name.replace("_", "-")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_has_enough_labelled_exercises(docname):
    chapter = parse(source_file(docname))
    labels = chapter.labels
    assert len(labels) >= MIN_EXERCISES, (
        f"{docname} has {len(labels)} exercises; every chapter needs at least {MIN_EXERCISES} "
        "(a derivation, a coding task, an exploration with a widget)"
    )
    slug = _slug(docname)
    pattern = re.compile(rf"^{re.escape(slug)}-ex(\d+)$")
    bad = [
        label or f"(no :label:, line {block.line})"
        for label, block in zip(labels, chapter.exercises)
        if not pattern.match(label)
    ]
    assert not bad, f"{docname}: exercise labels must read {slug}-ex<n>; got {bad}"
    numbers = [int(pattern.match(label)[1]) for label in labels]
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"{docname}: exercises should be numbered {slug}-ex1, -ex2, ... in order; got {labels}"
    )


@pytest.mark.parametrize("docname", CHAPTERS)
def test_every_exercise_has_one_dropdown_solution(docname):
    chapter = parse(source_file(docname))
    labels = chapter.labels
    targets = [block.argument for block in chapter.solutions]
    missing = [label for label in labels if label not in targets]
    assert not missing, f"{docname}: exercises without a solution: {missing}"
    twice = sorted({t for t in targets if targets.count(t) > 1})
    assert not twice, f"{docname}: exercises with more than one solution: {twice}"
    orphans = [t for t in targets if t not in labels]
    assert not orphans, f"{docname}: solutions for exercises that are not in this chapter: {orphans}"
    not_dropdown = [
        f"{b.argument} (line {b.line})"
        for b in chapter.solutions
        if "dropdown" not in b.options.get("class", "").split()
    ]
    assert not not_dropdown, f"{docname}: solutions need `:class: dropdown`: {not_dropdown}"
    lines = {block.argument: block.line for block in chapter.solutions}
    before = [label for label, block in zip(labels, chapter.exercises) if lines[label] < block.line]
    assert not before, f"{docname}: solutions placed before their exercise: {before}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_gated_solutions_are_closed(docname):
    sequence = parse(source_file(docname)).gate_sequence
    kinds = [kind for kind, _ in sequence]
    assert kinds == ["start", "end"] * (len(kinds) // 2) and len(kinds) % 2 == 0, (
        f"{docname}: every {{solution-start}} needs a {{solution-end}} before the next one; found {sequence}"
    )


def test_the_parser_sees_what_is_wrong_in_a_synthetic_chapter(tmp_path):
    """The checks above can fail: a chapter with a missing solution, a solution that is not a
    dropdown and an unclosed gate is read as such."""
    source = tmp_path / "demo.md"
    source.write_text(
        "```{exercise} One\n:label: demo-ex1\n\nDo it.\n```\n\n"
        "````{solution} demo-ex1\n\nDone, with a solution sentence long enough to spot.\n````\n\n"
        "```{exercise} Two\n:label: demo-ex2\n\nAgain.\n```\n\n"
        "````{solution-start} demo-ex2\n:class: dropdown\n````\n\n"
        "```{code-cell} ipython3\nanswer = the_secret_function(41) + 1\n```\n\n"
        "```{exercise} Three\n:label: demo-ex3\n\nNo solution.\n```\n",
        encoding="utf-8",
    )
    chapter = parse(source)
    assert chapter.labels == ["demo-ex1", "demo-ex2", "demo-ex3"]
    assert [b.argument for b in chapter.solutions] == ["demo-ex1", "demo-ex2"]
    assert chapter.solutions[0].options == {}  # no :class: dropdown
    assert [kind for kind, _ in chapter.gate_sequence] == ["start"]  # never closed
    from exercise_source import distinctive_snippets

    snippets = distinctive_snippets(chapter.solutions[1], chapter.outside_solutions)
    assert "answer = the_secret_function(41) + 1" in snippets
    assert "the_secret_function" not in chapter.outside_solutions
