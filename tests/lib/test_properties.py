"""Property-based tests (hypothesis) of the public API of util, problem, solvers, hypergrad and training.

Every call gets random shapes, dtypes and values (NaN, ±inf, zeros, huge and tiny numbers, wrong
types) and must either return finite results that pass the function's own checks, or raise
``ValueError``/``TypeError`` whose message names the offending argument, or raise the library's
:class:`~bilevel_lib.util.validation.NonFiniteError` naming where the computation broke down.

The budget is bounded: each test sets ``max_examples`` explicitly and ``derandomize=True`` (the
same examples on every run, so CI is reproducible).  ``deadline=None`` because wall time on a
shared machine is not reproducible; the example counts keep the whole file near 30 s on 2 cores.
"""

from __future__ import annotations

import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bilevel_lib as bl
from bilevel_lib.hypergrad import (
    closed_form,
    finite_difference_hypergradient,
    forward_mode_hypergradient,
    jacobian_free_hypergradient,
    kkt_hypergradient,
    reverse_mode_hypergradient,
    truncated_hypergradient,
)
from bilevel_lib.problem import filters, metrics
from bilevel_lib.problem.forward_models import gaussian_kernel
from bilevel_lib.training import Adam, GradientDescent, train_double_loop
from bilevel_lib.util.validation import NonFiniteError

# ConvergenceWarning is expected with tiny budgets, and overflow inside numpy may warn before the
# library's check raises; the contract tested here is the return value or the exception
pytestmark = pytest.mark.filterwarnings("ignore::bilevel_lib.ConvergenceWarning", "ignore::RuntimeWarning")

BUDGET = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

#: the special values every numeric strategy mixes in
SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 5e-324, 1.0, -1.0]
reals = st.one_of(st.sampled_from(SPECIAL), st.floats(-1e3, 1e3, allow_nan=False))
#: things that are not numbers, or are numbers of the wrong kind
wrong = st.sampled_from(["1", None, [1.0, None], 1 + 2j, True, object(), {"a": 1}])


def arrays(shape, *, dtypes=("float64",)):
    """Arrays of the given shape (a strategy or a tuple) with special values, in one of ``dtypes``."""
    shapes = st.just(shape) if isinstance(shape, tuple) else shape

    def build(dtype):
        if dtype == "complex128":
            elements = st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False)
        elif dtype == "bool":
            elements = st.booleans()
        elif dtype.startswith("int"):
            elements = st.integers(-5, 5)
        else:
            elements = st.one_of(st.sampled_from(SPECIAL), st.floats(-10, 10, width=64 if dtype == "float64" else 32))
        return hnp.arrays(np.dtype(dtype), shapes, elements=elements)

    return st.sampled_from(dtypes).flatmap(build)


ALL_DTYPES = ("float64", "float64", "float64", "float32", "int64", "complex128", "bool")


def finite(value) -> bool:
    """Whether every number in a result (array, float, Hyperparameters, result object) is finite."""
    if isinstance(value, bl.Hyperparameters):
        return bool(np.isfinite(value.flatten()).all())
    if isinstance(value, bl.HypergradientResult):
        return bool(np.isfinite(value.flat()).all() and np.isfinite(value.loss))
    if isinstance(value, (bl.LowerLevelResult, bl.CGResult)):
        return bool(np.isfinite(value.x).all())
    if isinstance(value, (np.ndarray, float, int, np.floating, np.integer)):
        return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
    return True  # an object the call constructed (a penalty, a model, an optimizer): its own tests follow


