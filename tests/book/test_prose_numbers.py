"""Every measured figure quoted in the prose of a page is the page's own (issue 13).

This reads the MyST-markdown sources (no build). A *measured figure* in prose is a number that
reports the outcome of a run: an SNR in dB, a time (s, ms, µs, min), a speed or size ratio ("13×",
"fifteen times faster"), a relative error or tolerance reached ("1e-9", "10^{-9}"), an iteration
count that a method needed, a percentage, or a size in KB/MB/GB. Each one must be

(a) glued from the cell that computes it (``{glue:text}`name:.1f``` and the other ``glue`` roles
    and directives: those are not in the prose text at all),
(b) a value of a saved result under ``results/`` that the same paragraph names (``results/bars.json``)
    while the page shows the command that made it (``python -m bilevel_lib bars``); the checker
    looks the value up in that JSON file, so it cannot drift from it, or
(c) attributed to the review or another source with a citation (``{cite}``, ``{cite:p}``,
    ``{cite:t}``) in the same paragraph.

A number is a *setting*, never flagged, when it follows ``=``, ``≤``, ``<``, ``≥`` or ``>`` (σ = 0.1,
T = 50, tol < 1e-8), when it is a size written with ``×`` between numbers (48 filters 7×7), when
a setting word comes right before it ("tolerance 1e-10", "step 0.5", "budget of 30 s") or when it
counts things of the setup (pixels, filters, images, …: those carry no unit of a result). An
iteration count is a measurement only when a result verb or comparison comes right before it
("needs 40 iterations", "converges in 12 steps", "fewer than 30 CG iterations"); "run 200
iterations" is a setting. The rule is stated in the README, section "Numbers in prose".

Skipped: the front matter, code cells and every fenced code block, display math (``$$``,
``{math}``, ``\\begin{…}``), inline code, MyST comments (``%``) and HTML comments, directive
option lines, the bibliography page, the generated library reference page, and the prerequisites
table. Estimates of reading and teaching time are plans, not results: a paragraph that starts
"Time for this chapter", "In class" or "Suggested assignments", and minutes or hours in a paragraph
about a lab, class, session, lecture, homework or students, are not flagged.

The test is parametrized over every page of the book (``intro.md`` and ``chapters/*.md``); its
self-tests plant a hard-coded figure and check that it is flagged, and that its glued version is not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
PAGES = [ROOT / "intro.md", *sorted((ROOT / "chapters").glob("*.md"))]
# Generated or bibliography pages: no prose of their own to check.
NOT_PROSE = {"library_reference.md", "references.md"}

# Directives whose body is code, math or generated output, not prose.
SKIPPED_DIRECTIVES = {
    "code-cell",
    "code",
    "code-block",
    "sourcecode",
    "math",
    "literalinclude",
    "bibliography",
    "raw",
    "eval-rst",
    "glue",
    "glue:any",
    "glue:math",
    "glue:md",
    "autofunction",
    "autoclass",
    "automodule",
    "bilevel-module",
    "mermaid",
}

NUMBER_WORDS = (
    "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|hundred|a hundred|a thousand|thousand"
)
NUM = r"(?<![\w.])\d+(?:[.,]\d+)*"  # 12, 12.3, 10,000 (not the tail of a word or of a number)

MEASURE_PATTERNS = [
    # dB, times, sizes, percentages: a number with the unit of a result
    (
        "unit",
        re.compile(
            NUM
            + r"(?:\s?(?:–|-|to)\s?\d+(?:\.\d+)?)?\s?(?:dB|ms|µs|us|ns|s|sec|seconds?|min|minutes?|h|hours?|KB|kB|MB|GB|KiB|MiB|%|°)(?![\w])"
        ),
    ),
    ("unit", re.compile(NUM + r"\s?(?:per ?cent|percent)\b")),
    # ratios: 13×, 13x faster, 3-fold, fifteen times faster, twice as fast
    ("ratio", re.compile(NUM + r"\s?[×x](?!\s?\d)(?![\w])")),
    ("ratio", re.compile(NUM + r"[- ]?fold\b")),
    (
        "ratio",
        re.compile(
            r"(?:\b(?:"
            + NUMBER_WORDS
            + r")|"
            + NUM
            + r")\s+times\s+(?:faster|slower|more|less|fewer|larger|smaller|cheaper|longer|shorter|as)\b",
            re.I,
        ),
    ),
    ("ratio", re.compile(r"\b(?:twice|thrice|half)\s+as\s+(?:fast|slow|long|much|many|large|expensive|cheap)\b", re.I)),
    (
        "ratio",
        re.compile(
            r"\b(?:an|one|two|three|four|five|six|\d+)(?:\s+(?:to|or)\s+\w+)?\s+orders?\s+of\s+magnitude\b", re.I
        ),
    ),
    # errors and agreement: 1e-9, 1.2e-10, 10⁻⁹, 10^{-9} (from inline math)
    # errors reached, 1e-9, 1.2e-10, 10⁻⁹, 10^{-9} (from inline math), after a word that reports one
    (
        "error",
        re.compile(
            r"\b(?:agree|agrees|agreed|agreement|error|errors|differ|differs|differed|difference|falls?|fell|"
            r"reach(?:es|ed)?|about|roughly|around|near|nearly|at\s+most|below|stays?|stayed|metric|gap|"
            r"off\s+by|of\s+order|order|rises?|grows?|drops?)\b[^.;:!?\n]{0,25}?"
            r"((?<![\w.])\d+(?:\.\d+)?e[-−]\d+\b|(?<![\w.])(?:\d+(?:\.\d+)?\s?×\s?)?10\s?(?:\^\{?[-−]\d+\}?|⁻[⁰¹²³⁴⁵⁶⁷⁸⁹]+))",
            re.I,
        ),
    ),
]
# An iteration count is measured when a result verb or comparison word comes right before it.
ITERATION_COUNT = re.compile(
    r"\b(?:needs?|needed|takes?|took|taken|requires?|required|converges?\s+in|converged\s+in|stops?\s+after|"
    r"stopped\s+after|stops?\s+at|stopped\s+at|reach(?:es|ed)?\s+(?:it|that|this)?\s*(?:in|after)|within|in\s+only|only|"
    r"fewer\s+than|more\s+than|at\s+most|at\s+least|about|roughly|around|nearly|almost|some|just)\s+"
    r"(" + NUM.replace("(?<![\\w.])", "") + r")\s+(?:\w+[- ])?(?:iterations?|steps|epochs|evaluations|restarts|"
    r"matrix[- ]vector products|Hessian[- ]vector products|solves)\b",
    re.I,
)
# A setting: the number follows one of these (σ = 0.1, tol ≤ 1e-8) or a setting word.
SETTING_BEFORE = re.compile(
    r"(?:[=≤<≥>]|\b(?:tol|tolerance|tolerances|threshold|step(?:\s+size)?|budget(?:\s+of)?|limit(?:\s+of)?|"
    r"cap(?:ped)?(?:\s+at)?|clipped(?:\s+below|\s+above)?\s+at|to\s+reach|set\s+to|set\s+at|timeout(?:\s+of)?|seed|σ|noise(?:\s+level)?(?:\s+of)?|"
    r"(?:stopping\s+)?criterion(?:\s+of)?|maxiter|rtol|atol)(?:\s+of)?)\s*$",
    re.I,
)
# Estimates of reading and teaching time ("Time for this chapter: about 60 minutes", the instructor
# page's "In class (about 75 minutes)") are plans, not measurements.
TEACHING_TIME = re.compile(r"^(?:Time for this chapter|In class|Suggested assignments)\b", re.I)
TEACHING_WORDS = re.compile(r"\b(?:lab|class|sessions?|lectures?|homework|students?)\b", re.I)
MINUTES = re.compile(r"\b(?:min|minutes?|h|hours?)$")
SIZE = re.compile(r"\d\s?×\s?\d")


@dataclass(frozen=True)
class Figure:
    """One flagged figure: the page, the line it starts on, the matched text and its paragraph."""

    page: str
    line: int
    text: str
    kind: str
    paragraph: str

    def __str__(self) -> str:
        snippet = re.sub(r"\s+", " ", self.paragraph).strip()
        return f"{self.page}:{self.line}: {self.kind} figure {self.text!r} in: {snippet[:220]}"


@dataclass
class Paragraph:
    line: int
    lines: list[str]


# ----------------------------------------------------------------------------------------------
# Parsing the MyST source into prose paragraphs


FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(?:\{([^}]*)\})?\s*(.*)$")


def prose_paragraphs(source: str) -> list[Paragraph]:
    """The prose of a MyST page as paragraphs (runs of non-blank lines), with their first line."""
    lines = source.split("\n")
    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        i = 1
        while i < len(lines) and lines[i].strip() != "---":
            i += 1
        i += 1
    paragraphs: list[Paragraph] = []
    current: list[str] = []
    start = 0
    stack: list[tuple[str, bool]] = []  # (fence, skipped)
    in_math = False
    in_env = False
    in_comment = False
    in_prereq_table = False
    options_allowed = False

    def flush() -> None:
        nonlocal current
        if current:
            paragraphs.append(Paragraph(start, current))
        current = []

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        lineno = i + 1
        i += 1
        skipping = any(skip for _, skip in stack)
        m = FENCE.match(line)
        if m:
            fence, name, rest = m.group(1), m.group(2), m.group(3)
            if stack and fence[0] == stack[-1][0][0] and len(fence) >= len(stack[-1][0]) and not name and not rest:
                stack.pop()
                flush()
                options_allowed = False
                continue
            if not skipping:
                flush()
                is_directive = name is not None
                directive = (name or "").strip()
                skipped = (not is_directive and fence[0] != ":") or directive in SKIPPED_DIRECTIVES
                stack.append((fence, skipped))
                options_allowed = not skipped
                if not skipped and rest:  # a directive's argument (an exercise or admonition title)
                    start, current = lineno, [rest]
                    flush()
                continue
        if skipping:
            continue
        if in_comment:
            if "-->" in line:
                in_comment = False
            continue
        if stripped.startswith("<!--"):
            if "-->" not in stripped:
                in_comment = True
            continue
        if in_math:
            if "$$" in stripped:
                in_math = False
            continue
        if stripped.startswith("$$"):
            flush()
            if stripped.count("$$") < 2:
                in_math = True
            continue
        if in_env:
            if re.match(r"\\end\{", stripped):
                in_env = False
            continue
        if re.match(r"\\begin\{", stripped):
            flush()
            in_env = not re.search(r"\\end\{", stripped)
            continue
        if options_allowed and re.match(r"^:[\w-]+:", stripped):
            continue
        options_allowed = False
        if stripped.startswith("%") or re.match(r"^\(.+\)=$", stripped):  # comments, labels
            continue
        if stripped.startswith("|"):
            if re.match(r"^\|\s*Prerequisite", stripped, re.I):
                in_prereq_table = True
            if in_prereq_table:
                continue
        else:
            in_prereq_table = False
        if not stripped:
            flush()
            continue
        if stripped.startswith("#") or stripped.startswith("|"):  # headings and table rows stand alone
            flush()
            start, current = lineno, [line]
            if stripped.startswith("#"):
                flush()
            continue
        if not current:
            start = lineno
        current.append(line)
    flush()
    return paragraphs


ROLE = re.compile(r"\{([\w:.-]+)\}`([^`]*)`")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)([^$]+?)\$")
LINK_TARGET = re.compile(r"\]\(([^)]*)\)")


def _math_text(tex: str) -> str:
    """Inline math as text: 10^{-9} stays recognisable, \\times becomes ×; other commands go."""
    tex = re.sub(r"\\(?:times|cdot)", "×", tex)
    tex = re.sub(r"\\(?:approx|sim)", "≈", tex)
    tex = re.sub(r"\\(?:le|leq)\b", "≤", tex)
    tex = re.sub(r"\\(?:ge|geq)\b", "≥", tex)
    tex = re.sub(r"\\mathrm\{([^}]*)\}|\\text\{([^}]*)\}", lambda m: m.group(1) or m.group(2) or "", tex)
    tex = re.sub(r"\\[A-Za-z]+", " ", tex)
    return f" {tex} "


def plain_text(paragraph: str) -> tuple[str, bool]:
    """The paragraph's words as a reader sees them, and whether it carries a citation."""
    has_cite = False

    def role(m: re.Match) -> str:
        nonlocal has_cite
        name = m.group(1)
        if name.startswith("cite"):
            has_cite = True
            return " [citation] "
        if name.startswith("glue"):
            return " [glued] "
        if name in {"ref", "numref", "eq", "doc", "term", "download", "prf:ref", "external"} or ":" in name:
            return " [reference] "
        return f" {m.group(2)} "

    text = ROLE.sub(role, paragraph)
    text = INLINE_CODE.sub(" [code] ", text)
    text = INLINE_MATH.sub(lambda m: _math_text(m.group(1)), text)
    text = LINK_TARGET.sub("]", text)
    text = re.sub(r"<[^>]+>", " ", text)  # html tags
    text = text.replace("**", "").replace("\\*", "*")
    return text, has_cite


