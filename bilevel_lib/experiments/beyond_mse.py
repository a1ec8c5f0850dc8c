"""Recipes of Ch. "Other losses and inpainting": training with other upper-level losses, and inpainting.

:func:`loss_comparison` trains the same regulariser (β_k of a fixed DCT bank, or its filters too) on
the cameraman training patches with the squared error, the Huber loss and 1 − SSIM as the upper-level
loss ℓ (the review's Sec. 3.1), and scores each on held-out patches in SNR, PSNR and SSIM.
:func:`inpainting_case` learns the strengths (and optionally the filters) for a random pixel mask A
and compares them with smoothed total variation and the DCT bank, each with a tuned β0.
:func:`penalty_comparison` learns the strengths of the fixed DCT bank, and then the filters too, with
the convex CR1N and with the non-convex log(1 + z²/ε²) (the review's Sec. 6, after Chen, Ranftl &
Pock), and checks with
:func:`smallest_hessian_eigenvalues` that the Hessian of the lower level is positive definite at
the reconstructions, which the implicit function theorem behind the hypergradient needs.

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
from ..problem.penalties import CornerRounded1Norm, LogSquare
from ..solvers.lower import solve_lower_level
from ..util.validation import as_float_array, check_count, check_flag, positive_scalar

__all__ = [
    "TEST_PATCHES",
    "LOSS_NAMES",
    "loss_comparison",
    "inpainting_case",
    "scores",
    "penalty_comparison",
    "smallest_hessian_eigenvalues",
]

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

#: the wider β0 grid of :func:`penalty_comparison` (a small ε of log(1 + z²/ε²) wants a small β0)
PENALTY_BETA0_GRID = tuple(np.round(np.arange(-10.0, -0.99, 0.5), 2))

#: the scales ε of log(1 + z²/ε²) that :func:`penalty_comparison` tries (the best β0-grid loss wins)
LOG_EPS_GRID = (0.005, 0.01, 0.02, 0.05)


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


def smallest_hessian_eigenvalues(cost: LowerLevelCost, params: Hyperparameters, x, *, tol: float = 1e-6) -> np.ndarray:
    """The smallest eigenvalue of ∇ₓₓΦ(x_j; γ) for each image j of the batch x.

    Φ is separable over the batch, so each image's Hessian is a block of its own; its smallest
    eigenvalue is found by scipy's Lanczos ``eigsh`` (``which="SA"``, relative tolerance ``tol``)
    on a :class:`scipy.sparse.linalg.LinearOperator` of the library's Hessian product
    (:meth:`~bilevel_lib.problem.cost.LowerLevelCost.hessian_operator`).  A positive value at a
    stationary point x̂ says x̂ is a strict local minimiser and the implicit function theorem gives
    the derivative of x̂(γ) used by the hypergradient; a negative one says x̂ is a saddle point.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    if not isinstance(params, Hyperparameters):
        raise TypeError(f"params must be Hyperparameters; got {type(params).__name__}")
    x = cost.check_x(x)
    tol = positive_scalar(tol, "tol")
    hessian = cost.hessian_operator(x, params, method="implicit")
    shape, n = x.shape[1:], int(np.prod(x.shape[1:]))
    out = np.empty(x.shape[0])
    for j in range(x.shape[0]):

        def product(v, j=j):
            batch = np.zeros(x.shape)
            batch[j] = np.reshape(v, shape)
            return hessian(batch)[j].ravel()

        operator = LinearOperator((n, n), matvec=product, dtype=np.float64)
        start = np.random.default_rng(j).standard_normal(n)
        out[j] = eigsh(operator, k=1, which="SA", tol=tol, v0=start, return_eigenvectors=False)[0]
    return out


def _train_until_refused(cost, start, loss, parts, n_steps, optimizer, lower_iterations, progress):
    """:func:`~bilevel_lib.training.loops.train_double_loop` with the implicit estimator, stopped
    at the first step whose CG solve meets non-positive curvature; returns (γ reached, the losses
    of the steps taken, None or {"step", "message"})."""
    from ..hypergrad.implicit import implicit_hypergradient
    from ..training.loops import train_double_loop

    reached, losses = [], []

    def estimator(cost, params, loss, **settings):
        reached.append(params)
        result = implicit_hypergradient(cost, params, loss, **settings)
        losses.append(float(result.loss))
        return result

    # the settings train_double_loop gives the implicit estimator for a fixed T
    settings = dict(lower_tol=None, lower_max_iter=lower_iterations, cg_tol=1e-3, cg_relative_to="initial")
    settings.update(cg_max_iter=500, warn=False)
    try:
        run = train_double_loop(
            cost,
            start,
            loss,
            parts=parts,
            n_steps=n_steps,
            optimizer=optimizer,
            estimator=estimator,
            estimator_settings=settings,
            progress=progress,
        )
    except ValueError as error:
        if "not positive definite" not in str(error) or not losses:
            raise
        return reached[-1], losses, dict(step=len(reached) - 1, message=str(error))
    return run.params, list(run.history.loss), None


