"""Every ℓ1 hypergradient estimator honours the one contract (bilevel_lib.hypergrad.result).

On the same small problems (1-D signals, W = ½I, a random W, a 2-filter bank), each estimator must
return a HypergradientResult whose gradient has the container and shape of what it was given,
agree with central finite differences of the *exactly solved* loss within its known accuracy
(closed forms to ~1e-9, CVXPY to its solver accuracy, the smoothed IFT and the unrolled
primal–dual only in the limit ε → 0 and T → ∞, checked as a trend), report ``converged=True`` on
good settings and ``converged=False`` with a message on starved ones; and BLORC training still
runs on the contract.
"""

import functools
import warnings

import numpy as np
import pytest
from problems import relative_error

from bilevel_lib import l1 as sl
from bilevel_lib.hypergrad.result import HypergradientResult
from bilevel_lib.l1 import primal_dual as ns
from bilevel_lib.problem import losses, ops
from bilevel_lib.solvers.lower import ConvergenceWarning

PROBLEMS = ["identity", "random", "filters"]


@functools.cache
def problem(name):
    """(y, x_true, W) with W a matrix or a FilterBankOperator; J = 3 signals."""
    rng = np.random.default_rng({"identity": 20, "random": 21, "filters": 22}[name])
    n = {"identity": 16, "random": 20, "filters": 16}[name]
    truth = np.cumsum(rng.standard_normal((3, n)) * (rng.random((3, n)) < 0.2), axis=1) + 0.5
    y = truth + 0.3 * rng.standard_normal(truth.shape)
    if name == "identity":
        W = 0.5 * np.eye(n)
    elif name == "random":
        W = 0.3 * rng.standard_normal((14, n))
    else:
        W = ops.FilterBankOperator(0.4 * rng.standard_normal((2, 3)), (n,))
    return y, truth, W


def parameters(W):
    return W.filters if isinstance(W, ops.FilterBankOperator) else W


def with_parameters(W, p):
    return ops.FilterBankOperator(p, W.signal_shape) if isinstance(W, ops.FilterBankOperator) else p


def exact_loss(y, truth, W, d0):
    solve = sl.solve_l1_denoising(y, W, d0=d0, tol=1e-12)
    assert solve.converged and solve.polished.all()  # the reference needs exact solves
    return 0.5 * np.sum((solve.x - truth) ** 2) / y.shape[0]


@functools.cache
def reference(name, h=1e-5):
    """Central differences of the exactly solved loss, written here independently of the library's."""
    y, truth, W = problem(name)
    d0 = sl.solve_l1_denoising(y, W, tol=1e-12).d
    p = parameters(W)
    out = np.empty(p.shape)
    for index in np.ndindex(p.shape):
        bump = np.zeros(p.shape)
        bump[index] = h
        out[index] = (
            exact_loss(y, truth, with_parameters(W, p + bump), d0)
            - exact_loss(y, truth, with_parameters(W, p - bump), d0)
        ) / (2 * h)
    return out


def unrolled(y, truth, W, n_iter, **options):
    operator = (
        ns.AnalysisOperator.from_filters(W.filters, W.signal_shape)
        if isinstance(W, ops.FilterBankOperator)
        else ns.AnalysisOperator.from_matrix(W)
    )
    return ns.unrolled_l1_hypergradient(y, losses.SquaredErrorLoss(truth), operator, 1.0, n_iter, **options)


def cvx_estimator(mode):
    def run(y, truth, W, **options):
        from bilevel_lib.l1 import cvx

        return cvx.cvx_l1_hypergradient(y, truth, W, mode=mode, **options)

    return run


# name: (estimator on good settings, the problems it applies to, accuracy against the reference)
EXACT = {
    "lemma1": (lambda y, t, W: sl.l1_hypergradient(y, t, W), PROBLEMS, 1e-8),
    "sign-split": (lambda y, t, W: sl.l1_hypergradient(y, t, W, route="sign-split"), PROBLEMS, 1e-8),
    "finite-differences": (
        lambda y, t, W: sl.finite_difference_l1_hypergradient(y, t, W),
        ["identity", "random"],
        1e-8,
    ),
    "cvx-dense": (cvx_estimator("dense"), ["identity", "random"], 1e-5),
    "cvx-lsqr": (cvx_estimator("lsqr"), ["random"], 1e-5),
    "cvx-lsmr": (cvx_estimator("lsmr"), ["identity", "random"], 1e-5),
}
CASES = [(method, name) for method, (_, names, _) in EXACT.items() for name in names]


