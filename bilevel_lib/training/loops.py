"""Training loops for the upper level: double loop (fixed T, fixed tolerance, HOAG schedule) and
the single-loop TTSA, with a history of loss, gradient norm, lower-level accuracy and work.

Double loop (review Sec. 5.1, Alg. 1, App. D): every upper step runs the lower level warm-started
from the previous x̂, then the implicit hypergradient (4.8) with CG warm-started from the previous
q, then one optimiser step on the learned parts of γ.  The lower level stops after ``T``
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
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from ..hypergrad.implicit import implicit_hypergradient, implicit_step
from ..hypergrad.result import check_problem
from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import Hyperparameters, check_parts
from ..solvers.lower import ConvergenceWarning, solve_lower_level, starting_point
from ..util.progress import progress_bar
from ..util.validation import NonFiniteError, check_choice, check_count, check_finite_result, check_flag, check_real
from .optimizers import Adam

__all__ = ["TrainingHistory", "TrainingResult", "hoag_schedule", "train_double_loop", "train_ttsa"]


def hoag_schedule(
    initial: float = 1e-2,
    decay: float = 0.9,
    floor: float = 1e-12,
):
    """Tolerances ε^(u) = max(initial · decay^u, floor).

    Summable, as HOAG's convergence needs (Alg. 1).
    """
    initial = check_real(initial, "initial", low=0.0, low_open=True)
    decay = check_real(
        decay,
        "decay",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    floor = check_real(floor, "floor", low=0.0, low_open=True)
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
    converged: list = field(default_factory=list)  # did the step's estimate reach every tolerance it was given

    def append(
        self, *, loss, gradient_norm, lower_gradient_norm, lower_iterations, cg_iterations, elapsed, converged=True
    ):
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
        converged : bool
            Whether the step's estimate reached every tolerance it was asked for (its
            ``HypergradientResult.converged``; for TTSA, CG's).

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
        self.converged.append(bool(converged))

    def as_arrays(self) -> dict:
        """The history as a dict of 1-D numpy arrays, one per field, each of length the number of steps."""
        return {name: np.asarray(values) for name, values in asdict(self).items()}


@dataclass
class TrainingResult:
    """Learned γ, the final lower-level estimate x̂ and the history of the run.

    ``converged`` is False when some step's estimate missed a tolerance it was asked for
    (``history.converged`` says which; the message counts them), or the run stopped early on
    failure (MAID without sufficient decrease).
    """

    params: Hyperparameters
    history: TrainingHistory
    x: np.ndarray
    message: str
    settings: dict = field(default_factory=dict)
    converged: bool = True


def _check_loop_inputs(cost, params, loss, parts, n_steps, x0):
    """The common entry checks of the training loops; returns (parts, n_steps, x0 checked)."""
    check_problem(cost, params, loss)
    parts = check_parts(parts)
    n_steps = check_count(n_steps, "n_steps")
    if x0 is not None:
        x0 = starting_point(cost, x0)
    return parts, n_steps, x0


def _optional_positive(value, name):
    return None if value is None else check_real(value, name, low=0.0, low_open=True)


def _check_preconditioner(spec) -> None:
    """Refuse a ``cg_preconditioner`` that :func:`~bilevel_lib.solvers.preconditioners.make_preconditioner`
    would refuse at the first step, before any work is done."""
    if spec is None or callable(spec):
        return
    from ..solvers.preconditioners import PRECONDITIONERS  # an optional extra, as in implicit_step

    choices = f"None, one of {sorted(PRECONDITIONERS)} or a callable hessian -> preconditioner"
    if not isinstance(spec, str):
        raise TypeError(f"cg_preconditioner must be {choices}; got {type(spec).__name__}")
    if spec not in PRECONDITIONERS:
        raise ValueError(f"cg_preconditioner must be {choices}; got {spec!r}")


def _preconditioner_name(spec) -> str | None:
    """How the settings record a preconditioner: its name, or a callable's qualified name."""
    if spec is None or isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", type(spec).__name__)