# ----------------------------------------------------------------------------------------------
# Saved results: a figure of a paragraph that names results/<name>.json may be one of its values


def _numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def result_values(text: str, page_source: str) -> list[float]:
    """Numbers of every results/<name>.json that this paragraph names, if the page shows its command."""
    values: list[float] = []
    for name in re.findall(r"results/([\w.-]+?)(?:\.json|\.npz)?\b", text):
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        command = re.search(r"bilevel_lib\s+(?:reproduce\s+)?([\w-]+)", str(record.get("command", "")))
        if command and re.search(r"bilevel_lib\s+(?:reproduce\s+)?" + re.escape(command.group(1)) + r"\b", page_source):
            values += _numbers(record)
    return values


def _matches_saved(figure: str, values: list[float]) -> bool:
    m = re.search(r"\d+(?:[.,]\d+)*(?:e[-−]\d+)?", figure)
    if not m or not values:
        return False
    token = m.group(0).replace(",", "").replace("−", "-")
    digits = len(token.split(".")[1].split("e")[0]) if "." in token else 0
    number = float(token)
    for v in values:
        for scale in (1.0, 100.0, 1e3, 1e-3, 1 / 2**20, 1 / 1e6):  # fractions as %, s as ms, bytes as MB
            if round(v * scale, digits) == number:
                return True
    return False