def check_contract(result, W):
    """Result type, field types, the gradient in the container and shape of the parameters."""
    assert type(result) is HypergradientResult
    p = parameters(W)
    assert isinstance(result.gradient, np.ndarray) and result.gradient.shape == p.shape
    assert result.gradient.dtype == np.float64 and np.all(np.isfinite(result.gradient))
    assert isinstance(result.loss, float) and np.isfinite(result.loss)
    assert isinstance(result.x, np.ndarray)
    for count in (result.lower_iterations, result.cg_iterations, result.products):
        assert isinstance(count, int) and count >= 0
    assert isinstance(result.diagnostics, dict) and isinstance(result.state, dict)
    assert isinstance(result.seconds, float) and result.seconds > 0
    assert isinstance(result.converged, bool)
    assert isinstance(result.message, str) and result.message
    assert isinstance(result.method, str) and result.method
    np.testing.assert_array_equal(result.flat(), result.gradient.ravel())


@pytest.mark.parametrize("method, name", CASES)
def test_exact_estimators_agree_with_finite_differences_of_the_exact_loss(method, name):
    if method.startswith("cvx"):
        pytest.importorskip("cvxpy")
        pytest.importorskip("diffcp")
    y, truth, W = problem(name)
    estimator, _, accuracy = EXACT[method]
    result = estimator(y, truth, W)
    check_contract(result, W)
    assert result.converged, result.message
    assert relative_error(result.gradient, reference(name)) <= accuracy
    assert result.loss == pytest.approx(0.5 * np.sum((sl.solve_l1_denoising(y, W).x - truth) ** 2) / 3, rel=1e-5)
    if not method.startswith("cvx"):
        assert result.lower_iterations > 0
        assert result.state["d"].shape == sl.solve_l1_denoising(y, W).d.shape  # warm start for the next call
        assert result.diagnostics["gap"] <= 1e-10


@pytest.mark.parametrize("name", PROBLEMS)
def test_closed_form_diagnostics_report_the_solve_and_the_zero_set(name):
    y, truth, W = problem(name)
    result = sl.l1_hypergradient(y, truth, W)
    d = result.diagnostics
    solve = result.state["solve"]
    assert d["kkt_residual"] <= 1e-10 and d["polished"]
    assert d["closed_form_mismatch"] <= 1e-12
    np.testing.assert_array_equal(d["zero_set_size"], (solve.signs.reshape(3, -1) == 0).sum(axis=1))
    assert 0 < d["zero_set_size"].sum() < solve.signs.size  # zeros and non-zeros
    assert result.lower_iterations == d["fista_iterations"] + d["active_set_rounds"]
    # a warm start from the returned dual at a nearby W is one active-set step
    p = parameters(W)
    moved = with_parameters(W, p + 1e-8 * np.ones_like(p))
    again = sl.l1_hypergradient(y, truth, moved, d0=result.state["d"])
    assert again.converged and again.diagnostics["fista_iterations"] == 0


@pytest.mark.parametrize("name", ["identity", "random"])
def test_smoothed_ift_tends_to_the_exact_gradient_as_eps_shrinks(name):
    y, truth, W = problem(name)
    results = [sl.smoothed_hypergradient(y, truth, W, eps) for eps in (1e-1, 1e-2, 1e-3, 1e-4)]
    for result in results:
        check_contract(result, W)
        assert result.converged, result.message
    errors = np.array([relative_error(r.gradient, reference(name)) for r in results])
    assert np.all(errors[1:] < 0.6 * errors[:-1]) and errors[-1] < 0.02, errors  # the smoothing error → 0
    assert errors[0] > 0.1  # and it is not small at ε = 0.1: a different problem


