"""Export the book's notebook pages as clean Jupyter notebooks that open anywhere.

    make notebooks                    # after `make book`: .venv/bin/python scripts/export_notebooks.py
    python scripts/export_notebooks.py --build _build [--student]

Every page of _toc.yml that is a notebook (a MyST-markdown ``.md`` with a kernelspec) becomes an
``.ipynb`` without outputs that plain JupyterLab, Colab and VS Code render: the MyST markup is
turned into Markdown a notebook understands, with the numbers the book build gave it.

* admonitions and notes → block quotes with a bold title; exercises → a bold "Exercise 2.1"
  paragraph; solutions (``{solution}`` and the gated ``{solution-start}``…``{solution-end}``) →
  a "Solution to Exercise 2.1" heading and an end line; ``{literalinclude}`` → the code it shows;
  ``{code-block}`` → a fenced block;
* ``{cite:p}``/``{cite:t}`` → author–year text from references.bib, as the pages show it
  ("Crockett and Fessler [2022]", "[Kim and Fessler, 2018]"); ``{eq}`` → "(3.2)", and each
  labelled display gets ``\\tag{3.2}``; ``{numref}`` → "Figure 6.1"; ``{ref}``/``{doc}`` → the
  section title (a link to the other notebook when it is on another page); ``{glue:text}`` → the
  value the build computed; ``{py:func}`` and friends → inline code; ``(label)=`` targets dropped;
* a figure caption kept in a code cell's metadata → a Markdown cell "Figure 6.1. caption" after it;
* a first cell that installs bilevel_lib when it is missing (Colab), from the repository of
  ``repository:`` in _config.yml, and stands in for ``myst_nb.glue`` when myst-nb is absent.

The student variant (``student=True``) leaves out every solution with its code cells. Anything
this module does not know (a directive or role it has no rule for) is an error naming the page,
never raw markup in a notebook.

The numbers come from a finished build: its Sphinx environment (``.doctrees/environment.pickle``)
and the glued values myst-nb saved next to the executed notebooks (``jupyter_execute/*.glue.json``).
scripts/sphinx_downloads.py calls :func:`export_all` at the end of every build; this script does
the same from an existing build.
"""

from __future__ import annotations

import argparse
import ast
import codecs
import json
import posixpath
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = "notebooks"  # inside the built site: notebooks/clean/…, notebooks/student/…
VARIANTS = ("clean", "student")

FENCE_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*?)\s*$")
PLAIN_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})")
ROLE = re.compile(r"\{(?P<name>[a-z][\w:-]*)\}`(?P<body>[^`]*)`")
TARGET = re.compile(r"^\(([\w:.-]+)\)=\s*$")
LABELLED_DISPLAY = re.compile(r"\$\$(?P<math>.+?)\$\$[ \t]*\((?P<label>[\w:.-]+)\)", re.DOTALL)
TEXT_WITH_TARGET = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}
CODE_ROLES = {"py:func", "py:class", "py:meth", "py:mod", "py:attr", "py:obj", "py:data", "py:exc", "code", "samp"}


class ExportError(ValueError):
    """A page holds markup the export has no rule for, or a reference the build did not resolve."""


# --- what the build resolved --------------------------------------------------------------------


def _latex_to_text(text: str) -> str:
    import latexcodec  # noqa: F401 - registers the "ulatex" codec (a dependency of pybtex)

    return codecs.decode(text, "ulatex").replace("{", "").replace("}", "")


def read_bibliography(paths) -> dict[str, tuple[str, str]]:
    """key → (authors as cited, year) for every entry of the .bib files."""
    from pybtex.database import parse_file

    entries = {}
    for path in paths:
        for key, entry in parse_file(str(path)).entries.items():
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [_latex_to_text(" ".join(person.last_names)) for person in people]
            if not names:
                names = [_latex_to_text(entry.fields.get("organization", entry.fields.get("title", key)))]
            if len(names) == 1:
                who = names[0]
            elif len(names) == 2:
                who = f"{names[0]} and {names[1]}"
            else:
                who = f"{names[0]} et al."
            entries[key] = (who, entry.fields.get("year", "n.d."))
    return entries


