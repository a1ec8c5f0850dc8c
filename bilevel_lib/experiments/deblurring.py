"""Recipe of case (c) of Ch. "Case studies": a regulariser learned for denoising and for deblurring.

The setting is one definition shared by the chapter's short live run and the saved long run of
``python -m bilevel_lib deblurring``: the central 32×32 of the three cameraman training patches
(:func:`training_crops`), a 5×5 Gaussian blur of width 1 with circular boundaries
(:func:`blur_model`), noise σ = 0.05, the smoothed 1-norm (CR1N) with ε = 0.01, and the
non-constant 3×3 DCT bank as the start.  :func:`task_cost` builds the lower level Φ of either
task, :func:`tune_beta0` picks β0 on a grid on the training data (then frozen, as in the review's
experiments), :func:`crossover_contenders` gives every regulariser of the crossover its β0 for a
task, and :func:`crossover_table` scores them on new data, with every final lower-level solve's
convergence checked.  :func:`deblurring_case` runs the whole experiment: β and the filters trained
for each task, then the crossover on held-out noise and on held-out crops
(:func:`test_crops`, the centres of :data:`~bilevel_lib.experiments.beyond_mse.TEST_PATCHES`).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.filters import dct_filters, finite_differences
from ..problem.forward_models import CircularBlur, Identity, gaussian_kernel
from ..problem.losses import SquaredErrorLoss
from ..problem.metrics import snr_db
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import ConvergenceWarning, solve_lower_level
from ..util.validation import as_float_array, check_choice, check_count, check_flag, positive_scalar
from .beyond_mse import TEST_PATCHES

__all__ = [
    "TASKS",
    "CONTENDERS",
    "SIGMA",
    "BETA0_GRID",
    "training_crops",
    "test_crops",
    "blur_model",
    "forward_model",
    "task_cost",
    "tune_beta0",
    "tight_solve",
    "crossover_contenders",
    "crossover_table",
    "deblurring_case",
]

#: The two tasks, by name, in the order of the crossover table's columns
TASKS = ("denoising", "deblurring")

#: The regularisers of the crossover table, in the order of its rows
CONTENDERS = ("TV", "DCT 3×3", "learned for denoising", "learned for deblurring")

#: Standard deviation of the noise of both tasks
SIGMA = 0.05

#: The β0 values of every grid search of the case (from −7 to −2 in steps of 0.5)
BETA0_GRID = tuple(np.round(np.arange(-7.0, -1.99, 0.5), 2))

#: Side of the default crops and the taps and width of the Gaussian blur
CROP_SIZE, BLUR_TAPS, BLUR_WIDTH = 32, 5, 1.0

#: Smoothing ε of the CR1N penalty of both tasks
EPS = 0.01

#: Tolerance and budget of every tight lower-level solve (β0 grids and the tables)
TIGHT_TOL, TIGHT_MAX_ITER = 1e-6, 50_000


def _centre(images: np.ndarray, size) -> np.ndarray:
    side = min(images.shape[1:])
    size = check_count(size, "size")
    if not 16 <= size <= side:
        raise ValueError(f"size must be an integer from 16 to {side} (the patches' side); got {size}")
    rows, cols = ((n - size) // 2 for n in images.shape[1:])
    return images[:, rows : rows + size, cols : cols + size].copy()


def training_crops(size: int = CROP_SIZE) -> np.ndarray:
    """The central square of side ``size`` of each of the three cameraman training patches, shape (3, size, size).

    With the default 32 these are rows and columns 9 to 40 of each 50×50 patch of
    :func:`~bilevel_lib.problem.data.cameraman_patches` (App. D.2); ``size`` runs from 16 to 50.
    """
    return _centre(data.cameraman_patches(), size)


def test_crops(size: int = CROP_SIZE) -> np.ndarray:
    """The central square of side ``size`` of each of the three held-out cameraman patches, shape (3, size, size).

    The patches are :data:`~bilevel_lib.experiments.beyond_mse.TEST_PATCHES`, disjoint from the
    training patches; ``size`` runs from 16 to 50.
    """
    return _centre(data.cameraman_patches(TEST_PATCHES), size)


def blur_model(signal_shape) -> CircularBlur:
    """The blur of the case, a 5×5 Gaussian kernel of width 1 with circular boundaries, for images of ``signal_shape``."""
    return CircularBlur(gaussian_kernel(BLUR_TAPS, BLUR_WIDTH), signal_shape)


def forward_model(task: str, signal_shape):
    """The forward model A of ``task``, the identity for "denoising" and :func:`blur_model` for "deblurring"."""
    task = check_choice(task, "task", TASKS)
    return Identity(signal_shape) if task == "denoising" else blur_model(signal_shape)


def task_cost(task: str, truth, seed: int, *, sigma: float = SIGMA) -> LowerLevelCost:
    """The lower level Φ of ``task`` for the images ``truth`` (J, n, n), y = A x + σ n.

    The noise n is standard normal, drawn from ``numpy.random.default_rng(seed)`` in the shape of
    ``truth``, so both tasks of one seed see the same noise; the penalty is CR1N with ε = 0.01.
    """
    truth = as_float_array(truth, "truth", ndim=3)
    seed = check_count(seed, "seed", minimum=0)
    sigma = positive_scalar(sigma, "sigma")
    A = forward_model(task, truth.shape[1:])
    noise = np.random.default_rng(seed).standard_normal(truth.shape)
    return LowerLevelCost(A.forward(truth) + sigma * noise, CornerRounded1Norm(EPS), A)


def _check_params(params) -> Hyperparameters:
    if not isinstance(params, Hyperparameters):
        raise TypeError(f"params must be Hyperparameters; got {type(params).__name__}")
    return params


def tune_beta0(cost: LowerLevelCost, params: Hyperparameters, truth) -> Hyperparameters:
    """``params`` with β0 re-chosen on :data:`BETA0_GRID` for the squared error against ``truth``; β_k and the filters are kept.

    Every solve of the grid must reach ‖∇ₓΦ‖/√N < 1e-6 (warm-started along the grid, at most
    50,000 OGM iterations); a grid point that does not is reported as a
    :class:`~bilevel_lib.solvers.lower.ConvergenceWarning`.  A best β0 at an end of the grid is
    refused (``ValueError``): the grid would have to be wider.
    """
    from ..training.tuning import grid_search_beta0

    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    params = _check_params(params)
    truth = as_float_array(truth, "truth", shape=cost.y.shape)
    search = grid_search_beta0(
        cost, params, SquaredErrorLoss(truth), BETA0_GRID, lower_tol=TIGHT_TOL, lower_max_iter=TIGHT_MAX_ITER
    )
    if not search.converged:
        warnings.warn(f"tune_beta0: {search.message}", ConvergenceWarning, stacklevel=2)
    if search.best.beta0 in (BETA0_GRID[0], BETA0_GRID[-1]):
        raise ValueError(f"tune_beta0: the best β0 = {search.best.beta0:g} is an end of the grid {BETA0_GRID}")
    return search.best


def tight_solve(cost: LowerLevelCost, params: Hyperparameters):
    """Solve the lower level to ‖∇ₓΦ‖/√N < 1e-6 (at most 50,000 OGM iterations); the solver's result.

    The result's ``converged`` says whether the tolerance was reached; if not, a
    :class:`~bilevel_lib.solvers.lower.ConvergenceWarning` is issued as well.
    """
    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    return solve_lower_level(cost, _check_params(params), tol=TIGHT_TOL, max_iter=TIGHT_MAX_ITER)


def _check_trained(trained) -> dict:
    if not isinstance(trained, dict) or set(trained) != set(TASKS):
        raise ValueError(f"trained must be a dict with the keys {TASKS} (task → learned γ); got {trained!r:.80}")
    for task, params in trained.items():
        if not isinstance(params, Hyperparameters):
            raise TypeError(f"trained[{task!r}] must be Hyperparameters; got {type(params).__name__}")
    return trained


def crossover_contenders(trained: dict, truth, seed: int, *, sigma: float = SIGMA) -> dict:
    """Every regulariser of the crossover with its β0 for each task: task → {name of :data:`CONTENDERS` → γ}.

    ``trained`` maps each task to the γ learned for it.  Smoothed TV (two finite differences) and
    the DCT bank with β_k = 0 get β0 from :func:`tune_beta0` on the training data of the task
    (``truth`` with the noise of ``seed``); so does the γ learned for the *other* task, keeping its
    filters and β_k: a blur changes how much regularisation is needed overall, and the crossover
    tests the filters, not the overall strength.  The γ learned for a task keeps its own β0.
    """
    trained = _check_trained(trained)
    truth = as_float_array(truth, "truth", ndim=3)
    start = dict(
        TV=Hyperparameters.from_filters(finite_differences(2)),
        **{"DCT 3×3": Hyperparameters.from_filters(dct_filters(3))},
    )
    out = {}
    for task in TASKS:
        cost = task_cost(task, truth, seed, sigma=sigma)
        own = {f"learned for {t}": trained[t] for t in TASKS}
        out[task] = {}
        for name in CONTENDERS:
            params = start.get(name, own.get(name))
            out[task][name] = params if name == f"learned for {task}" else tune_beta0(cost, params, truth)
    return out


def crossover_table(contenders: dict, truth, seed: int, *, sigma: float = SIGMA) -> dict:
    """SNR (dB, over the whole batch) of each contender on new data, for each task, with the convergence of each solve.

    ``contenders`` is the dict of :func:`crossover_contenders`; the data are ``truth`` through each
    task's A with the noise of ``seed``.  Returns a dict with ``snr`` (task → {"measurement" and each
    contender → SNR}), ``x`` (task → contender → x̂), ``converged`` (task → contender → bool) and
    ``gradient_norm`` (task → contender → the largest final ‖∇ₓΦ‖/√N of the batch).
    """
    if not isinstance(contenders, dict) or set(contenders) != set(TASKS):
        raise ValueError(f"contenders must be a dict with the keys {TASKS}; got {contenders!r:.80}")
    truth = as_float_array(truth, "truth", ndim=3)
    out = dict(snr={}, x={}, converged={}, gradient_norm={})
    for task in TASKS:
        cost = task_cost(task, truth, seed, sigma=sigma)
        out["snr"][task] = {"measurement": float(snr_db(cost.y, truth))}
        for key in ("x", "converged", "gradient_norm"):
            out[key][task] = {}
        for name, params in contenders[task].items():
            result = tight_solve(cost, params)
            out["snr"][task][name] = float(snr_db(result.x, truth))
            out["x"][task][name] = result.x
            out["converged"][task][name] = bool(result.converged)
            out["gradient_norm"][task][name] = float(np.max(result.gradient_norm))
    return out


class _DecayingAdam:
    """Adam whose rate falls geometrically from ``lr`` at the first step to ``lr * final`` at step ``n_steps``."""

    def __init__(self, lr: float, final: float, n_steps: int):
        from ..training.optimizers import Adam

        self.adam, self.lr, self.final, self.n_steps, self.t = Adam(lr), lr, final, n_steps, 0

    def step(self, vector, gradient):
        self.adam.learning_rate = self.lr * self.final ** (self.t / max(self.n_steps - 1, 1))
        self.t += 1
        return self.adam.step(vector, gradient)


def _band_energy(filters: np.ndarray, shape, threshold: float) -> np.ndarray:
    """The fraction of each filter's energy |ĉ_k(ω)|² at frequencies where the blur's |Â(ω)| < threshold."""
    spectrum = np.abs(np.fft.fftn(blur_model(shape).forward(_delta(shape))[0]))
    weak = spectrum < threshold
    energy = np.abs(np.fft.fftn(filters, s=shape, axes=(-2, -1))) ** 2
    return np.sum(energy * weak, axis=(-2, -1)) / np.sum(energy, axis=(-2, -1))


def _delta(shape) -> np.ndarray:
    impulse = np.zeros((1, *shape))
    impulse[0, 0, 0] = 1.0
    return impulse


def deblurring_case(
    *,
    n_steps: int = 4000,
    lower_iterations: int = 30,
    lr: float = 0.01,
    lr_final: float = 0.1,
    size: int = CROP_SIZE,
    sigma: float = SIGMA,
    noise_seed: int = 0,
    progress: bool = False,
) -> dict:
    """Learn β and the 3×3 DCT filters for denoising and for deblurring, and score the crossover.

    For each task of :data:`TASKS`, β0 of the DCT bank is tuned on the training data
    (:func:`training_crops` of side ``size`` with the noise of ``noise_seed``) and frozen; Adam
    then trains β_k and the filter taps for ``n_steps`` upper steps of T = ``lower_iterations``
    warm-started OGM iterations (implicit hypergradient), its rate falling geometrically from
    ``lr`` at the first step to ``lr * lr_final`` at the last (a constant rate keeps moving the
    taps by about ``lr`` per step, and a long run at 0.01 can lose its way).  The crossover
    (:func:`crossover_contenders`, β0 of the others tuned on the training data) is scored by
    :func:`crossover_table` three times: on the training data, on the training crops with new
    noise (seed ``noise_seed + 1``) and on the held-out crops (:func:`test_crops`, seed
    ``noise_seed + 2``).  Every final solve is checked; any that missed 1e-6 is counted in
    ``unconverged`` (and warned about).

    Returns
    -------
    dict
        ``tasks``, ``contenders`` (row names), ``params`` (task → learned γ), ``start`` (task → tuned
        DCT start), ``beta0`` (task → row → β0 used), ``history`` (task → loss per step over its first
        value), ``gradient_norm`` (task → ‖∇ℓ‖/√R per step), ``lower_residual`` (task → the lower level's
        max_j ‖∇ₓΦ‖/√N at each step's estimate), ``missed_steps`` (task → how many steps' estimates
        missed a CG or lower-level tolerance), ``tables`` ("train", "held-out noise",
        "held-out crops" → :func:`crossover_table`'s ``snr``), ``converged`` and ``gradient_norm_final``
        (table → task → row), ``unconverged`` (how many final solves missed), ``blur_weak_fraction``
        (the fraction of frequencies where the blur's gain is below 0.1), ``weak_band_energy`` (task →
        fraction of each learned filter's energy there), ``test_truth``, ``test_x`` (task → row → x̂ of
        the held-out crops), ``training_messages``, ``seconds`` (task → training time),
        ``settings`` and ``seconds_total``.
    """
    from ..training.loops import train_double_loop

    n_steps = check_count(n_steps, "n_steps")
    lower_iterations = check_count(lower_iterations, "lower_iterations")
    lr = positive_scalar(lr, "lr")
    lr_final = positive_scalar(lr_final, "lr_final")
    if lr_final > 1:
        raise ValueError(f"lr_final must be a factor in (0, 1] (the last rate over the first); got {lr_final}")
    size = check_count(size, "size")
    sigma = positive_scalar(sigma, "sigma")
    noise_seed = check_count(noise_seed, "noise_seed", minimum=0)
    progress = check_flag(progress, "progress")
    start_time = time.perf_counter()
    truth, held_out = training_crops(size), test_crops(size)
    bank = Hyperparameters.from_filters(dct_filters(3))
    out = dict(tasks=TASKS, contenders=CONTENDERS, params={}, start={}, history={}, gradient_norm={})
    out.update(seconds={}, training_messages={}, lower_residual={}, missed_steps={})
    for task in TASKS:
        cost = task_cost(task, truth, noise_seed, sigma=sigma)
        start = out["start"][task] = tune_beta0(cost, bank, truth)
        tic = time.perf_counter()
        run = train_double_loop(
            cost,
            start,
            SquaredErrorLoss(truth),
            parts=("beta", "filters"),
            n_steps=n_steps,
            optimizer=_DecayingAdam(lr, lr_final, n_steps),
            lower_iterations=lower_iterations,
            progress=progress,
        )
        out["seconds"][task] = time.perf_counter() - tic
        out["params"][task] = run.params
        out["history"][task] = np.asarray(run.history.loss) / run.history.loss[0]
        out["gradient_norm"][task] = np.asarray(run.history.gradient_norm)
        out["lower_residual"][task] = np.asarray(run.history.lower_gradient_norm)
        out["missed_steps"][task] = int(np.sum(~np.asarray(run.history.converged, dtype=bool)))
        out["training_messages"][task] = run.message
    contenders = crossover_contenders(out["params"], truth, noise_seed, sigma=sigma)
    out["beta0"] = {task: {name: float(p.beta0) for name, p in row.items()} for task, row in contenders.items()}
    out.update(tables={}, converged={}, gradient_norm_final={})
    splits = {"train": (truth, noise_seed), "held-out noise": (truth, noise_seed + 1)}
    splits["held-out crops"] = (held_out, noise_seed + 2)
    for split, (images, seed) in splits.items():
        scored = crossover_table(contenders, images, seed, sigma=sigma)
        out["tables"][split] = scored["snr"]
        out["converged"][split] = scored["converged"]
        out["gradient_norm_final"][split] = scored["gradient_norm"]
        if split == "held-out crops":
            out["test_x"] = scored["x"]
    out["unconverged"] = sum(
        not ok for split in out["converged"].values() for row in split.values() for ok in row.values()
    )
    if out["unconverged"]:
        warnings.warn(
            f"deblurring_case: {out['unconverged']} final solve(s) missed ‖∇ₓΦ‖/√N < {TIGHT_TOL:g}",
            ConvergenceWarning,
            stacklevel=2,
        )
    shape = truth.shape[1:]
    spectrum = np.abs(np.fft.fftn(blur_model(shape).forward(_delta(shape))[0]))
    out["blur_weak_fraction"] = float(np.mean(spectrum < 0.1))
    out["weak_band_energy"] = {
        "DCT 3×3": _band_energy(bank.filters, shape, 0.1),
        **{task: _band_energy(out["params"][task].filters, shape, 0.1) for task in TASKS},
    }
    out.update(
        test_truth=held_out,
        settings=dict(
            tasks=list(TASKS),
            n_steps=n_steps,
            lower_iterations=lower_iterations,
            lr=lr,
            lr_final=lr_final,
            size=size,
            sigma=sigma,
            eps=EPS,
            blur=dict(taps=BLUR_TAPS, width=BLUR_WIDTH),
            noise_seed=noise_seed,
            beta0_grid=list(BETA0_GRID),
            tight_tol=TIGHT_TOL,
        ),
        seconds_total=time.perf_counter() - start_time,
    )
    return out
