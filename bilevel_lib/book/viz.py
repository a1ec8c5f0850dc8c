"""The book's static figures: pure plotting functions, the shared style, and static sliders.

Every chapter calls :func:`use_book_style` once, so all figures share one look.  Figures are shown
as PNG (:func:`figure_png`); :func:`static_slider` turns precomputed frames into a slider that works
in the static HTML book, without a kernel (the one-axis case of :mod:`bilevel_lib.book.explorer`).
The chapters' plotting functions over precomputed results are in :mod:`bilevel_lib.book.widgets`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import numbers
import re
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ..problem.metrics import snr_db
from ..problem.penalties import CornerRounded1Norm

__all__ = [
    "use_book_style",
    "plot_penalty",
    "show_filters",
    "show_images",
    "plot_denoising",
    "figure_png",
    "display_png",
    "DenoisingCanvas",
    "markdown_table",
    "plot_storage_diagram",
    "static_slider",
    "Axis",
    "viewer_html",
]

BOOK_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    # Curves that cross must be told apart: the fourth colour is not another blue (it was a teal
    # next to the first one's blue; the penalty and truncation figures draw four crossing curves).
    "axes.prop_cycle": plt.cycler(color=["#1b6ca8", "#d1495b", "#edae49", "#7b3294", "#00798c", "#30638e"]),
}


def use_book_style() -> None:
    """Apply the book's matplotlib style (call once per chapter)."""
    plt.rcParams.update(BOOK_STYLE)


