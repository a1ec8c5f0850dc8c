"""Hypergradients: implicit (IFT + CG) vs central finite differences vs the closed form (φ = z²)
vs the dense KKT solve; warm-started CG; the accuracy-vs-tolerance trend of review Fig. 5.1."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import experiments, hypergrad
from bilevel_lib.book import checks
from bilevel_lib.hypergrad import closed_form
from bilevel_lib.problem import losses
from bilevel_lib.problem.forward_models import CircularBlur, gaussian_kernel
from bilevel_lib.problem.metrics import relative_error
from bilevel_lib.solvers.cg import conjugate_gradient

GEOMETRIES = {"1d": ((16,), (3,), 2), "2d": ((8, 6), (2, 2), 2)}


def problem(geometry, model, penalty=None, seed=0, n_images=2):
    rng = np.random.default_rng(seed)
    signal_shape, filter_shape, k = GEOMETRIES[geometry]
    truth = rng.standard_normal((n_images,) + signal_shape)
    A = bl.Identity() if model == "identity" else CircularBlur(gaussian_kernel(3, 0.7, len(signal_shape)), signal_shape)
    y = A.forward(truth) + 0.3 * rng.standard_normal(truth.shape)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.1) if penalty is None else penalty, A)
    params = bl.Hyperparameters(
        beta0=-0.5,
        beta=rng.uniform(-0.5, 0.5, k),
        filters=rng.standard_normal((k,) + filter_shape) / np.sqrt(np.prod(filter_shape)),
    )
    return cost, params, losses.SquaredErrorLoss(truth), truth


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("model", ["identity", "blur"])
def test_implicit_hypergradient_matches_finite_differences(geometry, model):
    cost, params, loss, _ = problem(geometry, model)
    result = hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=200_000)
    assert result.converged and result.lower.converged and result.diagnostics["cg_converged"]
    fd = hypergrad.finite_difference_hypergradient(cost, params, loss, step=1e-5, lower_tol=1e-12)
    assert fd.converged, fd.message
    fd = fd.flat()
    analytic = result.gradient.flatten()
    assert relative_error(analytic, fd) <= 1e-6
    # and part by part, so a wrong β0, β_k or filter block cannot hide behind the others
    sizes = np.cumsum([0, 1, params.n_filters, params.filters.size])
    for start, stop, name in zip(sizes[:-1], sizes[1:], ["beta0", "beta", "filters"]):
        assert relative_error(analytic[start:stop], fd[start:stop]) <= 1e-6, name


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("model", ["identity", "blur"])
def test_closed_form_quadratic_case_matches_implicit_and_finite_differences(geometry, model):
    cost, params, loss, truth = problem(geometry, model, penalty=bl.Quadratic())
    closed = closed_form.quadratic_hypergradient(cost.y, truth, params, cost.forward_model)
    exact, exact_loss = closed.gradient, closed.loss
    implicit = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-13, cg_tol=1e-14, lower_max_iter=500_000
    )
    assert relative_error(implicit.gradient.flatten(), exact.flatten()) <= 1e-8
    assert implicit.loss == pytest.approx(exact_loss, rel=1e-10)
    np.testing.assert_allclose(
        closed_form.quadratic_solution(cost.y, params, cost.forward_model), implicit.x, atol=1e-9
    )
    fd = hypergrad.finite_difference_hypergradient(cost, params, loss, step=1e-4, lower_tol=1e-13).flat()
    assert relative_error(fd, exact.flatten()) <= 1e-6


def test_closed_form_rejects_non_circulant_models():
    cost, params, loss, truth = problem("1d", "identity", penalty=bl.Quadratic())
    with pytest.raises(TypeError, match="circulant"):
        closed_form.quadratic_hypergradient(cost.y, truth, params, bl.PixelMask(np.ones(16)))


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("model", ["identity", "blur"])
def test_kkt_view_gives_the_same_vector_as_the_ift(geometry, model):
    cost, params, loss, _ = problem(geometry, model)
    implicit = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-12, cg_tol=1e-13, lower_max_iter=200_000
    )
    kkt = hypergrad.kkt_hypergradient(cost, params, loss, implicit.x)
    assert relative_error(kkt.gradient.flatten(), implicit.gradient.flatten()) <= 1e-10


def test_warm_started_cg_needs_fewer_iterations_on_a_slightly_moved_gamma():
    cost, params, loss, _ = problem("2d", "identity")
    first = hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-10, cg_tol=1e-10)
    moved = params.unflatten(params.flatten() + 1e-3 * np.random.default_rng(1).standard_normal(params.size()))
    cold = hypergrad.implicit_hypergradient(cost, moved, loss, x0=first.x, lower_tol=1e-10, cg_tol=1e-10)
    warm = hypergrad.implicit_hypergradient(
        cost, moved, loss, x0=first.x, state=first.state, lower_tol=1e-10, cg_tol=1e-10
    )
    assert warm.converged and cold.converged
    assert warm.cg_iterations < cold.cg_iterations, (warm.cg_iterations, cold.cg_iterations)
    assert relative_error(warm.gradient.flatten(), cold.gradient.flatten()) <= 1e-8


def test_fig_5_1_angle_error_falls_as_the_lower_level_tolerance_tightens():
    cost, truth, loss, make_params = experiments.two_tap_problem()
    tolerances = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    for c0, c1 in [(-1.0, 1.2), (0.5, 1.0), (2.0, -1.0)]:
        angles, iterations = experiments.angle_error_vs_tolerance(cost, truth, make_params(c0, c1), tolerances)
        assert np.all(np.diff(iterations) >= 0)  # tighter tolerance, more work
        assert np.all(np.diff(angles) <= 1e-9 + 1e-3 * angles[:-1])  # and never a worse angle
        assert angles[-1] < 1e-3 * max(angles[0], 1e-3) and angles[-1] < 1e-4


def test_fig_5_1_landscape_minimum_is_a_scaled_finite_difference():
    cost, truth, loss, make_params = experiments.two_tap_problem()
    grid = np.linspace(-3, 3, 25)
    values = np.array(
        [[closed_form.quadratic_hypergradient(cost.y, truth, make_params(a, b)).loss for a in grid] for b in grid]
    )
    row, col = np.unravel_index(np.argmin(values), values.shape)
    c0, c1 = grid[col], grid[row]
    assert abs(c0 + c1) <= 0.25 * abs(c0) and abs(c0) > 0.3  # c ≈ s·[1, −1]
    assert values.min() < loss.value(cost.y)  # better than no denoising at all


# ----------------------------------------------------------------------------- CG and losses
def test_cg_solves_a_batch_of_spd_systems():
    rng = np.random.default_rng(2)
    mats = []
    for _ in range(3):
        m = rng.standard_normal((10, 10))
        mats.append(m @ m.T + 0.5 * np.eye(10))
    mats = np.stack(mats)
    b = rng.standard_normal((3, 10))
    result = conjugate_gradient(lambda v: np.einsum("jab,jb->ja", mats, v), b, tol=1e-12, max_iter=200)
    assert result.converged
    np.testing.assert_allclose(result.x, np.linalg.solve(mats, b[..., None])[..., 0], atol=1e-9)


def test_cg_relative_to_initial_residual_stops_earlier_from_a_good_warm_start():
    rng = np.random.default_rng(3)
    m = rng.standard_normal((30, 30))
    mat = m @ m.T + np.eye(30)
    b = rng.standard_normal((1, 30))
    exact = np.linalg.solve(mat, b[0])
    near = (exact + 1e-10 * rng.standard_normal(30))[None]
    apply = lambda v: v @ mat  # noqa: E731 (symmetric)
    rhs_mode = conjugate_gradient(apply, b, near, tol=1e-6)
    initial_mode = conjugate_gradient(apply, b, near, tol=1e-6, relative_to="initial")
    assert rhs_mode.iterations == 0  # already accurate relative to ‖b‖
    assert initial_mode.iterations > 0  # must reduce the small initial residual a million-fold


def test_cg_reports_non_convergence_and_bad_input():
    mat = np.diag(np.linspace(1, 1000, 50))
    b = np.ones((1, 50))
    with pytest.warns(bl.ConvergenceWarning, match="CG stopped"):
        result = conjugate_gradient(lambda v: v @ mat, b, tol=1e-14, max_iter=3)
    assert not result.converged and result.iterations == 3
    with pytest.raises(ValueError, match="relative_to"):
        conjugate_gradient(lambda v: v, b, relative_to="absolute")
    with pytest.raises(ValueError, match="positive definite"):
        conjugate_gradient(lambda v: -v, b)


def test_squared_error_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((3, 5))
    loss = losses.SquaredErrorLoss(truth)
    x = rng.standard_normal((3, 5))
    np.testing.assert_allclose(loss.gradient(x), checks.finite_difference_gradient(loss.value, x), atol=1e-8)
    assert loss.value(truth) == 0.0
    with pytest.raises(ValueError, match="shape"):
        loss.value(x[:2])


def test_gradient_angle_is_accurate_for_tiny_angles():
    assert hypergrad.gradient_angle_degrees([1.0, 0.0], [1.0, 1e-9]) == pytest.approx(np.degrees(1e-9), rel=1e-6)
    assert hypergrad.gradient_angle_degrees([1.0, 0.0], [-2.0, 0.0]) == pytest.approx(180.0)
