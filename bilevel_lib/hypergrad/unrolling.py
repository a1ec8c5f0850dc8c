"""Hypergradients by unrolling T lower-level iterations (review Sec. 4.4, App. B, Sec. 7.2).

The unrolled approach replaces x̂(γ) by the T-th iterate of a solver started at a fixed x_0
(review eq. 4.17)::

    x_t = Ψ(x_{t−1}; γ),  t = 1, …, T,        ℓ_T(γ) = ℓ(x_T(γ)),

and differentiates that map exactly.  Two solvers are unrolled:

* ``"gd"``:  gradient descent, Ψ(x; γ) = x − α ∇ₓΦ(x; γ);
* ``"ogm"``: the optimized gradient method with the *same* recursion as
  :func:`bilevel_lib.solvers.lower.solve_lower_level` (primary sequence y_t, momentum factors from θ_t),
  but **without restart**: a restart is a yes/no decision on the sign of an inner product, and
  the unrolled map is not differentiable where that decision flips.  The momentum state y_t is
  part of the unrolled map, so ``solve_lower_level(..., method="ogm", restart=False, tol=None,
  max_iter=T, step=α)`` returns exactly our x_T.

The step α is an argument and is held **fixed** in the differentiation.  By default it is 1/L(γ)
with L from the Lipschitz bound (4.19) evaluated once at the given γ; its dependence on γ is not
differentiated.  Recomputing α = 1/L(γ) at every upper iteration is a design choice with
consequences (review Sec. 4.4.1), discussed in the chapter.

With H_t = ∇ₓΨ(x_{t−1}; γ) = I − α∇ₓₓΦ and J_t = ∇_γΨ(x_{t−1}; γ) = −α∇ₓγΦ (for gradient
descent), the chain rule gives (review eq. 4.18 / B.1)

    ∇ℓ_T(γ) = Σ_t J_t' H_{t+1}' ⋯ H_T' ∇ₓℓ(x_T).

Four estimators are provided; each returns a :class:`~bilevel_lib.hypergrad.result.HypergradientResult`
(``method`` "unrolled-reverse", "unrolled-forward", "unrolled-truncated" or "jacobian-free";
``lower_iterations`` = T; ``products`` the Hessian-vector plus mixed products; diagnostics
``lower_residual`` at x_T, ``solver``, ``n_iter``, ``backprop_steps``, ``step``,
``hessian_vector_products``, ``mixed_products``, ``stored_bytes`` and, on request,
``truncated_gradients``).  The unrolled map has no inner tolerance: it is differentiated exactly,
so ``converged`` is True unless ``lower_tol`` is given and x_T misses it (a starved T is then
reported, not hidden).

* :func:`reverse_mode_hypergradient` (eq. B.2): store the iterates, sweep back from T with one
  Hessian-vector product and one transposed mixed product per step.  Memory O(TN).
* :func:`forward_mode_hypergradient` (eq. B.3): carry Z_t = ∂x_t/∂γ = H_t Z_{t−1} + J_t along
  with the iterates, for the R hyperparameters chosen by ``parts``.  Memory O(NR), no stored
  iterates, but R Hessian-vector products per step.
* :func:`truncated_hypergradient`: the reverse sweep stopped after the last k steps
  (Shaban et al., review Sec. 7.2); k = T is the reverse mode.  Memory O(kN).
* :func:`jacobian_free_hypergradient`: one step at the (approximate) fixed point x_T, i.e.
  −α (∇ₓγΦ(x_T; γ))' ∇ₓℓ(x_T) (Fung et al., review Sec. 7.2).  Memory O(N).

All arrays are float64 with the batch of J training images on the leading axis.  ∇_γℓ = 0 for
the losses of (Ex).  Introduced in the chapter "Unrolling".
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import scipy.fft as sfft

from ..problem.cost import LowerLevelCost
from ..problem.params import PARTS, Hyperparameters, check_parts
from ..solvers.lower import ogm_coefficients, ogm_extrapolate, starting_point
from ..util.validation import NonFiniteError, as_float_array, check_choice, check_count, check_real
from .finite_differences import finite_difference_gradient
from .result import HypergradientResult, check_finite_estimate, check_problem

__all__ = [
    "SOLVERS",
    "MODES",
    "default_step",
    "ogm_coefficients",
    "unrolled_solution",
    "unrolled_loss",
    "reverse_mode_hypergradient",
    "forward_mode_hypergradient",
    "truncated_hypergradient",
    "jacobian_free_hypergradient",
    "unrolled_hypergradient",
    "finite_difference_unrolled_hypergradient",
    "gradient_jvp",
]

#: The lower-level solvers that can be unrolled, ``"gd"`` (gradient descent with a fixed step,
#: review Sec. 4) and ``"ogm"`` (the optimised gradient method of :mod:`bilevel_lib.solvers.lower`)
SOLVERS = ("gd", "ogm")
#: How the unrolled iterations are differentiated, ``"reverse"`` (back-propagation through the
#: T iterations), ``"forward"`` (forward mode, one tangent per hyperparameter), ``"truncated"``
#: (reverse mode through the last iterations only) and ``"jacobian-free"`` (the last iteration only)
MODES = ("reverse", "forward", "truncated", "jacobian-free")


def _result(
    cost,
    params,
    loss,
    gradient,
    x_T,
    *,
    mode,
    solver,
    n_iter,
    backprop_steps,
    step,
    parts,
    hvps,
    mixed,
    stored_bytes,
    lower_tol,
    start,
    truncated_gradients=None,
) -> HypergradientResult:
    """The contract's result for an unrolled estimate; x_T's residual decides ``converged`` only with ``lower_tol``."""
    residual = float(np.max(cost.gradient_norm(x_T, params)))
    converged = lower_tol is None or residual < lower_tol
    message = (
        f"differentiated T = {n_iter} {solver.upper()} iterations exactly ({backprop_steps} back-propagated); "
        f"x_T has ‖∇Φ‖/√N = {residual:.3g}"
    )
    if not converged:
        message = f"x_T after T = {n_iter} iterations has ‖∇Φ‖/√N = {residual:.3g} > lower_tol = {lower_tol:g}"
    diagnostics = dict(
        lower_residual=residual,
        solver=solver,
        n_iter=n_iter,
        backprop_steps=backprop_steps,
        step=step,
        hessian_vector_products=hvps,
        mixed_products=mixed,
        stored_bytes=stored_bytes,
    )
    if truncated_gradients is not None:
        diagnostics["truncated_gradients"] = truncated_gradients
    return check_finite_estimate(
        HypergradientResult(
            gradient=gradient,
            loss=loss.value(x_T),
            x=x_T,
            lower_iterations=n_iter,
            products=hvps + mixed,
            diagnostics=diagnostics,
            seconds=time.perf_counter() - start,
            converged=converged,
            message=message,
            method=mode if mode == "jacobian-free" else f"unrolled-{mode}",
            parts=parts,
        )
    )


# ----------------------------------------------------------------------------- checks
def _check_inputs(cost, params, loss, n_iter, solver, step, x0, *, lower_tol=None, state=None):
    check_problem(cost, params, loss)
    if lower_tol is not None:
        check_real(lower_tol, "lower_tol", low=0.0, low_open=True)
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict (or None); got {type(state).__name__}")
    n_iter = check_count(n_iter, "n_iter (T)", minimum=0)  # T = 0: x_T = x0, used by the tests
    check_choice(solver, "solver", SOLVERS)
    step = default_step(cost, params) if step is None else check_real(step, "step", low=0.0, low_open=True)
    return int(n_iter), step, starting_point(cost, x0)


def default_step(cost: LowerLevelCost, params: Hyperparameters) -> float:
    """α = 1/L(γ) with L the Lipschitz bound (4.19) of ∇ₓΦ at γ (a number, not differentiated)."""
    check_problem(cost, params)
    return 1.0 / cost.lipschitz(params)


def _coefficients(solver, n_iter):
    if solver == "ogm":
        return ogm_coefficients(n_iter)
    return np.zeros(n_iter), np.zeros(n_iter)


# ----------------------------------------------------------------------------- forward pass
def _run(cost, params, n_iter, solver, step, x0, keep: int = 0):
    """T solver steps from x0; returns x_T and the last ``keep`` iterates x_{T−keep}, …, x_{T−1}."""
    a, b = _coefficients(solver, n_iter)
    stored = deque(maxlen=keep) if keep else None
    x = x0
    y_prev = x0
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite gradient raises below instead
        for t in range(n_iter):
            if stored is not None:
                stored.append(x)  # every iterate is a fresh array, so keeping a reference is safe
            gradient = cost._gradient(x, params)
            if not np.isfinite(gradient).all():
                raise NonFiniteError(
                    f"unrolled {solver.upper()}: ∇ₓΦ became NaN or infinite at iteration {t} of T = {n_iter} "
                    f"(step α = {step:.3g}, 2/L = {2.0 / cost.lipschitz(params):.3g}: "
                    f"{'the step is too large, so the iteration diverges' if step * cost.lipschitz(params) > 2 else 'overflow'})"
                )
            y_next = x - step * gradient
            if solver == "ogm":
                x_next = ogm_extrapolate(y_next, y_prev, x, a[t], b[t])
                y_prev = y_next
            else:
                x_next = y_next
            x = x_next
    return x, (list(stored) if stored is not None else [])


def unrolled_solution(
    cost: LowerLevelCost,
    params: Hyperparameters,
    n_iter: int,
    *,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
) -> np.ndarray:
    """x_T(γ): T iterations of ``solver`` with fixed step α from x_0 (default A'y) (review eq. 4.17).

    Returns an array of shape ``(J, *signal_shape)``.
    """
    n_iter, step, x0 = _check_inputs(cost, params, None, n_iter, solver, step, x0)
    return _run(cost, params, n_iter, solver, step, x0)[0]


def unrolled_loss(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
) -> float:
    """ℓ_T(γ) = ℓ(x_T(γ)), the upper-level loss of the unrolled problem (review eq. 4.17)."""
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0)
    return loss.value(_run(cost, params, n_iter, solver, step, x0)[0])


# ----------------------------------------------------------------------------- reverse mode
def _reverse(cost, params, loss, n_iter, solver, step, x0, backprop_steps, record, mode, lower_tol, start):
    x_T, stored = _run(cost, params, n_iter, solver, step, x0, keep=backprop_steps)
    a, b = _coefficients(solver, n_iter)
    adj_x = loss.gradient(x_T)  # x̄_T = ∇ₓℓ(x_T)
    adj_y = np.zeros_like(adj_x)  # adjoint of y_T from later steps: none
    total = np.zeros(params.size())
    history = [] if record else None
    hvps = mixed = 0
    for i in range(backprop_steps):
        t = n_iter - 1 - i  # step t maps (x_t, y_t) to (x_{t+1}, y_{t+1})
        x_t = stored[backprop_steps - 1 - i]
        if solver == "ogm":
            adj_step = adj_y + (1.0 + a[t] + b[t]) * adj_x  # total adjoint of y_{t+1}
        else:
            adj_step = adj_x
        # y_{t+1} = x_t − α∇ₓΦ(x_t; γ): γ-part −α(∇ₓγΦ)'ȳ, x-part (I − α∇ₓₓΦ)ȳ
        total -= step * cost.mixed_transpose(x_t, params, adj_step).flatten()
        mixed += 1
        if record:
            history.append(total.copy())
        if i + 1 < backprop_steps:  # the adjoint of x_{T−k} is not needed
            new_x = adj_step - step * cost.hessian_vector_product(x_t, params, adj_step)
            hvps += 1
            if solver == "ogm":
                new_x -= b[t] * adj_x
                adj_y = -a[t] * adj_x
            adj_x = new_x
    stored_bytes = sum(int(s.nbytes) for s in stored)
    return _result(
        cost,
        params,
        loss,
        params.unflatten(total),
        x_T,
        mode=mode,
        solver=solver,
        n_iter=n_iter,
        backprop_steps=backprop_steps,
        step=step,
        parts=PARTS,
        hvps=hvps,
        mixed=mixed,
        stored_bytes=stored_bytes,
        lower_tol=lower_tol,
        start=start,
        truncated_gradients=None if history is None else np.array(history).reshape(len(history), params.size()),
    )


def reverse_mode_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    record_truncations: bool = False,
    state: dict | None = None,
    lower_tol: float | None = None,
) -> HypergradientResult:
    """Exact ∇ℓ_T(γ) of the unrolled map by reverse mode (back-propagation; review eq. B.2).

    The forward pass stores x_0, …, x_{T−1} (memory O(TN)); the backward pass starts from
    x̄_T = ∇ₓℓ(x_T) and, for t = T, …, 1, adds J_t' x̄_t = −α(∇ₓγΦ(x_{t−1}))' x̄_t to the
    gradient and propagates x̄_{t−1} = H_t' x̄_t = x̄_t − α∇ₓₓΦ(x_{t−1}) x̄_t (for OGM the
    adjoint of the momentum state y_t is carried along).  It needs T − 1 Hessian-vector products
    and T transposed mixed products, whatever the number R of hyperparameters.

    Parameters
    ----------
    cost : LowerLevelCost
        Φ(·; γ) for a batch of J measurements.
    params : Hyperparameters
        γ at which to differentiate.
    loss : UpperLoss
        ℓ with ``value(x)`` and ``gradient(x)`` (e.g. :class:`~bilevel_lib.problem.losses.SquaredErrorLoss`).
    n_iter : int
        T ≥ 0 (T = 0 gives a zero gradient: x_0 does not depend on γ).
    solver : {"gd", "ogm"}
    step : float, optional
        α, held fixed; default 1/L(γ) from (4.19).
    x0 : array (J, *signal_shape), optional
        x_0, independent of γ; default A'y.
    record_truncations : bool
        Keep the gradient after each backward step in ``diagnostics["truncated_gradients"]``.
    state : dict, optional
        Accepted for the estimator protocol; unrolling keeps no warm-start state.
    lower_tol : float, optional
        If given, ``converged`` says whether x_T meets ‖∇ₓΦ‖/√N < lower_tol (the computation is
        the same either way).

    Returns
    -------
    HypergradientResult
    """
    start = time.perf_counter()
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0, lower_tol=lower_tol, state=state)
    return _reverse(
        cost, params, loss, n_iter, solver, step, x0, n_iter, record_truncations, "reverse", lower_tol, start
    )


def truncated_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    backprop_steps: int,
    *,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    record_truncations: bool = False,
    state: dict | None = None,
    lower_tol: float | None = None,
) -> HypergradientResult:
    """∇ℓ_T(γ) back-propagated through the last k = ``backprop_steps`` iterations only (review Sec. 7.2).

    The first T − k iterations are treated as if they did not depend on γ: the backward sweep of
    :func:`reverse_mode_hypergradient` stops after k steps, and only the last k iterates are
    stored (memory O(kN)).  k = T gives the reverse mode exactly.  Near a fixed point of a
    contraction the neglected terms shrink geometrically with k (Shaban et al., 2019).

    Parameters are those of :func:`reverse_mode_hypergradient`, plus ``backprop_steps`` (1 ≤ k ≤ T).
    """
    start = time.perf_counter()
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0, lower_tol=lower_tol, state=state)
    backprop_steps = check_count(backprop_steps, "backprop_steps (k)")
    if not backprop_steps <= max(n_iter, 1):
        raise ValueError(f"backprop_steps (k) must be an integer with 1 ≤ k ≤ T = {n_iter}; got {backprop_steps!r}")
    if n_iter == 0:
        raise ValueError("truncated back-propagation needs at least one iteration (T ≥ 1)")
    return _reverse(
        cost,
        params,
        loss,
        n_iter,
        solver,
        step,
        x0,
        int(backprop_steps),
        record_truncations,
        "truncated",
        lower_tol,
        start,
    )


# ----------------------------------------------------------------------------- forward mode
def _filter_spectra(filters: np.ndarray, signal_shape) -> np.ndarray:
    axes = tuple(range(1, filters.ndim))
    return sfft.rfftn(filters, s=signal_shape, axes=axes)


def _per_filter_adjoint(spectra: np.ndarray, u: np.ndarray, signal_shape) -> np.ndarray:
    """C_k' u_k for every filter separately (no sum over k): shape (..., K, *signal) -> same."""
    axes = tuple(range(-len(signal_shape), 0))
    return sfft.irfftn(spectra * sfft.rfftn(u, axes=axes), s=signal_shape, axes=axes)