@dataclass
class Resolved:
    """The text each cross-reference became in the build (from its Sphinx environment)."""

    labels: dict  # label -> (docname, anchor, section title): the std domain's labels
    fignumbers: dict  # docname -> figtype -> id -> number tuple: env.toc_fignumbers
    secnumbers: dict  # docname -> "#anchor" -> number tuple: env.toc_secnumbers
    equations: dict  # label -> (docname, number in its page): the math domain
    titles: dict  # docname -> page title
    glue: dict  # docname -> key -> saved output (myst-nb's *.glue.json)
    bib: dict  # citation key -> (authors, year)
    repository_url: str = ""
    repository_branch: str = "main"

    @classmethod
    def from_env(cls, env, execute_dir: Path, bibfiles) -> Resolved:
        glue = {}
        for path in Path(execute_dir).rglob("*.glue.json"):
            docname = path.relative_to(execute_dir).as_posix()[: -len(".glue.json")]
            glue[docname] = json.loads(path.read_text(encoding="utf-8"))
        theme = env.config.html_theme_options or {}
        return cls(
            labels=dict(env.domaindata["std"]["labels"]),
            fignumbers=env.toc_fignumbers,
            secnumbers=env.toc_secnumbers,
            equations=dict(env.domaindata["math"]["objects"]),
            titles={doc: title.astext() for doc, title in env.titles.items()},
            glue=glue,
            bib=read_bibliography(bibfiles),
            repository_url=theme.get("repository_url", "").rstrip("/"),
            repository_branch=theme.get("repository_branch", "") or "main",
        )

    @classmethod
    def from_build(cls, build_dir: Path, bibfiles) -> Resolved:
        """From a finished build folder (``_build``): its pickled environment and glued values."""
        import pickle

        path = Path(build_dir) / ".doctrees" / "environment.pickle"
        if not path.is_file():
            raise FileNotFoundError(f"build_dir={build_dir}: no .doctrees/environment.pickle (run `make book` first)")
        with path.open("rb") as file:
            env = pickle.load(file)
        return cls.from_env(env, Path(build_dir) / "jupyter_execute", bibfiles)

    def number(self, docname: str, figtype: str, node_id: str) -> str:
        numbers = self.fignumbers.get(docname, {}).get(figtype, {}).get(node_id)
        if not numbers:
            raise ExportError(f"{docname}: the build gave {figtype} {node_id!r} no number")
        return ".".join(map(str, numbers))

    def equation(self, label: str, where: str) -> str:
        if label not in self.equations:
            raise ExportError(f"{where}: {{eq}} to {label!r}, an equation the build does not know")
        docname, _ = self.equations[label]
        return self.number(docname, "displaymath", f"equation-{label}")

    def label(self, label: str, where: str) -> tuple[str, str, str]:
        if label not in self.labels:
            raise ExportError(f"{where}: a reference to {label!r}, a label the build does not know")
        return self.labels[label]


# --- Markdown ---------------------------------------------------------------------------------


