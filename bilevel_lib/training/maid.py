"""MAID: the method of adaptive inexact descent (Salehi, Mukherjee, Roberts & Ehrhardt; MAID slides).

MAID never asks for more accuracy than it needs.  Each hypergradient is computed from a lower-level
solution accurate to ε and a CG residual δ, together with a *computable* bound ω on its error; if
ω is too large for the estimate to be a sure descent direction, ε and δ shrink.  The step is chosen
by backtracking on an *inexact* sufficient-decrease test that accounts for the errors in the
evaluated losses; when backtracking fails, the accuracies shrink, and after every success they grow
again.  Work is counted in lower-level plus CG iterations, as for the other methods.

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
from dataclasses import dataclass

import numpy as np

from ..solvers.cg import conjugate_gradient
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..solvers.lower import solve_lower_level
from ..problem.params import Hyperparameters
from .loops import TrainingHistory, TrainingResult
from ..util.progress import progress_bar

__all__ = ["InexactHypergradient", "inexact_hypergradient", "train_maid"]


@dataclass
class InexactHypergradient:
    """z ≈ ∇ℓ(γ) with its computable error bound ω and what it cost."""

    gradient: np.ndarray        # z over the learned parts (flat)
    bound: float                # ω ≥ ‖z − ∇ℓ(γ)‖
    x: np.ndarray
    q: np.ndarray
    loss: float
    x_error_bound: float        # ε_x ≥ ‖x − x̂‖
    lower_iterations: int
    cg_iterations: int


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
    beta_cols = np.stack([op.adjoint(np.where(np.arange(params.n_filters).reshape((1, -1) + (1,) * len(signal_axes)) == k,
                                               columns, 0.0)) for k in range(params.n_filters)])  # (K, J, *signal)
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


def inexact_hypergradient(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, eps: float, delta: float,
                          *, parts=("beta", "filters"), x0=None, q0=None) -> InexactHypergradient:
    """z ≈ ∇ℓ(γ) from x with ‖x − x̂‖ ≤ ε (certified by strong convexity) and CG residual ≤ δ, and its bound ω.

    ``loss`` must have a ``lipschitz`` attribute (the Lipschitz constant of ∇ₓℓ).
    """
    mu = cost.forward_model.sigma_min_squared
    if mu <= 0:
        raise ValueError("MAID's error bound needs a strongly convex lower level: σ_min(A)² > 0")
    n_total = cost.n_pixels * cost.n_images
    # ‖∇Φ‖ ≤ μ ε in the stacked norm guarantees ‖x − x̂‖ ≤ ε; the solver's test is per image /√N
    lower = solve_lower_level(cost, params, x0=x0, tol=mu * eps / np.sqrt(n_total), max_iter=200_000, warn=False)
    x = lower.x
    eps_x = np.linalg.norm(cost.gradient(x, params)) / mu
    rhs = loss.gradient(x)
    rhs_norm = np.linalg.norm(rhs)
    cg = conjugate_gradient(cost.hessian_operator(x, params), rhs, x0=q0, tol=max(delta / max(rhs_norm, 1e-300), 1e-15),
                            relative_to="rhs", max_iter=10_000, warn=False)
    residual = np.linalg.norm(rhs - cost.hessian_vector_product(x, params, cg.x))
    z = (cost.mixed_transpose(x, params, cg.x) * -1.0).flatten(parts)
    b_norm, lip_b, lip_h, _ = _column_bounds(cost, params, x, parts)
    lip_g = loss.lipschitz
    g_bound = rhs_norm + lip_g * eps_x
    bound = b_norm * (residual / mu + lip_g * eps_x / mu + lip_h * eps_x * g_bound / mu**2) + lip_b * eps_x * g_bound / mu
    return InexactHypergradient(gradient=z, bound=float(bound), x=x, q=cg.x, loss=loss.value(x), x_error_bound=float(eps_x),
                                lower_iterations=lower.iterations, cg_iterations=cg.iterations)


def train_maid(cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, *, parts=("beta", "filters"),
               n_steps: int = 50, eps: float = 1e-1, delta: float = 1e-1, step: float = 1.0, shrink: float = 0.5,
               reduce: float = 0.5, increase: float = 1.25, eta: float = 0.5, sufficient: float = 1e-4,
               backtracks: int = 3, max_rounds: int = 30, progress: bool = False) -> TrainingResult:
    """MAID (slides' Algorithm: inexact gradient, inexact backtracking, adaptive ε and δ).

    Each upper step: compute z with accuracies (ε, δ) until ω ≤ (1 − η)‖z‖ (a sure descent
    direction), shrinking ε and δ by ``reduce`` otherwise; try steps α ρ^j, j < budget, accepting the
    first that passes the inexact sufficient-decrease test

        ℓ̃(γ̂) ≤ ℓ̃(γ) − λ α ‖z‖² − ‖∇ₓℓ(x_ε(γ̂))‖ ε − ‖∇ₓℓ(x_ε(γ))‖ ε − ½ L_g ε²;

    if none passes, shrink ε, δ and enlarge the budget.  After success ε, δ and the step grow by
    ``increase`` (the step by 1/``shrink``).  The history's ``lower_gradient_norm`` records ε.
    """
    start = time.perf_counter()
    history = TrainingHistory()
    settings = dict(parts=list(parts), n_steps=n_steps, eps=eps, delta=delta, step=step, method="MAID")
    x, q = None, None
    message = f"ran {n_steps} MAID steps"
    with progress_bar(n_steps, progress, "MAID") as bar:
        for _ in range(n_steps):
            lower_work, cg_work = 0, 0
            budget = backtracks
            accepted = False
            for _round in range(max_rounds):
                # (1) a certified descent direction
                while True:
                    hyper = inexact_hypergradient(cost, params, loss, eps, delta, parts=parts, x0=x, q0=q)
                    lower_work += hyper.lower_iterations
                    cg_work += hyper.cg_iterations
                    x, q = hyper.x, hyper.q
                    z_norm = np.linalg.norm(hyper.gradient)
                    if hyper.bound <= (1 - eta) * z_norm or eps < 1e-12:
                        break
                    eps, delta = eps * reduce, delta * reduce
                # (2) inexact backtracking
                grad_x_here = np.linalg.norm(loss.gradient(hyper.x))
                alpha = step
                for _j in range(budget):
                    trial = params.unflatten(params.flatten(parts) - alpha * hyper.gradient, parts)
                    mu = cost.forward_model.sigma_min_squared
                    lower = solve_lower_level(cost, trial, x0=hyper.x,
                                              tol=mu * eps / np.sqrt(cost.n_pixels * cost.n_images),
                                              max_iter=200_000, warn=False)
                    lower_work += lower.iterations
                    trial_loss = loss.value(lower.x)
                    slack = (np.linalg.norm(loss.gradient(lower.x)) * eps + grad_x_here * eps
                             + 0.5 * loss.lipschitz * eps**2)
                    if trial_loss <= hyper.loss - sufficient * alpha * z_norm**2 - slack:
                        accepted = True
                        break
                    alpha *= shrink
                if accepted:
                    break
                eps, delta, budget = eps * reduce, delta * reduce, budget + 1
            if not accepted:
                message = f"MAID stopped: no sufficient decrease after {max_rounds} accuracy reductions"
                break
            history.append(loss=hyper.loss, gradient_norm=z_norm / np.sqrt(hyper.gradient.size),
                           lower_gradient_norm=eps, lower_iterations=lower_work, cg_iterations=cg_work,
                           elapsed=time.perf_counter() - start)
            params, x = trial, lower.x
            step = alpha / shrink
            eps, delta = eps * increase, delta * increase
            bar.update(1)
    return TrainingResult(params, history, x if x is not None else cost.y, message, settings)
