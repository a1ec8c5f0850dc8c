"""Lower-level solvers: reach the tolerance, OGM beats GD, warm starts help, failures are reported."""

import warnings

import numpy as np
import pytest
from problems import random_problem

import bilevel_lib as bl
from bilevel_lib.problem import data, filters


@pytest.fixture(scope="module")
def bars_problem():
    """The vertical-bar denoising problem of the review's Fig. 1.3 with random 4×2 filters."""
    truth = data.vertical_bars()[None]
    y = data.add_noise(truth, 25 / 255, rng=0)
    params = bl.Hyperparameters.from_filters(filters.random_filters(4, (4, 2), rng=1), beta0=-4.6)
    return bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.01)), params


@pytest.mark.parametrize("method", ["ogm", "gd"])
@pytest.mark.parametrize("model", ["identity", "blur", "mask"])
def test_solvers_reach_tolerance_and_the_minimiser(method, model):
    cost, params, x, rng = random_problem("2d-4x2", model, bl.CornerRounded1Norm(0.1))
    result = bl.solve_lower_level(cost, params, method=method, tol=1e-9, max_iter=50_000)
    assert result.converged and result.gradient_norm.max() < 1e-9
    assert result.x.shape == cost.y.shape
    # the minimiser has a lower cost than nearby points
    for _ in range(5):
        nearby = result.x + 1e-3 * rng.standard_normal(x.shape)
        assert np.all(cost.value(nearby, params) > cost.value(result.x, params))


def test_ogm_and_gd_agree_on_the_minimiser(bars_problem):
    cost, params = bars_problem
    ogm = bl.solve_lower_level(cost, params, method="ogm", tol=1e-10, max_iter=100_000)
    gd = bl.solve_lower_level(cost, params, method="gd", tol=1e-10, max_iter=100_000)
    # strongly convex (A = I): ‖x − x̂‖ ≤ ‖∇Φ(x)‖ / μ with μ = 1
    assert np.linalg.norm(ogm.x - gd.x) <= np.sqrt(cost.n_pixels) * 2e-10


def test_ogm_needs_clearly_fewer_iterations_than_gd(bars_problem):
    cost, params = bars_problem
    ogm = bl.solve_lower_level(cost, params, method="ogm", tol=1e-5, max_iter=100_000)
    gd = bl.solve_lower_level(cost, params, method="gd", tol=1e-5, max_iter=100_000)
    assert ogm.converged and gd.converged
    assert gd.iterations >= 3 * ogm.iterations, (gd.iterations, ogm.iterations)


def test_adaptive_restart_helps_ogm(bars_problem):
    cost, params = bars_problem
    with_restart = bl.solve_lower_level(cost, params, tol=1e-8, max_iter=100_000)
    without = bl.solve_lower_level(cost, params, tol=1e-8, max_iter=100_000, restart=False)
    assert with_restart.restarts > 0 and without.restarts == 0
    assert with_restart.iterations < without.iterations


def test_warm_start_cuts_iterations_after_a_small_change_of_gamma(bars_problem):
    cost, params = bars_problem
    first = bl.solve_lower_level(cost, params, tol=1e-7, max_iter=100_000)
    moved = params.unflatten(params.flatten() + 1e-3 * np.random.default_rng(5).standard_normal(params.size()))
    cold = bl.solve_lower_level(cost, moved, tol=1e-7, max_iter=100_000)
    warm = bl.solve_lower_level(cost, moved, x0=first.x, tol=1e-7, max_iter=100_000)
    assert warm.converged and cold.converged
    assert warm.iterations < 0.7 * cold.iterations, (warm.iterations, cold.iterations)


def test_fixed_budget_runs_exactly_t_iterations_without_warning(bars_problem):
    cost, params = bars_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = bl.solve_lower_level(cost, params, tol=None, max_iter=50)
    assert result.iterations == 50 and not result.converged
    assert "fixed budget" in result.message


