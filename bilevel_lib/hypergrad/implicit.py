"""Hypergradients ∇ℓ(γ) of the running example by the minimizer (implicit) approach, and references.

* :func:`implicit_hypergradient`: review eq. (4.8),
      ∇ℓ(γ) = ∇_γℓ − (∇ₓγΦ)' (∇ₓₓΦ)⁻¹ ∇ₓℓ,   all at x = x̂(γ),
  with the inverse applied by (optionally preconditioned) conjugate gradient on Hessian-vector
  products (eq. 4.10–4.11); for (Ex) ∇_γℓ = 0.
* :func:`kkt_hypergradient`: the same vector from the Lagrangian (KKT) view of Sec. 4.2.2,
  solved with dense linear algebra: a slow, independent check for small problems.
* :func:`finite_difference_hypergradient`: central differences of ℓ(γ) with tight lower-level
  solves, the reference every estimator is tested against.

Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..solvers.cg import conjugate_gradient
from .finite_differences import finite_difference_gradient
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..solvers.lower import LowerLevelResult, solve_lower_level
from ..problem.params import PARTS, Hyperparameters

__all__ = [
    "HypergradientResult",
    "implicit_hypergradient",
    "kkt_hypergradient",
    "finite_difference_hypergradient",
    "upper_loss",
    "gradient_angle_degrees",
]


@dataclass
class HypergradientResult:
    """A hypergradient with what it cost and how accurate its ingredients were.

    Attributes
    ----------
    gradient : Hyperparameters   ∇ℓ for β0, every β_k and every filter tap (``.flatten(parts)``)
    loss : float                 ℓ at the lower-level solution used
    x : array (J, …)             that solution x̂ (pass as ``x0`` to warm start the next call)
    q : array (J, …)             the CG solution of ∇ₓₓΦ q = ∇ₓℓ (pass as ``q0`` to warm start)
    lower : LowerLevelResult     the lower-level solve (iterations, ‖∇Φ‖/√N, converged)
    cg_iterations : int
    cg_residual : float          final relative CG residual (max over images)
    cg_converged : bool
    """

    gradient: Hyperparameters
    loss: float
    x: np.ndarray
    q: np.ndarray
    lower: LowerLevelResult
    cg_iterations: int
    cg_residual: float
    cg_converged: bool

    @property
    def lower_gradient_norm(self) -> float:
        """max_j ‖∇ₓΦ(x̂_j; γ)‖/√N at the solution used."""
        return float(np.max(self.lower.gradient_norm))


def upper_loss(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, x0=None, *,
               tol: float = 1e-8, max_iter: int = 20_000) -> tuple[float, LowerLevelResult]:
    """ℓ(γ) = loss(x̂(γ)) with x̂ from a lower-level solve to ``tol``; returns (ℓ, solve result)."""
    result = solve_lower_level(cost, params, x0=x0, tol=tol, max_iter=max_iter)
    return loss.value(result.x), result


def implicit_hypergradient(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, x0=None, q0=None, *,
                           lower_tol: float | None = 1e-8, lower_max_iter: int = 20_000,
                           cg_tol: float = 1e-10, cg_max_iter: int = 2000, cg_relative_to: str = "rhs",
                           cg_preconditioner=None, warn: bool = True) -> HypergradientResult:
    """∇ℓ(γ) by implicit differentiation of ∇ₓΦ(x̂; γ) = 0 (review eq. 4.8).

    Parameters
    ----------
    cost, params, loss
        Φ for the training measurements, γ, and the upper-level loss on x̂.
    x0 : array, optional
        Warm start of the lower-level solver (e.g. the previous upper iteration's x̂).
    q0 : array, optional
        Warm start of CG (e.g. the previous upper iteration's q).
    lower_tol, lower_max_iter
        Lower-level stopping rule ‖∇ₓΦ‖/√N < lower_tol; ``lower_tol=None`` runs exactly
        ``lower_max_iter`` OGM iterations (the fixed-T double loop of the review).
    cg_tol, cg_max_iter, cg_relative_to
        See :func:`bilevel_lib.cg.conjugate_gradient`.
    cg_preconditioner : None, "circulant", "cholesky" or callable
        Preconditioner for CG on the Hessian system (eq. 4.10), built at x̂ by
        :func:`bilevel_lib.preconditioners.make_preconditioner`: none (the default), the circulant
        approximation, the exact banded Cholesky factorisation (1-D signals and small images), or
        a callable HessianOperator -> preconditioner.  It changes CG's work, not its tolerance.
    warn : bool
        Warn when the lower level or CG misses its tolerance.

    Returns
    -------
    HypergradientResult
    """
    lower = solve_lower_level(cost, params, x0=x0, tol=lower_tol, max_iter=lower_max_iter, warn=warn)
    x = lower.x
    rhs = loss.gradient(x)
    hessian = cost.hessian_operator(x, params)
    preconditioner = None
    if cg_preconditioner is not None:  # an optional extra: imported only when asked for
        from ..solvers.preconditioners import make_preconditioner

        preconditioner = make_preconditioner(cg_preconditioner, hessian)
    cg = conjugate_gradient(hessian, rhs, x0=q0, tol=cg_tol, max_iter=cg_max_iter, relative_to=cg_relative_to,
                            warn=warn, preconditioner=preconditioner)
    gradient = cost.mixed_transpose(x, params, cg.x) * -1.0
    return HypergradientResult(gradient=gradient, loss=loss.value(x), x=x, q=cg.x, lower=lower,
                               cg_iterations=cg.iterations, cg_residual=float(np.max(cg.residual)),
                               cg_converged=cg.converged)


def _dense_columns(apply, shape):
    """Matrix whose column i is apply(e_i) for unit vectors e_i of one image of the given shape."""
    n = int(np.prod(shape))
    unit = np.eye(n)
    return np.stack([np.ravel(apply(unit[i].reshape(shape))) for i in range(n)], axis=1)


def kkt_hypergradient(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, x) -> Hyperparameters:
    """∇ℓ(γ) from the Lagrangian L(x, γ, ν) = ℓ(x) + ν'∇ₓΦ(x; γ) (review Sec. 4.2.2), densely.

    Stationarity in x gives ∇ₓₓΦ ν = −∇ₓℓ; then ∇ℓ(γ) = ∇_γℓ + (∇ₓγΦ)'ν.  Here the Hessian and
    the N×R Jacobian ∇ₓγΦ are formed column by column and the KKT system is solved with
    ``numpy.linalg.solve`` for each image: O(N³), for small teaching problems and tests only.
    ``x`` must be the lower-level solution (J, …).
    """
    x = np.asarray(x, dtype=np.float64)
    n = cost.n_pixels
    if n > 2048:
        raise ValueError(f"kkt_hypergradient forms dense N×N matrices; N = {n} is too large (limit 2048)")
    rhs = loss.gradient(x)
    total = np.zeros(params.size())
    unit = np.eye(n)
    for j in range(cost.n_images):  # a dense reference: clarity over speed
        single = LowerLevelCost(cost.y[j:j + 1], cost.penalty, cost.forward_model)
        xj = x[j:j + 1]
        hessian = _dense_columns(lambda v: single.hessian_vector_product(xj, params, v[None]), cost.signal_shape)
        # column r of ∇ₓγΦ is the derivative of ∇ₓΦ in γ_r; its rows are ⟨e_i, ∂∇ₓΦ/∂γ_r⟩
        jacobian = np.stack([single.mixed_transpose(xj, params, unit[i].reshape((1,) + cost.signal_shape)).flatten()
                             for i in range(n)])  # (N, R)
        multiplier = np.linalg.solve(hessian, -rhs[j].ravel())
        total += jacobian.T @ multiplier
    return params.unflatten(total)


def finite_difference_hypergradient(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, *,
                                    parts=PARTS, step: float = 1e-5, lower_tol: float = 1e-11,
                                    x0=None) -> np.ndarray:
    """Central differences (ℓ(γ + h e_r) − ℓ(γ − h e_r)) / 2h over the flattened ``parts`` of γ.

    Each ℓ evaluation solves the lower level to ‖∇ₓΦ‖/√N < ``lower_tol``, warm-started from the
    solution at γ.  Choose ``step`` well above the error that tolerance leaves in ℓ.
    """
    base = solve_lower_level(cost, params, x0=x0, tol=lower_tol, max_iter=200_000).x

    def upper(vector):
        solved = solve_lower_level(cost, params.unflatten(vector, parts), x0=base, tol=lower_tol, max_iter=200_000)
        return loss.value(solved.x)

    return finite_difference_gradient(upper, params.flatten(parts), step)


def gradient_angle_degrees(estimate, reference) -> float:
    """Angle in degrees between two gradient vectors (the error measure of review Fig. 5.1)."""
    a, b = np.ravel(estimate), np.ravel(reference)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    # 2·atan2(‖a − b‖, ‖a + b‖) keeps full precision for tiny angles, where arccos(a·b) does not
    return float(np.degrees(2.0 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))))
