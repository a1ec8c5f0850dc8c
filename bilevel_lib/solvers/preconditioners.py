"""Preconditioners M ≈ ∇ₓₓΦ for the Hessian system ∇ₓₓΦ q = ∇ₓℓ (review eq. 4.10).

Pass one to :func:`~bilevel_lib.solvers.cg.conjugate_gradient` (``preconditioner=``) or name it in
:func:`~bilevel_lib.hypergrad.implicit.implicit_hypergradient` (``cg_preconditioner=``).  Each is a
callable r -> M⁻¹ r on batches of shape ``(J, *signal)``, one independent block per image, built from
a :class:`~bilevel_lib.problem.cost.HessianOperator` by ``from_hessian``:

* :class:`CirculantPreconditioner` (``"circulant"``): T. Chan's optimal circulant approximation
  of each term of eq. 4.10, inverted by FFT.  Cheap (one real FFT pair per application, at any
  size) and strong when the curvature φ̈.(C_k x) is nearly uniform over the image (a smooth,
  strongly regularised x̂): measured 2–10× fewer CG iterations there (e.g. finite differences,
  β0 = 0, ε = 0.1 on a 24×24 crop: 78 → 10).  When φ̈ varies by orders of magnitude (small ε,
  many edges, e.g. ε = 0.01, β0 = −2.5 with random 3×3 filters) it can need *more* iterations
  than plain CG (61 → 77 at 32×32).  With many filters the average over k evens this out: on the
  cameraman case (48 DCT 7×7 filters, ε = 0.01, three 50×50 patches, at the β the 10,000-step run
  ends with) it needs 13 iterations where plain CG needs 61 (to 10⁻⁸) and 5 instead of 24 at the
  recipe's 10⁻³ of a warm start, which is why :func:`~bilevel_lib.experiments.recipes.cameraman_case`
  uses it (``tests/lib/test_cg.py``).
* :class:`BandedCholesky` (``"cholesky"``): the exact Hessian, assembled as a sparse matrix,
  reordered to a narrow band and factorised by LAPACK; CG then stops after the one iteration that
  checks the residual.  The factorisation costs about N·b² for a bandwidth b ≈ 2(f − 1)·n on an
  n×n image with f×f filters (b = 2(f − 1) on 1-D signals): cheap for 1-D signals and small
  images (16×16 with 3×3 filters: 0.2 ms), about one plain CG solve in Python at 32×32 (1.3 ms),
  out of reach for large images (it refuses bands of more than 2^27 numbers).

Both change how fast CG converges, never where to: CG's stopping test is on the true residual.
With a preconditioner CG runs its Python loop; without one, on small 1-D and 2-D problems, it
runs a compiled loop (:mod:`bilevel_lib.problem.stencil`) that is faster than either here (32×32 with
four 3×3 filters, whole gradient step: 0.7–0.8 ms plain, 2.4–2.6 ms with the banded Cholesky,
4.6–4.7 ms circulant; ``benchmarks/bench_single_level.py``).  They are kept for problems where
the compiled loop does not apply (blur, 3-D signals) and as a documented negative result.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla

from ..problem.forward_models import Identity, PixelMask

__all__ = ["CirculantPreconditioner", "BandedCholesky", "PRECONDITIONERS", "make_preconditioner"]


def _positive_finite(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite; got NaN or infinite entries")
    if not np.all(values > 0):
        raise ValueError(f"{name} must be positive (M symmetric positive definite); smallest is {values.min():.3g}")
    return values


class CirculantPreconditioner:
    """M⁻¹ r by FFT for a circulant M_j per image, given by its eigenvalues (its real-FFT spectrum).

    :meth:`from_hessian` builds T. Chan's optimal circulant approximation of eq. 4.10, term by
    term: the circulant nearest in Frobenius norm to C_k' diag(d) C_k is mean(d)·C_k'C_k, so::

        M_j = circ(A'A) + Σ_k w_k mean_i(φ̈.(C_k x_j)) C_k'C_k,
        eigenvalues  λ_j(ω) = a(ω) + Σ_k w_k mean(φ̈_jk) |ĉ_k(ω)|²,

    with a(ω) = 1 for denoising, mean(mask) for inpainting and ``|ĥ(ω)|²`` for a circular blur.

    Parameters
    ----------
    eigenvalues : array ``(J, *rfft_shape)``
        The spectrum of M_j on the real-FFT grid of the signal (last axis n_d // 2 + 1); positive.
    signal_shape : tuple of int
        The shape of one signal.
    """

    def __init__(self, eigenvalues, signal_shape):
        self.signal_shape = tuple(int(n) for n in signal_shape)
        expected = self.signal_shape[:-1] + (self.signal_shape[-1] // 2 + 1,)
        eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        if eigenvalues.ndim != len(expected) + 1 or eigenvalues.shape[1:] != expected:
            raise ValueError(
                f"eigenvalues must have shape (J, *{expected}) for signals of shape "
                f"{self.signal_shape}; got {eigenvalues.shape}"
            )
        self.eigenvalues = _positive_finite(eigenvalues, "eigenvalues")
        self._axes = tuple(range(-len(self.signal_shape), 0))

    @classmethod
    def from_hessian(cls, hessian) -> CirculantPreconditioner:
        """T. Chan's circulant approximation of a :class:`~bilevel_lib.problem.cost.HessianOperator`."""
        signal_shape = hessian.shape[1:]
        axes = tuple(range(-len(signal_shape), 0))
        filter_power = hessian.filter_bank.power_spectra()  # (K, *rfft), kept by the operator
        mean_curvature = hessian.curvature.mean(axis=axes)  # (J, K)
        strength = mean_curvature * hessian.weights
        eigenvalues = np.tensordot(strength, filter_power, axes=1) + _circulant_gram(
            hessian.forward_model, signal_shape
        )
        return cls(eigenvalues, signal_shape)

    def __call__(self, r) -> np.ndarray:
        spectrum = sfft.rfftn(r, axes=self._axes)
        spectrum /= self.eigenvalues
        return sfft.irfftn(spectrum, s=self.signal_shape, axes=self._axes)


def _circulant_gram(forward_model, signal_shape) -> np.ndarray | float:
    """Spectrum of the optimal circulant approximation of A'A."""
    if isinstance(forward_model, Identity):
        return 1.0
    if isinstance(forward_model, PixelMask):
        return float(np.mean(forward_model.mask))  # the circulant nearest to diag(mask)
    # shift-invariant models (e.g. CircularBlur): A'A is circulant, its first column is A'A δ
    delta = np.zeros(signal_shape)
    delta[(0,) * len(signal_shape)] = 1.0
    column = forward_model.gram(delta[None])[0]
    return np.maximum(sfft.rfftn(column).real, 0.0)


def _folded(n: int) -> np.ndarray:
    """The order 0, n−1, 1, n−2, 2, …: circular neighbours at distance t end up at most 2t apart."""
    order = np.empty(n, dtype=np.int64)
    order[0::2] = np.arange((n + 1) // 2)
    order[1::2] = np.arange(n - 1, (n - 1) // 2, -1)
    return order


class BandedCholesky:
    """M⁻¹ r = H⁻¹ r exactly, for a sparse symmetric positive-definite H coupling only nearby pixels.

    Parameters
    ----------
    matrix : scipy sparse matrix, (J·N)×(J·N)
        Symmetric (only its lower triangle is read) and block diagonal over the J images, rows in
        C order of ``(J, *signal)``, e.g. :attr:`HessianOperator.matrix <bilevel_lib.problem.cost.HessianOperator.matrix>`.
    shape : tuple
        ``(J, *signal)``.
    reach : tuple of int
        Largest circular distance, per signal axis, between two coupled pixels (f − 1 for f-tap
        filters in the Hessian of eq. 4.10).

    Each circular axis is visited in the folded order 0, n−1, 1, n−2, … (so the wrap-around
    neighbours are adjacent) and the axes are nested so that the bandwidth b is smallest; the
    band is factorised once by LAPACK (``scipy.linalg.cholesky_banded``, about N·b² operations,
    (b + 1)·N numbers), and each application is two triangular band solves.
    """

    #: refuse bands that would take more numbers than this (8 bytes each)
    MAX_BAND_ENTRIES = 2**27

    def __init__(self, matrix, shape, reach):
        shape = tuple(int(n) for n in shape)
        signal_shape, n_images = shape[1:], shape[0]
        reach = tuple(int(t) for t in reach)
        if len(reach) != len(signal_shape) or any(t < 0 for t in reach):
            raise ValueError(
                f"reach must give one non-negative distance per signal axis of {signal_shape}; got {reach}"
            )
        n_pixels = int(np.prod(signal_shape))
        size = n_images * n_pixels
        if matrix.shape != (size, size):
            raise ValueError(f"matrix must be {size}×{size} for vectors of shape {shape}; got {matrix.shape}")
        self.shape = shape
        # the pixels (flat C-order indices) in banded order: axes nested as axes_order, each folded
        axes_order, self.bandwidth = self._best_axis_order(signal_shape, reach)
        grids = np.meshgrid(*[_folded(signal_shape[ax]) for ax in axes_order], indexing="ij")
        coordinates = [None] * len(signal_shape)
        for ax, grid in zip(axes_order, grids):
            coordinates[ax] = grid.ravel()
        pixel_at = np.ravel_multi_index(tuple(coordinates), signal_shape)
        entries = (self.bandwidth + 1) * size
        if entries > self.MAX_BAND_ENTRIES:
            raise ValueError(
                f"the banded Cholesky factor would hold {entries:,} numbers ({8 * entries / 1e9:.1f} GB, "
                f"bandwidth {self.bandwidth}); use plain or circulant-preconditioned CG for this size"
            )
        order = (pixel_at[None] + n_pixels * np.arange(n_images)[:, None]).ravel()  # order[k]: pixel at position k
        position = np.empty(size, dtype=np.int64)
        position[order] = np.arange(size)
        matrix = matrix.tocsr()
        rows = position[np.repeat(np.arange(size), np.diff(matrix.indptr))]
        cols = position[matrix.indices]
        lower = rows >= cols
        if np.any(rows - cols > self.bandwidth):
            raise ValueError("matrix couples pixels farther apart than reach allows")
        # band storage ab[i − j, j] = H[i, j] for i ≥ j; bincount also adds up duplicate entries
        band = np.bincount(
            (rows[lower] - cols[lower]) * size + cols[lower], weights=matrix.data[lower], minlength=entries
        ).reshape(self.bandwidth + 1, size)
        try:
            self._factor = sla.cholesky_banded(band, lower=True, check_finite=False)
        except np.linalg.LinAlgError as err:
            raise ValueError(f"the matrix is not positive definite ({err})") from err
        if not np.all(np.isfinite(self._factor)):
            raise ValueError("the matrix has NaN or infinite entries")
        self._order = order

    @staticmethod
    def _best_axis_order(signal_shape, reach) -> tuple[list[int], int]:
        """Nesting of the axes (slowest first) with the smallest bandwidth, and that bandwidth."""
        spread = [min(2 * t, n - 1) for t, n in zip(reach, signal_shape)]  # folded positions apart
        best = None
        for axes in itertools.permutations(range(len(signal_shape))):
            stride, width = 1, 0
            for ax in reversed(axes):
                width += spread[ax] * stride
                stride *= signal_shape[ax]
            if best is None or width < best[1]:
                best = (list(axes), width)
        return best

    @classmethod
    def from_hessian(cls, hessian) -> BandedCholesky:
        """Factorise a :class:`~bilevel_lib.problem.cost.HessianOperator` (assembling its sparse matrix)."""
        if not hessian.matrix_is_hessian:
            raise ValueError(
                f"the banded Cholesky factorisation needs the whole Hessian as a sparse matrix, i.e. a "
                f"forward model whose A'A is diagonal (Identity, PixelMask); got "
                f"{type(hessian.forward_model).__name__}: use the circulant preconditioner instead"
            )
        reach = tuple(f - 1 for f in hessian.filter_bank.filter_shape)
        return cls(hessian.matrix, hessian.shape, reach)

    def __call__(self, r) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64).reshape(-1)
        solution = np.empty_like(r)
        solution[self._order] = sla.cho_solve_banded((self._factor, True), r[self._order], check_finite=False)
        return solution.reshape(self.shape)


#: names accepted by ``make_preconditioner`` and ``implicit_hypergradient(cg_preconditioner=...)``
PRECONDITIONERS = {"circulant": CirculantPreconditioner.from_hessian, "cholesky": BandedCholesky.from_hessian}


def make_preconditioner(spec, hessian):
    """A preconditioner for ``hessian``: ``spec`` is None (none), a name in :data:`PRECONDITIONERS`,
    or a callable hessian -> preconditioner (e.g. ``CirculantPreconditioner.from_hessian``)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in PRECONDITIONERS:
            raise ValueError(f"unknown preconditioner {spec!r}; choose one of {sorted(PRECONDITIONERS)} or None")
        return PRECONDITIONERS[spec](hessian)
    if callable(spec):
        return spec(hessian)
    raise TypeError(
        f"a preconditioner is None, a name in {sorted(PRECONDITIONERS)} or a callable "
        f"hessian -> preconditioner; got {type(spec).__name__}"
    )
