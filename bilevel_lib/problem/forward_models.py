"""Forward models A with their adjoints A' (Ch. "The running example").

Every model maps signals of ``signal_shape`` to measurements of the same shape (a mask zeroes the
missing pixels instead of dropping them), so a batch of J signals of shape ``(J, *signal_shape)`` goes
through unchanged.  ``sigma1_squared`` is σ₁(A)², the first term of the Lipschitz bound (4.19).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from ..util.validation import as_float_array, check_count, positive_scalar

__all__ = ["ForwardModel", "Identity", "CircularBlur", "PixelMask", "gaussian_kernel"]


def _check_batch(x, signal_shape, name):
    x = as_float_array(x, name)
    if signal_shape is not None and (
        x.ndim < len(signal_shape) or x.shape[x.ndim - len(signal_shape) :] != tuple(signal_shape)
    ):
        raise ValueError(f"{name} must have shape (..., *{tuple(signal_shape)}); got {x.shape}")
    return x


def _check_shape(shape, name) -> tuple[int, ...]:
    """A signal shape: a non-empty tuple of positive integers."""
    try:
        items = tuple(shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a tuple of positive integers; got {shape!r}") from err
    if not items:
        raise ValueError(f"{name} must have at least one axis; got {shape!r}")
    return tuple(check_count(n, f"{name} entries") for n in items)


class ForwardModel:
    """Interface: ``forward`` (A x), ``adjoint`` (A' y), ``gram`` (A'A x) and ``sigma1_squared``."""

    signal_shape: tuple[int, ...] | None = None

    def forward(self, x):  # pragma: no cover - interface
        """A x for a batch x of shape ``(..., *signal_shape)``; the measurements have the same shape."""
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def adjoint(self, y):  # pragma: no cover - interface
        """A' y, the adjoint applied to measurements y of shape ``(..., *signal_shape)``."""
        raise TypeError(f"{type(self).__name__} does not define adjoint()")

    def gram(self, x):
        """A'A x."""
        return self.adjoint(self.forward(x))

    # The unchecked products, for the cost's hot loops (their input was validated once at the
    # entry of the solver).  A model of your own only needs the public methods above.
    def _forward(self, x):
        return self.forward(x)

    def _adjoint(self, y):
        return self.adjoint(y)

    def _gram(self, x):
        return self.gram(x)

    @property
    def sigma1_squared(self) -> float:  # pragma: no cover - interface
        """Largest eigenvalue σ₁² = ‖A‖₂² of A'A, the data-fit part of the Lipschitz constant of ∇ₓΦ."""
        raise TypeError(f"{type(self).__name__} does not define sigma1_squared")

    @property
    def sigma_min_squared(self) -> float:  # pragma: no cover - interface
        """Smallest eigenvalue of A'A, a strong-convexity modulus of the data-fit term."""
        raise TypeError(f"{type(self).__name__} does not define sigma_min_squared")


@dataclass(frozen=True)
class Identity(ForwardModel):
    """A = I (denoising).  Works for any signal shape."""

    signal_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.signal_shape is not None:
            object.__setattr__(self, "signal_shape", _check_shape(self.signal_shape, "signal_shape"))

    def forward(self, x):
        return _check_batch(x, self.signal_shape, "x")

    def adjoint(self, y):
        return _check_batch(y, self.signal_shape, "y")

    def gram(self, x):
        return _check_batch(x, self.signal_shape, "x")

    def _forward(self, x):
        return x

    _adjoint = _gram = _forward

    @property
    def sigma1_squared(self) -> float:
        return 1.0

    @property
    def sigma_min_squared(self) -> float:
        return 1.0


