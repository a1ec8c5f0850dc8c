"""Hypergradients ∇ℓ(γ) of the running example by the minimiser (implicit) approach, and references.

* :func:`implicit_step`: from a given x ≈ x̂, the adjoint solve ∇ₓₓΦ q = ∇ₓℓ by CG (review eq.
  4.10–4.11) and the mixed product −(∇ₓγΦ)'q of eq. (4.8).  It is the one place this step is
  written: the implicit estimator, TTSA, MAID's inexact estimate and the recipes all call it.
* :func:`implicit_hypergradient`: review eq. (4.8)::

      ∇ℓ(γ) = ∇_γℓ − (∇ₓγΦ)' (∇ₓₓΦ)⁻¹ ∇ₓℓ,   all at x = x̂(γ),

  a lower-level solve followed by :func:`implicit_step`; for (Ex) ∇_γℓ = 0.
* :func:`kkt_hypergradient`: the same vector from the Lagrangian (KKT) view of Sec. 4.2.2,
  solved with dense linear algebra: a slow, independent check for small problems.
* :func:`finite_difference_hypergradient`: central differences of ℓ(γ) with tight lower-level
  solves, the reference every estimator is tested against.

Each estimator returns a :class:`~bilevel_lib.hypergrad.result.HypergradientResult`.
Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.ops import single_threaded_blas
from ..problem.params import PARTS, Hyperparameters, check_parts
from ..solvers.cg import CGResult, conjugate_gradient
from ..solvers.lower import solve_lower_level
from ..util.validation import as_float_array, check_choice, check_count, check_real
from .finite_differences import finite_difference_gradient
from .result import HypergradientResult, check_finite_estimate, check_problem

__all__ = [
    "HypergradientResult",
    "ImplicitStep",
    "implicit_step",
    "implicit_hypergradient",
    "kkt_hypergradient",
    "finite_difference_hypergradient",
    "gradient_angle_degrees",
]


class ImplicitStep(NamedTuple):
    """What :func:`implicit_step` returns: the gradient −(∇ₓγΦ)'q, the CG solution q and CG's result."""

    gradient: Hyperparameters
    q: np.ndarray
    cg: CGResult


@single_threaded_blas
def implicit_step(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    x,
    q0=None,
    *,
    cg_tol: float = 1e-10,
    cg_max_iter: int = 2000,
    cg_relative_to: str = "rhs",
    cg_preconditioner=None,
    warn: bool = False,
    rhs=None,
    parts=None,
) -> ImplicitStep:
    """The adjoint step of (4.8) at a given x: CG on ∇ₓₓΦ(x) q = ∇ₓℓ(x), then −(∇ₓγΦ(x))'q.

    Review eq. (4.10)–(4.11) for the solve and (4.8) for the product.  x is whatever lower-level
    estimate the caller has (a tight x̂, the T-th OGM iterate, TTSA's single-step iterate, MAID's
    ε-accurate x): the step itself does not solve the lower level.

    Parameters
    ----------
    cost, params, loss
        Φ, γ and the upper-level loss.
    x : array (J, *signal_shape)
        The point at which the Hessian, ∇ₓℓ and the mixed product are taken.
    q0 : array, optional
        CG warm start (e.g. the previous call's q).
    cg_tol, cg_max_iter, cg_relative_to
        See :func:`bilevel_lib.solvers.cg.conjugate_gradient`.
    cg_preconditioner : None, "circulant", "cholesky" or callable
        Built at x by :func:`bilevel_lib.solvers.preconditioners.make_preconditioner`.
    warn : bool
        Warn when CG misses its tolerance.
    rhs : array, optional
        ∇ₓℓ(x) when the caller has already computed it.
    parts : tuple of str, optional
        The parts of γ wanted (default all): without "filters" the mixed product skips the filter
        taps (see :meth:`~bilevel_lib.problem.cost.LowerLevelCost.mixed_transpose`) and the gradient
        holds zeros there.

    Returns
    -------
    ImplicitStep
        (gradient as Hyperparameters, q, CGResult).
    """
    check_problem(cost, params, loss)
    _check_cg_settings(cg_tol, cg_max_iter, cg_relative_to)
    x = cost.check_x(x)
    if q0 is not None:
        q0 = cost.check_x(q0, "q0")
    rhs = loss.gradient(x) if rhs is None else cost.check_x(rhs, "rhs")
    parts = None if parts is None else check_parts(parts)
    return _implicit_step(cost, params, x, q0, rhs, cg_tol, cg_max_iter, cg_relative_to, cg_preconditioner, warn, parts)


def _implicit_step(cost, params, x, q0, rhs, cg_tol, cg_max_iter, cg_relative_to, cg_preconditioner, warn, parts=None):
    """:func:`implicit_step` once its arguments are checked (x, q0 of y's shape and finite; ``rhs``,
    the loss's gradient, is checked by :func:`~bilevel_lib.solvers.cg.conjugate_gradient`)."""
    # the Hessian is dropped when this step returns; a preconditioner of the caller's own might keep it
    hessian = cost._hessian_operator(x, params, scratch=not callable(cg_preconditioner))
    preconditioner = None
    if cg_preconditioner is not None:  # an optional extra: imported only when asked for
        from ..solvers.preconditioners import make_preconditioner

        preconditioner = make_preconditioner(cg_preconditioner, hessian)
    cg = conjugate_gradient(
        hessian,
        rhs,
        x0=q0,
        tol=cg_tol,
        max_iter=cg_max_iter,
        relative_to=cg_relative_to,
        warn=warn,
        preconditioner=preconditioner,
    )
    return ImplicitStep(cost._mixed_transpose(x, params, cg.x, parts) * -1.0, cg.x, cg)


def _lower_residual(cost, params, x) -> float:
    """max_j ‖∇ₓΦ(x_j; γ)‖/√N, the lower-level residual of the contract's diagnostics."""
    return float(np.max(cost.gradient_norm(x, params)))


@single_threaded_blas
def implicit_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    x0=None,
    q0=None,
    *,
    state: dict | None = None,
    lower_tol: float | None = 1e-8,
    lower_max_iter: int = 20_000,
    cg_tol: float = 1e-10,
    cg_max_iter: int = 2000,
    cg_relative_to: str = "rhs",
    cg_preconditioner=None,
    warn: bool = True,
    parts=None,
) -> HypergradientResult:
    """∇ℓ(γ) by implicit differentiation of ∇ₓΦ(x̂; γ) = 0 (review eq. 4.8).

    Parameters
    ----------
    cost, params, loss
        Φ for the training measurements, γ, and the upper-level loss on x̂.
    x0 : array, optional
        Warm start of the lower-level solver (e.g. the previous upper iteration's x̂).
    q0 : array, optional
        Warm start of CG (e.g. the previous upper iteration's q); ``state["q"]`` if not given.
    state : dict, optional
        The previous result's ``state`` (holds ``q``).
    lower_tol, lower_max_iter
        Lower-level stopping rule ‖∇ₓΦ‖/√N < lower_tol; ``lower_tol=None`` runs exactly
        ``lower_max_iter`` OGM iterations (the fixed-T double loop of the review).
    cg_tol, cg_max_iter, cg_relative_to, cg_preconditioner
        See :func:`implicit_step`.  The preconditioner changes CG's work, not its tolerance.
    warn : bool
        Warn when the lower level or CG misses its tolerance.
    parts : tuple of str, optional
        The parts of γ wanted (default all); see :func:`implicit_step`.  ``result.parts`` records them.

    Returns
    -------
    HypergradientResult
        ``state["q"]`` is the CG solution, ``lower`` the lower-level solve; diagnostics
        ``lower_residual``, ``cg_residual``, ``cg_converged``.  ``converged`` is False when the
        lower level (with a tolerance) or CG missed its tolerance; with ``lower_tol=None`` only
        CG counts (a fixed budget has no tolerance to miss).
    """
    start = time.perf_counter()
    check_problem(cost, params, loss)
    _check_cg_settings(cg_tol, cg_max_iter, cg_relative_to)
    _check_lower_settings(lower_tol, lower_max_iter, x0, cost)
    _check_state(state)
    parts = None if parts is None else check_parts(parts)
    if q0 is None and state:
        q0 = state.get("q")
    if q0 is not None:
        q0 = cost.check_x(q0, "q0")
    lower = solve_lower_level(cost, params, x0=x0, tol=lower_tol, max_iter=lower_max_iter, warn=warn)
    x = lower.x  # finite, of y's shape: the solver checks every iterate's gradient norm
    step = _implicit_step(
        cost, params, x, q0, loss.gradient(x), cg_tol, cg_max_iter, cg_relative_to, cg_preconditioner, warn, parts
    )
    cg_residual = float(np.max(step.cg.residual))
    problems = []
    if lower_tol is not None and not lower.converged:
        problems.append(f"lower level: {lower.message}")
    if not step.cg.converged:
        problems.append(
            f"CG stopped after {step.cg.iterations} iterations at relative residual "
            f"{cg_residual:.3g} > cg_tol = {cg_tol:g}"
        )
    message = (
        "; ".join(problems)
        if problems
        else (f"{lower.message}; CG reached {cg_residual:.2g} ≤ {cg_tol:g} in {step.cg.iterations} iterations")
    )
    return check_finite_estimate(
        HypergradientResult(
            gradient=step.gradient,
            loss=loss.value(x),
            x=x,
            lower_iterations=lower.iterations,
            cg_iterations=step.cg.iterations,
            products=0,
            diagnostics=dict(
                lower_residual=float(np.max(lower.gradient_norm)),
                cg_residual=cg_residual,
                cg_converged=bool(step.cg.converged),
            ),
            seconds=time.perf_counter() - start,
            converged=not problems,
            message=message,
            method="implicit",
            state=dict(q=step.q),
            parts=parts,
            lower=lower,
        )
    )


def _check_lower_settings(lower_tol, lower_max_iter, x0, cost) -> None:
    """The lower-level options of an estimator, checked under the names the caller used."""
    if lower_tol is not None:
        check_real(lower_tol, "lower_tol", low=0.0, low_open=True)
    check_count(lower_max_iter, "lower_max_iter")
    if x0 is not None:
        cost.check_x(x0, "x0")


def _check_state(state) -> None:
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict (or None); got {type(state).__name__}")


def _check_cg_settings(cg_tol, cg_max_iter, cg_relative_to) -> None:
    """The CG settings of an estimator, checked at its entry (named as the caller passes them)."""
    check_real(cg_tol, "cg_tol", low=0.0, low_open=True)
    check_count(cg_max_iter, "cg_max_iter")
    check_choice(cg_relative_to, "cg_relative_to", ("rhs", "initial"))


def _dense_columns(apply, shape):
    """Matrix whose column i is apply(e_i) for unit vectors e_i of one image of the given shape."""
    n = int(np.prod(shape))
    unit = np.eye(n)
    return np.stack([np.ravel(apply(unit[i].reshape(shape))) for i in range(n)], axis=1)


def kkt_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    x=None,
    *,
    x0=None,
    state: dict | None = None,
    lower_tol: float = 1e-12,
    lower_max_iter: int = 200_000,
) -> HypergradientResult:
    """∇ℓ(γ) from the Lagrangian L(x, γ, ν) = ℓ(x) + ν'∇ₓΦ(x; γ) (review Sec. 4.2.2), densely.

    Stationarity in x gives ∇ₓₓΦ ν = −∇ₓℓ; then ∇ℓ(γ) = ∇_γℓ + (∇ₓγΦ)'ν.  Here the Hessian and
    the N×R Jacobian ∇ₓγΦ are formed column by column and the KKT system is solved with
    ``numpy.linalg.solve`` for each image: O(N³), for small teaching problems and tests only.

    ``x`` is the lower-level solution (J, …); without it the lower level is solved here from
    ``x0`` to ``lower_tol`` (``state`` is accepted for the estimator protocol and unused).  The
    dense solves are exact, so ``converged`` reports the lower-level solve only; ``products``
    counts the Hessian columns and mixed products formed.
    """
    start = time.perf_counter()
    check_problem(cost, params, loss)
    _check_lower_settings(lower_tol, lower_max_iter, x0, cost)
    _check_state(state)
    lower = None
    if x is None:
        lower = solve_lower_level(cost, params, x0=x0, tol=lower_tol, max_iter=lower_max_iter, warn=False)
        x = lower.x
    x = cost.check_x(x)
    n = cost.n_pixels
    if n > 2048:
        raise ValueError(f"kkt_hypergradient forms dense N×N matrices; N = {n} is too large (limit 2048)")
    rhs = loss.gradient(x)
    total = np.zeros(params.size())
    unit = np.eye(n)
    for j in range(cost.n_images):  # a dense reference: clarity over speed
        single = LowerLevelCost(cost.y[j : j + 1], cost.penalty, cost.forward_model)
        xj = x[j : j + 1]
        hessian = _dense_columns(lambda v: single.hessian_vector_product(xj, params, v[None]), cost.signal_shape)
        # column r of ∇ₓγΦ is the derivative of ∇ₓΦ in γ_r; its rows are ⟨e_i, ∂∇ₓΦ/∂γ_r⟩
        jacobian = np.stack(
            [single.mixed_transpose(xj, params, unit[i].reshape((1,) + cost.signal_shape)).flatten() for i in range(n)]
        )  # (N, R)
        multiplier = np.linalg.solve(hessian, -rhs[j].ravel())
        total += jacobian.T @ multiplier
    residual = _lower_residual(cost, params, x)
    converged = lower is None or lower.converged
    message = "dense KKT solve at the given x" if lower is None else lower.message
    if not converged:
        message = f"lower level: {lower.message}"
    return check_finite_estimate(
        HypergradientResult(
            gradient=params.unflatten(total),
            loss=loss.value(x),
            x=x,
            lower_iterations=0 if lower is None else lower.iterations,
            products=2 * n * cost.n_images,
            diagnostics=dict(lower_residual=residual),
            seconds=time.perf_counter() - start,
            converged=converged,
            message=message,
            method="kkt",
            lower=lower,
        )
    )


