"""MAID: the computable bound really bounds the hypergradient error; MAID decreases the loss."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.problem import data, filters
from bilevel_lib.training import maid


@pytest.fixture(scope="module")
def problem():
    truth = data.vertical_bars((16, 16))[None].repeat(2, axis=0)
    y = data.add_noise(truth, 25 / 255, rng=0)
    params = bl.Hyperparameters.from_filters(filters.random_filters(2, (2, 2), rng=1), beta0=-3.0)
    return bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.05)), params, bl.SquaredErrorLoss(truth)


@pytest.mark.parametrize("parts", [("beta",), ("beta", "filters"), ("beta0", "beta", "filters")])
@pytest.mark.parametrize("eps,delta", [(1e-1, 1e-1), (1e-2, 1e-3), (1e-4, 1e-2), (1e-6, 1e-7)])
def test_error_bound_is_an_upper_bound_of_the_true_error(problem, parts, eps, delta):
    cost, params, loss = problem
    exact = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-13, cg_tol=1e-14, lower_max_iter=1_000_000
    ).gradient.flatten(parts)
    estimate = maid.inexact_hypergradient(cost, params, loss, eps, delta, parts=parts)
    assert estimate.converged, estimate.message
    error = np.linalg.norm(estimate.flat() - exact)
    assert estimate.diagnostics["x_error_bound"] <= eps * (1 + 1e-9)
    assert error <= estimate.diagnostics["error_bound"]
    assert error > 0  # the test problem is inexact enough to have an error to bound


def test_bound_shrinks_with_the_accuracies(problem):
    cost, params, loss = problem
    bounds = [
        maid.inexact_hypergradient(cost, params, loss, e, e).diagnostics["error_bound"] for e in (1e-2, 1e-4, 1e-6)
    ]
    assert bounds[0] > 10 * bounds[1] > 100 * bounds[2]


def test_maid_decreases_the_loss_and_counts_its_work(problem):
    cost, params, loss = problem
    result = maid.train_maid(cost, params, loss, n_steps=10)
    losses = np.array(result.history.loss)
    assert losses[-1] < 0.6 * losses[0]
    assert np.all(np.diff(result.history.work) > 0)


def test_maid_refuses_problems_without_a_certified_bound():
    y = np.zeros((1, 8))
    cost = bl.LowerLevelCost(y, bl.LogSquare(1.0))
    params = bl.Hyperparameters.from_filters(filters.finite_differences(1))
    with pytest.raises(ValueError, match="convex"):
        maid.inexact_hypergradient(cost, params, bl.SquaredErrorLoss(y), 1e-2, 1e-2)
    mask = bl.PixelMask(np.array([1.0, 0, 1, 1, 1, 1, 1, 1]))
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.1), mask)
    with pytest.raises(ValueError, match="strongly convex"):
        maid.inexact_hypergradient(cost, params, bl.SquaredErrorLoss(y), 1e-2, 1e-2)
