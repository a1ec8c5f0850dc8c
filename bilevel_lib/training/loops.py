"""Training loops for the upper level: double loop (fixed T, fixed tolerance, HOAG schedule) and
the single-loop TTSA, with a history of loss, gradient norm, lower-level accuracy and work.

Double loop (review Sec. 5.1, Alg. 1, App. D): every upper step runs the lower level warm-started
from the previous x̂, then the implicit hypergradient (4.8) with CG warm-started from the previous
q, then one optimizer step on the learned parts of γ.  The lower level stops after ``T``
iterations (``lower_iterations``), at a fixed tolerance, or at the tolerance of a decreasing
schedule (HOAG).  Single loop (Alg. 2, TTSA): one lower-level gradient step, then one upper step
whose size decays faster than the lower one (two timescales).

Any hypergradient estimator of the contract (:mod:`bilevel_lib.hypergrad.result`) can replace the
implicit one in the double loop (``estimator=``); the history takes its work and its lower-level
residual from the contract's fields (``lower_iterations``, ``cg_iterations``,
``diagnostics["lower_residual"]``).  Work is counted as lower-level iterations plus CG iterations,
the measure of the MAID slides.
Introduced in the chapter "Single- vs double-loop algorithms".
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..hypergrad.implicit import implicit_hypergradient, implicit_step
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import Hyperparameters, check_parts
from ..solvers.lower import solve_lower_level, starting_point
from ..util.progress import progress_bar
from .optimizers import Adam

__all__ = ["TrainingHistory", "TrainingResult", "hoag_schedule", "train_double_loop", "train_ttsa"]


def hoag_schedule(initial: float = 1e-2, decay: float = 0.9, floor: float = 1e-12):
    """Tolerances ε^(u) = max(initial · decay^u, floor): summable, as HOAG's convergence needs (Alg. 1)."""
    if not (0 < decay < 1 and initial > 0):
        raise ValueError(f"need initial > 0 and 0 < decay < 1; got {initial}, {decay}")
    return lambda u: max(initial * decay**u, floor)


@dataclass
class TrainingHistory:
    """One entry per upper-level step (lists of floats/ints; ``work`` and ``seconds`` are cumulative)."""

    loss: list = field(default_factory=list)
    gradient_norm: list = field(default_factory=list)  # ‖∇ℓ‖/√R over the learned parts
    lower_gradient_norm: list = field(default_factory=list)  # max_j ‖∇ₓΦ‖/√N when ∇ℓ was taken
    lower_iterations: list = field(default_factory=list)
    cg_iterations: list = field(default_factory=list)
    work: list = field(default_factory=list)  # cumulative lower + CG iterations
    seconds: list = field(default_factory=list)  # cumulative wall time

    def append(self, *, loss, gradient_norm, lower_gradient_norm, lower_iterations, cg_iterations, elapsed):
        """Record one upper-level step.

        Parameters
        ----------
        loss : float
            The upper-level loss ℓ(γ) at the step.
        gradient_norm : float
            ‖∇ℓ‖/√R over the learned parts of γ.
        lower_gradient_norm : float
            max_j ‖∇ₓΦ‖/√N, the lower-level stationarity at which ∇ℓ was taken.
        lower_iterations : int
            The lower-level iterations of this step.
        cg_iterations : int
            The conjugate-gradient iterations of this step (0 for estimators without CG).
        elapsed : float
            The wall time since the start of the run, in seconds (stored as is: cumulative).

        ``work`` gets the previous total plus ``lower_iterations + cg_iterations``.
        """
        previous = self.work[-1] if self.work else 0
        self.loss.append(float(loss))
        self.gradient_norm.append(float(gradient_norm))
        self.lower_gradient_norm.append(float(lower_gradient_norm))
        self.lower_iterations.append(int(lower_iterations))
        self.cg_iterations.append(int(cg_iterations))
        self.work.append(int(previous + lower_iterations + cg_iterations))
        self.seconds.append(float(elapsed))

    def as_arrays(self) -> dict:
        """The history as a dict of 1-D numpy arrays, one per field, each of length the number of steps."""
        return {name: np.asarray(values) for name, values in asdict(self).items()}


@dataclass
class TrainingResult:
    """Learned γ, the final lower-level estimate x̂ and the history of the run."""

    params: Hyperparameters
    history: TrainingHistory
    x: np.ndarray
    message: str
    settings: dict = field(default_factory=dict)


