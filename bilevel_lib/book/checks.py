"""Self-checks for the book's coding exercises.

The ``check_*`` functions take a student's function, compare it with the library
at random points, and say specifically what is wrong (which term, by how much, a hint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hypergrad.finite_differences import finite_difference_gradient
from ..problem.cost import LowerLevelCost
from ..problem.metrics import relative_error
from ..problem.ops import correlate, correlate_adjoint
from ..problem.params import Hyperparameters
from ..problem.penalties import CornerRounded1Norm

__all__ = [
    "finite_difference_gradient",
    "CheckResult",
    "check_penalty_derivative",
    "check_denoising_gradient",
    "check_mixed_beta",
    "check_forward_beta0_ogm",
    "check_closed_form",
    "check_golden_section",
    "check_stopping_rule",
    "check_sum_gradient",
    "check_strength_correlation",
]


@dataclass
class CheckResult:
    """Outcome of a self-check: ``passed`` and a message written for the student."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return ("✅ " if self.passed else "❌ ") + self.message

    def _repr_markdown_(self) -> str:
        return str(self)


def _call(student, *args):
    try:
        got = np.asarray(student(*args), dtype=np.float64)
    except Exception as err:  # the student's code failed: report it, do not crash the notebook
        return None, CheckResult(False, f"your function raised {type(err).__name__}: {err}")
    if not np.all(np.isfinite(got)):
        bad = int(got.size - np.count_nonzero(np.isfinite(got)))
        return None, CheckResult(
            False,
            f"your function returned {bad} value(s) that are not a finite number "
            "(NaN or ±inf): look for a division by zero or a log/sqrt of a negative number.",
        )
    return got, None


def check_penalty_derivative(student_derivative, eps: float = 0.1, tol: float = 1e-8) -> CheckResult:
    """Check a student's φ̇(z; ε) for the corner-rounded 1-norm φ(z) = sqrt(z² + ε²).

    ``student_derivative(z, eps)`` must accept an array z and return an array of the same shape.
    """
    z = np.linspace(-3.0, 3.0, 61) + 0.01
    reference = CornerRounded1Norm(eps).derivative(z)
    got, failure = _call(student_derivative, z, eps)
    if failure is not None:
        return failure
    if got.shape != z.shape:
        return CheckResult(False, f"expected an array of shape {z.shape} (one value per z), got shape {got.shape}")
    error = relative_error(got, reference)
    if error <= tol:
        return CheckResult(True, f"φ̇ is right (relative error {error:.1e}).")
    if np.allclose(got, -reference, rtol=1e-6):
        return CheckResult(False, "the sign is flipped: φ̇ must be positive for z > 0.")
    if np.allclose(got, np.sign(z), atol=1e-6):
        return CheckResult(False, "that is the derivative of |z|; the corner rounding with ε must appear.")
    if np.allclose(got, z / (z**2 + eps**2), rtol=1e-6):
        return CheckResult(False, "the denominator needs a square root: sqrt(z² + ε²).")
    worst = int(np.argmax(np.abs(got - reference)))
    return CheckResult(
        False,
        f"relative error {error:.2e}; the largest mismatch is at z = {z[worst]:.2f}: "
        f"expected {reference[worst]:.6f}, got {got[worst]:.6f}. Hint: differentiate sqrt(z² + ε²) with the chain rule.",
    )


