"""One explorer, two renderings: a live ``ipywidgets`` panel in a notebook, precomputed frames in the book.

Every "try it" panel of the book is an :class:`Explorer`: a pure plotting function and the grid of
parameter values the chapter talks about (one or several named axes).  When it is displayed it
offers two renderings of the same panel, and the front end picks one:

* ``application/vnd.jupyter.widget-view+json``, a live ``ipywidgets`` panel (JupyterLab, Binder,
  Voilà, VS Code): one control per axis, and a callback that redraws with the plotting function;
* ``text/html``, a viewer for the static web page: one frame per point of the grid, drawn when the
  chapter runs, and a few lines of inline JavaScript that switch frames when a control moves.
  Every control changes the picture, and nothing is fetched from the network.

The book's ``_config.yml`` makes the HTML builders prefer ``text/html`` (``nb_mime_priority_overrides``),
so the static pages carry no widget state and no widget manager.  A numeric axis is a range input
(a selection slider when live), a categorical axis (strings) a drop-down menu.  Frames are
palette PNGs (:func:`~bilevel_lib.book.viz.figure_png` with ``colors``), and identical frames are
stored once.  :func:`~bilevel_lib.book.viz.static_slider` is the one-axis viewer without a live panel.

Introduced in Ch. "The running example"; used by every chapter with a "Try it" section.
"""

from __future__ import annotations

import html
import itertools
import numbers
from collections.abc import Callable, Mapping, Sequence

from . import viz
from .viz import Axis, _same, viewer_html

__all__ = ["Explorer", "explorer", "WIDGET_VIEW"]

#: The mime type of a live widget view; the book's HTML builders never render it (_config.yml).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _text(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def _make_axis(name, spec, label, kind) -> Axis:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"grid axis names must be identifiers (keywords of the plot function); got {name!r}")
    if isinstance(spec, (str, bytes)) or not isinstance(spec, (Sequence, Mapping)) and not hasattr(spec, "tolist"):
        raise TypeError(f"grid[{name!r}] must be a sequence of values or (label, value) pairs; got {spec!r}")
    items = list(spec.tolist() if hasattr(spec, "tolist") else spec)
    if not items:
        raise ValueError(f"grid[{name!r}] must hold at least one value; got an empty sequence")
    pairs = all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in items)
    texts = tuple(item[0] for item in items) if pairs else tuple(_text(v) for v in items)
    values = tuple(item[1] for item in items) if pairs else tuple(items)
    for i, v in enumerate(values):
        if any(_same(v, w) for w in values[:i]):
            raise ValueError(f"grid[{name!r}] repeats the value {v!r}; each grid value must appear once")
        if isinstance(v, float) and v != v:
            raise ValueError(f"grid[{name!r}] holds NaN; grid values must be comparable")
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    kind = kind or ("slider" if numeric else "dropdown")
    if kind not in ("slider", "dropdown"):
        raise ValueError(f"controls[{name!r}] must be 'slider' or 'dropdown'; got {kind!r}")
    return Axis(name, label or name, values, texts, kind)


