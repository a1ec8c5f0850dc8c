"""Self-checks for exercises: accept right answers, reject wrong ones with a specific message."""

import numpy as np
import pytest

from bilevel_lib.book import checks
from bilevel_lib.problem.ops import correlate, correlate_adjoint


def right_gradient(x, y, beta0, beta, filters, eps):
    z = correlate(x, filters)
    return x - y + correlate_adjoint(np.exp(beta0 + beta)[:, None] * z / np.sqrt(z**2 + eps**2), filters)


def test_finite_difference_gradient_of_a_quadratic_is_exact():
    A = np.array([[2.0, 1.0], [1.0, 3.0]])
    x = np.array([0.3, -0.7])
    np.testing.assert_allclose(checks.finite_difference_gradient(lambda u: 0.5 * u @ A @ u, x), A @ x, atol=1e-8)


def test_penalty_check_accepts_the_right_derivative():
    result = checks.check_penalty_derivative(lambda z, eps: z / np.sqrt(z**2 + eps**2))
    assert result.passed and "right" in str(result)


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda z, eps: -z / np.sqrt(z**2 + eps**2), "sign"),
        (lambda z, eps: np.sign(z), "derivative of |z|"),
        (lambda z, eps: z / (z**2 + eps**2), "square root"),
        (lambda z, eps: z, "largest mismatch"),
        (lambda z, eps: z[:3], "shape"),
        (lambda z, eps: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_penalty_check_explains_wrong_answers(wrong, fragment):
    result = checks.check_penalty_derivative(wrong)
    assert not result.passed
    assert fragment in result.message


def test_gradient_check_accepts_the_right_gradient():
    result = checks.check_denoising_gradient(right_gradient)
    assert result.passed, result.message


def _variant(kind):
    def gradient(x, y, beta0, beta, filters, eps):
        z = correlate(x, filters)
        slope = z / np.sqrt(z**2 + eps**2)
        w = np.exp(beta0 + beta)[:, None]
        if kind == "data sign":
            return y - x + correlate_adjoint(w * slope, filters)
        if kind == "no adjoint":
            return x - y + sum(w[k, 0] * correlate(slope[k], filters[k : k + 1])[0] for k in range(len(beta)))
        if kind == "no weights":
            return x - y + correlate_adjoint(slope, filters)
        if kind == "no beta0":
            return x - y + correlate_adjoint(np.exp(beta)[:, None] * slope, filters)
        if kind == "no beta_k":
            return x - y + np.exp(beta0) * correlate_adjoint(slope, filters)
        if kind == "other":
            return x - y + 2 * correlate_adjoint(w * slope, filters)
        if kind == "shape":
            return np.zeros(3)
        raise AssertionError(kind)

    return gradient


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("data sign", "wrong sign"),
        ("no adjoint", "reversed filter"),
        ("no weights", "weights are missing"),
        ("no beta0", "e^{β0} is missing"),
        ("no beta_k", "e^{β_k} is missing"),
        ("other", "regulariser part is off"),
        ("shape", "shape"),
    ],
)
def test_gradient_check_names_the_mistake(kind, fragment):
    result = checks.check_denoising_gradient(_variant(kind))
    assert not result.passed
    assert fragment in result.message, result.message


def right_mixed(x, y, beta0, beta, filters, eps, k):
    z = correlate(x, filters[k : k + 1])
    return np.exp(beta0 + beta[k]) * correlate_adjoint(z / np.sqrt(z**2 + eps**2), filters[k : k + 1])


