"""Circular correlation with a bank of K filters, and its adjoint (Ch. "The running example").

The review writes ``c ⊛ x`` for the filtering in (Ex).  Like the authors' code we use circular
*correlation*,

    z_i = (c ⊛ x)_i = Σ_a c_a x_{i+a}      (indices modulo the signal size),

so that the filter's taps are read "forwards".  The adjoint ``C' v`` correlates with the reversed
filter ``c̃``, which is the same as a circular convolution with ``c``:

    (C' v)_i = Σ_a c_a v_{i-a}.

With circular boundaries the filter's origin does not change Φ, because shifting the origin only
shifts ``z`` circularly.

Everything is computed with real FFTs over the last ``d`` axes and vectorised over the K filters and
any leading batch axes (J training images), as eq. (4.11) of the review suggests for large filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from ._checks import as_float_array

__all__ = ["FilterBankOperator", "correlate", "correlate_adjoint", "correlation_matrix"]

_WORKERS = 1  # measured: on 2 cores, threading these small batched transforms is slower


def _check_filters_fit(filters: np.ndarray, signal_shape: tuple[int, ...]) -> None:
    filter_shape = filters.shape[1:]
    if len(filter_shape) != len(signal_shape):
        raise ValueError(
            f"filters of shape (K, *filter_shape) = {filters.shape} act on {len(filter_shape)}-D signals, "
            f"but the signal shape is {signal_shape} ({len(signal_shape)}-D)"
        )
    if any(f > s for f, s in zip(filter_shape, signal_shape)):
        raise ValueError(
            f"each filter must fit inside the signal: filter shape {filter_shape} is larger than "
            f"signal shape {signal_shape} along some axis"
        )


@dataclass(frozen=True)
class FilterBankOperator:
    """The stacked operator ``C = [C_1; …; C_K]`` of K circular correlations on signals of one shape.

    Parameters
    ----------
    filters : array, shape (K, *filter_shape)
        The filters ``c_k``; ``filter_shape`` has one entry per signal axis (e.g. (7, 7) or (4,)).
    signal_shape : tuple of int
        Shape of one signal, e.g. (50, 50) or (64,).  Each filter must fit inside it.

    The filters' spectra are computed once here, so build one operator per value of the filters
    and reuse it for many products.
    """

    filters: np.ndarray
    signal_shape: tuple[int, ...]
    _spectra: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        filters = as_float_array(self.filters, "filters", min_ndim=2)
        signal_shape = tuple(int(n) for n in self.signal_shape)
        if any(n < 1 for n in signal_shape):
            raise ValueError(f"signal_shape must be positive integers; got {self.signal_shape}")
        _check_filters_fit(filters, signal_shape)
        object.__setattr__(self, "filters", filters)
        object.__setattr__(self, "signal_shape", signal_shape)
        axes = tuple(range(1, filters.ndim))
        spectra = sfft.rfftn(filters, s=signal_shape, axes=axes, workers=_WORKERS)
        object.__setattr__(self, "_spectra", spectra)

    @property
    def ndim(self) -> int:
        """Number of signal axes d."""
        return len(self.signal_shape)

    @property
    def n_filters(self) -> int:
        """Number of filters K."""
        return self.filters.shape[0]

    @property
    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-self.ndim, 0))

    def _check_signal(self, x: np.ndarray, name: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[x.ndim - self.ndim:] != self.signal_shape or x.ndim < self.ndim:
            raise ValueError(
                f"{name} must have shape (..., *{self.signal_shape}); got {x.shape}"
            )
        return x

    def spectrum(self, x: np.ndarray) -> np.ndarray:
        """Real FFT of signals over their last d axes."""
        return sfft.rfftn(x, axes=self._axes, workers=_WORKERS)

    def inverse_spectrum(self, spectrum: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`spectrum`, back to real signals of ``signal_shape``."""
        return sfft.irfftn(spectrum, s=self.signal_shape, axes=self._axes, workers=_WORKERS)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``z_k = c_k ⊛ x`` for every filter.  Shape (..., *signal) -> (..., K, *signal)."""
        x = self._check_signal(x, "x")
        return self.forward_from_spectrum(self.spectrum(x))

    def forward_from_spectrum(self, x_spectrum: np.ndarray) -> np.ndarray:
        """Like :meth:`forward` when the FFT of x is already known."""
        return self.inverse_spectrum(np.conj(self._spectra) * x_spectrum[..., None, *([slice(None)] * self.ndim)])

    def adjoint(self, v: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """``Σ_k w_k c̃_k ⊛ v_k`` (the adjoint ``C'``, optionally weighted per filter).

        Shape (..., K, *signal) -> (..., *signal).  ``weights`` has shape (K,).
        """
        v = self._check_signal(v, "v")
        if v.ndim < self.ndim + 1 or v.shape[-self.ndim - 1] != self.n_filters:
            raise ValueError(
                f"v must have shape (..., K={self.n_filters}, *{self.signal_shape}); got {v.shape}"
            )
        spectra = self._spectra if weights is None else self._spectra * np.reshape(
            np.asarray(weights, dtype=np.float64), (-1,) + (1,) * self.ndim
        )
        return self.inverse_spectrum(np.sum(spectra * self.spectrum(v), axis=-self.ndim - 1))

    def lag_correlation(self, g: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``r_k[s] = Σ_i g_{k,i} x_{i+s}`` for every lag s inside the filter support.

        This is the derivative of ``⟨g_k, c_k ⊛ x⟩`` with respect to the filter taps ``c_{k,s}``
        (App. C.1, eq. C.2).  ``g`` has shape (..., K, *signal), ``x`` has shape (..., *signal) or
        (..., K, *signal); the leading axes are summed.  Returns shape (K, *filter_shape).
        """
        g = self._check_signal(g, "g")
        x = self._check_signal(x, "x")
        x_spec = self.spectrum(x)
        if x.ndim == g.ndim - 1:
            x_spec = x_spec[..., None, *([slice(None)] * self.ndim)]
        cross = np.conj(self.spectrum(g)) * x_spec
        cross = cross.reshape((-1,) + cross.shape[-self.ndim - 1:]).sum(axis=0)
        full = self.inverse_spectrum(cross)
        support = (slice(None),) + tuple(slice(0, n) for n in self.filters.shape[1:])
        return full[support]


def correlate(x, filters) -> np.ndarray:
    """``c_k ⊛ x`` for all K filters (circular correlation).

    Parameters
    ----------
    x : array, shape (..., *signal_shape)
    filters : array, shape (K, *filter_shape), with ``len(filter_shape) == len(signal_shape)``

    Returns
    -------
    array, shape (..., K, *signal_shape)
    """
    filters = as_float_array(filters, "filters", min_ndim=2)
    x = as_float_array(x, "x")
    d = filters.ndim - 1
    if x.ndim < d:
        raise ValueError(f"x must have at least {d} axes to be filtered by {d}-D filters; got shape {x.shape}")
    return FilterBankOperator(filters, x.shape[x.ndim - d:]).forward(x)


def correlate_adjoint(v, filters) -> np.ndarray:
    """``Σ_k c̃_k ⊛ v_k``, the adjoint of :func:`correlate`.

    Parameters
    ----------
    v : array, shape (..., K, *signal_shape)
    filters : array, shape (K, *filter_shape)

    Returns
    -------
    array, shape (..., *signal_shape)
    """
    filters = as_float_array(filters, "filters", min_ndim=2)
    v = as_float_array(v, "v")
    d = filters.ndim - 1
    if v.ndim < d + 1:
        raise ValueError(f"v must have shape (..., K, *signal_shape); got shape {v.shape}")
    return FilterBankOperator(filters, v.shape[v.ndim - d:]).adjoint(v)


def correlation_matrix(filter_, signal_shape) -> np.ndarray:
    """The explicit N×N matrix of ``x -> c ⊛ x`` for one filter (small signals only; for tests and teaching).

    Row i holds the taps ``c_a`` at the columns ``i + a`` (mod the signal shape), flattened in C order.
    """
    filter_ = as_float_array(filter_, "filter_", min_ndim=1)
    signal_shape = tuple(int(n) for n in signal_shape)
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