def check_denoising_gradient(student_gradient, tol: float = 1e-8, seed: int = 0) -> CheckResult:
    """Check a student's ∇ₓΦ for 1-D denoising (A = I) with the corner-rounded 1-norm.

    ``student_gradient(x, y, beta0, beta, filters, eps)`` gets x, y of shape (n,), beta of shape
    (K,), filters of shape (K, S) and must return ∇ₓΦ(x; γ) of shape (n,), with the library's
    convention c ⊛ x = circular correlation (:func:`bilevel_lib.problem.ops.correlate`).
    """
    rng = np.random.default_rng(seed)
    n, eps = 24, 0.1
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    filters = rng.standard_normal((2, 3))
    beta0, beta = -0.5, np.array([0.3, -0.2])
    params = Hyperparameters(beta0, beta, filters)
    cost = LowerLevelCost(y[None], CornerRounded1Norm(eps))
    reference = cost.gradient(x[None], params)[0]

    got, failure = _call(student_gradient, x, y, beta0, beta, filters, eps)
    if failure is not None:
        return failure
    if got.shape != (n,):
        return CheckResult(False, f"expected a gradient of shape ({n},) like x, got shape {got.shape}")
    error = relative_error(got, reference)
    if error <= tol:
        return CheckResult(True, f"∇ₓΦ is right (relative error {error:.1e}).")

    # diagnose: data term alone (all-zero filters switch the regulariser's gradient off)
    data_only, failure = _call(student_gradient, x, y, beta0, beta, np.zeros_like(filters), eps)
    if failure is not None:
        return failure
    if relative_error(data_only, x - y) > 1e-6:
        if relative_error(data_only, y - x) <= 1e-6:
            return CheckResult(False, "the data-fit term has the wrong sign: the gradient of ½‖x − y‖² is x − y.")
        return CheckResult(
            False,
            "the data-fit part is wrong (tested with all-zero filters, which switch the regulariser off): "
            "the gradient of ½‖x − y‖² is x − y.",
        )
    z = correlate(x, filters)
    slope = CornerRounded1Norm(eps).derivative(z)
    weights = np.exp(beta0 + beta)[:, None]
    # C_k applied where C_k' belongs: Σ_k w_k c_k ⊛ φ̇.(z_k)
    wrong_adjoint = (x - y) + np.einsum("k,kn->n", weights[:, 0], np.einsum("kkn->kn", correlate(slope, filters)))
    variants = {
        "you applied c_k ⊛ (correlation) again where the adjoint C_k' is needed: correlate with the reversed filter c̃_k, i.e. convolve.": wrong_adjoint,
        "the weights are missing: each filter's term is multiplied by e^{β0+β_k}.": (x - y)
        + correlate_adjoint(slope, filters),
        "the factor e^{β0} is missing.": (x - y) + correlate_adjoint(slope * np.exp(beta)[:, None], filters),
        "the factor e^{β_k} is missing.": (x - y) + np.exp(beta0) * correlate_adjoint(slope, filters),
        "φ̇ must be applied to c_k ⊛ x, not to x.": (x - y)
        + correlate_adjoint(weights * CornerRounded1Norm(eps).derivative(np.broadcast_to(x, z.shape)), filters),
    }
    for hint, variant in variants.items():
        if relative_error(got, variant) <= 1e-6:
            return CheckResult(False, f"the data-fit part is right, but {hint}")
    return CheckResult(
        False,
        f"the data-fit part is right but the regulariser part is off (relative error {error:.2e} overall). "
        "Hint: ∇ of e^{β0} Σ_k e^{β_k} 1'φ.(c_k ⊛ x) is e^{β0} Σ_k e^{β_k} C_k' φ̇.(c_k ⊛ x).",
    )


def check_mixed_beta(student_mixed, tol: float = 1e-8, seed: int = 1) -> CheckResult:
    """Check a student's mixed derivative ∇ₓβ_kΦ = e^{β0+β_k} c̃_k ⊛ φ̇.(c_k ⊛ x) (review eq. 4.9).

    ``student_mixed(x, y, beta0, beta, filters, eps, k)`` gets 1-D x, y of shape (n,), beta (K,),
    filters (K, S), the corner rounding eps and a filter index k, and returns the derivative of
    ∇ₓΦ with respect to β_k, shape (n,).  The reference is the library's
    :meth:`~bilevel_lib.problem.cost.LowerLevelCost.mixed_transpose`, read out column by column.
    """
    rng = np.random.default_rng(seed)
    n, eps, k = 20, 0.1, 1
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    filters = rng.standard_normal((3, 3))
    beta0, beta = -0.3, np.array([0.2, -0.4, 0.5])
    params = Hyperparameters(beta0, beta, filters)
    cost = LowerLevelCost(y[None], CornerRounded1Norm(eps))
    # column k of ∇ₓγΦ: entry i is the β_k-derivative of ⟨e_i, ∇ₓΦ⟩
    reference = np.array([cost.mixed_transpose(x[None], params, np.eye(n)[i][None]).beta[k] for i in range(n)])

    got, failure = _call(student_mixed, x, y, beta0, beta, filters, eps, k)
    if failure is not None:
        return failure
    if got.shape != (n,):
        return CheckResult(False, f"expected a vector of shape ({n},) like x, got shape {got.shape}")
    error = relative_error(got, reference)
    if error <= tol:
        return CheckResult(True, f"∇ₓβ_kΦ is right (relative error {error:.1e}).")
    z = correlate(x, filters)
    slope = CornerRounded1Norm(eps).derivative(z)
    weight = np.exp(beta0 + beta[k])
    all_filters = correlate_adjoint(np.exp(beta0 + beta)[:, None] * slope, filters)
    variants = {
        "the data-fit term does not depend on β_k, so (x − y) must not appear.": (x - y) + reference,
        "that is ∇ₓβ0Φ, summed over all filters; β_k touches only filter k.": all_filters,
        "the factor e^{β0+β_k} is missing (the derivative of e^{β_k} is e^{β_k}).": reference / weight,
        "the sign is flipped.": -reference,
        "use the adjoint C_k' (correlate with the reversed filter), not c_k ⊛ again.": weight
        * correlate(slope[k], filters[k : k + 1])[0],
    }
    for hint, variant in variants.items():
        if relative_error(got, variant) <= 1e-6:
            return CheckResult(False, f"not yet: {hint}")
    return CheckResult(
        False,
        f"relative error {error:.2e}. Hint: β_k multiplies only the k-th penalty term, "
        "so differentiate e^{β0+β_k} C_k' φ̇.(C_k x) with respect to β_k.",
    )


