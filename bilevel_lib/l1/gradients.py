"""Gradients of the exact ℓ1 lower level in W: the BLORC closed form and its references.

Every function here that returns a gradient returns the one contract,
:class:`~bilevel_lib.hypergrad.result.HypergradientResult`, with the gradient in the container the
caller gave (the matrix W, or the filter taps of a :class:`~bilevel_lib.problem.ops.FilterBankOperator`).

*Estimators* (they solve the lower level themselves and say whether they can be trusted):

* :func:`l1_hypergradient`: exact lower-level solve (:func:`~bilevel_lib.l1.exact.solve_l1_denoising`),
  thresholded sign pattern of W x*, then Lemma 1 of BLORC (eqs. 7–8) or, with
  ``route="sign-split"``, the KKT system of the sign-split problem (review eq. 4.13).  It checks
  that the closed-form x of that sign pattern (Thm 1) is the solver's x.
* :func:`smoothed_hypergradient`: the implicit gradient (review eq. 4.8) of the corner-rounded
  problem φ(z) = √(z² + ε²), for comparison; it tends to the ℓ1 gradient as ε → 0.
* :func:`finite_difference_l1_hypergradient`: central differences of the exactly solved loss,
  the reference the others are measured against.

*Building blocks* (exact linear algebra for what the caller hands in; no solve of their own):

* :func:`closed_form_solution`: BLORC Thm 1, x* = P_N(W0) (y − W±' s) for a given sign pattern.
* :func:`closed_form_gradient` (Lemma 1) and :func:`sign_split_gradient` (eq. 4.13) for a given
  sign pattern.  They return a HypergradientResult too, but cannot know whether the pattern is
  the minimiser's: pass ``x_reference`` (a solver's x) to have it checked.
* :func:`finite_difference_l1_gradient`: the raw central-difference array, for chosen entries.

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ..hypergrad.result import HypergradientResult
from ..problem.ops import FilterBankOperator, correlation_matrix
from ..solvers.lower import ConvergenceWarning
from .exact import (
    DEFAULT_THRESHOLD,
    RANK_RTOL,
    L1Result,
    ZeroSetFactor,
    as_batch,
    check_finite,
    check_signals,
    check_signs,
    check_threshold,
    count,
    flag,
    real_array,
    real_number,
    solve_l1_denoising,
)

__all__ = [
    "closed_form_solution",
    "closed_form_gradient",
    "l1_hypergradient",
    "sign_split_gradient",
    "smoothed_hypergradient",
    "finite_difference_l1_gradient",
    "finite_difference_l1_hypergradient",
    "l1_loss",
    "filter_gradient_from_matrix",
    "CLOSED_FORM_TOL",
    "MAX_CLOSED_FORM_TOL",
]

#: ‖x_closed_form − x_solver‖ / ‖x_solver‖ above this means the sign pattern is not the minimiser's
CLOSED_FORM_TOL = 1e-8
#: The largest ``closed_form_tol`` accepted.  A looser check would pass the x of a neighbouring sign
#: pattern (a genuine non-zero of size δ read as zero moves x by about δ/‖w_i‖, often far less than 1e-6‖x‖).
MAX_CLOSED_FORM_TOL = 1e-6
ROUTES = ("lemma1", "sign-split")
#: the keyword arguments of :func:`~bilevel_lib.l1.exact.solve_l1_denoising` an estimator passes on
SOLVER_OPTIONS = ("tol", "max_iter", "polish", "lipschitz", "active_set_first")


def _check_solver_options(options: dict, function: str) -> dict:
    unknown = sorted(set(options) - set(SOLVER_OPTIONS))
    if unknown:
        raise TypeError(
            f"{function}: unknown solver option(s) {unknown}; expected some of {list(SOLVER_OPTIONS)} "
            "(the options of solve_l1_denoising)"
        )
    return options


def _check_tol(closed_form_tol) -> float:
    return real_number(closed_form_tol, "closed_form_tol", maximum=MAX_CLOSED_FORM_TOL)


def _rounding_floor(y, signs, W) -> np.ndarray:
    """Per signal, the size of rounding errors in a computed x: 10·n·eps·(‖y_j‖ + ‖W±' s_j‖).

    x = P_N(W0)(y − W±'s) is computed to about this accuracy; a difference between two computed
    x's larger than this is not rounding.
    """
    n = y.shape[1]
    scale = np.linalg.norm(y, axis=1) + np.linalg.norm(signs @ W, axis=1)
    return 10.0 * n * np.finfo(float).eps * scale


# ----------------------------------------------------------------------------- closed forms
def closed_form_solution(y, W, signs) -> np.ndarray:
    """x* = P_N(W0)(y − W±' s) (BLORC Thm 1; review eq. 4.16), shape (J, n).

    ``signs`` (J, k) holds the sign pattern of W x*: rows with sign 0 form
    W0, the others W±.
    """
    y, W = check_signals(y, W)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    return ZeroSetFactor(W, signs == 0).project(y - signs @ W)


def _check_truth(x_true, shape, name="x_true"):
    x_true = as_batch(x_true, name)
    if x_true.shape != shape:
        raise ValueError(f"{name} must have the shape of y, {shape}; got {x_true.shape}")
    return x_true


def _mismatch(x, x_reference, floor) -> tuple[np.ndarray, np.ndarray]:
    """(‖x_j − x_ref_j‖, that over max(‖x_ref_j‖, floor_j)) per signal."""
    distance = np.linalg.norm(x - x_reference, axis=1)
    scale = np.maximum(np.linalg.norm(x_reference, axis=1), np.maximum(floor, 1e-300))
    return distance, distance / scale


def _closed_form_result(
    method, gradient, loss, x, y, signs, rank, x_reference, closed_form_tol, start, floor, error_bound=None
) -> HypergradientResult:
    """Wrap a closed-form gradient for a given sign pattern; check it against ``x_reference`` if given.

    Signal j passes when ‖x_cf − x_ref‖ ≤ closed_form_tol·‖x_ref‖ + floor_j (+ the reference's own
    certified error, ``error_bound``, for a reference that was not solved exactly).  The absolute
    floor is rounding level, so a reference x that is small but not zero is not taken for zero:
    a zero set of full rank gives x_cf = 0, and is caught when the solver's x is not 0.
    """
    counts = (signs == 0).sum(axis=1)
    rank = np.asarray(rank).copy()
    diagnostics = {"zero_set_size": counts, "rank": rank}
    if x_reference is None:
        converged = True
        message = (
            f"{method}: closed form for the given sign pattern ({int(counts.sum())} zero-set rows); "
            "not checked against a solver's x (pass x_reference)"
        )
    else:
        x_reference = _check_truth(x_reference, y.shape, "x_reference")
        distance, mismatch = _mismatch(x, x_reference, floor)
        allowed = closed_form_tol * np.linalg.norm(x_reference, axis=1) + floor
        if error_bound is not None:
            allowed = allowed + error_bound
        failed = distance > allowed
        worst = float(mismatch.max(initial=0.0))
        diagnostics["closed_form_mismatch"] = worst
        diagnostics["closed_form_mismatch_per_signal"] = mismatch
        diagnostics["closed_form_failed"] = failed
        converged = not failed.any()
        if converged:
            message = (
                f"{method}: the sign pattern's closed-form x matches the solver's x (max ‖x_cf − x‖/‖x‖ = {worst:.1e})"
            )
        else:
            bad = int(failed.sum())
            full = failed & (rank >= y.shape[1])
            degenerate = (
                f"; in {int(full.sum())} of them the zero set has full rank n = {y.shape[1]}, so x_cf = 0, "
                f"while the solver's ‖x‖ is up to {np.linalg.norm(x_reference[full], axis=1).max():.1e}"
                if full.any()
                else ""
            )
            message = (
                f"{method}: the sign pattern is not the minimiser's in {bad} of {y.shape[0]} signals: "
                f"‖x_cf − x_solver‖/‖x_solver‖ up to {float(mismatch[failed].max()):.1e} > closed_form_tol = "
                f"{closed_form_tol:g}{degenerate} (the threshold misclassifies the zero set, or the solve is "
                "inexact); the gradient is that of a different sign pattern"
            )
    return HypergradientResult(
        gradient=gradient,
        loss=loss,
        x=x,
        diagnostics=diagnostics,
        seconds=time.perf_counter() - start,
        converged=converged,
        message=message,
        method=method,
        state={"signs": signs},
    )


def closed_form_gradient(
    y, x_true, W, signs, *, x_reference=None, closed_form_tol: float = CLOSED_FORM_TOL
) -> HypergradientResult:
    """∇_W ℓ by BLORC's Lemma 1 (eqs. 7–8), averaged over the batch, for a *given* sign pattern.

    A building block, not an estimator on its own: it is exact linear algebra for the sign
    pattern handed in, and the gradient is that of ℓ(W) only if the pattern is the minimiser's.
    :func:`l1_hypergradient` is the estimator (solve, threshold, this, check).

    With P the projector onto N(W0), q = y − W±' s, x = P q and g = ∇ₓℓ = (x − x_true)/J:

        ∇_{W±} ℓ = −s (P g)',        ∇_{W0} ℓ = −(W0')⁺ (g x' + q (P g)'),

    summed over signals.  Valid where the sign pattern is constant near W (Thm 2); correct when
    W0 is empty (P = I) or rank deficient (pseudo-inverses through an SVD).

    Parameters
    ----------
    y, x_true : arrays (J, n) or (n,)
    W : array (k, n)
    signs : array (J, k) of −1, 0, +1
    x_reference : array (J, n), optional
        A solver's minimiser.  When given, ``diagnostics["closed_form_mismatch"]`` is
        max_j ‖x_cf_j − x_ref_j‖/‖x_ref_j‖ and ``converged`` is False (with a message) above
        ``closed_form_tol``.  Without it ``converged`` is True and the message says it is unchecked.

    Returns
    -------
    HypergradientResult
        ``gradient`` (k, n), ``loss`` and ``x`` of the closed form, ``diagnostics`` with
        ``zero_set_size`` and ``rank`` (J,), ``state["signs"]``; no iterations.
    """
    start = time.perf_counter()
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    closed_form_tol = _check_tol(closed_form_tol)
    factor = ZeroSetFactor(W, signs == 0)
    gradient, loss, x = _lemma1(y, x_true, W, signs, factor)
    check_finite("closed_form_gradient", "in the Lemma 1 gradient or x", "an overflow in W's products", gradient, x)
    floor = _rounding_floor(y, signs, W)
    return _closed_form_result(
        "closed-form", gradient, loss, x, y, signs, factor.rank, x_reference, closed_form_tol, start, floor
    )


def _lemma1(y, x_true, W, signs, factor):
    """(gradient, loss, x) of Lemma 1 for a factorised zero set."""
    J = y.shape[0]
    q = y - signs @ W
    Qq = factor.coefficients(q)
    x = factor.project(q, Qq)
    residual = x - x_true
    g = residual / J
    Qg = factor.coefficients(g)
    Pg = factor.project(g, Qg)
    both = np.stack([Qg, Qq], axis=2)  # (J, k, 2)
    pinv = factor.pinv_transpose_of_coefficients(both)
    u, v = pinv[:, :, 0], pinv[:, :, 1]
    gradient = -((signs + v).T @ Pg + u.T @ x)
    loss = float(0.5 * (residual * residual).sum() / J)
    return gradient, loss, x


def _kkt_residual(y, W, solve: L1Result) -> float:
    r"""max of ‖x − (y − W'd)‖_∞, (\|d_i\| − 1)₊ and \|d_i − sign z_i\| on the rows read as non-zero (eq. A.11)."""
    stationarity = np.abs(solve.x - (y - solve.d @ W)).max(initial=0.0)
    feasibility = np.maximum(np.abs(solve.d) - 1.0, 0.0).max(initial=0.0)
    nonzero = solve.signs != 0
    sign = np.abs(solve.d - solve.signs)[nonzero].max(initial=0.0)
    return float(max(stationarity, feasibility, sign))


def l1_hypergradient(
    y,
    x_true,
    W,
    *,
    d0=None,
    threshold: float = DEFAULT_THRESHOLD,
    route: str = "lemma1",
    closed_form_tol: float = CLOSED_FORM_TOL,
    warn: bool = True,
    **solver_options,
) -> HypergradientResult:
    r"""One BLORC gradient: exact lower-level solve, thresholded sign pattern, then Lemma 1.

    The estimator of the chapter: :func:`~bilevel_lib.l1.exact.solve_l1_denoising` (dual FISTA
    plus a verified active-set step, review App. A eqs. A.10–A.11), the sign pattern
    s = sign_τ(W x*) with τ = ``threshold``, then BLORC's Lemma 1 (eqs. 7–8; ``route="lemma1"``)
    or the KKT system of the sign-split problem (review eq. 4.13; ``route="sign-split"``, needs
    linearly independent zero-set rows).  The closed form is the gradient of ℓ(W) only if the
    sign pattern's closed-form minimiser (Thm 1) is the solver's x; that is checked.

    Parameters
    ----------
    y, x_true : arrays (J, n) or (n,); for a filter bank (J, \*signal_shape) or signal_shape
    W : array (k, n) or FilterBankOperator
        The transform; for a filter bank the gradient is returned in its taps, shape
        (K, \*filter_shape), through :func:`filter_gradient_from_matrix` (small images: it forms the
        dense K·N × N matrix).
    d0 : array like the dual, optional
        Warm start, e.g. ``previous.state["d"]`` at the previous W.
    threshold : float
        τ for the sign pattern (default :data:`~bilevel_lib.l1.exact.DEFAULT_THRESHOLD`).
    route : {"lemma1", "sign-split"}
    closed_form_tol : float
        Largest accepted ‖x_cf − x_solver‖/‖x_solver‖ (per signal) before ``converged`` is False, in
        (0, :data:`MAX_CLOSED_FORM_TOL`]; a rounding-level absolute floor is added (and, for a signal
        the solver did not polish, its certified error), so a solver's x that is small but not zero
        is not taken for zero.
    warn : bool
        Issue a :class:`~bilevel_lib.solvers.lower.ConvergenceWarning` (one, with the message) when
        ``converged`` is False: the lower level was not solved, or the sign pattern failed the check.
    **solver_options
        Passed to :func:`~bilevel_lib.l1.exact.solve_l1_denoising`: ``tol``, ``max_iter``, ``polish``,
        ``lipschitz``, ``active_set_first`` (another name is a ``TypeError``).

    Returns
    -------
    HypergradientResult
        ``gradient`` like W (or the filters); ``loss`` and ``x`` of the closed form (J, n);
        ``lower_iterations`` = FISTA iterations + active-set rounds (``diagnostics``:
        ``fista_iterations``, ``active_set_rounds``, ``warm_accepted``); ``cg_iterations`` = 0
        (direct QR); ``diagnostics``: ``gap`` and ``error_bound`` √(2 gap) (max over signals),
        ``kkt_residual``, ``polished``, ``zero_set_size`` and ``rank`` (J,),
        ``closed_form_mismatch``; ``converged`` = solver converged and mismatch ≤
        ``closed_form_tol``; ``state``: ``d`` (warm start), ``signs``, ``solve`` (the L1Result).

    When the zero set read off the solution equals the one the solver's last active-set step
    used, its factorisation is reused (no second QR).
    """
    start = time.perf_counter()
    if not isinstance(route, str) or route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}; got {route!r}")
    closed_form_tol = _check_tol(closed_form_tol)
    threshold = check_threshold(threshold)
    warn = flag(warn, "warn")
    _check_solver_options(solver_options, "l1_hypergradient")
    solver_options["warn"] = False  # one warning, from here, with the whole story
    bank = W if isinstance(W, FilterBankOperator) else None
    if bank is not None:
        shape = bank.signal_shape
        y_in = real_array(y, "y")
        y_in = y_in[None] if y_in.shape == shape else y_in
        x_true = real_array(x_true, "x_true")
        x_true = x_true[None] if x_true.shape == shape else x_true
        if x_true.shape != y_in.shape:
            raise ValueError(f"x_true must have the shape of y, {y_in.shape}; got {x_true.shape}")
        result = solve_l1_denoising(y_in, bank, d0=d0, threshold=threshold, **solver_options)
        J = y_in.shape[0]
        y, x_true = y_in.reshape(J, -1), x_true.reshape(J, -1)
        M = np.concatenate([correlation_matrix(f, shape) for f in bank.filters])
        flat = L1Result(
            x=result.x.reshape(J, -1),
            d=result.d.reshape(J, -1),
            z=result.z.reshape(J, -1),
            signs=result.signs.reshape(J, -1),
            threshold=result.threshold,
            gap=result.gap,
            polished=result.polished,
            iterations=result.iterations,
            active_set_iterations=result.active_set_iterations,
            converged=result.converged,
            message=result.message,
            warm_accepted=result.warm_accepted,
        )
    else:
        y, W = check_signals(y, W)
        x_true = _check_truth(x_true, y.shape)
        result = solve_l1_denoising(y, W, d0=d0, threshold=threshold, **solver_options)
        M, flat = W, result
    signs = flat.signs
    if route == "lemma1":
        factor = _factor_for(M, signs == 0, result.factor if bank is None else None, y.shape[0])
        gradient, loss, x = _lemma1(y, x_true, M, signs, factor)
        rank = factor.rank
    else:
        gradient, loss, x, rank = _sign_split(y, x_true, M, signs)
    check_finite("l1_hypergradient", f"in the {route} gradient or x", "an overflow in W's products", gradient, x)
    if bank is not None:
        gradient = filter_gradient_from_matrix(gradient, bank.filters.shape[1:], bank.signal_shape)
    floor = _rounding_floor(y, signs, M)
    # the solver's x is exact to rounding where polished; elsewhere only to its certified error √(2 gap)
    bound = np.where(result.polished, 0.0, np.sqrt(2.0 * np.maximum(result.gap, 0.0)))
    out = _closed_form_result(route, gradient, loss, x, y, signs, rank, flat.x, closed_form_tol, start, floor, bound)
    if bank is not None:
        out.x = x.reshape(result.x.shape)
    gap = float(np.max(result.gap, initial=0.0))
    out.lower_iterations = int(result.iterations + result.active_set_iterations)
    out.diagnostics.update(
        gap=gap,
        error_bound=float(np.sqrt(2.0 * max(gap, 0.0))),
        kkt_residual=_kkt_residual(y, M, flat),
        polished=bool(np.all(result.polished)),
        fista_iterations=int(result.iterations),
        active_set_rounds=int(result.active_set_iterations),
        warm_accepted=int(result.warm_accepted),
        threshold=float(threshold),
    )
    out.state.update(d=result.d, signs=result.signs, solve=result)
    if not result.converged:
        out.converged = False
        out.message = f"lower level not solved: {result.message}; {out.message}"
    else:
        out.message = f"{out.message}; {result.message}"
    out.seconds = time.perf_counter() - start
    if warn and not out.converged:
        warnings.warn(f"l1_hypergradient: {out.message}", ConvergenceWarning, stacklevel=2)
    return out


def _factor_for(W, zero, cached, J):
    """The zero-set factorisation, reusing the solver's where its zero set is the one read off x*."""
    if cached is None:
        return ZeroSetFactor(W, zero)
    reuse = cached.covered & (cached.zero == zero).all(axis=1)
    if reuse.all():
        return cached
    rebuild = np.flatnonzero(~reuse)
    return ZeroSetFactor.merge(
        [(np.flatnonzero(reuse), cached.select(reuse)), (rebuild, ZeroSetFactor(W, zero[rebuild]))], J
    )


def sign_split_gradient(
    y, x_true, W, signs, *, x_reference=None, closed_form_tol: float = CLOSED_FORM_TOL
) -> HypergradientResult:
    """The same gradient from the sign-split problem of McCann & Ravishankar (review eq. 4.13).

    A building block for a *given* sign pattern, like :func:`closed_form_gradient` (same
    ``x_reference`` check, same result fields); ``l1_hypergradient(..., route="sign-split")`` is
    the estimator.  With the sign pattern fixed, x* solves min ½‖x − y‖² + s'W± x s.t. W0 x = 0,
    a quadratic with equality constraints whose KKT system is [[I, W0'], [W0, 0]] [x; ν] =
    [y − W±'s; 0].  Differentiating that system (its adjoint [λ; μ] solves the same matrix with
    right side [∇ₓℓ; 0]) gives ∇_{W±} = −s λ' and ∇_{W0} = −ν λ' − μ x'.  Shares no code with
    :func:`closed_form_gradient`.  Needs linearly independent rows in W0, else the KKT matrix is
    singular and a ValueError is raised.
    """
    start = time.perf_counter()
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    closed_form_tol = _check_tol(closed_form_tol)
    gradient, loss, x, rank = _sign_split(y, x_true, W, signs)
    check_finite("sign_split_gradient", "in the sign-split gradient or x", "an overflow in W's products", gradient, x)
    floor = _rounding_floor(y, signs, W)
    return _closed_form_result(
        "sign-split", gradient, loss, x, y, signs, rank, x_reference, closed_form_tol, start, floor
    )


def _sign_split(y, x_true, W, signs):
    J, n = y.shape
    zero = signs == 0
    counts = zero.sum(axis=1)
    kmax = int(counts.max(initial=0))
    order = np.argsort(~zero, axis=1, kind="stable")[:, :kmax]
    valid = np.arange(kmax)[None, :] < counts[:, None]
    rows = W[order] * valid[..., None]  # (J, kmax, n)
    if kmax:
        singular = np.linalg.svd(rows, compute_uv=False)  # (J, min)
        rank = np.sum(singular > RANK_RTOL * np.max(singular, axis=1, keepdims=True), axis=1)
        if np.any(rank < counts):
            j = int(np.flatnonzero(rank < counts)[0])
            raise ValueError(
                f"the sign-split form needs linearly independent rows in W0; signal {j} has "
                f"{counts[j]} zero-set rows of rank {rank[j]} (use closed_form_gradient)"
            )
    else:
        rank = counts
    K = np.zeros((J, n + kmax, n + kmax))
    K[:, :n, :n] = np.eye(n)
    K[:, :n, n:] = rows.transpose(0, 2, 1)
    K[:, n:, :n] = rows
    K[:, n:, n:] = np.eye(kmax) * (~valid)[:, None, :]  # padding: ν_p = 0
    rhs = np.zeros((J, n + kmax))
    rhs[:, :n] = y - signs @ W
    primal = np.linalg.solve(K, rhs[..., None])[..., 0]
    x, nu = primal[:, :n], primal[:, n:]
    g = (x - x_true) / J
    adjoint_rhs = np.zeros_like(rhs)
    adjoint_rhs[:, :n] = g
    adjoint = np.linalg.solve(K, adjoint_rhs[..., None])[..., 0]
    lam, mu = adjoint[:, :n], adjoint[:, n:]
    gradient = -(signs.T @ lam)
    jj, pp = np.nonzero(valid)
    np.add.at(gradient, order[jj, pp], -(nu[jj, pp, None] * lam[jj] + mu[jj, pp, None] * x[jj]))
    loss = float(0.5 * np.sum((x - x_true) ** 2) / J)
    return gradient, loss, x, rank


def l1_loss(y, x_true, W, d0=None, **solver_options) -> tuple[float, L1Result]:
    r"""ℓ(W) = (1/J) Σ_j ½‖x\*_j(W) − x_true_j‖² with x* from :func:`~bilevel_lib.l1.exact.solve_l1_denoising`."""
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    unknown = sorted(set(solver_options) - set(SOLVER_OPTIONS) - {"warn", "threshold"})
    if unknown:
        raise TypeError(
            f"l1_loss: unknown solver option(s) {unknown}; expected some of the options of solve_l1_denoising"
        )
    result = solve_l1_denoising(y, W, d0=d0, **solver_options)
    return float(0.5 * np.sum((result.x - x_true) ** 2) / y.shape[0]), result


def _difference_loop(y, x_true, W, rows, cols, step, d0, signs=None):
    """Central differences of ℓ over the entries (rows, cols); with ``signs``, also the work and checks."""
    values = np.empty(rows.size)
    moved = W.copy()
    work = solves = changed = 0
    unconverged = []
    for index, (a, b) in enumerate(zip(rows, cols)):
        losses = []
        for sign in (1.0, -1.0):
            moved[a, b] = W[a, b] + sign * step
            value, solve = l1_loss(y, x_true, moved, d0=d0, warn=signs is None)
            losses.append(value)
            if signs is not None:
                solves += 1
                work += solve.iterations + solve.active_set_iterations
                if not solve.converged:
                    unconverged.append(solve.message)
                if not np.array_equal(solve.signs, signs):
                    changed += 1
        moved[a, b] = W[a, b]
        values[index] = (losses[0] - losses[1]) / (2.0 * step)
    return values, work, solves, changed, unconverged


def _check_step(step, W) -> float:
    """A difference step h: finite, > 0, and small enough that W ± h stays a valid input (≤ 1e50)."""
    return real_number(step, "step", maximum=1e50)


def _check_entries(entries, shape) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) index arrays of equal length inside ``shape``."""
    if not isinstance(entries, (tuple, list)) or len(entries) != 2:
        raise TypeError(f"entries must be a pair (rows, cols) of index arrays; got {type(entries).__name__}")
    parts = []
    for axis, (name, e) in enumerate(zip(("rows", "cols"), entries)):
        e = np.asarray(e)
        if e.dtype.kind not in "iu":
            raise TypeError(f"entries {name} must be integer indices; got dtype {e.dtype}")
        e = e.astype(int).ravel()
        if e.size and (e.min() < 0 or e.max() >= shape[axis]):
            raise ValueError(
                f"entries {name} must lie in 0…{shape[axis] - 1} (W has shape {shape}); got {e.min()}…{e.max()}"
            )
        parts.append(e)
    if parts[0].size != parts[1].size:
        raise ValueError(f"entries rows and cols must have the same length; got {parts[0].size} and {parts[1].size}")
    return parts[0], parts[1]


def finite_difference_l1_gradient(y, x_true, W, entries=None, *, step: float = 1e-6, d0=None) -> np.ndarray:
    """Central differences (ℓ(W + h E_ab) − ℓ(W − h E_ab)) / 2h with exact lower-level solves.

    A building block (a raw array, for any subset of entries); the contract-returning estimator
    is :func:`finite_difference_l1_hypergradient`.  ``entries`` is a pair of index arrays
    (rows, cols), default every entry of W.  Every solve is warm-started from the dual at W, so
    each difference usually costs one closed-form solve.  Valid while the sign pattern does not
    change within ±h.
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    step = _check_step(step, W)
    if entries is None:
        rows, cols = np.unravel_index(np.arange(W.size), W.shape)
    else:
        rows, cols = _check_entries(entries, W.shape)
    if d0 is None:
        d0 = solve_l1_denoising(y, W).d
    values = _difference_loop(y, x_true, W, rows, cols, step, d0)[0]
    return values.reshape(W.shape) if entries is None else values


def finite_difference_l1_hypergradient(
    y, x_true, W, *, step: float = 1e-6, d0=None, warn: bool = True
) -> HypergradientResult:
    """∇_W ℓ by central differences of the exactly solved loss, as a HypergradientResult.

    Every entry of W: 2·k·n + 1 exact solves (each warm-started from the dual at W).  The
    central difference is exact to O(h²) only while the sign pattern of W x* (BLORC Thm 2) is the
    same at W ± h E_ab as at W; ``converged`` is False, with a message (and, with ``warn``, a
    :class:`~bilevel_lib.solvers.lower.ConvergenceWarning`), when some solve did not converge or
    some perturbation changed the pattern (the difference then straddles a kink).

    Returns
    -------
    HypergradientResult
        ``gradient`` (k, n), ``loss`` and ``x`` at W, ``lower_iterations`` = FISTA iterations +
        active-set rounds over all solves, ``diagnostics``: ``solves``, ``sign_changes`` (number
        of perturbed solves whose pattern differs), ``step``, ``gap`` of the solve at W;
        ``state["d"]``.
    """
    start = time.perf_counter()
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    step = _check_step(step, W)
    warn = flag(warn, "warn")
    base = solve_l1_denoising(y, W, d0=d0, warn=False)
    rows, cols = np.unravel_index(np.arange(W.size), W.shape)
    values, work, solves, changed, unconverged = _difference_loop(
        y, x_true, W, rows, cols, step, base.d, signs=base.signs
    )
    converged = base.converged and not unconverged and changed == 0
    problems = []
    if not base.converged:
        problems.append(f"the solve at W did not converge ({base.message})")
    if unconverged:
        problems.append(f"{len(unconverged)} perturbed solves did not converge ({unconverged[0]})")
    if changed:
        problems.append(
            f"{changed} of {solves} perturbed solves changed the sign pattern of W x* (step {step:g} crosses a kink)"
        )
    message = "finite differences: " + (
        "; ".join(problems) if problems else f"{solves} perturbed exact solves, sign pattern unchanged within ±{step:g}"
    )
    check_finite(
        "finite_difference_l1_hypergradient",
        "in the differences",
        f"step {step:g} too large or too small for W",
        values,
    )
    if warn and not converged:
        warnings.warn(f"finite_difference_l1_hypergradient: {message}", ConvergenceWarning, stacklevel=2)
    gap = float(np.max(base.gap, initial=0.0))
    return HypergradientResult(
        gradient=values.reshape(W.shape),
        loss=float(0.5 * np.sum((base.x - x_true) ** 2) / y.shape[0]),
        x=base.x,
        lower_iterations=int(work + base.iterations + base.active_set_iterations),
        diagnostics={
            "solves": solves + 1,
            "sign_changes": changed,
            "step": step,
            "gap": gap,
            "error_bound": float(np.sqrt(2.0 * max(gap, 0.0))),
            "zero_set_size": (base.signs == 0).sum(axis=1),
        },
        seconds=time.perf_counter() - start,
        converged=converged,
        message=message,
        method="finite-differences",
        state={"d": base.d, "signs": base.signs},
    )


def _shape(value, name) -> tuple:
    if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"{name} must be a non-empty tuple of positive integers; got {value!r}")
    return tuple(count(v, f"{name} entries") for v in value)