class Explorer:
    """A plotting function over a grid of settings, displayed live in a notebook and as frames in the book.

    Build it with :func:`explorer`.  Displaying it (the last expression of a cell) gives both
    renderings (module docstring); :meth:`widget` and :meth:`html` give each one alone.

    Attributes
    ----------
    axes : list of Axis
        the grid's axes, in the order of the controls
    defaults : dict
        the setting shown first
    frames : list of bytes
        one PNG per grid point, in ``itertools.product`` order of the axes
    captions : list of str
        one text per grid point
    """

    def __init__(
        self,
        plot: Callable,
        grid: Mapping,
        defaults: Mapping,
        *,
        caption: Callable | None = None,
        labels: Mapping | None = None,
        controls: Mapping | None = None,
        live: Mapping | None = None,
        live_plot: Callable | None = None,
        title: str = "",
        alt: str = "",
        width: int | None = None,
        dpi: float = 72,
        colors: int | None = 64,
    ):
        if not callable(plot):
            raise TypeError(f"plot must be a function of the grid's keywords returning a figure; got {plot!r}")
        if not isinstance(grid, Mapping) or not grid:
            raise ValueError(f"grid must be a non-empty dict {{axis name: values}}; got {grid!r}")
        labels, controls, live = dict(labels or {}), dict(controls or {}), dict(live or {})
        for option, given in (("labels", labels), ("controls", controls), ("live", live)):
            unknown = sorted(set(given) - set(grid))
            if unknown:
                raise ValueError(f"{option} names axes {unknown} that are not in the grid {list(grid)}")
        if not isinstance(defaults, Mapping):
            raise TypeError(f"defaults must be a dict {{axis name: value}}; got {defaults!r}")
        missing, unknown = sorted(set(grid) - set(defaults)), sorted(set(defaults) - set(grid))
        if missing or unknown:
            raise ValueError(
                f"defaults must give one value for each axis {list(grid)}; "
                f"got {list(defaults)} (missing {missing}, unknown {unknown})"
            )
        if width is not None and not (isinstance(width, numbers.Integral) and width > 0):
            raise ValueError(f"width must be a positive number of pixels; got {width!r}")
        self.axes = [_make_axis(name, spec, labels.get(name), controls.get(name)) for name, spec in grid.items()]
        start = tuple(axis.index(defaults[axis.name]) for axis in self.axes)
        self.defaults = {axis.name: axis.values[i] for axis, i in zip(self.axes, start)}
        self._start = start
        self.plot, self.live_plot = plot, live_plot or plot
        self._looks_up = live_plot is None and not live
        self.caption = caption
        self.live = live
        self.title, self.alt, self.width, self.dpi, self.colors = title, alt, width, dpi, colors
        self.frames, self.captions = [], []
        for values in itertools.product(*(axis.values for axis in self.axes)):
            setting = dict(zip((axis.name for axis in self.axes), values))
            self.frames.append(self._png(plot(**setting), setting))
            self.captions.append(str(caption(**setting)) if caption else "")

    def _png(self, picture, setting) -> bytes:
        if isinstance(picture, bytes):
            return picture
        if hasattr(picture, "savefig"):
            return viz.figure_png(picture, dpi=self.dpi, colors=self.colors)
        raise TypeError(f"plot must return a matplotlib figure or PNG bytes; for {setting} it returned {picture!r}")

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, **setting) -> bytes:
        """The precomputed PNG of one grid point; ValueError naming the axis for a value off the grid."""
        if set(setting) != {axis.name for axis in self.axes}:
            raise ValueError(f"give one value for each axis {[a.name for a in self.axes]}; got {list(setting)}")
        flat = 0
        for axis in self.axes:
            flat = flat * len(axis.values) + axis.index(setting[axis.name])
        return self.frames[flat]

    @property
    def page_bytes(self) -> int:
        """Size in bytes of the static rendering (:meth:`html`), what the frames add to the page."""
        return len(self.html().encode())

    def html(self) -> str:
        """The static viewer (:func:`~bilevel_lib.book.viz.viewer_html`): every control switches precomputed frames."""
        return viewer_html(
            self.axes, self.frames, self.captions, self._start, title=self.title, alt=self.alt, width=self.width
        )

    def widget(self):
        """The live ``ipywidgets`` panel: one control per axis (or the ``live`` ones), redrawing on release.

        With only grid controls and no ``live_plot`` it shows the precomputed frames (the same
        pictures as the static viewer); otherwise it calls ``live_plot``.
        """
        import ipywidgets as ipw

        style = {"description_width": "initial"}
        controls = {}
        for axis in self.axes:
            if axis.name in self.live:
                controls[axis.name] = self.live[axis.name]
                continue
            options = list(zip(axis.texts, axis.values))
            value = self.defaults[axis.name]
            if axis.kind == "slider":
                controls[axis.name] = ipw.SelectionSlider(
                    options=options, value=value, description=axis.label, continuous_update=False, style=style
                )
            else:
                controls[axis.name] = ipw.Dropdown(options=options, value=value, description=axis.label, style=style)
        caption = ipw.HTML()

        def draw(**setting):
            # every control a grid axis and no live plot of its own: the sliders reach only the
            # precomputed frames, so the callback shows one (no drawing at all)
            viz.display_png(self.frame(**setting) if self._looks_up else self.live_plot(**setting))
            caption.value = html.escape(str(self.caption(**setting))) if self.caption else ""

        output = ipw.interactive_output(draw, controls)
        return ipw.VBox([ipw.HBox(list(controls.values()), layout=ipw.Layout(flex_flow="row wrap")), output, caption])

    def __repr__(self) -> str:
        shape = " × ".join(f"{axis.name} ({len(axis.values)})" for axis in self.axes)
        return f"<Explorer over {shape}: {len(self.frames)} frames, {self.page_bytes / 1024:.0f} KB in the page>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget()._repr_mimebundle_())
        bundle["text/html"] = self.html()
        bundle["text/plain"] = repr(self)
        return bundle


def explorer(plot: Callable, grid: Mapping, defaults: Mapping, **options) -> Explorer:
    """A live widget and a static viewer of ``plot`` over ``grid``, starting at ``defaults``.

    Parameters
    ----------
    plot : callable
        ``plot(**setting)`` returns a matplotlib figure (or PNG bytes) for one setting, a dict
        with one value per axis.  It must be pure: results are computed before, and it only looks
        them up and draws.  It is called once per grid point when the explorer is made.
    grid : dict[str, sequence]
        The values of each axis, in order: numbers (a slider) or strings (a menu), or
        ``(label, value)`` pairs.  The frames cover the whole product of the axes: keep it small.
    defaults : dict[str, value]
        The setting shown first, one grid value per axis.
    caption : callable, optional
        ``caption(**setting)`` gives a line of text shown under the picture.
    labels : dict[str, str], optional
        Descriptions of the controls (default the axis names).
    controls : dict[str, str], optional
        ``"slider"`` or ``"dropdown"`` to override the kind of control of an axis.
    live : dict[str, ipywidgets widget], optional
        Controls of the live panel that replace the grid's (for example a continuous slider);
        the live panel then calls ``live_plot`` with their values.
    live_plot : callable, optional
        What the live panel calls, returning a figure or PNG bytes, e.g. one that solves instead of
        looking up.  Without it and without ``live`` controls the live panel shows the precomputed
        frame of the setting (the sliders reach only grid points), so a move costs no drawing.
    title, alt : str
        The static viewer's heading and the alt text of its picture.
    width : int, optional
        Maximum width of the static viewer in CSS pixels.
    dpi, colors :
        Passed to :func:`~bilevel_lib.book.viz.figure_png` for the frames (default 72 dpi, a
        64-colour palette: about 10 KB for a two-panel line plot).

    Returns
    -------
    Explorer

    Raises
    ------
    ValueError
        For an empty axis, a repeated value, defaults that miss an axis or lie off the grid, or
        options naming an axis that is not in the grid.
    TypeError
        If ``plot`` is not callable or returns neither a figure nor PNG bytes.
    """
    return Explorer(plot, grid, defaults, **options)