def train_double_loop(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    *,
    parts=("beta", "filters"),
    n_steps: int = 100,
    optimizer=None,
    lower_iterations: int | None = None,
    lower_tol: float | None = None,
    schedule=None,
    initial_tol: float = 1e-7,
    cg_tol: float = 1e-3,
    cg_relative_to: str = "initial",
    cg_max_iter: int = 500,
    stop_gradient_norm: float | None = None,
    stop_relative_change: float | None = None,
    warm_start: bool = True,
    progress: bool = False,
    x0=None,
    estimator=None,
    estimator_settings: dict | None = None,
) -> TrainingResult:
    """Double-loop bilevel training (review Alg. 1) with a hypergradient estimator and warm starts.

    Parameters
    ----------
    parts : parts of γ to learn (β0 is frozen by default, as in the review's experiments).
    n_steps : number U of upper-level steps.
    optimizer : object with ``step(vector, gradient)``; default ``Adam()`` with the default parameters.
    lower_iterations, lower_tol, schedule
        Lower-level rule per upper step of the default (implicit) estimator: exactly T =
        ``lower_iterations`` OGM iterations (the default, with T = 10 as in App. D.2), or stop at
        ``lower_tol``, or at ``schedule(u)`` (e.g. :func:`hoag_schedule`, which also sets the CG
        tolerance, as HOAG does).  Give at most one.
    initial_tol : tolerance of the first, cold lower-level solve (App. D.2: 1e-7).
    cg_tol, cg_relative_to, cg_max_iter : CG settings of the default estimator (see
        :func:`bilevel_lib.solvers.cg.conjugate_gradient`); the default tolerance is relative to the
        warm-started initial residual, as in the authors' code.
    stop_gradient_norm : stop when ‖∇ℓ‖/√R falls below it (review Sec. 5.1, fourth design decision).
    stop_relative_change : stop when ‖γ^(u+1) − γ^(u)‖/‖γ^(u)‖ falls below it.
    warm_start : pass each step the previous step's x̂ (``x0``) and ``state`` (CG's q) (default);
        with False every estimate starts cold (from A'y and 0), to measure what warm starts save.
    progress : show a tqdm progress bar.
    estimator : callable, optional
        ``estimator(cost, params, loss, *, x0, state, **estimator_settings) -> HypergradientResult``
        (the protocol of :mod:`bilevel_lib.hypergrad.result`), e.g. ``functools.partial(
        reverse_mode_hypergradient, n_iter=50)``.  Default: :func:`~bilevel_lib.hypergrad.implicit.implicit_hypergradient` with
        the lower-level rule and CG settings above (then ``estimator_settings`` must be None).
        With an estimator of your own, the lower-level rule and CG settings do not apply: give
        its settings in ``estimator_settings``.
    estimator_settings : dict, optional
        Keyword arguments for ``estimator``.

    The history records, per step, the estimate's loss, ‖∇ℓ‖/√R over ``parts``, its
    ``diagnostics["lower_residual"]``, ``lower_iterations`` and ``cg_iterations``; the message
    counts the steps whose estimate was not ``converged``.
    """
    if sum(rule is not None for rule in (lower_iterations, lower_tol, schedule)) > 1:
        raise ValueError("give exactly one lower-level rule: lower_iterations (fixed T), lower_tol, or schedule")
    if estimator is not None and (lower_tol is not None or schedule is not None or lower_iterations is not None):
        raise ValueError(
            "lower_iterations, lower_tol and schedule configure the default estimator; "
            "give a custom estimator's settings in estimator_settings"
        )
    if estimator is None and estimator_settings is not None:
        raise ValueError("estimator_settings need an estimator")
    if estimator is None and lower_tol is None and schedule is None and lower_iterations is None:
        lower_iterations = 10
    optimizer = Adam() if optimizer is None else optimizer
    settings = dict(
        parts=list(check_parts(parts)),
        n_steps=n_steps,
        lower_iterations=lower_iterations,
        lower_tol=lower_tol,
        schedule="hoag" if schedule else None,
        initial_tol=initial_tol,
        cg_tol=cg_tol,
        cg_relative_to=cg_relative_to,
        optimizer=type(optimizer).__name__,
        warm_start=warm_start,
        estimator=getattr(estimator, "__name__", type(estimator).__name__) if estimator else "implicit",
    )

    def default_settings(u):
        """Today's settings of the implicit estimator for step u."""
        if schedule is not None:
            tol_u = schedule(u)
            return dict(
                lower_tol=tol_u,
                lower_max_iter=100_000,
                cg_tol=tol_u,
                cg_relative_to="rhs",
                cg_max_iter=cg_max_iter,
                warn=False,
            )
        return dict(
            lower_tol=lower_tol,
            lower_max_iter=lower_iterations if lower_tol is None else 100_000,
            cg_tol=cg_tol,
            cg_relative_to=cg_relative_to,
            cg_max_iter=cg_max_iter,
            warn=False,
        )

    start = time.perf_counter()
    first = solve_lower_level(cost, params, x0=x0, tol=initial_tol, max_iter=200_000)
    x, state = first.x, None
    history = TrainingHistory()
    vector = params.flatten(parts)
    message = f"ran {n_steps} upper-level steps"
    unconverged = 0
    with progress_bar(n_steps, progress, "double loop") as bar:
        for u in range(n_steps):
            if not warm_start:
                x, state = None, None
            if estimator is None:
                hyper = implicit_hypergradient(cost, params, loss, x0=x, state=state, **default_settings(u))
            else:
                hyper = estimator(cost, params, loss, x0=x, state=state, **(estimator_settings or {}))
            x, state = hyper.x, hyper.state
            unconverged += not hyper.converged
            gradient = hyper.gradient.flatten(parts)
            gradient_norm = np.linalg.norm(gradient) / np.sqrt(gradient.size)
            history.append(
                loss=hyper.loss,
                gradient_norm=gradient_norm,
                lower_gradient_norm=hyper.diagnostics["lower_residual"],
                lower_iterations=hyper.lower_iterations + (first.iterations if u == 0 else 0),
                cg_iterations=hyper.cg_iterations,
                elapsed=time.perf_counter() - start,
            )
            bar.update(1)
            if stop_gradient_norm is not None and gradient_norm < stop_gradient_norm:
                message = f"stopped at step {u}: ‖∇ℓ‖/√R = {gradient_norm:.2e} < {stop_gradient_norm:g}"
                break
            new_vector = optimizer.step(vector, gradient)
            change = np.linalg.norm(new_vector - vector) / max(np.linalg.norm(vector), 1e-300)
            vector = new_vector
            params = params.unflatten(vector, parts)
            if stop_relative_change is not None and change < stop_relative_change:
                message = f"stopped at step {u}: relative change of γ {change:.2e} < {stop_relative_change:g}"
                break
    if unconverged:
        message += f"; {unconverged} estimate(s) missed a tolerance (see HypergradientResult.message)"
    return TrainingResult(params, history, x, message, settings)


