"""The non-smooth lower level: Bregman dual step (4.22) vs its closed form and a numerical argmax,
|d| ≤ 1; Chambolle–Pock vs the Euclidean method and soft thresholding; the hand-written reverse
sweep vs finite differences of the unrolled loss (λ and Ω, matrix and filters, 1D and 2D);
truncation; the smooth prox (4.23); the analysis operator's adjoint, parameter gradient and norm."""

import numpy as np
import pytest
from problems import relative_error
from scipy.optimize import minimize_scalar

from bilevel_lib.l1 import primal_dual as ns
from bilevel_lib.problem import data, losses
from bilevel_lib.problem.ops import correlation_matrix


def setting(kind, seed=0):
    """(y, loss, operator) for 1D signals with a matrix or a 2-filter bank, or 2D images with filters."""
    rng = np.random.default_rng(seed)
    if kind == "2d-filters":
        truth = rng.standard_normal((2, 6, 5))
        operator = ns.AnalysisOperator.from_filters(rng.standard_normal((2, 2, 2)) / 2, (6, 5))
    else:
        truth = data.piecewise_constant_1d(20, 3, rng)
        if kind == "1d-matrix":
            operator = ns.AnalysisOperator.from_matrix(rng.standard_normal((18, 20)) / 4)
        else:
            operator = ns.AnalysisOperator.from_filters(rng.standard_normal((2, 3)) / 2, (20,))
    y = truth + 0.1 * rng.standard_normal(truth.shape)
    return y, losses.SquaredErrorLoss(truth), operator


KINDS = ["1d-matrix", "1d-filters", "2d-filters"]


# ----------------------------------------------------------------------------- the dual step
def test_bregman_dual_update_is_eq_4_22_and_the_argmax_of_the_bregman_prox():
    psi = lambda d: 0.5 * ((1 + d) * np.log1p(d) + (1 - d) * np.log1p(-d))  # noqa: E731
    dpsi = lambda d: 0.5 * np.log((1 + d) / (1 - d))  # noqa: E731
    step = 0.7
    for d_tilde, u in [(0.3, 1.2), (-0.9, 0.4), (0.0, -2.0), (0.99, -5.0)]:
        d = ns.bregman_dual_update(d_tilde, u, step)
        ratio = (1 - d_tilde) / (1 + d_tilde)
        closed = (np.exp(2 * step * u) - ratio) / (np.exp(2 * step * u) + ratio)  # review eq. (4.22)
        assert d == pytest.approx(closed, abs=1e-12)

        def negative(v):  # −(⟨v, u⟩ − D_ψ(v, d̃)/step), the dual step (4.20) with (4.21)
            return -(v * u - (psi(v) - psi(d_tilde) - dpsi(d_tilde) * (v - d_tilde)) / step)

        best = minimize_scalar(negative, bounds=(-1 + 1e-12, 1 - 1e-12), method="bounded", options={"xatol": 1e-12})
        assert d == pytest.approx(best.x, abs=1e-7)


def test_bregman_dual_step_keeps_d_inside_the_unit_box():
    rng = np.random.default_rng(0)
    d_tilde = rng.uniform(-0.999, 0.999, 10_000)
    u = 50.0 * rng.standard_normal(10_000)
    d = ns.bregman_dual_update(d_tilde, u, step=3.0)
    assert np.all(np.abs(d) <= 1) and np.all(np.isfinite(d))
    assert np.max(np.abs(d_tilde + 3.0 * u)) > 10  # a plain gradient step would leave the box
    # inside Chambolle–Pock, for many iterations and a large step
    y, _, operator = setting("1d-filters")
    result = ns.chambolle_pock_l1(100 * y, operator, 2.0, 300, sigma=50.0, tau=1e-3)
    assert np.all(np.abs(result.d) <= 1) and np.all(np.isfinite(result.x))
    assert np.max(np.abs(result.d)) > 0.999  # saturated entries exist: the bound matters
    with pytest.raises(ValueError, match="inside"):
        ns.bregman_dual_update(1.0, 0.5, 1.0)
    np.testing.assert_array_equal(
        ns.euclidean_dual_update(np.array([0.5, -0.5]), np.array([2.0, 0.1]), 1.0), [1.0, -0.4]
    )


