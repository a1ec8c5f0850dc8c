"""Sphinx extension (``sphinx.local_extensions`` in _config.yml): no ipywidgets state in the pages.

The book's explorers (``bilevel_lib.book.explorer``) display a live ``ipywidgets`` panel and a
static viewer; ``nb_mime_priority_overrides`` in _config.yml makes the HTML builders render the
static viewer, so no widget view is ever drawn in a page. The executed notebooks still record the
state of the live panels (nbclient keeps it in the notebook metadata), and myst-nb would write it
into each page as a ``<script type="application/vnd.jupyter.widget-state+json">``: kilobytes that
nothing reads, since the pages load no widget manager. This drops it before the page is written.
"""

WIDGET_STATE_KEY = "ipywidgets_state"  # the key under which myst-nb registers the state script


def _strip(app, env):
    for data in getattr(env, "nb_metadata", {}).values():
        js_files = data.get("js_files") if isinstance(data, dict) else None
        if js_files:
            for key in [k for k in js_files if k == WIDGET_STATE_KEY or k.startswith("ipywidgets_")]:
                del js_files[key]


def setup(app):
    # after every document is read (and its notebook executed), before any page is written
    app.connect("env-updated", _strip)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