def figure_png(fig, dpi: float | None = None, colors: int | None = None) -> bytes:
    """Render a figure to PNG bytes and close it.

    Widgets display figures this way: without the inline backend's tight bounding box (the book's
    figures use constrained or fixed layouts), drawing is about twice as fast.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    dpi : float, optional
        Pixels per inch; default the book's 100.  Lower values give smaller pictures, for
        example the frames of a :func:`static_slider` shown at their natural size.
    colors : int, optional
        Quantise to an adaptive palette of this many colours (2 to 256).  Line plots keep their
        look with 64 colours, and their PNG shrinks three- to fourfold: use it for the many
        frames of a :func:`static_slider`, which are all embedded in the page.
    """
    import io
    import numbers

    if dpi is not None and not (isinstance(dpi, numbers.Real) and not isinstance(dpi, bool) and dpi > 0):
        raise ValueError(f"dpi must be a positive number; got {dpi!r}")
    if colors is not None and not (
        isinstance(colors, numbers.Integral) and not isinstance(colors, bool) and 2 <= colors <= 256
    ):
        raise ValueError(f"colors must be an integer from 2 to 256; got {colors!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    if colors is None:
        return buffer.getvalue()
    from PIL import Image

    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(int(colors))
    quantized = io.BytesIO()
    image.save(quantized, format="png", optimize=True)
    return quantized.getvalue()


def display_png(fig) -> None:
    """Show ``fig`` in a notebook as one PNG image (:func:`figure_png`), the form every explorer uses.

    ``fig`` may also be PNG bytes already (a precomputed frame, a :class:`DenoisingCanvas`, an
    explorer's plot).  A PNG keeps the page light and looks the same in the live notebook and in
    the static book.
    """
    from IPython.display import Image, display

    if isinstance(fig, bytes):
        if not fig.startswith(b"\x89PNG"):
            raise ValueError(f"fig must be a matplotlib figure or PNG bytes; got {len(fig)} bytes that are not a PNG")
        display(Image(fig))
        return
    display(Image(figure_png(fig)))


def _rgb_png(canvas) -> bytes:
    """The canvas's pixels as an RGB PNG with fast (level 1) compression: the picture of ``savefig``.

    The book's figures are opaque, so dropping the alpha channel loses nothing.
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _segments_meet_box(points, box) -> bool:
    """Whether the polyline through ``points`` (display coordinates) meets the rectangle ``box``."""
    x0, y0, x1, y1 = points[:-1, 0], points[:-1, 1], points[1:, 0], points[1:, 1]
    # the part of each segment (parameter t in [0, 1]) within the box's x range, then its y range there
    dx = np.where(x1 == x0, 1e-300, x1 - x0)
    t_enter = np.minimum((box.x0 - x0) / dx, (box.x1 - x0) / dx)
    t_leave = np.maximum((box.x0 - x0) / dx, (box.x1 - x0) / dx)
    t_low, t_high = np.clip(t_enter, 0, 1), np.clip(t_leave, 0, 1)
    ya, yb = y0 + t_low * (y1 - y0), y0 + t_high * (y1 - y0)
    # a segment wholly beside the box has its x range outside [t = 0, t = 1]: it does not count
    within = (t_enter <= 1) & (t_leave >= 0)
    return bool(np.any(within & (np.maximum(ya, yb) >= box.y0) & (np.minimum(ya, yb) <= box.y1)))


def _value_limits(limits, name: str = "ylim"):
    """``limits`` as a pair of finite floats (low, high) with low < high; ValueError naming ``name``."""
    try:
        if isinstance(limits, (str, bytes)):
            raise TypeError
        low, high = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers; got {limits!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{name} must be a pair (low, high) of finite numbers with low < high; got {limits!r}")
    return low, high


class DenoisingCanvas:
    """The figure of :func:`plot_denoising` (``layout="row"``) kept alive and redrawn in place, for live panels.

    Building the figure, laying it out and drawing every artist again take most of a live
    callback, and most of the picture does not change when only x̂ does.  :meth:`png` builds a
    fresh :func:`plot_denoising` figure for the first picture; it lays it out (constrained
    layout), draws everything but the artists that follow x̂, keeps those pixels, and draws the
    rest on top.  When only x̂ and the caption change it puts the kept pixels back (blitting) and
    draws x̂'s image, its title, its profile line and the caption alone; the legend is drawn again
    only when x̂'s profile comes near it.  When the noisy image changes (a new noise level) it
    gives the kept figure the new image, grey scale, title and profile and draws the kept pixels
    again at the frozen layout (a repaint), without building a new figure.  A new figure is built
    only when the layout could move: the profile's limits change (they are fixed with ``ylim``)
    or a changing text takes another height.  Either way the picture is that of a fresh render
    with :func:`figure_png` (``tests/lib/test_viz.py`` compares the pixels).  The figure is
    detached from pyplot, so a notebook never shows it by itself.

    Parameters
    ----------
    truth : array (h, w)
        The true image, the same for every picture.
    width, dpi : float
        The figure's width in inches and the resolution of its pictures.
    ylim : (float, float), optional
        Fixed value limits of the profile (:func:`plot_denoising`'s ``ylim``); without them a new
        figure is built whenever the automatic limits move.

    Attributes
    ----------
    fresh, repaints, blits : int
        How many pictures were drawn each way: a new figure, the kept figure drawn again for a
        new noisy image, and the kept pixels with x̂ drawn on top.
    """

    def __init__(self, truth, width: float = 8.5, dpi: float = 72, ylim=None):
        truth = np.asarray(truth, dtype=np.float64)
        if truth.ndim != 2:
            raise ValueError(f"truth must be a 2-D image; got an array of shape {truth.shape}")
        if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not dpi > 0:
            raise ValueError(f"dpi must be a positive number; got {dpi!r}")
        self.ylim = None if ylim is None else _value_limits(ylim, "ylim")
        self.truth, self.width, self.dpi = truth, width, float(dpi)
        self.fresh = self.repaints = self.blits = 0
        self._fig = None

    def png(self, noisy, denoised, caption: str = "") -> bytes:
        """The PNG of ``plot_denoising(truth, noisy, denoised, caption)``, drawing again only what changed."""
        noisy, denoised = (np.asarray(a, dtype=np.float64) for a in (noisy, denoised))
        for name, value in (("noisy", noisy), ("denoised", denoised)):
            if value.shape != self.truth.shape:
                raise ValueError(f"{name} must have the truth's shape {self.truth.shape}; got {value.shape}")
        if self._fig is not None and bool(caption) == self._captioned:
            same_noisy = np.array_equal(noisy, self._noisy)
            if (same_noisy or self._set_noisy(noisy)) and self._update(denoised, caption):
                if same_noisy:
                    self.blits += 1
                else:
                    self._keep_background()
                    self.repaints += 1
                return self._compose()
        self._build(noisy, denoised, caption)
        self.fresh += 1
        return self._compose()

    def _build(self, noisy, denoised, caption) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = plot_denoising(self.truth, noisy, denoised, caption, width=self.width, ylim=self.ylim)
        plt.close(fig)  # detached from pyplot: only this object draws it, on an Agg canvas of its own
        FigureCanvasAgg(fig)
        fig.set_dpi(self.dpi)
        image_ax, profile = fig.axes[2], fig.axes[3]
        self._image, self._line, self._title = image_ax.images[0], profile.lines[2], image_ax.title
        self._legend = profile.get_legend()
        # in drawing order: x̂'s image, the dotted row marker above it, its title, its profile, the legend
        self._changing = [self._image, image_ax.lines[0], self._title, self._line, self._legend]
        self._changing += [fig._suptitle] if caption else []
        for artist in self._changing:
            artist.set_animated(True)
        fig.canvas.draw()  # the constrained layout, and everything that does not follow x̂
        fig.set_layout_engine("none")  # then frozen: the kept pixels stay where the layout put them
        self._fig, self._captioned, self._limits = fig, bool(caption), profile.get_ylim()
        self._keep_background(drawn=True)
        self._legend_box = self._legend.get_window_extent().padded(2 * self._line.get_linewidth() + 2)
        self._noisy = noisy.copy()
        self._heights = self._text_heights()

    def _keep_background(self, drawn: bool = False) -> None:
        """Draw (unless ``drawn``) and keep the pixels of all but x̂'s artists, without and with the legend."""
        fig = self._fig
        if not drawn:
            fig.canvas.draw()
        self._background = fig.canvas.copy_from_bbox(fig.bbox)
        fig.draw_artist(self._legend)
        self._with_legend = fig.canvas.copy_from_bbox(fig.bbox)

    def _set_noisy(self, noisy) -> bool:
        """Give the kept figure a new noisy image; False if the layout could change (then a fresh build)."""
        fig = self._fig
        row = int(round(fig.axes[2].lines[0].get_ydata()[0]))
        vmin, vmax = min(self.truth.min(), noisy.min()), max(self.truth.max(), noisy.max())
        for ax in fig.axes[:3]:
            ax.images[0].set_clim(vmin, vmax)
        fig.axes[1].images[0].set_data(noisy)
        fig.axes[1].title.set_text(f"noisy ({snr_db(noisy, self.truth):.1f} dB)")
        fig.axes[3].lines[0].set_ydata(noisy[row])
        self._noisy = noisy.copy()
        if self.ylim is None:
            profile = fig.axes[3]
            profile.relim()
            profile.autoscale_view()
            if profile.get_ylim() != self._limits:
                return False
        return self._text_heights() == self._heights

    def _text_heights(self) -> list:
        """Heights in pixels of the texts that change, which the constrained layout makes room for."""
        renderer = self._fig.canvas.get_renderer()
        texts = [self._title, self._fig.axes[1].title] + ([self._fig._suptitle] if self._captioned else [])
        return [text.get_window_extent(renderer).height for text in texts]

    def _update(self, denoised, caption) -> bool:
        """Give the kept figure x̂ and the caption; False if the layout could change (then a fresh build)."""
        profile = self._fig.axes[3]
        row = int(round(self._fig.axes[2].lines[0].get_ydata()[0]))
        self._line.set_ydata(denoised[row])
        if self.ylim is None:
            profile.relim()
            profile.autoscale_view()
            if profile.get_ylim() != self._limits:
                return False
        self._image.set_data(denoised)
        self._title.set_text(f"denoised ({snr_db(denoised, self.truth):.1f} dB)")
        if caption:
            self._fig._suptitle.set_text(caption)
        # a text of another height would move the layout (the glyphs' extents count, not only the font)
        return self._text_heights() == self._heights

    def _compose(self) -> bytes:
        fig = self._fig
        points = self._line.get_transform().transform(np.column_stack(self._line.get_data()))
        crossing = _segments_meet_box(points, self._legend_box)
        fig.canvas.restore_region(self._background if crossing else self._with_legend)
        for artist in self._changing:
            if artist is not self._legend or crossing:
                fig.draw_artist(artist)
        return _rgb_png(fig.canvas)


def markdown_table(header, rows, align=None):
    """A table for a chapter's output, as Markdown: the book renders it as an HTML table that fits
    the text column (its headers wrap), where a printed table of fixed-width text would not.

    ``header`` is a sequence of column titles, ``rows`` a sequence of rows with one entry per
    column (anything with a ``str``; format numbers before, e.g. ``f"{x:.2f}"``); ``align`` is
    ``None`` (text columns left, the others right) or a string of ``"l"``, ``"r"``, ``"c"``, one
    letter per column. A ``|`` inside an entry is escaped. Returns an ``IPython.display.Markdown``
    (the last expression of a cell displays it).
    """
    from IPython.display import Markdown

    if isinstance(header, str) or not hasattr(header, "__len__") or len(header) == 0:
        raise ValueError(f"header must be a non-empty sequence of column titles; got {header!r}")
    header = [str(title) for title in header]
    if isinstance(rows, str) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows must be a sequence of rows; got {type(rows).__name__}")
    rows = [list(row) for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} entries; expected {len(header)}, one per column of {header}")
    if align is None:
        numeric = re.compile(r"^[\s+\-−]*[\d.]+([eE][+\-−]?\d+)?\s*[^\s\d]{0,2}$")
        align = "".join(
            "r" if rows and all(numeric.match(str(row[j]).strip()) for row in rows) else "l" for j in range(len(header))
        )
    if not isinstance(align, str) or len(align) != len(header) or set(align) - set("lrc"):
        raise ValueError(f"align must be a string of l, r or c, one per column ({len(header)}); got {align!r}")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}

    def line(entries):
        return "| " + " | ".join(str(entry).replace("|", "\\|") for entry in entries) + " |"

    return Markdown("\n".join([line(header), "| " + " | ".join(rule[a] for a in align) + " |", *map(line, rows)]))


def _image_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_penalty(eps_values=(1.0, 0.3, 0.1, 0.01), z_max: float = 2.0, penalty=CornerRounded1Norm):
    """φ, φ̇ and φ̈ of a penalty family for several ε (Ch. "The running example", Sec. 1.3 of the review)."""
    z = np.linspace(-z_max, z_max, 801)
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.6), layout="constrained")
    for eps in eps_values:
        phi = penalty(eps)
        label = rf"$\epsilon$ = {eps:g}"
        axes[0].plot(z, phi.value(z), label=label)
        axes[1].plot(z, phi.derivative(z), label=label)
        axes[2].semilogy(z, np.abs(phi.second_derivative(z)), label=label)
    if penalty is CornerRounded1Norm:
        axes[0].plot(z, np.abs(z), "k:", lw=1, label="|z|")
    axes[0].set_title(r"$\phi(z)$")
    axes[1].set_title(r"$\dot\phi(z)$")
    axes[2].set_title(r"$|\ddot\phi(z)|$ (log scale)")
    for ax in axes:
        ax.set_xlabel("z")
    axes[0].legend(fontsize=8)
    return fig


