"""The hypergradient contract: every estimator of the smooth lower level returns one
:class:`~bilevel_lib.hypergrad.result.HypergradientResult`, agrees with central finite differences
within its own known accuracy, says when an inner solve was starved, and plugs into the double loop.

The problems are a 1-D and a small 2-D running example (Ex) with CR1N(ε = 0.1) and A = I (strongly
convex, so every method applies, MAID's certificate included), and the same geometries with
φ(z) = z² for the closed form.  The reference is computed here, not by the estimator under test:
central differences of ℓ(γ) with h = 1e-5 and every lower-level solve to ‖∇ₓΦ‖/√N < 1e-12.
"""

import functools

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import hypergrad, training
from bilevel_lib.hypergrad import unrolling as ur
from bilevel_lib.hypergrad.finite_differences import finite_difference_gradient
from bilevel_lib.hypergrad.result import HypergradientResult
from bilevel_lib.problem.metrics import relative_error

GEOMETRIES = {"1d": ((16,), (3,), 2, 2), "2d": ((6, 5), (2, 2), 2, 1)}  # signal, filter, K, J
TIGHT = 1e-12
T_LONG = 800  # OGM iterations after which x_T agrees with x̂ far below the tolerances used


def make_problem(geometry, penalty, seed=0):
    rng = np.random.default_rng(seed)
    signal_shape, filter_shape, k, n_images = GEOMETRIES[geometry]
    truth = rng.standard_normal((n_images,) + signal_shape)
    y = truth + 0.3 * rng.standard_normal(truth.shape)
    params = bl.Hyperparameters(
        beta0=-0.5,
        beta=rng.uniform(-0.5, 0.5, k),
        filters=rng.standard_normal((k,) + filter_shape) / np.sqrt(np.prod(filter_shape)),
    )
    return bl.LowerLevelCost(y, penalty), params, bl.SquaredErrorLoss(truth)


def central_differences(cost, params, loss, h=1e-5):
    """The reference: (ℓ(γ + h e_r) − ℓ(γ − h e_r)) / 2h with tightly solved lower levels."""
    base = bl.solve_lower_level(cost, params, tol=TIGHT, max_iter=500_000).x

    def upper(vector):
        solved = bl.solve_lower_level(cost, params.unflatten(vector), x0=base, tol=TIGHT, max_iter=500_000)
        assert solved.converged
        return loss.value(solved.x)

    return finite_difference_gradient(upper, params.flatten(), h)


@functools.cache
def setting(geometry, quadratic=False):
    """(cost, params, loss, reference gradient, x̂) for one geometry, cached across the tests."""
    cost, params, loss = make_problem(geometry, bl.Quadratic() if quadratic else bl.CornerRounded1Norm(0.1))
    x_hat = bl.solve_lower_level(cost, params, tol=TIGHT, max_iter=500_000).x
    return cost, params, loss, central_differences(cost, params, loss), x_hat


# Each method: the estimator in the contract's form (cost, params, loss, *, x0, state) with tight
# settings, the settings that starve one inner solve, the relative error to the finite-difference
# reference it must reach and the (smaller) one to the dense KKT solve at x̂, with the reason.  The
# finite-difference reference itself is accurate to ~3e-7 (rounding of ℓ over h = 1e-5), so 1e-6
# is the floor there; the dense KKT solve is exact to rounding and separates the methods further.
METHODS = {
    # CG to 1e-12 at an x̂ solved to 1e-12: exact to far below the reference's own error (~1e-8 from
    # h² and the 1e-12 solves divided by h), so the bound is the reference's accuracy, 1e-6
    "implicit": (
        functools.partial(
            hypergrad.implicit_hypergradient, lower_tol=TIGHT, lower_max_iter=500_000, cg_tol=TIGHT, cg_max_iter=5000
        ),
        dict(cg_max_iter=1, warn=False),
        1e-6,
        1e-10,
    ),
    # dense solves: exact up to rounding; same reference-limited bound
    "kkt": (functools.partial(hypergrad.kkt_hypergradient, lower_tol=TIGHT), dict(lower_max_iter=1), 1e-6, 1e-10),
    # differences with another step (1e-4): truncation O(h²) ≈ 1e-8 relative
    "finite-differences": (
        functools.partial(
            hypergrad.finite_difference_hypergradient, step=1e-4, lower_tol=TIGHT, lower_max_iter=500_000
        ),
        dict(lower_max_iter=1),
        1e-6,
        1e-6,
    ),
    # the unrolled map's exact gradient tends to the implicit one as T grows; at T = 800 OGM
    # iterations x_T is converged far below 1e-10, so what is left is the reference's error (and, vs
    # the dense solve, the decaying transient of the early iterations' Jacobians, ~3e-8 here)
    "unrolled-reverse": (
        functools.partial(ur.reverse_mode_hypergradient, n_iter=T_LONG, solver="ogm", lower_tol=1e-10),
        dict(n_iter=2),
        1e-6,
        1e-6,
    ),
    "unrolled-forward": (
        functools.partial(ur.forward_mode_hypergradient, n_iter=T_LONG, solver="ogm", lower_tol=1e-10),
        dict(n_iter=2),
        1e-6,
        1e-6,
    ),
    "unrolled-dispatch": (
        functools.partial(ur.unrolled_hypergradient, n_iter=T_LONG, mode="reverse", solver="ogm", lower_tol=1e-10),
        dict(n_iter=2),
        1e-6,
        1e-6,
    ),
    # back-propagating the last k = 600 of T = 800 steps: the neglected early steps sit at the fixed
    # point already, their contribution shrinks geometrically with k (Shaban et al.); ~4e-7 is left
    "truncated": (
        functools.partial(ur.truncated_hypergradient, n_iter=T_LONG, backprop_steps=600, solver="ogm", lower_tol=1e-10),
        dict(n_iter=2, backprop_steps=1),
        2e-6,
        2e-6,
    ),
    # MAID with ε = 1e-10, δ = 1e-12: ‖x − x̂‖ ≤ 1e-10 is certified, its error bound ω is tiny
    "maid-inexact": (
        functools.partial(hypergrad.inexact_hypergradient, eps=1e-10, delta=1e-12, parts=("beta0", "beta", "filters")),
        dict(cg_max_iter=1),
        1e-6,
        1e-9,
    ),
}