@dataclass(frozen=True)
class CircularBlur(ForwardModel):
    """A x = h ⊛ x, circular convolution with a known kernel h centred at the origin (deblurring).

    Parameters
    ----------
    kernel : array with one axis per signal axis (odd sizes are centred exactly)
    signal_shape : shape of one signal
    """

    kernel: np.ndarray
    signal_shape: tuple[int, ...]
    _spectrum: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        kernel = as_float_array(self.kernel, "kernel", min_ndim=1)
        if kernel.size == 0:
            raise ValueError(f"kernel must have at least one tap; got shape {kernel.shape}")
        shape = _check_shape(self.signal_shape, "signal_shape")
        if kernel.ndim != len(shape) or any(k > n for k, n in zip(kernel.shape, shape)):
            raise ValueError(f"kernel of shape {kernel.shape} must have one axis per signal axis and fit in {shape}")
        padded = np.zeros(shape)
        padded[tuple(slice(0, k) for k in kernel.shape)] = kernel
        padded = np.roll(padded, tuple(-(k // 2) for k in kernel.shape), axis=tuple(range(len(shape))))
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "signal_shape", shape)
        object.__setattr__(self, "_spectrum", sfft.rfftn(padded))

    def _apply(self, x, spectrum, name=None):
        if name is not None:
            x = _check_batch(x, self.signal_shape, name)
        axes = tuple(range(-len(self.signal_shape), 0))
        return sfft.irfftn(sfft.rfftn(x, axes=axes) * spectrum, s=self.signal_shape, axes=axes)

    def forward(self, x):
        return self._apply(x, self._spectrum, "x")

    def adjoint(self, y):
        return self._apply(y, np.conj(self._spectrum), "y")

    def gram(self, x):
        return self._apply(x, np.abs(self._spectrum) ** 2, "x")

    def _forward(self, x):
        return self._apply(x, self._spectrum)

    def _adjoint(self, y):
        return self._apply(y, np.conj(self._spectrum))

    def _gram(self, x):
        return self._apply(x, np.abs(self._spectrum) ** 2)

    @property
    def sigma1_squared(self) -> float:
        return float(np.max(np.abs(self._spectrum)) ** 2)

    @property
    def sigma_min_squared(self) -> float:
        return float(np.min(np.abs(self._spectrum)) ** 2)


@dataclass(frozen=True)
class PixelMask(ForwardModel):
    """A = diag(mask) with a 0/1 mask (inpainting): observed pixels pass, missing ones read 0."""

    mask: np.ndarray
    signal_shape: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        mask = as_float_array(self.mask, "mask", min_ndim=1, allow_bool=True)
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must contain only 0 (missing) and 1 (observed)")
        if not np.any(mask):
            raise ValueError("mask observes no pixel; at least one entry must be 1")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "signal_shape", mask.shape)

    def forward(self, x):
        return _check_batch(x, self.signal_shape, "x") * self.mask

    def adjoint(self, y):
        return _check_batch(y, self.signal_shape, "y") * self.mask

    def gram(self, x):
        return self.forward(x)

    def _forward(self, x):
        return x * self.mask

    _adjoint = _gram = _forward

    @property
    def sigma1_squared(self) -> float:
        return 1.0

    @property
    def sigma_min_squared(self) -> float:
        return float(np.min(self.mask))


def gaussian_kernel(size: int, width: float, ndim: int = 2) -> np.ndarray:
    """A normalised Gaussian blur kernel with ``size`` taps per axis and standard deviation ``width``.

    ``size`` must be a positive odd integer, ``width`` > 0 and ``ndim`` ≥ 1.
    """
    size = check_count(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer; got {size}")
    width = positive_scalar(width, "width")
    ndim = check_count(ndim, "ndim")
    t = np.arange(size) - size // 2
    with np.errstate(under="ignore"):
        g = np.exp(-0.5 * (t / width) ** 2)
    if not g.sum() > 0 or not np.isfinite(g).all():
        raise ValueError(f"width = {width!r} is too small for a kernel of {size} taps (all weights underflow)")
    kernel = g
    for _ in range(ndim - 1):
        kernel = np.multiply.outer(kernel, g)
    return kernel / kernel.sum()