def gradient_jvp(cost: LowerLevelCost, x, params: Hyperparameters, x_dot, parts=PARTS) -> np.ndarray:
    """Directional derivatives of ∇ₓΦ: column r is ∇ₓₓΦ(x; γ) ẋ_r + ∂(∇ₓΦ)/∂γ_r, for each γ_r in ``parts``.

    This is the step of the forward mode (review eq. B.3): with ẋ_r = (Z_{t−1})_r it gives
    H_t Z_{t−1} + J_t up to the factor −α.  The mixed columns ∂(∇ₓΦ)/∂γ_r, with z_k = c_k ⊛ x
    and w_k = e^{β0+β_k}, are

    * β0:       Σ_k w_k C_k' φ̇.(z_k)
    * β_k:      w_k C_k' φ̇.(z_k)
    * c_{k,a}:  w_k ( φ̇.(z_k)^{⟨a⟩} + C_k'(φ̈.(z_k) ⊙ x^{⟨−a⟩}) )      (review App. C.1)

    where u^{⟨a⟩} is u circularly shifted by a (u^{⟨a⟩}_i = u_{i−a}).

    Parameters
    ----------
    cost : LowerLevelCost
    x : array (J, *signal_shape)
    params : Hyperparameters
    x_dot : array (R, J, *signal_shape)
        One tangent per hyperparameter, in the order of ``params.flatten(parts)``.
    parts : subset of ("beta0", "beta", "filters")

    Returns
    -------
    array (R, J, *signal_shape)
    """
    check_problem(cost, params)
    parts = check_parts(parts)
    x = cost.check_x(x)
    x_dot = as_float_array(x_dot, "x_dot")
    n_cols = params.size(parts)
    if x_dot.shape != (n_cols,) + x.shape:
        raise ValueError(
            f"x_dot must have shape (R, *x.shape) = {(n_cols,) + x.shape} for parts {parts}; got {x_dot.shape}"
        )
    op = cost.operator(params)
    d = len(cost.signal_shape)
    weights = params.strengths
    z = op.forward(x)  # (J, K, *signal)
    slope = cost.penalty.derivative(z)
    curvature = cost.penalty.second_derivative(z)
    # Hessian part A'A ẋ_r + Σ_k w_k C_k'(φ̈ ⊙ C_k ẋ_r), one tangent at a time: batching the R
    # tangents would need temporaries of size R·K·N, more than the O(NR) of Z itself
    hessian = cost.hessian_operator(x, params)
    out = np.empty_like(x_dot)
    for r in range(n_cols):
        out[r] = hessian(x_dot[r])
    columns = []
    if "beta0" in parts:
        columns.append(op.adjoint(slope, weights=weights)[None])
    if "beta" in parts or "filters" in parts:
        spectra = _filter_spectra(params.filters, cost.signal_shape)
        w = weights.reshape((-1,) + (1,) * d)
    if "beta" in parts:
        per_filter = _per_filter_adjoint(spectra, slope, cost.signal_shape) * w  # (J, K, *signal)
        columns.append(np.moveaxis(per_filter, 1, 0))
    if "filters" in parts:
        axes = tuple(range(-d, 0))
        taps = list(np.ndindex(params.filter_shape))
        shifted = np.stack([curvature * np.roll(x, tuple(-a for a in tap), axis=axes)[:, None] for tap in taps])
        tap_columns = _per_filter_adjoint(spectra, shifted, cost.signal_shape)  # (S, J, K, *signal)
        tap_columns += np.stack([np.roll(slope, tap, axis=axes) for tap in taps])
        tap_columns *= w
        # (S, J, K, *signal) -> (K, S, J, *signal): filter-major, taps in C order, like flatten()
        tap_columns = np.moveaxis(tap_columns, 2, 0)
        columns.append(tap_columns.reshape((-1,) + x.shape))
    out += np.concatenate(columns, axis=0)
    return out


