"""Lower-level solvers for (Ex): gradient descent and OGM with adaptive restart.

Both minimise Φ(·; γ) for a whole batch of J images at once, with the fixed step 1/L of the
Lipschitz bound (4.19), and stop when every image satisfies ‖∇ₓΦ‖₂/√N < ``tol`` (the criterion of
the review's experiments, App. D.2) or after ``max_iter`` iterations.  Pass ``x0`` to warm start.

OGM is the optimized gradient method of Kim & Fessler, with the gradient-based adaptive restart of
Kim & Fessler (2018) (review ref. [147]); its momentum is kept per image, so one image restarting
does not disturb the others.  Introduced in the chapter "The running example".

For small denoising problems (A = I, corner-rounded 1-norm, J·N·K·S ≤ :data:`COMPILED_MAX_WORK`) the
same loop runs compiled (:func:`~bilevel_lib.problem.stencil.ogm_denoising_loop`): the same iterates,
restarts and stopping iteration up to rounding, without Python's overhead per iteration.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..problem.cost import LowerLevelCost
from ..problem.forward_models import Identity
from ..problem.ops import single_threaded_blas
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..util.validation import NonFiniteError, as_float_array, check_choice, check_count, check_flag, check_real

__all__ = [
    "LowerLevelResult",
    "ConvergenceWarning",
    "solve_lower_level",
    "METHODS",
    "ogm_momentum",
    "ogm_coefficients",
    "ogm_extrapolate",
    "starting_point",
    "COMPILED_MAX_WORK",
]

#: the lower-level solvers :func:`solve_lower_level` accepts as ``method``, OGM with adaptive
#: restart (the default) and gradient descent with step 1/L
METHODS = ("ogm", "gd")


#: :func:`solve_lower_level` runs its whole loop compiled (:func:`~bilevel_lib.problem.stencil.ogm_denoising_loop`,
#: the same iterates up to rounding) for denoising (A = I) with the corner-rounded 1-norm on 1-D and 2-D
#: signals when J·N·K·S, images × pixels × filters × taps, is at most this; above it the filter products
#: of the Python loop (BLAS) are faster than the compiled loop's direct sums, and its overhead matters less.
#: Set it to 0 to always run the Python loop.
COMPILED_MAX_WORK = 400_000


class ConvergenceWarning(UserWarning):
    """The lower-level solver stopped at ``max_iter`` before reaching the requested tolerance."""


@dataclass
class LowerLevelResult:
    """What a lower-level solve returns (in the manner of ``scipy.optimize.OptimizeResult``).

    Attributes
    ----------
    x : array ``(J, *signal_shape)``
        the final iterate x̂
    iterations : int
        number of iterations (gradient evaluations after the first)
    gradient_norm : array (J,)
        ‖∇ₓΦ(x̂_j; γ)‖₂/√N for each image
    converged : bool
        every image reached ``tol`` (False when no tol was given)
    message : str
    method : str
    restarts : int
        OGM momentum restarts (summed over images)
    history : array (iterations+1,)
        max over images of ‖∇ₓΦ‖/√N at each iterate, if recorded
    """

    x: np.ndarray
    iterations: int
    gradient_norm: np.ndarray
    converged: bool
    message: str
    method: str
    restarts: int = 0
    history: np.ndarray | None = field(default=None, repr=False)


def ogm_momentum(theta):
    """One step of OGM's momentum recursion: θ_{t+1} = (1 + √(1 + 4θ_t²))/2 and the factors
    a_t = (θ_t − 1)/θ_{t+1}, b_t = θ_t/θ_{t+1} of :func:`ogm_extrapolate`.

    The one place the recursion is written: :func:`solve_lower_level` calls it per image (with
    θ reset to 1 on a restart), :func:`ogm_coefficients` for the unrolled OGM of
    :mod:`bilevel_lib.hypergrad.unrolling` and the self-checks of :mod:`bilevel_lib.book.checks`.
    ``theta`` may be a number or an array (one θ per image).  Returns (θ_{t+1}, a_t, b_t).
    """
    theta_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * theta**2))
    return theta_next, (theta - 1.0) / theta_next, theta / theta_next


def ogm_coefficients(n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """The momentum factors (a_t, b_t), t = 0, …, T − 1, of OGM without restart, from θ_0 = 1.

    They do not depend on γ, so the unrolled OGM differentiates through them as constants.
    Returns (a, b), each of shape (T,); T = 0 gives empty arrays.
    """
    n_iter = check_count(n_iter, "n_iter", minimum=0)
    a, b = np.empty(n_iter), np.empty(n_iter)
    theta = 1.0
    for t in range(n_iter):
        theta, a[t], b[t] = ogm_momentum(theta)
    return a, b


def ogm_extrapolate(y_next, y_prev, x, a, b):
    """OGM's secondary sequence x_{t+1} = y_{t+1} + a_t (y_{t+1} − y_t) + b_t (y_{t+1} − x_t).

    With y_{t+1} = x_t − α∇ₓΦ(x_t).  Linear in its three arrays, so the unrolled forward mode
    applies it to the tangents too.  ``a`` and ``b`` broadcast against the arrays (one per image).
    """
    return y_next + a * (y_next - y_prev) + b * (y_next - x)


def starting_point(cost: LowerLevelCost, x0=None) -> np.ndarray:
    """x0 as a fresh float64 array (default A'y), checked to have the shape of y and be finite.

    The starting point of :func:`solve_lower_level` and of the unrolled maps.
    """
    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    if x0 is None:
        return np.array(cost.forward_model.adjoint(cost.y), dtype=np.float64)
    x = np.array(as_float_array(x0, "x0"), dtype=np.float64)
    if x.shape != cost.y.shape:
        raise ValueError(f"x0 must have the shape of y, {cost.y.shape}; got {x.shape}")
    return x


def _norms(g: np.ndarray, n_pixels: int) -> np.ndarray:
    return np.sqrt(np.sum(np.square(g), axis=tuple(range(1, g.ndim))) / n_pixels)


def _diverged(method, iteration, norms, x, step, cost, params) -> NonFiniteError:
    """The error for a non-finite gradient norm at ``iteration``, with the likely cause."""
    bad = np.flatnonzero(~np.isfinite(norms)).tolist()
    bound = 2.0 / cost.lipschitz(params)
    if step > bound:
        why = (
            f"the step α = {step:.3g} exceeds 2/L = {bound:.3g} (L of eq. 4.19), so the iteration diverges; "
            "use a smaller step (the default is 1/L)"
        )
    elif not np.isfinite(x).all():
        why = "the iterate overflowed float64 (huge data, strengths or filter taps)"
    else:
        why = "the gradient overflowed float64 (huge data, strengths e^{β0+β_k} or filter taps)"
    where = "at the starting point" if iteration == 0 else f"at iteration {iteration}"
    return NonFiniteError(
        f"solve_lower_level ({method.upper()}): ‖∇ₓΦ‖ became NaN or infinite {where} for image(s) {bad[:5]}: {why}"
    )


@single_threaded_blas
def solve_lower_level(
    cost: LowerLevelCost,
    params: Hyperparameters,
    x0=None,
    *,
    method: str = "ogm",
    tol: float | None = 1e-6,
    max_iter: int = 5000,
    restart: bool = True,
    step: float | None = None,
    record_history: bool = False,
    warn: bool = True,
) -> LowerLevelResult:
    """Minimise Φ(x; γ) over x for every image of the batch.

    Parameters
    ----------
    cost : LowerLevelCost
    params : Hyperparameters
    x0 : array ``(J, *signal_shape)``, optional
        Starting point (warm start).  Default: A'y.
    method : {"ogm", "gd"}
    tol : float or None
        Stop when max_j ‖∇ₓΦ(x_j)‖/√N < tol.  ``None`` runs exactly ``max_iter`` iterations
        (the fixed-T setting of the review's double-loop experiments).
    max_iter : int
        Iteration budget T.
    restart : bool
        OGM only: use gradient-based adaptive restart.
    step : float, optional
        Step size; default 1/L with L from :meth:`~bilevel_lib.problem.cost.LowerLevelCost.lipschitz` (eq. 4.19).
    record_history : bool
        Keep the convergence measure at every iterate in ``result.history``.
    warn : bool
        Issue a :class:`ConvergenceWarning` when ``tol`` is given and not reached.

    Returns
    -------
    LowerLevelResult
    """
    check_choice(method, "method", METHODS)
    if tol is not None:
        tol = check_real(tol, "tol", low=0.0, low_open=True)
    max_iter = check_count(max_iter, "max_iter", minimum=1)
    restart, record_history, warn = (
        check_flag(v, k) for k, v in dict(restart=restart, record_history=record_history, warn=warn).items()
    )
    x = starting_point(cost, x0)
    if not isinstance(params, Hyperparameters):
        raise TypeError(f"params must be a Hyperparameters instance; got {type(params).__name__}")
    if step is None:
        step = 1.0 / cost.lipschitz(params)
    else:
        step = check_real(step, "step", low=0.0, low_open=True)

    n = cost.n_pixels
    with np.errstate(over="ignore", invalid="ignore"):
        return _iterate(cost, params, x, method, tol, max_iter, restart, step, record_history, warn, n)


def _compiled_loop_applies(cost, params, x) -> bool:
    """Whether the compiled loop covers this problem (module constant :data:`COMPILED_MAX_WORK`)."""
    if type(cost.forward_model) is not Identity or type(cost.penalty) is not CornerRounded1Norm:
        return False
    if len(cost.signal_shape) not in (1, 2) or params.filters.ndim != len(cost.signal_shape) + 1:
        return False
    if x.size * params.filters.size > COMPILED_MAX_WORK or not (1e-150 <= cost.penalty.eps <= 1e150):
        return False
    return x.dtype == np.float64 and cost.y.dtype == np.float64


def _iterate_compiled(cost, params, x, method, tol, max_iter, restart, step, record_history, n):
    """The loop of :func:`_iterate_python` compiled; returns (x, iterations, restarts, norms, history)."""
    from ..problem import stencil  # numba, loaded on first use

    plane = (x.shape[0],) + (1,) * (3 - x.ndim) + x.shape[1:]
    taps = np.ascontiguousarray(params.filters, dtype=np.float64)
    taps = taps.reshape((taps.shape[0],) + (1,) * (3 - taps.ndim) + taps.shape[1:])
    xs = np.ascontiguousarray(x).reshape(plane).copy()
    ys = np.ascontiguousarray(cost.y, dtype=np.float64).reshape(plane)
    weights = np.ascontiguousarray(params.strengths, dtype=np.float64)
    history = np.empty(max_iter + 1 if record_history else 0)
    limit = -1.0 if tol is None else float(tol)
    iterations, restarts, norms, finite = stencil.ogm_denoising_loop(
        ys, xs, taps, weights, float(cost.penalty.eps), float(step), limit, max_iter, method == "gd", restart, history
    )
    x = xs.reshape(x.shape)
    if not finite:
        raise _diverged(method, iterations, norms, x, step, cost, params)
    return x, iterations, restarts, norms, (history[: iterations + 1] if record_history else None)


def _iterate(cost, params, x, method, tol, max_iter, restart, step, record_history, warn, n):
    """The loop of :func:`solve_lower_level` on validated input (floating-point warnings silenced:
    a non-finite gradient norm, checked every iteration, raises :class:`NonFiniteError` instead).
    Compiled where :func:`_compiled_loop_applies`, else in Python; the same iterates up to rounding."""
    loop = _iterate_compiled if _compiled_loop_applies(cost, params, x) else _iterate_python
    x, iterations, restarts, norms, history = loop(
        cost, params, x, method, tol, max_iter, restart, step, record_history, n
    )
    converged = tol is not None and bool(norms.max() < tol)
    if tol is None:
        message = f"ran the fixed budget of {iterations} iterations (no tolerance; max ‖∇Φ‖/√N = {norms.max():.3g})"
    elif converged:
        message = f"reached ‖∇Φ‖/√N < {tol:g} in {iterations} iterations"
    else:
        message = f"stopped at max_iter={max_iter} with max ‖∇Φ‖/√N = {norms.max():.3g} > tol = {tol:g}"
        if warn:
            warnings.warn(f"{method.upper()}: {message}", ConvergenceWarning, stacklevel=3)
    return LowerLevelResult(
        x=x,
        iterations=iterations,
        gradient_norm=norms,
        converged=converged,
        message=message,
        method=method,
        restarts=restarts,
        history=history,
    )


def _iterate_python(cost, params, x, method, tol, max_iter, restart, step, record_history, n):
    """OGM's (or gradient descent's) loop in Python; returns (x, iterations, restarts, norms, history)."""
    grad = cost._gradient(x, params)
    norms = _norms(grad, n)
    if not np.isfinite(norms).all():
        raise _diverged(method, 0, norms, x, step, cost, params)
    history = [norms.max()] if record_history else None
    expand = (slice(None),) + (None,) * (x.ndim - 1)

    y_prev = x.copy()  # OGM's primary sequence
    theta = np.ones(cost.n_images)
    restarts = 0
    iterations = 0
    while iterations < max_iter and not (tol is not None and norms.max() < tol):
        y_next = x - step * grad
        if method == "gd":
            x = y_next
        else:
            theta_next, momentum, correction = ogm_momentum(theta)
            x_next = ogm_extrapolate(y_next, y_prev, x, momentum[expand], correction[expand])
            if restart:
                # restart when the gradient step and the progress of y disagree (Kim & Fessler 2018)
                disagree = np.sum(-grad * (y_next - y_prev), axis=tuple(range(1, x.ndim))) < 0
                if np.any(disagree):
                    restarts += int(np.count_nonzero(disagree))
                    theta_next = np.where(disagree, 1.0, theta_next)
                    x_next = np.where(disagree[expand], y_next, x_next)
            x, y_prev, theta = x_next, y_next, theta_next
        grad = cost._gradient(x, params)
        norms = _norms(grad, n)
        iterations += 1
        if not np.isfinite(norms).all():
            raise _diverged(method, iterations, norms, x, step, cost, params)
        if record_history:
            history.append(norms.max())
    return x, iterations, restarts, norms, None if history is None else np.asarray(history)
