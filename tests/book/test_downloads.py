"""The book to take away (issue 17): clean and student notebooks, their zips, download and Colab links.

scripts/sphinx_downloads.py writes, at the end of the session's book build (the ``book`` fixture),
every notebook page of _toc.yml as a clean ``.ipynb`` (scripts/export_notebooks.py) under
``notebooks/clean/`` and ``notebooks/student/`` of the site. These tests check that

* every notebook page has both notebooks and each zip holds them all;
* each notebook is valid nbformat, has no outputs, starts with the install cell;
* no MyST markup is left in any Markdown cell (directives, roles, targets, labelled displays);
* each clean notebook runs in a fresh kernel with nbclient, without an error (two at a time);
* the student notebooks hold no text of any solution (the student build's check, on notebooks),
  while the clean ones do;
* on every page, every download and launch link points at a file of the built site or at a URL
  made from the ``repository:`` setting (in Chromium, the links the reader sees);
* the student site carries only student notebooks, and its menus link only to them;
* the whole book is one PDF (scripts/print_pdf.py, at the end of the build): more sheets than pages,
  a bookmark per page on the sheet that shows its title, no raw TeX, its figures embedded; the
  student PDF has no solution text;
* the converter refuses markup it has no rule for, and turns a small synthetic page into what a
  reader should see (so the checks above can fail).
"""

from __future__ import annotations

import html
import re
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nbformat
import pytest
import yaml
from bookbuild import ROOT, toc_pages
from exercise_source import distinctive_snippets, normalize, parse

sys.path.insert(0, str(ROOT / "scripts"))
import export_notebooks  # noqa: E402
import print_pdf  # noqa: E402
import sphinx_downloads  # noqa: E402

sys.path.remove(str(ROOT / "scripts"))

pytestmark = pytest.mark.slow

PAGES = export_notebooks.notebook_pages()
DOCNAMES = [doc for doc, _ in PAGES]
VARIANTS = export_notebooks.VARIANTS
CELL_TIMEOUT_S = 600
# MyST left as text: a directive fence, a role, a (label)= target, a $$ … $$ (label) display.
MYST_LEFT = re.compile(
    r"(`{3,}|:{3,})\{[\w:-]+\}"
    r"|\{(cite|eq|numref|ref|doc|glue|py|math|ex|exercise|solution|term|download|sub|sup)[\w:-]*\}`"
    r"|^:{3,}"
    r"|^\([\w:.-]+\)=\s*$"
    r"|\$\$\s*\([\w:.-]+\)",
    re.MULTILINE,
)


def notebook(book, variant: str, docname: str) -> nbformat.NotebookNode:
    path = book.html_dir / export_notebooks.notebook_path(variant, docname)
    assert path.is_file(), f"{docname}: no {variant} notebook {path.relative_to(book.html_dir)} in the build"
    return nbformat.read(path, as_version=4)


def test_there_are_notebook_pages():
    chapters = [doc for doc in toc_pages() if doc.startswith("chapters/")]
    assert len(PAGES) >= len(chapters) // 2, f"only {DOCNAMES} of {chapters} are notebook pages"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("docname", DOCNAMES)
def test_notebook_is_valid_and_clean(book, variant, docname):
    nb = notebook(book, variant, docname)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["bilevel_book"] == {"page": docname, "variant": variant}
    first = nb.cells[0]
    assert first.cell_type == "code" and "bilevel-install" in first.metadata.get("tags", [])
    assert 'find_spec("bilevel_lib")' in first.source
    outputs = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.get("outputs")]
    assert not outputs, f"{docname}: cells {outputs} of the {variant} notebook have outputs"
    counts = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.get("execution_count")]
    assert not counts, f"{docname}: cells {counts} of the {variant} notebook have execution counts"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("docname", DOCNAMES)
def test_no_myst_markup_left(book, variant, docname):
    nb = notebook(book, variant, docname)
    left = [
        f"cell {i}: {match.group(0)!r} in …{cell.source[max(0, match.start() - 60) : match.end() + 40]!r}…"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for match in MYST_LEFT.finditer(cell.source)
    ]
    assert not left, f"{docname} ({variant}): MyST markup left as text:\n" + "\n".join(left[:10])