def test_non_convergence_is_reported_and_warned(bars_problem):
    cost, params = bars_problem
    with pytest.warns(bl.ConvergenceWarning, match="max_iter=5"):
        result = bl.solve_lower_level(cost, params, tol=1e-12, max_iter=5)
    assert not result.converged and result.iterations == 5
    assert result.gradient_norm.max() > 1e-12
    quiet = bl.solve_lower_level(cost, params, tol=1e-12, max_iter=5, warn=False)
    assert not quiet.converged


def test_history_decreases_overall_and_matches_the_result(bars_problem):
    cost, params = bars_problem
    result = bl.solve_lower_level(cost, params, tol=1e-6, record_history=True)
    assert result.history.shape == (result.iterations + 1,)
    assert result.history[-1] == pytest.approx(result.gradient_norm.max())
    assert result.history[-1] < 1e-3 * result.history[0]


def test_batch_is_solved_like_separate_images():
    cost, params, x, rng = random_problem("1d", "blur", n_images=3)
    batch = bl.solve_lower_level(cost, params, tol=1e-11, max_iter=100_000)
    for j in range(3):
        single = bl.LowerLevelCost(cost.y[j : j + 1], cost.penalty, cost.forward_model)
        alone = bl.solve_lower_level(single, params, tol=1e-11, max_iter=100_000)
        np.testing.assert_allclose(batch.x[j], alone.x[0], atol=1e-9)


def test_same_inputs_give_identical_results(bars_problem):
    cost, params = bars_problem
    a = bl.solve_lower_level(cost, params, tol=1e-6)
    b = bl.solve_lower_level(cost, params, tol=1e-6)
    np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "newton"}, "method must be one of"),
        ({"tol": -1.0}, "tol must be a positive"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"x0": np.zeros((1, 3))}, "x0 must have the shape"),
        ({"x0": np.full((1, 32, 32), np.nan)}, "x0 must be finite"),
        ({"step": 0.0}, "step must be a positive"),
    ],
)
def test_bad_arguments(bars_problem, kwargs, match):
    cost, params = bars_problem
    with pytest.raises(ValueError, match=match):
        bl.solve_lower_level(cost, params, **kwargs)


# --- the compiled loop (problem.stencil.ogm_denoising_loop) against the Python loop ---------------


def _both_loops(monkeypatch, cost, params, **options):
    """The result of solve_lower_level with the compiled loop and with the Python loop."""
    from bilevel_lib.solvers import lower

    assert lower._compiled_loop_applies(cost, params, cost.y)
    compiled = bl.solve_lower_level(cost, params, **options)
    monkeypatch.setattr(lower, "COMPILED_MAX_WORK", 0)
    assert not lower._compiled_loop_applies(cost, params, cost.y)
    python = bl.solve_lower_level(cost, params, **options)
    monkeypatch.undo()
    return compiled, python


