"""Unrolled hypergradients: reverse vs forward mode vs finite differences of the *unrolled* loss;
truncation; the unrolled gradient tends to the implicit one as T grows; the Jacobian-free gradient
is a descent direction; OGM unrolled = the library's OGM without restart; the profiling helper."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.experiments import profiling
from bilevel_lib.hypergrad import unrolling as ur
from bilevel_lib.problem import losses
from bilevel_lib.problem.forward_models import CircularBlur, gaussian_kernel
from bilevel_lib.problem.metrics import relative_error

GEOMETRIES = {"1d": ((16,), (3,), 2), "2d": ((8, 6), (2, 2), 2)}
MODELS = ["identity", "blur"]


def problem(geometry="2d", model="identity", seed=0, n_images=2, eps=0.1):
    """(Ex) with CR1N(ε), truth ~ N(0, 1), y = A truth + 0.3 noise, random filters and strengths."""
    rng = np.random.default_rng(seed)
    signal_shape, filter_shape, k = GEOMETRIES[geometry]
    truth = rng.standard_normal((n_images,) + signal_shape)
    A = bl.Identity() if model == "identity" else CircularBlur(gaussian_kernel(3, 0.7, len(signal_shape)), signal_shape)
    y = A.forward(truth) + 0.3 * rng.standard_normal(truth.shape)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(eps), A)
    params = bl.Hyperparameters(
        beta0=-0.5,
        beta=rng.uniform(-0.5, 0.5, k),
        filters=rng.standard_normal((k,) + filter_shape) / np.sqrt(np.prod(filter_shape)),
    )
    return cost, params, losses.SquaredErrorLoss(truth)


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("solver", ["gd", "ogm"])
def test_reverse_equals_forward_and_both_match_finite_differences_of_the_unrolled_loss(geometry, model, solver):
    cost, params, loss = problem(geometry, model)
    T = 6
    reverse = ur.reverse_mode_hypergradient(cost, params, loss, T, solver=solver)
    forward = ur.forward_mode_hypergradient(cost, params, loss, T, solver=solver)
    assert relative_error(forward.flat(), reverse.flat()) <= 1e-10
    assert forward.loss == pytest.approx(reverse.loss, rel=1e-14)
    # the same fixed step and x_0 as the analytic estimators use
    fd = ur.finite_difference_unrolled_hypergradient(
        cost, params, loss, T, solver=solver, step=reverse.diagnostics["step"], h=1e-5
    )
    assert relative_error(reverse.flat(), fd) <= 1e-7
    assert relative_error(forward.flat(), fd) <= 1e-7
    # part by part, so that a wrong block cannot hide behind a large one
    sizes = np.cumsum([0, 1, params.n_filters, params.filters.size])
    for start, stop, name in zip(sizes[:-1], sizes[1:], ["beta0", "beta", "filters"]):
        assert relative_error(reverse.flat()[start:stop], fd[start:stop]) <= 1e-7, name


def test_forward_mode_on_a_subset_of_parts_matches_those_entries_of_reverse_mode():
    cost, params, loss = problem("2d", "blur")
    reverse = ur.reverse_mode_hypergradient(cost, params, loss, 8, solver="ogm")
    forward = ur.forward_mode_hypergradient(cost, params, loss, 8, solver="ogm", parts=("beta",))
    assert forward.parts == ("beta",) and forward.flat().shape == (params.n_filters,)
    assert relative_error(forward.flat(), reverse.gradient.beta) <= 1e-10
    assert forward.gradient.beta0 == 0.0 and not np.any(forward.gradient.filters)  # not differentiated
    # cost model of Table 4.1: forward mode pays R Hessian-vector products per iteration
    assert forward.diagnostics["hessian_vector_products"] == 8 * params.n_filters
    assert reverse.diagnostics["hessian_vector_products"] == 7 and reverse.diagnostics["mixed_products"] == 8


def test_a_custom_step_and_start_are_used_and_held_fixed():
    cost, params, loss = problem("1d", "identity")
    x0 = np.zeros_like(cost.y)
    step = 0.5 * ur.default_step(cost, params)
    result = ur.reverse_mode_hypergradient(cost, params, loss, 5, step=step, x0=x0)
    assert result.diagnostics["step"] == step
    fd = ur.finite_difference_unrolled_hypergradient(cost, params, loss, 5, step=step, x0=x0)
    assert relative_error(result.flat(), fd) <= 1e-7
    # with the default start A'y the gradient is a different one
    assert relative_error(ur.reverse_mode_hypergradient(cost, params, loss, 5, step=step).flat(), fd) > 1e-3


def test_unrolled_ogm_is_the_library_ogm_without_restart():
    cost, params, loss = problem("2d", "blur")
    step = ur.default_step(cost, params)
    x_T = ur.unrolled_solution(cost, params, 25, solver="ogm")
    library = bl.solve_lower_level(cost, params, method="ogm", restart=False, tol=None, max_iter=25, step=step)
    np.testing.assert_allclose(x_T, library.x, rtol=0, atol=1e-12)
    x_gd = ur.unrolled_solution(cost, params, 25, solver="gd")
    np.testing.assert_allclose(
        x_gd, bl.solve_lower_level(cost, params, method="gd", tol=None, max_iter=25).x, rtol=0, atol=1e-12
    )
    assert ur.unrolled_loss(cost, params, loss, 25, solver="ogm") == pytest.approx(loss.value(x_T), rel=1e-14)


def test_gradient_jvp_matches_finite_differences_of_the_gradient():
    cost, params, _ = problem("2d", "blur")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(cost.y.shape)
    R = params.size()
    x_dot = rng.standard_normal((R,) + x.shape)
    jvp = ur.gradient_jvp(cost, x, params, x_dot)
    flat = params.flatten()
    h = 1e-6
    for r in [0, 1, 2, R - 1, R // 2]:
        e = np.zeros(R)
        e[r] = h
        plus = cost.gradient(x + h * x_dot[r], params.unflatten(flat + e))
        minus = cost.gradient(x - h * x_dot[r], params.unflatten(flat - e))
        assert relative_error(jvp[r], (plus - minus) / (2 * h)) <= 1e-7, r


# ----------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("solver", ["gd", "ogm"])
def test_truncated_with_k_equal_to_T_is_reverse_mode_and_shorter_truncations_differ(solver):
    cost, params, loss = problem("1d", "blur")
    T = 12
    reverse = ur.reverse_mode_hypergradient(cost, params, loss, T, solver=solver, record_truncations=True)
    full = ur.truncated_hypergradient(cost, params, loss, T, T, solver=solver)
    np.testing.assert_array_equal(full.flat(), reverse.flat())
    assert full.diagnostics["stored_bytes"] == reverse.diagnostics["stored_bytes"] == T * cost.y.nbytes
    for k in (1, 3, 7):
        truncated = ur.truncated_hypergradient(cost, params, loss, T, k, solver=solver)
        assert truncated.diagnostics["stored_bytes"] == k * cost.y.nbytes  # memory O(kN)
        np.testing.assert_allclose(
            truncated.flat(), reverse.diagnostics["truncated_gradients"][k - 1], rtol=1e-12, atol=1e-15
        )
        assert relative_error(truncated.flat(), reverse.flat()) > 1e-6
    np.testing.assert_array_equal(reverse.diagnostics["truncated_gradients"][-1], reverse.flat())


def test_truncation_error_falls_with_k_near_the_fixed_point():
    cost, params, loss = problem("2d", "identity")
    x_hat = bl.solve_lower_level(cost, params, tol=1e-10).x
    reverse = ur.reverse_mode_hypergradient(cost, params, loss, 60, x0=x_hat, record_truncations=True)
    errors = [relative_error(g, reverse.flat()) for g in reverse.diagnostics["truncated_gradients"][[0, 4, 14, 29, 44]]]
    assert np.all(np.diff(errors) < 0), errors


# ----------------------------------------------------------------------------- unrolled -> implicit
@pytest.mark.parametrize("solver", ["gd", "ogm"])
def test_unrolled_gradient_tends_to_the_implicit_one_as_T_grows(solver):
    cost, params, loss = problem("2d", "identity")  # CR1N ε = 0.1, A = I: strongly convex
    implicit = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=100_000
    ).gradient.flatten()
    errors = np.array(
        [
            relative_error(ur.reverse_mode_hypergradient(cost, params, loss, T, solver=solver).flat(), implicit)
            for T in (5, 10, 20, 40, 80)
        ]
    )
    assert np.all(np.diff(errors) < 0), errors
    assert errors[-1] < 0.1 * errors[0]
    # and long enough, it is the implicit gradient
    long = ur.reverse_mode_hypergradient(cost, params, loss, 2000 if solver == "gd" else 800, solver=solver)
    assert relative_error(long.flat(), implicit) <= 1e-6


# ----------------------------------------------------------------------------- Jacobian-free
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("model", MODELS)
def test_jacobian_free_gradient_is_a_descent_direction_near_the_fixed_point(geometry, model):
    cost, params, loss = problem(geometry, model, seed=4)
    implicit = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=100_000
    )
    jfb = ur.jacobian_free_hypergradient(cost, params, loss, 0, x0=implicit.x)
    assert jfb.diagnostics["hessian_vector_products"] == 0 and jfb.diagnostics["stored_bytes"] == 0
    g_true = implicit.gradient.flatten()
    assert np.dot(jfb.flat(), g_true) > 0
    # at the fixed point it is the one-step truncation (x_{T−1} = x_T = x̂)
    one_step = ur.truncated_hypergradient(cost, params, loss, 1, 1, x0=implicit.x)
    assert relative_error(one_step.flat(), jfb.flat()) <= 1e-6


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors():
    cost, params, loss = problem("1d", "identity")
    with pytest.raises(ValueError, match="n_iter"):
        ur.reverse_mode_hypergradient(cost, params, loss, -1)
    with pytest.raises(ValueError, match="n_iter"):
        ur.reverse_mode_hypergradient(cost, params, loss, 2.5)
    with pytest.raises(ValueError, match="solver"):
        ur.reverse_mode_hypergradient(cost, params, loss, 3, solver="adam")
    with pytest.raises(ValueError, match="step"):
        ur.forward_mode_hypergradient(cost, params, loss, 3, step=-1.0)
    with pytest.raises(ValueError, match="x0"):
        ur.reverse_mode_hypergradient(cost, params, loss, 3, x0=np.zeros(5))
    with pytest.raises(ValueError, match="backprop_steps"):
        ur.truncated_hypergradient(cost, params, loss, 3, 4)
    with pytest.raises(ValueError, match="backprop_steps"):
        ur.truncated_hypergradient(cost, params, loss, 3, 0)
    with pytest.raises(ValueError, match="parts"):
        ur.forward_mode_hypergradient(cost, params, loss, 3, parts=("gamma",))
    with pytest.raises(ValueError, match="mode"):
        ur.unrolled_hypergradient(cost, params, loss, 3, mode="sideways")
    with pytest.raises(ValueError, match="backprop_steps"):
        ur.unrolled_hypergradient(cost, params, loss, 3, mode="truncated")
    with pytest.raises(TypeError, match="LowerLevelCost"):
        ur.reverse_mode_hypergradient("cost", params, loss, 3)
    with pytest.raises(TypeError, match="loss"):
        ur.reverse_mode_hypergradient(cost, params, object(), 3)
    with pytest.raises(ValueError, match="x_dot"):
        ur.gradient_jvp(cost, cost.y, params, np.zeros((2,) + cost.y.shape))


def test_zero_iterations_give_a_zero_gradient():
    cost, params, loss = problem("1d", "identity")
    for mode in ("reverse", "forward"):
        result = ur.unrolled_hypergradient(cost, params, loss, 0, mode=mode)
        assert not np.any(result.flat()) and result.loss == pytest.approx(loss.value(cost.y))


# ----------------------------------------------------------------------------- profiling
def test_measure_reports_the_peak_of_what_a_function_allocates():
    def allocate():
        block = np.ones(1_000_000)  # 8 MB
        return float(block.sum())

    result, seconds, peak = profiling.measure(allocate, repeat=2)
    assert result == 1_000_000.0 and seconds > 0
    assert 8_000_000 <= peak < 9_000_000
    small = profiling.measure(lambda: np.ones(10).sum())
    assert small.peak_bytes < 10_000
    assert profiling.measure(allocate, memory=False).peak_bytes == 0
    assert profiling.format_bytes(3_200_000) == "3.2 MB"
    with pytest.raises(ValueError, match="repeat"):
        profiling.measure(allocate, repeat=0)
    with pytest.raises(TypeError, match="callable"):
        profiling.measure(42)


def test_measure_reports_the_shortest_or_the_median_time(monkeypatch):
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # three runs of 3, 1 and 2 seconds
    monkeypatch.setattr(profiling.time, "perf_counter", lambda: next(ticks))
    assert profiling.measure(lambda: None, repeat=3, memory=False).seconds == 1.0
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    assert profiling.measure(lambda: None, repeat=3, memory=False, statistic="median").seconds == 2.0
    with pytest.raises(ValueError, match="statistic"):
        profiling.measure(lambda: None, statistic="mean")


def test_reverse_mode_memory_grows_with_T_and_forward_mode_memory_with_R():
    cost, params, loss = problem("2d", "identity")
    peaks = {
        T: profiling.measure(lambda: ur.reverse_mode_hypergradient(cost, params, loss, T)).peak_bytes for T in (10, 100)
    }
    assert peaks[100] - peaks[10] >= 90 * cost.y.nbytes  # the stored iterates
    small = profiling.measure(lambda: ur.forward_mode_hypergradient(cost, params, loss, 100, parts=("beta0",)))
    large = profiling.measure(lambda: ur.forward_mode_hypergradient(cost, params, loss, 20))
    assert small.peak_bytes < peaks[100]  # no stored iterates
    assert large.peak_bytes - small.peak_bytes >= (params.size() - 1) * cost.y.nbytes