@pytest.mark.parametrize("docname", DOCNAMES)
def test_code_cells_are_the_pages(book, docname):
    """The clean notebook runs the page's code, every cell in order; the student one the same
    minus its solutions' cells."""
    import jupytext

    source = [cell.source for cell in jupytext.read(ROOT / f"{docname}.md").cells if cell.cell_type == "code"]
    clean = [cell.source for cell in notebook(book, "clean", docname).cells[1:] if cell.cell_type == "code"]
    student = [cell.source for cell in notebook(book, "student", docname).cells[1:] if cell.cell_type == "code"]
    assert clean == source, f"{docname}: the clean notebook's code cells differ from the page's"
    remaining = iter(source)
    assert all(cell in remaining for cell in student), f"{docname}: student cells not a subsequence of the page's"
    solutions = parse(ROOT / f"{docname}.md").solutions
    if any("```{code-cell}" in "\n".join(s.body) for s in solutions):
        assert len(student) < len(clean), f"{docname}: the student notebook kept its solutions' code cells"


@pytest.mark.parametrize("variant", VARIANTS)
def test_zip_holds_every_notebook(book, variant):
    archive = book.html_dir / export_notebooks.zip_path(variant)
    assert archive.is_file(), f"no {archive.relative_to(book.html_dir)} in the build"
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        expected = {f"bilevel-book-{variant}/{doc}.ipynb" for doc in DOCNAMES}
        assert names == expected, f"{archive.name}: {sorted(names ^ expected)} differ"
        for doc in DOCNAMES:
            inside = nbformat.reads(zf.read(f"bilevel-book-{variant}/{doc}.ipynb").decode(), as_version=4)
            assert inside == notebook(book, variant, doc), f"{archive.name}: {doc} is not the site's notebook"


# --- running them -----------------------------------------------------------------------------


# Each notebook runs in a process of its own (a fresh kernel, and nbclient's event loops never
# live in the test process); it prints one line: the error, or nothing.
RUNNER = r"""
import sys
import nbformat
from nbclient import NotebookClient

path, cwd, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(path, as_version=4)
try:
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
except Exception as err:
    print(f"{type(err).__name__}: {str(err)[-3000:]}")
    sys.exit(1)
"""


def _execute(path: Path, cwd: Path) -> tuple[float, str | None]:
    import os
    import subprocess

    start = time.perf_counter()
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path), str(cwd), str(CELL_TIMEOUT_S)],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return seconds, (proc.stdout + proc.stderr[-3000:]).strip() or f"exit status {proc.returncode}"
    return seconds, None