def show_filters(
    bank,
    titles=None,
    ncols: int | None = None,
    size: float = 1.1,
    suptitle: str | None = None,
    symmetric: bool = True,
    fig=None,
):
    """Show a bank of 2-D filters (K, h, w) as small images, or 1-D filters (K, S) as stem plots.

    Pass ``fig`` (a Figure or SubFigure) to draw into it, e.g. to stack several banks in one figure.
    """
    bank = np.asarray(bank, dtype=np.float64)
    k = bank.shape[0]
    ncols = ncols or min(k, 8)
    nrows = int(np.ceil(k / ncols))
    if fig is None:
        fig = plt.figure(figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= k:
            ax.axis("off")
            continue
        if bank.ndim == 2:
            ax.stem(bank[index])
            ax.set_xticks([])
        else:
            limit = np.abs(bank[index]).max() or 1.0
            ax.imshow(
                bank[index],
                cmap="RdBu_r" if symmetric else "gray",
                vmin=-limit if symmetric else None,
                vmax=limit if symmetric else None,
            )
            _image_axes(ax)
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_images(images, titles=None, size: float = 2.6, vmin=None, vmax=None):
    """Show 2-D images side by side with a shared grey scale."""
    images = [np.asarray(im) for im in images]
    vmin = min(im.min() for im in images) if vmin is None else vmin
    vmax = max(im.max() for im in images) if vmax is None else vmax
    fig, axes = plt.subplots(
        1, len(images), figsize=(size * len(images), size + 0.3), squeeze=False, layout="constrained"
    )
    for index, (ax, image) in enumerate(zip(axes.flat, images)):
        ax.imshow(image, vmin=vmin, vmax=vmax)
        _image_axes(ax)
        if titles is not None:
            ax.set_title(titles[index])
    return fig


def plot_denoising(
    truth,
    noisy,
    denoised,
    caption: str = "",
    row: int | None = None,
    layout: str = "row",
    width: float = 8.5,
    ylim=None,
):
    """Truth, noisy and denoised signal with their SNRs (review eq. 3.2).

    2-D images get a fourth panel with the profile along ``row`` (default: the middle row);
    1-D signals are drawn as curves on one axis. The three images share one grey scale, the range
    of the truth and the noisy image together, so the noise is shown and not clipped to the
    truth's range.

    Parameters
    ----------
    layout : {"row", "stacked"}
        2-D only: ``"row"`` puts the four panels side by side (small, for widget frames);
        ``"stacked"`` puts the three images in a row at a third of ``width`` each, large enough
        to compare, with the profile below them across the full width (for the chapters' figures).
        In the row layout the profile's legend stands beside it, so no line ever runs under it.
    width : float
        Width of the figure in inches (the book's text column is about 8.5 in at 100 dpi).
    ylim : (float, float), optional
        Fixed value limits of the profile (2-D only), e.g. wide enough for every noise level a
        panel reaches, so they do not move with the data; default: matplotlib's automatic limits.
    """
    if layout not in ("row", "stacked"):
        raise ValueError(f"layout must be 'row' or 'stacked'; got {layout!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number of inches; got {width!r}")
    ylim = None if ylim is None else _value_limits(ylim, "ylim")
    truth, noisy, denoised = (np.asarray(a, dtype=np.float64) for a in (truth, noisy, denoised))
    snr_noisy, snr_denoised = snr_db(noisy, truth), snr_db(denoised, truth)
    if truth.ndim == 1:
        fig, ax = plt.subplots(figsize=(width, 2.8), layout="constrained")
        ax.plot(noisy, ".", color="0.6", ms=3, label=f"noisy y ({snr_noisy:.1f} dB)")
        ax.plot(truth, "k-", lw=1, label="truth")
        ax.plot(denoised, "-", lw=1.6, label=f"denoised x̂ ({snr_denoised:.1f} dB)")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("sample")
        if caption:
            ax.set_title(caption)
        return fig
    row = truth.shape[0] // 2 if row is None else row
    if layout == "row":
        fig, axes = plt.subplots(
            1, 4, figsize=(width, 2.4), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 1, 1.5]}
        )
        image_axes, profile = axes[:3], axes[3]
    else:
        side = width / 3
        aspect = truth.shape[0] / truth.shape[1]
        fig = plt.figure(figsize=(width, side * aspect + 2.4), layout="constrained")
        grid = fig.add_gridspec(2, 3, height_ratios=[side * aspect, 1.9])
        image_axes = [fig.add_subplot(grid[0, j]) for j in range(3)]
        profile = fig.add_subplot(grid[1, :])
    vmin = min(truth.min(), noisy.min())
    vmax = max(truth.max(), noisy.max())
    for ax, image, title in zip(
        image_axes,
        (truth, noisy, denoised),
        ("truth", f"noisy ({snr_noisy:.1f} dB)", f"denoised ({snr_denoised:.1f} dB)"),
    ):
        ax.imshow(image, vmin=vmin, vmax=vmax)
        ax.axhline(row, color="#edae49", lw=0.8, ls=":")
        _image_axes(ax)
        ax.set_title(title)
    profile.plot(noisy[row], color="0.65", lw=0.8, label="noisy")
    profile.plot(truth[row], "k-", lw=1, label="truth")
    profile.plot(denoised[row], lw=1.5, label="denoised")
    profile.set_title(f"row {row} (dotted line in the images)" if layout == "stacked" else f"row {row}")
    if ylim is not None:
        profile.set_ylim(ylim)
    if layout == "row":
        profile.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), borderaxespad=1.0)
    else:
        profile.legend(fontsize=7, loc="upper right")
    if caption:
        fig.suptitle(caption, fontsize=9)
    return fig


