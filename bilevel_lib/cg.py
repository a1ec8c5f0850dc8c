"""Conjugate gradient for a batch of independent symmetric positive-definite systems.

Used to solve ∇ₓₓΦ q = ∇ₓℓ (review eq. 4.10) without forming the Hessian: the Hessian of (Ex) is
block diagonal over the J training images, so each image gets its own CG step sizes, and the
whole batch moves in one vectorised step.  Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .lower import ConvergenceWarning

__all__ = ["CGResult", "conjugate_gradient"]


@dataclass
class CGResult:
    """Solution of H q = b by conjugate gradient.

    Attributes
    ----------
    x : array (J, …)          the solution estimate q
    iterations : int          CG iterations (Hessian-vector products after the first residual)
    residual : array (J,)     final ‖b_j − H q_j‖ / reference_j, the quantity compared with ``tol``
    converged : bool
    message : str
    """

    x: np.ndarray
    iterations: int
    residual: np.ndarray
    converged: bool
    message: str


def _dot(a, b):
    return np.sum(a * b, axis=tuple(range(1, a.ndim)))


def conjugate_gradient(apply_hessian, b, x0=None, *, tol: float = 1e-10, max_iter: int = 1000,
                       relative_to: str = "rhs", warn: bool = True) -> CGResult:
    """Solve H x_j = b_j for every image j of a batch (H block diagonal, symmetric positive definite).

    Parameters
    ----------
    apply_hessian : callable
        v -> H v for a batch v of b's shape.
    b : array (J, …)
    x0 : array, optional
        Warm start (e.g. the previous upper iteration's solution).  Default zero.
    tol : float
        Stop when ‖b_j − H x_j‖ ≤ tol · reference_j for every j.
    relative_to : {"rhs", "initial"}
        reference_j = ‖b_j‖ ("rhs", the default: a fixed accuracy), or the norm of the initial,
        possibly warm-started, residual ("initial", as in the review authors' code: the tolerance
        then tightens as the warm start improves).
    max_iter : int
    warn : bool
        Warn with :class:`~bilevel_lib.lower.ConvergenceWarning` when the tolerance is not met.
    """
    if relative_to not in ("rhs", "initial"):
        raise ValueError(f"relative_to must be 'rhs' or 'initial'; got {relative_to!r}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    b = np.asarray(b, dtype=np.float64)
    expand = (slice(None),) + (None,) * (b.ndim - 1)
    if x0 is None:
        x = np.zeros_like(b)
        r = b.copy()
    else:
        x = np.array(x0, dtype=np.float64)
        if x.shape != b.shape:
            raise ValueError(f"x0 must have the shape of b, {b.shape}; got {x.shape}")
        r = b - apply_hessian(x)
    reference = np.sqrt(_dot(b, b) if relative_to == "rhs" else _dot(r, r))
    reference = np.where(reference > 0, reference, 1.0)
    p = r.copy()
    rr = _dot(r, r)
    residual = np.sqrt(rr) / reference
    iterations = 0
    while iterations < max_iter and np.any(residual > tol):
        hp = apply_hessian(p)
        curvature = _dot(p, hp)
        active = residual > tol  # images that have converged stop moving
        if np.any(active & (curvature <= 0)):
            raise ValueError("the Hessian is not positive definite along a CG direction; "
                             "the lower-level cost may be non-convex at this point")
        alpha = np.where(active, rr / np.where(curvature > 0, curvature, 1.0), 0.0)
        x += alpha[expand] * p
        r -= alpha[expand] * hp
        rr_new = _dot(r, r)
        beta = np.where(active, rr_new / np.where(rr > 0, rr, 1.0), 0.0)
        p = r + beta[expand] * p
        rr = rr_new
        residual = np.sqrt(rr) / reference
        iterations += 1
    converged = bool(np.all(residual <= tol))
    if converged:
        message = f"CG reached relative residual ≤ {tol:g} in {iterations} iterations"
    else:
        message = f"CG stopped at max_iter={max_iter} with relative residual {residual.max():.3g} > tol = {tol:g}"
        if warn:
            warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return CGResult(x=x, iterations=iterations, residual=residual, converged=converged, message=message)