@dataclass
class Page:
    """One page being exported: its docname, the build's numbers and the variant."""

    docname: str
    resolved: Resolved
    student: bool = False
    notebooks: frozenset = frozenset()  # docnames that have a notebook (links between them work)

    def link(self, docname: str, text: str) -> str:
        if docname == self.docname or docname not in self.notebooks:
            return text
        target = posixpath.relpath(docname, posixpath.dirname(self.docname) or ".") + ".ipynb"
        return f"[{text}]({target})"

    def exercise_name(self, label: str) -> str:
        docname, _, _ = self.resolved.label(label, self.docname)
        return f"Exercise {self.resolved.number(docname, 'exercise', label)}"

    # roles

    def role(self, match: re.Match) -> str:
        name, body = match["name"], match["body"]
        where = f"{self.docname}: {{{name}}}`{body}`"
        text, target = body, body
        found = TEXT_WITH_TARGET.match(body)
        if found:
            text, target = found["text"], found["target"]
        if name in {"cite", "cite:p", "cite:ps", "cite:t", "cite:ts"}:
            return self.cite(name, body, where)
        if name == "eq":
            number = self.resolved.equation(target, where)
            return f"{text} ({number})" if found else f"({number})"
        if name == "numref":
            docname, anchor, _ = self.resolved.label(target, where)
            for figtype, kind in (("figure", "Figure"), ("table", "Table"), ("code-block", "Listing")):
                if anchor in self.resolved.fignumbers.get(docname, {}).get(figtype, {}):
                    number = self.resolved.number(docname, figtype, anchor)
                    shown = text.replace("%s", number).replace("{number}", number) if found else f"{kind} {number}"
                    return self.link(docname, shown)
            raise ExportError(f"{where}: the build numbered no figure or table {target!r}")
        if name in {"ref", "ex"}:
            docname, anchor, title = self.resolved.label(target, where)
            if anchor in self.resolved.fignumbers.get(docname, {}).get("exercise", {}):
                title = self.exercise_name(target)
            return self.link(docname, text if found else title)
        if name == "doc":
            docname = posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), target))
            if docname not in self.resolved.titles:
                raise ExportError(f"{where}: no page {docname!r} in the build")
            return self.link(docname, text if found else self.resolved.titles[docname])
        if name in CODE_ROLES:
            shown = text if found else target.lstrip("~").rsplit(".", 1)[-1] if target.startswith("~") else target
            return f"`{shown}`"
        if name in {"math"}:
            return f"${body}$"
        if name in {"glue", "glue:", "glue:text"}:
            return self.glue(body, where)
        if name in {"sub", "sup"}:
            return f"<{name}>{body}</{name}>"
        raise ExportError(f"{where}: no rule for the role {{{name}}}")

    def cite(self, name: str, body: str, where: str) -> str:
        keys = [key.strip() for key in body.split(",") if key.strip()]
        missing = [key for key in keys if key not in self.resolved.bib]
        if missing:
            raise ExportError(f"{where}: {missing} not in references.bib")
        if name.startswith("cite:t"):
            return ", ".join(f"{who} [{year}]" for who, year in (self.resolved.bib[key] for key in keys))
        return "[" + "; ".join(f"{who}, {year}" for who, year in (self.resolved.bib[key] for key in keys)) + "]"

    def glue(self, body: str, where: str) -> str:
        key, _, spec = body.partition(":")
        docname = self.docname
        if "::" in body:
            docname, _, rest = body.partition("::")
            key, _, spec = rest.partition(":")
        saved = self.resolved.glue.get(docname, {}).get(key)
        if saved is None:
            raise ExportError(f"{where}: the build glued no value {key!r} in {docname}")
        text = saved.get("data", {}).get("text/plain")
        if text is None:
            raise ExportError(f"{where}: the glued value {key!r} has no text form")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if spec:
            return format(value, spec)
        return value if isinstance(value, str) else text

    def inline(self, text: str) -> str:
        """Roles of one stretch of prose, outside inline code."""
        joined = text
        pieces, last = [], 0
        for match in ROLE.finditer(joined):
            pieces.append(joined[last : match.start()])
            pieces.append(self.role(match))
            last = match.end()
        pieces.append(joined[last:])
        return "".join(pieces)

    def displays(self, text: str) -> str:
        def tag(match):
            number = self.resolved.equation(match["label"], self.docname)
            return f"$${match['math'].rstrip()} \\tag{{{number}}}$$"

        return LABELLED_DISPLAY.sub(tag, text)

    # blocks

    def markdown(self, text: str) -> str:
        """A Markdown cell's text, MyST blocks and roles converted."""
        lines = text.split("\n")
        out: list[str] = []
        i = 0
        prose: list[str] = []

        def flush():
            if prose:
                out.append(self.inline(self.displays("\n".join(prose))))
                prose.clear()

        while i < len(lines):
            line = lines[i]
            opened = FENCE_OPEN.match(line)
            plain = None if opened else PLAIN_FENCE.match(line)
            if TARGET.match(line):
                i += 1
                continue
            if opened or plain:
                flush()
                found = opened or plain
                fence = found["fence"]
                close = re.compile(rf"^ *{re.escape(fence[0])}{{{len(fence)},}}\s*$")
                j = i + 1
                while j < len(lines) and not close.match(lines[j]):
                    j += 1
                if j == len(lines):
                    raise ExportError(f"{self.docname}: a fence {line.strip()!r} is never closed")
                body = lines[i + 1 : j]
                if opened:
                    out.append(self.directive(opened["name"], opened["arg"], body))
                else:
                    out.append("\n".join(lines[i : j + 1]))
                i = j + 1
                continue
            prose.append(line)
            i += 1
        flush()
        return "\n".join(part for part in out)

    def directive(self, name: str, arg: str, body: list[str]) -> str:
        options, k = {}, 0
        if body and body[0].strip() == "---":  # YAML options block
            end = body.index("---", 1)
            import yaml

            options = yaml.safe_load("\n".join(body[1:end])) or {}
            k = end + 1
        else:
            while k < len(body) and re.match(r"^\s*:[\w-]+:", body[k]):
                key, _, value = body[k].strip()[1:].partition(":")
                options[key] = value.strip()
                k += 1
        content = "\n".join(body[k:]).strip("\n")
        where = f"{self.docname}: {{{name}}} {arg}".rstrip()
        if name in ADMONITIONS or name == "admonition":
            title = arg if name == "admonition" else name.capitalize().replace("Seealso", "See also")
            return quote(f"**{self.inline(title)}**\n\n{self.markdown(content)}")
        if name == "dropdown":
            return quote(f"**{self.inline(arg)}**\n\n{self.markdown(content)}")
        if name == "exercise":
            label = options.get("label")
            if not label:
                raise ExportError(f"{where}: an exercise without :label: has no number to show")
            heading = self.exercise_name(label)
            title = f" ({self.inline(arg)})" if arg else ""
            return f'<a id="{label}"></a>\n\n**{heading}**{title}\n\n{self.markdown(content)}'
        if name == "solution":
            if self.student:
                return ""
            return f"{self.solution_heading(arg, where)}\n\n{self.markdown(content)}\n\n*{self.solution_end(arg)}*"
        if name in {"code-block", "code", "sourcecode"}:
            return fenced(content, arg or "")
        if name == "literalinclude":
            return fenced(self.literal(arg, options, where), options.get("language", "python"))
        if name == "math":
            label = options.get("label")
            tag = f" \\tag{{{self.resolved.equation(label, where)}}}" if label else ""
            return f"$$\n{content}{tag}\n$$"
        if name == "figure":
            alt = options.get("alt", "")
            return f"![{alt}]({arg})\n\n{self.markdown(content)}"
        raise ExportError(f"{where}: no rule for the directive {{{name}}}")

    def solution_heading(self, label: str, where: str) -> str:
        label = label.strip()
        if not label:
            raise ExportError(f"{where}: a solution that names no exercise")
        return f"#### Solution to {self.exercise_name(label)}"

    def solution_end(self, label: str) -> str:
        return f"End of the solution to {self.exercise_name(label.strip())}."

    def literal(self, arg: str, options: dict, where: str) -> str:
        path = (ROOT / posixpath.dirname(self.docname) / arg).resolve()
        if not path.is_file():
            raise ExportError(f"{where}: no file {path}")
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        if "pyobject" in options:
            lines = pyobject_lines(source, options["pyobject"], where)
        dedent = int(options.get("dedent", 0) or 0)
        if dedent:
            lines = [line[dedent:] if line[:dedent].strip() == "" else line for line in lines]
        return "\n".join(lines)


