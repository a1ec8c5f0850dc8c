"""Recipe of Ch. "Single- vs double-loop algorithms", section "At the slides' scale": MAID against HOAG.

The MAID slides compare MAID with HOAG on a Field-of-Experts denoising problem with many learned
filters and report MAID ahead in test PSNR.  :func:`maid_hoag_comparison` repeats that comparison at a
size this book can afford: 64×64 crops of the cameraman image, noise σ = 0.1, the non-constant DCT
filters of side ``filter_size`` (24 for 5×5) whose strengths and taps are learned (parts
``"beta"`` and ``"filters"``), β0 from a grid and then frozen.  MAID runs with its default adaptive
accuracies; HOAG runs with Adam and one tolerance schedule per decay.  Every run gets the same work
budget (lower-level plus CG iterations, as :class:`~bilevel_lib.training.loops.TrainingHistory`
counts them) and stops at the first step that reaches it.  The learned γ of each run is then scored
on held-out crops with fresh noise, solved tightly.

:func:`cameraman_crops` gives the training and test crops (disjoint tiles of the image).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.filters import dct_filters
from ..problem.losses import SquaredErrorLoss
from ..problem.metrics import psnr_db, snr_db
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import ConvergenceWarning, solve_lower_level
from ..util.validation import check_count, check_flag, check_real

__all__ = ["HOAG_DECAYS", "cameraman_crops", "maid_hoag_comparison", "run_names"]

#: The decays of the three HOAG tolerance schedules, each starting at 1e-2
HOAG_DECAYS = (0.95, 0.98, 0.99)

#: The β0 grid searched before training (then β0 is frozen)
BETA0_GRID = tuple(np.round(np.arange(-6.0, -0.99, 0.5), 2))

#: Crops whose standard deviation is below this are too flat to teach a regulariser and are skipped
FLAT_STD = 0.05


def run_names(decays=HOAG_DECAYS) -> list:
    """The names of the runs of :func:`maid_hoag_comparison`, in its order: ``"MAID"``, then ``"HOAG d"`` per decay."""
    decays = _check_decays(decays)
    return ["MAID", *(f"HOAG {decay:g}" for decay in decays)]


def _check_decays(decays) -> tuple:
    if isinstance(decays, (str, bytes)) or not hasattr(decays, "__iter__"):
        raise TypeError(f"decays must be a sequence of numbers in (0, 1); got {decays!r}")
    decays = tuple(check_real(decay, "decays", low=0.0, high=1.0, low_open=True, high_open=True) for decay in decays)
    if not decays or len(set(decays)) != len(decays):
        raise ValueError(f"decays must be a non-empty sequence of distinct numbers in (0, 1); got {decays!r}")
    return decays


def cameraman_crops(n_train: int, n_test: int, *, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint size×size crops of :func:`~bilevel_lib.problem.data.cameraman`, for training and testing.

    The 512×512 image is cut into non-overlapping tiles of side ``size``; tiles that are nearly flat
    (standard deviation below 0.05) are dropped, the rest shuffled with ``seed``; the first
    ``n_train`` are the training images, the next ``n_test`` the test images.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Shapes (n_train, size, size) and (n_test, size, size), values in [0, 1].
    """
    n_train, n_test = check_count(n_train, "n_train"), check_count(n_test, "n_test")
    size, seed = check_count(size, "size", minimum=8), check_count(seed, "seed", minimum=0)
    if size > 256:
        raise ValueError(f"size must be an integer from 8 to 256 (tiles of the 512×512 image); got {size}")
    image = data.cameraman()
    corners = [(r, c) for r in range(0, 512 - size + 1, size) for c in range(0, 512 - size + 1, size)]
    tiles = np.stack([image[r : r + size, c : c + size] for r, c in corners])
    usable = np.flatnonzero(tiles.std(axis=(1, 2)) > FLAT_STD)
    if n_train + n_test > usable.size:
        raise ValueError(
            f"n_train + n_test must be at most {usable.size} (the non-flat {size}×{size} tiles); "
            f"got {n_train} + {n_test}"
        )
    order = np.random.default_rng(seed).permutation(usable)
    return tiles[order[:n_train]].copy(), tiles[order[n_train : n_train + n_test]].copy()


def _tight(cost, params, x0=None):
    return solve_lower_level(cost, params, x0=x0, tol=1e-6, max_iter=100_000, warn=False)