# ----------------------------------------------------------------------------------------------
# The check


def flagged_figures(source: str, page: str = "<page>") -> list[Figure]:
    """Every measured figure of the page's prose that is neither glued, saved and named, nor cited."""
    found: list[Figure] = []
    for para in prose_paragraphs(source):
        raw = "\n".join(para.lines)
        text, has_cite = plain_text(raw)
        if has_cite or TEACHING_TIME.match(text.strip()):
            continue
        saved = result_values(raw, source)
        spans: list[tuple[int, int, str]] = []
        for kind, pattern in MEASURE_PATTERNS:
            group = 1 if pattern.groups else 0
            spans += [(m.start(group), m.end(group), kind) for m in pattern.finditer(text)]
        spans += [(m.start(1), m.end(), "iteration-count") for m in ITERATION_COUNT.finditer(text)]
        spans.sort()
        last_end = -1
        for begin, end, kind in spans:
            if begin < last_end:
                continue
            last_end = end
            figure = text[begin:end]
            before = text[max(0, begin - 40) : begin]
            if SETTING_BEFORE.search(before) or SIZE.search(text[max(0, begin - 3) : end + 3]):
                continue
            if _matches_saved(figure, saved):
                continue
            if MINUTES.search(figure) and TEACHING_WORDS.search(text):  # a plan for a class, not a result
                continue
            line = para.line + text[:begin].count("\n")
            found.append(Figure(page, line, figure.strip(), kind, raw))
    return found