def test_mixed_beta_check_accepts_the_right_answer():
    result = checks.check_mixed_beta(right_mixed)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda x, y, b0, b, f, e, k: (x - y) + right_mixed(x, y, b0, b, f, e, k), "(x − y) must not appear"),
        (lambda x, y, b0, b, f, e, k: right_gradient(x, y, b0, b, f, e) - (x - y), "∇ₓβ0Φ"),
        (lambda x, y, b0, b, f, e, k: right_mixed(x, y, b0, b, f, e, k) / np.exp(b0 + b[k]), "e^{β0+β_k} is missing"),
        (lambda x, y, b0, b, f, e, k: -right_mixed(x, y, b0, b, f, e, k), "sign"),
        (lambda x, y, b0, b, f, e, k: 2 * right_mixed(x, y, b0, b, f, e, k), "relative error"),
        (lambda x, y, b0, b, f, e, k: x[:3], "shape"),
    ],
)
def test_mixed_beta_check_names_the_mistake(wrong, fragment):
    result = checks.check_mixed_beta(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- unrolling-ex1
def right_forward_ogm(cost, gamma, loss, T, alpha, mistake=None):
    """The forward-mode dℓ_T/dβ0 through OGM written out (the checks' own, independent of the library's
    forward mode), or one of its typical mistakes."""
    variant = {None: "correct", "gd tangent": "tangent of y"}.get(mistake, mistake)
    return checks._ogm_forward_beta0(cost, gamma, loss, T, alpha, variant)


def test_forward_ogm_check_accepts_the_right_answer():
    result = checks.check_forward_beta0_ogm(right_forward_ogm)
    assert result.passed, result.message


def test_forward_ogm_check_accepts_the_library_as_a_size_one_array():
    from bilevel_lib.hypergrad import unrolling as ur

    result = checks.check_forward_beta0_ogm(
        lambda c, g, l, T, a: ur.forward_mode_hypergradient(c, g, l, T, solver="ogm", parts=("beta0",), step=a).flat()
    )
    assert result.passed, result.message


def _gd_forward(c, g, l, T, a):
    from bilevel_lib.hypergrad import unrolling as ur

    return ur.forward_mode_hypergradient(c, g, l, T, solver="gd", parts=("beta0",), step=a).flat()[0]


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda c, g, l, T, a: right_forward_ogm(c, g, l, T, a, "momentum constant"), "momentum state"),
        (lambda c, g, l, T, a: right_forward_ogm(c, g, l, T, a, "gd tangent"), "tangent follows a plain gradient"),
        (lambda c, g, l, T, a: right_forward_ogm(c, g, l, T, a, "no mixed"), "mixed column"),
        (_gd_forward, "gradient-descent value"),
        (lambda c, g, l, T, a: -right_forward_ogm(c, g, l, T, a), "sign is flipped"),
        (lambda c, g, l, T, a: 2 * right_forward_ogm(c, g, l, T, a), "relative error"),
        (lambda c, g, l, T, a: np.zeros(3), "shape (3,)"),
        (lambda c, g, l, T, a: np.nan, "finite number"),
        (lambda c, g, l, T, a: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_forward_ogm_check_names_the_mistake(wrong, fragment):
    result = checks.check_forward_beta0_ogm(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- single-level-ex2
def right_closed_form(y, W, signs, mistake=None):
    q = y - W.T @ signs
    if mistake == "sign":
        q = y + W.T @ signs
    if mistake == "y":
        q = y
    W0 = W if mistake == "all rows" else W[signs == 0]
    if W0.shape[0] == 0 or mistake == "no projection":
        return q
    u = np.linalg.lstsq(W0.T, q, rcond=None)[0]
    return W0.T @ u if mistake == "row space" else q - W0.T @ u


def test_closed_form_check_accepts_the_right_answer():
    result = checks.check_closed_form(right_closed_form)
    assert result.passed, result.message
    assert "empty zero set" in result.message


def test_closed_form_check_accepts_the_library():
    from bilevel_lib import l1 as sl

    assert checks.check_closed_form(lambda y, W, s: sl.closed_form_solution(y, W, s)[0]).passed


def _crashes_without_zero_rows(y, W, signs):
    W0 = W[signs == 0]
    q = y - W.T @ signs
    return q - W0.T @ np.linalg.solve(W0 @ W0.T, W0 @ q) if W0.shape[0] else np.zeros(3)


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda y, W, s: right_closed_form(y, W, s, "no projection"), "without the projection"),
        (lambda y, W, s: right_closed_form(y, W, s, "sign"), "sign of the shift"),
        (lambda y, W, s: right_closed_form(y, W, s, "row space"), "row space"),
        (lambda y, W, s: right_closed_form(y, W, s, "y"), "not y"),
        (lambda y, W, s: right_closed_form(y, W, s, "all rows"), "all rows of W"),
        (lambda y, W, s: 2 * right_closed_form(y, W, s), "wrong vector"),
        (lambda y, W, s: right_closed_form(y, W, s) + 0.1, "null space of W0"),
        (_crashes_without_zero_rows, "zero set is empty"),
        (lambda y, W, s: right_closed_form(y, W, s)[None], "x[0]"),
        (lambda y, W, s: y[:3], "shape (3,)"),
        (lambda y, W, s: W @ y, "shape (8,)"),
        (lambda y, W, s: np.linalg.pinv(W[s == 0]) @ undefined_name, "NameError"),  # noqa: F821
    ],
)
def test_closed_form_check_names_the_mistake(wrong, fragment):
    result = checks.check_closed_form(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- tuning-beta-ex2
def golden_section_beta0(cost, start, loss, a, b, n_solves, mistake=None):
    from bilevel_lib import Hyperparameters, solve_lower_level

    rho = (np.sqrt(5.0) - 1.0) / 2.0

    def evaluate(beta0, x0):
        x = solve_lower_level(
            cost, Hyperparameters(beta0, start.beta, start.filters), x0=x0, tol=1e-6, max_iter=20_000
        ).x
        return loss.value(x), x

    c, d = b - rho * (b - a), a + rho * (b - a)
    (fc, xc), (fd, xd) = evaluate(c, None), evaluate(d, None)
    for _ in range(n_solves - 2):
        if mistake == "both":
            (fc, xc), (fd, xd) = evaluate(c, None), evaluate(d, None)
        if (fc < fd) != (mistake == "side"):
            b, d, fd, xd = d, c, fc, xc
            c = b - rho * (b - a)
            fc, xc = evaluate(c, xd)
        else:
            a, c, fc, xc = c, d, fd, xd
            d = a + rho * (b - a)
            fd, xd = evaluate(d, xc)
    if mistake == "midpoint":
        return (a + b) / 2, fc, b - a
    if mistake == "width":
        return (c, fc, rho * (b - a)) if fc < fd else (d, fd, rho * (b - a))
    if mistake == "loss":
        return (c, fd, b - a) if fc < fd else (d, fc, b - a)
    return (c, fc, b - a) if fc < fd else (d, fd, b - a)


def test_golden_section_check_accepts_the_right_search():
    result = checks.check_golden_section(golden_section_beta0)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda *args: golden_section_beta0(*args, mistake="both"), "only one new value"),
        (lambda c, s, l, a, b, n: golden_section_beta0(c, s, l, a, b, n - 1), "only 7 times"),
        (lambda *args: golden_section_beta0(*args, mistake="side"), "wrong end"),
        (lambda *args: golden_section_beta0(*args, mistake="midpoint"), "midpoint"),
        (lambda *args: golden_section_beta0(*args, mistake="width"), "off by one step"),
        (lambda *args: golden_section_beta0(*args, mistake="loss"), "return the loss of the point"),
        (lambda *args: golden_section_beta0(*args)[:2], "three numbers"),
        (lambda *args: (np.nan, 1.0, 1.0), "finite"),
        (lambda *args: {}["beta0"], "KeyError"),
    ],
)
def test_golden_section_check_names_the_mistake(wrong, fragment):
    result = checks.check_golden_section(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- single-double-loop-ex2
def stop_work(history, threshold, patience):
    small = np.asarray(history.gradient_norm) < threshold
    streak = np.convolve(small, np.ones(patience, dtype=int), mode="valid") == patience
    fire = np.flatnonzero(streak)
    return history.work[fire[0] + patience - 1] if fire.size else None


def _stop_variant(kind):
    def rule(history, threshold, patience):
        small = np.asarray(history.gradient_norm) < threshold
        if kind == "first below":
            return history.work[np.flatnonzero(small)[0]]
        if kind == "not consecutive":
            below = np.flatnonzero(small)
            return history.work[below[patience - 1]] if below.size >= patience else None
        if kind == "fixed five":
            return stop_work(history, threshold, 5)
        streak = np.convolve(small, np.ones(patience, dtype=int), mode="valid") == patience
        fire = np.flatnonzero(streak)
        if kind == "last work":
            return history.work[fire[0] + patience - 1] if fire.size else history.work[-1]
        if not fire.size:
            return None
        return {
            "start": history.work[fire[0]],
            "index": fire[0] + patience - 1,
            "late": history.work[fire[0] + patience],
        }[kind]

    return rule


def test_stopping_rule_check_accepts_the_right_rule():
    result = checks.check_stopping_rule(stop_work)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("first below", "five consecutive"),
        ("not consecutive", "not consecutive"),
        ("start", "start of the streak"),
        ("index", "step index"),
        ("late", "one step late"),
        ("last work", "return None when the rule never fires"),
        ("fixed five", "patience argument"),
    ],
)
def test_stopping_rule_check_names_the_mistake(kind, fragment):
    result = checks.check_stopping_rule(_stop_variant(kind))
    assert not result.passed
    assert fragment in result.message, result.message


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda h, t, p: None, "you returned None"),
        (lambda h, t, p: h.work[:3], "return one number"),
        (lambda h, t, p: h.gradient_norms, "AttributeError"),
        (lambda h, t, p: 1000, "expected work 95"),
    ],
)
def test_stopping_rule_check_explains_wrong_returns(wrong, fragment):
    result = checks.check_stopping_rule(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- cvxpy-diffcp-ex2
def sum_gradient(y, W, shift=lambda x, y: x - 1.0):
    from bilevel_lib import l1 as sl

    solve = sl.solve_l1_denoising(y, W)
    return sl.closed_form_gradient(y, shift(solve.x[0], y), W, solve.signs).gradient


def test_sum_gradient_check_accepts_the_right_answer():
    result = checks.check_sum_gradient(sum_gradient)
    assert result.passed, result.message


def test_sum_gradient_check_agrees_with_finite_differences():
    from bilevel_lib import l1 as sl

    rng = np.random.default_rng(5)
    W, y = 0.3 * rng.standard_normal((8, 10)), rng.standard_normal(10)
    numeric = checks.finite_difference_gradient(lambda V: sl.solve_l1_denoising(y, V).x.sum(), W, step=1e-6)
    np.testing.assert_allclose(sum_gradient(y, W), numeric, atol=1e-6)


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda y, W: sum_gradient(y, W, lambda x, y: x + 1.0), "sign is flipped"),
        (lambda y, W: sum_gradient(y, W, lambda x, y: 0 * x), "½‖x*‖²"),
        (lambda y, W: sum_gradient(y, W, lambda x, y: -np.ones_like(x)), "x_true = −1"),
        (lambda y, W: sum_gradient(y, W, lambda x, y: y), "½‖x* − y‖²"),
        (lambda y, W: 2 * sum_gradient(y, W), "relative error"),
        (lambda y, W: sum_gradient(y, W).T, "transpose"),
        (lambda y, W: np.ones(3), "shape (3,)"),
        (lambda y, W: np.linalg.inv(W), "LinAlgError"),
    ],
)
def test_sum_gradient_check_names_the_mistake(wrong, fragment):
    result = checks.check_sum_gradient(wrong)
    assert not result.passed
    assert fragment in result.message, result.message