def forward_mode_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    parts=PARTS,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    state: dict | None = None,
    lower_tol: float | None = None,
) -> HypergradientResult:
    """Exact ∇ℓ_T(γ) of the unrolled map by forward mode (review eq. B.3).

    Carries the tangents Z_t = ∂x_t/∂γ, an array of shape ``(R, J, *signal_shape)``, along with the
    iterates: Z_0 = 0 and, for gradient descent, Z_t = H_t Z_{t−1} + J_t = Z_{t−1} −
    α(∇ₓₓΦ(x_{t−1}) Z_{t−1} + ∇ₓγΦ(x_{t−1})) (:func:`gradient_jvp`); for OGM the tangent of the
    momentum state y_t is carried too.  At the end ∇ℓ_T = Z_T' ∇ₓℓ(x_T).  No iterate is stored:
    memory O(NR) instead of O(TN), at the price of R Hessian-vector products per iteration.
    Choose ``parts`` to keep R small (e.g. ``("beta",)``: R = K).

    Parameters are those of :func:`reverse_mode_hypergradient`, plus ``parts`` (the hyperparameters
    differentiated, as in :meth:`~bilevel_lib.problem.params.Hyperparameters.flatten`).  The returned ``gradient`` holds zeros
    for the parts not differentiated; ``result.flat()`` holds the R differentiated entries.
    """
    start = time.perf_counter()
    parts = check_parts(parts)
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0, lower_tol=lower_tol, state=state)
    a, b = _coefficients(solver, n_iter)
    n_cols = params.size(parts)
    z_x = np.zeros((n_cols,) + x0.shape)
    z_y = np.zeros_like(z_x) if solver == "ogm" else None
    x = x0
    y_prev = x0
    for t in range(n_iter):
        z_next = z_x - step * gradient_jvp(cost, x, params, z_x, parts)
        gradient = cost._gradient(x, params)
        if not np.isfinite(gradient).all():
            raise NonFiniteError(
                f"unrolled {solver.upper()}: ∇ₓΦ became NaN or infinite at iteration {t} of T = {n_iter} "
                f"(step α = {step:.3g}, 2/L = {2.0 / cost.lipschitz(params):.3g}: "
                f"{'the step is too large, so the iteration diverges' if step * cost.lipschitz(params) > 2 else 'overflow'})"
            )
        y_next = x - step * gradient
        if solver == "ogm":  # the same linear map for the iterates and their tangents
            x_next = ogm_extrapolate(y_next, y_prev, x, a[t], b[t])
            z_x, z_y = ogm_extrapolate(z_next, z_y, z_x, a[t], b[t]), z_next
            y_prev = y_next
        else:
            x_next, z_x = y_next, z_next
        x = x_next
    flat = np.tensordot(z_x, loss.gradient(x), axes=x.ndim) if n_iter else np.zeros(n_cols)
    zero = params * 0.0
    stored = int(z_x.nbytes) + (int(z_y.nbytes) if z_y is not None else 0)
    return _result(
        cost,
        params,
        loss,
        zero.unflatten(flat, parts),
        x,
        mode="forward",
        solver=solver,
        n_iter=n_iter,
        backprop_steps=n_iter,
        step=step,
        parts=parts,
        hvps=n_iter * n_cols,
        mixed=n_iter * n_cols,
        stored_bytes=stored,
        lower_tol=lower_tol,
        start=start,
    )


