"""Sparsifying functions φ(z; ε) with their first and second derivatives (Ch. "The running example").

Each penalty acts elementwise and knows a Lipschitz constant ``L_φ̇`` of its derivative, which
enters the step-size bound (4.19) of the review.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..util.validation import positive_scalar

__all__ = ["Penalty", "CornerRounded1Norm", "LogSquare", "Quadratic", "PENALTIES"]


class Penalty:
    """Base class: subclasses define ``value``, ``derivative``, ``second_derivative`` and ``lipschitz``."""

    name = "penalty"

    # Each function takes an optional ``out`` array (z's shape, never z itself) to write into,
    # so hot loops can reuse memory; without it a new array is returned.
    def value(self, z, out=None):  # pragma: no cover - interface
        """φ(z; ε) elementwise, an array of z's shape (written into ``out`` if given)."""
        raise TypeError(f"{type(self).__name__} does not define value()")

    def derivative(self, z, out=None):  # pragma: no cover - interface
        """φ̇(z; ε) elementwise, the factor of the gradient ∇ₓΦ (review eq. 4.9, first line)."""
        raise TypeError(f"{type(self).__name__} does not define derivative()")

    def _gradient_term(self, operator, x, weights):
        """Σ_k w_k C_k' φ̇.(C_k x), the regulariser's part of ∇ₓΦ (review eq. 4.9, first line), with
        ``operator`` the filter bank C; a penalty with a faster fused kernel overrides it."""
        return operator.adjoint_of_pointwise(x, self.derivative, weights=weights)

    def second_derivative(self, z, out=None):  # pragma: no cover - interface
        """φ̈(z; ε) elementwise, the curvature in the Hessian ∇ₓₓΦ (review eq. 4.10)."""
        raise TypeError(f"{type(self).__name__} does not define second_derivative()")

    def _mixed_factors(self, z, cv, slope, curvature):
        """The pointwise part of the mixed product for (K, M) arrays z = C x and cv = C v: writes
        φ̇.(z) into ``slope`` and φ̈.(z) ⊙ cv into ``curvature`` and returns Σ_m cv ⊙ φ̇.(z) per row, shape (K,).
        Subclasses may fuse the three (:class:`CornerRounded1Norm` does)."""
        self.derivative(z, out=slope)
        per_row = np.einsum("km,km->k", cv, slope)
        self.second_derivative(z, out=curvature)
        curvature *= cv
        return per_row

    @property
    def lipschitz(self) -> float:  # pragma: no cover - interface
        """L_φ̇ = max φ̈, the Lipschitz constant of φ̇ (a float; it enters the step size 1/L)."""
        raise TypeError(f"{type(self).__name__} does not define lipschitz")

    @property
    def is_convex(self) -> bool:
        """Whether φ is convex, so that Φ is strictly convex and x̂(γ) unique (True but for LogSquare)."""
        return True

    @property
    def third_derivative_bound(self) -> float:  # pragma: no cover - interface
        """The maximum of ``|φ'''(z)|``, a Lipschitz constant of φ̈ (used by MAID's error bound)."""
        raise TypeError(f"{type(self).__name__} does not define third_derivative_bound")


def _flat(array: np.ndarray):
    """A 1-D view of all of ``array``'s entries in memory order, or None when they are not one dense block."""
    if array.flags.c_contiguous:
        return array.reshape(-1)
    if array.ndim == 0 or min(array.strides) <= 0:
        return None
    dense = array.transpose(np.argsort(array.strides)[::-1])
    return dense.reshape(-1) if dense.flags.c_contiguous else None


#: below this many entries the numpy path is as fast as a kernel call (measured: ~2 µs either way)
_COMPILED_MIN_SIZE = 64


def _compiled(z, out, eps, kernel_name):
    """Run the compiled CR1N kernel ``kernel_name`` of :mod:`bilevel_lib.problem.stencil` on z, into ``out``
    (a new array of z's layout when None), and return ``out``; or None when the kernel does not apply
    (not a float64 array, a layout it cannot take, ε outside its safe range, or some |z| beyond it,
    in which case ``out`` is left for the numpy path to overwrite)."""
    if not (isinstance(z, np.ndarray) and z.dtype == np.float64 and z.size >= _COMPILED_MIN_SIZE):
        return None
    from . import stencil  # numba, loaded on first use

    if not stencil.CR1N_SAFE**-1 <= eps <= stencil.CR1N_SAFE:
        return None
    if out is None:
        out = np.empty_like(z)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == z.shape):
        return None
    if out.strides != z.strides:
        return None
    z_flat, out_flat = _flat(z), _flat(out)
    if z_flat is None or out_flat is None:
        return None
    if getattr(stencil, kernel_name)(z_flat, eps, out_flat):
        return None  # some |z| > CR1N_SAFE: numpy's hypot
    return out


