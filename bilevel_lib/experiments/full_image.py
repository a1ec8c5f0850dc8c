"""The whole 512×512 cameraman image, denoised by the learned regularisers, tuned TV and BM3D (review Fig. 6.2).

The review tests the γ learned on three 50×50 patches on the whole noisy cameraman image and
quotes BM3D as the reference.  :func:`full_image_case` repeats that test: one noise draw of the
training σ (:data:`~bilevel_lib.experiments.recipes.CAMERAMAN_SIGMA`) on the whole image, denoised by

* the learned strengths of the DCT bank (the saved run ``cameraman-beta``),
* the learned filters and strengths (the saved run ``cameraman-filters``),
* smoothed total variation (two finite differences, CR1N with ε = 0.01) with β0 tuned on a grid
  against the clean image, which favours TV, and
* BM3D (the ``bm3d`` package, given the true σ; optional, see :func:`require_bm3d`),

each scored by SNR and PSNR (peak 1) against the clean image.  The lower-level problems are
solved by OGM to ‖∇ₓΦ‖/√N < ``tol``; a solve that stops at its budget is an error naming it
(unless ``allow_unconverged``), since a figure of merit at an unfinished x̂ would describe the
budget rather than the regulariser.

The five images are stored as 16-bit integers over :data:`QUANT_RANGE` (:func:`quantise`,
:func:`dequantise`, :func:`stored_images`), a quarter of the size of float64, at a step of
about 3e-5, far below what a figure or a figure of merit resolves; the figures of merit are
computed from the float images before they are quantised.  Command line:
``python -m bilevel_lib cameraman-full``; the chapter "Case studies" loads its result.
"""

from __future__ import annotations

import time

import numpy as np

from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.filters import finite_differences
from ..problem.metrics import psnr_db, snr_db
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..solvers.lower import solve_lower_level
from ..util.progress import progress_bar
from ..util.validation import as_float_array, check_count, check_flag, check_real
from .recipes import CAMERAMAN_SIGMA

__all__ = [
    "QUANT_RANGE",
    "METHODS",
    "TV_BETA0_GRID",
    "BM3D_INSTALL",
    "full_image_case",
    "require_bm3d",
    "quantise",
    "dequantise",
    "stored_images",
]

#: The interval of values that the stored images keep, quantised to 65,536 levels
QUANT_RANGE = (-0.5, 1.5)

#: The results of the comparison, by key (as stored), with the label the book shows
METHODS = {"noisy": "noisy", "beta": "β only", "filters": "filters + β", "tv": "TV", "bm3d": "BM3D"}

#: The β0 grid of the TV baseline, from −4 to −2 in steps of 0.25
TV_BETA0_GRID = tuple(float(b) for b in np.round(np.arange(-4.0, -1.99, 0.25), 2))

#: The command that installs the pinned BM3D package (also in requirements-dev.txt)
BM3D_INSTALL = "pip install bm3d==4.0.3"

_LEVELS = np.iinfo(np.uint16).max


def require_bm3d():
    """The ``bm3d`` module, or an ``ImportError`` that gives the command installing it.

    BM3D is a development dependency (``requirements-dev.txt``), not one of the book's: the book
    only loads the saved result.  The command line calls this before any work.
    """
    try:
        import bm3d
    except ImportError as error:
        raise ImportError(
            f"BM3D needs the bm3d package, which is not installed ({error}); install it with "
            f"{BM3D_INSTALL}, or leave BM3D out (bm3d=False; on the command line --no-bm3d)"
        ) from None
    return bm3d


def _check_range(value_range) -> tuple[float, float]:
    if isinstance(value_range, (str, bytes)) or not hasattr(value_range, "__len__") or len(value_range) != 2:
        raise TypeError(f"value_range must be a pair (low, high); got {value_range!r}")
    low = check_real(value_range[0], "value_range[0]")
    high = check_real(value_range[1], "value_range[1]")
    if not low < high:
        raise ValueError(f"value_range must have low < high; got {value_range!r}")
    return low, high


def quantise(images, *, value_range=QUANT_RANGE, clip: bool = False) -> np.ndarray:
    """Images as ``uint16``: 65,536 equal steps over ``value_range`` (default :data:`QUANT_RANGE`).

    Parameters
    ----------
    images : array of any shape
        Real, finite values.
    value_range : pair of floats
        (low, high): low maps to 0 and high to 65535; the step is (high − low)/65535.
    clip : bool
        Whether values outside ``value_range`` are clipped to it; by default they are an error
        (a clipped pixel would come back wrong by more than a step).

    Returns
    -------
    array of uint16, the shape of ``images``
        :func:`dequantise` gives each value back within half a step.
    """
    images = as_float_array(images, "images")
    low, high = _check_range(value_range)
    clip = check_flag(clip, "clip")
    outside = int(np.count_nonzero((images < low) | (images > high)))
    if outside and not clip:
        raise ValueError(
            f"images must lie in value_range [{low:g}, {high:g}]; {outside} value(s) lie outside "
            f"(from {images.min():.4g} to {images.max():.4g}); pass clip=True to clip them"
        )
    scaled = (np.clip(images, low, high) - low) * (_LEVELS / (high - low))
    return np.rint(scaled).astype(np.uint16)


