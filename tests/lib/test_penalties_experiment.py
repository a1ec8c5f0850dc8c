"""The penalty comparison of Ch. "Other losses and inpainting" at a tiny size and its trend, the Hessian
check behind it against a dense eigensolver, and the implicit hypergradient of the non-convex
log(1 + z²/ε²) at a local minimiser against finite differences."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.experiments import beyond_mse
from bilevel_lib.problem import filters
from bilevel_lib.problem.metrics import relative_error
from bilevel_lib.solvers.cg import conjugate_gradient
from bilevel_lib.training.loops import train_double_loop
from bilevel_lib.training.optimizers import Adam


@pytest.fixture(scope="module")
def comparison():
    return beyond_mse.penalty_comparison(size=24, filter_size=3, n_steps=60, log_eps_grid=(0.01, 0.05))


def test_both_penalties_learn_and_the_log_scale_is_the_best_of_its_grid(comparison):
    assert comparison["penalties"] == ("CR1N", "log")
    runs = {"CR1N": "CR1N", "log": "log", "CR1N filters": "CR1N", "log filters": "log"}
    assert comparison["runs"] == runs | {"CR1N filters lr=0.005": "CR1N", "log filters lr=0.005": "log"}
    search = comparison["eps_search"]
    assert comparison["eps"]["log"] == min(search, key=search.get)  # the ε with the lowest β0-grid loss
    for name in comparison["penalties"]:
        train = {row: float(np.mean(comparison["train"][row]["snr"])) for row in (f"{name} start", name)}
        assert comparison["history"][name][-1] < 0.97, name  # the run lowered its loss
        # the tight-solve training SNR rose by more than the 0.1 dB slack between T = 10 and tight solves
        assert train[name] >= train[f"{name} start"] + 0.15, name
        assert np.array_equal(comparison["params"][name].filters, comparison["start"][name].filters)
        assert comparison["params"][name].beta0 == comparison["start"][name].beta0
    for split in ("train", "test"):
        assert set(comparison[split]) == {"CR1N start", "log start"} | set(comparison["runs"])


def test_the_filter_runs_learn_the_filters_from_the_same_start(comparison):
    filter_runs = [run for run in comparison["runs"] if "filters" in run]
    assert len(filter_runs) == 4
    for run in filter_runs:
        start = comparison["start"][comparison["runs"][run]]
        assert not np.array_equal(comparison["params"][run].filters, start.filters), run
        assert comparison["history"][run][0] == 1.0
        stopped = comparison["stopped"][run]
        if comparison["runs"][run] == "CR1N":
            # Φ strongly convex: CG never refuses, the run takes every step and lowers its loss
            assert stopped is None and len(comparison["history"][run]) == 60, run
            assert comparison["history"][run][-1] < 0.98, run
        elif stopped is not None:  # the log penalty may meet non-positive curvature: the run stops there
            assert "not positive definite" in stopped["message"]
            assert len(comparison["history"][run]) == stopped["step"] >= 1


def _penalty_case():
    truth = np.full((1, 12, 12), 0.2)
    truth[0, 3:9, 3:9] = 0.8
    noisy = truth + 0.1 * np.random.default_rng(0).standard_normal(truth.shape)
    cost = bl.LowerLevelCost(noisy, bl.CornerRounded1Norm(0.01))
    return cost, bl.Hyperparameters(-4.0, np.zeros(8), filters.dct_filters(3)), bl.SquaredErrorLoss(truth)


def test_train_until_refused_is_the_double_loop_and_keeps_what_a_refused_run_reached(monkeypatch):
    cost, start, loss = _penalty_case()
    plain = train_double_loop(
        cost, start, loss, parts=("beta", "filters"), n_steps=4, optimizer=Adam(0.01), lower_iterations=3
    )
    params, losses, stopped = beyond_mse._train_until_refused(
        cost, start, loss, ("beta", "filters"), 4, Adam(0.01), 3, False
    )
    assert stopped is None and losses == list(plain.history.loss)  # the same run, step for step
    np.testing.assert_array_equal(params.flatten(), plain.params.flatten())
    # CG refuses at the third step: the run stops there and keeps the γ it was at
    calls, real = [], hypergrad.implicit.implicit_hypergradient

    def refusing(cost, params, loss, **settings):
        calls.append(params)
        if len(calls) == 3:
            raise ValueError("the Hessian is not positive definite along a CG direction")
        return real(cost, params, loss, **settings)

    monkeypatch.setattr(hypergrad.implicit, "implicit_hypergradient", refusing)
    params, losses, stopped = beyond_mse._train_until_refused(
        cost, start, loss, ("beta", "filters"), 4, Adam(0.01), 3, False
    )
    assert stopped["step"] == 2 and "not positive definite" in stopped["message"] and len(losses) == 2
    assert params is calls[2] and losses == list(plain.history.loss[:2])
    # a refusal before any step is taken, or another error, is raised
    for message in ("the Hessian is not positive definite along a CG direction", "another failure"):

        def failing(*args, message=message, **kwargs):
            raise ValueError(message)

        monkeypatch.setattr(hypergrad.implicit, "implicit_hypergradient", failing)
        with pytest.raises(ValueError, match=message):
            beyond_mse._train_until_refused(cost, start, loss, ("beta",), 4, Adam(0.01), 3, False)


def test_the_hessian_is_checked_at_every_reconstruction(comparison):
    # Φ = ½‖x − y‖² + a convex term with CR1N: λ_min ≥ 1, and = 1 since the DCT bank has no constant filter
    for split in ("train", "test"):
        np.testing.assert_allclose(comparison["hessian_min"]["CR1N"][split], 1.0, atol=1e-4)
        # the log penalty: positive definite (strict local minimisers), with responses in its concave part
        assert np.all(comparison["hessian_min"]["log"][split] > 0), split
    assert comparison["concave_fraction"]["log"] > 0.01
    assert all(spread < 1e-3 for spread in comparison["start_spread"].values())


def _dense_hessian(cost, params, x):
    n = x[0].size
    columns = [cost.hessian_vector_product(x, params, np.eye(n)[i].reshape(x.shape)) for i in range(n)]
    return np.stack([c.ravel() for c in columns], axis=1)


@pytest.mark.parametrize("beta0", [-4.0, 0.0])
def test_smallest_hessian_eigenvalue_matches_a_dense_solver_and_cg_refuses_an_indefinite_hessian(beta0):
    rng = np.random.default_rng(2)
    x = rng.random((1, 8, 8))
    cost = bl.LowerLevelCost(x + 0.05 * rng.standard_normal(x.shape), bl.LogSquare(0.05))
    params = bl.Hyperparameters(beta0, np.zeros(8), filters.dct_filters(3))
    dense = np.linalg.eigvalsh(_dense_hessian(cost, params, x)).min()
    found = beyond_mse.smallest_hessian_eigenvalues(cost, params, x, tol=1e-10)
    assert found[0] == pytest.approx(dense, abs=1e-6)
    if beta0 == 0.0:  # strong weights on a rough image: the concave part of φ wins
        assert dense < 0
        with pytest.raises(ValueError, match="not positive definite"):
            conjugate_gradient(cost.hessian_operator(x, params), rng.standard_normal(x.shape), tol=1e-12, max_iter=500)
    else:
        assert dense > 0


def test_log_square_hypergradient_at_a_local_minimiser_matches_finite_differences():
    rng = np.random.default_rng(5)
    truth = np.full((2, 12, 12), 0.2)  # two piecewise-constant images: their edges reach φ's concave part
    truth[0, 3:9, 3:9] = 0.8
    truth[1][np.add.outer(np.arange(12), np.arange(12)) > 11] = 0.7
    cost = bl.LowerLevelCost(truth + 0.1 * rng.standard_normal(truth.shape), bl.LogSquare(0.01))
    params = bl.Hyperparameters(-7.0, rng.uniform(-0.5, 0.5, 8), filters.dct_filters(3))
    loss = bl.SquaredErrorLoss(truth)
    result = hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=400_000)
    assert result.converged
    x_hat = result.x
    # a strict local minimiser (the IFT applies), with responses in the concave part of φ (|z| > ε)
    assert np.all(beyond_mse.smallest_hessian_eigenvalues(cost, params, x_hat) > 0.05)
    assert np.mean(np.abs(cost.operator(params).forward(x_hat)) > 0.01) > 0.02
    # the perturbed solves start at x̂, so they follow the same local minimiser.  φ's third derivative is
    # large (ε = 0.01), so the filter taps want a small h: at h = 1e-4 the truncation error was 5e-5
    for parts, step, tol in ((("beta0", "beta"), 1e-4, 1e-6), (("filters",), 1e-5, 1e-5)):
        fd = hypergrad.finite_difference_hypergradient(
            cost, params, loss, parts=parts, step=step, lower_tol=1e-12, x0=x_hat
        )
        assert fd.converged, fd.message
        assert relative_error(result.gradient.flatten(parts), fd.flat()) <= tol, parts


def test_bad_filter_rates_are_refused():
    for bad in ((), (0.01, 0.01)):
        with pytest.raises(ValueError, match="filter_lr must hold one or more distinct positive rates"):
            beyond_mse.penalty_comparison(filter_lr=bad)
    with pytest.raises(ValueError, match="filter_lr"):
        beyond_mse.penalty_comparison(filter_lr=(0.01, -1.0))
    with pytest.raises(TypeError, match="filter_lr"):
        beyond_mse.penalty_comparison(filter_lr="0.01")


def test_bad_eps_grids_are_refused():
    with pytest.raises(ValueError, match="log_eps_grid"):
        beyond_mse.penalty_comparison(log_eps_grid=())
    with pytest.raises(ValueError, match="log_eps_grid"):
        beyond_mse.penalty_comparison(log_eps_grid=(0.01, -1.0))
    with pytest.raises(TypeError, match="log_eps_grid"):
        beyond_mse.penalty_comparison(log_eps_grid=0.01)
