"""The package's layers: every import goes down (or sideways within a layer), never up, and no cycle.

The layer order is written once, in ``bilevel_lib.LAYERS`` (and the table of the package docstring).
Imports are read from the source with ``ast``, including imports inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import bilevel_lib

PACKAGE = Path(bilevel_lib.__file__).resolve().parent
BOOK_ONLY = ("matplotlib", "ipywidgets", "IPython", "PIL")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, text: str | None = None) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path`` (or in ``text`` read as that module)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text)
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.append((prefix, node.lineno))
            # `from . import x` / `from .pkg import module` names submodules too
            for alias in node.names:
                candidate = f"{prefix}.{alias.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py"
                ).exists():
                    found.append((candidate, node.lineno))
    return found


def layer_of(module: str) -> int | None:
    """Index of the module's layer in ``bilevel_lib.LAYERS``; None for the package root and __main__."""
    parts = module.split(".")
    if parts[0] != "bilevel_lib" or len(parts) < 2 or parts[1] not in bilevel_lib.LAYERS:
        return None
    return bilevel_lib.LAYERS.index(parts[1])


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    stray = [str(p.relative_to(PACKAGE)) for p in MODULES if layer_of(module_name(p)) is None and p.parent != PACKAGE]
    top = sorted(p.name for p in MODULES if p.parent == PACKAGE)
    assert not stray, f"modules outside the layers {bilevel_lib.LAYERS}: {stray}"
    assert top == ["__init__.py", "__main__.py"], f"only __init__ and __main__ may sit at the top: {top}"
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(bilevel_lib.LAYERS), f"folders {folders} differ from the layers {bilevel_lib.LAYERS}"


def upward_imports(path: Path, text: str | None = None) -> list[str]:
    here = layer_of(module_name(path))
    if here is None:
        return []  # the package root and __main__ may import any layer
    return [
        f"line {line}: {name} ({bilevel_lib.LAYERS[layer_of(name)]})"
        for name, line in imports_of(path, text)
        if layer_of(name) is not None and layer_of(name) > here
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_higher_layer(path):
    upward = upward_imports(path)
    assert not upward, f"{module_name(path)} imports from a higher layer: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_book_layer_imports_plotting_and_widgets(path):
    if layer_of(module_name(path)) == bilevel_lib.LAYERS.index("book"):
        return
    bad = [f"line {line}: {name}" for name, line in imports_of(path) if name.split(".")[0] in BOOK_ONLY]
    assert not bad, f"{module_name(path)} imports book-only packages: {bad}"


def find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Every cycle found by depth-first search of a module → imported-modules graph."""
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph.get(m, []):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m)
    return cycles


def module_graph() -> dict[str, list[str]]:
    """Edges between modules; a package's ``__init__`` only re-exports, so edges into one are dropped."""
    names = {module_name(p): p for p in MODULES}
    packages = {m for m, p in names.items() if p.name == "__init__.py"}
    return {
        m: sorted({n for n, _ in imports_of(p) if n in names and n != m and n not in packages})
        for m, p in names.items()
    }


def test_no_import_cycle_between_modules():
    cycles = find_cycles(module_graph())
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_checks_can_fail():
    """An upward import written into a module's text, and a cycle in a graph, are both caught."""
    ops = PACKAGE / "problem" / "ops.py"
    text = ops.read_text(encoding="utf-8") + "\n\ndef late():\n    from ..training.loops import train_double_loop\n"
    assert any("bilevel_lib.training.loops" in line for line in upward_imports(ops, text))
    assert upward_imports(ops) == []
    graph = module_graph()
    graph["bilevel_lib.problem.ops"] = graph["bilevel_lib.problem.ops"] + ["bilevel_lib.problem.cost"]
    assert find_cycles(graph), "a cost → ops → cost cycle was not found"


def test_import_bilevel_lib_stays_light():
    """``import bilevel_lib`` loads neither the plotting/widget stack, cvxpy, numba, nor the self-checks."""
    code = (
        "import sys, bilevel_lib; heavy = ('matplotlib', 'ipywidgets', 'cvxpy', 'diffcp', 'numba', 'tqdm', "
        "'skimage', 'bilevel_lib.book', 'bilevel_lib.book.checks', 'bilevel_lib.solvers.preconditioners'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import bilevel_lib loaded: {out}"
