"""The front door (intro.md): its plan lists the numbered chapters of _toc.yml in the sidebar's
order and numbering, it has a figure with a caption and alt text, a "How to cite" section with
a BibTeX entry that names the review it follows, and no placeholder text.

Source checks only (fast); the build (-W -n) fails on a {ref} to a label that does not exist,
and tests/book/test_a11y.py checks the rendered figure's alt text.
"""

from __future__ import annotations

import re

from bookbuild import ROOT, source_file, toc_chapters

INTRO = ROOT / "intro.md"
PLAN = "## The book's plan"
CITE = "## How to cite"
PLACEHOLDERS = ("added as they are written", "to be written", "coming soon", "TODO")
REVIEW_KEY = "crockett2022bilevel"


def section(text: str, heading: str) -> str | None:
    if heading not in text:
        return None
    return re.split(r"^## ", text.split(heading, 1)[1], maxsplit=1, flags=re.MULTILINE)[0]


def chapter_label(docname: str) -> str:
    match = re.search(r"^\((ch-[\w-]+)\)=", source_file(docname).read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{docname}: no (ch-...)= label"
    return match[1]


def problems(text: str, labels: list[str]) -> list[str]:
    """What is wrong with an intro page for numbered chapters with these labels (empty if nothing)."""
    out = [f"placeholder text {p!r}" for p in PLACEHOLDERS if p in text]
    plan = section(text, PLAN)
    if plan is None:
        out.append(f"no '{PLAN}' section")
    else:
        items = re.findall(r"^(\d+)\. (.*)$", plan, re.MULTILINE)
        numbers = [int(n) for n, _ in items]
        if numbers != list(range(1, len(labels) + 1)):
            out.append(f"the plan is numbered {numbers}, the sidebar 1..{len(labels)}")
        named = [re.search(r"\{ref\}`(ch-[\w-]+)`", item) for _, item in items]
        named = [m[1] if m else None for m in named]
        if named != labels[: len(named)] or len(named) != len(labels):
            out.append(f"the plan names {named}, the sidebar's chapters are {labels}")
    cite = section(text, CITE)
    if cite is None:
        out.append(f"no '{CITE}' section")
    else:
        if not re.search(r"```bibtex\n@\w+\{[\w:-]+,\n(?:.*\n)*?\}\n```", cite):
            out.append("the 'How to cite' section has no ```bibtex block with an @entry{key, ...}")
        if not re.search(r"\{cite:[pt]\}`[^`]*" + REVIEW_KEY, cite):
            out.append(f"the 'How to cite' section does not cite the review ({REVIEW_KEY})")
    figures = re.findall(r"```\{code-cell\}[^\n]*\n---\n(.*?)\n---\n", text, re.DOTALL)
    if not any(re.search(r"figure:\s*\n\s+caption:", f) and re.search(r"image:\s*\n\s+alt: \S", f) for f in figures):
        out.append("no figure cell with a caption (mystnb.figure.caption) and alt text (mystnb.image.alt)")
    return out


def test_intro_matches_the_sidebar_and_has_its_parts():
    labels = [chapter_label(doc) for doc in toc_chapters("Chapters")]
    found = problems(INTRO.read_text(encoding="utf-8"), labels)
    assert not found, "intro.md:\n  " + "\n  ".join(found)


def test_the_check_fails_on_a_bad_intro():
    good = (
        "# Book\n\n```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: |\n      Two levels.\n"
        "  image:\n    alt: A picture.\n---\nplt.show()\n```\n\n"
        "## The book's plan\n\n1. {ref}`ch-a`: first.\n2. {ref}`ch-b`: second.\n\n"
        "## How to cite\n\nFollows {cite:t}`crockett2022bilevel`.\n\n"
        "```bibtex\n@misc{book,\n  title = {Book}\n}\n```\n\n## Acknowledgements\n"
    )
    labels = ["ch-a", "ch-b"]
    assert problems(good, labels) == []
    renumbered = good.replace("1. {ref}`ch-a`", "2. {ref}`ch-a`").replace("2. {ref}`ch-b`", "3. {ref}`ch-b`")
    assert any("numbered [2, 3]" in p for p in problems(renumbered, labels))
    swapped = good.replace("{ref}`ch-a`", "{ref}`ch-X`").replace("{ref}`ch-b`", "{ref}`ch-a`")
    assert any("the plan names" in p for p in problems(swapped, labels))
    assert any("the plan names" in p for p in problems(good, [*labels, "ch-c"]))
    assert any("placeholder" in p for p in problems(good + "\nChapters are added as they are written.\n", labels))
    assert any("no ```bibtex" in p for p in problems(good.replace("```bibtex", "```text"), labels))
    assert any("does not cite the review" in p for p in problems(good.replace("crockett2022bilevel", "x"), labels))
    assert any("no figure cell" in p for p in problems(good.replace("    alt: A picture.\n", ""), labels))
    assert any(f"no '{CITE}'" in p for p in problems(good.replace(CITE, "## Citing"), labels))