def _scalar(got, what: str):
    """A size-1 result as a float, or a failure that says what came instead."""
    if got.size != 1:
        return None, CheckResult(False, f"expected one number ({what}), got an array of shape {got.shape}")
    value = float(got.ravel()[0])
    if not np.isfinite(value):
        return None, CheckResult(False, f"your function returned {value}; expected a finite number ({what})")
    return value, None


def _ogm_forward_beta0(cost, gamma, loss, n_iter, step, variant):
    """Forward-mode dℓ_T/dβ0 through OGM written out step by step: ``variant="correct"`` (an
    independent check of :func:`~bilevel_lib.hypergrad.unrolling.forward_mode_hypergradient`, see the tests)
    or one of the typical mistakes, made on purpose, that :func:`check_forward_beta0_ogm` recognises."""
    if variant not in ("correct", "momentum constant", "tangent of y", "no mixed"):
        raise ValueError(
            f"variant must be 'correct', 'momentum constant', 'tangent of y' or 'no mixed'; got {variant!r}"
        )
    from ..solvers.lower import ogm_coefficients, ogm_extrapolate

    A = cost.forward_model
    a, b = ogm_coefficients(n_iter)
    x = y_prev = A.adjoint(cost.y)
    z = z_y = np.zeros_like(x)
    for t in range(n_iter):
        gradient = cost.gradient(x, gamma)
        mixed = 0.0 if variant == "no mixed" else gradient - A.adjoint(A.forward(x) - cost.y)
        z_next = z - step * cost.hessian_vector_product(x, gamma, z) - step * mixed
        y_next = x - step * gradient
        x_next = ogm_extrapolate(y_next, y_prev, x, a[t], b[t])
        if variant == "momentum constant":  # tangent of y_t dropped
            z = (1 + a[t] + b[t]) * z_next - b[t] * z
        elif variant == "tangent of y":  # x's tangent follows the plain gradient step
            z = z_next
        else:  # correct: the same linear map for the tangents
            z = ogm_extrapolate(z_next, z_y, z, a[t], b[t])
        x = x_next
        y_prev, z_y = y_next, z_next
    return float(np.sum(z * loss.gradient(x)))