@pytest.fixture(scope="session")
def executed(book) -> dict[str, tuple[float, str | None]]:
    """Every clean notebook run once in a fresh kernel, two at a time (the machine's two cores)."""
    jobs = {
        doc: (book.html_dir / export_notebooks.notebook_path("clean", doc), (ROOT / doc).parent) for doc in DOCNAMES
    }
    missing = [doc for doc, (path, _) in jobs.items() if not path.is_file()]
    if missing:
        pytest.fail(f"no clean notebook for {missing}", pytrace=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {doc: pool.submit(_execute, path, cwd) for doc, (path, cwd) in jobs.items()}
        results = {doc: future.result() for doc, future in futures.items()}
    report = ROOT / "_build" / "notebook-execution.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text("".join(f"{s:7.1f} s  {doc}  {'ERROR' if e else 'ok'}\n" for doc, (s, e) in results.items()))
    return results


@pytest.mark.parametrize("docname", DOCNAMES)
def test_clean_notebook_runs_in_a_fresh_kernel(executed, docname):
    seconds, error = executed[docname]
    assert error is None, f"{docname}: the clean notebook failed after {seconds:.0f} s:\n{error}"


# --- no solutions for students ---------------------------------------------------------------


def notebook_text(nb) -> str:
    return normalize("\n".join(cell.source for cell in nb.cells))


@pytest.fixture(scope="session")
def outside_solutions() -> str:
    from bookbuild import source_file

    return "\n".join(parse(source_file(doc)).outside_solutions for doc in toc_pages())


@pytest.mark.parametrize("docname", [doc for doc in DOCNAMES if parse(ROOT / f"{doc}.md").solutions])
def test_student_notebook_has_no_solution_text(book, outside_solutions, docname):
    clean = notebook_text(notebook(book, "clean", docname))
    student = {variant_doc: notebook_text(notebook(book, "student", variant_doc)) for variant_doc in DOCNAMES}
    for solution in parse(ROOT / f"{docname}.md").solutions:
        snippets = distinctive_snippets(solution, outside_solutions)
        shown = [s for s in snippets if s in clean]
        assert shown, (
            f"{docname}: no text of the solution to {solution.argument} in the clean notebook, so its "
            f"absence from the student one would prove nothing (candidates: {snippets[:5]})"
        )
        leaks = {s: doc for s in shown for doc, text in student.items() if s in text}
        assert not leaks, f"{docname}: text of the solution to {solution.argument} in student notebooks: {leaks}"
    assert "Solution to Exercise" in clean
    assert "Solution to Exercise" not in student[docname]


# --- links on the pages ----------------------------------------------------------------------


def repository_urls() -> tuple[str, str, str, str]:
    """(repository URL, owner/repo, branch, published branch) from _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    published = config["sphinx"]["config"].get("bilevel_notebooks_branch", "gh-pages")
    return url, urlsplit(url).path.strip("/"), config["repository"].get("branch", "main"), published


def check_menu_links(page_url: str, links: list[str], site_dir: Path, docname: str) -> list[str]:
    """What is wrong with the download and launch links of one page."""
    repo_url, owner_repo, branch, published = repository_urls()
    colab = f"https://colab.research.google.com/github/{owner_repo}/blob/{published}/"
    binder = f"https://mybinder.org/v2/gh/{owner_repo}/{branch}?urlpath="
    problems = []
    for href in links:
        if href.startswith("javascript:") or href.startswith("#"):
            continue
        absolute = urljoin(page_url, href)
        if absolute.startswith(colab):
            target = site_dir / absolute[len(colab) :]
            if not target.is_file():
                problems.append(f"{href}: Colab would open {target.relative_to(site_dir)}, not in the site")
        elif absolute.startswith(binder) or absolute.startswith(repo_url):
            continue
        elif urlsplit(absolute).netloc == urlsplit(page_url).netloc:
            path = urlsplit(absolute).path.lstrip("/")
            if not (site_dir / path).is_file():
                problems.append(f"{href}: no {path} in the built site")
        else:
            problems.append(f"{href}: neither a file of the site nor a URL of the repository {repo_url}")
    return problems


MENU_LINKS = """() => Array.from(document.querySelectorAll(
  '.dropdown-download-buttons a, .dropdown-launch-buttons a, .article-header-buttons a'
)).map(a => a.getAttribute('href')).filter(h => h)"""


@pytest.mark.parametrize("docname", toc_pages())
def test_download_and_launch_links_resolve(book, site, browser, docname):
    page = browser.new_page()
    try:
        url = site.url(f"{docname}.html")
        page.goto(url)
        links = page.evaluate(MENU_LINKS)
    finally:
        page.close()
    problems = check_menu_links(url, links, book.html_dir, docname)
    assert not problems, f"{docname}: " + "; ".join(problems)
    if docname in DOCNAMES:
        for variant in VARIANTS:
            expected = export_notebooks.notebook_path(variant, docname)
            assert any(urljoin(url, h).endswith(expected) for h in links), f"{docname}: no link to {expected}"
        assert any("colab.research.google.com" in h for h in links), f"{docname}: no Open in Colab entry"
        executed_copy = [h for h in links if "_sources/" in h and h.endswith(".ipynb")]
        assert not executed_copy, f"{docname}: the executed MyST notebook is still offered: {executed_copy}"


def test_link_check_can_fail(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "a.ipynb").write_text("{}")
    _, owner_repo, _, published = repository_urls()
    page = "http://127.0.0.1:8000/chapters/x.html"
    good = [
        "../notebooks/a.ipynb",
        f"https://colab.research.google.com/github/{owner_repo}/blob/{published}/notebooks/a.ipynb",
    ]
    assert not check_menu_links(page, good, tmp_path, "chapters/x")
    bad = [
        "../notebooks/b.ipynb",
        f"https://colab.research.google.com/github/{owner_repo}/blob/{published}/notebooks/b.ipynb",
        "https://colab.research.google.com/github/someone/else/blob/main/a.ipynb",
    ]
    assert len(check_menu_links(page, bad, tmp_path, "chapters/x")) == 3


def test_colab_url_comes_from_the_repository_setting():
    class Config:
        html_theme_options = {"repository_url": "https://github.com/someone/book"}
        bilevel_notebooks_branch = "pages"

    url = sphinx_downloads.colab_url(Config, "chapters/a", "clean")
    assert url == "https://colab.research.google.com/github/someone/book/blob/pages/notebooks/clean/chapters/a.ipynb"
    Config.html_theme_options = {"repository_url": "https://gitlab.com/someone/book"}
    assert sphinx_downloads.colab_url(Config, "chapters/a", "clean") is None


# --- the converter on a synthetic page (no build) --------------------------------------------

SYNTHETIC = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

(ch-toy)=
# Toy

See {cite:t}`crockett2022bilevel` and {cite:p}`kim2018ogm`, eq. {eq}`eq-toy-a` and {ref}`toy-ex1`.
The SNR is {glue:text}`snr:.1f` dB; see {py:func}`~bilevel_lib.solve_lower_level`.

$$
x = 1
$$ (eq-toy-a)

:::{note}
A note with {eq}`eq-toy-a`.
:::

```{exercise} Try
:label: toy-ex1

Do it.
```

````{solution-start} toy-ex1
:class: dropdown
````

The secret answer is forty-two exactly.

```{code-cell} ipython3
secret_answer = 42
```

````{solution-end}
````

```{code-cell} ipython3
print("after")
```
"""


def toy_resolved() -> export_notebooks.Resolved:
    return export_notebooks.Resolved(
        labels={"toy-ex1": ("toy", "toy-ex1", "Exercise"), "ch-toy": ("toy", "ch-toy", "Toy")},
        fignumbers={"toy": {"displaymath": {"equation-eq-toy-a": (4, 1)}, "exercise": {"toy-ex1": (4, 1)}}},
        secnumbers={},
        equations={"eq-toy-a": ("toy", 1)},
        titles={"toy": "Toy"},
        glue={"toy": {"snr": {"data": {"text/plain": "12.345"}}}},
        bib=export_notebooks.read_bibliography([ROOT / "references.bib"]),
        repository_url="https://github.com/someone/book",
        repository_branch="main",
    )


def test_converter_turns_myst_into_markdown(tmp_path):
    path = tmp_path / "toy.md"
    path.write_text(SYNTHETIC, encoding="utf-8")
    clean = export_notebooks.convert(path, "toy", toy_resolved(), notebooks=["toy"])
    text = "\n".join(cell.source for cell in clean.cells if cell.cell_type == "markdown")
    for expected in (
        "Crockett and Fessler [2022]",
        "[Kim and Fessler, 2018]",
        "eq. (4.1)",
        "Exercise 4.1",
        "12.3 dB",
        "`solve_lower_level`",
        "\\tag{4.1}",
        "> **Note**",
        "#### Solution to Exercise 4.1",
        "The secret answer is forty-two exactly.",
    ):
        assert expected in text, f"{expected!r} not in the converted Markdown:\n{text}"
    assert not MYST_LEFT.search(text), text
    assert [c.source for c in clean.cells if c.cell_type == "code"][1:] == ["secret_answer = 42", 'print("after")']
    assert "someone/book" in clean.cells[0].source

    student = export_notebooks.convert(path, "toy", toy_resolved(), student=True, notebooks=["toy"])
    everything = "\n".join(cell.source for cell in student.cells)
    assert "forty-two" not in everything and "secret_answer" not in everything and "Solution" not in everything
    assert 'print("after")' in everything and "Exercise 4.1" in everything


@pytest.mark.parametrize(
    "markup, message",
    [
        ("```{tabbed} A\nx\n```", "no rule for the directive {tabbed}"),
        ("{abbr}`a (b)`", "no rule for the role {abbr}"),
        ("{eq}`eq-missing`", "an equation the build does not know"),
        ("{cite:p}`nobody2099`", "not in references.bib"),
        ("{glue:text}`nothing`", "glued no value 'nothing'"),
        ("```{note}\nnever closed", "never closed"),
    ],
)
def test_converter_refuses_what_it_cannot_convert(tmp_path, markup, message):
    path = tmp_path / "toy.md"
    path.write_text(SYNTHETIC.split("(ch-toy)=")[0] + markup + "\n", encoding="utf-8")
    with pytest.raises(export_notebooks.ExportError, match=re.escape(message)):
        export_notebooks.convert(path, "toy", toy_resolved(), notebooks=["toy"])


# --- the student site -------------------------------------------------------------------------

HREF = re.compile(r'<a\b[^>]*\bhref="([^"]+)"[^>]*>')
MENU = re.compile(r'<div class="dropdown dropdown-(?:download|launch)-buttons">.*?</ul>', re.DOTALL)


def menu_links(markup: str) -> list[str]:
    """The links of a page's download and launch menus, read from its HTML."""
    return [html.unescape(href) for menu in MENU.findall(markup) for href in HREF.findall(menu)]


def test_student_site_has_only_student_notebooks(student):
    assert not (student / export_notebooks.NOTEBOOKS_DIR / "clean").exists(), "the student site has clean notebooks"
    assert not (student / export_notebooks.zip_path("clean")).exists(), "the student site has the clean zip"
    for doc in DOCNAMES:
        path = student / export_notebooks.notebook_path("student", doc)
        assert path.is_file(), f"{doc}: no student notebook in the student site"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert "Solution to Exercise" not in notebook_text(nb), f"{doc}: a solution heading in the student notebook"
    assert (student / export_notebooks.zip_path("student")).is_file()


@pytest.mark.parametrize("docname", toc_pages())
def test_student_page_links_resolve(student, docname):
    markup = (student / f"{docname}.html").read_text(encoding="utf-8")
    links = menu_links(markup)
    url = f"http://127.0.0.1:1/{docname}.html"
    problems = check_menu_links(url, links, student, docname)
    assert not problems, f"{docname}: " + "; ".join(problems)
    if docname in DOCNAMES:
        expected = export_notebooks.notebook_path("student", docname)
        assert any(urljoin(url, h).endswith(expected) for h in links), f"{docname}: no link to {expected}"
        assert not any("/clean/" in h for h in links), f"{docname}: the student page links a clean notebook"


# --- the PDF ----------------------------------------------------------------------------------

LIGATURES = str.maketrans({"ﬁ": "fi", "ﬂ": "fl", "ﬀ": "ff", "ﬃ": "ffi", "ﬄ": "ffl"})


def pdf_text(text: str) -> str:
    return normalize(text.translate(LIGATURES))


def site_pdf(html_dir: Path, student: bool):
    from pypdf import PdfReader

    path = html_dir / print_pdf.PDF_DIR / print_pdf.pdf_name(student)
    if not path.is_file():
        if print_pdf.find_chromium() is None:
            pytest.skip("Chromium is not installed, so the build made no PDF")
        pytest.fail(f"no {path.relative_to(html_dir)} in the build, though Chromium is installed", pytrace=False)
    return PdfReader(path)


@pytest.fixture(scope="session")
def book_pdf(book):
    return site_pdf(book.html_dir, student=False)


@pytest.fixture(scope="session")
def student_pdf(student):
    return site_pdf(student, student=True)


@pytest.fixture(scope="session")
def book_pdf_text(book_pdf) -> list[str]:
    return [pdf_text(page.extract_text() or "") for page in book_pdf.pages]


H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.DOTALL)


