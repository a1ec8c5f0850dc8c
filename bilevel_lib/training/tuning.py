"""Tuning the strengths β: grid search, random search and gradient descent (Ch. "Tuning β").

Every method reports how many lower-level solves and iterations it spent, the currency in which
the review compares them (Sec. 3.2).  Lower-level solves are warm-started from the nearest
previous solution and stop at ``lower_tol`` (or ``lower_max_iter``); ``n_steps`` counts upper-level
iterations, as in the training loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..hypergrad.implicit import implicit_hypergradient
from ..hypergrad.result import check_problem
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import Hyperparameters, check_parts
from ..solvers.lower import solve_lower_level
from ..util.validation import (
    NonFiniteError,
    as_float_array,
    check_count,
    check_finite_result,
    check_generator,
    check_real,
)

__all__ = ["SearchResult", "DescentResult", "grid_search_beta0", "random_search_beta", "gradient_descent_beta"]


@dataclass
class SearchResult:
    """Outcome of a gradient-free search.

    Attributes
    ----------
    best : Hyperparameters      the best γ found
    best_loss : float
    candidates : array (M, …)   the values tried (β0 values, or β vectors)
    losses : array (M,)         ℓ at each candidate
    n_solves : int              lower-level solves
    lower_iterations : int      total lower-level iterations
    converged : bool            every lower-level solve reached ``lower_tol``
    message : str
    """

    best: Hyperparameters
    best_loss: float
    candidates: np.ndarray
    losses: np.ndarray
    n_solves: int
    lower_iterations: int
    converged: bool = True
    message: str = ""


@dataclass
class DescentResult:
    """Outcome of gradient descent on some parts of γ, with its history (one entry per iterate).

    ``solves[i]`` is the number of lower-level solves spent up to iterate i (for loss-vs-work plots).
    ``converged`` is False when a lower-level or CG solve missed its tolerance (each also warned);
    ``message`` says how the descent ended.
    """

    params: Hyperparameters
    loss: list = field(default_factory=list)
    solves: list = field(default_factory=list)
    gradient_norm: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    iterates: list = field(default_factory=list)
    n_solves: int = 0
    lower_iterations: int = 0
    cg_iterations: int = 0
    converged: bool = True
    message: str = ""


def _check_tuning(cost, params, loss, lower_tol, lower_max_iter):
    check_problem(cost, params, loss)
    check_real(lower_tol, "lower_tol", low=0.0, low_open=True)
    check_count(lower_max_iter, "lower_max_iter")


def _search_message(what, n_solves, missed, lower_tol):
    if missed:
        return f"{what}: {missed} of {n_solves} lower-level solves missed lower_tol = {lower_tol:g}"
    return f"{what}: {n_solves} lower-level solves to lower_tol = {lower_tol:g}"


def grid_search_beta0(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    grid,
    *,
    lower_tol: float = 1e-6,
    lower_max_iter: int = 20_000,
) -> SearchResult:
    """ℓ on a grid of β0 values (other parts of γ fixed).

    Each solve is warm-started from the one at the previous grid
    point. This is how the review's experiments choose β0 before
    learning the rest (App. D).
    """
    _check_tuning(cost, params, loss, lower_tol, lower_max_iter)
    grid = as_float_array(grid, "grid")
    if grid.ndim != 1 or grid.size == 0:
        expected = "a non-empty 1-D array of β0 values"
        got = f"got shape {grid.shape}"
        raise ValueError(f"grid must be {expected}; {got}")
    losses, x, iterations, missed = np.empty(grid.size), None, 0, 0
    for i, beta0 in enumerate(grid):
        gamma = Hyperparameters(beta0, params.beta, params.filters)
        try:
            result = solve_lower_level(
                cost,
                gamma,
                x0=x,
                tol=lower_tol,
                max_iter=lower_max_iter,
            )
        except NonFiniteError as error:
            where = f"β0 = {beta0:g} (grid point {i})"
            message = f"grid_search_beta0, {where}: {error}"
            raise NonFiniteError(message) from error
        x = result.x
        iterations += result.iterations
        missed += not result.converged
        losses[i] = loss.value(result.x)
    best = int(np.argmin(losses))
    n = grid.size
    message = _search_message("grid search", n, missed, lower_tol)
    return SearchResult(
        Hyperparameters(grid[best], params.beta, params.filters),
        float(losses[best]),
        grid,
        losses,
        grid.size,
        iterations,
        converged=not missed,
        message=message,
    )


def random_search_beta(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    n_samples: int,
    rng,
    *,
    low: float = -2.0,
    high: float = 2.0,
    lower_tol: float = 1e-6,
    lower_max_iter: int = 20_000,
) -> SearchResult:
    """ℓ at ``n_samples`` random vectors β with entries uniform in [low, high] (β0 and filters fixed).

    Samples come from ``rng`` (a seed or Generator); each solve is warm-started from the solution
    of the best sample so far.
    """
    _check_tuning(cost, params, loss, lower_tol, lower_max_iter)
    n_samples = check_count(n_samples, "n_samples")
    low, high = check_real(low, "low"), check_real(high, "high")
    if not low < high:
        raise ValueError(f"low must be < high; got low = {low:g}, high = {high:g}")
    if isinstance(rng, (bool, np.bool_)) or not (
        rng is None
        or isinstance(rng, (int, np.integer, np.random.Generator, np.random.BitGenerator, np.random.SeedSequence))
    ):
        raise TypeError(f"rng must be a seed (int) or a numpy.random.Generator; got {type(rng).__name__}")
    rng = check_generator(rng, "rng")
    candidates = rng.uniform(low, high, size=(n_samples, params.n_filters))
    losses, iterations, best_x, missed = np.empty(n_samples), 0, None, 0
    for i, beta in enumerate(candidates):
        try:
            result = solve_lower_level(
                cost,
                Hyperparameters(params.beta0, beta, params.filters),
                x0=best_x,
                tol=lower_tol,
                max_iter=lower_max_iter,
            )
        except NonFiniteError as error:
            raise NonFiniteError(f"random_search_beta, sample {i}: {error}") from error
        iterations += result.iterations
        missed += not result.converged
        losses[i] = loss.value(result.x)
        if losses[i] <= losses[: i + 1].min():
            best_x = result.x
    best = int(np.argmin(losses))
    return SearchResult(
        Hyperparameters(params.beta0, candidates[best], params.filters),
        float(losses[best]),
        candidates,
        losses,
        n_samples,
        iterations,
        converged=not missed,
        message=_search_message("random search", n_samples, missed, lower_tol),
    )


def gradient_descent_beta(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    *,
    parts=("beta",),
    n_steps: int = 20,
    step: float = 1.0,
    lower_tol: float = 1e-8,
    cg_tol: float = 1e-8,
    lower_max_iter: int = 20_000,
    shrink: float = 0.5,
    grow: float = 1.5,
    max_backtracks: int = 30,
) -> DescentResult:
    """Gradient descent on the chosen parts of γ with the implicit hypergradient (eq. 4.8).

    Each iteration takes the step γ − s ∇ℓ, accepting it when ℓ decreases by at least
    10⁻⁴ s ‖∇ℓ‖² (Armijo); otherwise s shrinks by ``shrink``.  After an accepted step s grows by
    ``grow``.  Lower-level and CG solves are warm-started from the previous iterate.
    """
    _check_tuning(cost, params, loss, lower_tol, lower_max_iter)
    parts = check_parts(parts)
    n_steps = check_count(n_steps, "n_steps")
    step = check_real(step, "step", low=0.0, low_open=True)
    check_real(cg_tol, "cg_tol", low=0.0, low_open=True)
    shrink = check_real(shrink, "shrink", low=0.0, high=1.0, low_open=True, high_open=True)
    grow = check_real(grow, "grow", low=1.0)
    max_backtracks = check_count(max_backtracks, "max_backtracks")
    out = DescentResult(params=params, message=f"ran {n_steps} steps")
    hyper = implicit_hypergradient(
        cost, params, loss, lower_tol=lower_tol, cg_tol=cg_tol, lower_max_iter=lower_max_iter
    )
    out.n_solves, out.lower_iterations, out.cg_iterations = 1, hyper.lower_iterations, hyper.cg_iterations
    current, x, state = params, hyper.x, hyper.state
    out.converged = hyper.converged
    for u in range(n_steps):
        gradient = hyper.gradient.flatten(parts)
        check_finite_result(gradient, f"gradient_descent_beta, step {u}", "the hypergradient ∇ℓ", hyper.message)
        out.loss.append(hyper.loss)
        out.gradient_norm.append(float(np.linalg.norm(gradient)))
        out.iterates.append(current)
        out.solves.append(out.n_solves)
        out.steps.append(step)
        for _ in range(max_backtracks):
            trial = current.unflatten(current.flatten(parts) - step * gradient, parts)
            result = solve_lower_level(cost, trial, x0=x, tol=lower_tol, max_iter=lower_max_iter)
            out.n_solves += 1
            out.lower_iterations += result.iterations
            out.converged &= result.converged
            if loss.value(result.x) <= hyper.loss - 1e-4 * step * gradient @ gradient:
                break
            step *= shrink
        else:  # no decrease found: at a stationary point to working accuracy
            out.message = f"stopped at step {u}: no decrease after {max_backtracks} backtracks (stationary)"
            break
        current = trial
        hyper = implicit_hypergradient(
            cost,
            current,
            loss,
            x0=result.x,
            state=state,
            lower_tol=lower_tol,
            cg_tol=cg_tol,
            lower_max_iter=lower_max_iter,
        )
        out.n_solves += 1
        out.lower_iterations += hyper.lower_iterations
        out.cg_iterations += hyper.cg_iterations
        out.converged &= hyper.converged
        x, state = hyper.x, hyper.state
        step *= grow
    out.params = current
    out.solves.append(out.n_solves)
    out.loss.append(hyper.loss)
    out.gradient_norm.append(float(np.linalg.norm(hyper.gradient.flatten(parts))))
    out.iterates.append(current)
    return out
