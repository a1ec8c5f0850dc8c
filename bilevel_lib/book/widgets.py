"""Chapter explorers: a pure plotting function over precomputed results plus a thin widget.

Each explorer comes in two parts, as the book's style asks of widgets:

* ``plot_…(data, setting)`` draws one setting from results the chapter computed once; it has no
  state and returns a matplotlib figure, so it also makes the frames of a
  :func:`~bilevel_lib.book.viz.static_slider` for readers without a kernel;
* ``…_widget(data, defaults)`` wraps it in ``ipywidgets`` sliders (``continuous_update=False``)
  whose callback only looks results up and redraws.

The figures use fixed layouts (``subplots_adjust``), which are faster to redraw than constrained
layouts, and are shown as PNG (:func:`~bilevel_lib.book.viz.figure_png`).

==============================  ===========================  ========================================
explorer                        chapter                      what moves
==============================  ===========================  ========================================
:class:`DenoisingExplorer`      "The running example"        the denoised image with ε, σ, β0 and the
                                                             filter bank (the one explorer that
                                                             solves live, warm-started)
:func:`plot_beta0_curves`       "Tuning β"                   ℓ(β0) and the best β0 with σ and ε
:func:`plot_tolerance_errors`   "Implicit differentiation"   hypergradient error over the (lower-level,
                                                             CG) tolerance grid
:func:`plot_threshold`          "Translation to a single     gradient error against the zero-set
                                level"                       threshold τ, for a noise level σ
:func:`plot_truncation`         "Unrolling"                  truncated back-propagation: error
                                                             against k, T and the step α
:func:`plot_work_budget`        "Single- vs double-loop      loss and lower-level accuracy of
                                algorithms"                  training runs against work, for a
                                                             choice of methods and a work budget
==============================  ===========================  ========================================
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from ..experiments.profiling import format_bytes
from ..problem import filters as filter_banks
from ..problem.cost import LowerLevelCost
from ..problem.metrics import psnr_db
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import solve_lower_level
from . import viz

__all__ = [
    "plot_beta0_curves",
    "beta0_widget",
    "ThresholdSweep",
    "plot_threshold",
    "threshold_widget",
    "plot_truncation",
    "truncation_widget",
    "WorkCurves",
    "plot_loss_against_work",
    "plot_accuracy_against_work",
    "plot_work_budget",
    "work_budget_widget",
    "plot_tolerance_errors",
    "tolerance_widget",
    "DenoisingExplorer",
]


def _grid_axes(keys, names: tuple[str, str]) -> tuple[list, list]:
    """The two axes of a full grid of (a, b) keys, in first-seen order; ValueError if a pair is missing."""
    keys = list(keys)
    if not keys or any(not isinstance(key, tuple) or len(key) != 2 for key in keys):
        raise ValueError(f"expected a non-empty dict keyed by ({names[0]}, {names[1]}) pairs; got keys {keys[:3]}")
    first = list(dict.fromkeys(a for a, _ in keys))
    second = list(dict.fromkeys(b for _, b in keys))
    present = set(keys)
    missing = [(a, b) for a in first for b in second if (a, b) not in present]
    if missing:
        raise ValueError(f"the ({names[0]}, {names[1]}) grid is incomplete: missing {missing[:3]}")
    return first, second


def _check_choice(value, options, name: str):
    if value not in options:
        raise ValueError(f"{name} must be one of the precomputed values {list(options)}; got {value!r}")


# ---------------------------------------------------------------------------------------------
# Ch. "Tuning β": how the best β0 moves with σ and ε


def plot_beta0_curves(curves, sigma: float, eps: float):
    """ℓ(β0) for one noise level σ, one curve per ε (left), and the best β0 against σ (right).

    Introduced in Ch. "Tuning β" (review Sec. 3.2, task-based regularisation strength).

    Parameters
    ----------
    curves : dict[(float, float), tuning.SearchResult]
        A grid search over β0 (:func:`bilevel_lib.training.tuning.grid_search_beta0`) for every pair
        (σ, ε) of a full grid; the order of first appearance orders the σ and ε values.
    sigma, eps : float
        The chosen pair, drawn in bold and circled; it must be one of the keys.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes; the left one has one line per ε plus the marker of the chosen minimum, and
        its vertical axis stops at three times the largest minimum at this σ.
    """
    sigmas, epsilons = _grid_axes(curves, ("σ", "ε"))
    _check_choice(sigma, sigmas, "sigma")
    _check_choice(eps, epsilons, "eps")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.28)  # fixed layout: fast redraws
    for e in epsilons:
        bold = e == eps
        c = curves[sigma, e]
        width, alpha = (2.2, 1.0) if bold else (0.8, 0.5)
        left.plot(c.candidates, c.losses, lw=width, alpha=alpha, label=f"ε = {e:g}")
        best = [curves[s, e].best.beta0 for s in sigmas]
        right.plot(sigmas, best, "o-", lw=width, alpha=alpha)
    chosen = curves[sigma, eps]
    left.plot(chosen.best.beta0, chosen.best_loss, "ko", mfc="none", ms=9)
    left.set_title(f"σ = {sigma:g}, ε = {eps:g}: best β0 = {chosen.best.beta0:.3f}")
    lowest = max(curves[sigma, e].best_loss for e in epsilons)
    left.set(xlabel="β0", ylabel="ℓ(β0)", ylim=(0, 3 * lowest))
    left.legend(fontsize=8, loc="upper left")
    right.plot(sigma, chosen.best.beta0, "ko", mfc="none", ms=11)
    right.set(xscale="log", xlabel="noise level σ", ylabel="best β0")
    right.set_xticks(sigmas, [f"{s:g}" for s in sigmas])
    right.minorticks_off()
    return fig


def beta0_widget(curves, sigma: float = 0.1, eps: float = 0.01):
    """Sliders for σ and ε over the precomputed ``curves``, redrawing :func:`plot_beta0_curves`."""
    import ipywidgets as ipw

    sigmas, epsilons = _grid_axes(curves, ("σ", "ε"))
    _check_choice(sigma, sigmas, "sigma")
    _check_choice(eps, epsilons, "eps")
    style = {"description_width": "30px"}
    controls = {
        "sigma": ipw.SelectionSlider(
            options=sigmas, value=sigma, description="σ", style=style, continuous_update=False
        ),
        "eps": ipw.SelectionSlider(options=epsilons, value=eps, description="ε", style=style, continuous_update=False),
    }

    def draw(sigma, eps):
        viz.display_png(plot_beta0_curves(curves, sigma, eps))

    return ipw.VBox([ipw.HBox(list(controls.values())), ipw.interactive_output(draw, controls)])


# ---------------------------------------------------------------------------------------------
# Ch. "Translation to a single level": the zero-set threshold


@dataclass
class ThresholdSweep:
    """One test signal, denoised at S noise levels, and the BLORC gradient error for E thresholds.

    Introduced in Ch. "Translation to a single level" (review Sec. 4.3).

    Attributes
    ----------
    signal : array (n,)
        the true test signal
    sigmas : array (S,)
        noise levels
    noisy, learned, finite : arrays (S, n)
        the noisy signal and its ℓ1-analysis denoisings with the learned transform and with the
        tuned finite differences, at each σ
    exponents : int array (E,)
        log₁₀ of the zero-set thresholds τ, consecutive integers
    errors : array (S, E)
        relative error of the closed-form gradient at each (σ, τ)
    z_accuracy : array (S,)
        the certified bound on the solver's error in Wx, at each σ
    """

    signal: np.ndarray
    sigmas: np.ndarray
    noisy: np.ndarray
    learned: np.ndarray
    finite: np.ndarray
    exponents: np.ndarray
    errors: np.ndarray
    z_accuracy: np.ndarray

    def __post_init__(self):
        self.signal = np.asarray(self.signal, dtype=np.float64)
        self.sigmas = np.asarray(self.sigmas, dtype=np.float64)
        self.exponents = np.asarray(self.exponents)
        if self.signal.ndim != 1 or self.sigmas.ndim != 1 or self.exponents.ndim != 1:
            raise ValueError(
                "signal, sigmas and exponents must be 1-D; got shapes "
                f"{self.signal.shape}, {self.sigmas.shape}, {self.exponents.shape}"
            )
        if not np.array_equal(self.exponents, np.arange(self.exponents[0], self.exponents[0] + self.exponents.size)):
            raise ValueError(f"exponents must be consecutive integers; got {self.exponents}")
        self.exponents = self.exponents.astype(int)
        s, n, e = self.sigmas.size, self.signal.size, self.exponents.size
        for name, shape in (
            ("noisy", (s, n)),
            ("learned", (s, n)),
            ("finite", (s, n)),
            ("errors", (s, e)),
            ("z_accuracy", (s,)),
        ):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape} (S noise levels, n samples, E thresholds); got {value.shape}"
                )
            setattr(self, name, value)

    def sigma_index(self, sigma: float) -> int:
        """Index of the precomputed noise level nearest to ``sigma``."""
        return int(np.argmin(np.abs(self.sigmas - sigma)))

    def exponent_index(self, exponent: int) -> int:
        """Index of the threshold 10**exponent; ValueError outside the precomputed range."""
        if exponent not in self.exponents:
            raise ValueError(
                f"exponent must be an integer in [{self.exponents[0]}, {self.exponents[-1]}]; got {exponent!r}"
            )
        return int(exponent - self.exponents[0])


def plot_threshold(sweep: ThresholdSweep, sigma: float, exponent: int):
    """Denoised test signal (left) and gradient error against the threshold τ (right), with τ = 10**exponent marked.

    The dotted vertical line is ``sweep.z_accuracy`` at this σ: thresholds to its right are safe.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: four lines on the left (noisy, truth, learned, finite differences); on the
        right the error curve, the marker of the chosen τ and the accuracy line.
    """
    i, j = sweep.sigma_index(sigma), sweep.exponent_index(exponent)
    signal, noisy, learned, finite = sweep.signal, sweep.noisy[i], sweep.learned[i], sweep.finite[i]
    errors = sweep.errors[i]
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.0))  # fixed layout: fast to redraw
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.17, top=0.84, wspace=0.28)
    axes[0].plot(noisy, ".", color="0.6", ms=3, label=f"noisy ({psnr_db(noisy, signal):.1f} dB)")
    axes[0].plot(signal, "k-", lw=1, label="truth")
    axes[0].plot(learned, lw=1.5, label=f"learned W ({psnr_db(learned, signal):.1f} dB)")
    axes[0].plot(finite, lw=1.2, label=f"finite diff. ({psnr_db(finite, signal):.1f} dB)")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_xlabel("sample")
    axes[1].semilogy(sweep.exponents, np.maximum(errors, 1e-16), "o-")
    axes[1].plot(exponent, max(errors[j], 1e-16), "s", ms=12, mfc="none", mec="#d1495b", mew=2)
    axes[1].axvline(np.log10(sweep.z_accuracy[i]), color="0.5", ls=":", lw=1)
    axes[1].set_xlabel("log₁₀ threshold τ")
    axes[1].set_ylabel("relative gradient error")
    fig.suptitle(f"σ = {sweep.sigmas[i]:g}, τ = 1e{exponent}: gradient error {errors[j]:.1e}", fontsize=10)
    return fig


def threshold_widget(sweep: ThresholdSweep, sigma: float = 0.1, exponent: int = -8):
    """A σ slider and a log₁₀ τ slider over ``sweep``, redrawing :func:`plot_threshold`."""
    import ipywidgets as ipw

    sweep.exponent_index(exponent)
    style = {"description_width": "110px"}
    controls = {
        "sigma": ipw.SelectionSlider(
            options=[float(s) for s in sweep.sigmas],
            value=float(sweep.sigmas[sweep.sigma_index(sigma)]),
            description="noise σ",
            continuous_update=False,
            style=style,
        ),
        "exponent": ipw.IntSlider(
            value=exponent,
            min=int(sweep.exponents[0]),
            max=int(sweep.exponents[-1]),
            description="log₁₀ threshold",
            continuous_update=False,
            style=style,
        ),
    }

    def draw(sigma, exponent):
        viz.display_png(plot_threshold(sweep, sigma, exponent))

    return ipw.VBox([ipw.HBox(list(controls.values())), ipw.interactive_output(draw, controls)])


# ---------------------------------------------------------------------------------------------
# Ch. "Unrolling": truncated back-propagation


def plot_truncation(truncation_errors, unrolled_errors, T: int, k: int, scale: float, *, iterate_bytes: int):
    """Error of the gradient truncated to k backward steps (left) and of full back-propagation against T (right).

    Introduced in Ch. "Unrolling" (review Sec. 4.4.1, truncated back-propagation).

    Parameters
    ----------
    truncation_errors : dict[(int, float), array (T,)]
        For each pair (T, s) of a full grid of iterations and step factors (step α = s/L): the
        relative error against the bilevel gradient ∇ℓ of the gradient truncated to k = 1 … T.
    unrolled_errors : dict[(int, float), array (T - 1,)]
        The same truncations for k = 1 … T − 1, measured against the full unrolled gradient ∇ℓ_T.
    T, scale :
        The chosen pair; it must be a key.  The step s = 1 is drawn solid on the right.
    k : int
        Backward steps, at least 1; values above T are clipped to T.
    iterate_bytes : int
        Bytes of one stored iterate (``cost.y.nbytes``), for the memory in the title.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: three lines on the left (two error curves and the marker at k), one line per
        step factor plus the marker of (T, s) on the right.
    """
    T_values, scales = _grid_axes(truncation_errors, ("T", "s"))
    _check_choice(T, T_values, "T")
    _check_choice(scale, scales, "scale")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer ≥ 1; got {k!r}")
    k = min(int(k), T)
    log_errors = np.log10(truncation_errors[T, scale])  # a linear axis of exponents draws faster than a log axis
    if log_errors.shape != (T,) or np.shape(unrolled_errors[T, scale]) != (T - 1,):
        raise ValueError(
            f"for T = {T} expected {T} truncation errors and {T - 1} unrolled errors; got "
            f"{log_errors.shape} and {np.shape(unrolled_errors[T, scale])}"
        )
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.2))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.82, wspace=0.28)
    steps = np.arange(1, T + 1)
    axes[0].plot(steps, log_errors, "-", color="C0", label="vs ∇ℓ (bilevel)")
    axes[0].plot(steps[:-1], np.log10(unrolled_errors[T, scale]), "--", color="C3", label="vs ∇ℓ_T (unrolled)")
    axes[0].plot([k], [log_errors[k - 1]], "o", color="C1", ms=8)
    axes[0].set_xlabel("back-propagated steps k")
    axes[0].set_ylabel("log₁₀ relative error")
    axes[0].set_title(f"(a) truncation, T = {T}, α = {scale:g}/L")
    axes[0].legend(fontsize=7, loc="lower left")
    markers = "os^Dv<>p"
    for index, s in enumerate(scales):
        full = [np.log10(truncation_errors[t, s][-1]) for t in T_values]
        style = markers[index % len(markers)] + ("-" if s == 1.0 else ":")
        axes[1].plot(T_values, full, style, ms=4, lw=1.8 if s == scale else 0.8, label=f"α = {s:g}/L")
    axes[1].plot([T], [log_errors[-1]], "o", color="C1", ms=10, mfc="none", mew=2)
    axes[1].set_xlabel("unrolled iterations T (k = T)")
    axes[1].set_title("(b) full back-propagation, vs ∇ℓ")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"T = {T}, k = {k}: error {10 ** log_errors[k - 1]:.2e}  ·  {T} ∇Φ forward, "
        f"{k - 1} Hessian-vector + {k} mixed products back, {format_bytes(k * iterate_bytes)} stored",
        fontsize=9,
    )
    return fig


def truncation_widget(
    truncation_errors, unrolled_errors, *, iterate_bytes: int, T: int = 40, k: int = 10, scale: float = 1.0
):
    """Sliders for T, k and the step factor over precomputed errors, redrawing :func:`plot_truncation`."""
    import ipywidgets as ipw

    T_values, scales = _grid_axes(truncation_errors, ("T", "s"))
    _check_choice(T, T_values, "T")
    _check_choice(scale, scales, "scale")
    style = {"description_width": "100px"}
    layout = ipw.Layout(width="420px")
    controls = {
        "T": ipw.SelectionSlider(
            options=T_values, value=T, description="iterations T", continuous_update=False, style=style, layout=layout
        ),
        "k": ipw.IntSlider(
            value=k,
            min=1,
            max=max(T_values),
            description="back-prop k",
            continuous_update=False,
            style=style,
            layout=layout,
        ),
        "scale": ipw.SelectionSlider(
            options=scales, value=scale, description="step α·L", continuous_update=False, style=style, layout=layout
        ),
    }

    def draw(T, k, scale):
        viz.display_png(plot_truncation(truncation_errors, unrolled_errors, T, k, scale, iterate_bytes=iterate_bytes))

    return ipw.VBox([*controls.values(), ipw.interactive_output(draw, controls)])


# ---------------------------------------------------------------------------------------------
# Ch. "Single- vs double-loop algorithms": training runs against the work they spend


@dataclass
class WorkCurves:
    """One training run as the explorer draws it: recorded loss and lower-level accuracy against work.

    Introduced in Ch. "Single- vs double-loop algorithms" (review Sec. 5, Fig. 5.2).

    Attributes
    ----------
    work : int array (U,)
        cumulative lower-level + CG iterations after each upper step
        (``TrainingHistory.work``), non-decreasing
    loss : array (U,)
        the loss recorded at each step (``TrainingHistory.loss``)
    accuracy : array (U,)
        the lower-level accuracy at which each hypergradient was taken,
        on the scale max_j ‖∇ₓΦ(x_j)‖/√N (``TrainingHistory.lower_gradient_norm``
        for the double loops and TTSA; a method that records another
        measure, such as MAID's ε, must be converted by the caller)
    color : str, optional
        matplotlib colour; default the style's colour cycle
    linestyle : str
        matplotlib line style, default solid
    """

    work: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    color: str | None = None
    linestyle: str = "-"

    def __post_init__(self):
        self.work = np.asarray(self.work)
        if self.work.dtype.kind not in "iuf":
            raise TypeError(f"work must be numbers (lower-level + CG iterations); got dtype {self.work.dtype}")
        self.loss = np.asarray(self.loss, dtype=np.float64)
        self.accuracy = np.asarray(self.accuracy, dtype=np.float64)
        shapes = (self.work.shape, self.loss.shape, self.accuracy.shape)
        if any(len(shape) != 1 for shape in shapes) or len(set(shapes)) != 1:
            raise ValueError(
                f"work, loss and accuracy must be 1-D arrays of one length (one entry per upper "
                f"step); got shapes {shapes[0]}, {shapes[1]} and {shapes[2]}"
            )
        if np.any(np.diff(self.work) < 0):
            raise ValueError(
                "work must be cumulative (non-decreasing); got "
                f"{self.work[:5].tolist()}{' …' if self.work.size > 5 else ''}"
            )
        if np.any(~np.isfinite(self.accuracy) | (self.accuracy < 0)):
            raise ValueError("accuracy must be finite and ≥ 0 (a norm of ∇ₓΦ)")

    def within(self, budget: float | None) -> np.ndarray:
        """Boolean mask of the steps whose cumulative work is at most ``budget`` (all if None)."""
        return np.ones(self.work.shape, bool) if budget is None else self.work <= budget

    def loss_at(self, budget: float) -> float | None:
        """The last recorded loss within the work ``budget``; None if the first step costs more."""
        kept = np.flatnonzero(self.within(budget))
        return float(self.loss[kept[-1]]) if kept.size else None


def _check_runs(curves, names, budget) -> list:
    if not isinstance(curves, Mapping) or not curves or not all(isinstance(c, WorkCurves) for c in curves.values()):
        found = (
            [type(c).__name__ for c in curves.values()][:3] if isinstance(curves, Mapping) else type(curves).__name__
        )
        raise ValueError(f"expected a non-empty dict {{name: WorkCurves}}; got {found or 'an empty dict'}")
    names = list(curves) if names is None else list(names)
    unknown = [name for name in names if name not in curves]
    if unknown:
        raise ValueError(f"unknown run(s) {unknown}; the precomputed runs are {list(curves)}")
    if budget is not None and not (
        isinstance(budget, numbers.Real) and not isinstance(budget, bool) and np.isfinite(budget) and budget > 0
    ):
        raise ValueError(f"budget must be a positive amount of work (or None for whole runs); got {budget!r}")
    return names


def _power_of_ten(exponent: int) -> str:
    """'10⁻⁸' for -8."""
    return "10" + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def plot_loss_against_work(ax, curves, names=None, budget=None, best=None, *, window=(0.0015, 0.006)):
    """Recorded loss against work, one line per run, on the axes ``ax``.

    Parameters
    ----------
    ax : matplotlib Axes
    curves : dict[str, WorkCurves]
        The runs, by name (the name is the line's label).
    names : list of str, optional
        Which runs to draw, in this order; default all.
    budget : float, optional
        Draw only the steps with work ≤ ``budget`` and fix the horizontal axis to [0, budget];
        default the whole runs and automatic limits.
    best : float, optional
        A reference loss (the lowest found), drawn dotted; the vertical axis then zooms to
        [best − window[0], best + window[1]].
    """
    names = _check_runs(curves, names, budget)
    for name in names:
        c = curves[name]
        keep = c.within(budget)
        ax.plot(c.work[keep], c.loss[keep], color=c.color, ls=c.linestyle, lw=1.6, label=name)
    if best is not None:
        ax.axhline(best, color="0.4", lw=0.8, ls=":")
        ax.set_ylim(best - window[0], best + window[1])
    if budget is not None:
        ax.set_xlim(0, budget)
    ax.set(xlabel="work W", ylabel="recorded loss ℓ")
    return ax


def plot_accuracy_against_work(ax, curves, names=None, budget=None, *, log_range=(-8.0, -1.5)):
    """Lower-level accuracy ``curves[name].accuracy`` against work, one line per run, on ``ax``.

    The review's Fig. 5.2b shows this metric along a run.  log₁₀ of the accuracy is drawn on a
    linear axis spanning ``log_range``, labelled in powers of ten: it redraws faster than a log
    axis (a quicker widget).  ``names`` and ``budget`` as in :func:`plot_loss_against_work`.
    """
    names = _check_runs(curves, names, budget)
    for name in names:
        c = curves[name]
        keep = c.within(budget)
        ax.plot(
            c.work[keep],
            np.log10(np.maximum(c.accuracy[keep], 1e-300)),
            color=c.color,
            ls=c.linestyle,
            lw=1.6,
            label=name,
        )
    low, high = log_range
    ticks = list(range(int(np.ceil(low / 2) * 2), int(np.floor(high)) + 1, 2))
    ax.set_yticks(ticks, [_power_of_ten(t) for t in ticks])
    ax.set(ylim=(low, high), xlabel="work W", ylabel="lower-level ‖∇Φ‖/√N")
    if budget is not None:
        ax.set_xlim(0, budget)
    return ax


def plot_work_budget(curves, names, budget: float, best: float):
    """Loss near ``best`` (left) and lower-level accuracy (right) of the chosen runs up to a work budget.

    Introduced in Ch. "Single- vs double-loop algorithms" (review Sec. 5).

    Parameters
    ----------
    curves : dict[str, WorkCurves]
    names : list of str
        The runs to compare (may be empty).
    budget : float
        The work budget W; the title gives each run's last recorded loss within it ("–" if its
        first step already costs more).
    best : float
        The reference loss, drawn dotted on the left.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes with one line per chosen run (plus the dotted reference on the left).
    """
    names = _check_runs(curves, names, budget)
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.84, wspace=0.3)  # fixed layout: fast redraws
    plot_loss_against_work(axes[0], curves, names, budget, best)
    plot_accuracy_against_work(axes[1], curves, names, budget)
    reached = []
    for name in names:
        value = curves[name].loss_at(budget)
        reached.append(f"{name}: {'–' if value is None else f'{value:.4f}'}")
    lines = [", ".join(reached[:4]), ", ".join(reached[4:])]
    fig.suptitle(f"loss at W = {budget} · " + "\n".join(filter(None, lines)), fontsize=8)
    if names:
        axes[0].legend(fontsize=7, loc="upper right")
    return fig


def work_budget_widget(
    curves, best: float, *, names=None, budget: int = 2000, max_budget: int | None = None, step: int = 100
):
    """A menu of runs and a work-budget slider over precomputed ``curves``, redrawing :func:`plot_work_budget`.

    ``names`` are the runs selected at first (default all); the slider runs from ``step`` to
    ``max_budget`` (default the largest work of any run, rounded up to a multiple of ``step``).
    """
    import ipywidgets as ipw

    names = _check_runs(curves, names, budget)
    if max_budget is None:
        largest = max((int(c.work[-1]) for c in curves.values() if c.work.size), default=step)
        max_budget = int(np.ceil(largest / step) * step)
    if not step <= budget <= max_budget:
        raise ValueError(f"budget must lie in [step, max_budget] = [{step}, {max_budget}]; got {budget!r}")
    controls = {
        "names": ipw.SelectMultiple(
            options=list(curves), value=tuple(names), rows=min(6, len(curves)), description="methods"
        ),
        "budget": ipw.IntSlider(
            value=budget, min=step, max=max_budget, step=step, description="work W", continuous_update=False
        ),
    }

    def draw(names, budget):
        viz.display_png(plot_work_budget(curves, list(names), budget, best))

    return ipw.VBox([ipw.HBox(list(controls.values())), ipw.interactive_output(draw, controls)])


def plot_tolerance_errors(errors, work, log_lower, log_cg, lower_exp: int, cg_exp: int):
    """Hypergradient error over a grid of (lower-level, CG) tolerances, with one pair marked.

    ``errors[i, j]`` is the relative error at lower tolerance 10**log_lower[i] and CG tolerance
    10**log_cg[j]; ``work[i, j]`` holds (OGM, CG) iterations.  Left: heat map of log10 errors;
    right: the two slices through the marked pair (Ch. "Implicit differentiation").
    """
    log_lower, log_cg = np.asarray(log_lower), np.asarray(log_cg)
    i, j = int(lower_exp - log_lower[0]), int(cg_exp - log_cg[0])
    log_errors = np.log10(errors)  # a linear axis of exponents draws faster than a log axis
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3))  # a fixed layout is fast to redraw
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.86, wspace=0.32)
    extent = (log_cg[0] - 0.5, log_cg[-1] + 0.5, log_lower[0] - 0.5, log_lower[-1] + 0.5)
    image = axes[0].imshow(log_errors, origin="lower", cmap="viridis", aspect="auto", extent=extent)
    fig.colorbar(image, ax=axes[0], label="log₁₀ relative error", pad=0.03)
    axes[0].plot(cg_exp, lower_exp, "s", ms=13, mfc="none", mec="#d1495b", mew=2.5)
    axes[0].set_xlabel("log₁₀ CG tolerance")
    axes[0].set_ylabel("log₁₀ lower-level tolerance")
    axes[0].grid(False)
    axes[1].plot(log_cg, log_errors[i], "o-", label=f"CG tol varies (lower 1e{lower_exp})")
    axes[1].plot(log_lower, log_errors[:, j], "s-", label=f"lower tol varies (CG 1e{cg_exp})")
    axes[1].plot([cg_exp, lower_exp], [log_errors[i, j]] * 2, "o", color="#d1495b", ms=9, mfc="none", mew=2)
    axes[1].set_xlabel("log₁₀ tolerance")
    axes[1].set_ylabel("log₁₀ relative error")
    axes[1].legend(loc="upper left", fontsize=8)
    ogm, cg = work[i, j]
    fig.suptitle(
        f"lower tol 1e{lower_exp}, CG tol 1e{cg_exp}: relative error {errors[i, j]:.1e}  ·  "
        f"{ogm} OGM + {cg} CG iterations",
        fontsize=10,
    )
    return fig


def tolerance_widget(errors, work, log_lower, log_cg, lower_exp: int = -4, cg_exp: int = -8):
    """Two sliders over precomputed tolerance grids, redrawing :func:`plot_tolerance_errors`."""
    import ipywidgets as widgets

    def slider(value, exponents, description):
        return widgets.IntSlider(
            value=value,
            min=int(exponents[0]),
            max=int(exponents[-1]),
            description=description,
            continuous_update=False,
            style={"description_width": "130px"},
        )

    controls = {
        "lower_exp": slider(lower_exp, log_lower, "log₁₀ lower tol"),
        "cg_exp": slider(cg_exp, log_cg, "log₁₀ CG tol"),
    }

    def draw(lower_exp, cg_exp):
        viz.display_png(plot_tolerance_errors(errors, work, log_lower, log_cg, lower_exp, cg_exp))

    output = widgets.interactive_output(draw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())), output])


@dataclass
class DenoisingExplorer:
    """Denoise one image with (Ex) as ε, σ, β0 and the filter bank change (the running-example widget).

    The noise pattern is drawn once from ``seed`` and scaled by σ, so moving the σ slider changes
    only the noise level.  Each call warm-starts OGM from the previous solution of the same bank,
    unless ``warm_start=False`` (then OGM starts from its default, as the first call does).
    """

    truth: np.ndarray
    seed: int = 0
    banks: dict = field(default_factory=lambda: dict(filter_banks.FILTER_BANKS))
    tol: float = 1e-4
    max_iter: int = 400

    def __post_init__(self):
        self.truth = np.asarray(self.truth, dtype=np.float64)
        self._noise = np.random.default_rng(self.seed).standard_normal(self.truth.shape)
        self._bank_arrays = {
            name: np.asarray(make() if callable(make) else make, dtype=np.float64) for name, make in self.banks.items()
        }
        self._last: dict[str, np.ndarray] = {}
        self.last_result = None

    def noisy(self, sigma: float) -> np.ndarray:
        """The measurement y = x^true + σ n at noise level σ, with one fixed draw n (from ``seed``)."""
        return self.truth + sigma * self._noise

    def denoise(self, eps: float, sigma: float, beta0: float, bank: str, *, warm_start: bool = True) -> np.ndarray:
        """x̂(γ) for γ = (β0, β_k = 0, bank) with φ = CR1N(ε) and noise level σ."""
        if bank not in self._bank_arrays:
            raise ValueError(f"bank must be one of {list(self._bank_arrays)}; got {bank!r}")
        y = self.noisy(sigma)[None]
        params = Hyperparameters.from_filters(self._bank_arrays[bank], beta0=beta0)
        cost = LowerLevelCost(y, CornerRounded1Norm(eps))
        result = solve_lower_level(
            cost,
            params,
            x0=self._last.get(bank) if warm_start else None,
            tol=self.tol,
            max_iter=self.max_iter,
            warn=False,
        )
        self._last[bank] = result.x
        self.last_result = result
        return result.x[0]

    def figure(self, eps: float = 0.01, sigma: float = 0.1, beta0: float = -3.0, bank: str = "finite differences"):
        """The truth, the noisy image and x̂ side by side for one setting, a matplotlib figure.

        The caption gives the setting and OGM's iteration count and final ‖∇Φ‖/√N.
        """
        x_hat = self.denoise(eps, sigma, beta0, bank)
        caption = (
            f"{bank}, ε = {eps:g}, σ = {sigma:g}, β0 = {beta0:g}  ·  OGM: {self.last_result.iterations} "
            f"iterations, ‖∇Φ‖/√N = {self.last_result.gradient_norm.max():.1e}"
        )
        return viz.plot_denoising(self.truth, self.noisy(sigma), x_hat, caption)

    def widget(self, eps: float = 0.01, sigma: float = 0.1, beta0: float = -3.0, bank: str = "finite differences"):
        """Sliders for log10 ε, σ and β0 and a bank menu, redrawing on release (``continuous_update=False``)."""
        import ipywidgets as widgets

        style = {"description_width": "70px"}
        controls = {
            "log_eps": widgets.FloatSlider(
                value=np.log10(eps),
                min=-3,
                max=0,
                step=0.25,
                description="log₁₀ ε",
                continuous_update=False,
                style=style,
            ),
            "sigma": widgets.FloatSlider(
                value=sigma, min=0.0, max=0.3, step=0.02, description="σ", continuous_update=False, style=style
            ),
            "beta0": widgets.FloatSlider(
                value=beta0, min=-7, max=1, step=0.25, description="β0", continuous_update=False, style=style
            ),
            "bank": widgets.Dropdown(options=list(self._bank_arrays), value=bank, description="filters", style=style),
        }

        def draw(log_eps, sigma, beta0, bank):
            viz.display_png(self.figure(10.0**log_eps, sigma, beta0, bank))

        output = widgets.interactive_output(draw, controls)
        box = widgets.VBox(
            [
                widgets.HBox([controls["log_eps"], controls["sigma"]]),
                widgets.HBox([controls["beta0"], controls["bank"]]),
                output,
            ]
        )
        return box