def plot_storage_diagram(T: int = 6, current: int = 3):
    """What reverse and forward mode keep in memory during T unrolled iterations (Ch. "Unrolling").

    Top row, reverse mode (review eq. B.2): the iterates x⁽⁰⁾ … x⁽ᵀ⁻¹⁾ are stored (filled boxes)
    and the adjoints x̄⁽ᵗ⁾ run backwards from ∇ₓℓ.  Bottom row, forward mode (eq. B.3): only the
    current iterate and its Jacobian Z_t travel forward (filled at t = ``current``).

    Parameters
    ----------
    T : int
        Number of unrolled iterations drawn, at least 1.
    current : int
        The time step 0 ≤ current ≤ T whose forward-mode state is highlighted.

    Returns
    -------
    matplotlib.figure.Figure
        One axis with 4T + 3 boxes and 3T arrows.
    """
    from matplotlib.patches import FancyArrowPatch, Rectangle

    if int(T) != T or T < 1:
        raise ValueError(f"T must be an integer ≥ 1; got {T!r}")
    if int(current) != current or not 0 <= current <= T:
        raise ValueError(f"current must be an integer in [0, T] = [0, {T}]; got {current!r}")
    T, current = int(T), int(current)
    fig, ax = plt.subplots(figsize=(8.6, 3.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    xs = np.arange(T + 1) * 1.15

    def box(x, y, label, face, width=0.8, height=0.55, text_color="k"):
        ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, facecolor=face, edgecolor="0.3", lw=1))
        ax.text(x, y, label, ha="center", va="center", fontsize=9, color=text_color)

    def arrow(x0, y0, x1, y1, color="0.35"):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=10, color=color, lw=1))

    # reverse mode: the forward pass keeps every iterate, the backward pass walks back
    top, back = 2.6, 1.85
    ax.text(-0.9, top + 0.55, "reverse mode (B.2): memory O(TN)", fontsize=10, fontweight="bold")
    for t, x in enumerate(xs):
        stored = t < T
        box(x, top, f"$x^{{({t})}}$", colors[0] if stored else "white", text_color="w" if stored else "k")
        if t:
            arrow(xs[t - 1] + 0.42, top, x - 0.42, top)
            box(x, back, rf"$\bar x^{{({t})}}$", "#f4d3d8")
            arrow(x - 0.42, back, xs[t - 1] + 0.42, back, colors[1])
    ax.text(xs[-1] + 0.6, back, r"$\nabla_x\ell$", va="center", fontsize=9, color=colors[1])
    ax.text(xs[-1] + 0.6, top, "ℓ", va="center", fontsize=9)
    # forward mode: one iterate and the tangents Z_t travel together
    low = 0.55
    ax.text(-0.9, low + 0.75, "forward mode (B.3): memory O(NR)", fontsize=10, fontweight="bold")
    for t, x in enumerate(xs):
        now = t == current
        face = colors[3] if now else "white"
        box(x, low + 0.2, f"$x^{{({t})}}$", face, height=0.4, text_color="w" if now else "k")
        box(x, low - 0.3, f"$Z_{{{t}}}$", face, width=0.8, height=0.5, text_color="w" if now else "k")
        if t:
            arrow(xs[t - 1] + 0.42, low, x - 0.42, low, colors[3])
    ax.text(xs[-1] + 0.6, low - 0.05, r"$Z_T'\nabla_x\ell$", va="center", fontsize=9)
    ax.set_xlim(-1.0, xs[-1] + 1.6)
    ax.set_ylim(-0.1, 3.35)
    ax.axis("off")
    return fig