def pyobject_lines(source: str, dotted: str, where: str) -> list[str]:
    """The source lines of a function or class (``Class.method``), decorators included."""
    nodes = ast.parse(source).body
    found = None
    for part in dotted.split("."):
        found = next(
            (
                node
                for node in nodes
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part
            ),
            None,
        )
        if found is None:
            raise ExportError(f"{where}: no {dotted!r} in the file")
        nodes = found.body
    start = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    return source.splitlines()[start - 1 : found.end_lineno]


def quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.strip("\n").split("\n"))


def fenced(code: str, language: str) -> str:
    ticks = "```"
    while ticks in code:
        ticks += "`"
    return f"{ticks}{language}\n{code}\n{ticks}"


# --- notebooks --------------------------------------------------------------------------------

SOLUTION_START = re.compile(r"^ *(`{3,}|:{3,})\{solution-start\}\s*(?P<label>\S+)")
SOLUTION_END = re.compile(r"^ *(`{3,}|:{3,})\{solution-end\}")


def install_cell(repository_url: str, branch: str, extras: list[str]) -> nbformat.NotebookNode:
    """The first cell: installs bilevel_lib from the book's repository when it is missing."""
    if not repository_url:
        raise ExportError("repository_url is empty: set repository.url in _config.yml")
    folder = repository_url.rstrip("/").rsplit("/", 1)[-1]
    spec = f"./{folder}[{','.join(extras)}]"
    source = f'''# Run this cell first. Where bilevel_lib is missing (on Colab, say), it
# clones the book's repository and installs the library with what the
# chapter needs. myst-nb's glue() puts numbers into the book's text;
# outside the book a stand-in shows them.
import importlib.util
import os
import subprocess
import sys

REPOSITORY = "{repository_url}"
BRANCH = "{branch}"
if importlib.util.find_spec("bilevel_lib") is None:
    if not os.path.isdir("{folder}"):
        subprocess.run(
            ["git", "clone", "--depth", "1", "--branch", BRANCH,
             REPOSITORY, "{folder}"],
            check=True,
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet",
         "-e", "{spec}"],
        check=True,
    )
    sys.path.insert(0, os.path.abspath("{folder}"))
if importlib.util.find_spec("myst_nb") is None:
    import types

    from IPython.display import display as _display

    def glue(name, variable, display=True):
        if display:
            _display(variable)

    sys.modules["myst_nb"] = types.ModuleType("myst_nb")
    sys.modules["myst_nb"].glue = glue'''
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["bilevel-install"]
    return cell