def page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", [p for p in PAGES if p.name not in NOT_PROSE], ids=page_id)
def test_every_quoted_figure_is_the_pages_own(path: Path):
    figures = flagged_figures(path.read_text(encoding="utf-8"), page_id(path))
    assert not figures, (
        f"{len(figures)} measured figure(s) in the prose of {page_id(path)} are typed by hand: glue them "
        "from the cell that computes them ({glue:text}`name:fmt`), load them from a results/ file named "
        "in the paragraph, or cite their source in the same paragraph:\n" + "\n".join(map(str, figures))
    )


# ----------------------------------------------------------------------------------------------
# Self-tests: the checker fails on a planted hard-coded figure and passes on its glued version

PLANTED = """---
jupytext:
  text_representation:
    extension: .md
---

# A page

```{{code-cell}} ipython3
snr = 12.34  # 12.3 dB in code is not prose
```

{sentence}
"""


@pytest.mark.parametrize(
    "hard_coded, glued",
    [
        ("The run ends at 12.3 dB, below the noisy input.", "The run ends at {glue:text}`snr:.1f` dB."),
        ("CVXPY is fifteen times faster here.", "CVXPY is {glue:text}`ratio:.0f` times faster here."),
        ("Implicit takes 0.42 s per gradient.", "Implicit takes {glue:text}`t_imp:.2f` s per gradient."),
        ("The two gradients agree to 1e-9.", "The two gradients agree to {glue:text}`err:.0e`."),
        ("They agree to $10^{-9}$ in relative terms.", "They agree to {glue:text}`err:.0e` in relative terms."),
        ("The closed form is 13× faster.", "The closed form is {glue:text}`speedup:.0f`× faster."),
        ("OGM needs 38 iterations, GD 412.", "OGM needs {glue:text}`n_ogm` iterations."),
        ("Reverse mode stores 2.2 MB at T = 10.", "Reverse mode stores {glue:text}`mem:.1f` MB at $T = 10$."),
        ("About 35% of the pixels change.", "About {glue:text}`frac:.0%` of the pixels change."),
    ],
)
def test_checker_flags_a_planted_figure_and_accepts_it_glued(hard_coded: str, glued: str):
    flagged = flagged_figures(PLANTED.format(sentence=hard_coded))
    assert len(flagged) >= 1, f"not flagged: {hard_coded!r}"
    assert flagged_figures(PLANTED.format(sentence=glued)) == [], f"glued version flagged: {glued!r}"


