"""MAID: the method of adaptive inexact descent (Salehi, Mukherjee, Roberts & Ehrhardt; MAID slides).

MAID never asks for more accuracy than it needs.  Each hypergradient is computed from a lower-level
solution accurate to ε and a CG residual δ, together with a *computable* bound ω on its error; if
ω is too large for the estimate to be a sure descent direction, ε and δ shrink.  The step is chosen
by backtracking on an *inexact* sufficient-decrease test that accounts for the errors in the
evaluated losses; when backtracking fails, the accuracies shrink, and after every success they grow
again.  Work is counted in lower-level plus CG iterations, as for the other methods.

The estimate and its error bound ω are an estimator of the smooth lower level and live in
:mod:`bilevel_lib.hypergrad.inexact` (:func:`~bilevel_lib.hypergrad.inexact.inexact_hypergradient`,
re-exported here); this module keeps the training loop.

Introduced in the chapter "Single- vs double-loop algorithms".
"""

from __future__ import annotations

import time

import numpy as np

from ..hypergrad.inexact import certified_lower_tol, inexact_hypergradient
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import Hyperparameters, check_parts
from ..solvers.lower import solve_lower_level
from ..util.progress import progress_bar
from ..util.validation import NonFiniteError, check_count, check_finite_result, check_real
from .loops import TrainingHistory, TrainingResult, _check_loop_inputs

__all__ = ["inexact_hypergradient", "train_maid"]


def train_maid(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    *,
    parts=("beta", "filters"),
    n_steps: int = 50,
    eps: float = 1e-1,
    delta: float = 1e-1,
    step: float = 1.0,
    shrink: float = 0.5,
    reduce: float = 0.5,
    increase: float = 1.25,
    eta: float = 0.5,
    sufficient: float = 1e-4,
    backtracks: int = 3,
    max_rounds: int = 30,
    progress: bool = False,
    max_work: int | None = None,
) -> TrainingResult:
    """MAID (slides' Algorithm: inexact gradient, inexact backtracking, adaptive ε and δ).

    Each upper step: compute z with accuracies (ε, δ) until ω ≤ (1 − η)‖z‖ (a sure descent
    direction), shrinking ε and δ by ``reduce`` otherwise; try steps α ρ^j, j < budget, accepting the
    first that passes the inexact sufficient-decrease test

        ℓ̃(γ̂) ≤ ℓ̃(γ) − λ α ‖z‖² − ‖∇ₓℓ(x_ε(γ̂))‖ ε − ‖∇ₓℓ(x_ε(γ))‖ ε − ½ L_g ε²;

    if none passes, shrink ε, δ and enlarge the budget.  After success ε, δ and the step grow by
    ``increase`` (the step by 1/``shrink``).  The history's ``lower_gradient_norm`` records ε.
    With ``max_work`` (a count), the run stops after the first step at which the cumulative work
    reaches it, as :func:`~bilevel_lib.training.loops.train_double_loop` does.
    """
    parts, n_steps, _ = _check_loop_inputs(cost, params, loss, parts, n_steps, None)
    positive = dict(eps=eps, delta=delta, step=step, sufficient=sufficient)
    eps, delta, step, sufficient = (check_real(v, k, low=0.0, low_open=True) for k, v in positive.items())
    shrink, reduce, eta = (
        check_real(v, k, low=0.0, high=1.0, low_open=True, high_open=True)
        for k, v in dict(shrink=shrink, reduce=reduce, eta=eta).items()
    )
    increase = check_real(increase, "increase", low=1.0)
    backtracks, max_rounds = check_count(backtracks, "backtracks"), check_count(max_rounds, "max_rounds")
    max_work = None if max_work is None else check_count(max_work, "max_work")
    if not np.isfinite(getattr(loss, "lipschitz", np.nan)):
        raise TypeError(f"loss must have a finite lipschitz attribute (of ∇ₓℓ); got {type(loss).__name__}")
    start = time.perf_counter()
    history = TrainingHistory()
    settings = dict(parts=list(check_parts(parts)), n_steps=n_steps, eps=eps, delta=delta, step=step, method="MAID")
    x, state = None, None
    message = f"ran {n_steps} MAID steps"
    converged = True
    with progress_bar(n_steps, progress, "MAID") as bar:
        for u in range(n_steps):
            try:
                accepted, hyper, trial, lower, alpha, z, z_norm, lower_work, cg_work, eps, delta = _maid_step(
                    cost,
                    params,
                    loss,
                    parts,
                    x,
                    state,
                    eps,
                    delta,
                    step,
                    shrink,
                    reduce,
                    eta,
                    sufficient,
                    backtracks,
                    max_rounds,
                )
            except NonFiniteError as error:
                raise NonFiniteError(f"train_maid, upper step {u}: {error}") from error
            x, state = hyper.x, hyper.state
            if not accepted:
                message = f"MAID stopped: no sufficient decrease after {max_rounds} accuracy reductions"
                converged = False
                break
            history.append(
                loss=hyper.loss,
                gradient_norm=z_norm / np.sqrt(z.size),
                lower_gradient_norm=eps,
                lower_iterations=lower_work,
                cg_iterations=cg_work,
                elapsed=time.perf_counter() - start,
                converged=hyper.converged,
            )
            params, x = trial, lower.x
            step = alpha / shrink
            eps, delta = eps * increase, delta * increase
            bar.update(1)
            if max_work is not None and history.work[-1] >= max_work:
                message = f"stopped at step {u}: work {history.work[-1]} reached max_work = {max_work}"
                break
    return TrainingResult(params, history, x if x is not None else cost.y, message, settings, converged=converged)


def _maid_step(
    cost, params, loss, parts, x, state, eps, delta, step, shrink, reduce, eta, sufficient, backtracks, max_rounds
):
    """One MAID upper step (a certified direction, then inexact backtracking); see :func:`train_maid`."""
    lower_work, cg_work = 0, 0
    budget = backtracks
    accepted = False
    for _round in range(max_rounds):
        # (1) a certified descent direction
        while True:
            hyper = inexact_hypergradient(cost, params, loss, eps, delta, parts=parts, x0=x, state=state)
            lower_work += hyper.lower_iterations
            cg_work += hyper.cg_iterations
            x, state = hyper.x, hyper.state
            z = hyper.flat()
            z_norm = np.linalg.norm(z)
            if hyper.diagnostics["error_bound"] <= (1 - eta) * z_norm or eps < 1e-12:
                break
            eps, delta = eps * reduce, delta * reduce
        # (2) inexact backtracking
        grad_x_here = np.linalg.norm(loss.gradient(hyper.x))
        alpha = step
        for _j in range(budget):
            trial = params.unflatten(params.flatten(parts) - alpha * z, parts)
            lower = solve_lower_level(
                cost, trial, x0=hyper.x, tol=certified_lower_tol(cost, eps), max_iter=200_000, warn=False
            )
            lower_work += lower.iterations
            trial_loss = loss.value(lower.x)
            slack = np.linalg.norm(loss.gradient(lower.x)) * eps + grad_x_here * eps + 0.5 * loss.lipschitz * eps**2
            if trial_loss <= hyper.loss - sufficient * alpha * z_norm**2 - slack:
                accepted = True
                break
            alpha *= shrink
        if accepted:
            break
        eps, delta, budget = eps * reduce, delta * reduce, budget + 1
    if accepted:
        check_finite_result(trial.flatten(parts), "the trial step", "γ − α z", "the step overflowed")
    return accepted, hyper, trial, lower, alpha, z, z_norm, lower_work, cg_work, eps, delta