def figure_caption(cell) -> tuple[str, str] | None:
    """(caption, name) of a figure myst-nb makes from a code cell's metadata."""
    figure = (cell.metadata.get("mystnb") or {}).get("figure") or {}
    if "caption" in figure:
        return str(figure["caption"]).strip(), figure.get("name", "")
    return None


def convert(
    source: Path, docname: str, resolved: Resolved, student: bool = False, notebooks=None
) -> nbformat.NotebookNode:
    """The clean (or student) notebook of one MyST-markdown page; ``notebooks`` are the docnames
    that have one (default: every notebook page of _toc.yml), which its links may point to."""
    if notebooks is None:
        notebooks = [doc for doc, _ in notebook_pages()]
    nb = jupytext.read(source)
    page = Page(docname, resolved, student=student, notebooks=frozenset(notebooks))
    text = source.read_text(encoding="utf-8")
    extras = ["book"] + (
        ["cvx"] if re.search(r"^\s*(import|from) (cvxpy|diffcp)|bilevel_lib\.l1\.cvx", text, re.M) else []
    )
    cells = [install_cell(resolved.repository_url, resolved.repository_branch, extras)]
    in_solution: str | None = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            kept, lines, i = [], cell.source.split("\n"), 0
            while i < len(lines):
                line = lines[i]
                start, end = SOLUTION_START.match(line), SOLUTION_END.match(line)
                if start or end:
                    i = skip_gate(lines, i)
                if start:
                    if in_solution is not None:
                        raise ExportError(f"{docname}: a solution-start inside the solution to {in_solution}")
                    in_solution = start["label"]
                    if not student:
                        kept += ["", page.solution_heading(in_solution, docname), ""]
                elif end:
                    if in_solution is None:
                        raise ExportError(f"{docname}: a solution-end without its solution-start")
                    if not student:
                        kept += ["", f"*{page.solution_end(in_solution)}*", ""]
                    in_solution = None
                else:
                    if not (student and in_solution):
                        kept.append(line)
                    i += 1
            body = "\n".join(kept)
            body = page.markdown(body).strip()
            if body:
                cells.append(nbformat.v4.new_markdown_cell(body, metadata=dict(cell.metadata)))
            continue
        if student and in_solution:
            continue
        new = nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata))
        cells.append(new)
        caption = figure_caption(cell)
        if caption:
            text, name = caption
            number = resolved.number(docname, "figure", name) if name else ""
            shown = f"**Figure {number}.** " if number else ""
            cells.append(nbformat.v4.new_markdown_cell(shown + page.markdown(text)))
    if in_solution is not None:
        raise ExportError(f"{docname}: the solution to {in_solution} has no solution-end")
    out = nbformat.v4.new_notebook()
    out.cells = cells
    out.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "bilevel_book": {"page": docname, "variant": "student" if student else "clean"},
    }
    nbformat.validate(out)
    return out