# ----------------------------------------------------------------------------- the solver
def test_bregman_chambolle_pock_solves_the_l1_analysis_problem():
    rng = np.random.default_rng(1)
    truth = data.piecewise_constant_1d(32, 4, rng)
    y = truth + 0.1 * rng.standard_normal(truth.shape)
    operator = ns.AnalysisOperator.from_filters(np.array([[-1.0, 1.0]]), (32,))
    bregman = [ns.chambolle_pock_l1(y, operator, 0.2, T).objective.sum() for T in (30, 300, 3000)]
    reference = ns.chambolle_pock_l1(y, operator, 0.2, 20_000, dual_step="euclidean").objective.sum()
    gaps = np.array(bregman) - reference
    assert np.all(gaps > -1e-9) and np.all(np.diff(gaps) < 0) and gaps[-1] < 1e-4 * reference


def test_unrolled_scalar_prox_approaches_soft_thresholding_as_T_grows():
    y = np.linspace(-2, 2, 81)[:, None]  # J = 81 scalar problems, Ω = 1, λ = ½ (review Fig. 4.1a)
    operator = ns.AnalysisOperator.from_matrix(np.eye(1))
    target = ns.soft_threshold(y, 0.5)
    errors = [np.max(np.abs(ns.chambolle_pock_l1(y, operator, 0.5, T).x - target)) for T in (1, 3, 10, 30, 100)]
    assert np.all(np.diff(errors) < 0) and errors[-1] < 0.01
    # and every unrolled map is smooth: its slope has no jump at the threshold
    x = ns.chambolle_pock_l1(y, operator, 0.5, 10).x[:, 0]
    slopes = np.diff(x) / np.diff(y[:, 0])
    assert np.max(np.abs(np.diff(slopes))) < 0.2


# ----------------------------------------------------------------------------- the reverse sweep
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dual_step", ["bregman", "euclidean"])
def test_unrolled_l1_gradient_matches_finite_differences(kind, dual_step):
    y, loss, operator = setting(kind)
    lam, T, h = 0.3, 12, 1e-6
    tau, sigma = ns.default_steps(operator, lam)  # held fixed in the finite differences too
    result = ns.unrolled_l1_hypergradient(y, loss, operator, lam, T, tau=tau, sigma=sigma, dual_step=dual_step)

    def value(lam_, parameters):
        return ns.unrolled_l1_loss(
            y, loss, operator.with_parameters(parameters), lam_, T, tau=tau, sigma=sigma, dual_step=dual_step
        )

    p = operator.parameters
    fd_lam = (value(lam + h, p) - value(lam - h, p)) / (2 * h)
    assert result.diagnostics["gradient_lam"] == pytest.approx(fd_lam, rel=1e-7)
    fd_op = np.empty(p.size)
    for i in range(p.size):
        e = np.zeros(p.size)
        e[i] = h
        e = e.reshape(p.shape)
        fd_op[i] = (value(lam, p + e) - value(lam, p - e)) / (2 * h)
    assert relative_error(result.gradient, fd_op) <= 1e-7
    assert result.loss == pytest.approx(value(lam, p), rel=1e-14)


def test_truncated_l1_sweep_with_k_equal_to_T_is_the_full_sweep():
    y, loss, operator = setting("1d-filters")
    full = ns.unrolled_l1_hypergradient(y, loss, operator, 0.3, 20, record_truncations=True)
    same = ns.unrolled_l1_hypergradient(y, loss, operator, 0.3, 20, backprop_steps=20)
    assert same.diagnostics["gradient_lam"] == full.diagnostics["gradient_lam"] == full.diagnostics["truncated_lam"][-1]
    np.testing.assert_array_equal(same.gradient, full.gradient)
    short = ns.unrolled_l1_hypergradient(y, loss, operator, 0.3, 20, backprop_steps=3)
    assert short.diagnostics["gradient_lam"] == pytest.approx(full.diagnostics["truncated_lam"][2], rel=1e-12)
    assert abs(short.diagnostics["gradient_lam"] - full.diagnostics["gradient_lam"]) > 1e-6 * abs(
        full.diagnostics["gradient_lam"]
    )
    assert short.diagnostics["stored_bytes"] * 20 == full.diagnostics["stored_bytes"] * 3


def test_learning_the_operator_lowers_the_unrolled_loss():
    y, loss, operator = setting("1d-matrix")
    history = ns.learn_analysis_operator(y, loss, operator, 0.1, 30, backprop_steps=5, n_updates=40, learning_rate=0.02)
    assert history.loss.shape == (41,)
    assert history.loss[-1] < 0.8 * history.loss[0]


