"""Small experiment recipes shared by chapters, tests and benchmarks.

Each returns plain arrays, so a chapter can plot them and a test can check their trend.
"""

from __future__ import annotations

import time

import numpy as np

from ..hypergrad.closed_form import quadratic_hypergradient
from ..hypergrad.implicit import gradient_angle_degrees, implicit_step
from ..hypergrad.result import check_problem
from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.losses import SquaredErrorLoss
from ..problem.params import Hyperparameters, check_parts
from ..problem.penalties import Quadratic
from ..solvers.lower import solve_lower_level
from ..util.validation import as_float_array, check_count, check_real

__all__ = [
    "CAMERAMAN_SIGMA",
    "two_tap_problem",
    "angle_error_vs_tolerance",
    "vertical_bars_draws",
    "vertical_bars_case",
    "cameraman_case",
]

#: The noise level σ of the cameraman case of App. D.2 (25/255 on images scaled to [0, 1])
CAMERAMAN_SIGMA = 25 / 255


def two_tap_problem(
    n: int = 64, n_signals: int = 20, sigma: float = 0.1, seed: int = 0, beta0: float = 0.0, beta1: float = -2.0
):
    """The setting of review Fig. 5.1: 1-D piecewise-constant training signals, one 2-tap filter, φ(z) = z².

    Returns (cost, truth, loss, make_params) where ``make_params(c0, c1)`` builds γ for the filter
    [c0, c1] with the fixed β0, β1.  The review fixes the strengths and learns the two taps.
    """
    seed = check_count(seed, "seed", minimum=0)
    sigma = check_real(sigma, "sigma", low=0.0)
    beta0, beta1 = check_real(beta0, "beta0"), check_real(beta1, "beta1")
    rng = np.random.default_rng(seed)
    truth = data.piecewise_constant_1d(n, n_signals, rng, n_jumps=4)
    y = data.add_noise(truth, sigma, rng)
    cost = LowerLevelCost(y, Quadratic())

    def make_params(c0: float, c1: float) -> Hyperparameters:
        return Hyperparameters(beta0, np.array([beta1]), np.array([[c0, c1]]))

    return cost, truth, SquaredErrorLoss(truth), make_params


def _check_grid(grid) -> np.ndarray:
    grid = as_float_array(grid, "grid", ndim=1)
    if grid.size == 0:
        raise ValueError("grid must hold at least one β0")
    return grid


def angle_error_vs_tolerance(
    cost: LowerLevelCost, truth, params: Hyperparameters, tolerances, *, parts=("filters",), x0=None
):
    """Angle between the implicit hypergradient and the exact one as the lower-level tolerance varies.

    For each tolerance the lower level is solved by OGM from ``x0`` (default A'y) until
    ‖∇ₓΦ‖/√N < tol, then (4.8) is applied at that inexact x̂ with an exact linear solve (CG to
    1e-12), so the only error left is the lower level's.  The exact gradient comes from
    :func:`~bilevel_lib.hypergrad.closed_form.quadratic_hypergradient` (φ(z) = z² only).
    Returns (angles in degrees, lower-level iterations), one entry per tolerance.

    The angle is meaningless where the exact gradient (nearly) vanishes, at the minimiser, and on
    the symmetry lines c1 = ±c0 of the two-tap problem, where the filter gradient is parallel to
    (1, ±1) and the angle is ~0 for any tolerance: probe points away from them.
    """
    check_problem(cost, params)
    parts = check_parts(parts)
    tolerances = as_float_array(tolerances, "tolerances", ndim=1)
    if tolerances.size == 0 or np.any(tolerances <= 0):
        raise ValueError(f"tolerances must be a non-empty list of positive numbers; got {tolerances}")
    if x0 is not None:
        cost.check_x(x0, "x0")
    if not isinstance(cost.penalty, Quadratic):
        raise ValueError("angle_error_vs_tolerance needs the exact case φ(z) = z² (penalty Quadratic())")
    exact = quadratic_hypergradient(cost.y, truth, params, cost.forward_model).gradient
    loss = SquaredErrorLoss(truth)
    angles, iterations = [], []
    for tol in tolerances:
        lower = solve_lower_level(cost, params, x0=x0, tol=tol, max_iter=1_000_000)
        estimate = implicit_step(cost, params, loss, lower.x, cg_tol=1e-12, cg_max_iter=1000, warn=True).gradient
        angles.append(gradient_angle_degrees(estimate.flatten(parts), exact.flatten(parts)))
        iterations.append(lower.iterations)
    return np.array(angles), np.array(iterations)