@pytest.mark.parametrize("name", PROBLEMS)
def test_unrolled_primal_dual_tends_to_the_exact_gradient_as_T_grows(name):
    y, truth, W = problem(name)
    tol = 0.1
    results = [unrolled(y, truth, W, T, tol=tol) for T in (30, 300, 3000)]
    for result in results:
        check_contract(result, W)
        assert result.lower_iterations in (30, 300, 3000) and result.products > 0
        assert result.converged == (result.diagnostics["error_bound"] <= tol)
        assert result.state["d"].shape == sl.solve_l1_denoising(y, W).d.shape
    errors = [relative_error(r.gradient, reference(name)) for r in results]
    bounds = [r.diagnostics["error_bound"] for r in results]
    assert errors[1] < errors[0] and errors[2] < errors[1] and errors[2] < 1e-2, errors
    assert bounds[1] < bounds[0] and bounds[2] < bounds[1]
    assert results[-1].converged, results[-1].message


def starved(method):
    """(estimator on a starved setting, the expected words of its message)."""
    return {
        "lemma1-threshold": (lambda y, t, W: sl.l1_hypergradient(y, t, W, threshold=0.3), "not the minimiser's"),
        "lemma1-budget": (
            lambda y, t, W: sl.l1_hypergradient(y, t, W, polish=False, max_iter=0, warn=False),
            "lower level not solved",
        ),
        "sign-split-threshold": (
            lambda y, t, W: sl.l1_hypergradient(y, t, W, threshold=0.3, route="sign-split"),
            "not the minimiser's",
        ),
        "finite-differences-step": (
            lambda y, t, W: sl.finite_difference_l1_hypergradient(y, t, W, step=0.2),
            "changed the sign pattern",
        ),
        "smoothed-budget": (lambda y, t, W: sl.smoothed_hypergradient(y, t, W, 1e-3, max_iter=1), "max_iter"),
        "unrolled-budget": (lambda y, t, W: unrolled(y, t, W, 10), "increase n_iter"),
        "cvx-budget": (lambda y, t, W: cvx_estimator("dense")(y, t, W, max_iters=5), "not optimal"),
    }[method]


STARVED = [
    "lemma1-threshold",
    "lemma1-budget",
    "sign-split-threshold",
    "finite-differences-step",
    "smoothed-budget",
    "unrolled-budget",
    "cvx-budget",
]


@pytest.mark.parametrize("method", STARVED)
@pytest.mark.parametrize("name", ["identity", "random"])
def test_starved_settings_report_non_convergence(method, name):
    if method.startswith("cvx"):
        pytest.importorskip("cvxpy")
        pytest.importorskip("diffcp")
    y, truth, W = problem(name)
    estimator, words = starved(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SCS says "inaccurate"; we check the result
        result = estimator(y, truth, W)
    check_contract(result, W)
    assert result.converged is False
    assert words in result.message, result.message


def test_closed_form_building_blocks_check_a_given_sign_pattern():
    y, truth, W = problem("random")
    solve = sl.solve_l1_denoising(y, W)
    for block in (sl.closed_form_gradient, sl.sign_split_gradient):
        unchecked = block(y, truth, W, solve.signs)
        check_contract(unchecked, W)
        assert unchecked.converged and "not checked" in unchecked.message
        right = block(y, truth, W, solve.signs, x_reference=solve.x)
        assert right.converged and right.diagnostics["closed_form_mismatch"] <= 1e-12
        np.testing.assert_array_equal(right.gradient, unchecked.gradient)
        wrong = block(y, truth, W, sl.sign_pattern(solve.z, 0.3), x_reference=solve.x)
        assert not wrong.converged and wrong.diagnostics["closed_form_mismatch"] > 1e-8
        assert "not the minimiser's" in wrong.message


def test_train_blorc_runs_on_the_contract():
    rng = np.random.default_rng(23)
    x = np.cumsum(rng.standard_normal((20, 16)) * (rng.random((20, 16)) < 0.2), axis=1)
    y = x + 0.1 * rng.standard_normal(x.shape)
    W0 = 0.3 * np.eye(16)
    run = sl.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05, threshold=1e-8)
    assert isinstance(run, sl.BlorcResult) and run.batch_loss.shape == (2,)
    assert run.unconverged_steps == 0 and run.unconverged_message == ""
    assert not np.allclose(run.W, W0) and run.fista_iterations + run.active_set_rounds > 0
    batch = np.random.default_rng(0).permutation(20)[:10]  # train_blorc's first batch (seed 0)
    first = sl.l1_hypergradient(y[batch], x[batch], W0, threshold=1e-8)
    assert run.batch_loss[0] == pytest.approx(first.loss, rel=1e-12)
    # a threshold far above the smallest non-zero |W x*| misreads the zero set: reported, not silent
    with pytest.warns(ConvergenceWarning, match="train_blorc: 2 of 2 steps"):
        wrong = sl.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05, threshold=5.0)
    assert wrong.unconverged_steps == 2 and "not the minimiser's" in wrong.unconverged_message


