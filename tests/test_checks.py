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