def page_title(markup: str) -> str:
    """A built page's title as printed: its first <h1>, without the section number's markup."""
    title = re.sub(r"<[^>]+>", "", H1.search(markup)[1])
    return normalize(html.unescape(title).replace("#", "").translate(LIGATURES))


def test_pdf_has_a_bookmark_and_title_per_page(book, book_pdf, book_pdf_text):
    pages = toc_pages()
    assert len(book_pdf.pages) > len(pages), f"{len(book_pdf.pages)} PDF pages for {len(pages)} pages of the book"
    outline = [(item.title, book_pdf.get_destination_page_number(item)) for item in book_pdf.outline]
    assert len(outline) == len(pages), f"bookmarks {[t for t, _ in outline]} for {pages}"
    for docname, (mark, number) in zip(pages, outline, strict=True):
        title = page_title(book.page(docname))
        assert title in pdf_text(mark), f"{docname}: bookmark {mark!r}, page title {title!r}"
        assert title in book_pdf_text[number], f"{docname}: its title {title!r} is not on PDF page {number + 1}"


def test_pdf_has_no_raw_tex(book_pdf_text):
    for number, text in enumerate(book_pdf_text, start=1):
        for raw in ("$$", "\\begin{", "\\frac", "\\mathbf"):
            assert raw not in text, f"PDF page {number}: raw TeX {raw!r} in …{text[text.find(raw) - 80 :][:160]}…"