def check_forward_beta0_ogm(student_forward, tol: float = 1e-8, seed: int = 2) -> CheckResult:
    """Check a student's forward-mode dℓ_T/dβ0 through T unrolled OGM steps (review eq. B.3).

    ``student_forward(cost, gamma, loss, T, alpha)`` gets a :class:`~bilevel_lib.problem.cost.LowerLevelCost`,
    :class:`~bilevel_lib.problem.params.Hyperparameters`, a :class:`~bilevel_lib.problem.losses.SquaredErrorLoss`,
    the number of iterations T and the fixed step α, and returns the number dℓ_T/dβ0 for the OGM
    recursion without restart (chapter "Unrolling", exercise ``unrolling-ex1``).  The reference is
    :func:`bilevel_lib.hypergrad.unrolling.forward_mode_hypergradient` with ``solver="ogm", parts=("beta0",)``,
    on a small seeded denoising problem (one 8×8 image, two random 3×3 filters, T = 8).
    """
    from ..hypergrad.unrolling import default_step, forward_mode_hypergradient
    from ..problem.losses import SquaredErrorLoss

    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((1, 8, 8))
    cost = LowerLevelCost(truth + 0.3 * rng.standard_normal(truth.shape), CornerRounded1Norm(0.1))
    loss = SquaredErrorLoss(truth)
    gamma = Hyperparameters(-1.0, np.array([0.2, -0.3]), rng.standard_normal((2, 3, 3)))
    n_iter = 8
    step = default_step(cost, gamma)
    reference = forward_mode_hypergradient(cost, gamma, loss, n_iter, solver="ogm", parts=("beta0",), step=step).flat()[
        0
    ]

    got, failure = _call(student_forward, cost, gamma, loss, n_iter, step)
    if failure is not None:
        return failure
    got, failure = _scalar(got, "dℓ_T/dβ0")
    if failure is not None:
        return failure
    error = abs(got - reference) / abs(reference)
    if error <= tol:
        return CheckResult(True, f"dℓ_T/dβ0 through OGM is right (relative error {error:.1e}).")
    gd = forward_mode_hypergradient(cost, gamma, loss, n_iter, solver="gd", parts=("beta0",), step=step).flat()[0]
    variants = {
        "that is the gradient-descent value: x⁽ᵗ⁺¹⁾ must be the OGM combination "
        "(1 + a_t + b_t) y⁽ᵗ⁺¹⁾ − a_t y⁽ᵗ⁾ − b_t x⁽ᵗ⁾, and its tangent the same combination of tangents.": gd,
        "the tangent of the momentum state y⁽ᵗ⁾ is missing: y⁽ᵗ⁾ depends on β0 too, so carry its tangent "
        "and use z_x ← (1 + a_t + b_t) z_y⁽ᵗ⁺¹⁾ − a_t z_y⁽ᵗ⁾ − b_t z_x.": _ogm_forward_beta0(
            cost, gamma, loss, n_iter, step, "momentum constant"
        ),
        "the iterates follow OGM but the tangent follows a plain gradient step; combine the tangents with "
        "the same a_t, b_t as the iterates.": _ogm_forward_beta0(cost, gamma, loss, n_iter, step, "tangent of y"),
        "the sign is flipped: the tangent step is z ← z − α(∇ₓₓΦ z + ∂∇ₓΦ/∂β0).": -reference,
    }
    for hint, variant in variants.items():
        if abs(got - variant) <= 1e-6 * abs(variant):
            return CheckResult(False, f"not yet: {hint}")
    if abs(got) <= 1e-12 * abs(reference):
        return CheckResult(
            False,
            "you returned 0: the tangent never leaves 0. Each step must add the mixed column "
            "∂(∇ₓΦ)/∂β0, the regulariser's part of the gradient, ∇ₓΦ − A'(Ax − y).",
        )
    return CheckResult(
        False,
        f"expected {reference:.6g}, got {got:.6g} (relative error {error:.2e}). Hint: "
        "differentiate both lines of the OGM recursion with respect to β0; a_t, b_t are constants.",
    )


def check_closed_form(student_closed_form, tol: float = 1e-8, seed: int = 3) -> CheckResult:
    """Check a student's closed-form minimiser x* = P_N(W0)(y − W±' s) (BLORC Thm 1; review eq. 4.16).

    ``student_closed_form(y, W, signs)`` gets one signal y of shape (n,), a transform W of shape
    (k, n) and a sign pattern s of shape (k,) with entries −1, 0, +1 (rows with s_i = 0 form W0),
    and returns x* of shape (n,) (chapter "Single-level reformulation", exercise
    ``single-level-ex2``).  The reference is :func:`bilevel_lib.l1.gradients.closed_form_solution`
    on a seeded random problem (k = 8, n = 12, three rows in the zero set), then on the same
    problem with an empty zero set.
    """
    from ..l1.gradients import closed_form_solution

    rng = np.random.default_rng(seed)
    k, n = 8, 12
    W, y = rng.standard_normal((k, n)), rng.standard_normal(n)
    signs = np.array([1.0, -1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 1.0])
    reference = closed_form_solution(y, W, signs)[0]

    got, failure = _call(student_closed_form, y, W, signs)
    if failure is not None:
        return failure
    if got.shape != (n,):
        return CheckResult(
            False,
            f"expected x* of shape ({n},) like y, got shape {got.shape}"
            + (" (return one signal, e.g. x[0])" if got.shape == (1, n) else ""),
        )
    error = relative_error(got, reference)
    if error <= tol:
        no_zeros = np.where(signs == 0, 1.0, signs)
        got_full, failure = _call(student_closed_form, y, W, no_zeros)
        if failure is not None:
            return CheckResult(
                False,
                "right with three rows in W0, but with an empty zero set (no s_i = 0) "
                + failure.message
                + ". Then there is nothing to project: x* = y − W's.",
            )
        if got_full.shape != (n,) or relative_error(got_full, y - W.T @ no_zeros) > tol:
            return CheckResult(
                False,
                "right with three rows in W0, but wrong when the zero set is empty: "
                "then N(W0) is everything and x* = y − W's.",
            )
        return CheckResult(True, f"x* is right (relative error {error:.1e}), also with an empty zero set.")

    def project(v, rows):
        if rows.shape[0] == 0:
            return v
        return v - rows.T @ np.linalg.lstsq(rows.T, v, rcond=None)[0]

    W0 = W[signs == 0]
    q = y - W.T @ signs
    variants = {
        "that is q = y − W±'s without the projection: project it onto the null space of W0 "
        "(subtract W0'u with u the least-squares solution of W0'u ≈ q).": q,
        "the sign of the shift is flipped: q = y − W±'s, not y + W±'s.": project(y + W.T @ signs, W0),
        "you returned the projection onto the row space of W0 (W0'u); x* is the rest, q − W0'u.": q - project(q, W0),
        "project q = y − W±'s, not y: the signs of the non-zero rows shift y first.": project(y, W0),
        "only the rows with s_i = 0 form W0; you projected with all rows of W.": project(q, W),
    }
    for hint, variant in variants.items():
        if relative_error(got, variant) <= 1e-6:
            return CheckResult(False, f"not yet: {hint}")
    if np.max(np.abs(W0 @ got)) > 1e-6 * max(np.linalg.norm(got), 1.0):
        return CheckResult(
            False,
            f"relative error {error:.2e}, and W0 x ≠ 0 (largest |(W0 x)_i| = "
            f"{np.max(np.abs(W0 @ got)):.2e}): x* must lie in the null space of W0.",
        )
    return CheckResult(
        False,
        f"relative error {error:.2e}; W0 x = 0 holds, so the projection is onto the right "
        "space but of the wrong vector. Hint: x* = P_N(W0)(y − W±'s), with W±'s = W's.",
    )


