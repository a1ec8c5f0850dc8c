"""(Preconditioned) conjugate gradient for a batch of independent symmetric positive-definite systems.

Used to solve ∇ₓₓΦ q = ∇ₓℓ (review eq. 4.10) without inverting the Hessian: the Hessian of (Ex)
is block diagonal over the J training images, so each image gets its own CG step sizes.  Every
iteration makes one Hessian-vector product for the whole batch, then runs each image's scalar
recurrences and vector updates on its own row (BLAS level 1: on small images CG's time is mostly
per-call overhead).  Introduced in the chapter "Implicit differentiation".

With a preconditioner M ≈ ∇ₓₓΦ (a callable r -> M⁻¹ r, e.g.
:class:`~bilevel_lib.solvers.preconditioners.CirculantPreconditioner`) this is preconditioned CG: the
iterates are those of CG on M^{-1/2} H M^{-1/2}, which converges faster when M captures the
spread of H's eigenvalues.  The stopping test is the same either way, on the true residual
‖b_j − H x_j‖, so a preconditioner changes the work but not the accuracy of the answer.

Given a :class:`~bilevel_lib.problem.cost.HessianOperator` that offers a compiled loop (method "stencil",
see :mod:`bilevel_lib.problem.stencil`) and no preconditioner, the same recurrences run compiled: a few µs
per iteration on a small image instead of ~20 µs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from ..problem.ops import single_threaded_blas
from ..util.validation import NonFiniteError, as_float_array, check_choice, check_count, check_real
from .lower import ConvergenceWarning

__all__ = ["CGResult", "conjugate_gradient"]


@dataclass
class CGResult:
    """Solution of H q = b by conjugate gradient.

    Attributes
    ----------
    x : array (J, …)
        the solution estimate q
    iterations : int
        CG iterations (Hessian-vector products after the first residual)
    residual : array (J,)
        final ‖b_j − H q_j‖ / reference_j, the quantity compared with ``tol``
    converged : bool
    message : str
    """

    x: np.ndarray
    iterations: int
    residual: np.ndarray
    converged: bool
    message: str


# BLAS level 1 on the rows of the (J, n) work arrays, in place: on small images CG is bound by
# per-call overhead, and these calls cost about a third of the equivalent numpy expressions
_dot, _axpy, _scal = blas.ddot, blas.daxpy, blas.dscal


def _checked_preconditioner(preconditioner, shape):
    """Wrap ``preconditioner`` so that an output of the wrong shape or with NaN/inf raises ValueError."""
    if not callable(preconditioner):
        raise TypeError(f"preconditioner must be a callable r -> M⁻¹ r; got {type(preconditioner).__name__}")

    def apply(r):
        z = preconditioner(r)
        if not isinstance(z, np.ndarray) or z.shape != shape:
            raise ValueError(
                f"the preconditioner must return an array of the residual's shape {shape}; "
                f"got {getattr(z, 'shape', type(z).__name__)}"
            )
        return z

    return apply


def _check_residuals(rr, images, iteration) -> None:
    """Raise :class:`NonFiniteError` if a squared residual norm ‖r_j‖² is NaN or infinite (a cheap scalar test)."""
    for j in images:
        if not math.isfinite(rr[j]):
            where = "for the initial residual b − H x0" if iteration == 0 else f"at iteration {iteration}"
            raise NonFiniteError(
                f"conjugate_gradient: the residual ‖b − H x‖ of image {j} became NaN or infinite {where}: "
                "H v returned non-finite values or overflowed (huge entries in b, x0 or the Hessian)"
            )


@single_threaded_blas
def conjugate_gradient(
    apply_hessian,
    b,
    x0=None,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    relative_to: str = "rhs",
    warn: bool = True,
    preconditioner=None,
) -> CGResult:
    """Solve H x_j = b_j for every image j of a batch (H block diagonal, symmetric positive definite).

    Parameters
    ----------
    apply_hessian : callable
        v -> H v for a batch v of b's shape (e.g. :meth:`~bilevel_lib.problem.cost.LowerLevelCost.hessian_operator`).
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
        Warn with :class:`~bilevel_lib.solvers.lower.ConvergenceWarning` when the tolerance is not met.
    preconditioner : callable, optional
        r -> M⁻¹ r for a batch r of b's shape, with M symmetric positive definite and block
        diagonal like H (one block per image).  Default none (plain CG).  A result of the wrong
        shape, non-finite, or showing that M is not positive definite raises ``ValueError``.

    Raises
    ------
    TypeError, ValueError
        Bad input (named in the message): b or x0 not a finite real array of matching shapes,
        tol not > 0, max_iter not an integer ≥ 1, an unknown ``relative_to``.
    NonFiniteError
        A residual became NaN or infinite (checked on the scalar ‖r_j‖² of every iteration).
    """
    check_choice(relative_to, "relative_to", ("rhs", "initial"))
    tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_count(max_iter, "max_iter", minimum=1)
    if not callable(apply_hessian):
        raise TypeError(f"apply_hessian must be a callable v -> H v; got {type(apply_hessian).__name__}")
    b = as_float_array(b, "b")
    if b.ndim == 0:
        raise ValueError("b must have a leading batch axis, shape (J, …); got a scalar")
    if b.size == 0:
        raise ValueError(f"b must have at least one entry; got shape {b.shape}")
    precondition = None if preconditioner is None else _checked_preconditioner(preconditioner, b.shape)
    rows = (b.shape[0], math.prod(b.shape[1:]))  # every vector is also viewed as (J, n): one row per system

    # work on C-ordered (J, n) arrays, so that every reshape below is a view
    if x0 is None:
        x_rows = np.zeros(b.shape).reshape(rows)
        r_rows = np.array(b, order="C").reshape(rows)
    else:
        x = np.array(as_float_array(x0, "x0"), dtype=np.float64, order="C")
        if x.shape != b.shape:
            raise ValueError(f"x0 must have the shape of b, {b.shape}; got {x.shape}")
        x_rows = x.reshape(rows)
        hx = apply_hessian(x)
        if np.shape(hx) != b.shape:
            raise ValueError(f"apply_hessian must return an array of b's shape {b.shape}; got {np.shape(hx)}")
        r_rows = np.ascontiguousarray(b - hx, dtype=np.float64).reshape(rows)
    n_images = b.shape[0]
    rr = [_dot(r, r) for r in r_rows]
    _check_residuals(rr, range(n_images), 0)
    reference = [np.sqrt(_dot(bj, bj) if relative_to == "rhs" else rrj) for bj, rrj in zip(b.reshape(rows), rr)]
    reference = [ref if ref > 0 else 1.0 for ref in reference]
    limit = [tol * ref for ref in reference]  # image j is done once ‖r_j‖ ≤ limit_j

    def preconditioned(images):
        """z = M⁻¹ r, and ⟨r_j, z_j⟩ for the given images (z = r and ⟨r_j, r_j⟩ without a preconditioner)."""
        if precondition is None:
            return r_rows, {j: rr[j] for j in images}
        z_rows = np.ascontiguousarray(precondition(r_rows.reshape(b.shape)), dtype=np.float64).reshape(rows)
        rz = {j: _dot(r_rows[j], z_rows[j]) for j in images}
        for j in images:
            if not np.isfinite(rz[j]):
                raise NonFiniteError("conjugate_gradient: the preconditioner returned NaN or infinite values")
            if rz[j] <= 0 and rr[j] > 0:
                raise ValueError("the preconditioner is not positive definite: ⟨r, M⁻¹ r⟩ ≤ 0 for some image")
        return z_rows, rz

    active = [j for j in range(n_images) if math.sqrt(rr[j]) > limit[j]]  # converged images stop moving
    iterations = 0
    compiled_loop = getattr(apply_hessian, "compiled_cg", None) if precondition is None else None
    if compiled_loop is not None and active:  # the same recurrences, compiled (bilevel_lib.problem.stencil)
        iterations, rr = compiled_loop(x_rows.reshape(b.shape), r_rows.reshape(b.shape), np.array(limit), max_iter)
        if iterations < 0:
            raise ValueError(
                "the Hessian is not positive definite along a CG direction; "
                "the lower-level cost may be non-convex at this point"
            )
        rr = list(rr)
        _check_residuals(rr, range(n_images), iterations)
        active = [j for j in range(n_images) if math.sqrt(rr[j]) > limit[j]]  # empty unless max_iter was hit
    z_rows, rz = preconditioned(active)
    p_rows = z_rows.copy()
    while iterations < max_iter and active:
        hp = apply_hessian(p_rows.reshape(b.shape))
        if np.shape(hp) != b.shape:
            raise ValueError(f"apply_hessian must return an array of b's shape {b.shape}; got {np.shape(hp)}")
        hp_rows = np.ascontiguousarray(hp, dtype=np.float64).reshape(rows)
        for j in active:  # each image's own CG step: scalar recurrences, BLAS level-1 vector updates
            curvature = _dot(p_rows[j], hp_rows[j])
            if not curvature > 0:
                raise ValueError(
                    "the Hessian is not positive definite along a CG direction; "
                    "the lower-level cost may be non-convex at this point"
                )
            alpha = rz[j] / curvature
            _axpy(p_rows[j], x_rows[j], a=alpha)  # x_j += α p_j
            _axpy(hp_rows[j], r_rows[j], a=-alpha)  # r_j −= α H p_j
            rr[j] = _dot(r_rows[j], r_rows[j])
        z_rows, rz_new = preconditioned(active)
        for j in active:
            _scal(rz_new[j] / rz[j], p_rows[j])  # p_j = z_j + β p_j
            _axpy(z_rows[j], p_rows[j])
        rz.update(rz_new)
        iterations += 1
        _check_residuals(rr, active, iterations)
        active = [j for j in active if math.sqrt(rr[j]) > limit[j]]
    residual = np.sqrt(rr) / np.array(reference)
    converged = not active
    if converged:
        message = f"CG reached relative residual ≤ {tol:g} in {iterations} iterations"
    else:
        message = f"CG stopped at max_iter={max_iter} with relative residual {residual.max():.3g} > tol = {tol:g}"
        if warn:
            warnings.warn(message, ConvergenceWarning, stacklevel=3)  # the caller, past the BLAS-limit wrapper
    return CGResult(
        x=x_rows.reshape(b.shape), iterations=iterations, residual=residual, converged=converged, message=message
    )