def figure_count(html_dir: Path) -> int:
    """The figures of the pages: images the build wrote to _images/ that the pages show."""
    shown = set()
    for docname in toc_pages():
        markup = (html_dir / f"{docname}.html").read_text(encoding="utf-8")
        shown |= set(re.findall(r'<img[^>]+src="[./]*_images/([^"]+)"', markup))
    return len(shown)


def image_count(reader) -> int:
    names = set()
    for number, page in enumerate(reader.pages):
        xobjects = (page.get("/Resources") or {}).get("/XObject") or {}
        for name, ref in xobjects.items():
            if ref.get_object().get("/Subtype") == "/Image":
                names.add((number, name))
    return len(names)


def test_pdf_has_the_figures(book, book_pdf):
    # Every figure is a PNG the page shows once; Chromium embeds each as an image XObject of the
    # sheet it lands on. Widgets' static viewers show one frame of several, and a figure split by
    # a sheet break or shared by two panels may be embedded once, hence half as the bound.
    figures = figure_count(book.html_dir)
    assert figures > 10, f"only {figures} figures in the built pages"
    images = image_count(book_pdf)
    assert images >= figures / 2, f"{images} images in the PDF for {figures} figures on the pages"


def test_student_pdf_has_no_solution_text(book_pdf_text, student_pdf, outside_solutions):
    student_text = " ".join(pdf_text(page.extract_text() or "") for page in student_pdf.pages)
    normal_text = " ".join(book_pdf_text)
    for docname in toc_pages():
        solutions = parse(ROOT / f"{docname}.md").solutions if (ROOT / f"{docname}.md").is_file() else []
        snippets = [s for solution in solutions for s in distinctive_snippets(solution, outside_solutions)]
        shown = [s for s in snippets if s in normal_text]
        if solutions:
            assert shown, f"{docname}: no solution text found in the book's PDF (candidates: {snippets[:5]})"
        leaks = [s for s in shown if s in student_text]
        assert not leaks, f"{docname}: solution text in the student PDF: {leaks[:5]}"
    assert len(student_pdf.pages) < len(book_pdf_text), "the student PDF is not shorter than the book's"


