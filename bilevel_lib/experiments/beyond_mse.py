"""Recipes of Ch. "Other losses and inpainting": training with other upper-level losses, and inpainting.

:func:`loss_comparison` trains the same regulariser (β_k of a fixed DCT bank, or its filters too) on
the cameraman training patches with the squared error, the Huber loss and 1 − SSIM as the upper-level
loss ℓ (the review's Sec. 3.1), and scores each on held-out patches in SNR, PSNR and SSIM.
:func:`inpainting_case` learns the strengths (and optionally the filters) for a random pixel mask A
and compares them with smoothed total variation and the DCT bank, each with a tuned β0.

Both return plain dicts of arrays and numbers (the chapter tabulates them, the command line saves
them, the tests check their trends).
"""

from __future__ import annotations

import time

import numpy as np

from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.filters import dct_filters, finite_differences
from ..problem.forward_models import PixelMask
from ..problem.losses import HuberLoss, SquaredErrorLoss, SSIMLoss
from ..problem.metrics import psnr_db, snr_db
from ..problem.params import Hyperparameters, check_parts
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import solve_lower_level
from ..util.validation import as_float_array, check_count, check_flag, positive_scalar

__all__ = ["TEST_PATCHES", "LOSS_NAMES", "loss_comparison", "inpainting_case", "scores"]

#: Rows and columns (0-based, end exclusive) of three 50×50 held-out cameraman patches, disjoint from
#: :data:`~bilevel_lib.problem.data.CAMERAMAN_PATCHES` (the training patches of App. D.2)
TEST_PATCHES = (
    (slice(160, 210), slice(190, 240)),
    (slice(380, 430), slice(300, 350)),
    (slice(250, 300), slice(120, 170)),
)

#: the upper-level losses :func:`loss_comparison` knows, by name
LOSS_NAMES = ("mse", "huber", "ssim")

#: β0 grid of the searches (the review's experiments pick β0 on a grid, then freeze it)
BETA0_GRID = tuple(np.round(np.arange(-7.0, -0.99, 0.5), 2))