def dequantise(codes, *, value_range=QUANT_RANGE) -> np.ndarray:
    """The float64 values of the ``uint16`` codes of :func:`quantise` over the same ``value_range``."""
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint16:
        what = f"a {codes.dtype} array" if isinstance(codes, np.ndarray) else type(codes).__name__
        raise TypeError(f"codes must be a uint16 array (from quantise); got {what}")
    low, high = _check_range(value_range)
    return low + codes.astype(np.float64) * ((high - low) / _LEVELS)


def stored_images(stored) -> dict:
    """The float images of a saved ``cameraman-full`` result (a :class:`~bilevel_lib.experiments.store.StoredResult`).

    Returns a dict key → 2-D float64 image, for the keys of :data:`METHODS` that the result holds
    (``bm3d`` is absent from a run without BM3D), dequantised over the result's own range.
    """
    arrays = getattr(stored, "arrays", None)
    record = getattr(stored, "record", None)
    if not isinstance(arrays, dict) or not isinstance(record, dict):
        raise TypeError(f"stored must be a StoredResult (from store.load); got {type(stored).__name__}")
    if record.get("kind") != "cameraman-full":
        raise ValueError(f"stored must be a result of cameraman-full; got one of kind {record.get('kind')!r}")
    value_range = tuple(record["settings"]["quant_range"])
    return {key: dequantise(arrays[key], value_range=value_range) for key in METHODS if key in arrays}


def _learned(source, name: str) -> Hyperparameters:
    from .store import ResultError, load_result

    try:
        return load_result(source).params
    except (TypeError, ResultError) as error:
        raise type(error)(f"{name}: {error}") from None


def _image(image) -> np.ndarray:
    if image is None:
        return data.cameraman()
    image = as_float_array(image, "image", ndim=2)
    if min(image.shape) < 16:
        raise ValueError(f"image must be at least 16×16 (the filters are 7×7); got shape {image.shape}")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(
            f"image must hold values in [0, 1] (the PSNR's peak is 1); got {image.min():.4g} to {image.max():.4g}"
        )
    return image


