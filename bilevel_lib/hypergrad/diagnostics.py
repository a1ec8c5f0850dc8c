"""How wrong is a hypergradient?  An a posteriori error split and a directional check.

Introduced in the chapter "Choosing a hypergradient".

The error split of an implicit estimate
---------------------------------------
An implicit hypergradient (review eq. 4.8) is computed at an inexact lower-level solution x̃ ≈ x̂
with an inexact adjoint q̃ (CG stopped at the residual r = ∇ₓₓΦ(x̃) q̃ − ∇ₓℓ(x̃)):

    g̃ = −B(x̃)' q̃,        B(x) = ∇ₓγΦ(x),        g(x) = −B(x)' ∇ₓₓΦ(x)⁻¹ ∇ₓℓ(x),

and the true hypergradient is g(x̂).  Its error splits exactly into two parts::

    g̃ − g(x̂) = [g̃ − g(x̃)]  +  [g(x̃) − g(x̂)]
               (CG part)        (lower-level part)
             = −B(x̃)' H⁻¹ r  +  ≈ ∇g(x̃) (x̃ − x̂)

and :func:`implicit_error_split` estimates and bounds each one:

* **estimates**: g(x̃) by CG run tight from the warm start q̃ (the CG part is ‖g̃ − g(x̃)‖), and
  x̂ by one Newton step, x̂ ≈ x̃ − δx with ∇ₓₓΦ(x̃) δx = ∇ₓΦ(x̃) (a loose CG solve), after which the
  lower-level part is ‖g(x̃) − g(x̃ − δx)‖ (one more tight CG solve).  First-order accurate in
  ‖x̃ − x̂‖: near the solution the estimates are close to the true parts;
* **bounds**, from the residuals the solver already has and a lower bound μ of the eigenvalues of
  ∇ₓₓΦ (for (Ex) with a convex φ, μ = σ_min(A)²): ‖x̃ − x̂‖ ≤ ε_x = ‖∇ₓΦ(x̃)‖/μ, and with the
  Lipschitz constants of MAID's bound (:mod:`bilevel_lib.hypergrad.inexact`)::

      CG part    ≤ ‖B‖ ‖r‖/μ
      lower part ≤ ‖B‖ (L_g ε_x/μ + L_H ε_x G/μ²) + L_B ε_x G/μ,
      G          = ‖∇ₓℓ(x̃)‖ + L_g ε_x

  Their sum is MAID's bound ω, which the chapter compares with the true error.

The directional check
---------------------
:func:`directional_check` needs only a function ℓ(γ) and the gradient to check: for m random
Gaussian directions u_i it compares the central difference (ℓ(γ + h u_i) − ℓ(γ − h u_i))/2h with
⟨g, u_i⟩.  If g = ∇ℓ + e, each mismatch is ⟨e, u_i⟩ ~ N(0, ‖e‖²) (up to the difference's own
error), so Σ_i mismatch_i² / ‖e‖² is χ² with m degrees of freedom, and::

    ‖e‖/‖g‖ ≤ √( Σ_i mismatch_i² / χ²_m(1 − c) ) / ‖g‖    (probability c)

(χ²_m(1 − c) the (1 − c)-quantile).  The check passes when that bound is below ``rtol``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..problem.cost import LowerLevelCost
from ..problem.losses import UpperLoss
from ..problem.params import PARTS, Hyperparameters, check_parts
from ..solvers.cg import conjugate_gradient
from ..util.validation import as_float_array, check_count, check_generator, check_real
from .implicit import implicit_step
from .inexact import _column_bounds
from .result import HypergradientResult, check_problem

__all__ = ["ErrorSplit", "implicit_error_split", "DirectionalCheck", "directional_check", "upper_loss_function"]


@dataclass(frozen=True)
class ErrorSplit:
    """The error of an implicit hypergradient, split into its lower-level and CG parts (absolute norms).

    Attributes
    ----------
    lower, cg : float
        Estimates of ‖g(x̃) − g(x̂)‖ (inexact lower level) and ‖g̃ − g(x̃)‖ (inexact CG).
    lower_bound, cg_bound : float
        Computable bounds of the same parts (from ‖∇ₓΦ(x̃)‖, ‖r‖, μ and Lipschitz constants).
    x_error, x_error_bound : float
        ‖δx‖ (the Newton estimate of ‖x̃ − x̂‖) and its bound ‖∇ₓΦ(x̃)‖/μ.
    residual_norm, gradient_norm : float
        ‖r‖ of CG and ‖∇ₓΦ(x̃)‖ (stacked over the batch).
    mu : float
        The lower bound of the Hessian's eigenvalues used.
    reference_gradient : array
        g(x̃ − δx) over the parts: the estimate corrected by both parts (a better hypergradient).
    cg_iterations : int
        CG iterations the split itself spent (three solves).
    seconds : float
        Its wall time.
    """

    lower: float
    cg: float
    lower_bound: float
    cg_bound: float
    x_error: float
    x_error_bound: float
    residual_norm: float
    gradient_norm: float
    mu: float
    reference_gradient: np.ndarray
    cg_iterations: int
    seconds: float

    @property
    def estimate(self) -> float:
        """The estimated error, lower + cg (an upper estimate of ‖g̃ − g(x̂)‖ by the triangle inequality)."""
        return self.lower + self.cg

    @property
    def bound(self) -> float:
        """MAID's bound ω = lower_bound + cg_bound at this x̃ and q̃."""
        return self.lower_bound + self.cg_bound