def estimate(name, geometry, **override):
    cost, params, loss, reference, _ = setting(geometry)
    estimator = METHODS[name][0]
    return estimator(cost, params, loss, x0=None, state=None, **override), cost, params, reference


def check_fields(result, cost, params):
    assert type(result) is HypergradientResult
    assert isinstance(result.gradient, bl.Hyperparameters)
    assert isinstance(result.gradient.beta0, float)
    assert result.gradient.beta.shape == params.beta.shape and result.gradient.filters.shape == params.filters.shape
    assert type(result.loss) is float and np.isfinite(result.loss)
    assert isinstance(result.x, np.ndarray) and result.x.shape == cost.y.shape
    for count in (result.lower_iterations, result.cg_iterations, result.products):
        assert type(count) is int and count >= 0
    assert result.work == result.lower_iterations + result.cg_iterations
    assert isinstance(result.diagnostics, dict)
    assert type(result.diagnostics["lower_residual"]) is float and result.diagnostics["lower_residual"] >= 0
    assert type(result.seconds) is float and result.seconds >= 0
    assert type(result.converged) is bool
    assert type(result.message) is str and result.message
    assert type(result.method) is str and result.method
    assert isinstance(result.state, dict)
    assert result.parts is None or (isinstance(result.parts, tuple) and all(isinstance(p, str) for p in result.parts))
    assert result.flat().shape == (params.size(result.parts) if result.parts else params.size(),)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_estimator_keeps_the_contract_and_matches_finite_differences(name, geometry):
    result, cost, params, reference = estimate(name, geometry)
    check_fields(result, cost, params)
    assert result.converged, result.message
    tolerance = METHODS[name][2]
    assert relative_error(result.gradient.flatten(), reference) <= tolerance
    # and block by block, so that a wrong β0, β_k or filter block cannot hide behind a large one
    sizes = np.cumsum([0, 1, params.n_filters, params.filters.size])
    for start, stop, part in zip(sizes[:-1], sizes[1:], ["beta0", "beta", "filters"]):
        assert relative_error(result.gradient.flatten()[start:stop], reference[start:stop]) <= 10 * tolerance, part


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", list(METHODS))
def test_every_estimator_matches_the_dense_kkt_solve_within_its_accuracy(name, geometry):
    cost, params, loss, _, x_hat = setting(geometry)
    dense = hypergrad.kkt_hypergradient(cost, params, loss, x_hat).flat()
    result = estimate(name, geometry)[0]
    assert relative_error(result.flat(), dense) <= METHODS[name][3]


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_the_estimators_with_an_inner_solve_report_its_residuals(geometry):
    implicit, cost, params, _ = estimate("implicit", geometry)
    assert implicit.diagnostics["lower_residual"] < TIGHT and implicit.diagnostics["cg_residual"] <= TIGHT
    assert implicit.lower_iterations > 0 and implicit.cg_iterations > 0 and implicit.state["q"].shape == cost.y.shape
    maid = estimate("maid-inexact", geometry)[0]
    assert maid.diagnostics["cg_residual_norm"] <= 1e-12 and maid.diagnostics["x_error_bound"] <= 1e-10 * (1 + 1e-9)
    assert type(maid.diagnostics["cg_residual"]) is float and maid.diagnostics["cg_residual"] < 1e-10  # relative
    # MAID's certificate: the distance to the (tight) implicit gradient is at most ω
    assert np.linalg.norm(maid.flat() - implicit.flat()) <= maid.diagnostics["error_bound"]
    reverse = estimate("unrolled-reverse", geometry)[0]
    assert reverse.lower_iterations == T_LONG and reverse.diagnostics["lower_residual"] < 1e-10


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_unrolled_estimators_approach_the_reference_as_T_grows(geometry):
    cost, params, loss, reference, _ = setting(geometry)
    errors = [
        relative_error(ur.reverse_mode_hypergradient(cost, params, loss, T, solver="ogm").flat(), reference)
        for T in (5, 20, 80, T_LONG)
    ]
    assert errors[0] > 1e-3 and errors[-1] <= 1e-6 and errors[-1] < 1e-3 * errors[0], errors


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_the_closed_form_keeps_the_contract_on_a_quadratic_problem(geometry):
    cost, params, loss, reference, x_hat = setting(geometry, quadratic=True)
    result = hypergrad.quadratic_estimator(cost, params, loss, x0=None, state=None)
    check_fields(result, cost, params)
    assert result.converged and result.method == "closed-form"
    # exact by division of spectra: agreement is limited by the reference (1e-6, as above)
    assert relative_error(result.gradient.flatten(), reference) <= 1e-6
    np.testing.assert_allclose(result.x, x_hat, atol=1e-9)
    assert relative_error(result.flat(), hypergrad.kkt_hypergradient(cost, params, loss, x_hat).flat()) <= 1e-10
    with pytest.raises(TypeError, match="z²"):
        hypergrad.quadratic_estimator(*setting(geometry)[:3])


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_the_jacobian_free_gradient_is_its_own_definition_and_a_descent_direction(geometry):
    cost, params, loss, reference, x_hat = setting(geometry)
    result = ur.jacobian_free_hypergradient(cost, params, loss, 0, x0=x_hat, lower_tol=1e-10, state=None)
    check_fields(result, cost, params)
    assert result.converged, result.message
    # its definition, −α (∇ₓγΦ(x̂))'∇ₓℓ(x̂), by central differences in γ of −α ⟨∇ₓℓ(x̂), ∇ₓΦ(x̂; γ)⟩ at fixed x̂
    alpha = result.diagnostics["step"]
    v = loss.gradient(x_hat)
    by_definition = finite_difference_gradient(
        lambda vector: -alpha * np.sum(v * cost.gradient(x_hat, params.unflatten(vector))), params.flatten(), 1e-5
    )
    assert relative_error(result.flat(), by_definition) <= 1e-7
    # an approximation of ∇ℓ (the Hessian replaced by 1/α): a descent direction, not the gradient
    cosine = result.flat() @ reference / np.linalg.norm(result.flat()) / np.linalg.norm(reference)
    assert cosine > 0.2, cosine
    assert relative_error(result.flat(), reference) > 1e-3