@pytest.mark.parametrize(
    "setting",
    [
        "We learn 48 filters 7×7 on 8 images of 64×64 pixels.",
        "The noise has $\\sigma = 0.1$ and the solver runs $T = 50$ iterations, with $J = 3$.",
        "Run 200 iterations of OGM with tolerance 1e-10.",
        "Sec. 4.2 of the review, eq. (4.8), and Table 4.1.",
    ],
)
def test_checker_does_not_flag_settings(setting: str):
    assert flagged_figures(PLANTED.format(sentence=setting)) == []


def test_checker_accepts_cited_figures_and_skips_code_and_math():
    cited = "The review reports 26.1 dB on the test image {cite:p}`crockett2022bilevel`."
    assert flagged_figures(PLANTED.format(sentence=cited)) == []
    fenced = "```python\nprint('12.3 dB, 13x faster')\n```\n\n$$\n\\text{SNR} = 12.3\\,\\text{dB}\n$$"
    assert flagged_figures(PLANTED.format(sentence=fenced)) == []
    # the same sentence without its citation, in its own paragraph, is flagged
    assert len(flagged_figures(PLANTED.format(sentence="The review reports 26.1 dB on the test image."))) == 1


def test_checker_reads_prose_inside_directives_but_not_their_options():
    inside = ":::{exercise}\n:label: x-ex1\n\nShow that the method is 13× faster.\n:::"
    assert len(flagged_figures(PLANTED.format(sentence=inside))) == 1
    options = "```{figure} a.png\n:width: 80%\n\nA caption.\n```"
    assert flagged_figures(PLANTED.format(sentence=options)) == []


def test_checker_accepts_a_value_of_a_named_saved_result_only():
    record = json.loads((RESULTS / "bars.json").read_text(encoding="utf-8"))
    command = record["command"]
    seconds = float(record["seconds"])
    true = f"Made by `{command}`. The run in `results/bars.json` took {seconds:.1f} s."
    wrong = f"Made by `{command}`. The run in `results/bars.json` took {seconds + 7.3:.1f} s."
    assert flagged_figures(PLANTED.format(sentence=true)) == []
    assert len(flagged_figures(PLANTED.format(sentence=wrong))) == 1


# ----------------------------------------------------------------------------------------------
# Captions and alt texts: the text a reader (or a screen reader) gets with each figure.
#
# A caption is prose like any paragraph (the rules above). An alt text describes the picture in
# words, with no way to glue a number into it, so it must describe a run's values qualitatively:
# no decimal or exponent numbers (4.6, 0.14, 5e-5), no signed values ("minus 4.6"), and no step or
# iteration at which something happened ("near step 5350", "by step 7800"). Counts of the setup (48
# filters, 7 by 7, 4000 steps) and the range of an axis ("against y from minus 2 to 2", "over w
# from -1.6 to 1.6") stay.

CELL_METADATA = re.compile(r"^```\{code-cell\}[^\n]*\n---\n(.*?)\n---\n", re.M | re.S)
ALT_CALL = re.compile(r"\balt=((?:\s*\"[^\"]*\"\s*)+)")
ALT_VALUE = re.compile(
    r"(?<![\w.])(?:minus\s+|[-−+])?(?:\d+\.\d+|\d+(?:\.\d+)?[eE][-+]?\d+|\d+\s*×\s*10\^?[-−]?\d+)"
    r"|\b(?:minus|plus)\s+\d+"
    r"|\b(?:at|near|by|after|from|until|around)\s+(?:step|iteration|epoch)\s+\d+",
    re.I,
)


