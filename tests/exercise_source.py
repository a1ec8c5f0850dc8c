"""Read the exercises and solutions of a MyST-markdown chapter from its source.

Used by tests/test_exercises.py (counts, labels, one solution per exercise) and
tests/test_student_build.py (solution text that must not be in the student build).

Directives are found by their opening fence (```` ```{exercise} ````, ```` ````{solution} label ````,
``{solution-start}`` … ``{solution-end}``, or the same with ``:::`` colon fences); a fenced block ends
at the first line that is only a fence of the same character, at least as long.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

OPENING = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}\s*(?P<arg>.*?)\s*$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*?)\s*$")


@dataclass
class Block:
    name: str  # exercise, exercise-start, solution, solution-start, solution-end
    argument: str  # title of an exercise, target label of a solution
    options: dict
    body: list[str]  # content lines (for gated solutions: everything up to solution-end)
    line: int  # 1-based line of the opening fence


@dataclass
class ChapterExercises:
    path: Path
    exercises: list[Block] = field(default_factory=list)
    solutions: list[Block] = field(default_factory=list)
    gate_sequence: list[tuple[str, int]] = field(default_factory=list)  # ("start"/"end", line)
    outside_solutions: str = ""  # the source with every solution removed

    @property
    def labels(self) -> list[str]:
        return [block.options.get("label", "") for block in self.exercises]


def _fenced_block(lines: list[str], start: int, fence: str) -> tuple[list[str], dict, int]:
    """Options and body of the directive opened at ``lines[start]``; returns (body, options, end)."""
    char, size = fence[0], len(fence)
    closing = re.compile(rf"^{re.escape(char)}{{{size},}}\s*$")
    options, body, i = {}, [], start + 1
    while i < len(lines) and not closing.match(lines[i]):
        match = OPTION.match(lines[i])
        if match and not body:  # options come first, before any content line
            options[match["key"]] = match["value"]
        else:
            body.append(lines[i])
        i += 1
    return body, options, i


def parse(path: Path) -> ChapterExercises:
    """Every exercise and solution block of a chapter, in source order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    chapter = ChapterExercises(path)
    keep = [True] * len(lines)  # lines outside solutions
    i = 0
    while i < len(lines):
        match = OPENING.match(lines[i])
        if not match or not match["name"].startswith(("exercise", "solution")):
            i += 1
            continue
        name, fence = match["name"], match["fence"]
        body, options, end = _fenced_block(lines, i, fence)
        block = Block(name, match["arg"], options, body, i + 1)
        if name in ("exercise", "exercise-start"):
            chapter.exercises.append(block)
        elif name == "solution":
            chapter.solutions.append(block)
            keep[i : end + 1] = [False] * (end + 1 - i)
        elif name == "solution-start":
            chapter.gate_sequence.append(("start", i + 1))
            # the gated content runs from after this block's closing fence to {solution-end}
            j = end + 1
            while j < len(lines):
                gate = OPENING.match(lines[j])
                if gate and gate["name"] in ("solution-end", "solution-start"):
                    break
                j += 1
            block.body = lines[end + 1 : j]
            chapter.solutions.append(block)
            keep[i:j] = [False] * (j - i)
        elif name == "solution-end":
            chapter.gate_sequence.append(("end", i + 1))
            keep[i : end + 1] = [False] * (end + 1 - i)
        i = end + 1
    chapter.outside_solutions = "\n".join(line for line, kept in zip(lines, keep) if kept)
    return chapter


# --- distinctive text of a solution -------------------------------------------------------------

# A "plain" word survives rendering unchanged: no markup, math, quotes (curled by smartquotes),
# or dashes and dots that Sphinx turns into typographic characters.
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9(),.;:=+/%-]+$")
_CODE_FENCE = re.compile(r"^(`{3,}|:{3,})")


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _plain_runs(line: str, min_words: int = 5) -> list[str]:
    runs, current = [], []
    for word in line.split():
        if _PLAIN_WORD.match(word) and "--" not in word and ".." not in word:
            current.append(word)
        else:
            if len(current) >= min_words:
                runs.append(" ".join(current))
            current = []
    if len(current) >= min_words:
        runs.append(" ".join(current))
    return runs


def distinctive_snippets(block: Block, elsewhere: str, min_chars: int = 24) -> list[str]:
    """Strings of a solution that a reader would see in the rendered page and that do not occur
    outside the solutions: whole code lines of its code cells, and runs of five or more plain
    words of its prose. ``elsewhere`` is the chapter's source without its solutions."""
    elsewhere = normalize(elsewhere)
    snippets, in_code = [], False
    for raw in block.body:
        line = raw.strip()
        if _CODE_FENCE.match(line):  # a code cell or code block opens or closes
            in_code = line.rstrip("`:") != ""
            continue
        if not line or OPTION.match(line):
            continue
        candidates = [line] if in_code else _plain_runs(line)
        for candidate in candidates:
            candidate = normalize(candidate)
            if len(candidate) >= min_chars and candidate not in elsewhere and candidate not in snippets:
                snippets.append(candidate)
    return snippets