# --------------------------------------------------------------------------- the review's case studies
def vertical_bars_draws(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The noise and the four initial 4×2 filters of the authors' script for App. D.1, redrawn.

    ``scripts/vertbars.jl`` (Julia 1.7.1) calls ``seed!(0)``, draws the noise ``randn(32, 32)``,
    calls ``seed!(0)`` again and draws the filters ``normalize(randn(4, 2))`` four times.
    :class:`~bilevel_lib.experiments.julia_random.JuliaXoshiro` repeats Julia's generator, so this returns the
    same numbers: the noise before scaling by σ (32×32) and the filters of unit ℓ2 norm (4, 4, 2).
    Julia fills arrays column by column, hence ``order="F"`` inside ``JuliaXoshiro.randn``.
    """
    from .julia_random import JuliaXoshiro

    noise = JuliaXoshiro(seed).randn(32, 32)
    stream = JuliaXoshiro(seed)
    bank = np.stack([stream.randn(4, 2) for _ in range(4)])
    return noise, bank / np.linalg.norm(bank, axis=(1, 2), keepdims=True)


def vertical_bars_case(
    *,
    draws: str = "julia",
    julia_seed: int = 0,
    filter_seed: int = 1,
    noise_seed: int = 0,
    n_steps: int = 4000,
    lower_iterations: int = 50,
    grid=None,
    bank: str = "random",
    progress: bool = False,
) -> dict:
    """Review Fig. 1.3 / App. D.1: learn 4 random 4×2 filters and their β on the vertical-bar image.

    β0 from a grid search (default −6:0.1:−4) with the starting filters, then frozen; Adam (default
    parameters) on β_k (starting at 0) and the filters for ``n_steps`` upper steps of
    T = ``lower_iterations`` warm-started OGM iterations each.

    ``draws="julia"`` (the default) takes the noise and the random filters the authors' script drew
    (:func:`vertical_bars_draws` with ``julia_seed``; their run is seed 0), so the run starts exactly
    where theirs did.  ``draws="numpy"`` draws them from numpy instead: the noise with ``noise_seed``
    and the filters with ``filter_seed`` (Gaussian, unit ℓ2 norm), to see how much a result depends
    on the draw.

    ``bank="random"`` (the review's run) starts from K = 4 random 4×2 filters; ``bank="dct"`` is the
    second run of that script, K = 8 non-constant 3×3 DCT filters with the β0 grid −4:0.1:−2 (the
    script picks −3.3).

    Returns a dict with the training result, the grid search and the figures of merit (SNRs,
    column/row sums of the filters, strengths e^{β0+β_k}‖c_k‖ (D.1)).
    """
    from ..problem import metrics
    from ..problem.filters import dct_filters, random_filters
    from ..problem.penalties import CornerRounded1Norm
    from ..training.loops import train_double_loop
    from ..training.tuning import grid_search_beta0

    if bank not in ("random", "dct"):
        raise ValueError(f"bank must be 'random' or 'dct'; got {bank!r}")
    if draws not in ("julia", "numpy"):
        raise ValueError(f"draws must be 'julia' (the authors' noise and filters) or 'numpy'; got {draws!r}")
    for name, seed in dict(julia_seed=julia_seed, filter_seed=filter_seed, noise_seed=noise_seed).items():
        check_count(seed, name, minimum=0)
    n_steps, lower_iterations = check_count(n_steps, "n_steps"), check_count(lower_iterations, "lower_iterations")
    grid = None if grid is None else _check_grid(grid)
    start = time.perf_counter()
    truth = data.vertical_bars()[None]
    sigma = 25 / 255
    if draws == "julia":
        noise, random_bank = vertical_bars_draws(julia_seed)
        y = truth + sigma * noise
    else:
        y = data.add_noise(truth, sigma, rng=noise_seed)
        random_bank = random_filters(4, (4, 2), rng=filter_seed)
    cost = LowerLevelCost(y, CornerRounded1Norm(0.01))
    loss = SquaredErrorLoss(truth)
    if bank == "random":
        initial = Hyperparameters.from_filters(random_bank)
        default_grid = np.arange(-6.0, -3.95, 0.1)
    else:
        initial = Hyperparameters.from_filters(dct_filters(3))
        default_grid = np.arange(-4.0, -1.95, 0.1)
    grid = np.round(default_grid, 2) if grid is None else np.asarray(grid)
    search = grid_search_beta0(cost, initial, loss, grid, lower_tol=1e-7)
    result = train_double_loop(
        cost,
        search.best,
        loss,
        parts=("beta", "filters"),
        n_steps=n_steps,
        lower_iterations=lower_iterations,
        progress=progress,
    )
    learned = result.params
    column_sums = learned.filters.sum(axis=1)  # sum down each column of every filter
    row_sums = learned.filters.sum(axis=2)
    return dict(
        result=result,
        search=search,
        truth=truth,
        noisy=y,
        seconds=time.perf_counter() - start,
        snr_noisy=float(metrics.snr_db(y, truth)),
        snr_learned=float(metrics.snr_db(result.x, truth)),
        max_abs_column_sum=float(np.abs(column_sums).max()),
        row_sum_range=(float(row_sums.min()), float(row_sums.max())),
        strengths=learned.effective_strengths,
    )


def cameraman_case(
    *,
    parts=("beta",),
    n_steps: int = 500,
    lower_iterations: int = 10,
    beta0: float | None = None,
    grid=None,
    noise_seed: int = 0,
    cg_preconditioner="circulant",
    progress: bool = False,
) -> dict:
    """Review Fig. 5.2 / 6.1 / 6.2, App. D.2: 48 non-constant 7×7 DCT filters on three 50×50 patches.

    β0 from a grid (default −6:0.5:−2) unless given, then frozen; Adam on ``parts`` ("beta" only, or
    "beta" and "filters") with T = 10 warm-started OGM iterations per step.  Returns the training
    result and SNRs on the training patches.

    CG stops, as in App. D.2, at 10⁻³ of its warm-started initial residual; ``cg_preconditioner``
    (default the circulant one of :mod:`bilevel_lib.solvers.preconditioners`; None for plain CG)
    changes only how many iterations that takes.  Measured on the β-only run: plain CG needs 7
    iterations per step at the start and 24 at the end, the circulant preconditioner 6 and 5
    (filters and β: 21 and 12 near the end).
    """
    from ..problem import metrics
    from ..problem.filters import dct_filters
    from ..problem.penalties import CornerRounded1Norm
    from ..training.loops import train_double_loop
    from ..training.tuning import grid_search_beta0

    parts = check_parts(parts)
    n_steps, lower_iterations = check_count(n_steps, "n_steps"), check_count(lower_iterations, "lower_iterations")
    noise_seed = check_count(noise_seed, "noise_seed", minimum=0)
    if beta0 is not None:
        beta0 = check_real(beta0, "beta0")
        if grid is not None:
            raise ValueError("grid applies only without beta0 (β0 is searched on the grid, or given); got both")
    grid = None if grid is None else _check_grid(grid)
    start = time.perf_counter()
    truth = data.cameraman_patches()
    y = data.add_noise(truth, CAMERAMAN_SIGMA, rng=noise_seed)
    cost = LowerLevelCost(y, CornerRounded1Norm(0.01))
    loss = SquaredErrorLoss(truth)
    initial = Hyperparameters.from_filters(dct_filters(7))
    search = None
    if beta0 is None:
        grid = np.arange(-6.0, -1.99, 0.5) if grid is None else np.asarray(grid)
        search = grid_search_beta0(cost, initial, loss, grid, lower_tol=1e-6)
        initial = search.best
    else:
        initial = Hyperparameters(beta0, initial.beta, initial.filters)
    result = train_double_loop(
        cost,
        initial,
        loss,
        parts=check_parts(parts),
        n_steps=n_steps,
        lower_iterations=lower_iterations,
        cg_preconditioner=cg_preconditioner,
        progress=progress,
    )
    return dict(
        result=result,
        search=search,
        truth=truth,
        noisy=y,
        seconds=time.perf_counter() - start,
        snr_noisy=float(metrics.snr_db(y, truth)),
        snr_learned=float(metrics.snr_db(result.x, truth)),
        strengths=result.params.strengths,
    )