def outcome(call, names, where=()):
    """Run ``call``: a finite result is returned; a ValueError/TypeError must name one of ``names``,
    a NonFiniteError one of ``where`` (the function that stopped)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except NonFiniteError as error:
        assert any(w in str(error) for w in where), f"NonFiniteError without its place {where}: {error}"
        return None
    except (ValueError, TypeError) as error:
        assert any(n in str(error) for n in names), f"error does not name one of {names}: {error!r}"
        return None
    assert finite(result), f"non-finite result without an error: {result!r}"
    return result


# ----------------------------------------------------------------------------- problem layer
@settings(max_examples=60, **BUDGET)
@given(beta0=st.one_of(reals, wrong), beta=arrays(st.sampled_from([(2,), (3,), (2, 1)]), dtypes=ALL_DTYPES))
def test_hyperparameters(beta0, beta):
    made = outcome(lambda: bl.Hyperparameters(beta0, beta, np.ones((2, 2, 2))), ["beta0", "beta", "filters"])
    if made is not None:
        assert made.n_filters == 2 and made.beta.shape == (2,)
        assert np.array_equal(made.unflatten(made.flatten()).flatten(), made.flatten())
        outcome(lambda: made.strengths, [], ["e^(β0 + β_k)"])


@settings(max_examples=40, **BUDGET)
@given(eps=st.one_of(reals, wrong), z=arrays(st.sampled_from([(3,), (2, 2)])), which=st.sampled_from(["cr1n", "log"]))
def test_penalties(eps, z, which):
    penalty = outcome(lambda: bl.problem.PENALTIES[which](eps), ["eps"])
    if penalty is not None and np.isfinite(z).all() and np.abs(z).max(initial=0) < 1e100 and penalty.eps > 1e-100:
        for function in (penalty.value, penalty.derivative, penalty.second_derivative):
            assert np.isfinite(function(z)).all()
        assert np.isfinite(penalty.lipschitz)


@settings(max_examples=60, **BUDGET)
@given(
    kind=st.sampled_from(["blur", "mask", "identity"]),
    data=arrays(st.sampled_from([(4, 4), (1, 4, 4), (8, 8), (2, 3)]), dtypes=ALL_DTYPES),
    size=st.one_of(st.integers(-1, 5), wrong),
    width=st.one_of(reals, wrong),
)
def test_forward_models(kind, data, size, width):
    if kind == "blur":
        kernel = outcome(lambda: gaussian_kernel(size, width), ["size", "width"])
        if kernel is None:
            return
        model = outcome(lambda: bl.CircularBlur(kernel, (4, 4)), ["kernel", "signal_shape"])
    elif kind == "mask":
        model = outcome(lambda: bl.PixelMask(data), ["mask"])
        data = np.ones((4, 4))
    else:
        model = bl.Identity((4, 4))
    if model is None:
        return
    for method, name in ((model.forward, "x"), (model.adjoint, "y"), (model.gram, "x")):
        out = outcome(lambda method=method: method(data), [name])
        if out is not None:
            assert out.shape == np.shape(data)[: np.ndim(data) - 2] + model.signal_shape


@settings(max_examples=60, **BUDGET)
@given(
    estimate=arrays(st.sampled_from([(2, 3), (3,), (2, 2)]), dtypes=ALL_DTYPES),
    truth=arrays((2, 3), dtypes=ALL_DTYPES),
    per_image=st.one_of(st.booleans(), wrong),
    data_range=st.one_of(st.none(), reals, wrong),
)
def test_losses_and_metrics(estimate, truth, per_image, data_range):
    loss = outcome(lambda: bl.SquaredErrorLoss(truth), ["truth"])
    if loss is not None:
        outcome(lambda: loss.value(estimate), ["x"], ["SquaredErrorLoss"])
        outcome(lambda: loss.gradient(estimate), ["x"], ["SquaredErrorLoss"])
    names = ["estimate", "truth", "reference", "per_image"]
    outcome(lambda: metrics.mse(estimate, truth, per_image), names, ["mse"])
    outcome(lambda: metrics.relative_error(estimate, truth, per_image), names + ["the reference is zero"])
    try:  # SNR and PSNR are +inf for a perfect estimate, by definition
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = metrics.psnr_db(estimate, truth, per_image, data_range=data_range)
        assert not np.isnan(value).any()
    except (ValueError, TypeError) as error:
        assert any(n in str(error) for n in names + ["data_range", "truth is zero"]), error


@settings(max_examples=60, **BUDGET)
@given(
    n=st.one_of(st.integers(-2, 6), st.floats(-2, 6), wrong),
    shape=st.one_of(st.integers(-1, 4), st.tuples(st.integers(-1, 4)), wrong),
    ndim=st.one_of(st.integers(-1, 3), wrong),
)
def test_filters(n, shape, ndim):
    for call, names in (
        (lambda: filters.finite_differences(ndim), ["ndim"]),
        (lambda: filters.dct_filters(n, ndim), ["size", "ndim"]),
        (lambda: filters.random_filters(n, shape, 0), ["n_filters", "shape"]),
    ):
        bank = outcome(call, names)
        if bank is not None:
            assert bank.ndim >= 2 and bank.size > 0


# ----------------------------------------------------------------------------- cost and solvers
def small_problem(J=1, shape=(6, 6), beta0=-1.0):
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((J, *shape))
    cost = bl.LowerLevelCost(truth + 0.1 * rng.standard_normal(truth.shape))
    return (
        cost,
        bl.Hyperparameters.from_filters(filters.finite_differences(len(shape)), beta0=beta0),
        bl.SquaredErrorLoss(truth),
    )


@settings(max_examples=60, **BUDGET)
@given(
    y=arrays(st.sampled_from([(1, 6, 6), (2, 5), (6, 6), (1, 1, 1)]), dtypes=ALL_DTYPES),
    beta0=st.one_of(reals, st.sampled_from([700.0, 709.0, 710.0, -700.0])),
    tol=st.one_of(st.none(), reals, wrong),
    max_iter=st.one_of(st.integers(-1, 30), wrong),
    step=st.one_of(st.none(), reals, wrong),
    method=st.sampled_from(["ogm", "gd", "newton", 3]),
)
def test_lower_level_cost_and_solve(y, beta0, tol, max_iter, step, method):
    cost = outcome(lambda: bl.LowerLevelCost(y), ["y"])
    if cost is None:
        return
    params = outcome(
        lambda: bl.Hyperparameters.from_filters(np.ones((1,) + (2,) * (y.ndim - 1)) / 2, beta0=beta0), ["beta0"]
    )
    if params is None:
        return
    x = np.zeros(cost.y.shape)
    where = ["e^(β0 + β_k)", "solve_lower_level", "LowerLevelCost"]
    outcome(lambda: cost.value(x, params), ["x", "filter"], where)
    outcome(lambda: cost.gradient(x, params), ["x", "filter"], where)
    outcome(lambda: cost.lipschitz(params), ["params"], where)
    names = ["tol", "max_iter", "step", "method", "x0", "filter"]
    result = outcome(
        lambda: bl.solve_lower_level(cost, params, tol=tol, max_iter=max_iter, step=step, method=method), names, where
    )
    if result is not None:
        assert 0 < result.iterations <= max_iter and isinstance(result.converged, bool) and result.message
        assert np.allclose(result.gradient_norm, cost.gradient_norm(result.x, params))


@settings(max_examples=60, **BUDGET)
@given(
    b=arrays(st.sampled_from([(1, 6, 6), (2, 6, 6), (6, 6)]), dtypes=ALL_DTYPES),
    x0=st.one_of(st.none(), arrays((1, 6, 6), dtypes=ALL_DTYPES)),
    tol=st.one_of(reals, wrong),
    max_iter=st.one_of(st.integers(-1, 50), wrong),
    relative_to=st.sampled_from(["rhs", "initial", "other"]),
)
def test_conjugate_gradient(b, x0, tol, max_iter, relative_to):
    cost, params, _ = small_problem()
    hessian = cost.hessian_operator(cost.y, params)
    names = ["b", "x0", "tol", "max_iter", "relative_to", "v must have the shape"]
    result = outcome(
        lambda: bl.conjugate_gradient(hessian, b, x0, tol=tol, max_iter=max_iter, relative_to=relative_to),
        names,
        ["conjugate_gradient"],
    )
    if result is not None:
        residual = np.linalg.norm((np.asarray(b, float) - hessian(result.x)).reshape(len(b), -1), axis=1)
        if result.converged:  # its own claim, checked against the true residual
            reference = np.linalg.norm(np.asarray(b, float).reshape(len(b), -1), axis=1)
            if relative_to == "rhs":
                assert np.all(residual <= 1.01 * tol * np.where(reference > 0, reference, 1.0) + 1e-12)
        else:
            assert "max_iter" in result.message


# ----------------------------------------------------------------------------- hypergradients
@settings(max_examples=40, **BUDGET)
@given(
    q0=st.one_of(st.none(), arrays(st.sampled_from([(1, 6, 6), (1, 5)]), dtypes=ALL_DTYPES)),
    x0=st.one_of(st.none(), arrays((1, 6, 6), dtypes=ALL_DTYPES)),
    cg_max_iter=st.one_of(st.integers(-1, 20), wrong),
    cg_tol=st.one_of(reals, wrong),
    beta0=st.sampled_from([-1.0, 5.0, 300.0, 709.5, 710.0]),
)
def test_implicit_hypergradient(q0, x0, cg_max_iter, cg_tol, beta0):
    cost, _, loss = small_problem()
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=beta0)
    result = outcome(
        lambda: bl.implicit_hypergradient(
            cost, params, loss, x0=x0, q0=q0, lower_tol=None, lower_max_iter=5, cg_tol=cg_tol, cg_max_iter=cg_max_iter
        ),
        ["q0", "x0", "cg_tol", "cg_max_iter"],
        ["e^(β0 + β_k)", "solve_lower_level", "conjugate_gradient", "implicit", "LowerLevelCost"],
    )
    if result is not None:
        assert result.cg_converged == (result.cg_residual <= cg_tol)
        assert result.converged == result.cg_converged and result.message


@settings(max_examples=40, **BUDGET)
@given(
    n_iter=st.one_of(st.integers(-1, 12), wrong),
    step=st.one_of(st.none(), reals, wrong),
    x0=st.one_of(st.none(), arrays((1, 6), dtypes=ALL_DTYPES)),
    which=st.sampled_from(["reverse", "forward", "jacobian-free", "truncated"]),
)
def test_unrolled_estimators(n_iter, step, x0, which):
    cost, params, loss = small_problem(shape=(6,))
    estimator = {
        "reverse": reverse_mode_hypergradient,
        "forward": forward_mode_hypergradient,
        "jacobian-free": jacobian_free_hypergradient,
        "truncated": lambda *a, **k: truncated_hypergradient(*a, backprop_steps=1, **k),
    }[which]
    result = outcome(
        lambda: estimator(cost, params, loss, n_iter, step=step, x0=x0),
        ["n_iter", "step", "x0", "backprop_steps", "T ≥ 1"],
        ["unrolled", "LowerLevelCost"],
    )
    if result is not None:
        assert result.lower_iterations == n_iter and result.message


@settings(max_examples=30, **BUDGET)
@given(
    truth=arrays(st.sampled_from([(1, 6, 6), (1, 5, 5)]), dtypes=ALL_DTYPES),
    filter_shape=st.sampled_from([(2, 2), (6, 6), (7, 7), (3,)]),
    step=st.one_of(reals, wrong),
    which=st.sampled_from(["closed-form", "kkt", "fd"]),
)
def test_reference_estimators(truth, filter_shape, step, which):
    cost, _, _ = small_problem()
    params = bl.Hyperparameters.from_filters(np.ones((1, *filter_shape)) / 4, beta0=-1.0)
    names = ["truth", "filter", "step", "x must have the shape", "filters"]
    where = ["closed-form", "kkt", "finite-differences", "finite_difference", "solve_lower_level"]
    if which == "closed-form":
        result = outcome(lambda: closed_form.quadratic_hypergradient(cost.y, truth, params), names, where)
        return
    loss = outcome(lambda: bl.SquaredErrorLoss(truth), ["truth"])
    if loss is None:
        return
    if which == "kkt":
        result = outcome(lambda: kkt_hypergradient(cost, params, loss, lower_tol=1e-8), names, where)
    else:
        result = outcome(
            lambda: finite_difference_hypergradient(cost, params, loss, parts="beta0", step=step, lower_tol=1e-6),
            names,
            where,
        )
    if result is not None:
        assert result.message and isinstance(result.converged, bool)


# ----------------------------------------------------------------------------- training
@settings(max_examples=60, **BUDGET)
@given(
    learning_rate=st.one_of(reals, wrong),
    eps=st.one_of(reals, wrong),
    beta1=st.one_of(reals, wrong),
    vector=arrays(st.sampled_from([(3,), (2,)]), dtypes=ALL_DTYPES),
    gradient=arrays((3,), dtypes=ALL_DTYPES),
)
def test_optimizers(learning_rate, eps, beta1, vector, gradient):
    for make, names in (
        (lambda: GradientDescent(learning_rate), ["learning_rate"]),
        (lambda: Adam(learning_rate, beta1=beta1, eps=eps), ["learning_rate", "beta1", "eps"]),
    ):
        optimizer = outcome(make, names)
        if optimizer is not None:
            new = outcome(
                lambda optimizer=optimizer: optimizer.step(vector, gradient), ["vector", "gradient"], [".step"]
            )
            if new is not None:
                assert new.shape == vector.shape


@settings(max_examples=40, **BUDGET)
@given(
    n_steps=st.one_of(st.integers(-1, 3), wrong),
    lower_iterations=st.one_of(st.none(), st.integers(-1, 3)),
    cg_max_iter=st.one_of(st.integers(-1, 5), wrong),
    learning_rate=st.sampled_from([1e-2, 1.0, 1e3, 1e300]),
    beta0=st.sampled_from([-1.0, 300.0, 709.0, 710.0]),
    parts=st.sampled_from([("beta",), "beta0", ("beta0", "beta"), ("filters",), ("gamma",), 3]),
)
def test_train_double_loop(n_steps, lower_iterations, cg_max_iter, learning_rate, beta0, parts):
    cost, _, loss = small_problem(shape=(6,))
    params = bl.Hyperparameters.from_filters(filters.finite_differences(1), beta0=beta0)
    result = outcome(
        lambda: train_double_loop(
            cost,
            params,
            loss,
            parts=parts,
            n_steps=n_steps,
            lower_iterations=lower_iterations,
            cg_max_iter=cg_max_iter,
            optimizer=GradientDescent(learning_rate),
        ),
        ["n_steps", "lower_iterations", "cg_max_iter", "parts"],
        ["train_double_loop"],
    )
    if result is not None:
        history = result.history
        assert len(history.loss) == n_steps == len(history.converged)
        assert np.isfinite(result.params.flatten()).all() and np.isfinite(history.loss).all()
        assert result.converged == all(history.converged)