def maid_hoag_comparison(
    *,
    budget: int = 10_000,
    n_train: int = 8,
    n_test: int = 4,
    size: int = 64,
    sigma: float = 0.1,
    filter_size: int = 5,
    decays=HOAG_DECAYS,
    initial_tol: float = 1e-2,
    learning_rate: float = 3e-3,
    maid_step: float = 1e-2,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """MAID and HOAG (one run per tolerance decay) trained with the same work budget, then tested.

    Parameters
    ----------
    budget : the work (lower-level plus CG iterations) each run may spend; a run stops at the first
        step whose cumulative work reaches it (``max_work`` of the training loops).
    n_train, n_test, size : the number and side of the training and test crops (:func:`cameraman_crops`).
    sigma : the noise level (images in [0, 1]); the test crops get fresh noise (seed ``seed + 1``).
    filter_size : the side of the DCT bank (3, 5 or 7); its non-constant filters are learned.
    decays : the HOAG schedules ε_u = max(``initial_tol`` · decay^u, 1e-12)
        (:func:`~bilevel_lib.training.loops.hoag_schedule`).
    learning_rate : Adam's rate for HOAG.
    maid_step : MAID's first trial step (its accuracies keep their defaults, ε = δ = 0.1).
    seed : the crops' shuffle and the training noise.
    progress : show a progress bar per run.

    Returns
    -------
    dict
        ``names`` (:func:`run_names`), ``start`` (γ after the β0 grid), ``beta0_grid`` and
        ``beta0_losses``, ``params`` (name → learned γ), ``history`` (name → the run's
        ``TrainingHistory.as_arrays()``), ``message``, ``seconds`` (name → training wall time),
        ``unconverged`` (name → steps whose estimate missed a tolerance), ``train_loss`` (name → ℓ at
        the learned γ from a solve to 1e-6; ``"start"`` too), ``test_psnr`` and ``test_snr``
        (name → per-image values on the test crops, ``"start"`` and ``"noisy"`` too), ``settings``
        and ``seconds_total``.
    """
    from ..training.loops import hoag_schedule, train_double_loop
    from ..training.maid import train_maid
    from ..training.optimizers import Adam
    from ..training.tuning import grid_search_beta0

    budget = check_count(budget, "budget")
    sigma = check_real(sigma, "sigma", low=0.0, low_open=True)
    filter_size = check_count(filter_size, "filter_size")
    if filter_size not in (3, 5, 7):
        raise ValueError(f"filter_size must be 3, 5 or 7 (the side of the DCT bank); got {filter_size}")
    decays = _check_decays(decays)
    initial_tol = check_real(initial_tol, "initial_tol", low=0.0, low_open=True)
    learning_rate = check_real(learning_rate, "learning_rate", low=0.0, low_open=True)
    maid_step = check_real(maid_step, "maid_step", low=0.0, low_open=True)
    progress = check_flag(progress, "progress")
    seed = check_count(seed, "seed", minimum=0)
    truth, test_truth = cameraman_crops(n_train, n_test, size=size, seed=seed)
    start_time = time.perf_counter()
    cost = LowerLevelCost(data.add_noise(truth, sigma, rng=seed), CornerRounded1Norm(0.01))
    test_cost = LowerLevelCost(data.add_noise(test_truth, sigma, rng=seed + 1), CornerRounded1Norm(0.01))
    loss = SquaredErrorLoss(truth)
    bank = Hyperparameters.from_filters(dct_filters(filter_size))
    search = grid_search_beta0(cost, bank, loss, BETA0_GRID, lower_tol=1e-6)
    start = search.best
    parts = ("beta", "filters")
    names = run_names(decays)
    runners = {
        "MAID": lambda: train_maid(
            cost, start, loss, parts=parts, n_steps=budget, step=maid_step, max_work=budget, progress=progress
        )
    }
    for name, decay in zip(names[1:], decays):
        runners[name] = lambda decay=decay: train_double_loop(
            cost,
            start,
            loss,
            parts=parts,
            n_steps=budget,
            optimizer=Adam(learning_rate),
            schedule=hoag_schedule(initial_tol, decay),
            max_work=budget,
            progress=progress,
        )
    out = dict(
        names=names,
        start=start,
        beta0_grid=np.asarray(BETA0_GRID),
        beta0_losses=np.asarray(search.losses),
        params={},
        history={},
        message={},
        seconds={},
        unconverged={},
        train_loss={"start": float(search.best_loss)},
        test_psnr={},
        test_snr={},
    )

    def score(name, params):
        x = _tight(test_cost, params).x
        out["test_psnr"][name] = np.atleast_1d(psnr_db(x, test_truth, per_image=True, data_range=1.0))
        out["test_snr"][name] = np.atleast_1d(snr_db(x, test_truth, per_image=True))

    out["test_psnr"]["noisy"] = np.atleast_1d(psnr_db(test_cost.y, test_truth, per_image=True, data_range=1.0))
    out["test_snr"]["noisy"] = np.atleast_1d(snr_db(test_cost.y, test_truth, per_image=True))
    score("start", start)
    for name, runner in runners.items():
        tic = time.perf_counter()
        with warnings.catch_warnings():
            # a missed CG or lower-level tolerance is counted below (history.converged), not lost
            warnings.simplefilter("ignore", ConvergenceWarning)
            run = runner()
        out["seconds"][name] = time.perf_counter() - tic
        out["params"][name] = run.params
        out["history"][name] = run.history.as_arrays()
        out["message"][name] = run.message
        out["unconverged"][name] = int(np.sum(~out["history"][name]["converged"].astype(bool)))
        out["train_loss"][name] = float(loss.value(_tight(cost, run.params, run.x).x))
        score(name, run.params)
    out["settings"] = dict(
        budget=budget,
        n_train=n_train,
        n_test=n_test,
        size=size,
        sigma=sigma,
        filter_size=filter_size,
        n_filters=int(bank.n_filters),
        n_hyperparameters=int(start.size(parts)),
        penalty="CR1N, eps = 0.01",
        decays=list(decays),
        initial_tol=initial_tol,
        learning_rate=learning_rate,
        maid_step=maid_step,
        beta0=float(start.beta0),
        seed=seed,
        test_tol=1e-6,
    )
    out["seconds_total"] = time.perf_counter() - start_time
    return out