class _CountingLoss:
    """Wraps an upper-level loss and counts the calls of ``value`` (one per lower-level solve)."""

    def __init__(self, loss):
        self._loss, self.n_values = loss, 0

    def value(self, x):
        self.n_values += 1
        return self._loss.value(x)

    def __getattr__(self, name):
        return getattr(self._loss, name)


def _golden_section(evaluate, a, b, n_solves, wrong_side=False):
    """Golden-section search with ``n_solves`` evaluations; returns (β0, ℓ, width, final a, final b)."""
    rho = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - rho * (b - a), a + rho * (b - a)
    fc, fd = evaluate(c), evaluate(d)
    for _ in range(n_solves - 2):
        if (fc < fd) != wrong_side:
            b, d, fd = d, c, fc
            c = b - rho * (b - a)
            fc = evaluate(c)
        else:
            a, c, fc = c, d, fd
            d = a + rho * (b - a)
            fd = evaluate(d)
    return ((c, fc) if fc < fd else (d, fd)) + (b - a, a, b)


def check_golden_section(student_search, tol: float = 1e-4, seed: int = 4) -> CheckResult:
    """Check a student's golden-section search on β0 (Kiefer 1953; chapter "Tuning β", ``tuning-beta-ex2``).

    ``student_search(cost, start, loss, a, b, n_solves)`` gets a :class:`~bilevel_lib.problem.cost.LowerLevelCost`,
    a starting :class:`~bilevel_lib.problem.params.Hyperparameters` (its β and filters are kept), the
    upper-level loss, the interval [a, b] and the number of lower-level solves, and returns
    ``(beta0, loss_value, bracket_width)``.  The check runs it on a small seeded denoising problem
    (one 8×8 image, the eight 3×3 DCT filters, [a, b] = [−7, −1], 8 solves) with a loss that counts
    its evaluations, and compares with the same search done on losses from
    :func:`bilevel_lib.solvers.lower.solve_lower_level`.  β0 must match to 1e-6 (it only depends on the
    comparisons), ℓ and the width to ``tol`` (relative).
    """
    from ..problem.filters import dct_filters
    from ..problem.losses import SquaredErrorLoss
    from ..solvers.lower import solve_lower_level

    rng = np.random.default_rng(seed)
    truth = np.zeros((1, 8, 8))
    truth[0, 2:6, 3:7] = 1.0
    cost = LowerLevelCost(truth + 0.2 * rng.standard_normal(truth.shape), CornerRounded1Norm(0.05))
    loss = SquaredErrorLoss(truth)
    start = Hyperparameters.from_filters(dct_filters(3), beta0=-4.0)
    a, b, n_solves = -7.0, -1.0, 8

    def evaluate(beta0):
        gamma = Hyperparameters(beta0, start.beta, start.filters)
        return loss.value(solve_lower_level(cost, gamma, tol=1e-9, max_iter=50_000).x)

    best, best_loss, width, final_a, final_b = _golden_section(evaluate, a, b, n_solves)

    counting = _CountingLoss(loss)
    got, failure = _call(student_search, cost, start, counting, a, b, n_solves)
    if failure is not None:
        return failure
    if got.shape != (3,):
        return CheckResult(False, f"expected three numbers (β0, ℓ, bracket width), got an array of shape {got.shape}")
    if not np.all(np.isfinite(got)):
        return CheckResult(False, f"your function returned {got}; expected three finite numbers (β0, ℓ, width)")
    got_beta0, got_loss, got_width = got
    if counting.n_values > n_solves:
        return CheckResult(
            False,
            f"you evaluated ℓ {counting.n_values} times for n_solves = {n_solves}. After the two "
            "initial points each step needs only one new value: the surviving interior point keeps "
            "its ℓ (and its solution, for the warm start).",
        )
    if counting.n_values < n_solves:
        return CheckResult(
            False,
            f"you evaluated ℓ only {counting.n_values} times for n_solves = {n_solves}: "
            "the two initial interior points count, then one new value per step.",
        )
    wrong = _golden_section(evaluate, a, b, n_solves, wrong_side=True)
    if abs(got_beta0 - best) > 1e-6:
        if abs(got_beta0 - wrong[0]) <= 1e-6:
            return CheckResult(
                False,
                "you discarded the wrong end: if ℓ(c) < ℓ(d) the minimiser lies in [a, d], "
                "so drop [d, b]; otherwise drop [a, c].",
            )
        if abs(got_beta0 - 0.5 * (final_a + final_b)) <= 1e-6:
            return CheckResult(
                False,
                "you returned the midpoint of the final bracket, whose ℓ was never computed; "
                "return the better of the two interior points.",
            )
        return CheckResult(
            False,
            f"expected β0 = {best:.6f}, got {got_beta0:.6f} (final bracket "
            f"[{final_a:.4f}, {final_b:.4f}]). Hint: c = b − ρ(b − a), d = a + ρ(b − a), "
            "ρ = (√5 − 1)/2; keep the side of the smaller value.",
        )
    if abs(got_width - width) > tol * width:
        for steps in (n_solves - 1, n_solves - 3):
            if abs(got_width - (b - a) * ((np.sqrt(5.0) - 1.0) / 2.0) ** (steps)) <= tol * width:
                return CheckResult(
                    False,
                    f"β0 is right, but the width is off by one step: after {n_solves} solves "
                    f"the bracket has shrunk {n_solves - 2} times, to (b − a)ρ^{n_solves - 2} = "
                    f"{width:.6f}; you returned {got_width:.6f}.",
                )
        return CheckResult(
            False, f"β0 is right, but the bracket width should be {width:.6f} (the final b − a), not {got_width:.6f}."
        )
    if abs(got_loss - best_loss) > tol * best_loss:
        return CheckResult(
            False,
            f"β0 is right, but ℓ there is {best_loss:.6f}, not {got_loss:.6f}: return the loss "
            "of the point you return (and solve the lower level to a tolerance of 1e-6 or tighter).",
        )
    return CheckResult(
        True,
        f"golden-section search is right: β0 = {got_beta0:.4f}, ℓ = {got_loss:.5f}, "
        f"bracket width {got_width:.4f}, with exactly {n_solves} solves.",
    )