def penalty_comparison(
    *,
    log_eps_grid=LOG_EPS_GRID,
    filter_size: int = 5,
    n_steps: int = 600,
    lower_iterations: int = 10,
    lr: float = 0.02,
    sigma: float = 25 / 255,
    size: int | None = None,
    noise_seed: int = 0,
    filters: bool = True,
    filter_lr=(0.001, 0.005),
    filter_lower_iterations: int = 50,
    progress: bool = False,
) -> dict:
    """Learn the strengths β_k of a fixed DCT bank with a convex and a non-convex penalty φ, and
    (``filters``) the filters too.

    The setting of :func:`loss_comparison` with the squared error as ℓ: the three cameraman
    training patches (cropped to ``size`` if given), σ = 25/255, the non-constant DCT bank of side
    ``filter_size``, held-out :data:`TEST_PATCHES` with new noise.  The penalties are CR1N with
    ε = 0.01 and log(1 + z²/ε²) with the ε of ``log_eps_grid`` whose best β0 on
    ``PENALTY_BETA0_GRID`` (β0 from −10 to −1 in steps of 0.5) has the lowest training loss.  Each
    then trains β with Adam (rate ``lr``) for ``n_steps`` steps of T = ``lower_iterations``
    warm-started OGM iterations from its own tuned β0 and β = 0.  With ``filters`` (the default)
    each penalty also trains β and the filters together from the same start, for the same number
    of steps, with Adam at each rate of ``filter_lr`` (a rate or a sequence of rates; the filter
    taps need a smaller step than β) and T = ``filter_lower_iterations``: the runs "CR1N filters"
    and "log filters" at the first rate, "CR1N filters lr=<rate>" and so on at the others.  They
    are the other half of the review's claim (Sec. 6), learned filters with a convex penalty
    against fixed filters with a non-convex one.  (With T = 10 the log penalty's filter run meets
    non-positive curvature within two steps; T = 50 takes it further.)

    A run whose CG solve meets a direction of non-positive curvature (the Hessian of Φ at the
    inexact x̂ is not positive definite, so (4.8) does not apply there) stops at that step and
    keeps the γ it had reached; ``stopped`` records the step and the message.  Only the log
    penalty can stop so: with CR1N, Φ is strongly convex.

    Φ is non-convex with the log penalty, so the lower level may have several minimisers and
    stationary points that are not minimisers.  At the final γ of each penalty the result reports,
    for the tight training and test reconstructions, the smallest eigenvalue of ∇ₓₓΦ
    (:func:`smallest_hessian_eigenvalues`), the fraction of filter responses in the concave part
    of φ (responses z with ``|z| > ε`` for the log penalty), and how far a second solve started
    from the constant mean image ends from the first (started at y), in relative norm.  If a CG
    solve of the training meets a direction of non-positive curvature it raises ``ValueError``
    (see :func:`~bilevel_lib.solvers.cg.conjugate_gradient`) and the run stops.

    Returns
    -------
    dict
        ``penalties`` (the two penalty names), ``runs`` (run name → its penalty: "CR1N" and "log"
        learn β, "CR1N filters" and "log filters" β and the filters), ``eps`` (penalty → ε),
        ``eps_search`` (ε → best training loss on the β0 grid), ``start`` (penalty → the tuned γ
        every run of that penalty starts from), ``params`` (run → γ after training), ``history``
        (run → loss per step, normalised by its first value), ``train`` and ``test`` (run →
        :func:`scores`; ``"<penalty> start"`` for the tuned start), ``hessian_min`` (run →
        {"train", "test"} arrays of the smallest eigenvalues), ``concave_fraction``,
        ``start_spread`` (run → relative distance of the two starts' test solutions),
        ``test_truth``, ``test_noisy``, ``test_x``, ``settings``, ``seconds`` (run → training
        time), ``stopped`` (run → None, or {"step", "message"} for a run stopped by CG's refusal),
        ``seconds_total``.
    """
    from ..training.optimizers import Adam
    from ..training.tuning import grid_search_beta0

    if isinstance(log_eps_grid, str) or not hasattr(log_eps_grid, "__iter__"):
        raise TypeError(f"log_eps_grid must be a sequence of positive scales ε; got {log_eps_grid!r}")
    log_eps_grid = tuple(positive_scalar(e, "log_eps_grid") for e in log_eps_grid)
    if not log_eps_grid:
        raise ValueError("log_eps_grid must hold at least one positive scale ε; got an empty sequence")
    n_steps, lower_iterations, lr, size, noise_seed, progress = _check_common(
        n_steps, lower_iterations, lr, size, noise_seed, progress
    )
    sigma = positive_scalar(sigma, "sigma")
    filters = check_flag(filters, "filters")
    rates = (filter_lr,) if np.ndim(filter_lr) == 0 and not isinstance(filter_lr, str) else filter_lr
    if isinstance(rates, str) or not hasattr(rates, "__iter__"):
        raise TypeError(f"filter_lr must be a positive rate or a sequence of them; got {filter_lr!r}")
    rates = tuple(positive_scalar(rate, "filter_lr") for rate in rates)
    if not rates or len(set(rates)) != len(rates):
        raise ValueError(f"filter_lr must hold one or more distinct positive rates; got {filter_lr!r}")
    filter_lower_iterations = check_count(filter_lower_iterations, "filter_lower_iterations")
    bank = _bank(filter_size)
    start_time = time.perf_counter()
    truth = _crop(data.cameraman_patches(), size)
    test_truth = _crop(data.cameraman_patches(TEST_PATCHES), size)
    y = data.add_noise(truth, sigma, rng=noise_seed)
    test_y = data.add_noise(test_truth, sigma, rng=noise_seed + 1)
    loss = SquaredErrorLoss(truth)

    def tuned(penalty):
        search = grid_search_beta0(LowerLevelCost(y, penalty), bank, loss, PENALTY_BETA0_GRID, lower_tol=1e-6)
        return search.best, float(search.best_loss)

    eps_search, best = {}, None
    for eps in log_eps_grid:
        params, value = tuned(LogSquare(eps))
        eps_search[eps] = value
        if best is None or value < best[2]:
            best = (eps, params, value)
    penalties = {"CR1N": (0.01, CornerRounded1Norm(0.01), tuned(CornerRounded1Norm(0.01))[0])}
    penalties["log"] = (best[0], LogSquare(best[0]), best[1])
    # run name → (penalty, parts learned, Adam's rate)
    runs = {name: (name, ("beta",), lr, lower_iterations) for name in penalties}
    if filters:
        for name in penalties:
            for rate in rates:
                run = f"{name} filters" + ("" if rate == rates[0] else f" lr={rate:g}")
                runs[run] = (name, ("beta", "filters"), rate, filter_lower_iterations)
    out = dict(penalties=tuple(penalties), runs={run: spec[0] for run, spec in runs.items()})
    out.update(eps={}, eps_search=eps_search, start={}, params={}, history={}, stopped={})
    out.update(train={}, test={}, test_x={}, hessian_min={}, concave_fraction={}, start_spread={}, seconds={})
    for name, (eps, penalty, start) in penalties.items():
        cost, test_cost = LowerLevelCost(y, penalty), LowerLevelCost(test_y, penalty)
        out["eps"][name], out["start"][name] = eps, start
        out["train"][f"{name} start"] = scores(_solve(cost, start), truth)
        out["test"][f"{name} start"] = scores(_solve(test_cost, start), test_truth)
    for name, (penalty_name, parts, rate, T) in runs.items():
        eps, penalty, start = penalties[penalty_name]
        cost, test_cost = LowerLevelCost(y, penalty), LowerLevelCost(test_y, penalty)
        tic = time.perf_counter()
        gamma, losses, out["stopped"][name] = _train_until_refused(
            cost, start, loss, parts, n_steps, Adam(rate), T, progress
        )
        out["seconds"][name] = time.perf_counter() - tic
        out["params"][name] = gamma
        out["history"][name] = np.asarray(losses) / losses[0]
        x_train, x_test = _solve(cost, gamma, tol=1e-8), _solve(test_cost, gamma, tol=1e-8)
        out["train"][name], out["test"][name] = scores(x_train, truth), scores(x_test, test_truth)
        out["test_x"][name] = x_test
        out["hessian_min"][name] = dict(
            train=smallest_hessian_eigenvalues(cost, gamma, x_train),
            test=smallest_hessian_eigenvalues(test_cost, gamma, x_test),
        )
        responses = test_cost.operator(gamma).forward(x_test)
        concave = isinstance(penalty, LogSquare)
        out["concave_fraction"][name] = float(np.mean(np.abs(responses) > eps)) if concave else 0.0
        flat = np.broadcast_to(test_y.mean(axis=(1, 2), keepdims=True), test_y.shape).copy()
        other = solve_lower_level(test_cost, gamma, x0=flat, tol=1e-8, max_iter=50_000).x
        out["start_spread"][name] = float(np.linalg.norm(other - x_test) / np.linalg.norm(x_test))
    out.update(
        test_truth=test_truth,
        test_noisy=test_y,
        noisy_scores=scores(test_y, test_truth),
        settings=dict(
            log_eps_grid=list(log_eps_grid),
            filter_size=int(bank.filters.shape[-1]),
            n_steps=n_steps,
            lower_iterations=lower_iterations,
            lr=lr,
            filters=filters,
            filter_lr=list(rates),
            filter_lower_iterations=filter_lower_iterations,
            sigma=sigma,
            size=size,
            noise_seed=noise_seed,
            eps=dict(out["eps"]),
            beta0={name: float(p.beta0) for name, p in out["start"].items()},
        ),
        seconds_total=time.perf_counter() - start_time,
    )
    return out
