"""Property tests (hypothesis) over the public functions of the ℓ1 layer, bilevel_lib.l1.

Every call gets one argument spoiled (a wrong type or dtype, a wrong shape, NaN, inf, zeros, huge or
tiny numbers, a zero or negative count, an unknown option) or none.  It must either return finite
results that pass the function's own checks, or raise ValueError/TypeError whose message names the
spoiled argument.  A bounded budget: each test sets max_examples and deadline, derandomize=True.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilevel_lib import l1 as sl
from bilevel_lib.hypergrad.result import HypergradientResult
from bilevel_lib.l1 import primal_dual as ns
from bilevel_lib.solvers.lower import ConvergenceWarning

BUDGET = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
SMALL_BUDGET = settings(
    max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1e300, -1e300, 1e-300, 5e-324, 1e100, -1e100, 1e99]


def good_problem(seed, J, n, k):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((J, n))
    truth = y + 0.1 * rng.standard_normal((J, n))
    W = 0.3 * rng.standard_normal((k, n))
    return y, truth, W


@st.composite
def spoiled(draw, value):
    """``value`` (an array) unchanged or spoiled in one way; returns (new value, how)."""
    how = draw(
        st.sampled_from(["none", "special", "complex", "bool", "object", "str", "none-type", "shape", "empty", "scale"])
    )
    if how == "none":
        return value, how
    if how == "special":
        out = value.copy()
        flat = out.reshape(-1)
        index = draw(st.integers(0, flat.size - 1))
        flat[index] = draw(st.sampled_from(SPECIAL))
        return out, how
    if how == "complex":
        return value + 1j * draw(st.sampled_from([0.0, 1.0])), how
    if how == "bool":
        return value > 0, how
    if how == "object":
        return value.astype(object), how
    if how == "str":
        return draw(st.sampled_from(["abc", "1.0"])), how
    if how == "none-type":
        return draw(st.sampled_from([None, {"a": 1}, object()])), how
    if how == "shape":
        return draw(
            st.sampled_from([value[..., :-1] if value.shape[-1] > 1 else value[..., None], value.ravel()[:1]])
        ), how
    if how == "empty":
        return np.zeros((0,) + value.shape[1:]), how
    scale = draw(st.sampled_from([0.0, 1e-300, 1e-12, 1e12, 1e99]))
    return value * scale, how


def check_call(call, *names):
    """Run ``call``; return its result, or None after checking a ValueError/TypeError names one of ``names``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return call()
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in names), f"the error names none of {names}: {type(err).__name__}: {err}"
        return None


def finite(*arrays):
    return all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrays)


def check_hypergradient(result, shape):
    assert isinstance(result, HypergradientResult)
    assert np.shape(result.gradient) == shape
    assert finite(result.gradient, result.x) and np.isfinite(result.loss)
    assert isinstance(result.converged, bool) and result.message


shapes = st.tuples(st.integers(0, 2**16), st.integers(1, 3), st.integers(1, 5), st.integers(1, 6))
ARGUMENTS = ["y", "W", "x_true"]


@BUDGET
@given(shapes, st.sampled_from(ARGUMENTS), st.data())
def test_solve_l1_denoising(shape, which, data):
    seed, J, n, k = shape
    y, _, W = good_problem(seed, J, n, k)
    value, how = data.draw(spoiled(y if which != "W" else W))
    if which == "W":
        W = value
    else:  # x_true is not an argument of the solver: spoil y instead
        y, which = value, "y"
    result = check_call(lambda: sl.solve_l1_denoising(y, W), which)
    if result is not None:
        assert finite(result.x, result.d, result.z, result.gap)
        assert np.all(np.abs(result.d) <= 1.0)
        if result.converged:
            assert np.all(result.polished | (result.error_bound <= 1e-10))


@BUDGET
@given(shapes, st.sampled_from(ARGUMENTS), st.sampled_from(["lemma1", "sign-split"]), st.data())
def test_l1_hypergradient(shape, which, route, data):
    seed, J, n, k = shape
    y, truth, W = good_problem(seed, J, n, k)
    value, how = data.draw(spoiled({"y": y, "W": W, "x_true": truth}[which]))
    args = {"y": y, "W": W, "x_true": truth, which: value}
    result = check_call(
        lambda: sl.l1_hypergradient(args["y"], args["x_true"], args["W"], route=route),
        which,
        *(["W0"] if route == "sign-split" else []),  # the sign-split form needs independent rows in W0
    )
    if result is not None:
        check_hypergradient(result, W.shape if which != "W" else np.shape(value))
        assert result.converged == (
            result.state["solve"].converged and not result.diagnostics["closed_form_failed"].any()
        )


