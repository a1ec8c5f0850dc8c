"""Upper-level optimizers and training loops: known optimum, warm starts, TTSA, save/load."""

import numpy as np
import pytest
from scipy.optimize import brentq

import bilevel_lib as bl
from bilevel_lib import training
from bilevel_lib.hypergrad import closed_form
from bilevel_lib.problem import data, filters
from bilevel_lib.training.optimizers import Adam, GradientDescent


@pytest.fixture(scope="module")
def quadratic_toy():
    """φ(z) = z², finite differences, learn β1 only: ℓ(β1) is smooth with a known minimiser."""
    truth = data.piecewise_constant_1d(48, 4, rng=0, n_jumps=3)
    y = data.add_noise(truth, 0.1, rng=1)
    params = bl.Hyperparameters(beta0=0.0, beta=[0.0], filters=filters.finite_differences(1))

    def derivative(b):
        gradient = closed_form.quadratic_hypergradient(y, truth, params.unflatten(np.array([b]), ("beta",))).gradient
        return gradient.beta[0]

    optimum = brentq(derivative, -8.0, 6.0, xtol=1e-12)
    cost = bl.LowerLevelCost(y, bl.Quadratic())
    return cost, params, bl.SquaredErrorLoss(truth), optimum


@pytest.mark.parametrize(
    "optimizer", [GradientDescent(learning_rate=20.0), Adam(learning_rate=0.05)], ids=["gd", "adam"]
)
def test_optimizers_reach_the_known_optimum_of_a_quadratic_bilevel_toy(quadratic_toy, optimizer):
    cost, params, loss, optimum = quadratic_toy
    result = training.train_double_loop(
        cost,
        params,
        loss,
        parts=("beta",),
        n_steps=600,
        optimizer=optimizer,
        lower_tol=1e-11,
        cg_tol=1e-12,
        cg_relative_to="rhs",
    )
    assert result.params.beta[0] == pytest.approx(optimum, abs=2e-3)
    assert result.history.loss[-1] < result.history.loss[0]


def test_adam_matches_its_defining_update_on_one_step():
    adam = Adam()
    g = np.array([0.5, -2.0])
    new = adam.step(np.zeros(2), g)
    # first step: m̂ = g, v̂ = g², so the step is −α g/(|g| + eps) ≈ −α sign(g)
    np.testing.assert_allclose(new, -1e-3 * g / (np.abs(g) + 1e-8))
    with pytest.raises(ValueError, match="shape changed"):
        adam.step(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="learning_rate"):
        Adam(learning_rate=-1.0)


@pytest.fixture(scope="module")
def bars():
    truth = data.vertical_bars((16, 16))[None]
    y = data.add_noise(truth, 25 / 255, rng=0)
    params = bl.Hyperparameters.from_filters(filters.random_filters(2, (2, 2), rng=1), beta0=-4.0)
    return bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.05)), params, bl.SquaredErrorLoss(truth)


def test_warm_starts_save_lower_level_iterations(bars):
    cost, params, loss = bars
    kwargs = dict(n_steps=15, lower_tol=1e-6, cg_tol=1e-6, cg_relative_to="rhs")
    warm = training.train_double_loop(cost, params, loss, warm_start=True, **kwargs)
    cold = training.train_double_loop(cost, params, loss, warm_start=False, **kwargs)
    warm_lower = sum(warm.history.lower_iterations[1:])  # step 0 includes the shared initial solve
    cold_lower = sum(cold.history.lower_iterations[1:])
    assert warm_lower < 0.7 * cold_lower, (warm_lower, cold_lower)
    assert sum(warm.history.cg_iterations) < sum(cold.history.cg_iterations)
    np.testing.assert_allclose(warm.params.flatten(), cold.params.flatten(), atol=1e-4)


