"""Self-checks for exercises: accept right answers, reject wrong ones with a specific message."""

import numpy as np
import pytest

from bilevel_lib import checks
from bilevel_lib.ops import correlate, correlate_adjoint


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
    z = correlate(x, filters[k:k + 1])
    return np.exp(beta0 + beta[k]) * correlate_adjoint(z / np.sqrt(z**2 + eps**2), filters[k:k + 1])


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
    from bilevel_lib import unrolling as ur

    A = cost.forward_model
    a, b = ur.ogm_coefficients(T)
    x = y_prev = A.adjoint(cost.y)
    z = z_y = np.zeros_like(x)
    for t in range(T):
        gradient = cost.gradient(x, gamma)
        mixed = 0.0 if mistake == "no mixed" else gradient - A.adjoint(A.forward(x) - cost.y)
        z_next = z - alpha * (cost.hessian_vector_product(x, gamma, z) + mixed)
        y_next = x - alpha * gradient
        c = 1 + a[t] + b[t]
        x_next = c * y_next - a[t] * y_prev - b[t] * x
        if mistake == "momentum constant":
            z = c * z_next - b[t] * z
        elif mistake == "gd tangent":
            z = z_next
        else:
            z = c * z_next - a[t] * z_y - b[t] * z
        x, y_prev, z_y = x_next, y_next, z_next
    return np.sum(z * loss.gradient(x))


def test_forward_ogm_check_accepts_the_right_answer():
    result = checks.check_forward_beta0_ogm(right_forward_ogm)
    assert result.passed, result.message


def test_forward_ogm_check_accepts_the_library_as_a_size_one_array():
    from bilevel_lib import unrolling as ur

    result = checks.check_forward_beta0_ogm(lambda c, g, l, T, a: ur.forward_mode_hypergradient(
        c, g, l, T, solver="ogm", parts=("beta0",), step=a).flat)
    assert result.passed, result.message


def _gd_forward(c, g, l, T, a):
    from bilevel_lib import unrolling as ur

    return ur.forward_mode_hypergradient(c, g, l, T, solver="gd", parts=("beta0",), step=a).flat[0]


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
    from bilevel_lib import single_level as sl

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
