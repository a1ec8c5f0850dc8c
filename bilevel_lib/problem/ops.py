"""Circular correlation with a bank of K filters, and its adjoint (Ch. "The running example").

The review writes ``c ⊛ x`` for the filtering in (Ex).  Like the authors' code we use circular
*correlation*,

    z_i = (c ⊛ x)_i = Σ_a c_a x_{i+a}      (indices modulo the signal size),

so that the filter's taps are read "forwards".  The adjoint ``C' v`` correlates with the reversed
filter ``c̃``, which is the same as a circular convolution with ``c``:

    (C' v)_i = Σ_a c_a v_{i-a}.

With circular boundaries the filter's origin does not change Φ, because shifting the origin only
shifts ``z`` circularly.

Both products are vectorised over the K filters and any leading batch axes (J training images):
small filters are applied directly as one matrix product of signal patches and filter taps, large
ones with real FFTs over the last ``d`` axes (review Sec. 4.2.4 discusses both costs).  A bank of
separable 2-D filters c_k = a_k ⊗ b_q (the DCT bank, or any with few distinct row factors b_q) is
applied as a pass along the rows with the row factors and one along the columns with the a_k, in
compiled loops: Q·f1 + K·f0 multiply-adds per pixel instead of K·f0·f1.

``Σ_k w_k C_k' diag(d_k) C_k``, the filter term of the Hessian (review eq. 4.10), can also be
assembled as a sparse matrix with one (2f − 1)^d-point stencil per pixel
(:meth:`FilterBankOperator.scaled_gram_matrix`), for fast repeated products on small images.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy import sparse

from ..util.validation import as_float_array, check_count

# threadpoolctl sets KMP_DUPLICATE_LIB_OK in os.environ when it is first imported; the library
# changes no environment variable of its caller, so a value it did not find is removed again.
_SET_BY_THREADPOOLCTL = "threadpoolctl" not in sys.modules and "KMP_DUPLICATE_LIB_OK" not in os.environ
from threadpoolctl import ThreadpoolController  # noqa: E402

__all__ = [
    "FilterBankOperator",
    "correlate",
    "correlate_adjoint",
    "correlation_matrix",
    "separable_factors",
    "DIRECT_MAX_TAPS",
    "SEPARABLE_MAX_SHARE",
]

#: filters with at most this many taps are applied directly (patches × taps), larger ones by FFT
DIRECT_MAX_TAPS = 121
#: a separable bank is applied by rows then columns when that costs at most this share of the
#: direct back end's multiply-adds (Q·f1 + K·f0 against K·f0·f1, the compiled passes summing
#: eight shifted copies at a time, so a factor of fewer taps counts as eight)
SEPARABLE_MAX_SHARE = 0.5
_TERMS = 8

_WORKERS = 1  # measured: on 2 cores, threading these small batched transforms is slower
_THREADPOOLS = ThreadpoolController()
#: index arrays that depend only on the shapes (signal, filters, their number), shared by every
#: operator of those shapes, so that an operator made afresh at each training step (new filters)
#: does not build them again; at most 64 shape combinations are kept
_SHAPE_INDICES: dict = {}


def _shape_indices(signal_shape, filter_shape, n_filters) -> dict:
    """The shared dict of shape-only index arrays for these shapes (created empty, filled on first use)."""
    key = (tuple(signal_shape), tuple(filter_shape), int(n_filters))
    if key not in _SHAPE_INDICES:
        if len(_SHAPE_INDICES) >= 64:
            _SHAPE_INDICES.clear()
        _SHAPE_INDICES[key] = {}
    return _SHAPE_INDICES[key]


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, marked read-only: the shared index arrays must never be written."""
    array.setflags(write=False)
    return array


if _SET_BY_THREADPOOLCTL:
    os.environ.pop("KMP_DUPLICATE_LIB_OK", None)


def single_threaded_blas(method):
    """Run ``method`` with BLAS limited to one thread.

    The filter-bank products are many small matrix products.  Threaded BLAS gains little on them,
    and when other processes share the cores its spinning threads make them 10× slower (measured:
    one cameraman upper-level step 80 ms with one thread, 900 ms with two while other jobs ran).
    The limit is lifted on return.  It costs ~1 µs when BLAS already runs on one thread (nested
    calls, or a caller's own limit) and ~3 µs otherwise (``threadpoolctl``'s ``limit`` context:
    ~7 µs, which adds up over the tens of calls of a small gradient step).
    """
    blas_libraries = _THREADPOOLS.select(user_api="blas").lib_controllers

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        threads = [library.num_threads for library in blas_libraries]
        if all(n == 1 for n in threads):
            return method(*args, **kwargs)
        for library in blas_libraries:
            library.set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            for library, n in zip(blas_libraries, threads):
                library.set_num_threads(n)

    return wrapper


