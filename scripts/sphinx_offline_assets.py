"""Sphinx extension (``sphinx.local_extensions`` in _config.yml) for the rendered pages.

* Load the vendored MathJax (``mathjax_path`` in _config.yml) on every page. Sphinx adds it
  only to pages with an equation node, but math also appears in widget labels such as
  ``$\\varepsilon$`` and in HTML or Markdown cell outputs.
* Drop duplicate ``<script>`` tags. Sphinx 7.4 registers an inline script added through
  ``app.add_js_file(None, body=...)`` once with filename ``None`` and once with ``""``, so
  sphinx-thebe's ``const THEBE_JS_URL = ...`` ran twice and raised a SyntaxError on
  every page.
"""


def _script_key(js):
    filename = getattr(js, "filename", js) or ""
    attributes = getattr(js, "attributes", {}) or {}
    return (filename, getattr(js, "priority", None), tuple(sorted(attributes.items())))


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen = set()
    unique = []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    app.set_html_assets_policy("always")
    # Late priority: after MathJax and myst-nb have added their scripts for the page.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