def skip_gate(lines: list[str], i: int) -> int:
    """The index after a solution-start or solution-end marker: its option lines and closing fence."""
    fence = re.match(r"^ *(`{3,}|:{3,})", lines[i])[1]
    j = i + 1
    while j < len(lines) and re.match(r"^\s*:[\w-]+:", lines[j]):
        j += 1
    if j < len(lines) and lines[j].strip() == fence:
        return j + 1
    raise ExportError(f"a gate marker {lines[i].strip()!r} is not closed by {fence!r} on the next lines")


def notebook_pages(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(docname, source) of every notebook page of _toc.yml, in order."""
    sys.path.insert(0, str(root / "tests"))
    try:
        from bookbuild import is_notebook, source_file, toc_pages
    finally:
        sys.path.remove(str(root / "tests"))
    pages = [(doc, source_file(doc)) for doc in toc_pages()]
    return [(doc, path) for doc, path in pages if path.suffix == ".md" and is_notebook(path)]


def notebook_path(variant: str, docname: str) -> str:
    """Where a page's notebook goes, relative to the site root."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")
    return f"{NOTEBOOKS_DIR}/{variant}/{docname}.ipynb"


def zip_path(variant: str) -> str:
    return f"{NOTEBOOKS_DIR}/bilevel-book-{variant}-notebooks.zip"


def export_all(resolved: Resolved, site: Path, variants=VARIANTS, root: Path = ROOT) -> list[Path]:
    """Write each variant's notebooks and their zip into the built site; returns the files written."""
    written = []
    pages = notebook_pages(root)
    for variant in variants:
        files = []
        for docname, source in pages:
            nb = convert(source, docname, resolved, variant == "student", [doc for doc, _ in pages])
            path = site / notebook_path(variant, docname)
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, path)
            files.append((docname, path))
        archive = site / zip_path(variant)
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for docname, path in files:
                zf.write(path, f"bilevel-book-{variant}/{docname}.ipynb")
        written += [path for _, path in files] + [archive]
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=ROOT / "_build", help="a finished build (default: _build)")
    parser.add_argument("--student", action="store_true", help="only the student notebooks (the student site)")
    args = parser.parse_args(argv)
    resolved = Resolved.from_build(args.build, [ROOT / "references.bib"])
    written = export_all(resolved, args.build / "html", ("student",) if args.student else VARIANTS)
    for path in written:
        print(f"{path.stat().st_size / 1024:8.1f} KB  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
