"""The book's one spelling (British, -ise): the American forms it replaces and where they may stay.

Used by ``test_spelling.py`` and by ``python tests/book/spelling.py --fix FILE...`` (which rewrites
the prose of the given pages and the docstrings and comments of the given Python files).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

# -ize/-yze endings that are British -ise/-yse, and whole words.
_IZE = re.compile(r"^(\w*?)(i|y)z(e|es|ed|ing|er|ers|ation|ations|able)$", re.I)
WORDS = {
    "center": "centre",
    "centers": "centres",
    "centered": "centred",
    "color": "colour",
    "colors": "colours",
    "colored": "coloured",
    "colormap": "colour map",
    "colorbar": "colour bar",
    "behavior": "behaviour",
    "behaviors": "behaviours",
    "gray": "grey",
    "grayscale": "greyscale",
    "modeling": "modelling",
    "modeled": "modelled",
    "labeled": "labelled",
    "labeling": "labelling",
    "favor": "favour",
    "favors": "favours",
    "neighbor": "neighbour",
    "neighbors": "neighbours",
    "neighborhood": "neighbourhood",
    "fulfill": "fulfil",
    "artifact": "artefact",
    "artifacts": "artefacts",
}
# Words ending in -ize that are the same in British English.
NOT_IZE = {"size", "sizes", "sized", "sizing", "resize", "resized", "prize", "seize", "capsize", "maize"}
# Proper names written as their authors wrote them.
PROPER_NAMES = ("optimized gradient method", "disciplined parametrized programming")


def british(word: str) -> str | None:
    """The British form of ``word``, or None when it is already British (or not a spelling word)."""
    lower = word.lower()
    if lower in WORDS:
        uk = WORDS[lower]
    else:
        m = _IZE.match(word)
        if not m or lower in NOT_IZE or lower.endswith(("size", "sized", "sizes", "sizing")):
            return None
        uk = f"{m.group(1)}{m.group(2)}s{m.group(3)}"
    if word[0].isupper():
        uk = uk[0].upper() + uk[1:]
    return uk if uk != word else None


_PROTECTED = re.compile(
    r"\{[\w:.-]+\}`[^`]*`|(`+).+?\1|(?<![\\$])\$[^$]+\$|\]\([^)]*\)|<[^>]+>|https?://\S+"
    r"|\w+(?:\.\w+)+|\w+=",  # module paths (training.optimizers) and keyword arguments
    re.S,
)
_WORD = re.compile(r"[A-Za-z]+")


def _names_masked(text: str) -> str:
    for name in PROPER_NAMES:
        pattern = r"[\s*]+".join(map(re.escape, name.split()))  # across line breaks and **bold**
        text = re.sub(pattern, lambda m: re.sub(r"\S", "\0", m.group(0)), text, flags=re.I)
    return text


def american_words(text: str) -> list[tuple[int, str, str]]:
    """(offset, word, British form) of every American spelling in a piece of prose, skipping inline
    code, math, roles, link targets, HTML tags, URLs and the proper names."""
    masked = _PROTECTED.sub(lambda m: "\0" * len(m.group(0)), text)
    masked = _names_masked(masked)
    found = []
    for m in _WORD.finditer(masked):
        uk = british(m.group(0))
        if uk:
            found.append((m.start(), m.group(0), uk))
    return found


def fix_text(text: str) -> str:
    for start, word, uk in reversed(american_words(text)):
        text = text[:start] + uk + text[start + len(word) :]
    return text


# ------------------------------------------------------------------------------------------------
# Python: docstrings and comments are prose; names of parameters in them are code.


def _identifiers(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
    return names


def python_prose(source: str) -> list[tuple[int, int, str]]:
    """(start, end, text) offsets into ``source`` of its docstrings and comments."""
    tree = ast.parse(source)
    docstring_lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstring_lines.add(first.lineno)
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    spans = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start[0] in docstring_lines):
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = offsets[tok.end[0] - 1] + tok.end[1]
            spans.append((start, end, tok.string))
    return spans


_PARAM_LINE = re.compile(r"^(\s*)([\w, *]+?)(\s*:\s)", re.M)


def python_american_words(source: str) -> list[tuple[int, str, str]]:
    """(offset, word, British form) in docstrings and comments, not counting the names of
    parameters where a numpy-style docstring lists them (``optimizer : object``)."""
    found = []
    for start, _end, text in python_prose(source):
        text = _PARAM_LINE.sub(lambda m: m.group(1) + "\0" * len(m.group(2)) + m.group(3), text)
        text = re.sub(r"``[^`]*``|:\w+:`[^`]*`|`[^`]*`|\w+\(|\w+=|\w+\.\w+", lambda m: "\0" * len(m.group(0)), text)
        found.extend((start + offset, word, uk) for offset, word, uk in american_words(text))
    return found


def fix_python(source: str) -> str:
    for start, word, uk in reversed(python_american_words(source)):
        source = source[:start] + uk + source[start + len(word) :]
    return source


def page_prose(source: str):
    """The prose paragraphs of a MyST page (``test_prose_numbers.prose_paragraphs``) without its
    indented code blocks: what the spelling rules read and fix."""
    from test_prose_numbers import prose_paragraphs

    for paragraph in prose_paragraphs(source):
        if not paragraph.lines[0].startswith("    "):  # an indented code block
            yield paragraph


def page_words(source: str) -> list[tuple[int, str, str]]:
    """(line, word, British form) for the American spellings in a page's prose."""
    found = []
    for paragraph in page_prose(source):
        text = "\n".join(paragraph.lines)
        for offset, word, uk in american_words(text):
            found.append((paragraph.line + text[:offset].count("\n"), word, uk))
    return found


def fix_page(source: str) -> str:
    lines = source.split("\n")
    for paragraph in page_prose(source):
        first, count = paragraph.line - 1, len(paragraph.lines)
        if lines[first : first + count] == paragraph.lines:  # consecutive lines: fix them as one text
            lines[first : first + count] = fix_text("\n".join(paragraph.lines)).split("\n")
        else:  # a directive's title, or a comment or option line inside the paragraph
            index = first
            for line in paragraph.lines:
                index = next(i for i in range(index, len(lines)) if line in lines[i])
                lines[index] = lines[index].replace(line, fix_text(line))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if sys.argv[1:2] != ["--fix"]:
        sys.exit("usage: spelling.py --fix FILE...")
    for name in sys.argv[2:]:
        path = Path(name)
        text = path.read_text()
        new = fix_python(text) if path.suffix == ".py" else fix_page(text)
        if new != text:
            path.write_text(new)
            print("fixed", path)