def static_slider(
    frames,
    labels,
    *,
    start: int = 0,
    title: str = "",
    alt: str = "",
    width: int | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """A slider that works without a kernel: precomputed frames, switched in the browser.

    The one-axis case of the book's static viewer (:func:`~bilevel_lib.book.viz.viewer_html`),
    for a sequence of pictures that has no live panel: a few lines of inline JavaScript swap the
    image when the reader moves an HTML range input. Nothing is fetched from the network.  A
    panel that should also be live in a notebook is an :func:`~bilevel_lib.book.explorer.explorer`.

    Parameters
    ----------
    frames : sequence of bytes or 2-D arrays, length F
        PNG bytes (for example from :func:`figure_png`) or images, which are written as 8-bit
        greyscale PNGs on one shared grey scale ``vmin``..``vmax`` (default: the range of all frames).
    labels : sequence of str, length F
        Text shown next to the slider for each frame (say which setting it is, and its result).
    start : int
        The frame shown first (the chapter's default setting).
    title, alt : str
        Caption above the slider, and alt text of the image.
    width : int, optional
        Maximum width of the viewer (image, range input and label) in CSS pixels.

    Returns
    -------
    IPython.display.HTML
        Display it, or take its ``.data`` for the HTML string.
    """
    import io

    from IPython.display import HTML
    from PIL import Image

    frames, labels = list(frames), [str(label) for label in labels]
    if not frames or len(frames) != len(labels):
        raise ValueError(
            f"need one label per frame and at least one frame; got {len(frames)} frames and {len(labels)} labels"
        )
    if not 0 <= start < len(frames):
        raise ValueError(f"start must be a frame index in [0, {len(frames) - 1}]; got {start}")
    arrays = [np.asarray(frame, dtype=np.float64) for frame in frames if not isinstance(frame, bytes)]
    if arrays and any(a.ndim != 2 for a in arrays):
        raise ValueError("frames must be PNG bytes or 2-D arrays")
    low = min(a.min() for a in arrays) if arrays and vmin is None else vmin
    high = max(a.max() for a in arrays) if arrays and vmax is None else vmax

    def png(frame) -> bytes:
        if isinstance(frame, bytes):
            return frame
        scaled = np.clip((np.asarray(frame, dtype=np.float64) - low) / max(high - low, 1e-300), 0.0, 1.0)
        buffer = io.BytesIO()
        Image.fromarray(np.round(255 * scaled).astype(np.uint8), mode="L").save(buffer, format="png", optimize=True)
        return buffer.getvalue()

    axis = Axis("frame", "", tuple(range(len(frames))), tuple(labels), "slider")
    return HTML(
        viewer_html(
            [axis],
            [png(frame) for frame in frames],
            labels,
            (start,),
            title=title,
            alt=alt,
            width=width,
            pixelated=bool(arrays),
        )
    )


@dataclass(frozen=True)
class Axis:
    """One named axis of an explorer's grid (:mod:`bilevel_lib.book.explorer`): its values, their labels and the kind of control.

    Attributes
    ----------
    name : str
        the keyword under which the plotting function receives the value
    label : str
        the control's description (for example ``"noise σ"``); default the name
    values : tuple
        the grid values, in the order of the control
    texts : tuple of str
        what the control shows for each value
    kind : str
        ``"slider"`` (a range input) or ``"dropdown"`` (a menu)
    """

    name: str
    label: str
    values: tuple
    texts: tuple
    kind: str

    def index(self, value) -> int:
        """Position of ``value`` on this axis; ValueError naming the axis if it is not a grid value."""
        for i, v in enumerate(self.values):
            if _same(v, value):
                return i
        raise ValueError(f"{self.name} must be one of the grid values {list(self.values)}; got {value!r}")


def _same(a, b) -> bool:
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) and not isinstance(a, bool):
        return a == b
    return type(a) is type(b) and a == b


