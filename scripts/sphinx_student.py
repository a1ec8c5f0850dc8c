"""Sphinx extension (``sphinx.local_extensions`` in _config.yml) for the student build.

``make student`` builds the book with sphinx-exercise's ``hide_solutions = True``. That option drops
``{solution}`` blocks, but for the gated form

    ````{solution-start} label
    ````
    prose and code cells
    ````{solution-end}
    ````

it only drops the ``solution-start`` marker: the prose and the code cells between the two markers
stay in the page (sphinx-exercise 1.2.1). This extension replaces the ``solution-start`` directive
by one that, when solutions are hidden, leaves a marker node; a transform then removes everything
from the marker up to and including the matching ``solution-end``. The code cells still run during
the build (later cells may use what they define), but neither they nor their outputs are written.

It also keeps the page sources (``_sources/*.md`` and ``*.ipynb``, which contain the solutions) out
of the student site: no copied sources, no download button.

With ``hide_solutions = False`` (the normal build) it changes nothing.
"""

from docutils import nodes
from sphinx.transforms import SphinxTransform


class hidden_solution_marker(nodes.Element):
    """Where a gated solution started; removed, with the solution, before writing."""


def _skip(self, node):
    raise nodes.SkipNode


def _make_directive():
    from sphinx_exercise.directive import SolutionStartDirective

    class StudentSolutionStartDirective(SolutionStartDirective):
        def run(self):
            result = super().run()  # registers the gate, so sphinx-exercise's structure check runs
            if self.env.app.config.hide_solutions:
                return [hidden_solution_marker()]
            return result

    return StudentSolutionStartDirective


class RemoveGatedSolutions(SphinxTransform):
    """Remove each hidden gated solution: the marker, its content and its ``solution-end``."""

    default_priority = 9  # before sphinx-exercise's MergeGatedSolutions (10)

    def apply(self):
        from sphinx_exercise.nodes import solution_end_node

        for marker in list(self.document.findall(hidden_solution_marker)):
            parent = marker.parent
            start = parent.index(marker)
            end = next(
                (
                    i
                    for i in range(start + 1, len(parent.children))
                    if isinstance(parent.children[i], solution_end_node)
                ),
                None,
            )
            if end is None:
                raise ValueError(f"{self.env.docname}: a solution-start has no solution-end after it at the same level")
            del parent.children[start : end + 1]


def _student_config(app, config):
    if config.hide_solutions:
        config.html_copy_source = False
        config.html_theme_options = {**config.html_theme_options, "use_download_button": False}


def setup(app):
    app.setup_extension("sphinx_exercise")
    app.add_directive("solution-start", _make_directive(), override=True)
    app.add_node(hidden_solution_marker, **{fmt: (_skip, None) for fmt in ("html", "latex", "text", "man", "texinfo")})
    app.add_transform(RemoveGatedSolutions)
    app.connect("config-inited", _student_config, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