def _history(gradient_norms, work_increments):
    from ..training.loops import TrainingHistory

    history = TrainingHistory()
    for norm, work in zip(gradient_norms, work_increments):
        history.append(
            loss=1.0, gradient_norm=norm, lower_gradient_norm=0.0, lower_iterations=work, cg_iterations=0, elapsed=0.0
        )
    return history


def _streak_end(small, patience):
    """Index of the step at which ``patience`` consecutive True values are first complete, or None."""
    run = 0
    for i, flag in enumerate(small):
        run = run + 1 if flag else 0
        if run == patience:
            return i
    return None


def check_stopping_rule(student_rule) -> CheckResult:
    """Check a student's stopping rule "‖∇ℓ‖/√R below a threshold for ``patience`` consecutive steps".

    ``student_rule(history, threshold, patience)`` gets a :class:`~bilevel_lib.training.loops.TrainingHistory`
    (``history.gradient_norm`` holds ‖∇ℓ‖/√R after each upper step, ``history.work`` the cumulative
    work) and returns the work at which the rule fires, or ``None`` if it never does (chapter
    "Single and double loop", exercise ``single-double-loop-ex2``; the gradient-norm stopping
    decision of review Sec. 5.1).  The check uses three made-up histories: one that fires after a
    false start, one that never fires, and the first again with a different ``patience``.
    """
    threshold = 5e-4
    norms = [1e-2, 3e-3, 4e-4, 3e-4, 6e-4, 4e-4, 2e-4, 3e-4, 1e-4, 2e-4, 1e-4, 7e-4, 1e-4]
    increments = [12, 10, 7, 9, 11, 8, 10, 6, 13, 9, 10, 7, 12]
    history = _history(norms, increments)
    work = history.work
    small = np.asarray(norms) < threshold

    def run(h, patience):
        try:
            return student_rule(h, threshold, patience), None
        except Exception as err:  # the student's code failed: report it, do not crash the notebook
            return None, CheckResult(False, f"your function raised {type(err).__name__}: {err}")

    def as_work(value):
        if value is None:
            return None
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return "bad"
        return float(value) if value.size == 1 and value.ndim <= 1 else "bad"

    fire = _streak_end(small, 5)
    expected = work[fire]
    got, failure = run(history, 5)
    if failure is not None:
        return failure
    got = as_work(got)
    if got == "bad":
        return CheckResult(
            False,
            "return one number, the cumulative work history.work[i] at the step i where "
            "the rule fires (or None if it never fires).",
        )
    if got is None:
        return CheckResult(
            False,
            f"you returned None, but the rule fires: ‖∇ℓ‖/√R is below {threshold:g} at steps "
            f"5 to 10 of the test history, so it fires at step 9 (work {expected}).",
        )
    if got != expected:
        first_below = int(np.flatnonzero(small)[0])
        fifth_below = int(np.flatnonzero(small)[4])
        variants = {
            work[first_below]: "you stopped at the first step below the threshold; the rule needs five "
            "consecutive ones.",
            work[fire - 4]: "you returned the work at the start of the streak; the rule can only fire once the "
            "fifth consecutive small value has been seen, at the end of the streak.",
            work[fifth_below]: "you counted small values that are not consecutive; reset the count whenever "
            "‖∇ℓ‖/√R is at or above the threshold.",
            float(fire): "you returned the step index; return the work, history.work[i].",
            float(fire + 1): "you returned the number of steps; return the work, history.work[i].",
            work[fire - 1]: "off by one: you fired one step early (after four small values).",
            work[fire + 1]: "off by one: you fired one step late (after six small values).",
        }
        for value, hint in variants.items():
            if got == value:
                return CheckResult(False, f"not yet: {hint} Expected work {expected}, got {got:g}.")
        return CheckResult(
            False,
            f"expected work {expected} (the rule fires at step {fire}, the fifth of the "
            f"consecutive small values at steps {fire - 4} to {fire}), got {got:g}.",
        )

    never = _history([1e-2, 4e-4, 3e-4, 2e-4, 1e-4, 6e-4, 1e-4, 2e-4, 3e-4, 4e-4, 9e-4], [5] * 11)
    got, failure = run(never, 5)
    if failure is not None:
        return CheckResult(
            False,
            "right when the rule fires, but on a history where it never fires "
            + failure.message
            + ". Return None then.",
        )
    if got is not None:
        return CheckResult(
            False,
            f"right when the rule fires, but on a history whose streaks are at most four "
            f"steps long you returned {got!r}; return None when the rule never fires.",
        )
    got, failure = run(history, 3)
    if failure is not None:
        return failure
    if as_work(got) != work[_streak_end(small, 3)]:
        return CheckResult(
            False, "right for patience = 5, but not for patience = 3: use the patience argument instead of a fixed 5."
        )
    return CheckResult(
        True,
        f"the stopping rule is right (fires at work {expected} on the test history, never "
        "fires when it should not, and follows the patience argument).",
    )