# ----------------------------------------------------------------------------- the prox of eq. 4.23
def test_power_prox_is_the_minimiser_and_tends_to_soft_thresholding():
    beta, beta_tilde = 0.5, 0.3
    for y in (-2.0, -0.7, -0.2, 0.0, 0.45, 0.9, 3.0):
        objective = lambda x: 0.5 * (x - y) ** 2 + beta * abs(x) + 2 * beta_tilde * abs(x) ** 1.5 / 1.5  # noqa: E731
        best = minimize_scalar(objective, bounds=(-4, 4), method="bounded", options={"xatol": 1e-12})
        assert ns.power_prox(y, beta, beta_tilde) == pytest.approx(best.x, abs=1e-6)
    grid = np.linspace(-2, 2, 401)
    gaps = [np.max(np.abs(ns.power_prox(grid, beta, bt) - ns.soft_threshold(grid, beta))) for bt in (1, 0.1, 0.01)]
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 0.05
    # its slope is continuous at the threshold (0 on both sides), unlike soft thresholding's
    h = 1e-6
    assert (ns.power_prox(beta + h, beta, beta_tilde) - ns.power_prox(beta, beta, beta_tilde)) / h < 1e-3
    assert (ns.soft_threshold(beta + h, beta) - ns.soft_threshold(beta, beta)) / h == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the operator
@pytest.mark.parametrize("kind", KINDS)
def test_analysis_operator_adjoint_parameter_gradient_and_norm(kind):
    rng = np.random.default_rng(5)
    _, _, operator = setting(kind)
    x = rng.standard_normal((3,) + operator.signal_shape)
    d = rng.standard_normal(operator.forward(x).shape)
    assert np.sum(d * operator.forward(x)) == pytest.approx(np.sum(operator.adjoint(d) * x), rel=1e-12)
    # parameter gradient of Σ⟨d, Ωx⟩ against finite differences (it is linear: exact up to rounding)
    p = operator.parameters
    numeric = np.empty(p.size)
    for i in range(p.size):
        e = np.zeros(p.size)
        e[i] = 1.0
        numeric[i] = np.sum(d * operator.with_parameters(p + e.reshape(p.shape)).forward(x)) - np.sum(
            d * operator.forward(x)
        )
    assert relative_error(operator.parameter_gradient(d, x), numeric) <= 1e-10
    if operator.kind == "matrix":
        dense = operator.parameters
    else:
        dense = np.vstack([correlation_matrix(c, operator.signal_shape) for c in operator.parameters])
    assert operator.norm() == pytest.approx(np.linalg.norm(dense, 2), rel=1e-10)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors():
    y, loss, operator = setting("1d-filters")
    with pytest.raises(ValueError, match="lam"):
        ns.chambolle_pock_l1(y, operator, -1.0, 10)
    with pytest.raises(ValueError, match="n_iter"):
        ns.chambolle_pock_l1(y, operator, 0.1, -3)
    with pytest.raises(ValueError, match="dual_step"):
        ns.chambolle_pock_l1(y, operator, 0.1, 3, dual_step="mirror")
    with pytest.raises(ValueError, match="shape"):
        ns.chambolle_pock_l1(y[:, :5], operator, 0.1, 3)
    with pytest.raises(ValueError, match="backprop_steps"):
        ns.unrolled_l1_hypergradient(y, loss, operator, 0.1, 5, backprop_steps=6)
    with pytest.raises(ValueError, match="at least 1"):
        ns.unrolled_l1_hypergradient(y, loss, operator, 0.1, 0)
    with pytest.raises(TypeError, match="AnalysisOperator"):
        ns.chambolle_pock_l1(y, np.eye(20), 0.1, 3)
    with pytest.raises(ValueError, match="tau"):
        ns.chambolle_pock_l1(y, operator, 0.1, 3, tau=0.0)
    with pytest.raises(ValueError, match="matrix"):
        ns.AnalysisOperator(np.eye(3), (4,), "matrix")
    with pytest.raises(ValueError, match="parameters"):
        operator.with_parameters(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="beta_tilde"):
        ns.power_prox(1.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        ns.soft_threshold(1.0, -0.5)
    with pytest.raises(ValueError, match="decay"):
        ns.learn_analysis_operator(y, loss, operator, 0.1, 5, decay=1.5)