def filter_gradient_from_matrix(gradient, filter_shape, signal_shape) -> np.ndarray:
    r"""Chain rule from ∇_W ℓ of the stacked correlation matrix (K·N × N) to the filter taps.

    W's row i of block k holds c_{k,a} at column i + a (circularly), so ∂ℓ/∂c_{k,a} sums ∇_W ℓ
    over those positions.  Returns shape (K, \*filter_shape).
    """
    gradient = real_array(gradient, "gradient", ndim=2)
    signal_shape = _shape(signal_shape, "signal_shape")
    filter_shape = _shape(filter_shape, "filter_shape")
    if len(filter_shape) != len(signal_shape) or any(f > s for f, s in zip(filter_shape, signal_shape)):
        raise ValueError(
            f"filter_shape must have one entry per signal axis and fit in {signal_shape}; got {filter_shape}"
        )
    n = int(np.prod(signal_shape))
    if gradient.shape[1] != n or gradient.shape[0] % n:
        raise ValueError(
            f"gradient must have shape (K·{n}, {n}) for signals of shape {signal_shape}; got {gradient.shape}"
        )
    blocks = gradient.reshape(-1, n, n)
    rows = np.arange(n)
    index = np.array(np.unravel_index(rows, signal_shape))
    taps = np.empty((blocks.shape[0],) + filter_shape)
    for tap in np.ndindex(filter_shape):
        cols = np.ravel_multi_index(
            tuple((index[a] + tap[a]) % signal_shape[a] for a in range(len(signal_shape))), signal_shape
        )
        taps[(slice(None),) + tap] = blocks[:, rows, cols].sum(axis=1)
    return taps