def test_install_cell_clones_and_installs_when_the_library_is_missing(monkeypatch, tmp_path):
    """The first cell, run where neither bilevel_lib nor myst-nb is importable (Colab): it clones
    the configured repository's branch and installs the library with the chapter's extras."""
    import importlib.util
    import subprocess

    cell = export_notebooks.install_cell("https://github.com/someone/book", "main", ["book", "cvx"])
    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in {"bilevel_lib", "myst_nb"} else real_find_spec(name),
    )
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "myst_nb", raising=False)
    exec(compile(cell.source, "install-cell", "exec"), {})
    try:
        assert calls[0] == [
            "git",
            "clone",
            "--depth",
            "1",
            "--branch",
            "main",
            "https://github.com/someone/book",
            "book",
        ]
        assert calls[1][1:] == ["-m", "pip", "install", "--quiet", "-e", "./book[book,cvx]"]
        assert sys.path[0] == str(tmp_path / "book")
        assert callable(sys.modules["myst_nb"].glue)
    finally:
        sys.modules.pop("myst_nb", None)


def test_execution_reports_an_error(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('planted')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    _, error = _execute(path, tmp_path)
    assert error is not None and "planted" in error, error
    nb.cells.pop()
    nbformat.write(nb, path)
    assert _execute(path, tmp_path)[1] is None


GLUE_ROLE = re.compile(r"\{glue(?::text|:)?\}`([^`]+)`")


def test_glued_values_are_the_pages(book):
    """Each ``{glue:text}`` of a page becomes, in its notebooks, the text the page shows."""
    resolved = export_notebooks.Resolved.from_build(book.html_dir.parent, [ROOT / "references.bib"])
    checked = 0
    for docname in DOCNAMES:
        shown = normalize(html.unescape(re.sub(r"<[^>]+>", "", book.page(docname))))
        page = export_notebooks.Page(docname, resolved)
        for body in GLUE_ROLE.findall((ROOT / f"{docname}.md").read_text(encoding="utf-8")):
            value = normalize(page.glue(body, docname))
            assert value in shown, f"{docname}: {{glue:text}}`{body}` gives {value!r}, not on the page"
            checked += 1
    assert checked > 50, f"only {checked} glued values checked"