@dataclass(frozen=True)
class CornerRounded1Norm(Penalty):
    """φ(z) = sqrt(z² + ε²), the corner-rounded 1-norm (CR1N) of the review, Sec. 1.3.

    φ̇(z) = z / sqrt(z² + ε²) ∈ (−1, 1) and φ̈(z) = ε² / (z² + ε²)^{3/2} ∈ (0, 1/ε], so L_φ̇ = 1/ε.
    As ε → 0 it tends to ``|z|`` (up to the constant ε at the origin).
    """

    eps: float = 0.01
    name = "corner-rounded 1-norm"

    def __post_init__(self):
        object.__setattr__(self, "eps", positive_scalar(self.eps, "eps (corner rounding ε)"))

    # float64 arrays go through compiled kernels (bilevel_lib.problem.stencil: one pass, √(z² + ε²)
    # in place of np.hypot; φ̇ of the running example's 360,000 filter responses: 0.4 ms against
    # 6–13 ms, measured on 2 shared cores); other input, and |z| or ε so large or small that
    # z² + ε² would overflow or lose ε², through numpy, written in place into one output array.
    # np.hypot keeps sqrt(z² + ε²) finite for huge z or ε.  Both agree to rounding (≤ 4 ulp).
    def value(self, z, out=None):
        compiled = _compiled(z, out, self.eps, "cr1n_value")
        if compiled is not None:
            return compiled
        return np.hypot(z, self.eps, out=out)

    def derivative(self, z, out=None):
        compiled = _compiled(z, out, self.eps, "cr1n_derivative")
        if compiled is not None:
            return compiled
        out = np.hypot(z, self.eps, out=out)
        return np.divide(z, out, out=out)

    def _gradient_term(self, operator, x, weights):
        fused = operator._separable_cr1n_gradient(x, self.eps, weights)
        return fused if fused is not None else super()._gradient_term(operator, x, weights)

    def second_derivative(self, z, out=None):
        compiled = _compiled(z, out, self.eps, "cr1n_second_derivative")
        if compiled is not None:
            return compiled
        out = np.hypot(z, self.eps, out=out)  # h = sqrt(z² + ε²)
        with np.errstate(under="ignore"):
            ratio = np.divide(self.eps, out)  # ε/h ∈ (0, 1]
            ratio *= ratio
            return np.divide(ratio, out, out=out)  # ε²/h³ = (ε/h)²/h, no overflow of h³

    def _mixed_factors(self, z, cv, slope, curvature):
        arrays = (z, cv, slope, curvature)
        if all(isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.c_contiguous for a in arrays) and (
            z.ndim == 2 and all(a.shape == z.shape for a in arrays)
        ):
            from . import stencil

            if stencil.CR1N_SAFE**-1 <= self.eps <= stencil.CR1N_SAFE:
                per_row = np.empty(z.shape[0])
                if not stencil.cr1n_mixed_factors(z, cv, self.eps, slope, curvature, per_row):
                    return per_row
        return super()._mixed_factors(z, cv, slope, curvature)

    @property
    def lipschitz(self) -> float:
        return 1.0 / self.eps

    @property
    def third_derivative_bound(self) -> float:
        # the third derivative is −3ε²z/(z² + ε²)^(5/2), largest in magnitude at |z| = ε/2
        return 48.0 / (25.0 * np.sqrt(5.0)) / self.eps**2


@dataclass(frozen=True)
class LogSquare(Penalty):
    """φ(z) = log(1 + z²/ε²), a non-convex, heavy-tailed penalty (Chen, Ranftl & Pock; review Fig. 6.3).

    With ε = 1 it is the log(1 + z²) of the Field-of-Experts literature.  φ̇(z) = 2z/(ε² + z²),
    φ̈(z) = 2(ε² − z²)/(ε² + z²)², so L_φ̇ = 2/ε².  Φ may then be non-convex: use with care.
    """

    eps: float = 1.0
    name = "log(1 + z²/ε²)"

    def __post_init__(self):
        object.__setattr__(self, "eps", positive_scalar(self.eps, "eps (scale ε)"))

    def value(self, z, out=None):
        out = np.square(z, out=out)
        out /= self.eps**2
        return np.log1p(out, out=out)

    def derivative(self, z, out=None):
        out = np.square(z, out=out)
        out += self.eps**2
        np.divide(z, out, out=out)
        out *= 2.0
        return out

    def second_derivative(self, z, out=None):
        z2 = np.square(z)
        out = np.add(z2, self.eps**2, out=out)
        np.square(out, out=out)
        np.subtract(self.eps**2, z2, out=z2)
        z2 *= 2.0
        return np.divide(z2, out, out=out)

    @property
    def lipschitz(self) -> float:
        return 2.0 / self.eps**2

    @property
    def is_convex(self) -> bool:
        """Always False, since log(1 + z²/ε²) is concave for ``|z| > ε``; Φ may have several minimisers."""
        return False


@dataclass(frozen=True)
class Quadratic(Penalty):
    """φ(z) = z², for which the lower level of (Ex) is linear and has a closed form (review Fig. 5.1)."""

    name = "z²"

    def value(self, z, out=None):
        return np.square(z, out=out)

    def derivative(self, z, out=None):
        return np.multiply(z, 2.0, out=out)

    def second_derivative(self, z, out=None):
        if out is None:
            return np.full(np.shape(z), 2.0)
        out.fill(2.0)
        return out

    @property
    def lipschitz(self) -> float:
        return 2.0

    @property
    def third_derivative_bound(self) -> float:
        return 0.0


#: the penalty classes φ by short name (``"cr1n"``, ``"log"``, ``"quadratic"``), to call with ε
PENALTIES = {"cr1n": CornerRounded1Norm, "log": LogSquare, "quadratic": Quadratic}