# ----------------------------------------------------------------------------- case-studies-ex3
def strength_correlation(params, frequency):
    return np.corrcoef(frequency.sum(axis=1), np.log(params.strengths))[0, 1]


def test_strength_correlation_check_accepts_the_right_answer():
    result = checks.check_strength_correlation(strength_correlation)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "wrong,fragment",
    [
        (lambda p, f: np.corrcoef(f.sum(axis=1), p.strengths)[0, 1], "logarithm"),
        (lambda p, f: np.corrcoef(f.sum(axis=1), -np.log(p.strengths))[0, 1], "sign is flipped"),
        (lambda p, f: np.corrcoef(f[:, 0], np.log(p.strengths))[0, 1], "vertical frequency u alone"),
        (lambda p, f: np.corrcoef(f[:, 1], np.log(p.strengths))[0, 1], "horizontal frequency v alone"),
        (lambda p, f: np.cov(f.sum(axis=1), np.log(p.strengths))[0, 1], "not a correlation coefficient"),
        (lambda p, f: np.corrcoef(f.sum(axis=1), np.log(p.strengths)), "off-diagonal"),
        (lambda p, f: np.corrcoef(f.sum(axis=1), p.beta**2)[0, 1], "expected"),
        (lambda p, f: f.sum(axis=1), "shape (48,)"),
        (lambda p, f: np.corrcoef(f.sum(axis=1), np.zeros(48))[0, 1], "finite"),
        (lambda p, f: p.strength, "AttributeError"),
    ],
)
def test_strength_correlation_check_names_the_mistake(wrong, fragment):
    with np.errstate(invalid="ignore", divide="ignore"):
        result = checks.check_strength_correlation(wrong)
    assert not result.passed
    assert fragment in result.message, result.message
