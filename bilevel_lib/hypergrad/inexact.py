"""MAID's inexact hypergradient with its computable error bound (Salehi, Mukherjee, Roberts & Ehrhardt).

An estimator of the smooth lower level like the others of this layer: from a lower-level solution
accurate to ε (certified by strong convexity) and a CG residual ≤ δ, the implicit step (4.8) of
:func:`~bilevel_lib.hypergrad.implicit.implicit_step`, plus a bound ω on the error of the estimate.
:func:`bilevel_lib.training.maid.train_maid` uses it.

The error bound (for a μ-strongly convex Φ, derived here for (Ex) with a convex φ):

    ‖x_ε − x̂‖ ≤ ε_x = ‖∇ₓΦ(x_ε)‖ / μ,      μ = σ_min(A)²
    ‖z − ∇ℓ‖ ≤ ω = ‖B‖ (‖r‖/μ + L_g ε_x/μ + L_H ε_x G/μ²) + L_B ε_x G/μ,   G = ‖∇ₓℓ(x_ε)‖ + L_g ε_x

with B = ∇ₓγΦ(x_ε) (learned columns only; ‖B‖ bounded by a Frobenius bound), r the CG residual,
L_g, L_H, L_B Lipschitz constants of ∇ₓℓ, ∇ₓₓΦ and ∇ₓγΦ in x:

    L_H = L_φ̈ Σ_k w_k ‖c_k‖₁² ‖c_k‖₂,   L_B from the columns: β_k: w_k L_φ̇ ‖c_k‖₁²,
    β0: Σ_k of those, tap (k, s): w_k ‖c_k‖₁ (2 L_φ̇ + L_φ̈ ‖c_k‖₁ ‖x̂‖_∞).

Introduced in the chapter "Single- vs double-loop algorithms".
"""

from __future__ import annotations

import time

import numpy as np

from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import Hyperparameters, check_parts
from ..solvers.lower import solve_lower_level
from ..util.validation import check_count, positive_scalar
from .implicit import implicit_step
from .result import HypergradientResult, check_finite_estimate, check_problem

__all__ = ["inexact_hypergradient", "certified_lower_tol"]


def certified_lower_tol(cost: LowerLevelCost, eps: float) -> float:
    """The per-image tolerance on ‖∇ₓΦ‖/√N that certifies ‖x − x̂‖ ≤ ε: μ ε / √(N J), μ = σ_min(A)².

    ‖∇Φ‖ ≤ μ ε in the stacked norm guarantees ‖x − x̂‖ ≤ ε for a μ-strongly convex Φ.
    """
    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    eps = positive_scalar(eps, "eps")
    mu = cost.forward_model.sigma_min_squared
    if mu <= 0:
        raise ValueError("MAID's error bound needs a strongly convex lower level: σ_min(A)² > 0")
    return mu * eps / np.sqrt(cost.n_pixels * cost.n_images)


def _column_bounds(cost: LowerLevelCost, params: Hyperparameters, x, parts):
    """(Frobenius bound of B = ∇ₓγΦ(x) over the learned parts, Lipschitz bound L_B, L_H)."""
    penalty = cost.penalty
    if not penalty.is_convex:
        raise ValueError("MAID's error bound needs a convex φ (strongly convex lower level)")
    l1 = np.sum(np.abs(params.filters.reshape(params.n_filters, -1)), axis=1)
    l2 = np.linalg.norm(params.filters.reshape(params.n_filters, -1), axis=1)
    w = params.strengths
    lip1, lip2 = penalty.lipschitz, penalty.third_derivative_bound
    op = cost.operator(params)
    slope = penalty.derivative(op.forward(x))  # (J, K, *signal)
    signal_axes = tuple(range(2, slope.ndim))
    # exact norms of the β_k columns, stacked over the batch
    columns = w.reshape((-1,) + (1,) * (slope.ndim - 2)) * slope
    beta_cols = np.stack(
        [
            op.adjoint(
                np.where(np.arange(params.n_filters).reshape((1, -1) + (1,) * len(signal_axes)) == k, columns, 0.0)
            )
            for k in range(params.n_filters)
        ]
    )  # (K, J, *signal)
    beta_norms = np.sqrt(np.sum(beta_cols**2, axis=tuple(range(1, beta_cols.ndim))))
    beta0_norm = np.sqrt(np.sum(beta_cols.sum(axis=0) ** 2))
    slope_norms = np.sqrt(np.sum(slope**2, axis=(0,) + signal_axes))  # ‖φ̇(z_k)‖ stacked over J
    x_norm = np.linalg.norm(x)
    taps = np.prod(params.filter_shape)
    fro2, lip_b2 = 0.0, 0.0
    x_inf = np.max(np.abs(x))
    if "beta0" in parts:
        fro2 += beta0_norm**2
        lip_b2 += (lip1 * np.sum(w * l1**2)) ** 2
    if "beta" in parts:
        fro2 += np.sum(beta_norms**2)
        lip_b2 += np.sum((w * lip1 * l1**2) ** 2)
    if "filters" in parts:
        fro2 += taps * np.sum((w * (slope_norms + l1 * lip1 * x_norm)) ** 2)
        lip_b2 += taps * np.sum((w * l1 * (2 * lip1 + lip2 * l1 * x_inf)) ** 2)
    lip_h = lip2 * np.sum(w * l1**2 * l2)
    return np.sqrt(fro2), np.sqrt(lip_b2), lip_h, x_inf