def implicit_error_split(
    cost: LowerLevelCost,
    params: Hyperparameters,
    loss: UpperLoss,
    result: HypergradientResult,
    *,
    mu: float | None = None,
    tight_tol: float = 1e-12,
    newton_tol: float = 1e-3,
    cg_max_iter: int = 20_000,
) -> ErrorSplit:
    """Split the error of an implicit hypergradient into its lower-level and CG parts (module docstring).

    Parameters
    ----------
    cost, params, loss
        The problem the estimate was computed for.
    result : HypergradientResult
        An estimate with ``x`` (x̃) and ``state["q"]`` (q̃): from
        :func:`~bilevel_lib.hypergrad.implicit.implicit_hypergradient` or
        :func:`~bilevel_lib.hypergrad.inexact.inexact_hypergradient`.  Its ``parts`` (None: all of γ)
        are the ones measured.
    mu : float, optional
        A lower bound (> 0) of the eigenvalues of ∇ₓₓΦ; default σ_min(A)², valid for a convex φ.
    tight_tol : float
        Relative CG tolerance of the two tight solves for g(x̃) and g(x̃ − δx).
    newton_tol : float
        Relative CG tolerance of the Newton step δx (it only needs a few digits).
    cg_max_iter : int

    Returns
    -------
    ErrorSplit
    """
    start = time.perf_counter()
    check_problem(cost, params, loss)
    if not isinstance(result, HypergradientResult):
        raise TypeError(f"result must be a HypergradientResult; got {type(result).__name__}")
    if result.x is None or "q" not in result.state:
        raise ValueError(
            f"result must carry x and state['q'] (an implicit or MAID estimate); got method {result.method!r} "
            f"with x {'missing' if result.x is None else 'given'} and state keys {sorted(result.state)}"
        )
    tight_tol = check_real(tight_tol, "tight_tol", low=0.0, low_open=True)
    newton_tol = check_real(newton_tol, "newton_tol", low=0.0, low_open=True)
    check_count(cg_max_iter, "cg_max_iter")
    if mu is None:
        mu = cost.forward_model.sigma_min_squared
        if not cost.penalty.is_convex:
            raise ValueError("mu: σ_min(A)² bounds the Hessian only for a convex φ; pass mu for this penalty")
    mu = check_real(mu, "mu", low=0.0, low_open=True)
    parts = check_parts(result.parts if result.parts is not None else PARTS)
    x = cost.check_x(result.x, "result.x")
    q = cost.check_x(result.state["q"], "result.state['q']")
    estimate = result.flat(parts)
    rhs = loss.gradient(x)
    hessian = cost.hessian_operator(x, params)
    residual_norm = float(np.linalg.norm(hessian(q) - rhs))
    lower_gradient = cost.gradient(x, params)
    gradient_norm = float(np.linalg.norm(lower_gradient))
    # g(x̃): CG from the warm start q̃ to a tight tolerance
    at_x = implicit_step(cost, params, loss, x, q, cg_tol=tight_tol, cg_max_iter=cg_max_iter, rhs=rhs)
    exact_at_x = at_x.gradient.flatten(parts)
    # one Newton step towards x̂, then g there
    newton = conjugate_gradient(hessian, lower_gradient, tol=newton_tol, max_iter=cg_max_iter, warn=False)
    x_hat = x - newton.x
    at_hat = implicit_step(cost, params, loss, x_hat, at_x.q, cg_tol=tight_tol, cg_max_iter=cg_max_iter)
    corrected = at_hat.gradient.flatten(parts)
    b_norm, lip_b, lip_h, _ = _column_bounds(cost, params, x, parts)
    eps_x = gradient_norm / mu
    lip_g = getattr(loss, "lipschitz", np.nan)
    g_bound = float(np.linalg.norm(rhs)) + lip_g * eps_x
    lower_bound = b_norm * (lip_g * eps_x / mu + lip_h * eps_x * g_bound / mu**2) + lip_b * eps_x * g_bound / mu
    return ErrorSplit(
        lower=float(np.linalg.norm(exact_at_x - corrected)),
        cg=float(np.linalg.norm(estimate - exact_at_x)),
        lower_bound=float(lower_bound),
        cg_bound=float(b_norm * residual_norm / mu),
        x_error=float(np.linalg.norm(newton.x)),
        x_error_bound=float(eps_x),
        residual_norm=residual_norm,
        gradient_norm=gradient_norm,
        mu=float(mu),
        reference_gradient=corrected,
        cg_iterations=at_x.cg.iterations + newton.iterations + at_hat.cg.iterations,
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class DirectionalCheck:
    """What :func:`directional_check` found.

    Attributes
    ----------
    passed : bool
        The relative error bound is below ``rtol``.
    relative_error_bound : float
        ‖e‖/‖g‖ is below this with probability ``confidence`` (e = g − ∇ℓ; see the module docstring).
    relative_error_estimate : float
        √(mean mismatch²)/‖g‖, the plain estimate of ‖e‖/‖g‖.
    differences, predictions : array (m,)
        The central differences along the directions and ⟨g, u_i⟩.
    confidence, rtol, step : float
    evaluations : int
        Calls of ℓ (2m).
    message : str
    """

    passed: bool
    relative_error_bound: float
    relative_error_estimate: float
    differences: np.ndarray
    predictions: np.ndarray
    confidence: float
    rtol: float
    step: float
    evaluations: int
    message: str


def directional_check(
    function,
    point,
    gradient,
    *,
    n_directions: int = 4,
    step: float = 1e-5,
    confidence: float = 0.95,
    rtol: float = 1e-3,
    rng=0,
) -> DirectionalCheck:
    """Check a gradient by central differences along a few random directions, with a stated confidence.

    Parameters
    ----------
    function : callable
        ℓ(vector) → float, the function the gradient is claimed for (e.g. :func:`upper_loss_function`).
    point, gradient : 1-D arrays of one length
        Where, and the gradient to check.
    n_directions : int
        m, the number of Gaussian directions (2m evaluations of ``function``).
    step : float
        h of the central differences; choose it above the noise of ``function`` (its solver's accuracy).
    confidence : float in (0, 1)
        The probability with which ``relative_error_bound`` holds.
    rtol : float
        The check passes when ``relative_error_bound`` ≤ rtol.
    rng : seed or numpy.random.Generator

    Returns
    -------
    DirectionalCheck

    The bound assumes the central differences are exact; their own error, O(h²) plus the noise of
    ``function`` over h, is counted as gradient error (it makes the check stricter, never looser).
    """
    from scipy.stats import chi2

    if not callable(function):
        raise TypeError(f"function must be callable (vector → float); got {type(function).__name__}")
    point = as_float_array(point, "point", ndim=1)
    gradient = as_float_array(np.asarray(gradient, dtype=float).ravel(), "gradient", ndim=1)
    if gradient.shape != point.shape:
        raise ValueError(f"gradient must have the length of point, {point.size}; got {gradient.size}")
    m = check_count(n_directions, "n_directions")
    step = check_real(step, "step", low=0.0, low_open=True)
    confidence = check_real(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    rtol = check_real(rtol, "rtol", low=0.0, low_open=True)
    norm = float(np.linalg.norm(gradient))
    if norm == 0.0:
        raise ValueError("gradient is the zero vector: a relative check needs a non-zero gradient")
    generator = check_generator(rng, "rng")
    directions = generator.standard_normal((m, point.size))
    differences = np.empty(m)
    for i, u in enumerate(directions):
        plus, minus = float(function(point + step * u)), float(function(point - step * u))
        if not (np.isfinite(plus) and np.isfinite(minus)):
            raise ValueError(f"function returned a non-finite value along direction {i} (step {step:g})")
        differences[i] = (plus - minus) / (2.0 * step)
    predictions = directions @ gradient
    squares = float(np.sum((differences - predictions) ** 2))
    bound = float(np.sqrt(squares / chi2.ppf(1.0 - confidence, m)) / norm)
    estimate = float(np.sqrt(squares / m) / norm)
    passed = bound <= rtol
    message = (
        f"{'passed' if passed else 'FAILED'}: ‖g − ∇ℓ‖/‖g‖ ≤ {bound:.2g} with probability {confidence:g} "
        f"(estimate {estimate:.2g}; {m} directions, h = {step:g}; rtol = {rtol:g})"
    )
    return DirectionalCheck(passed, bound, estimate, differences, predictions, confidence, rtol, step, 2 * m, message)


def upper_loss_function(
    cost: LowerLevelCost, params: Hyperparameters, loss: UpperLoss, *, parts=PARTS, lower_tol: float = 1e-11, x0=None
):
    """ℓ(γ) as a function of the flat vector over ``parts``: each call solves the lower level to ``lower_tol``.

    Warm-started from ``x0`` (or the first call's solution).  For :func:`directional_check`.
    """
    from ..solvers.lower import solve_lower_level

    check_problem(cost, params, loss)
    parts = check_parts(parts)
    lower_tol = check_real(lower_tol, "lower_tol", low=0.0, low_open=True)
    start = {"x": None if x0 is None else cost.check_x(x0, "x0")}

    def value(vector) -> float:
        solved = solve_lower_level(
            cost, params.unflatten(vector, parts), x0=start["x"], tol=lower_tol, max_iter=500_000, warn=True
        )
        if start["x"] is None:
            start["x"] = solved.x
        return float(loss.value(solved.x))

    return value