def test_hoag_schedule_tightens_and_the_run_decreases_the_loss(bars):
    cost, params, loss = bars
    schedule = training.hoag_schedule(1e-2, 0.8)
    assert schedule(0) == 1e-2 and schedule(10) < schedule(5) < schedule(0)
    result = training.train_double_loop(
        cost, params, loss, n_steps=30, schedule=schedule, optimizer=Adam(learning_rate=0.02)
    )
    assert result.history.loss[-1] < 0.8 * result.history.loss[0]
    assert result.history.lower_gradient_norm[-1] < result.history.lower_gradient_norm[1]


def test_ttsa_decreases_the_loss(bars):
    cost, params, loss = bars
    result = training.train_ttsa(cost, params, loss, n_steps=300, upper_step=1.0)
    assert np.all(np.array(result.history.lower_iterations) == 1)
    assert np.mean(result.history.loss[-20:]) < 0.5 * np.mean(result.history.loss[5:25])


def test_stopping_rules_and_bad_settings(bars):
    cost, params, loss = bars
    stopped = training.train_double_loop(cost, params, loss, n_steps=500, stop_gradient_norm=1e9)
    assert len(stopped.history.loss) == 1 and "stopped at step 0" in stopped.message
    with pytest.raises(ValueError, match="exactly one lower-level rule"):
        training.train_double_loop(cost, params, loss, lower_iterations=10, lower_tol=1e-6)


@pytest.mark.parametrize("parts", [("beta",), ("beta", "filters")])
def test_a_cg_preconditioner_changes_the_work_not_the_run(bars, parts):
    """cg_preconditioner reaches each step's CG tolerance by other iterations: with a tight tolerance
    the run is the plain-CG run; the setting is recorded; β-only steps skip the filter taps and
    give the same β-gradient as the whole mixed product."""
    cost, params, loss = bars
    kwargs = dict(parts=parts, n_steps=8, lower_tol=1e-10, cg_tol=1e-11, cg_relative_to="rhs")
    plain = training.train_double_loop(cost, params, loss, **kwargs)
    circulant = training.train_double_loop(cost, params, loss, cg_preconditioner="circulant", **kwargs)
    assert plain.settings["cg_preconditioner"] is None and circulant.settings["cg_preconditioner"] == "circulant"
    np.testing.assert_allclose(circulant.params.flatten(), plain.params.flatten(), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(circulant.history.loss, plain.history.loss, rtol=1e-9)
    estimate = bl.hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-10, cg_tol=1e-11, parts=parts)
    whole = bl.hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-10, cg_tol=1e-11)
    assert estimate.parts == parts
    np.testing.assert_allclose(estimate.gradient.flatten(parts), whole.gradient.flatten(parts), rtol=1e-12)


def test_bad_cg_preconditioners_are_refused_before_any_work(bars):
    cost, params, loss = bars
    with pytest.raises(ValueError, match="cg_preconditioner must be None, one of .*'circulant'.*got 'jacobi'"):
        training.train_double_loop(cost, params, loss, n_steps=2, cg_preconditioner="jacobi")
    with pytest.raises(TypeError, match="cg_preconditioner must be .*got int"):
        training.train_double_loop(cost, params, loss, n_steps=2, cg_preconditioner=3)
    with pytest.raises(ValueError, match="cg_preconditioner configures the default estimator"):
        training.train_double_loop(
            cost, params, loss, n_steps=2, cg_preconditioner="circulant", estimator=bl.hypergrad.implicit_hypergradient
        )


def test_save_and_load_round_trip(bars, tmp_path):
    from bilevel_lib.experiments import store  # files are the experiments layer's business, not training's

    cost, params, loss = bars
    result = training.train_double_loop(cost, params, loss, n_steps=5)
    path, _ = store.save_result(result, tmp_path / "run", command="test", seconds=0.0)
    back = store.load_result(path)
    np.testing.assert_array_equal(back.params.flatten(), result.params.flatten())
    np.testing.assert_array_equal(back.x, result.x)
    assert back.history.loss == result.history.loss and back.history.work == result.history.work
    assert back.settings == result.settings and back.message == result.message