def finite_difference_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    *,
    parts=PARTS,
    step: float = 1e-5,
    lower_tol: float = 1e-11,
    lower_max_iter: int = 200_000,
    x0=None,
    state: dict | None = None,
) -> HypergradientResult:
    """Central differences (ℓ(γ + h e_r) − ℓ(γ − h e_r)) / 2h over the flattened ``parts`` of γ.

    Each ℓ evaluation solves the lower level to ‖∇ₓΦ‖/√N < ``lower_tol``, warm-started from the
    solution at γ.  Choose ``step`` well above the error that tolerance leaves in ℓ.  The result's
    gradient holds zeros outside ``parts`` (``result.flat()`` is the differentiated vector);
    ``converged`` is False if any of the 2R + 1 solves missed ``lower_tol``.
    """
    start = time.perf_counter()
    check_problem(cost, params, loss)
    parts = check_parts(parts)
    step = check_real(step, "step", low=0.0, low_open=True)
    _check_lower_settings(lower_tol, lower_max_iter, x0, cost)
    _check_state(state)
    base = solve_lower_level(cost, params, x0=x0, tol=lower_tol, max_iter=lower_max_iter, warn=False)
    solves = [base]

    def upper(vector):
        solved = solve_lower_level(
            cost, params.unflatten(vector, parts), x0=base.x, tol=lower_tol, max_iter=lower_max_iter, warn=False
        )
        solves.append(solved)
        return loss.value(solved.x)

    flat = finite_difference_gradient(upper, params.flatten(parts), step)
    missed = [s for s in solves if not s.converged]
    message = (
        f"{len(missed)} of {len(solves)} lower-level solves missed lower_tol = {lower_tol:g} "
        f"(worst ‖∇Φ‖/√N = {max(float(np.max(s.gradient_norm)) for s in missed):.3g})"
        if missed
        else f"{len(solves)} lower-level solves to ‖∇Φ‖/√N < {lower_tol:g}, step h = {step:g}"
    )
    return check_finite_estimate(
        HypergradientResult(
            gradient=(params * 0.0).unflatten(flat, parts),
            loss=loss.value(base.x),
            x=base.x,
            lower_iterations=sum(s.iterations for s in solves),
            diagnostics=dict(lower_residual=float(np.max(base.gradient_norm)), step=step),
            seconds=time.perf_counter() - start,
            converged=not missed,
            message=message,
            method="finite-differences",
            parts=parts,
            lower=base,
        )
    )


def gradient_angle_degrees(estimate, reference) -> float:
    """Angle in degrees between two gradient vectors (the error measure of review Fig. 5.1)."""
    a, b = np.ravel(as_float_array(estimate, "estimate")), np.ravel(as_float_array(reference, "reference"))
    if a.shape != b.shape:
        raise ValueError(f"estimate and reference must have the same size; got {a.size} and {b.size}")
    for name, vector in (("estimate", a), ("reference", b)):
        if not np.any(vector):
            raise ValueError(f"{name} is the zero vector, whose direction (and so the angle) is undefined")
    a, b = a / np.max(np.abs(a)), b / np.max(np.abs(b))  # first to O(1): no overflow in the norms
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    # 2·atan2(‖a − b‖, ‖a + b‖) keeps full precision for tiny angles, where arccos(a·b) does not
    return float(np.degrees(2.0 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b))))