# ----------------------------------------------------------------------------- smoothed reference
def smoothed_hypergradient(
    y, x_true, W, eps: float = 0.01, *, tol: float = 1e-12, max_iter: int = 200, x0=None, warn: bool = True
) -> HypergradientResult:
    r"""Implicit gradient in W of the corner-rounded problem, for a dense W (for comparisons).

    Lower level: min ½‖x − y‖² + Σ_i φ((W x)_i) with φ(z) = √(z² + ε²), solved by damped Newton
    to ‖∇Φ‖/√n < tol.  Then (review eq. 4.8) with H = I + W' diag(φ̈(z)) W and q = H⁻¹ ∇ₓℓ,

        ∇_W ℓ = −Σ_j [ φ̇(z_j) q_j' + (φ̈(z_j) ⊙ W q_j) x_j' ].

    It is the gradient of a *different*, smoothed problem: its distance to the ℓ1 gradient is the
    smoothing error, which shrinks with ε (and the Newton solve gets harder as ε → 0).

    Returns
    -------
    HypergradientResult
        ``gradient`` (k, n), ``loss`` and ``x`` of the smoothed problem, ``lower_iterations`` =
        Newton iterations, ``cg_iterations`` = 0 (dense solves), ``diagnostics``:
        ``lower_residual`` (max_j ‖∇Φ(x_j)‖/√n), ``eps``, ``near_zero`` (entries with
        \|(W x)_i\| < ε, the smoothed zero set, per signal); ``converged`` = residual < ``tol``
        (else, with ``warn``, a :class:`~bilevel_lib.solvers.lower.ConvergenceWarning`).
        Warm start with ``x0=result.x``.  ε must lie in [1e-12, 1e12]: below, ε² is lost to
        rounding next to z²; NaN or inf during the Newton solve raises
        :class:`~bilevel_lib.util.validation.NonFiniteError` naming the iteration.
    """
    start = time.perf_counter()
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    eps = real_number(eps, "eps", minimum=1e-12, strict=False, maximum=1e12)
    tol = real_number(tol, "tol")
    max_iter = count(max_iter, "max_iter", minimum=0)
    warn = flag(warn, "warn")
    J, n = y.shape
    x = y.copy() if x0 is None else _check_truth(x0, y.shape, "x0").copy()

    def parts(x):
        z = x @ W.T
        root = np.sqrt(z * z + eps * eps)
        value = 0.5 * np.sum((x - y) ** 2, axis=1) + np.sum(root, axis=1)
        return z, root, value

    z, root, value = parts(x)
    iterations = 0
    norm = np.inf
    for iterations in range(max_iter + 1):
        grad = x - y + (z / root) @ W
        check_finite(
            "smoothed_hypergradient",
            f"in ∇Φ at Newton iteration {iterations}",
            "an overflow in W x or the Newton step",
            grad,
            value,
        )
        norm = float(np.max(np.linalg.norm(grad, axis=1)) / np.sqrt(n))
        if norm < tol or iterations == max_iter:
            break
        curvature = eps * eps / root**3
        H = np.eye(n) + np.einsum("ka,jk,kb->jab", W, curvature, W)
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        decrease = np.sum(grad * step, axis=1)
        t = np.ones(J)
        while True:  # Armijo backtracking per signal
            trial = x - t[:, None] * step
            z_t, root_t, value_t = parts(trial)
            fine = value_t <= value - 0.25 * t * decrease + 1e-15 * np.abs(value)
            if np.all(fine) or t.min() < 1e-12:
                break
            t = np.where(fine, t, 0.5 * t)
        x, z, root, value = trial, z_t, root_t, value_t
    slope, curvature = z / root, eps * eps / root**3
    H = np.eye(n) + np.einsum("ka,jk,kb->jab", W, curvature, W)
    g = (x - x_true) / J
    q = np.linalg.solve(H, g[..., None])[..., 0]
    gradient = -(slope.T @ q + (curvature * (q @ W.T)).T @ x)
    check_finite(
        "smoothed_hypergradient", "in the adjoint q or the gradient", "an ill-conditioned Hessian", q, gradient
    )
    loss = float(0.5 * np.sum((x - x_true) ** 2) / J)
    converged = norm < tol
    message = (
        f"smoothed IFT (ε = {eps:g}): Newton reached ‖∇Φ‖/√n = {norm:.1e} < tol = {tol:g} in {iterations} iterations"
        if converged
        else f"smoothed IFT (ε = {eps:g}): Newton stopped at max_iter = {max_iter} with ‖∇Φ‖/√n = {norm:.1e} "
        f"≥ tol = {tol:g}"
    )
    if warn and not converged:
        warnings.warn(f"smoothed_hypergradient: {message}", ConvergenceWarning, stacklevel=2)
    return HypergradientResult(
        gradient=gradient,
        loss=loss,
        x=x,
        lower_iterations=int(iterations),
        diagnostics={"lower_residual": norm, "eps": eps, "near_zero": np.sum(np.abs(z) < eps, axis=1)},
        seconds=time.perf_counter() - start,
        converged=converged,
        message=message,
        method="smoothed-ift",
        state={"q": q},
    )