# ----------------------------------------------------------------------------- Jacobian-free
def jacobian_free_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    state: dict | None = None,
    lower_tol: float | None = None,
) -> HypergradientResult:
    """The Jacobian-free gradient −α (∇ₓγΦ(x_T; γ))' ∇ₓℓ(x_T) (review Sec. 7.2; Fung et al.).

    Run T iterations, then differentiate one gradient step Ψ(x; γ) = x − α∇ₓΦ(x; γ) at x = x_T
    with x held constant, as if x_T were the fixed point (Ψ(x_T) = x_T, so ∇ₓℓ is taken at x_T).
    It replaces (I − ∇ₓΨ)⁻¹ in the fixed-point gradient (7.3) by the identity: one transposed
    mixed product, no Hessian, memory O(N).  For a warm start at a converged x̂ pass ``x0=x̂``
    and a small T (even T = 0).
    """
    start = time.perf_counter()
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0, lower_tol=lower_tol, state=state)
    x_T = _run(cost, params, n_iter, solver, step, x0)[0]
    flat = -step * cost.mixed_transpose(x_T, params, loss.gradient(x_T)).flatten()
    return _result(
        cost,
        params,
        loss,
        params.unflatten(flat),
        x_T,
        mode="jacobian-free",
        solver=solver,
        n_iter=n_iter,
        backprop_steps=1,
        step=step,
        parts=PARTS,
        hvps=0,
        mixed=1,
        stored_bytes=0,
        lower_tol=lower_tol,
        start=start,
    )