def _texts_under(node, keys=("caption", "alt")):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield key, value
            else:
                yield from _texts_under(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _texts_under(item, keys)


def figure_texts(source: str) -> list[tuple[int, str, str]]:
    """(line, "caption" or "alt", text) of every code cell's figure caption and alt text (its YAML
    metadata), every ``alt=`` argument of a call in a cell (the explorer's), and every ``:alt:``
    option of a directive."""
    import yaml

    found = []
    for m in CELL_METADATA.finditer(source):
        line = source[: m.start()].count("\n") + 1
        try:
            metadata = yaml.safe_load(m.group(1))
        except yaml.YAMLError:
            continue
        found += [(line, key, text) for key, text in _texts_under(metadata)]
    for m in ALT_CALL.finditer(source):
        text = "".join(re.findall(r"\"([^\"]*)\"", m.group(1)))
        found.append((source[: m.start()].count("\n") + 1, "alt", text))
    for m in re.finditer(r"^\s*:alt:\s*(.+)$", source, re.M):
        found.append((source[: m.start()].count("\n") + 1, "alt", m.group(1)))
    return found


# "over w from -1.6 to 1.6", "against beta0 between minus 4 and minus 0.5": an axis's range
AXIS_RANGE = re.compile(
    r"\b(?:over|against)\s+[\w ]{1,20}?\s+(?:from|between)\s+\S+(?:\s+\S+)?\s+(?:to|and)\s+\S+(?:\s+\S+)?", re.I
)


def alt_text_values(text: str) -> list[str]:
    """The run values an alt text quotes (see above), axis ranges left out."""
    ranges = [m.span() for m in AXIS_RANGE.finditer(text)]
    return [
        m.group(0)
        for m in ALT_VALUE.finditer(text)
        if not any(start <= m.start() and m.end() <= end for start, end in ranges)
    ]


def flagged_figure_texts(source: str, page: str = "<page>") -> list[str]:
    """Hand-typed run values in the captions (the prose rules) and alt texts (no run values) of a page."""
    flagged = []
    for line, key, text in figure_texts(source):
        if key == "caption":
            for figure in flagged_figures(text.replace("\n", " ") + "\n", page):
                flagged.append(f"{page}:{line}: caption quotes {figure.text!r}")
        else:
            flagged += [f"{page}:{line}: alt text quotes {value!r}" for value in alt_text_values(text)]
    return flagged


@pytest.mark.parametrize("path", [p for p in PAGES if p.name not in NOT_PROSE], ids=page_id)
def test_captions_and_alt_texts_quote_no_run_values(path: Path):
    flagged = flagged_figure_texts(path.read_text(encoding="utf-8"), page_id(path))
    assert not flagged, (
        "Captions follow the prose rules; alt texts describe a run's values in words, without numbers "
        "(the picture shows them):\n" + "\n".join(flagged)
    )


PLANTED_FIGURES = """# A page

```{code-cell} ipython3
---
mystnb:
  figure:
    caption: |
      The loss {caption}.
  image:
    alt: A curve {alt}.
---
plot()
```

```{code-cell} ipython3
explorer(alt="A picture"
         " {call_alt}.")
```
"""


def _planted_figures(caption: str, alt: str, call_alt: str) -> str:
    return PLANTED_FIGURES.replace("{caption}", caption).replace("{alt}", alt).replace("{call_alt}", call_alt)


@pytest.mark.parametrize(
    "caption, alt, call_alt",
    [
        ("ends at 12.3 dB", "with its minimum at minus 4.6", "falling to 0.14"),
        ("takes 0.42 s", "falling from 5e-5 to 1e-6", "with a spike near step 5350"),
    ],
)
def test_figure_text_checker_flags_planted_values(caption: str, alt: str, call_alt: str):
    flagged = flagged_figure_texts(_planted_figures(caption, alt, call_alt))
    assert any("caption quotes" in f for f in flagged), flagged
    assert any(":3: alt text" in f for f in flagged) and any(":16: alt text" in f for f in flagged), flagged
    calm = _planted_figures(
        "of 48 filters 7×7 over 4000 steps",
        "against y from minus 2 to 2, falling steadily over 4000 steps",
        "of a 7 by 7 heat map over w from -1.6 to 1.6",
    )
    assert flagged_figure_texts(calm) == []