@pytest.mark.parametrize("geometry", ["1d", "2d-4x2", "2d-full"])
@pytest.mark.parametrize("method", ["ogm", "gd"])
def test_compiled_loop_gives_the_python_iterates(monkeypatch, geometry, method):
    cost, params, x, _ = random_problem(geometry, "identity", n_images=3, seed=2)
    for options in (dict(tol=None, max_iter=40), dict(x0=x, tol=None, max_iter=7), dict(tol=1e-10, max_iter=5000)):
        compiled, python = _both_loops(monkeypatch, cost, params, method=method, record_history=True, **options)
        assert compiled.iterations == python.iterations and compiled.restarts == python.restarts
        assert compiled.converged == python.converged and compiled.message == python.message
        np.testing.assert_allclose(compiled.x, python.x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(compiled.gradient_norm, python.gradient_norm, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(compiled.history, python.history, rtol=1e-9, atol=1e-15)
    if method == "ogm":  # restarts happened, so the restart rule was compared too
        assert python.restarts > 0


def test_compiled_loop_reaches_the_minimiser_and_hypergradient_of_the_python_loop(monkeypatch):
    """The running example's kind of problem: x̂ to 1e-10 and the implicit hypergradient to 1e-10."""
    from bilevel_lib.solvers import lower

    truth = data.cameraman()[140:172, 200:232]
    y = data.add_noise(truth, 0.1, rng=0)
    params = bl.Hyperparameters.from_filters(filters.random_filters(4, (3, 3), rng=1), beta0=-2.5)
    cost = bl.LowerLevelCost(y[None], bl.CornerRounded1Norm(0.01))
    loss = bl.SquaredErrorLoss(truth[None])
    compiled, python = _both_loops(monkeypatch, cost, params, tol=1e-9, max_iter=100_000)
    assert compiled.converged and compiled.iterations == python.iterations
    assert np.abs(compiled.x - python.x).max() < 1e-10
    options = dict(lower_tol=1e-9, cg_tol=1e-10, lower_max_iter=100_000)
    fast = bl.implicit_hypergradient(cost, params, loss, **options)
    monkeypatch.setattr(lower, "COMPILED_MAX_WORK", 0)
    slow = bl.implicit_hypergradient(cost, params, loss, **options)
    for name in ("beta0", "beta", "filters"):
        a, b = np.asarray(getattr(fast.gradient, name)), np.asarray(getattr(slow.gradient, name))
        assert np.abs(a - b).max() <= 1e-10 * max(1.0, np.abs(b).max()), name


def test_compiled_loop_applies_to_denoising_with_cr1n_on_small_images_only():
    from bilevel_lib.solvers import lower

    for model, penalty, applies in (
        ("identity", None, True),
        ("blur", None, False),
        ("mask", None, False),
        ("identity", bl.Quadratic(), False),
    ):
        cost, params, x, _ = random_problem("2d-4x2", model, penalty=penalty)
        assert lower._compiled_loop_applies(cost, params, x) is applies, (model, penalty)
    big = bl.LowerLevelCost(np.zeros((1, 200, 200)))
    bank = bl.Hyperparameters.from_filters(filters.dct_filters(3), beta0=-3.0)
    assert 200 * 200 * bank.filters.size > lower.COMPILED_MAX_WORK
    assert not lower._compiled_loop_applies(big, bank, big.y)


def test_compiled_loop_reports_divergence_like_the_python_loop(monkeypatch):
    from bilevel_lib.solvers import lower

    cost, params, _, _ = random_problem("2d-4x2", "identity")
    bound = 2.0 / cost.lipschitz(params)
    errors = []
    for limit in (lower.COMPILED_MAX_WORK, 0):
        monkeypatch.setattr(lower, "COMPILED_MAX_WORK", limit)
        with pytest.raises(bl.util.validation.NonFiniteError, match="exceeds 2/L") as caught:
            bl.solve_lower_level(cost, params, step=max(100.0, 50 * bound), tol=None, max_iter=100_000)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


def test_compiled_loop_takes_responses_beyond_the_square_roots_range_like_the_python_loop(monkeypatch):
    """|C x| > CR1N_SAFE: z² overflows, so the compiled loop recomputes those φ̇ with hypot, as numpy does."""
    from bilevel_lib.problem.stencil import CR1N_SAFE

    cost, params, _, _ = random_problem("2d-4x2", "identity", n_images=2)
    huge = bl.LowerLevelCost(cost.y * (100 * CR1N_SAFE), cost.penalty)
    x0 = huge.y.copy()
    x0[0, :4] = 0.0  # some responses small, some huge
    compiled, python = _both_loops(monkeypatch, huge, params, x0=x0, tol=None, max_iter=3, step=0.5)
    assert np.all(np.isfinite(compiled.x))
    np.testing.assert_allclose(compiled.x, python.x, rtol=1e-12, atol=0)
    np.testing.assert_allclose(compiled.gradient_norm, python.gradient_norm, rtol=1e-12)
