"""Training data for the running example: synthetic signals, test images and noise.

All randomness goes through an explicit seed or ``numpy.random.Generator``; the same seed gives
the same data.  Test images come from installed packages (scikit-image ships ``camera.png``), so
nothing is downloaded.  Introduced in the chapter "The running example".
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..util.validation import as_float_array, check_count, check_generator, check_real

__all__ = [
    "piecewise_constant_1d",
    "dct_sparse_1d",
    "vertical_bars",
    "cameraman",
    "cameraman_patches",
    "CAMERAMAN_PATCHES",
    "add_noise",
]

#: Row and column ranges of the three 50×50 training patches of App. D.2 (0-based, end exclusive);
#: the review's 1-based ranges are 311:360 × 221:270, 221:270 × 371:420 and 101:150 × 251:300.
CAMERAMAN_PATCHES = (
    (slice(310, 360), slice(220, 270)),
    (slice(220, 270), slice(370, 420)),
    (slice(100, 150), slice(250, 300)),
)


def piecewise_constant_1d(n: int, n_signals: int, rng, n_jumps: int = 4, amplitude: float = 1.0) -> np.ndarray:
    """Piecewise-constant signals of length n with ``n_jumps`` jumps at random places.

    Levels are uniform in [−amplitude, amplitude].  Returns shape (n_signals, n).
    """
    n, n_signals = check_count(n, "n", minimum=2), check_count(n_signals, "n_signals")
    n_jumps = check_count(n_jumps, "n_jumps", minimum=0)
    amplitude = check_real(amplitude, "amplitude", low=0.0)
    if not n_jumps < n:
        raise ValueError(
            f"need n ≥ 2, n_signals ≥ 1 and 0 ≤ n_jumps < n; got n={n}, n_signals={n_signals}, n_jumps={n_jumps}"
        )
    rng = check_generator(rng, "rng")
    # choose jump positions without replacement per signal, vectorised by ranking random keys
    keys = rng.random((n_signals, n - 1))
    jump_at = np.argsort(keys, axis=1)[:, :n_jumps] + 1  # positions 1..n-1
    jumps = np.zeros((n_signals, n), dtype=int)
    np.put_along_axis(jumps, jump_at, 1, axis=1)
    segment = np.cumsum(jumps, axis=1)  # segment index per sample
    levels = rng.uniform(-amplitude, amplitude, size=(n_signals, n_jumps + 1))
    return np.take_along_axis(levels, segment, axis=1)


def dct_sparse_1d(n: int, n_signals: int, rng, sparsity: int = 5, amplitude: float = 1.0) -> np.ndarray:
    """Signals with exactly ``sparsity`` non-zero orthonormal DCT-II coefficients (Gaussian values).

    Returns shape (n_signals, n).
    """
    n, n_signals = check_count(n, "n"), check_count(n_signals, "n_signals")
    sparsity = check_count(sparsity, "sparsity")
    amplitude = check_real(amplitude, "amplitude", low=0.0)
    if not 1 <= sparsity <= n:
        raise ValueError(f"sparsity must be between 1 and n={n}; got {sparsity}")
    rng = check_generator(rng, "rng")
    coefficients = np.zeros((n_signals, n))
    support = np.argsort(rng.random((n_signals, n)), axis=1)[:, :sparsity]
    np.put_along_axis(coefficients, support, amplitude * rng.standard_normal((n_signals, sparsity)), axis=1)
    return sfft.idct(coefficients, norm="ortho", axis=1)


def vertical_bars(shape=(32, 32), period: int = 4) -> np.ndarray:
    """The training image of the review's Fig. 1.3 (App. D.1).

    Every ``period``-th column, starting with the first, is 1, the others 0, then the mean is
    removed: columns 0.75, −0.25, −0.25, −0.25 repeating for period 4 (the authors' script,
    ``xtrue[:, 1:4:end] .= 1``; the phase matters only with their noise, see
    :func:`~bilevel_lib.experiments.recipes.vertical_bars_draws`).  For 32×32, ‖x‖² = 192.
    """
    try:
        rows, cols = shape
    except (TypeError, ValueError) as err:
        raise TypeError(f"shape must be a pair (rows, columns) of positive integers; got {shape!r}") from err
    rows, cols = check_count(rows, "shape[0] (rows)"), check_count(cols, "shape[1] (columns)")
    period = check_count(period, "period")
    if cols % period:
        raise ValueError(f"the number of columns ({cols}) must be a multiple of the period ({period})")
    image = np.zeros((rows, cols))
    image[:, ::period] = 1.0
    return image - image.mean()


def cameraman() -> np.ndarray:
    """The 512×512 ``skimage.data.camera()`` image, scaled to [0, 1] (float64).

    Since scikit-image 0.18 this is a newer, freely licensed photograph of a photographer, not the
    classic "cameraman" test image the review used: the review's patch coordinates therefore cut
    different content, and its numbers on the full image (e.g. BM3D's 26.87 dB) are not comparable.
    Needs scikit-image (the ``book`` extra, ``pip install -e .[book]``).
    """
    from skimage import data as skdata

    return skdata.camera().astype(np.float64) / 255.0


def cameraman_patches(patches=CAMERAMAN_PATCHES) -> np.ndarray:
    """The three 50×50 cameraman training patches of App. D.2, shape (3, 50, 50), values in [0, 1]."""
    if isinstance(patches, (str, bytes)) or not hasattr(patches, "__len__") or len(patches) == 0:
        raise TypeError(f"patches must be a non-empty sequence of (rows, cols) slice pairs; got {patches!r}")
    image = cameraman()
    cut = []
    for patch in patches:
        if not (isinstance(patch, tuple) and len(patch) == 2 and all(isinstance(s, slice) for s in patch)):
            raise TypeError(f"patches must hold (rows, cols) pairs of slices; got {patch!r}")
        rows, cols = patch
        for axis, (part, size) in enumerate(zip(patch, image.shape)):
            start, stop, step = part.indices(size)
            if part.start is not None and not -size <= part.start < size or part.stop is not None and part.stop > size:
                raise ValueError(f"patches must lie inside the {image.shape} image; got {part} on axis {axis}")
            if len(range(start, stop, step)) == 0:
                raise ValueError(f"patches must not be empty; got {part} on axis {axis}")
        cut.append(image[rows, cols])
    return np.stack(cut)


def add_noise(x, sigma: float, rng) -> np.ndarray:
    """x + n with n ~ N(0, σ² I), drawn from ``rng`` (a seed or Generator)."""
    x = as_float_array(x, "x")
    sigma = check_real(sigma, "sigma", low=0.0)
    rng = check_generator(rng, "rng")
    return x + sigma * rng.standard_normal(x.shape)