def _report_unconverged(where: str, unconverged: int, n_steps: int, what: str) -> None:
    """Warn with a ConvergenceWarning when some steps missed a tolerance the caller asked for."""
    if unconverged:
        warnings.warn(
            f"{where}: {unconverged} of {n_steps} step(s) missed {what} (see history.converged)",
            ConvergenceWarning,
            stacklevel=3,
        )


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
    cg_preconditioner=None,
    stop_gradient_norm: float | None = None,
    stop_relative_change: float | None = None,
    warm_start: bool = True,
    progress: bool = False,
    x0=None,
    estimator=None,
    estimator_settings: dict | None = None,
    max_work: int | None = None,
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
    cg_preconditioner : None, "circulant", "cholesky" or callable
        The default estimator's CG preconditioner (:mod:`bilevel_lib.solvers.preconditioners`),
        built at each step's x̂.  It changes CG's work, not the tolerance CG stops at.
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
    max_work : int, optional
        A work budget: stop after the first step at which the cumulative work (lower-level plus CG
        iterations, ``history.work``) reaches it, so that runs given the same budget end within
        one step's work of each other.

    The history records, per step, the estimate's loss, ‖∇ℓ‖/√R over ``parts``, its
    ``diagnostics["lower_residual"]``, ``lower_iterations`` and ``cg_iterations``; the message
    counts the steps whose estimate was not ``converged``.
    """
    parts, n_steps, x0 = _check_loop_inputs(cost, params, loss, parts, n_steps, x0)
    if lower_iterations is not None:
        lower_iterations = check_count(lower_iterations, "lower_iterations")
    lower_tol = _optional_positive(lower_tol, "lower_tol")
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be a callable u -> tolerance (e.g. hoag_schedule()); got {schedule!r}")
    initial_tol = check_real(initial_tol, "initial_tol", low=0.0, low_open=True)
    warm_start, progress = check_flag(warm_start, "warm_start"), check_flag(progress, "progress")
    cg_tol = check_real(cg_tol, "cg_tol", low=0.0, low_open=True)
    check_choice(cg_relative_to, "cg_relative_to", ("rhs", "initial"))
    cg_max_iter = check_count(cg_max_iter, "cg_max_iter")
    _check_preconditioner(cg_preconditioner)
    stop_gradient_norm = _optional_positive(stop_gradient_norm, "stop_gradient_norm")
    stop_relative_change = _optional_positive(stop_relative_change, "stop_relative_change")
    max_work = None if max_work is None else check_count(max_work, "max_work")
    if optimizer is not None and not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer must have a step(vector, gradient) method; got {type(optimizer).__name__}")
    if estimator is not None and not callable(estimator):
        raise TypeError(f"estimator must be a callable (cost, params, loss, *, x0, state, ...); got {estimator!r}")
    if estimator_settings is not None and not isinstance(estimator_settings, dict):
        raise TypeError(
            f"estimator_settings must be a dict of keyword arguments; got {type(estimator_settings).__name__}"
        )
    if sum(rule is not None for rule in (lower_iterations, lower_tol, schedule)) > 1:
        raise ValueError("give exactly one lower-level rule: lower_iterations (fixed T), lower_tol, or schedule")
    if estimator is not None and (lower_tol is not None or schedule is not None or lower_iterations is not None):
        raise ValueError(
            "lower_iterations, lower_tol and schedule configure the default estimator; "
            "give a custom estimator's settings in estimator_settings"
        )
    if estimator is not None and cg_preconditioner is not None:
        raise ValueError(
            "cg_preconditioner configures the default estimator; give a custom estimator's settings in "
            "estimator_settings"
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
        cg_preconditioner=_preconditioner_name(cg_preconditioner),
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
                cg_preconditioner=cg_preconditioner,
                warn=False,
                parts=parts,
            )
        return dict(
            lower_tol=lower_tol,
            lower_max_iter=lower_iterations if lower_tol is None else 100_000,
            cg_tol=cg_tol,
            cg_relative_to=cg_relative_to,
            cg_max_iter=cg_max_iter,
            cg_preconditioner=cg_preconditioner,
            warn=False,
            parts=parts,
        )

    start = time.perf_counter()
    try:
        first = solve_lower_level(cost, params, x0=x0, tol=initial_tol, max_iter=200_000)
    except NonFiniteError as error:
        raise NonFiniteError(f"train_double_loop, the first (cold) lower-level solve: {error}") from error
    x, state = first.x, None
    history = TrainingHistory()
    vector = params.flatten(parts)
    message = f"ran {n_steps} upper-level steps"
    unconverged = 0
    fixed_settings = None if schedule is not None else default_settings(0)  # the same at every step
    # one BLAS thread for the whole run: the filter-bank products limit BLAS to one thread anyway
    # (problem.ops.single_threaded_blas), and under this limit they skip setting and lifting it
    with progress_bar(n_steps, progress, "double loop") as bar, threadpool_limits(limits=1, user_api="blas"):
        for u in range(n_steps):
            if not warm_start:
                x, state = None, None
            try:
                if estimator is None:
                    settings_u = default_settings(u) if fixed_settings is None else fixed_settings
                    hyper = implicit_hypergradient(cost, params, loss, x0=x, state=state, **settings_u)
                else:
                    hyper = estimator(cost, params, loss, x0=x, state=state, **(estimator_settings or {}))
            except NonFiniteError as error:
                raise NonFiniteError(f"train_double_loop, upper step {u}: {error}") from error
            x, state = hyper.x, hyper.state
            unconverged += not hyper.converged
            gradient = hyper.gradient.flatten(parts)
            where = f"train_double_loop, upper step {u}"
            check_finite_result(gradient, where, f"the hypergradient ∇ℓ ({hyper.method})", hyper.message)
            check_finite_result(hyper.loss, where, "the loss ℓ", hyper.message)
            with np.errstate(over="ignore"):  # a huge but finite gradient may have an infinite norm
                gradient_norm = np.linalg.norm(gradient) / np.sqrt(gradient.size)
            history.append(
                loss=hyper.loss,
                gradient_norm=gradient_norm,
                lower_gradient_norm=hyper.diagnostics["lower_residual"],
                lower_iterations=hyper.lower_iterations + (first.iterations if u == 0 else 0),
                cg_iterations=hyper.cg_iterations,
                elapsed=time.perf_counter() - start,
                converged=hyper.converged,
            )
            bar.update(1)
            if stop_gradient_norm is not None and gradient_norm < stop_gradient_norm:
                message = f"stopped at step {u}: ‖∇ℓ‖/√R = {gradient_norm:.2e} < {stop_gradient_norm:g}"
                break
            try:
                new_vector = optimizer.step(vector, gradient)
            except NonFiniteError as error:
                raise NonFiniteError(f"{where}: {error}") from error
            check_finite_result(new_vector, where, "γ after the optimizer step", "the step overflowed")
            with np.errstate(over="ignore", invalid="ignore"):
                change = np.linalg.norm(new_vector - vector) / max(np.linalg.norm(vector), 1e-300)
            vector = new_vector
            params = params.unflatten(vector, parts)
            if stop_relative_change is not None and change < stop_relative_change:
                message = f"stopped at step {u}: relative change of γ {change:.2e} < {stop_relative_change:g}"
                break
            if max_work is not None and history.work[-1] >= max_work:
                message = f"stopped at step {u}: work {history.work[-1]} reached max_work = {max_work}"
                break
    if unconverged:
        message += f"; {unconverged} estimate(s) missed a tolerance (see history.converged)"
        _report_unconverged("train_double_loop", unconverged, len(history.loss), "a tolerance (CG or lower level)")
    return TrainingResult(params, history, x, message, settings, converged=not unconverged)


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
    parts, n_steps, x0 = _check_loop_inputs(cost, params, loss, parts, n_steps, x0)
    upper_step = check_real(upper_step, "upper_step", low=0.0, low_open=True)
    upper_decay = check_real(upper_decay, "upper_decay", low=0.0, high=1.0, low_open=True)
    cg_tol = check_real(cg_tol, "cg_tol", low=0.0, low_open=True)
    cg_max_iter = check_count(cg_max_iter, "cg_max_iter")
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
    unconverged = 0
    with progress_bar(n_steps, progress, "TTSA") as bar:
        for u in range(n_steps):
            where = f"train_ttsa, iteration {u}"
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    x = x - cost._gradient(x, params) / cost.lipschitz(params)
                check_finite_result(x, where, "the lower-level iterate x", "the lower-level step overflowed")
                step = implicit_step(
                    cost, params, loss, x, q, cg_tol=cg_tol, cg_max_iter=cg_max_iter, cg_relative_to="initial"
                )
            except NonFiniteError as error:
                raise NonFiniteError(f"{where}: {error}") from error
            q, cg = step.q, step.cg
            unconverged += not cg.converged
            gradient = step.gradient.flatten(parts)
            check_finite_result(gradient, where, "the hypergradient ∇ℓ")
            history.append(
                loss=loss.value(x),
                gradient_norm=np.linalg.norm(gradient) / np.sqrt(gradient.size),
                lower_gradient_norm=cost.gradient_norm(x, params).max(),
                lower_iterations=1,
                cg_iterations=cg.iterations,
                elapsed=time.perf_counter() - start,
                converged=cg.converged,
            )
            vector = vector - upper_step * (u + 1) ** (-upper_decay) * gradient
            check_finite_result(vector, where, "γ after the upper step", "the step overflowed")
            params = params.unflatten(vector, parts)
            bar.update(1)
    message = f"ran {n_steps} TTSA iterations"
    if unconverged:
        message += f"; CG missed cg_tol = {cg_tol:g} in {unconverged} of them (see history.converged)"
        _report_unconverged("train_ttsa", unconverged, n_steps, f"CG's tolerance cg_tol = {cg_tol:g}")
    return TrainingResult(params, history, x, message, settings, converged=not unconverged)