def _crop(images: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return images
    side = images.shape[-1]
    if not 16 <= size <= side:
        raise ValueError(
            f"size must be an integer from 16 to {side} (the patches' side; SSIM's window is 11 wide); got {size}"
        )
    start = (side - size) // 2
    return images[:, start : start + size, start : start + size].copy()


def make_loss(name: str, truth, *, huber_delta: float = 0.02):
    """The upper-level loss called ``name`` ("mse", "huber" or "ssim") against ``truth`` (images in [0, 1]).

    SSIM uses the Gaussian window of σ = 1.5 and data range 1 (Wang et al.'s settings); Huber
    turns linear at ``huber_delta``.
    """
    if name == "mse":
        return SquaredErrorLoss(truth)
    if name == "huber":
        return HuberLoss(truth, huber_delta)
    if name == "ssim":
        return SSIMLoss(truth, 1.0)
    raise ValueError(f"losses must be names from {LOSS_NAMES}; got {name!r}")


def scores(x, truth) -> dict:
    """SNR, PSNR (peak 1) and SSIM (Gaussian window, σ = 1.5, range 1) of each image of x against truth.

    Returns a dict of arrays of J values each, keys ``snr``, ``psnr``, ``ssim``.  The SSIM is
    :class:`~bilevel_lib.problem.losses.SSIMLoss`'s, equal to scikit-image's ``structural_similarity``
    with ``gaussian_weights=True, use_sample_covariance=False, data_range=1``.
    """
    truth = as_float_array(truth, "truth", ndim=3)
    x = as_float_array(x, "x", shape=truth.shape)
    return dict(
        snr=np.atleast_1d(snr_db(x, truth, per_image=True)),
        psnr=np.atleast_1d(psnr_db(x, truth, per_image=True, data_range=1.0)),
        ssim=SSIMLoss(truth, 1.0).ssim(x),
    )


def _solve(cost, params, tol=1e-6, max_iter=50_000):
    return solve_lower_level(cost, params, tol=tol, max_iter=max_iter).x


def _check_common(n_steps, lower_iterations, lr, size, noise_seed, progress):
    return (
        check_count(n_steps, "n_steps"),
        check_count(lower_iterations, "lower_iterations"),
        positive_scalar(lr, "lr"),
        None if size is None else check_count(size, "size"),
        check_count(noise_seed, "noise_seed", minimum=0),
        check_flag(progress, "progress"),
    )


def _bank(filter_size) -> Hyperparameters:
    filter_size = check_count(filter_size, "filter_size")
    if filter_size not in (3, 5, 7):
        raise ValueError(f"filter_size must be 3, 5 or 7 (the side of the DCT bank); got {filter_size}")
    return Hyperparameters.from_filters(dct_filters(filter_size))


def loss_comparison(
    *,
    losses=LOSS_NAMES,
    parts=("beta",),
    filter_size: int = 5,
    n_steps: int = 400,
    lower_iterations: int = 10,
    lr: float = 0.02,
    huber_delta: float = 0.02,
    sigma: float = 25 / 255,
    size: int | None = None,
    noise_seed: int = 0,
    progress: bool = False,
) -> dict:
    """Train one regulariser with each upper-level loss and score them on held-out patches.

    The setting is the cameraman case of App. D.2 made smaller: the three training patches
    (:func:`~bilevel_lib.problem.data.cameraman_patches`, cropped to ``size``×``size`` at their
    centre if given), noise σ = 25/255, φ = CR1N with ε = 0.01, the non-constant DCT bank of side
    ``filter_size``.  β0 is chosen once on a grid with the squared error and frozen; from there each
    loss trains ``parts`` with Adam (learning rate ``lr``) for ``n_steps`` steps of T =
    ``lower_iterations`` warm-started OGM iterations, so every run starts from the same γ.  The
    held-out patches (:data:`TEST_PATCHES`) get new noise (seed ``noise_seed + 1``).

    Returns
    -------
    dict
        ``losses`` (the names), ``start`` (the γ every run started from), ``params`` (name → learned γ),
        ``history`` (name → loss per step, normalised by its first value), ``train`` and ``test``
        (name → :func:`scores` dict; the key ``"start"`` holds the starting γ's), ``test_truth``,
        ``test_noisy``, ``test_x`` (name → reconstructions), ``seconds`` (name → training time) and
        ``seconds_total``.
    """
    from ..training.loops import train_double_loop
    from ..training.optimizers import Adam
    from ..training.tuning import grid_search_beta0

    if isinstance(losses, str) or not hasattr(losses, "__iter__"):
        raise TypeError(f"losses must be a sequence of names from {LOSS_NAMES}; got {losses!r}")
    losses = tuple(losses)
    if not losses or any(name not in LOSS_NAMES for name in losses) or len(set(losses)) != len(losses):
        raise ValueError(f"losses must be distinct names from {LOSS_NAMES}; got {losses!r}")
    parts = check_parts(parts)
    n_steps, lower_iterations, lr, size, noise_seed, progress = _check_common(
        n_steps, lower_iterations, lr, size, noise_seed, progress
    )
    huber_delta = positive_scalar(huber_delta, "huber_delta")
    sigma = positive_scalar(sigma, "sigma")
    bank = _bank(filter_size)
    start_time = time.perf_counter()
    truth = _crop(data.cameraman_patches(), size)
    test_truth = _crop(data.cameraman_patches(TEST_PATCHES), size)
    cost = LowerLevelCost(data.add_noise(truth, sigma, rng=noise_seed), CornerRounded1Norm(0.01))
    test_cost = LowerLevelCost(data.add_noise(test_truth, sigma, rng=noise_seed + 1), CornerRounded1Norm(0.01))
    start = grid_search_beta0(cost, bank, SquaredErrorLoss(truth), BETA0_GRID, lower_tol=1e-6).best
    out = dict(losses=losses, start=start, params={}, history={}, train={}, test={}, test_x={}, seconds={})
    out["train"]["start"] = scores(_solve(cost, start), truth)
    out["test_x"]["start"] = _solve(test_cost, start)
    out["test"]["start"] = scores(out["test_x"]["start"], test_truth)
    for name in losses:
        tic = time.perf_counter()
        run = train_double_loop(
            cost,
            start,
            make_loss(name, truth, huber_delta=huber_delta),
            parts=parts,
            n_steps=n_steps,
            optimizer=Adam(lr),
            lower_iterations=lower_iterations,
            progress=progress,
        )
        out["seconds"][name] = time.perf_counter() - tic
        out["params"][name] = run.params
        out["history"][name] = np.asarray(run.history.loss) / run.history.loss[0]
        out["train"][name] = scores(_solve(cost, run.params), truth)
        out["test_x"][name] = _solve(test_cost, run.params)
        out["test"][name] = scores(out["test_x"][name], test_truth)
    out.update(
        test_truth=test_truth,
        test_noisy=test_cost.y,
        noisy_scores=scores(test_cost.y, test_truth),
        settings=dict(
            losses=list(losses),
            parts=list(parts),
            filter_size=int(bank.filters.shape[-1]),
            n_steps=n_steps,
            lower_iterations=lower_iterations,
            lr=lr,
            huber_delta=huber_delta,
            sigma=sigma,
            size=size,
            noise_seed=noise_seed,
            beta0=float(start.beta0),
        ),
        seconds_total=time.perf_counter() - start_time,
    )
    return out


def random_mask(shape, missing: float, seed: int) -> np.ndarray:
    """A 0/1 mask of ``shape`` with each pixel missing with probability ``missing`` (seeded)."""
    missing = positive_scalar(missing, "missing")
    if not missing < 1:
        raise ValueError(f"missing must be a fraction in (0, 1); got {missing}")
    return (np.random.default_rng(check_count(seed, "seed", minimum=0)).random(shape) >= missing).astype(np.float64)


def inpainting_case(
    *,
    missing: float = 0.6,
    sigma: float = 0.02,
    parts=("beta",),
    filter_size: int = 3,
    n_steps: int = 300,
    lower_iterations: int = 20,
    lr: float = 0.02,
    size: int | None = None,
    noise_seed: int = 0,
    progress: bool = False,
) -> dict:
    """Learn a regulariser for inpainting (A = a random pixel mask) and compare it with tuned baselines.

    Training pairs: the three cameraman patches (cropped to ``size`` if given) seen through one
    random mask missing a fraction ``missing`` of the pixels, plus noise σ.  Contenders, each with
    β0 chosen on a grid on the training data: smoothed total variation (the two finite-difference
    filters, CR1N with ε = 0.01), the non-constant DCT bank of side ``filter_size`` with β_k = 0, and
    that bank after learning ``parts`` (Adam with rate ``lr``, ``n_steps`` steps of T =
    ``lower_iterations`` warm-started OGM iterations, the squared error as ℓ).  Test: the held-out
    patches (:data:`TEST_PATCHES`) with a new mask and new noise.

    Returns
    -------
    dict
        ``params`` (name → γ), ``history`` (the learned run's loss per step), ``train`` and ``test``
        (name → :func:`scores` dict), ``test_truth``, ``test_y`` (the masked data), ``test_mask``,
        ``test_x`` (name → reconstructions), ``settings``, ``seconds_total``.
    """
    from ..training.loops import train_double_loop
    from ..training.optimizers import Adam
    from ..training.tuning import grid_search_beta0

    parts = check_parts(parts)
    n_steps, lower_iterations, lr, size, noise_seed, progress = _check_common(
        n_steps, lower_iterations, lr, size, noise_seed, progress
    )
    sigma = positive_scalar(sigma, "sigma")
    missing = positive_scalar(missing, "missing")
    if not missing <= 0.95:
        raise ValueError(f"missing must be a fraction in (0, 0.95]; got {missing}")
    bank = _bank(filter_size)
    start_time = time.perf_counter()
    truth = _crop(data.cameraman_patches(), size)
    test_truth = _crop(data.cameraman_patches(TEST_PATCHES), size)
    shape = truth.shape[1:]

    def masked_cost(images, mask_seed, seed):
        A = PixelMask(random_mask(shape, missing, mask_seed))
        y = A.forward(images) + A.forward(sigma * np.random.default_rng(seed).standard_normal(images.shape))
        return LowerLevelCost(y, CornerRounded1Norm(0.01), A)

    cost = masked_cost(truth, 2 * noise_seed, 2 * noise_seed + 1)
    test_cost = masked_cost(test_truth, 2 * noise_seed + 2, 2 * noise_seed + 3)
    loss = SquaredErrorLoss(truth)

    def tuned(params):
        return grid_search_beta0(cost, params, loss, BETA0_GRID, lower_tol=1e-6, lower_max_iter=50_000).best

    contenders = {"TV": tuned(Hyperparameters.from_filters(finite_differences(2))), "DCT": tuned(bank)}
    run = train_double_loop(
        cost,
        contenders["DCT"],
        loss,
        parts=parts,
        n_steps=n_steps,
        optimizer=Adam(lr),
        lower_iterations=lower_iterations,
        progress=progress,
    )
    contenders["learned"] = run.params
    out = dict(params=contenders, history=np.asarray(run.history.loss) / run.history.loss[0], train={}, test={})
    out["test_x"] = {}
    for name, params in contenders.items():
        out["train"][name] = scores(_solve(cost, params), truth)
        out["test_x"][name] = _solve(test_cost, params)
        out["test"][name] = scores(out["test_x"][name], test_truth)
    # the measurement itself, missing pixels at 0
    out["test"]["masked data"] = scores(test_cost.y, test_truth)
    out.update(
        test_truth=test_truth,
        test_y=test_cost.y,
        test_mask=test_cost.forward_model.mask,
        settings=dict(
            missing=missing,
            sigma=sigma,
            parts=list(parts),
            filter_size=int(bank.filters.shape[-1]),
            n_steps=n_steps,
            lower_iterations=lower_iterations,
            lr=lr,
            size=size,
            noise_seed=noise_seed,
            beta0=dict((name, float(p.beta0)) for name, p in contenders.items()),
        ),
        seconds_total=time.perf_counter() - start_time,
    )
    return out