def check_sum_gradient(student_sum_gradient, tol: float = 1e-6, seed: int = 5) -> CheckResult:
    """Check a student's ∇_W Σ_i x*_i(W) for x*(W) = argmin ½‖x − y‖² + ‖Wx‖₁ (BLORC Lemma 1, g = 1).

    This is what ``backward()`` of a CVXPY/diffcp layer returns when the output's gradient is left
    unseeded (chapter "CVXPY and diffcp", exercise ``cvxpy-diffcp-ex2``).
    ``student_sum_gradient(y, W)`` gets one signal y of shape (n,) and W of shape (k, n) and returns
    an array of shape (k, n).  The reference is :func:`bilevel_lib.l1.gradients.closed_form_gradient`
    with ``x_true = x* − 1`` (so that g = x* − x_true is the vector of ones), at the exact solution of
    :func:`bilevel_lib.l1.exact.solve_l1_denoising`, on a seeded problem with k = 8, n = 10.
    """
    from ..l1.exact import solve_l1_denoising
    from ..l1.gradients import closed_form_gradient

    rng = np.random.default_rng(seed)
    k, n = 8, 10
    W, y = 0.3 * rng.standard_normal((k, n)), rng.standard_normal(n)
    solve = solve_l1_denoising(y, W)
    x_star = solve.x[0]

    def lemma1(x_true):
        return closed_form_gradient(y, x_true, W, solve.signs).gradient

    reference = lemma1(x_star - 1.0)
    got, failure = _call(student_sum_gradient, y, W)
    if failure is not None:
        return failure
    if got.shape != (k, n):
        hint = " (that is the transpose)" if got.shape == (n, k) else ""
        return CheckResult(False, f"expected a gradient of shape ({k}, {n}) like W, got shape {got.shape}{hint}")
    error = relative_error(got, reference)
    if error <= tol:
        return CheckResult(True, f"∇_W Σ x* is right (relative error {error:.1e}).")
    variants = {
        "the sign is flipped: Lemma 1 uses g = x* − x_true, so x_true = x* − 1 gives g = 1 (x* + 1 gives −1).": lemma1(
            x_star + 1.0
        ),
        "that is the gradient of ½‖x*‖² (x_true = 0 makes g = x*); choose x_true = x* − 1 so that g = 1.": lemma1(
            np.zeros(n)
        ),
        "x_true = −1 gives g = x* + 1, not 1; shift the solution itself: x_true = x* − 1.": lemma1(-np.ones(n)),
        "that is the gradient of ½‖x* − y‖² (x_true = y); choose x_true = x* − 1 so that g = 1.": lemma1(y),
    }
    for hint, variant in variants.items():
        if relative_error(got, variant) <= 1e-6:
            return CheckResult(False, f"not yet: {hint}")
    return CheckResult(
        False,
        f"relative error {error:.2e}. Hint: solve for x* and its sign pattern with "
        "sl.solve_l1_denoising, then call sl.closed_form_gradient(y, x* − 1, W, signs).",
    )