def full_image_case(
    *,
    image=None,
    seed: int = 0,
    tol: float = 1e-5,
    max_iter: int = 1500,
    tv_grid=TV_BETA0_GRID,
    bm3d: bool = True,
    beta_result="cameraman-beta",
    filters_result="cameraman-filters",
    allow_unconverged: bool = False,
    progress: bool = False,
) -> dict:
    """Denoise one noisy copy of a whole image with the learned γ, tuned TV and BM3D (review Fig. 6.2).

    Parameters
    ----------
    image : array (rows, cols), optional
        The clean image, values in [0, 1], at least 16×16; default the whole 512×512
        :func:`~bilevel_lib.problem.data.cameraman`.
    seed : int
        Seed of the noise, N(0, σ²) with the training σ, :data:`~bilevel_lib.experiments.recipes.CAMERAMAN_SIGMA`;
        every method denoises the same noisy image.
    tol, max_iter : float, int
        Each lower-level solve runs OGM until ‖∇ₓΦ‖/√N < ``tol``, at most ``max_iter`` iterations.
    tv_grid : sequence of floats
        The β0 values tried for TV (increasing order is the cheapest: each solve is warm-started
        from the one before); the one with the smallest squared error against ``image`` wins.
    bm3d : bool
        Whether to run BM3D (``bm3d.bm3d(noisy, sigma_psd=σ)``); needs the ``bm3d`` package
        (:func:`require_bm3d`).
    beta_result, filters_result : str or path
        The saved training runs whose γ are applied (names in ``results/`` or paths), loaded by
        :func:`~bilevel_lib.experiments.store.load_result`.
    allow_unconverged : bool
        Report a lower-level solve that stops at ``max_iter`` (``converged``) instead of raising.
    progress : bool
        Show a progress bar (one step per solve).

    Returns
    -------
    dict
        ``truth`` (the clean image), ``images`` (key of :data:`METHODS` → 2-D float image),
        ``snr`` and ``psnr`` (key → dB), ``iterations``, ``gradient_norm`` and ``converged`` (for
        ``beta``, ``filters``, ``tv``: OGM iterations of the final solve, its ‖∇ₓΦ‖/√N, whether it
        reached ``tol``), ``tv_beta0`` (the chosen β0), ``tv_grid`` with ``tv_grid_snr``,
        ``tv_grid_iterations`` and ``tv_grid_converged`` (one entry per β0), ``seconds`` (key → run
        time; ``tv`` includes its grid), ``seconds_total`` and ``settings``.

    Raises
    ------
    RuntimeError
        A lower-level solve did not reach ``tol`` in ``max_iter`` iterations (unless
        ``allow_unconverged``); the message names the method.
    ImportError
        ``bm3d`` is true and the ``bm3d`` package is missing.

    Notes
    -----
    The solves are warm-started in turn: TV from the previous grid point, the learned strengths
    from the TV solution, the learned filters from that of the strengths; only the iteration
    counts depend on this.  Introduced in Ch. "Case studies".
    """
    seed = check_count(seed, "seed", minimum=0)
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_count(max_iter, "max_iter")
    if isinstance(tv_grid, (str, bytes)):
        raise TypeError(f"tv_grid must be a sequence of β0 values; got {tv_grid!r}")
    tv_grid = as_float_array(tv_grid, "tv_grid", ndim=1)
    if tv_grid.size == 0:
        raise ValueError("tv_grid must hold at least one β0 value; got an empty sequence")
    bm3d, allow_unconverged, progress = (
        check_flag(bm3d, "bm3d"),
        check_flag(allow_unconverged, "allow_unconverged"),
        check_flag(progress, "progress"),
    )
    bm3d_module = require_bm3d() if bm3d else None
    truth = _image(image)
    learned = {"beta": _learned(beta_result, "beta_result"), "filters": _learned(filters_result, "filters_result")}
    start_time = time.perf_counter()
    sigma = CAMERAMAN_SIGMA
    noisy = data.add_noise(truth, sigma, rng=seed)
    cost = LowerLevelCost(noisy[None], CornerRounded1Norm(0.01))
    images, seconds = {"noisy": noisy}, {}
    iterations, gradient_norm, converged = {}, {}, {}

    def solve(label: str, params: Hyperparameters, x0):
        result = solve_lower_level(cost, params, x0=x0, tol=tol, max_iter=max_iter, warn=False)
        if not result.converged and not allow_unconverged:
            raise RuntimeError(
                f"full_image_case: the lower-level solve of {label} (OGM) stopped at max_iter = {max_iter} "
                f"with ‖∇Φ‖/√N = {float(np.max(result.gradient_norm)):.2e}, not below tol = {tol:g}; "
                "raise max_iter (--max-iter) or pass allow_unconverged=True"
            )
        return result

    tv_start = Hyperparameters.from_filters(finite_differences(2))
    total = tv_grid.size + 2 + bm3d
    with progress_bar(total, progress, "cameraman-full") as bar:
        tic = time.perf_counter()
        x, grid_snr, grid_iterations, grid_converged, best = None, [], [], [], None
        for beta0 in tv_grid:
            result = solve(f"TV (β0 = {beta0:g})", Hyperparameters(beta0, tv_start.beta, tv_start.filters), x)
            x = result.x
            grid_snr.append(float(snr_db(x[0], truth)))
            grid_iterations.append(result.iterations)
            grid_converged.append(bool(result.converged))
            if best is None or grid_snr[-1] > best[0]:  # the largest SNR is the smallest squared error
                best = (grid_snr[-1], float(beta0), result)
            bar.update(1)
        _, tv_beta0, tv = best
        seconds["tv"] = time.perf_counter() - tic
        finals, x = {"tv": tv}, tv.x
        for key in ("beta", "filters"):
            tic = time.perf_counter()
            finals[key] = solve(METHODS[key], learned[key], x)
            seconds[key] = time.perf_counter() - tic
            x = finals[key].x
            bar.update(1)
        for key, result in finals.items():
            images[key] = result.x[0]
            iterations[key], converged[key] = result.iterations, bool(result.converged)
            gradient_norm[key] = float(np.max(result.gradient_norm))
        if bm3d:
            tic = time.perf_counter()
            denoised = np.asarray(bm3d_module.bm3d(noisy, sigma_psd=sigma), dtype=np.float64).reshape(noisy.shape)
            seconds["bm3d"] = time.perf_counter() - tic
            if not np.all(np.isfinite(denoised)):
                raise RuntimeError("full_image_case: BM3D returned NaN or infinite values")
            images["bm3d"] = denoised
            bar.update(1)
    images = {key: images[key] for key in METHODS if key in images}
    return dict(
        truth=truth,
        images=images,
        snr={key: float(snr_db(value, truth)) for key, value in images.items()},
        psnr={key: float(psnr_db(value, truth, data_range=1.0)) for key, value in images.items()},
        iterations=iterations,
        gradient_norm=gradient_norm,
        converged=converged,
        tv_beta0=tv_beta0,
        tv_grid=tv_grid,
        tv_grid_snr=np.array(grid_snr),
        tv_grid_iterations=np.array(grid_iterations),
        tv_grid_converged=np.array(grid_converged),
        seconds=seconds,
        seconds_total=time.perf_counter() - start_time,
        settings=dict(
            shape=list(truth.shape),
            whole_cameraman=image is None,
            sigma=sigma,
            seed=seed,
            tol=tol,
            max_iter=max_iter,
            tv_grid=tv_grid.tolist(),
            bm3d=bm3d,
            eps=0.01,
            beta_result=str(beta_result),
            filters_result=str(filters_result),
            allow_unconverged=allow_unconverged,
        ),
    )