@BUDGET
@given(
    st.sampled_from(
        [
            ("threshold", -1.0),
            ("threshold", np.nan),
            ("threshold", "1e-8"),
            ("threshold", True),
            ("closed_form_tol", 0.0),
            ("closed_form_tol", 1e-3),
            ("closed_form_tol", np.inf),
            ("route", "lemma2"),
            ("route", 1),
            ("warn", 1),
            ("tol", 0.0),
            ("tol", -1e-10),
            ("tol", 1j),
            ("max_iter", -1),
            ("max_iter", 2.5),
            ("max_iter", True),
            ("polish", "yes"),
            ("lipschitz", 0.0),
            ("lipschitz", np.nan),
            ("active_set_first", None),
            ("nonsense_option", 3),
            ("d0", np.full((2, 4), np.nan)),
            ("d0", np.zeros((3, 4))),
            ("d0", np.zeros((2, 4), dtype=complex)),
        ]
    )
)
def test_l1_hypergradient_options(option):
    name, value = option
    y, truth, W = good_problem(1, 2, 3, 4)
    with pytest.raises((ValueError, TypeError)) as error:
        sl.l1_hypergradient(y, truth, W, **{name: value})
    assert name in str(error.value)


@SMALL_BUDGET
@given(shapes, st.sampled_from(["y", "W", "x_true", "signs"]), st.data())
def test_closed_form_building_blocks(shape, which, data):
    seed, J, n, k = shape
    y, truth, W = good_problem(seed, J, n, k)
    signs = sl.solve_l1_denoising(y, W).signs
    value, how = data.draw(spoiled({"y": y, "W": W, "x_true": truth, "signs": signs}[which]))
    args = {"y": y, "W": W, "x_true": truth, "signs": signs, which: value}
    result = check_call(lambda: sl.closed_form_gradient(args["y"], args["x_true"], args["W"], args["signs"]), which)
    if result is not None:
        check_hypergradient(result, np.shape(args["W"]))
    x = check_call(
        lambda: sl.closed_form_solution(args["y"], args["W"], args["signs"]), which if which != "x_true" else ""
    )
    if x is not None:
        assert finite(x)


@SMALL_BUDGET
@given(shapes, st.sampled_from(["y", "W", "x_true", "eps", "tol", "max_iter", "x0"]), st.data())
def test_smoothed_hypergradient(shape, which, data):
    seed, J, n, k = shape
    y, truth, W = good_problem(seed, J, n, k)
    args = {"y": y, "W": W, "x_true": truth, "eps": 0.01, "tol": 1e-10, "max_iter": 50, "x0": y.copy()}
    if which in ("eps", "tol"):
        args[which] = data.draw(st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e-300, "a", True, 1e-3]))
    elif which == "max_iter":
        args[which] = data.draw(st.sampled_from([-1, 0, 1, 2.5, True, "3"]))
    else:
        args[which] = data.draw(spoiled(args[which]))[0]
    result = check_call(
        lambda: sl.smoothed_hypergradient(
            args["y"], args["x_true"], args["W"], args["eps"], tol=args["tol"], max_iter=args["max_iter"], x0=args["x0"]
        ),
        which,
    )
    if result is not None:
        check_hypergradient(result, np.shape(args["W"]))
        assert result.converged == (result.diagnostics["lower_residual"] < args["tol"])