def inexact_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    eps: float,
    delta: float,
    *,
    parts=("beta", "filters"),
    x0=None,
    q0=None,
    state: dict | None = None,
    lower_max_iter: int = 200_000,
    cg_max_iter: int = 10_000,
) -> HypergradientResult:
    """z ≈ ∇ℓ(γ) from x with ‖x − x̂‖ ≤ ε (certified by strong convexity) and CG residual ≤ δ, and its bound ω.

    The estimate is (4.8) at the ε-accurate x (:func:`~bilevel_lib.hypergrad.implicit.implicit_step`
    with the absolute CG tolerance δ); the bound is the one in the module docstring.  ``loss``
    must have a ``lipschitz`` attribute (the Lipschitz constant of ∇ₓℓ).

    Returns
    -------
    HypergradientResult
        gradient over ``parts`` (zeros elsewhere; ``flat()`` gives z), diagnostics
        ``error_bound`` (ω ≥ ‖z − ∇ℓ(γ)‖, valid when ``converged``), ``x_error_bound`` (ε_x ≥
        ‖x − x̂‖), ``lower_residual``, ``cg_residual`` (relative, as for the implicit estimator),
        ``cg_residual_norm`` (the absolute ‖r‖ ≤ δ the bound uses), state ``q``.
    """
    start = time.perf_counter()
    check_problem(cost, params, loss)
    parts = check_parts(parts)
    eps, delta = positive_scalar(eps, "eps"), positive_scalar(delta, "delta")
    check_count(lower_max_iter, "lower_max_iter")
    check_count(cg_max_iter, "cg_max_iter")
    if not np.isfinite(getattr(loss, "lipschitz", np.nan)):
        raise TypeError(
            f"loss must have a finite lipschitz attribute (of ∇ₓℓ) for the error bound; got {type(loss).__name__}"
        )
    if q0 is None and state:
        q0 = state.get("q")
    mu = cost.forward_model.sigma_min_squared
    tol = certified_lower_tol(cost, eps)
    lower = solve_lower_level(cost, params, x0=x0, tol=tol, max_iter=lower_max_iter, warn=False)
    x = lower.x
    eps_x = np.linalg.norm(cost.gradient(x, params)) / mu
    rhs = loss.gradient(x)
    rhs_norm = np.linalg.norm(rhs)
    cg_tol = max(delta / max(rhs_norm, 1e-300), 1e-15)
    step = implicit_step(
        cost, params, loss, x, q0, cg_tol=cg_tol, cg_relative_to="rhs", cg_max_iter=cg_max_iter, rhs=rhs
    )
    residual = np.linalg.norm(rhs - cost.hessian_vector_product(x, params, step.q))
    b_norm, lip_b, lip_h, _ = _column_bounds(cost, params, x, parts)
    lip_g = loss.lipschitz
    g_bound = rhs_norm + lip_g * eps_x
    bound = (
        b_norm * (residual / mu + lip_g * eps_x / mu + lip_h * eps_x * g_bound / mu**2) + lip_b * eps_x * g_bound / mu
    )
    problems = []
    if not lower.converged:
        problems.append(f"lower level: {lower.message} (ε = {eps:g} not certified)")
    if not step.cg.converged:
        problems.append(f"CG stopped after {step.cg.iterations} iterations with ‖r‖ = {residual:.3g} > δ = {delta:g}")
    message = "; ".join(problems) if problems else f"ε = {eps:g}, δ = {delta:g}: error bound ω = {bound:.3g}"
    zero = params * 0.0
    return check_finite_estimate(
        HypergradientResult(
            gradient=zero.unflatten(step.gradient.flatten(parts), parts),
            loss=loss.value(x),
            x=x,
            lower_iterations=lower.iterations,
            cg_iterations=step.cg.iterations,
            products=1,
            diagnostics=dict(
                error_bound=float(bound),
                x_error_bound=float(eps_x),
                cg_residual=float(np.max(step.cg.residual)),
                cg_residual_norm=float(residual),
                lower_residual=float(np.max(lower.gradient_norm)),
                eps=eps,
                delta=delta,
            ),
            seconds=time.perf_counter() - start,
            converged=not problems,
            message=message,
            method="maid-inexact",
            state=dict(q=step.q),
            parts=parts,
            lower=lower,
        )
    )