def separable_factors(filters: np.ndarray, rtol: float = 1e-13):
    """``(col_taps, row_taps, rows)`` with ``filters[k] = outer(col_taps[k], row_taps[rows[k]])``, or None.

    For a bank of 2-D filters (K, f0, f1) in which every filter is an outer product (rank one) and
    the row factors take few distinct values: ``row_taps`` (Q, f1) holds the distinct row factors
    (unit norm, largest entry positive), ``rows`` (K,) which one each filter uses, ``col_taps``
    (K, f0) the column factors.  None when some filter is not rank one to ``rtol`` (relative to the
    bank's largest tap), e.g. learned filters.
    """
    filters = np.asarray(filters, dtype=np.float64)
    if filters.ndim != 3 or filters.shape[0] == 0:
        return None
    n_filters, f0, f1 = filters.shape
    scale = np.max(np.abs(filters))
    if not np.isfinite(scale) or scale == 0.0:
        return None
    flat = filters.reshape(n_filters, -1)
    peak = np.argmax(np.abs(flat), axis=1)
    if np.any(flat[np.arange(n_filters), peak] == 0.0):
        return None
    row = filters[np.arange(n_filters), peak // f1, :]  # the row through each filter's largest tap
    row = row / np.linalg.norm(row, axis=1, keepdims=True)
    # sign: the first entry of at least a thousandth of the largest is positive (not the largest
    # itself, which may tie with an entry of the other sign, as in a DCT atom)
    significant = np.abs(row) >= 1e-3 * np.max(np.abs(row), axis=1, keepdims=True)
    row *= np.sign(row[np.arange(n_filters), np.argmax(significant, axis=1)])[:, None]
    # distinct row factors: each filter takes the first earlier one that equals its own
    same = np.max(np.abs(row[:, None, :] - row[None, :, :]), axis=2) <= 1e3 * rtol
    first = np.argmax(same, axis=1)
    distinct, rows = np.unique(first, return_inverse=True)
    row_taps = row[distinct]
    col_taps = np.einsum("kab,kb->ka", filters, row_taps[rows])
    if np.max(np.abs(np.einsum("ka,kb->kab", col_taps, row_taps[rows]) - filters)) > rtol * scale:
        return None
    return np.ascontiguousarray(col_taps), np.ascontiguousarray(row_taps), rows.astype(np.int64)


def _signal_shape(value) -> tuple[int, ...]:
    """``signal_shape`` as a tuple of positive ints, or a TypeError/ValueError naming it."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"signal_shape must be a tuple of positive integers; got {value!r}")
    return tuple(check_count(n, "signal_shape entries") for n in value)


def _check_filters_fit(filters: np.ndarray, signal_shape: tuple[int, ...]) -> None:
    filter_shape = filters.shape[1:]
    if len(filter_shape) != len(signal_shape):
        raise ValueError(
            f"filters of shape (K, *filter_shape) = {filters.shape} act on {len(filter_shape)}-D signals, "
            f"but the signal shape (signal_shape, or x's shape after the batch axis) is {signal_shape} "
            f"({len(signal_shape)}-D)"
        )
    if any(f > s for f, s in zip(filter_shape, signal_shape)):
        raise ValueError(
            f"filters must fit inside the signal: filter shape {filter_shape} is larger than "
            f"the signal shape (signal_shape) {signal_shape} along some axis"
        )


@dataclass(frozen=True)
class FilterBankOperator:
    """The stacked operator ``C = [C_1; …; C_K]`` of K circular correlations on signals of one shape.

    Parameters
    ----------
    filters : array, shape ``(K, *filter_shape)``
        The filters ``c_k``; ``filter_shape`` has one entry per signal axis (e.g. (7, 7) or (4,)).
    signal_shape : tuple of int
        Shape of one signal, e.g. (50, 50) or (64,).  Each filter must fit inside it.
    method : {"auto", "direct", "separable", "fft"}
        ``"direct"`` pads circularly and multiplies the S×(batch·N) matrix of signal patches by the
        K×S matrix of taps (one BLAS call for all filters and images); ``"separable"`` (2-D banks of
        outer products c_k = a_k ⊗ b_q only, see :func:`separable_factors`) filters the rows with the
        Q distinct row factors, then the columns with each a_k, in compiled loops; ``"fft"``
        multiplies spectra.  ``"auto"`` uses direct filtering for filters of up to
        :data:`DIRECT_MAX_TAPS` taps, where it is several times faster (``benchmarks/bench_core.py``),
        and FFTs for larger ones; a separable bank that costs at most :data:`SEPARABLE_MAX_SHARE` of
        the direct multiply-adds is filtered by rows and columns.  The methods agree to rounding.

    Build one operator per value of the filters and reuse it for many products: the direct back
    end keeps its work arrays between calls (allocating fresh large arrays on every call costs
    more than the arithmetic), so an operator must not be shared between threads.
    """

    filters: np.ndarray
    signal_shape: tuple[int, ...]
    method: str = "auto"
    _taps: np.ndarray = field(init=False, repr=False, compare=False)
    _spectra: np.ndarray | None = field(init=False, repr=False, compare=False)
    _workspace: dict = field(init=False, repr=False, compare=False)
    _shared: dict = field(init=False, repr=False, compare=False)
    _factors: tuple | None = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        filters = as_float_array(self.filters, "filters", min_ndim=2)
        signal_shape = _signal_shape(self.signal_shape)
        _check_filters_fit(filters, signal_shape)
        if self.method not in ("auto", "direct", "separable", "fft"):
            raise ValueError(f"method must be 'auto', 'direct', 'separable' or 'fft'; got {self.method!r}")
        method = self.method
        factors = None
        if method == "auto":
            method = "direct" if np.prod(filters.shape[1:]) <= DIRECT_MAX_TAPS else "fft"
            if method == "direct" and filters.ndim == 3:
                factors = separable_factors(filters)
                if factors is not None:
                    n_filters, f0, f1 = filters.shape
                    work = _TERMS * (factors[1].shape[0] * -(-f1 // _TERMS) + n_filters * -(-f0 // _TERMS))
                    if work <= SEPARABLE_MAX_SHARE * n_filters * f0 * f1:
                        method = "separable"
                    else:
                        factors = None
        elif method == "separable":
            factors = separable_factors(filters) if filters.ndim == 3 else None
            if factors is None:
                raise ValueError(
                    "method='separable' needs 2-D filters that are each an outer product of a column and a "
                    f"row factor (rank one); got filters of shape {filters.shape} that are not"
                )
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "signal_shape", signal_shape)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "_factors", factors)
        object.__setattr__(self, "_taps", np.ascontiguousarray(filters.reshape(filters.shape[0], -1)))
        spectra = None
        if method == "fft":
            axes = tuple(range(1, filters.ndim))
            spectra = sfft.rfftn(filters, s=signal_shape, axes=axes, workers=_WORKERS)
        object.__setattr__(self, "_spectra", spectra)
        object.__setattr__(self, "_workspace", {})
        object.__setattr__(self, "_shared", _shape_indices(signal_shape, filters.shape[1:], filters.shape[0]))

    @property
    def ndim(self) -> int:
        """Number of signal axes d."""
        return len(self.signal_shape)

    @property
    def n_filters(self) -> int:
        """Number of filters K."""
        return self.filters.shape[0]

    @property
    def filter_shape(self) -> tuple[int, ...]:
        """The support of one filter, ``filters.shape[1:]`` (e.g. (3, 3))."""
        return self.filters.shape[1:]

    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-self.ndim, 0))

    def _check_signal(self, x: np.ndarray, name: str, *, stacked: bool = False) -> np.ndarray:
        # dtype and shape only: these products run inside the solvers' loops, whose callers check finiteness
        x = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else as_float_array(x, name, finite=False)
        expected = ((self.n_filters,) if stacked else ()) + self.signal_shape
        if x.ndim < len(expected) or x.shape[x.ndim - len(expected) :] != expected:
            raise ValueError(f"{name} must have shape (..., *{expected}); got {x.shape}")
        return x

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A work array kept between calls (contents undefined)."""
        key = (name, shape)
        if key not in self._workspace:
            self._workspace[key] = np.empty(shape)
        return self._workspace[key]

    def _filter_weights(self, weights) -> np.ndarray:
        """The weights w_k as a contiguous (K,) array for the compiled kernels: ones for None, one
        value for all, or K values (as the direct back end's broadcasting accepts); else a ValueError."""
        if weights is None:
            return np.ones(self.n_filters)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.size not in (1, self.n_filters):
            raise ValueError(f"weights must have one entry per filter, shape ({self.n_filters},); got {w.size} entries")
        return np.ascontiguousarray(np.broadcast_to(w, (self.n_filters,)))

    def _weighted_taps(self, weights) -> np.ndarray:
        if weights is None:
            return self._taps
        return self._taps * np.reshape(np.asarray(weights, dtype=np.float64), (-1, 1))

    # ------------------------------------------------------------------ direct back end
    # Layout: the direct back end keeps the filter (or tap) axis first in memory, so every product
    # is one contiguous BLAS call and every tap's slice is contiguous.  Filter responses are
    # returned as views with the filter axis moved to where the public shapes (…, K, *signal)
    # expect it; elementwise functions of them keep this layout, so passing them back is free.
    def _patches(self, x: np.ndarray, name: str = "patches") -> np.ndarray:
        """Tap-major patch matrix (a work array), shape (S, batch·N): row a holds x_{i+a} for every pixel i."""
        batch_shape = x.shape[: x.ndim - self.ndim]
        padded = self._wrap_padded(x)
        patches = self._buffer(name, self.filter_shape + x.shape)
        lead = (slice(None),) * len(batch_shape)
        for tap, window in self._tap_windows():
            patches[tap] = padded[lead + window]
        return patches.reshape(self._taps.shape[1], -1)

    def _tap_windows(self) -> list:
        """(tap a, slices of the padded signal that start at a), for every tap, computed once."""
        if "tap windows" not in self._shared:
            self._shared["tap windows"] = [
                (tap, tuple(slice(a, a + n) for a, n in zip(tap, self.signal_shape)))
                for tap in np.ndindex(self.filter_shape)
            ]
        return self._shared["tap windows"]

    def _wrap_padded(self, x: np.ndarray) -> np.ndarray:
        """x extended circularly by f − 1 samples at the end of each signal axis (a work array)."""
        batch_shape = x.shape[: x.ndim - self.ndim]
        padded = self._buffer(
            "padded", batch_shape + tuple(n + f - 1 for n, f in zip(self.signal_shape, self.filter_shape))
        )
        lead = len(batch_shape)
        padded[(Ellipsis,) + tuple(slice(0, n) for n in self.signal_shape)] = x
        for axis, (n, f) in enumerate(zip(self.signal_shape, self.filter_shape)):
            if f > 1:  # copy the start of this axis after its end (earlier axes are already padded)
                head = [slice(None)] * padded.ndim
                tail = [slice(None)] * padded.ndim
                head[lead + axis], tail[lead + axis] = slice(0, f - 1), slice(n, n + f - 1)
                for later in range(axis + 1, self.ndim):
                    head[lead + later] = tail[lead + later] = slice(0, self.signal_shape[later])
                padded[tuple(tail)] = padded[tuple(head)]
        return padded

    def _responses(self, x: np.ndarray, name: str = "responses", out: np.ndarray | None = None) -> np.ndarray:
        """C x as a (K, batch·N) array: a work array unless ``out`` is given."""
        if out is None:
            out = self._buffer(name, (self.n_filters, x.size))
        if self.method == "separable":
            from .stencil import separable_correlate

            images = np.ascontiguousarray(x).reshape((-1,) + self.signal_shape)
            col_taps, row_taps, rows = self._factors
            separable_correlate(
                images, col_taps, row_taps, rows, self._separable_work(), out.reshape((self.n_filters,) + images.shape)
            )
            return out
        return np.matmul(self._taps, self._patches(x), out=out)

    def _separable_work(self) -> tuple:
        """The work arrays of the separable kernels, made once per operator."""
        if "separable" not in self._workspace:
            from .stencil import separable_work

            n_rows = self._factors[1].shape[0]
            self._workspace["separable"] = separable_work(n_rows, *self.signal_shape, *self.filter_shape)
        return self._workspace["separable"]

    def _adjoint_filters_first(self, v: np.ndarray, weights, batch_shape) -> np.ndarray:
        """Σ_k w_k c̃_k ⊛ v_k for v of shape (K, batch·N), w = ``weights`` or ones; returns a work-array view."""
        if self.method == "separable":
            from .stencil import separable_correlate_adjoint

            n_batch = int(np.prod(batch_shape))
            out = self._buffer("folded", (n_batch,) + self.signal_shape)
            w = self._filter_weights(weights)
            col_taps, row_taps, rows = self._factors
            separable_correlate_adjoint(
                np.ascontiguousarray(v).reshape((self.n_filters, n_batch) + self.signal_shape),
                w,
                col_taps,
                row_taps,
                rows,
                self._separable_work(),
                out,
            )
            return out.reshape(tuple(batch_shape) + self.signal_shape)
        taps = self._weighted_taps(weights)
        columns = np.matmul(taps.T, v, out=self._buffer("columns", (taps.shape[1], v.shape[1])))
        return self._fold(columns, batch_shape)

    def _fold(self, columns: np.ndarray, batch_shape: tuple[int, ...]) -> np.ndarray:
        """Adjoint of :meth:`_patches`: add row a of ``columns`` back at pixels i + a (circularly).

        Returns a view into a work array: copy it (or add it to something) before the next call.
        """
        if self.ndim <= 2:  # compiled (bilevel_lib.problem.stencil.fold_columns): one pass per tap, no padding
            from .stencil import fold_columns

            plane = (1,) * (2 - self.ndim) + self.signal_shape
            n_batch = int(np.prod(batch_shape))
            out = self._buffer("folded", (n_batch,) + plane)
            fold_columns(columns.reshape((columns.shape[0], n_batch) + plane), self.filter_shape[-1], out)
            return out.reshape(batch_shape + self.signal_shape)
        columns = columns.reshape(self.filter_shape + batch_shape + self.signal_shape)
        padded = self._buffer(
            "fold", batch_shape + tuple(n + f - 1 for n, f in zip(self.signal_shape, self.filter_shape))
        )
        padded.fill(0.0)
        lead = (slice(None),) * len(batch_shape)
        for tap in np.ndindex(self.filter_shape):
            padded[lead + tuple(slice(a, a + n) for a, n in zip(tap, self.signal_shape))] += columns[tap]
        # wrap the overhang of each axis back onto its start, then keep the signal-sized corner
        for axis, (n, f) in enumerate(zip(self.signal_shape, self.filter_shape)):
            if f > 1:
                ax = len(batch_shape) + axis
                head = [slice(None)] * padded.ndim
                tail = [slice(None)] * padded.ndim
                head[ax], tail[ax] = slice(0, f - 1), slice(n, n + f - 1)
                padded[tuple(head)] += padded[tuple(tail)]
        return padded[lead + tuple(slice(0, n) for n in self.signal_shape)]

    def _filters_first(self, v: np.ndarray) -> np.ndarray:
        """``(…, K, *signal)`` -> (K, batch·N), a free reshape when v came from :meth:`forward`."""
        return np.moveaxis(v, -self.ndim - 1, 0).reshape(self.n_filters, -1)

    def _to_public(self, z: np.ndarray, batch_shape) -> np.ndarray:
        """(K, batch·N) -> ``(…, K, *signal)`` view."""
        return np.moveaxis(z.reshape((self.n_filters,) + tuple(batch_shape) + self.signal_shape), 0, -self.ndim - 1)

    # ------------------------------------------------------------------ public products
    @single_threaded_blas
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``z_k = c_k ⊛ x`` for every filter.  Shape ``(..., *signal)`` -> ``(..., K, *signal)``, a new array."""
        x = self._check_signal(x, "x")
        batch_shape = x.shape[: x.ndim - self.ndim]
        if self.method == "fft":
            x_spec = np.expand_dims(sfft.rfftn(x, axes=self._axes, workers=_WORKERS), -self.ndim - 1)
            return sfft.irfftn(np.conj(self._spectra) * x_spec, s=self.signal_shape, axes=self._axes, workers=_WORKERS)
        return self._to_public(self._responses(x, out=np.empty((self.n_filters, x.size))), batch_shape)

    @single_threaded_blas
    def adjoint(self, v: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """``Σ_k w_k c̃_k ⊛ v_k`` (the adjoint ``C'``, optionally weighted per filter).

        Shape ``(..., K, *signal)`` -> ``(..., *signal)``.  ``weights`` has shape (K,).
        """
        v = self._check_signal(v, "v", stacked=True)
        batch_shape = v.shape[: v.ndim - self.ndim - 1]
        if self.method == "fft":
            taps = self._weighted_taps(weights)
            spectra = sfft.rfftn(
                taps.reshape(self.filters.shape), s=self.signal_shape, axes=self._axes, workers=_WORKERS
            )
            v_spec = sfft.rfftn(v, axes=self._axes, workers=_WORKERS)
            return sfft.irfftn(
                np.sum(spectra * v_spec, axis=-self.ndim - 1), s=self.signal_shape, axes=self._axes, workers=_WORKERS
            )
        return self._adjoint_filters_first(self._filters_first(v), weights, batch_shape).copy()

    @single_threaded_blas
    def adjoint_of_pointwise(self, x: np.ndarray, function, weights=None) -> np.ndarray:
        """``Σ_k w_k C_k' f.(C_k x)`` in one pass, e.g. the regulariser's gradient with f = φ̇.

        ``function(z, out)`` must write f.(z) into ``out`` (an array of z's shape, not z itself)
        and return it, like the penalties' ``derivative(z, out=...)``.
        """
        x = self._check_signal(x, "x")
        if self.method == "fft":
            z = self.forward(x)
            return self.adjoint(function(z, out=np.empty_like(z)), weights)
        if self.method == "separable":
            return self._separable_per_image(x, weights, lambda z, values, b: function(z, out=values))
        batch_shape = x.shape[: x.ndim - self.ndim]
        z = self._responses(x)
        values = function(z, out=self._buffer("values", z.shape))
        return self._adjoint_filters_first(values, weights, batch_shape).copy()

    def _separable_per_image(self, x: np.ndarray, weights, pointwise) -> np.ndarray:
        """``Σ_k w_k C_k' p_b(C_k x_b)`` image by image on the separable back end, with
        ``pointwise(z, values, b)`` writing p_b(z) for image b into ``values`` (shape (K, 1, *signal))
        and returning it: one image's K responses stay in the cache between the three passes
        (measured: 1.30 against 1.45 ms for the CR1N gradient term of three 50×50 images)."""
        from .stencil import separable_correlate, separable_correlate_adjoint

        images = np.ascontiguousarray(x).reshape((-1,) + self.signal_shape)
        col_taps, row_taps, rows = self._factors
        work = self._separable_work()
        z = self._buffer("image responses", (self.n_filters, 1) + self.signal_shape)
        values = self._buffer("image values", z.shape)
        w = self._filter_weights(weights)
        out = np.empty(images.shape)
        for b in range(images.shape[0]):
            separable_correlate(images[b : b + 1], col_taps, row_taps, rows, work, z)
            separable_correlate_adjoint(pointwise(z, values, b), w, col_taps, row_taps, rows, work, out[b : b + 1])
        return out.reshape(x.shape)

    def _separable_cr1n_gradient(self, x: np.ndarray, eps: float, weights) -> np.ndarray | None:
        """``Σ_k w_k C_k' φ̇.(C_k x)`` for the CR1N penalty with parameter ``eps`` in one compiled call
        (:func:`~bilevel_lib.problem.stencil.separable_cr1n_gradient`), or None when it does not
        apply: not the separable back end, ε outside the kernel's safe range, or some response
        beyond it (then :meth:`adjoint_of_pointwise` with numpy's hypot)."""
        from .stencil import CR1N_SAFE, separable_cr1n_gradient

        if self.method != "separable" or not CR1N_SAFE**-1 <= eps <= CR1N_SAFE:
            return None
        images = np.ascontiguousarray(x).reshape((-1,) + self.signal_shape)
        col_taps, row_taps, rows = self._factors
        work = self._separable_work()
        compact = self._buffer("separable compact", work[1].shape)
        out = np.empty(images.shape)
        weights = self._filter_weights(weights)
        if separable_cr1n_gradient(images, col_taps, row_taps, rows, weights, eps, work, compact, out):
            return None
        return out.reshape(x.shape)

    @single_threaded_blas
    def adjoint_of_scaled(self, v: np.ndarray, scale: np.ndarray, weights=None) -> np.ndarray:
        """``Σ_k w_k C_k' (d_k ⊙ C_k v)`` for fixed d = ``scale`` of shape ``(…, K, *signal)``.

        With d = φ̈.(C x) this is the regulariser's Hessian-vector product (review eq. 4.11).
        """
        v = self._check_signal(v, "v")
        if self.method == "fft":
            return self.adjoint(scale * self.forward(v), weights)
        if self.method == "separable":
            expected = v.shape[: v.ndim - self.ndim] + (self.n_filters,) + self.signal_shape
            if np.shape(scale) != expected:
                raise ValueError(f"scale must have shape (..., K, *signal) = {expected}; got {np.shape(scale)}")
            d = self._filters_first(np.asarray(scale, dtype=np.float64)).reshape(
                (self.n_filters, -1) + self.signal_shape
            )
            return self._separable_per_image(
                v, weights, lambda z, values, b: np.multiply(z, d[:, b : b + 1], out=values)
            )
        batch_shape = v.shape[: v.ndim - self.ndim]
        z = self._responses(v)
        z *= self._filters_first(scale)
        return self._adjoint_filters_first(z, weights, batch_shape).copy()

    @property
    def stencil_shape(self) -> tuple[int, ...]:
        """Offsets e with a (possibly) nonzero ``(C_k' D C_k)[i, i+e]``: (2f − 1) per axis, f the filter size."""
        return tuple(2 * f - 1 for f in self.filter_shape)

    @single_threaded_blas
    def scaled_gram_stencil(self, scale: np.ndarray, weights=None, diagonal=None) -> np.ndarray:
        """``Σ_k w_k C_k' diag(d_k) C_k`` (+ ``diag(diagonal)``) as a stencil: one weight per offset and pixel.

        With d = φ̈.(C x) this is the regulariser's Hessian (review eq. 4.10).  Row i couples pixel
        i only with the pixels i + e, e in the (2f − 1)^d box of :attr:`stencil_shape`:

            (C_k' D_k C_k)[i, i+e] = Σ_a c_{k,a} c_{k,a+e} d_k[i − a]      (taps a, a + e in the filter)

        ``scale`` has shape ``(…, K, *signal)``, one d per image of the batch; the result has shape
        ``(batch, *stencil_shape, *signal)`` with ``result[j, e, i]`` the weight of v_{i+e} in
        (H_j v)_i (offsets e from −(f − 1) to f − 1 per axis, in C order; indices modulo the
        signal size), the layout of the compiled products in :mod:`bilevel_lib.problem.stencil`.
        ``diagonal`` (shape ``(…, *signal)`` or a scalar, e.g. the A'A of a diagonal forward model) is
        added to the centre weight.  :meth:`scaled_gram_matrix` gives the same as a sparse matrix.
        """
        scale = self._check_signal(scale, "scale", stacked=True)
        batch_shape = scale.shape[: scale.ndim - self.ndim - 1]
        n_batch = int(np.prod(batch_shape))
        # coefficients[e, (a, k)] = w_k c_{k,a} c_{k,a+e} (zero where a + e leaves the filter), for the
        # first half of the offsets (C order, up to the centre e = 0)
        n_offsets = int(np.prod(self.stencil_shape))
        centre = n_offsets // 2
        coefficients = self._tap_pair_products()[: centre + 1]
        if weights is not None:
            coefficients = coefficients * np.tile(np.asarray(weights, dtype=np.float64), self._taps.shape[1])
        # shifted[b, (a, k), i] = d_k[b, i − a] (circularly), gathered in one call, so that one matrix
        # product per image gives every offset's weights over the whole image
        shifted = np.take(scale.reshape(n_batch, -1), self._shift_gather(), axis=1)  # (batch, S·K, N)
        stencil = np.empty((n_batch, n_offsets, shifted.shape[-1]))
        np.matmul(coefficients, shifted, out=stencil[:, : centre + 1])
        # the other half by symmetry, H[i, i − e] = H[i − e, i]: weight_{−e}[i] = weight_e[i − e]
        stencil[:, centre + 1 :] = np.take(stencil[:, :centre].reshape(n_batch, -1), self._mirror_gather(), axis=1)
        if diagonal is not None:
            stencil[:, centre] += np.broadcast_to(diagonal, batch_shape + self.signal_shape).reshape(n_batch, -1)
        return stencil.reshape((n_batch,) + self.stencil_shape + self.signal_shape)

    def scaled_gram_matrix(self, scale: np.ndarray, weights=None, diagonal=None) -> sparse.csr_array:
        """:meth:`scaled_gram_stencil` as a scipy sparse matrix, block diagonal over the batch.

        The matrix is (batch·N)×(batch·N), rows and columns in ``scale``'s C order, so
        ``matrix @ v.ravel()`` is the product with a batch v of shape ``(…, *signal)``; row i holds
        ``prod(stencil_shape)`` entries whatever K is.
        """
        stencil = self.scaled_gram_stencil(scale, weights=weights, diagonal=diagonal)
        n_batch, width = stencil.shape[0], int(np.prod(self.stencil_shape))
        data = np.moveaxis(stencil.reshape(n_batch, width, -1), 1, 2)  # (batch, N, E): CSR rows
        indices, indptr = self._stencil_structure(n_batch)
        size = indptr.shape[0] - 1
        # fresh index arrays: scipy may rewrite them in place (sum_duplicates, sort_indices)
        matrix = sparse.csr_array((data.reshape(-1), indices.copy(), indptr.copy()), shape=(size, size))
        if any(2 * f - 1 > n for n, f in zip(self.signal_shape, self.filter_shape)):
            matrix.sum_duplicates()  # offsets e and e ± n meet at the same pixel on a small signal
        return matrix

    def _tap_pair_products(self) -> np.ndarray:
        """c_{k,a} c_{k,a+e} for every stencil offset e, tap a and filter k, shape (E, S·K), computed once."""
        if "pair products" not in self._workspace:
            n_taps = self._taps.shape[1]
            first, second = np.indices((n_taps, n_taps)).reshape(2, -1)  # taps a, b
            a, b = np.unravel_index(first, self.filter_shape), np.unravel_index(second, self.filter_shape)
            offset = np.ravel_multi_index(
                tuple(bb - aa + f - 1 for aa, bb, f in zip(a, b, self.filter_shape)), self.stencil_shape
            )  # e = b − a
            products = np.zeros((n_taps, self.n_filters, int(np.prod(self.stencil_shape))))
            products[first, :, offset] = (self._taps[:, first] * self._taps[:, second]).T
            self._workspace["pair products"] = np.ascontiguousarray(products.reshape(n_taps * self.n_filters, -1).T)
        return self._workspace["pair products"]

    def _shift_gather(self) -> np.ndarray:
        """Flat indices into a (K, N) array of d_k[i − a] (circularly), shape (S·K, N), computed once."""
        if "shift gather" not in self._shared:
            pixel = np.indices(self.signal_shape).reshape(self.ndim, -1, 1)
            tap = np.indices(self.filter_shape).reshape(self.ndim, 1, -1)
            shifted = np.ravel_multi_index(
                tuple((pixel[ax] - tap[ax]) % n for ax, n in enumerate(self.signal_shape)), self.signal_shape
            )  # (N, S)
            n_pixels = shifted.shape[0]
            gather = shifted[:, :, None] + n_pixels * np.arange(self.n_filters)  # (N, S, K)
            self._shared["shift gather"] = _read_only(np.ascontiguousarray(gather.reshape(n_pixels, -1).T))
        return self._shared["shift gather"]

    def _mirror_gather(self) -> np.ndarray:
        """Flat indices into the first half of the stencil weights, (centre, N) in C order, that give the
        second half: row centre + 1 + m has the offset −e of half-row centre − 1 − m, and its pixel i
        reads weight_e[i − e] (circularly).  Shape (centre, N), computed once."""
        if "mirror gather" not in self._shared:
            n_offsets = int(np.prod(self.stencil_shape))
            centre = n_offsets // 2
            half = np.arange(centre - 1, -1, -1)  # half-row mirrored into row centre + 1 + m
            offset = (
                np.array(np.unravel_index(half, self.stencil_shape))
                - np.array([f - 1 for f in self.filter_shape])[:, None]
            )
            pixel = np.indices(self.signal_shape).reshape(self.ndim, -1)
            source = np.ravel_multi_index(
                tuple((pixel[ax][None, :] - offset[ax][:, None]) % n for ax, n in enumerate(self.signal_shape)),
                self.signal_shape,
            )
            self._shared["mirror gather"] = _read_only(half[:, None] * pixel.shape[1] + source)
        return self._shared["mirror gather"]

    def _stencil_structure(self, n_batch: int) -> tuple[np.ndarray, np.ndarray]:
        """CSR column indices (row i: the pixels i + e, circularly, in stencil order) and row pointers."""
        key = ("stencil", n_batch)
        if key not in self._shared:
            pixel = np.indices(self.signal_shape).reshape(self.ndim, -1)  # (d, N)
            offset = (
                np.indices(self.stencil_shape).reshape(self.ndim, -1)
                - np.array([f - 1 for f in self.filter_shape])[:, None]
            )  # (d, E)
            columns = np.ravel_multi_index(
                tuple((pixel[ax][:, None] + offset[ax][None, :]) % n for ax, n in enumerate(self.signal_shape)),
                self.signal_shape,
            )
            n_pixels, width = columns.shape
            columns = columns[None] + n_pixels * np.arange(n_batch)[:, None, None]
            index_dtype = np.int32 if n_batch * n_pixels < 2**31 else np.int64
            self._shared[key] = (
                _read_only(columns.reshape(-1).astype(index_dtype)),
                _read_only(np.arange(0, n_batch * n_pixels * width + 1, width, dtype=index_dtype)),
            )
        return self._shared[key]

    @single_threaded_blas
    def mixed_terms(self, x: np.ndarray, v: np.ndarray, derivative, second_derivative, factors=None, taps=True):
        """The pieces of (∇ₓγΦ)'v for a pointwise penalty, before the weights e^{β0+β_k}:

        * ``per_filter[k] = ⟨C_k v, f'.(C_k x)⟩`` (shape (K,), the β_k part), and
        * ``taps[k, s] = Σ_i f'(z_k)_i v_{i+s} + Σ_i (f''.(z_k) ⊙ C_k v)_i x_{i+s}``
          (shape ``(K, *filter_shape)``, the filter part of review App. C.1),

        summed over the batch, with z_k = c_k ⊛ x and f', f'' given as ``function(z, out)``.
        ``factors(z, cv, slope, curvature) -> per_filter``, optional (e.g. a penalty's fused
        ``_mixed_factors``), computes the pointwise part at once on the direct back end's
        (K, batch·N) arrays: f'.(z) into ``slope``, f''.(z) ⊙ cv into ``curvature``.
        With ``taps=False`` only the β part is computed and ``(per_filter, None)`` returned: two
        filter products and f', without the two patch products of the filter part (β-only training:
        48 DCT 7×7 filters on 3 × 50×50, measured ~1.4 ms against ~4.5 ms for both parts).
        """
        x = self._check_signal(x, "x")
        v = self._check_signal(v, "v")
        if not taps:
            if self.method == "fft":
                z, cv = self._filters_first(self.forward(x)), self._filters_first(self.forward(v))
            else:
                z, cv = self._responses(x), self._responses(v, "responses_v")
            slope = derivative(z, out=self._buffer("values", z.shape))
            return np.einsum("kn,kn->k", cv, slope), None
        if self.method == "fft":
            z = self.forward(x)
            slope, cv = derivative(z, out=np.empty_like(z)), self.forward(v)
            per_filter = np.sum(self._filters_first(slope) * self._filters_first(cv), axis=1)
            curvature = second_derivative(z, out=np.empty_like(z)) * cv
            return per_filter, self.lag_correlation(slope, v) + self.lag_correlation(curvature, x)
        patches_x, patches_v = self._patches(x), self._patches(v, "patches_v")
        if self.method == "separable":  # the responses by rows and columns; the patches serve the taps' part
            z, cv = self._responses(x), self._responses(v, "responses_v")
        else:
            z = np.matmul(self._taps, patches_x, out=self._buffer("responses", (self.n_filters, x.size)))
            cv = np.matmul(self._taps, patches_v, out=self._buffer("responses_v", (self.n_filters, v.size)))
        slope, curvature = self._buffer("values", z.shape), self._buffer("curvature", z.shape)
        if factors is None:
            derivative(z, out=slope)
            per_filter = np.einsum("kn,kn->k", cv, slope)
            second_derivative(z, out=curvature)
            curvature *= cv
        else:
            per_filter = factors(z, cv, slope, curvature)
        taps = slope @ patches_v.T
        taps += curvature @ patches_x.T
        return per_filter, taps.reshape(self.filters.shape)

    @single_threaded_blas
    def lag_correlation(self, g: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``r_k[s] = Σ_i g_{k,i} x_{i+s}`` for every lag s inside the filter support.

        This is the derivative of ``⟨g_k, c_k ⊛ x⟩`` with respect to the filter taps ``c_{k,s}``
        (App. C.1, eq. C.2).  ``g`` has shape ``(..., K, *signal)`` and ``x`` shape ``(..., *signal)`` with
        the same leading axes, which are summed.  Returns shape ``(K, *filter_shape)``.
        """
        g = self._check_signal(g, "g", stacked=True)
        x = self._check_signal(x, "x")
        if g.shape[: g.ndim - self.ndim - 1] != x.shape[: x.ndim - self.ndim]:
            raise ValueError(
                f"g (..., K, *signal) and x (..., *signal) need the same leading axes; got {g.shape} and {x.shape}"
            )
        if self.method == "fft":
            x_spec = np.expand_dims(sfft.rfftn(x, axes=self._axes, workers=_WORKERS), -self.ndim - 1)
            cross = np.conj(sfft.rfftn(g, axes=self._axes, workers=_WORKERS)) * x_spec
            cross = cross.reshape((-1,) + cross.shape[-self.ndim - 1 :]).sum(axis=0)
            full = sfft.irfftn(cross, s=self.signal_shape, axes=self._axes, workers=_WORKERS)
            return full[(slice(None),) + tuple(slice(0, f) for f in self.filter_shape)]
        return (self._filters_first(g) @ self._patches(x).T).reshape(self.filters.shape)

    def power_spectra(self) -> np.ndarray:
        """``|ĉ_k(ω)|²``, the filters' power spectra on the real-FFT grid of the signal, shape
        ``(K, *signal[:-1], n_d // 2 + 1)``: the eigenvalues of each C_k'C_k (a circulant).

        Computed once per operator (48 7×7 filters on 50×50: ~1 ms) and returned read-only, e.g.
        for :class:`~bilevel_lib.solvers.preconditioners.CirculantPreconditioner`, which needs them
        at every step of a training run whose filters stay fixed.
        """
        # kept with this operator's work arrays (they depend on the filters' values, unlike _shared's)
        if "power spectra" not in self._workspace:
            axes = tuple(range(1, self.filters.ndim))
            spectra = sfft.rfftn(self.filters, s=self.signal_shape, axes=axes, workers=_WORKERS)
            self._workspace["power spectra"] = _read_only(spectra.real**2 + spectra.imag**2)
        return self._workspace["power spectra"]


def correlate(x, filters, method: str = "auto") -> np.ndarray:
    """``c_k ⊛ x`` for all K filters (circular correlation).

    Parameters
    ----------
    x : array, shape ``(..., *signal_shape)``
    filters : array, shape ``(K, *filter_shape)``, with ``len(filter_shape) == len(signal_shape)``

    Returns
    -------
    array, shape ``(..., K, *signal_shape)``
    """
    filters = as_float_array(filters, "filters", min_ndim=2)
    x = as_float_array(x, "x")
    d = filters.ndim - 1
    if x.ndim < d:
        raise ValueError(f"x must have at least {d} axes to be filtered by {d}-D filters; got shape {x.shape}")
    return FilterBankOperator(filters, x.shape[x.ndim - d :], method).forward(x)


def correlate_adjoint(v, filters, method: str = "auto") -> np.ndarray:
    """``Σ_k c̃_k ⊛ v_k``, the adjoint of :func:`correlate`.

    Parameters
    ----------
    v : array, shape ``(..., K, *signal_shape)``
    filters : array, shape ``(K, *filter_shape)``

    Returns
    -------
    array, shape ``(..., *signal_shape)``
    """
    filters = as_float_array(filters, "filters", min_ndim=2)
    v = as_float_array(v, "v")
    d = filters.ndim - 1
    if v.ndim < d + 1:
        raise ValueError(f"v must have shape (..., K, *signal_shape); got shape {v.shape}")
    return FilterBankOperator(filters, v.shape[v.ndim - d :], method).adjoint(v)


def correlation_matrix(filter_, signal_shape) -> np.ndarray:
    """The explicit N×N matrix of ``x -> c ⊛ x`` for one filter (small signals only; for tests and teaching).

    Row i holds the taps ``c_a`` at the columns ``i + a`` (mod the signal shape), flattened in C order.
    """
    filter_ = as_float_array(filter_, "filter_", min_ndim=1)
    signal_shape = _signal_shape(signal_shape)
    _check_filters_fit(filter_[None], signal_shape)
    n = int(np.prod(signal_shape))
    matrix = np.zeros((n, n))
    rows = np.arange(n)
    row_index = np.array(np.unravel_index(rows, signal_shape))  # (d, N)
    for tap in np.ndindex(filter_.shape):
        cols = np.ravel_multi_index(
            tuple((row_index[ax] + tap[ax]) % signal_shape[ax] for ax in range(len(signal_shape))), signal_shape
        )
        np.add.at(matrix, (rows, cols), filter_[tap])
    return matrix
