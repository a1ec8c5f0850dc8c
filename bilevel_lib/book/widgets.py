"""Chapter explorers: a pure plotting function over precomputed results, shown two ways.

Each explorer comes in two parts, as the book's style asks of widgets:

* ``plot_…(data, setting)`` draws one setting from results the chapter computed once; it has no
  state, returns a matplotlib figure, and raises ValueError naming the argument for a setting
  that was not precomputed;
* ``…_explorer(data, defaults)`` makes it an :class:`~bilevel_lib.book.explorer.Explorer`: one
  precomputed frame per grid point for the static book, where every control switches frames,
  and a live ``ipywidgets`` panel (``continuous_update=False``) whose callback only looks results
  up and redraws when the chapter runs as a notebook.

The figures use fixed layouts (``subplots_adjust``), which are faster to redraw than constrained
layouts, and are shown as PNG (:func:`~bilevel_lib.book.viz.figure_png`).

==============================  ===========================  ========================================
explorer                        chapter                      what moves
==============================  ===========================  ========================================
:class:`DenoisingExplorer`      "The running example"        the denoised image with ε, σ, β0 and the
                                                             filter bank (the one explorer that
                                                             solves live, warm-started;
                                                             :meth:`DenoisingExplorer.explorer`)
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
from ..problem.metrics import psnr_db, snr_db
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import solve_lower_level
from . import viz
from .explorer import explorer

__all__ = [
    "plot_beta0_curves",
    "beta0_explorer",
    "ThresholdSweep",
    "plot_threshold",
    "threshold_explorer",
    "plot_truncation",
    "TRUNCATION_DEPTHS",
    "truncation_explorer",
    "WorkCurves",
    "plot_loss_against_work",
    "plot_accuracy_against_work",
    "plot_work_budget",
    "work_budget_explorer",
    "plot_tolerance_errors",
    "tolerance_explorer",
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


def beta0_explorer(curves, sigma: float = 0.1, eps: float = 0.01):
    """σ and ε sliders over the precomputed ``curves``: :func:`plot_beta0_curves` as an explorer.

    Returns an :class:`~bilevel_lib.book.explorer.Explorer` (a live panel in a notebook, one
    precomputed frame per (σ, ε) in the book), starting at (``sigma``, ``eps``).
    """
    sigmas, epsilons = _grid_axes(curves, ("σ", "ε"))
    _check_choice(sigma, sigmas, "sigma")
    _check_choice(eps, epsilons, "eps")
    return explorer(
        lambda sigma, eps: plot_beta0_curves(curves, sigma, eps),
        {"sigma": sigmas, "eps": epsilons},
        {"sigma": sigma, "eps": eps},
        labels={"sigma": "σ", "eps": "ε"},
        caption=lambda sigma, eps: (
            f"σ = {sigma:g}, ε = {eps:g}: best β0 = {curves[sigma, eps].best.beta0:.3f}, "
            f"ℓ = {curves[sigma, eps].best_loss:.3g}"
        ),
        title="ℓ(β0) for every ε at the chosen σ, and the best β0 against σ",
        alt="Left: the loss against β0 for each ε at the chosen noise level, the chosen ε in bold and its "
        "minimum circled. Right: the best β0 against σ for each ε.",
        width=640,
    )


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
    if not np.isclose(sweep.sigmas[i], sigma, rtol=1e-12, atol=0):
        raise ValueError(f"sigma must be one of the precomputed noise levels {sweep.sigmas.tolist()}; got {sigma!r}")
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


def threshold_explorer(sweep: ThresholdSweep, sigma: float = 0.1, exponent: int = -8):
    """A σ slider and a log₁₀ τ slider over ``sweep``: :func:`plot_threshold` as an explorer.

    One precomputed frame per (σ, τ) of the sweep; returns an
    :class:`~bilevel_lib.book.explorer.Explorer` starting at (``sigma``, 10**``exponent``).
    """
    sweep.exponent_index(exponent)
    sigmas = [float(s) for s in sweep.sigmas]
    _check_choice(sigma, sigmas, "sigma")
    exponents = [int(e) for e in sweep.exponents]
    return explorer(
        lambda sigma, exponent: plot_threshold(sweep, sigma, exponent),
        {"sigma": sigmas, "exponent": exponents},
        {"sigma": float(sigma), "exponent": int(exponent)},
        labels={"sigma": "noise σ", "exponent": "log₁₀ threshold"},
        caption=lambda sigma, exponent: (
            f"σ = {sigma:g}, threshold τ = 1e{exponent}: relative gradient error "
            f"{sweep.errors[sweep.sigma_index(sigma), sweep.exponent_index(exponent)]:.1e}"
        ),
        title="The denoised test signal, and the gradient error against the threshold τ",
        alt="Left: the noisy, true and denoised test signals at the chosen σ. Right: the relative gradient "
        "error against log10 of the threshold, the chosen threshold marked, the solver's accuracy dotted.",
        width=620,
    )


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
        Backward steps, 1 ≤ k ≤ T.
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
    if int(k) != k or not 1 <= k <= T:
        raise ValueError(f"k must be an integer in [1, T] = [1, {T}]; got {k!r}")
    k = int(k)
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


#: The back-propagation depths of the truncation explorer, as fractions of T (rounded up).
TRUNCATION_DEPTHS = {"1": lambda T: 1, "T/4": lambda T: -(-T // 4), "T/2": lambda T: -(-T // 2), "T": lambda T: T}


def truncation_explorer(
    truncation_errors, unrolled_errors, *, iterate_bytes: int, T: int = 40, k: str = "T/4", scale: float = 1.0
):
    """Sliders for T, the depth k and the step factor over precomputed errors: :func:`plot_truncation` as an explorer.

    ``k`` is one of :data:`TRUNCATION_DEPTHS`, ``"1"``, ``"T/4"``, ``"T/2"`` or ``"T"`` (rounded
    up), so that every depth exists for every T.  One precomputed frame per (T, k, s); returns an
    :class:`~bilevel_lib.book.explorer.Explorer`.
    """
    T_values, scales = _grid_axes(truncation_errors, ("T", "s"))
    _check_choice(T, T_values, "T")
    _check_choice(scale, scales, "scale")
    _check_choice(k, list(TRUNCATION_DEPTHS), "k")

    def plot(T, k, scale):
        return plot_truncation(
            truncation_errors, unrolled_errors, T, TRUNCATION_DEPTHS[k](T), scale, iterate_bytes=iterate_bytes
        )

    return explorer(
        plot,
        {"T": T_values, "k": list(TRUNCATION_DEPTHS), "scale": [(f"{s:g}/L", s) for s in scales]},
        {"T": T, "k": k, "scale": scale},
        labels={"T": "iterations T", "k": "back-prop k", "scale": "step α"},
        controls={"k": "slider"},
        title="Truncated back-propagation: error against k, and full back-propagation against T",
        alt="Left: log10 relative error of the truncated unrolled gradient against k, against the bilevel "
        "and the unrolled gradient, the chosen k marked. Right: error of full back-propagation against T "
        "for each step size.",
        width=620,
    )


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


def work_budget_explorer(curves, best: float, groups, *, group: str, budgets, budget: int):
    """A menu of groups of runs and a work-budget slider over ``curves``: :func:`plot_work_budget` as an explorer.

    Parameters
    ----------
    curves : dict[str, WorkCurves]
    best : float
        The reference loss, drawn dotted.
    groups : dict[str, list of str]
        Named selections of runs to compare (the menu), e.g. ``{"fixed T": ["T = 3", ...]}``.
    group : str
        The selection shown first.
    budgets : sequence of int
        The work budgets of the slider, increasing.
    budget : int
        The budget shown first, one of ``budgets``.

    Returns
    -------
    bilevel_lib.book.explorer.Explorer
        One precomputed frame per (group, budget).
    """
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError(f"groups must be a non-empty dict {{name: list of runs}}; got {groups!r}")
    for runs in groups.values():
        _check_runs(curves, runs, None)
    _check_choice(group, list(groups), "group")
    budgets = [int(b) for b in budgets]
    if not budgets or any(b <= 0 for b in budgets) or np.any(np.diff(budgets) <= 0):
        raise ValueError(f"budgets must be positive and increasing; got {budgets}")
    _check_choice(budget, budgets, "budget")
    return explorer(
        lambda group, budget: plot_work_budget(curves, list(groups[group]), budget, best),
        {"group": list(groups), "budget": budgets},
        {"group": group, "budget": int(budget)},
        labels={"group": "methods", "budget": "work W"},
        title="Loss and lower-level accuracy of the chosen runs, up to a work budget",
        alt="Left: the recorded loss against work of the chosen runs near the best loss. Right: their "
        "lower-level accuracy against work; the title gives each run's loss at the budget.",
        width=640,
    )


def plot_tolerance_errors(errors, work, log_lower, log_cg, lower_exp: int, cg_exp: int):
    """Hypergradient error over a grid of (lower-level, CG) tolerances, with one pair marked.

    ``errors[i, j]`` is the relative error at lower tolerance 10**log_lower[i] and CG tolerance
    10**log_cg[j]; ``work[i, j]`` holds (OGM, CG) iterations.  Left: heat map of log10 errors;
    right: the two slices through the marked pair (Ch. "Implicit differentiation").
    """
    log_lower, log_cg = np.asarray(log_lower), np.asarray(log_cg)
    _check_choice(lower_exp, log_lower.tolist(), "lower_exp")
    _check_choice(cg_exp, log_cg.tolist(), "cg_exp")
    if np.shape(errors) != (log_lower.size, log_cg.size) or np.shape(work) != (log_lower.size, log_cg.size, 2):
        raise ValueError(
            f"errors must have shape {(log_lower.size, log_cg.size)} and work {(log_lower.size, log_cg.size, 2)}; "
            f"got {np.shape(errors)} and {np.shape(work)}"
        )
    i, j = log_lower.tolist().index(lower_exp), log_cg.tolist().index(cg_exp)
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


def tolerance_explorer(errors, work, log_lower, log_cg, lower_exp: int = -4, cg_exp: int = -8):
    """Two tolerance sliders over precomputed grids: :func:`plot_tolerance_errors` as an explorer.

    One precomputed frame per (lower-level, CG) tolerance pair; returns an
    :class:`~bilevel_lib.book.explorer.Explorer`.
    """
    lowers, cgs = [int(e) for e in log_lower], [int(e) for e in log_cg]
    _check_choice(lower_exp, lowers, "lower_exp")
    _check_choice(cg_exp, cgs, "cg_exp")
    return explorer(
        lambda lower_exp, cg_exp: plot_tolerance_errors(errors, work, log_lower, log_cg, lower_exp, cg_exp),
        {"lower_exp": lowers, "cg_exp": cgs},
        {"lower_exp": lower_exp, "cg_exp": cg_exp},
        labels={"lower_exp": "log₁₀ lower tol", "cg_exp": "log₁₀ CG tol"},
        title="Hypergradient error over the (lower-level, CG) tolerance grid",
        alt="Left: heat map of log10 relative error over the tolerance grid with the chosen pair marked. "
        "Right: the error along the two slices through the chosen pair.",
        width=620,
    )


@dataclass
class DenoisingExplorer:
    """Denoise one image with (Ex) as ε, σ, β0 and the filter bank change (the running-example widget).

    The noise pattern is drawn once from ``seed`` and scaled by σ, so moving the σ slider changes
    only the noise level.  Each call warm-starts OGM from the previous solution of the same bank,
    unless ``warm_start=False`` (then OGM starts from its default, as the first call does).  The
    profile's value axis is fixed (:attr:`profile_ylim`), so it is the same in every picture and
    a live move never has to lay the figure out again.
    """

    #: The largest noise level the live σ slider reaches.
    SIGMA_MAX = 0.3

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
        self._canvas = viz.DenoisingCanvas(self.truth, ylim=self.profile_ylim)

    @property
    def profile_ylim(self) -> tuple[float, float]:
        """The profile's value limits, the truth's range widened by 2.5 σ at the largest σ (``SIGMA_MAX``)."""
        margin = 2.5 * self.SIGMA_MAX
        return float(self.truth.min()) - margin, float(self.truth.max()) + margin

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

        Its caption gives the setting and OGM's iteration count and final ‖∇Φ‖/√N.
        """
        return self._figure(self.denoise(eps, sigma, beta0, bank), eps, sigma, beta0, bank)

    def live_png(self, eps: float = 0.01, sigma: float = 0.1, beta0: float = -3.0, bank: str = "finite differences"):
        """What the live panel shows for one setting: the picture of :meth:`figure`, without its caption, as PNG.

        It solves as :meth:`figure` does (warm-started) and redraws one kept figure in place
        (:class:`~bilevel_lib.book.viz.DenoisingCanvas`): only x̂ is drawn again, and the rest of
        the picture too when σ changes.  The setting and OGM's report are in the panel's caption,
        a line of text under the picture (:meth:`explorer`), which is far cheaper than drawing
        them.
        """
        x_hat = self.denoise(eps, sigma, beta0, bank)
        return self._canvas.png(self.noisy(sigma), x_hat)

    def _caption(self, eps, sigma, beta0, bank, result=None) -> str:
        result = self.last_result if result is None else result
        return (
            f"{bank}, ε = {eps:g}, σ = {sigma:g}, β0 = {beta0:g}  ·  OGM: {result.iterations} "
            f"iterations, ‖∇Φ‖/√N = {result.gradient_norm.max():.1e}"
        )

    def _figure(self, x_hat, eps, sigma, beta0, bank, caption: bool = True):
        """The picture of one setting; ``caption=False``: without the caption line (the panels' frames)."""
        text = self._caption(eps, sigma, beta0, bank) if caption else ""
        return viz.plot_denoising(self.truth, self.noisy(sigma), x_hat, text, ylim=self.profile_ylim)

    def explorer(self, grid, defaults, *, title: str = "", alt: str = "", width: int | None = 640):
        """The running example's panel: precomputed frames over ``grid``, a live panel that solves.

        Parameters
        ----------
        grid : dict
            Values of ``"eps"``, ``"sigma"``, ``"beta0"`` and ``"bank"`` (bank names) for the static
            frames, one solve each (started afresh, so the iteration count in each title is that of
            a first solve): keep the product small.
        defaults : dict
            The setting shown first, one grid value for each of the four.

        Returns
        -------
        bilevel_lib.book.explorer.Explorer
            Live, its sliders cover log₁₀ ε ∈ [−3, 0], σ ∈ [0, 0.3], β0 ∈ [−7, 1] and every bank,
            and each move solves again, warm-started from the last solution of the same bank.
        """
        import ipywidgets as ipw

        expected = ["eps", "sigma", "beta0", "bank"]
        if not isinstance(grid, Mapping) or sorted(grid) != sorted(expected):
            raise ValueError(
                f"grid must give values for {expected}; got {list(grid) if isinstance(grid, Mapping) else grid!r}"
            )
        for bank in grid["bank"]:
            if bank not in self._bank_arrays:
                raise ValueError(f"grid['bank'] must hold bank names {list(self._bank_arrays)}; got {bank!r}")
        results = {}

        def solve(eps, sigma, beta0, bank):
            x_hat = self.denoise(eps, sigma, beta0, bank, warm_start=False)
            results[eps, sigma, beta0, bank] = x_hat, self.last_result
            return self._figure(x_hat, eps, sigma, beta0, bank, caption=False)

        def caption(eps, sigma, beta0, bank):
            # a grid point's own solve, or (live, off the grid) the solve the panel has just drawn
            x_hat, result = results.get((eps, sigma, beta0, bank), (self._last.get(bank, [None])[0], None))
            return (
                f"{bank}, ε = {eps:g}, σ = {sigma:g}, β0 = {beta0:g}: SNR {snr_db(x_hat, self.truth):.1f} dB "
                f"(noisy {snr_db(self.noisy(sigma), self.truth):.1f} dB)  ·  OGM: "
                f"{(result or self.last_result).iterations} iterations, "
                f"‖∇Φ‖/√N = {(result or self.last_result).gradient_norm.max():.1e}"
            )

        style = {"description_width": "initial"}
        start = dict(defaults)
        live = {
            "eps": ipw.FloatLogSlider(
                value=start.get("eps", 0.01),
                base=10,
                min=-3,
                max=0,
                step=0.25,
                description="ε",
                continuous_update=False,
                style=style,
            ),
            "sigma": ipw.FloatSlider(
                value=start.get("sigma", 0.1),
                min=0.0,
                max=self.SIGMA_MAX,
                step=0.02,
                description="σ",
                continuous_update=False,
                style=style,
            ),
            "beta0": ipw.FloatSlider(
                value=start.get("beta0", -3.0),
                min=-7,
                max=1,
                step=0.25,
                description="β0",
                continuous_update=False,
                style=style,
            ),
            "bank": ipw.Dropdown(
                options=list(self._bank_arrays),
                value=start.get("bank", "finite differences"),
                description="filters",
                style=style,
            ),
        }
        return explorer(
            solve,
            {name: grid[name] for name in expected},
            defaults,
            caption=caption,
            labels={"eps": "ε", "sigma": "σ", "beta0": "β0", "bank": "filters"},
            live=live,
            live_plot=self.live_png,
            title=title,
            alt=alt,
            width=width,
        )