@pytest.mark.parametrize("geometry", ["1d"])
@pytest.mark.parametrize("name", list(METHODS) + ["jacobian-free"])
def test_a_starved_inner_solve_shows_up_in_converged_and_message(name, geometry):
    if name == "jacobian-free":
        cost, params, loss, _, _ = setting(geometry)
        result = ur.jacobian_free_hypergradient(cost, params, loss, 2, lower_tol=1e-10)
    else:
        result, cost, params, _ = estimate(name, geometry, **METHODS[name][1])
    check_fields(result, cost, params)
    assert result.converged is False
    assert any(word in result.message for word in ("CG", "lower", "missed")), result.message


@pytest.mark.parametrize("name", list(METHODS) + ["closed-form"])
def test_train_double_loop_takes_any_estimator_and_records_its_fields(name):
    quadratic = name == "closed-form"
    cost, params, loss, _, _ = setting("1d", quadratic=quadratic)
    estimator = hypergrad.quadratic_estimator if quadratic else METHODS[name][0]
    returned = []

    def recording(*args, **kwargs):
        returned.append(estimator(*args, **kwargs))
        return returned[-1]

    result = training.train_double_loop(cost, params, loss, n_steps=2, estimator=recording)
    history = result.history
    assert len(history.loss) == 2 and len(returned) == 2
    assert not np.allclose(result.params.flatten(), params.flatten())  # the optimizer moved γ
    for u, hyper in enumerate(returned):
        assert history.loss[u] == hyper.loss
        assert history.lower_gradient_norm[u] == hyper.diagnostics["lower_residual"]
        assert history.cg_iterations[u] == hyper.cg_iterations
    assert history.lower_iterations[1] == returned[1].lower_iterations
    assert history.lower_iterations[0] >= returned[0].lower_iterations  # plus the first, cold solve
    with pytest.raises(ValueError, match="default estimator"):
        training.train_double_loop(cost, params, loss, n_steps=1, estimator=recording, lower_tol=1e-8)


def test_the_default_estimator_of_the_double_loop_is_the_implicit_one_with_its_settings():
    cost, params, loss, _, _ = setting("1d")
    default = training.train_double_loop(cost, params, loss, n_steps=3)
    explicit = training.train_double_loop(
        cost,
        params,
        loss,
        n_steps=3,
        estimator=hypergrad.implicit_hypergradient,
        estimator_settings=dict(
            lower_tol=None, lower_max_iter=10, cg_tol=1e-3, cg_relative_to="initial", cg_max_iter=500, warn=False
        ),
    )
    np.testing.assert_array_equal(default.params.flatten(), explicit.params.flatten())
    assert default.history.work == explicit.history.work
