"""CVXPY/diffcp references agree with the library's exact and implicit gradients (small, fast)."""

import numpy as np
import pytest
from problems import relative_error

import bilevel_lib as bl
from bilevel_lib import l1 as sl
from bilevel_lib.l1 import cvx
from bilevel_lib.problem import ops

pytest.importorskip("cvxpy")
pytest.importorskip("diffcp")

CVX_TOL = 1e-5  # SCS at eps 1e-9 and diffcp's derivative: agreement to about this relative error


@pytest.mark.parametrize("transform", ["random", "identity"])
def test_l1_program_gradient_agrees_with_the_closed_form(transform):
    rng = np.random.default_rng(0)
    n, k = 12, 10
    W = 0.3 * rng.standard_normal((k, n)) if transform == "random" else 0.5 * np.eye(n)
    truth = rng.standard_normal(n)
    y = truth + 0.3 * rng.standard_normal(n)
    program = cvx.L1DenoisingProgram(n, W.shape[0], eps=1e-9)
    assert program.problem.is_dcp(dpp=True)
    reference = program.gradient(y, truth, W)
    exact = sl.l1_hypergradient(y, truth, W)
    solve = exact.state["solve"]
    assert np.any(solve.signs == 0)
    assert np.max(np.abs(reference.x - solve.x[0])) <= 1e-7
    assert relative_error(reference.gradient, exact.gradient) <= CVX_TOL
    assert reference.diagnostics["solve_seconds"] > 0 and reference.diagnostics["backward_seconds"] > 0


def test_shift_indices_reproduce_the_library_correlation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6))
    filters = rng.standard_normal((2, 3, 2))
    shifts = cvx.circular_shift_indices((5, 6), (3, 2))
    via_shifts = np.einsum("ka,an->kn", filters.reshape(2, -1), x.ravel()[shifts])
    assert np.allclose(via_shifts, ops.correlate(x, filters).reshape(2, -1))


def filter_problem(seed=2, shape=(5, 5)):
    rng = np.random.default_rng(seed)
    filters = 0.3 * rng.standard_normal((2, 2, 2))
    truth = rng.standard_normal(shape)
    return filters, truth, truth + 0.3 * rng.standard_normal(shape)


def test_l1_filter_program_agrees_with_the_exact_solver_and_closed_form():
    filters, truth, y = filter_problem()
    program = cvx.FilterDenoisingProgram(y.shape, 2, (2, 2), penalty="l1", eps=1e-9)
    assert program.problem.is_dcp(dpp=True)
    reference = program.gradient(y, truth, filters)
    exact = sl.solve_l1_denoising(y, ops.FilterBankOperator(filters, y.shape))
    assert np.max(np.abs(reference.x - exact.x[0])) <= 1e-7
    matrix = np.concatenate([ops.correlation_matrix(f, y.shape) for f in filters])
    gradient = sl.closed_form_gradient(y.ravel(), truth.ravel(), matrix, exact.signs.reshape(1, -1)).gradient
    taps = sl.filter_gradient_from_matrix(gradient, (2, 2), y.shape)
    assert relative_error(reference.gradient, taps) <= CVX_TOL
    # the pitfall: leave the auxiliary variable unseeded and CVXPY silently seeds it with ones
    unseeded = program.gradient(y, truth, filters, seed_auxiliary=False)
    assert relative_error(unseeded.gradient, taps) > 1e-2


def test_smoothed_filter_program_agrees_with_the_implicit_hypergradient():
    filters, truth, y = filter_problem(seed=3)
    strengths = np.exp(np.array([-1.0, -0.5]))
    program = cvx.FilterDenoisingProgram(
        y.shape, 2, (2, 2), penalty="cr1n", smoothing=0.1, strengths=strengths, eps=1e-9
    )
    reference = program.gradient(y, truth, filters)
    params = bl.Hyperparameters(beta0=-1.0, beta=np.array([0.0, 0.5]), filters=filters)
    cost = bl.LowerLevelCost(y[None], bl.CornerRounded1Norm(0.1))
    implicit = bl.implicit_hypergradient(
        cost, params, bl.SquaredErrorLoss(truth[None]), lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=100_000
    )
    assert np.max(np.abs(reference.x - implicit.x[0])) <= 1e-7
    assert relative_error(reference.gradient, implicit.gradient.filters) <= CVX_TOL