def unrolled_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    mode: str = "reverse",
    backprop_steps: int | None = None,
    parts=PARTS,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    state: dict | None = None,
    lower_tol: float | None = None,
) -> HypergradientResult:
    """Dispatch to one of the four estimators by ``mode`` (see the module docstring).

    ``backprop_steps`` applies to ``mode="truncated"`` only and ``parts`` to ``mode="forward"`` only
    (the others differentiate every part); any other value there is an error, not ignored.
    """
    check_choice(mode, "mode", MODES)
    if mode != "truncated" and backprop_steps is not None:
        raise ValueError(f"backprop_steps applies only to mode='truncated'; got {backprop_steps!r} with mode={mode!r}")
    if mode != "forward" and check_parts(parts) != PARTS:
        raise ValueError(f"parts applies only to mode='forward' (the others give every part); got {parts!r}")
    common = dict(solver=solver, step=step, x0=x0, lower_tol=lower_tol, state=state)
    if mode == "reverse":
        return reverse_mode_hypergradient(cost, params, loss, n_iter, **common)
    if mode == "forward":
        return forward_mode_hypergradient(cost, params, loss, n_iter, parts=parts, **common)
    if mode == "truncated":
        if backprop_steps is None:
            raise ValueError("mode='truncated' needs backprop_steps (k)")
        return truncated_hypergradient(cost, params, loss, n_iter, backprop_steps, **common)
    if mode == "jacobian-free":
        return jacobian_free_hypergradient(cost, params, loss, n_iter, **common)
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}")


def finite_difference_unrolled_hypergradient(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss,
    n_iter: int,
    *,
    parts=PARTS,
    solver: str = "gd",
    step: float | None = None,
    x0=None,
    h: float = 1e-5,
) -> np.ndarray:
    """Central differences (ℓ_T(γ + h e_r) − ℓ_T(γ − h e_r)) / 2h of the *unrolled* loss.

    The step α (default 1/L at ``params``, computed once) and x_0 are the same for every
    evaluation, so this is the derivative of the same map the analytic estimators differentiate.
    Returns the flattened gradient over ``parts``.
    """
    parts = check_parts(parts)
    n_iter, step, x0 = _check_inputs(cost, params, loss, n_iter, solver, step, x0)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive number; got {h!r}")

    def unrolled(vector):
        return loss.value(_run(cost, params.unflatten(vector, parts), n_iter, solver, step, x0)[0])

    out = finite_difference_gradient(unrolled, params.flatten(parts), h)
    return out
