"""β tuning: grid and random search find the best of what they try; gradient descent decreases ℓ."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib.problem import data, filters, losses
from bilevel_lib.training import tuning


@pytest.fixture(scope="module")
def bars():
    truth = data.vertical_bars((16, 16))[None]
    y = data.add_noise(truth, 25 / 255, rng=0)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.05))
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=-3.0)
    return cost, params, losses.SquaredErrorLoss(truth)


def test_grid_search_returns_the_best_grid_point(bars):
    cost, params, loss = bars
    grid = np.arange(-6.0, 0.01, 0.5)
    result = tuning.grid_search_beta0(cost, params, loss, grid, lower_tol=1e-8)
    direct = [
        loss.value(bl.solve_lower_level(cost, bl.Hyperparameters(b, params.beta, params.filters), tol=1e-8).x)
        for b in grid
    ]
    np.testing.assert_allclose(result.losses, direct, rtol=1e-6)
    assert result.best.beta0 == grid[int(np.argmin(direct))]
    assert result.n_solves == grid.size and result.lower_iterations > 0
    with pytest.raises(ValueError, match="non-empty 1-D"):
        tuning.grid_search_beta0(cost, params, loss, [])


def test_random_search_is_seeded_and_keeps_its_best(bars):
    cost, params, loss = bars
    a = tuning.random_search_beta(cost, params, loss, 6, rng=3)
    b = tuning.random_search_beta(cost, params, loss, 6, rng=3)
    np.testing.assert_array_equal(a.candidates, b.candidates)
    assert a.best_loss == a.losses.min()
    np.testing.assert_array_equal(a.best.beta, a.candidates[int(np.argmin(a.losses))])


def test_gradient_descent_on_beta_decreases_the_loss_and_the_gradient(bars):
    cost, params, loss = bars
    result = tuning.gradient_descent_beta(cost, params, loss, n_steps=8, step=1.0)
    assert np.all(np.diff(result.loss) < 0)  # Armijo steps only
    assert result.gradient_norm[-1] < 0.2 * result.gradient_norm[0]
    assert result.n_solves >= len(result.loss)
    assert len(result.solves) == len(result.loss) and np.all(np.diff(result.solves) > 0)
    # it learned to weight the vertical difference (which sparsifies the bars) more
    assert result.params.beta[1] > result.params.beta[0]
    # β0 and the filters were not touched
    assert result.params.beta0 == params.beta0
    np.testing.assert_array_equal(result.params.filters, params.filters)