def _blorc_data():
    rng = np.random.default_rng(23)
    x = np.cumsum(rng.standard_normal((20, 16)) * (rng.random((20, 16)) < 0.2), axis=1)
    return x, x + 0.1 * rng.standard_normal(x.shape), 0.3 * np.eye(16)


# every ℓ1 estimator of the contract with the signature estimator(y, x_true, W, **settings), and the
# relative distance its first step may have from the closed form's (the smoothed IFT solves another,
# ε-rounded problem; the others are exact up to their solver or difference accuracy)
L1_ESTIMATORS = {
    "finite differences": (sl.finite_difference_l1_hypergradient, {"step": 1e-6}, 1e-6),
    "smoothed IFT": (sl.smoothed_hypergradient, {"eps": 1e-4}, 0.05),
    "cvxpy": ("cvx", {"eps": 1e-10}, 1e-4),
}


@pytest.mark.parametrize("name", list(L1_ESTIMATORS))
def test_train_blorc_accepts_every_l1_estimator(name):
    """One short epoch of BLORC training with another estimator: each step is a gradient step with
    that estimator's gradient, which matches the closed form's within the estimator's accuracy."""
    estimator, settings, tolerance = L1_ESTIMATORS[name]
    if estimator == "cvx":
        pytest.importorskip("cvxpy")
        from bilevel_lib.l1.cvx import cvx_l1_hypergradient as estimator
    x, y, W0 = _blorc_data()
    lr = 0.05
    steps = []
    run = sl.train_blorc(
        x,
        y,
        W0=W0,
        epochs=1,
        batch_size=10,
        lr=lr,
        estimator=estimator,
        estimator_settings=settings,
        callback=lambda epoch, W: steps.append(W.copy()),
    )
    reference = sl.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=lr, threshold=1e-8)
    assert isinstance(run, sl.BlorcResult) and run.batch_loss.shape == (2,)
    assert run.unconverged_steps == 0, run.unconverged_message
    assert run.estimator and run.estimator != reference.estimator
    assert run.batch_loss[0] == pytest.approx(reference.batch_loss[0], rel=max(tolerance, 1e-9))
    # replay the two steps by hand on train_blorc's batches (seed 0)
    order = np.random.default_rng(0).permutation(20)
    W = W0.copy()
    for batch in (order[:10], order[10:]):
        result = estimator(y[batch], x[batch], W, **settings)
        closed = sl.l1_hypergradient(y[batch], x[batch], W, threshold=1e-8)
        assert relative_error(result.gradient, closed.gradient) < tolerance
        W = W - lr * result.gradient
    np.testing.assert_allclose(run.W, W, rtol=0, atol=1e-9 * np.abs(W0 - W).max())
    assert len(steps) == 1 and np.array_equal(steps[0], run.W) and not np.allclose(run.W, W0)


def test_train_blorc_rejects_a_broken_estimator():
    x, y, W0 = _blorc_data()
    with pytest.raises(ValueError, match="threshold configures the default estimator"):
        sl.train_blorc(x, y, W0=W0, epochs=1, threshold=1e-3, estimator=sl.smoothed_hypergradient)
    with pytest.raises(ValueError, match="estimator_settings need an estimator"):
        sl.train_blorc(x, y, W0=W0, epochs=1, estimator_settings={"eps": 0.1})
    with pytest.raises(TypeError, match="estimator must be callable"):
        sl.train_blorc(x, y, W0=W0, epochs=1, estimator="smoothed")
    with pytest.raises(TypeError, match="must return a HypergradientResult"):
        sl.train_blorc(x, y, W0=W0, epochs=1, estimator=lambda y, x, W: np.zeros_like(W))

    def nan_estimator(y, x, W):
        good = sl.l1_hypergradient(y, x, W)
        good.gradient[0, 0] = np.nan
        return good

    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        sl.train_blorc(x, y, W0=W0, epochs=1, estimator=nan_estimator)