def check_strength_correlation(student_correlation, tol: float = 1e-8, seed: int = 6) -> CheckResult:
    """Check a student's correlation between log strength log e^{β0+β_k} and total frequency u + v.

    The learned strengths of DCT filters against frequency are the review's Fig. 6.1 (chapter "Case
    studies", exercise ``case-studies-ex3``).  ``student_correlation(params, frequency)`` gets a
    :class:`~bilevel_lib.problem.params.Hyperparameters` with K = 48 filters and the (48, 2) table of
    frequencies (u, v) of the 7×7 DCT filters, and returns one number: Pearson's correlation
    of u + v with log e^{β0+β_k}, computed from :attr:`~bilevel_lib.problem.params.Hyperparameters.strengths`.  The check uses
    seeded strengths that rise with frequency plus noise.
    """
    rng = np.random.default_rng(seed)
    frequency = np.array([divmod(k + 1, 7) for k in range(48)])
    total = frequency.sum(axis=1)
    params = Hyperparameters(-3.5, 0.25 * total + 0.6 * rng.standard_normal(48), np.zeros((48, 7, 7)))
    log_strength = np.log(params.strengths)
    reference = np.corrcoef(total, log_strength)[0, 1]

    got, failure = _call(student_correlation, params, frequency)
    if failure is not None:
        return failure
    if got.shape == (2, 2):
        return CheckResult(
            False, "np.corrcoef returns the 2×2 correlation matrix; the correlation is its off-diagonal entry, [0, 1]."
        )
    got, failure = _scalar(got, "a correlation coefficient")
    if failure is not None:
        return failure
    if abs(got - reference) <= tol:
        return CheckResult(True, f"the correlation is right ({got:.3f} on the check's made-up strengths).")
    if abs(got) > 1 + 1e-12:
        return CheckResult(
            False,
            f"{got:.3f} is not a correlation coefficient (those lie in [−1, 1]); "
            "use np.corrcoef(x, y)[0, 1], not a covariance or a slope.",
        )
    variants = {
        "take the logarithm of the strengths first: the exercise correlates log e^{β0+β_k} with u + v.": np.corrcoef(
            total, params.strengths
        )[0, 1],
        "the sign is flipped: correlate log e^{β0+β_k} itself (not its negative or reciprocal) with u + v.": -reference,
        "use the total frequency u + v, not the vertical frequency u alone.": np.corrcoef(
            frequency[:, 0], log_strength
        )[0, 1],
        "use the total frequency u + v, not the horizontal frequency v alone.": np.corrcoef(
            frequency[:, 1], log_strength
        )[0, 1],
    }
    for hint, value in variants.items():
        if abs(got - value) <= 1e-8:
            return CheckResult(False, f"not yet: {hint}")
    return CheckResult(
        False,
        f"expected {reference:.4f}, got {got:.4f}. Hint: "
        "np.corrcoef(frequency.sum(axis=1), np.log(params.strengths))[0, 1].",
    )
