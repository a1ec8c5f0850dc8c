"""Sphinx extension (``sphinx.local_extensions`` in _config.yml) for the library reference page.

It adds one directive, ``bilevel-module``, used by ``chapters/library_reference.md`` inside
``{eval-rst}`` blocks (docstrings are reStructuredText, so the directive must run in an rST
parser, not in MyST's)::

    ```{eval-rst}
    .. bilevel-module:: bilevel_lib.problem.cost
       :no-docstring: some_function, SomeClass.method
    ```

It writes, for that module, its docstring (``automodule``), a table of the names in its
``__all__`` (``autosummary``) and the documentation of each of them (``autofunction``,
``autoclass`` with its public methods, ``autodata``). A name the module only re-exports is listed
in the table and linked to the module that defines it, where it is documented: every object is
described once (re-exports would otherwise be "duplicate object descriptions"). For a package
(``bilevel_lib.problem``) only the docstring is written, since its ``__all__`` only re-exports.

Which modules the page must show is checked by ``tests/lib/test_docstrings.py``.
"""

import importlib
import inspect
import types

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _home(obj, default):
    """The module that documents ``obj``: where it is defined, if that module exports it."""
    module_name = getattr(obj, "__module__", None)
    name = getattr(obj, "__name__", None)
    if not (isinstance(obj, (type, types.FunctionType)) and module_name and name):
        return default
    if module_name == default or not module_name.startswith("bilevel_lib"):
        return default
    try:
        home = importlib.import_module(module_name)
    except ImportError:  # pragma: no cover - the module was imported to make obj
        return default
    return module_name if name in getattr(home, "__all__", ()) else default


#: full names whose docstring is left out of the page (``:no-docstring:`` of the directive)
_LEFT_OUT = set()

_LEFT_OUT_TEXT = "(Its docstring is left out of this page until it builds without warnings; see the source.)"


#: full names of module-level data without a ``#:`` comment (autodoc would show the docstring
#: of the value's type, e.g. dict's)
_NO_COMMENT = set()


def _drop_docstring(app, what, name, obj, options, lines):
    """``autodoc-process-docstring``: replace the docstring of a left-out name by a note."""
    if name in _LEFT_OUT:
        lines[:] = [_LEFT_OUT_TEXT, ""]
    elif name in _NO_COMMENT:
        lines[:] = ["(Not documented yet: no ``#:`` comment.)", ""]


def module_lines(module_name, left_out=()):
    """The reStructuredText written for one module (a list of lines).

    ``left_out``: names in the module (``name``, ``Class.method``, or ``module`` for the module's
    own docstring) whose docstrings are replaced by a note; they keep their entry and link target.
    """
    module = importlib.import_module(module_name)
    for name in left_out:
        if name != "module" and name.split(".")[0] not in getattr(module, "__all__", ()):
            raise ValueError(f":no-docstring: names {name!r}, which is not in {module_name}.__all__")
        _LEFT_OUT.add(module_name if name == "module" else f"{module_name}.{name}")
    lines = [f".. automodule:: {module_name}", ""]
    if hasattr(module, "__path__"):  # a package: its docstring only
        return lines
    names = list(getattr(module, "__all__", ()))
    if not names:
        return lines
    try:  # the ``#:`` comments that document module-level data
        comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except Exception:  # pragma: no cover - no source
        comments = {}
    table = [".. autosummary::", "   :nosignatures:", ""]
    entries, reexports = [], []
    for name in names:
        obj = getattr(module, name)
        home = _home(obj, module_name)
        if home != module_name:
            role = "class" if inspect.isclass(obj) else "func"
            reexports.append(f":py:{role}:`~{home}.{name}`")
            continue
        if isinstance(obj, types.ModuleType):
            continue
        table.append(f"   {name}")
        if inspect.isclass(obj):
            entries += [f".. autoclass:: {module_name}.{name}", "   :members:", ""]
        elif callable(obj):
            entries += [f".. autofunction:: {module_name}.{name}", ""]
        else:
            if ("", name) not in comments:
                _NO_COMMENT.add(f"{module_name}.{name}")
            entries += [f".. autodata:: {module_name}.{name}", "   :no-value:", ""]
    if len(table) > 3:
        lines += table + [""]
    if reexports:
        lines += ["Also exported here, documented where they are defined: " + ", ".join(reexports) + ".", ""]
    return lines + entries


class BilevelModule(SphinxDirective):
    """``bilevel-module``: docstring, table of ``__all__`` and entries of one module."""

    required_arguments = 1
    has_content = False
    option_spec = {"no-docstring": directives.unchanged}

    def run(self):
        module_name = self.arguments[0].strip()
        left_out = [n.strip() for n in self.options.get("no-docstring", "").split(",") if n.strip()]
        source = self.get_source_info()[0]
        try:
            lines = module_lines(module_name, left_out)
        except (ImportError, ValueError) as err:
            raise self.error(f"bilevel-module {module_name}: {err}") from err
        content = StringList(lines, source=source)
        container = nodes.container()
        nested_parse_with_titles(self.state, content, container)
        return container.children


def setup(app):
    app.add_directive("bilevel-module", BilevelModule)
    app.connect("autodoc-process-docstring", _drop_docstring)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