def viewer_html(
    axes, frames, captions, start, *, title: str = "", alt: str = "", width: int | None = None, pixelated: bool = False
) -> str:
    """The static viewer: controls over ``axes`` that switch precomputed PNG ``frames`` in the browser.

    Parameters
    ----------
    axes : list of Axis
        The grid's axes; the frames are ordered as ``itertools.product`` of their values (the last
        axis varies fastest).  An axis with an empty label shows no readout.
    frames : list of bytes
        One PNG per grid point; identical frames are embedded once.
    captions : list of str
        One text per grid point, shown under the picture (may be empty strings).
    start : tuple of int
        The position on each axis shown first.
    title, alt : str
        Caption above the controls, and alt text of the picture.
    width : int, optional
        Width of the viewer in CSS pixels; default the frame's natural width.
    pixelated : bool
        Scale the frames to the viewer's width without smoothing (small images shown large).

    Returns
    -------
    str
        Self-contained HTML: the frames are inline (base64), the script is inline.
    """
    sizes = [len(axis.values) for axis in axes]
    count = 1
    for size in sizes:
        count *= size
    if len(frames) != count or len(captions) != count:
        raise ValueError(
            f"need one frame and one caption per grid point ({count}); got {len(frames)} frames and "
            f"{len(captions)} captions"
        )
    if any(not isinstance(frame, bytes) or not frame.startswith(b"\x89PNG") for frame in frames):
        raise TypeError("frames must be PNG bytes (for example from viz.figure_png)")
    if len(start) != len(axes) or any(not 0 <= s < n for s, n in zip(start, sizes)):
        raise ValueError(f"start must give a position on each axis within {sizes}; got {tuple(start)}")
    unique, index = {}, []
    for frame in frames:
        index.append(unique.setdefault(frame, len(unique)))
    encoded = [base64.b64encode(frame).decode("ascii") for frame in unique]
    flat = 0
    for s, n in zip(start, sizes):
        flat = flat * n + s
    digest = hashlib.sha1(json.dumps([encoded, captions, [a.texts for a in axes]]).encode()).hexdigest()[:12]
    uid = "bl-explorer-" + digest
    payload = json.dumps(
        {
            "frames": encoded,
            "index": index,
            "captions": list(captions),
            "sizes": sizes,
            "texts": [a.texts for a in axes],
        }
    ).replace("</", "<\\/")
    esc = html.escape
    rows = []
    for i, axis in enumerate(axes):
        control_id = f"{uid}-{i}"
        label = esc(axis.label)
        if axis.kind == "slider":
            control = (
                f'<input type="range" id="{control_id}" data-axis="{i}" min="0" max="{sizes[i] - 1}" step="1" '
                f'value="{start[i]}" aria-valuetext="{esc(axis.texts[start[i]], quote=True)}" style="flex:1 1 8em;min-width:6em">'
            )
        else:
            options = "".join(
                f'<option value="{j}"{" selected" if j == start[i] else ""}>{esc(text)}</option>'
                for j, text in enumerate(axis.texts)
            )
            control = f'<select id="{control_id}" data-axis="{i}">{options}</select>'
        readout = (
            f'<output for="{control_id}" class="bl-explorer-readout" style="min-width:4em">{esc(axis.texts[start[i]])}</output>'
            if axis.kind == "slider" and axis.label
            else ""
        )
        if not axis.label:  # no visible label: the control is named by the viewer's title
            control = control.replace(
                f'id="{control_id}"', f'id="{control_id}" aria-label="{esc(title or "frame", quote=True)}"', 1
            )
        tag = f'<label for="{control_id}" style="min-width:5em">{label}</label>' if axis.label else ""
        rows.append(
            f'<div class="bl-explorer-control" style="display:flex;align-items:center;gap:0.5em;flex:1 1 16em">'
            f"{tag}{control}{readout}</div>"
        )
    box = f"max-width:{int(width)}px;" if width else ""
    image = "width:100%;image-rendering:pixelated;" if pixelated else "max-width:100%;"
    heading = (
        f'<div class="bl-explorer-title" style="font-weight:600;font-size:0.9em">{esc(title)}</div>' if title else ""
    )
    return f"""<div class="bl-explorer" id="{uid}" role="group" aria-label="{esc(title or "explorer", quote=True)}"
 style="{box}margin:0.5em 0">{heading}
<div class="bl-explorer-controls" style="display:flex;flex-wrap:wrap;gap:0.25em 1.5em;font-size:0.9em">{"".join(rows)}</div>
<img src="data:image/png;base64,{encoded[index[flat]]}" alt="{esc(alt, quote=True)}"
 style="{image}display:block;margin:0.25em 0">
<output class="bl-explorer-caption" aria-live="polite" style="display:block;font-size:0.85em">{esc(captions[flat])}</output>
<script type="application/json">{payload}</script>
</div>
<script>
(function () {{
  var root = document.getElementById("{uid}");
  if (!root) return;
  var data = JSON.parse(root.querySelector('script[type="application/json"]').textContent);
  var img = root.querySelector("img"), caption = root.querySelector(".bl-explorer-caption");
  var controls = Array.prototype.slice.call(root.querySelectorAll("[data-axis]"));
  function update() {{
    var flat = 0;
    controls.forEach(function (control, i) {{
      var k = Number(control.value);
      flat = flat * data.sizes[i] + k;
      var readout = root.querySelector('output[for="' + control.id + '"]');
      if (readout) readout.textContent = data.texts[i][k];
      if (control.type === "range") control.setAttribute("aria-valuetext", data.texts[i][k]);
    }});
    img.src = "data:image/png;base64," + data.frames[data.index[flat]];
    caption.textContent = data.captions[flat];
  }}
  controls.forEach(function (control) {{
    control.addEventListener("input", update);
    control.addEventListener("change", update);
  }});
}})();
</script>"""