@SMALL_BUDGET
@given(st.integers(0, 100), st.sampled_from(["y", "W", "x_true", "step", "entries"]), st.data())
def test_finite_differences(seed, which, data):
    y, truth, W = good_problem(seed, 1, 3, 3)
    args = {"y": y, "W": W, "x_true": truth, "step": 1e-6, "entries": ([0, 1], [2, 0])}
    if which == "step":
        args[which] = data.draw(st.sampled_from([0.0, -1e-6, np.nan, np.inf, 1e60, "1e-6", True, 1e-300]))
    elif which == "entries":
        args[which] = data.draw(
            st.sampled_from([([0, 3], [0, 0]), ([0], [0, 1]), ([-1], [0]), ([0.5], [0]), "all", ([0, 1], [1, 2])])
        )
    else:
        args[which] = data.draw(spoiled(args[which]))[0]
    values = check_call(
        lambda: sl.finite_difference_l1_gradient(
            args["y"], args["x_true"], args["W"], args["entries"], step=args["step"]
        ),
        which,
    )
    if values is not None:
        assert finite(values) and np.shape(values) == (len(args["entries"][0]),)


@SMALL_BUDGET
@given(st.sampled_from(["x_train", "y_train", "W0", "epochs", "batch_size", "lr", "threshold", "seed"]), st.data())
def test_train_blorc(which, data):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((6, 5)) * (rng.random((6, 5)) < 0.3), axis=1)
    args = {
        "x_train": x,
        "y_train": x + 0.1 * rng.standard_normal(x.shape),
        "W0": 0.3 * np.eye(5),
        "epochs": 1,
        "batch_size": 3,
        "lr": 0.05,
        "threshold": 1e-8,
        "seed": 0,
    }
    if which in ("epochs", "batch_size", "seed"):
        args[which] = data.draw(st.sampled_from([0, -1, 1.5, True, "2", None, 2]))
    elif which in ("lr", "threshold"):
        args[which] = data.draw(st.sampled_from([0.0, -1.0, np.nan, np.inf, 1e300, "0.1", True, 1e-3]))
    else:
        args[which] = data.draw(spoiled(args[which]))[0]
    run = check_call(
        lambda: sl.train_blorc(
            args["x_train"],
            args["y_train"],
            W0=args["W0"],
            epochs=args["epochs"],
            batch_size=args["batch_size"],
            lr=args["lr"],
            threshold=args["threshold"],
            seed=args["seed"],
        ),
        which,
    )
    if run is not None:
        assert finite(run.W, run.batch_loss) and run.batch_loss.size == args["epochs"] * -(-6 // args["batch_size"])


@SMALL_BUDGET
@given(st.data())
def test_small_helpers(data):
    z = data.draw(spoiled(np.linspace(-1, 1, 6).reshape(2, 3)))[0]
    threshold = data.draw(st.sampled_from([0.0, 1e-8, -1.0, np.nan, "x", True]))
    signs = check_call(
        lambda: sl.sign_pattern(z, threshold),
        "z",
        "threshold",
    )
    if signs is not None:
        assert np.all(np.isin(signs, (-1.0, 0.0, 1.0)))
    n = data.draw(st.sampled_from([-1, 0, 1, 2, 5, 2.5, True, "4"]))
    D = check_call(lambda: sl.finite_difference_matrix(n), "n")
    if D is not None:
        assert D.shape == (n - 1, n)
    C = check_call(lambda: sl.dct_matrix(n), "n")
    if C is not None:
        assert np.allclose(C @ C.T, np.eye(n))
    y = data.draw(spoiled(np.linspace(-2, 2, 5)))[0]
    t = data.draw(st.sampled_from([0.5, 0.0, -1.0, np.inf, "a"]))
    soft = check_call(lambda: ns.soft_threshold(y, t), "y", "threshold")
    if soft is not None:
        assert finite(soft)
    W = data.draw(spoiled(np.eye(3)))[0]
    matched = check_call(lambda: sl.match_rows(W, np.eye(3)), "W")
    if matched is not None:
        assert finite(*matched)


def test_non_finite_values_during_a_computation_stop_it_with_an_error_naming_where():
    """Inputs that could overflow are refused up front; a NaN made *during* an iteration stops it."""
    y, _, W = good_problem(0, 1, 4, 4)
    with pytest.raises(ValueError, match="W must have entries of magnitude ≤ 1e"):
        sl.solve_l1_denoising(y, 1e200 * W)
    operator = ns.AnalysisOperator.from_matrix(W)
    with pytest.raises(sl.NonFiniteError, match="non-finite values in x at step .* too large") as error:
        ns.chambolle_pock_l1(1e50 * y, operator, 1.0, 100, tau=1e300, sigma=1e300)
    assert isinstance(error.value, FloatingPointError) and isinstance(error.value, ValueError)