def train_ttsa(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    *,
    parts=("beta", "filters"),
    n_steps: int = 1000,
    upper_step: float = 1e-2,
    upper_decay: float = 0.75,
    cg_tol: float = 1e-2,
    cg_max_iter: int = 50,
    progress: bool = False,
    x0=None,
) -> TrainingResult:
    """TTSA, the single-loop method of review Alg. 2: per iteration u,

        x ← x − (1/L(γ)) ∇ₓΦ(x; γ)                      (one lower-level gradient step)
        γ ← γ − α_ℓ(u) ĝ,  α_ℓ(u) = upper_step · (u + 1)^(−upper_decay)

    where ĝ is (4.8) evaluated at the current x, with CG warm-started from the previous q and
    stopped at ``cg_tol`` relative to its initial residual.  The lower step stays at 1/L, the
    largest safe step, while the upper step decays (with the review's convex-case rate 3/4 by
    default), so α_ℓ/α_Φ → 0: the two timescales of the method.
    """
    if not (upper_step > 0 and 0 < upper_decay <= 1):
        raise ValueError(f"need upper_step > 0 and 0 < upper_decay ≤ 1; got {upper_step}, {upper_decay}")
    settings = dict(
        parts=list(check_parts(parts)),
        n_steps=n_steps,
        upper_step=upper_step,
        upper_decay=upper_decay,
        cg_tol=cg_tol,
        method="TTSA",
    )
    start = time.perf_counter()
    x = starting_point(cost, x0)
    q = None
    history = TrainingHistory()
    vector = params.flatten(parts)
    with progress_bar(n_steps, progress, "TTSA") as bar:
        for u in range(n_steps):
            x = x - cost.gradient(x, params) / cost.lipschitz(params)
            step = implicit_step(
                cost, params, loss, x, q, cg_tol=cg_tol, cg_max_iter=cg_max_iter, cg_relative_to="initial"
            )
            q, cg = step.q, step.cg
            gradient = step.gradient.flatten(parts)
            history.append(
                loss=loss.value(x),
                gradient_norm=np.linalg.norm(gradient) / np.sqrt(gradient.size),
                lower_gradient_norm=cost.gradient_norm(x, params).max(),
                lower_iterations=1,
                cg_iterations=cg.iterations,
                elapsed=time.perf_counter() - start,
            )
            vector = vector - upper_step * (u + 1) ** (-upper_decay) * gradient
            params = params.unflatten(vector, parts)
            bar.update(1)
    return TrainingResult(params, history, x, f"ran {n_steps} TTSA iterations", settings)