def test_modes_agree():
    filters, truth, y = filter_problem(seed=4, shape=(4, 4))
    gradients = [
        cvx.FilterDenoisingProgram(y.shape, 2, (2, 2), eps=1e-9, mode=mode).gradient(y, truth, filters).gradient
        for mode in ("dense", "lsqr")
    ]
    assert relative_error(gradients[1], gradients[0]) <= 1e-4


def test_bad_input_raises():
    with pytest.raises(ValueError, match="mode must be one of"):
        cvx.L1DenoisingProgram(4, 3, mode="magic")
    program = cvx.L1DenoisingProgram(4, 3)
    with pytest.raises(ValueError, match="expected y of shape"):
        program.solve(np.zeros(4), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="W must be finite"):
        program.solve(np.zeros(4), np.full((3, 4), np.inf))
    with pytest.raises(ValueError, match="penalty must be"):
        cvx.FilterDenoisingProgram((4, 4), 1, (2, 2), penalty="huber")
    with pytest.raises(ValueError, match="fit in"):
        cvx.circular_shift_indices((4, 4), (5, 2))


def test_solve_without_requires_grad_uses_scs_and_agrees_with_the_exact_solver():
    """solve()'s default requires_grad=False used to pass SCS/diffcp options to CVXPY's default solver."""
    rng = np.random.default_rng(3)
    W = 0.4 * rng.standard_normal((6, 5))
    y = rng.standard_normal(5)
    program = cvx.L1DenoisingProgram(5, 6)
    exact = sl.solve_l1_denoising(y, W).x[0]
    plain = program.solve(y, W)
    assert program.problem.solver_stats.solver_name == "SCS"
    assert np.abs(plain - exact).max() < 1e-6
    assert np.abs(program.solve(y, W, requires_grad=True) - plain).max() < 1e-6
    with pytest.raises(TypeError, match="requires_grad"):
        program.solve(y, W, requires_grad="yes")


def test_filter_program_solve_without_requires_grad():
    rng = np.random.default_rng(4)
    filters = 0.3 * rng.standard_normal((2, 2, 2))
    image = rng.standard_normal((4, 4))
    program = cvx.FilterDenoisingProgram((4, 4), 2, (2, 2))
    exact = sl.solve_l1_denoising(image, ops.FilterBankOperator(filters, (4, 4))).x[0]
    plain = program.solve(image, filters)
    assert program.problem.solver_stats.solver_name == "SCS"
    assert np.abs(plain - exact).max() < 1e-5
    assert np.abs(program.solve(image, filters, requires_grad=True) - plain).max() < 1e-5


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: cvx.L1DenoisingProgram(0, 3), "n must be an integer ≥ 1"),
        (lambda: cvx.L1DenoisingProgram(3, True), "k must be an integer"),
        (lambda: cvx.L1DenoisingProgram(3, 3, eps=-1.0), "eps must be a finite number"),
        (lambda: cvx.L1DenoisingProgram(3, 3, mode="qr"), "mode must be one of"),
        (lambda: cvx.L1DenoisingProgram(3, 3, max_iters=0), "max_iters must be an integer ≥ 1"),
        (lambda: cvx.FilterDenoisingProgram((4, 4), 2, (5, 2)), "filter shape"),
        (lambda: cvx.FilterDenoisingProgram((4, 4), 0, (2, 2)), "n_filters"),
        (lambda: cvx.FilterDenoisingProgram((4, 4), 1, (2, 2), penalty="l2"), "penalty"),
        (lambda: cvx.L1DenoisingProgram(3, 3).solve(np.ones(3) + 1j, np.eye(3)), "y must be an array of real"),
        (lambda: cvx.L1DenoisingProgram(3, 3).solve(np.ones(3), np.full((3, 3), np.nan)), "W must be finite"),
        (lambda: cvx.cvx_l1_hypergradient(np.ones(3), np.ones(3), np.eye(3), program=object()), "program"),
    ],
)
def test_programs_validate_their_arguments(build, words):
    with pytest.raises((TypeError, ValueError), match=words):
        build()
