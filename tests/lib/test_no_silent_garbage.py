"""One test per case of issue 14 in the numerical layers: each failed silently (NaN, a wrong answer,
a misleading message) before, and must now raise a clear error or record the failure.

Non-finite values produced during a computation raise ``NonFiniteError`` (a FloatingPointError
and a ValueError) naming where and why; bad input raises ValueError/TypeError naming the argument.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib.hypergrad import closed_form
from bilevel_lib.problem import filters
from bilevel_lib.problem.forward_models import gaussian_kernel
from bilevel_lib.training import Adam, GradientDescent, grid_search_beta0, train_double_loop, train_ttsa
from bilevel_lib.util.validation import NonFiniteError, as_float_array, check_count, check_real


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((2, 8, 8))
    cost = bl.LowerLevelCost(truth + 0.1 * rng.standard_normal(truth.shape))
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=-2.0)
    return cost, params, bl.SquaredErrorLoss(truth)


def test_nonfinite_error_is_both_a_floating_point_and_a_value_error():
    assert issubclass(NonFiniteError, FloatingPointError) and issubclass(NonFiniteError, ValueError)


# ----------------------------------------------------------------------------- lower level
def test_fixed_budget_solve_with_an_overflowing_strength_raises_instead_of_returning_nan(small):
    cost, _, _ = small
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=710.0)
    with pytest.raises(NonFiniteError, match=r"e\^\(β0 \+ β_k\) overflows.*β0 = 710"):
        bl.solve_lower_level(cost, params, tol=None, max_iter=20)


def test_fixed_budget_solve_with_a_too_large_step_names_the_iteration_and_the_step(small):
    cost, params, _ = small
    with pytest.raises(NonFiniteError, match=r"at iteration \d+ .*step α = 10 exceeds 2/L"):
        bl.solve_lower_level(cost, params, tol=None, max_iter=2000, step=10.0)


def test_a_fixed_budget_solve_still_runs_and_says_it_had_no_tolerance(small):
    cost, params, _ = small
    result = bl.solve_lower_level(cost, params, tol=None, max_iter=5)
    assert result.iterations == 5 and not result.converged and "no tolerance" in result.message
    assert np.isfinite(result.x).all()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"max_iter": 0}, ValueError, "max_iter must be an integer ≥ 1; got 0"),
        ({"max_iter": True}, TypeError, "max_iter"),
        ({"tol": "small"}, TypeError, "tol must be a real number"),
        ({"step": np.nan}, ValueError, "step must be a finite number"),
        ({"method": 3}, TypeError, "method must be one of"),
        ({"x0": np.zeros((2, 8, 8)) + 1j}, TypeError, "x0 must be an array of real numbers.*complex"),
    ],
)
def test_lower_level_bad_arguments(small, kwargs, error, match):
    cost, params, _ = small
    with pytest.raises(error, match=match):
        bl.solve_lower_level(cost, params, **kwargs)


# ----------------------------------------------------------------------------- CG
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_cg_refuses_a_non_finite_warm_start_instead_of_reporting_convergence(small, bad):
    cost, params, _ = small
    hessian = cost.hessian_operator(cost.y, params)
    with pytest.raises(ValueError, match="x0 must be finite"):
        bl.conjugate_gradient(hessian, cost.y, x0=np.full(cost.y.shape, bad))


def test_implicit_hypergradient_names_q0_when_its_warm_start_is_not_finite(small):
    cost, params, loss = small
    with pytest.raises(ValueError, match="q0 must be finite"):
        bl.implicit_hypergradient(cost, params, loss, q0=np.full(cost.y.shape, np.nan))


@pytest.mark.parametrize("max_iter", [0, -1])
def test_cg_refuses_zero_or_negative_max_iter(small, max_iter):
    cost, params, _ = small
    with pytest.raises(ValueError, match="max_iter must be an integer ≥ 1"):
        bl.conjugate_gradient(cost.hessian_operator(cost.y, params), cost.y, max_iter=max_iter)


def test_cg_stops_when_the_hessian_product_turns_non_finite(small):
    cost, params, _ = small
    hessian = cost.hessian_operator(cost.y, params)

    def overflowing(v):
        with np.errstate(over="ignore"):
            return hessian(v) * 1e308

    with pytest.raises(NonFiniteError, match="conjugate_gradient: the residual .* initial residual"):
        bl.conjugate_gradient(overflowing, cost.y, x0=np.ones(cost.y.shape))


# ----------------------------------------------------------------------------- wrong answers where a sibling raises
def test_closed_form_refuses_a_filter_larger_than_the_image(small):
    cost, _, loss = small
    params = bl.Hyperparameters.from_filters(np.ones((1, 10, 10)), beta0=-2.0)
    with pytest.raises(ValueError, match="filter shape \\(10, 10\\) is larger than the signal shape \\(8, 8\\)"):
        closed_form.quadratic_hypergradient(cost.y, loss.truth, params)


def test_closed_form_refuses_a_blur_made_for_another_image_size(small):
    cost, params, loss = small
    blur = bl.CircularBlur(gaussian_kernel(3, 1.0), (16, 16))
    with pytest.raises(ValueError, match=r"y must have shape \(J, \*\(16, 16\)\)"):
        closed_form.quadratic_hypergradient(cost.y, loss.truth, params, blur)


def test_a_blur_made_for_16x16_refuses_8x8_data():
    blur = bl.CircularBlur(gaussian_kernel(3, 1.0), (16, 16))
    for method in (blur.forward, blur.adjoint, blur.gram):
        with pytest.raises(ValueError, match=r"must have shape \(\.\.\., \*\(16, 16\)\); got \(8, 8\)"):
            method(np.ones((8, 8)))


def test_forward_models_refuse_complex_and_bad_shapes():
    with pytest.raises(TypeError, match="x must be an array of real numbers.*complex"):
        bl.Identity().forward(np.ones((2, 2)) * 1j)
    with pytest.raises(ValueError, match="signal_shape entries must be an integer ≥ 1"):
        bl.Identity((4, 0))
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        gaussian_kernel(3, 0.0)
    mask = bl.PixelMask(np.array([True, False, True]))  # a boolean mask is the natural spelling
    np.testing.assert_array_equal(mask.forward(np.ones(3)), [1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "value,error",
    [(np.ones(3) + 1j, TypeError), (np.array([True]), TypeError), (np.array(["a"]), TypeError), ([1, None], TypeError)],
)
def test_as_float_array_rejects_instead_of_casting(value, error):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: it raises before any cast
        with pytest.raises(error, match="y must be an array of real numbers"):
            as_float_array(value, "y")


def test_counts_and_reals():
    assert check_count(3.0, "n") == 3 and check_count(np.int64(2), "n") == 2
    with pytest.raises(ValueError, match="n must be an integer ≥ 1; got 2.5"):
        check_count(2.5, "n")
    with pytest.raises(TypeError, match="n must be an integer"):
        check_count("3", "n")
    with pytest.raises(ValueError, match="rate must be a positive number; got 0"):
        check_real(0, "rate", low=0.0, low_open=True)


def test_huge_values_do_not_overflow_the_corner_rounded_norm():
    penalty = bl.CornerRounded1Norm(1e-2)
    z = np.array([1e200, -1e300, 0.0])
    np.testing.assert_allclose(penalty.value(z), [1e200, 1e300, 1e-2])
    np.testing.assert_allclose(penalty.derivative(z), [1.0, -1.0, 0.0])
    assert np.all(np.isfinite(penalty.second_derivative(z)))


# ----------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("kwargs", [{"eps": 0.0}, {"eps": -1e-8}, {"learning_rate": 0.0}, {"beta2": 1.0}])
def test_adam_refuses_zero_or_negative_settings(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        Adam(**kwargs)


def test_optimizer_steps_check_their_arrays():
    with pytest.raises(ValueError, match="gradient must be finite"):
        GradientDescent(0.1).step(np.zeros(2), np.array([np.nan, 0.0]))
    with pytest.raises(NonFiniteError, match="GradientDescent.step"):
        GradientDescent(1e300).step(np.zeros(1), np.array([1e300]))


# ----------------------------------------------------------------------------- training
def test_double_loop_stops_at_the_first_non_finite_step_and_names_it(small):
    cost, params, loss = small
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=700.0)
    with pytest.raises(NonFiniteError, match="train_double_loop"):
        train_double_loop(cost, params, loss, parts=("beta0",), n_steps=5, optimizer=GradientDescent(1e3))


def test_double_loop_a_non_finite_estimate_is_reported_at_its_step(small):
    cost, params, loss = small
    calls = []

    def estimator(cost, params, loss, *, x0=None, state=None):
        calls.append(1)
        result = bl.implicit_hypergradient(cost, params, loss, x0=x0, state=state)
        if len(calls) == 2:
            result.gradient.beta[0] = np.nan  # as an estimator of one's own might return
        return result

    with pytest.raises(NonFiniteError, match=r"train_double_loop, upper step 1: the hypergradient ∇ℓ \(implicit\)"):
        train_double_loop(cost, params, loss, n_steps=5, estimator=estimator)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_steps": 0}, "n_steps must be an integer ≥ 1; got 0"),
        ({"n_steps": -3}, "n_steps must be an integer ≥ 1; got -3"),
        ({"lower_iterations": 0}, "lower_iterations must be an integer ≥ 1"),
        ({"cg_max_iter": 0}, "cg_max_iter must be an integer ≥ 1"),
        ({"cg_tol": -1.0}, "cg_tol must be a positive number"),
        ({"parts": ("gamma",)}, "parts must be a non-empty subset"),
        ({"cg_relative_to": "both"}, "cg_relative_to must be one of"),
    ],
)
def test_double_loop_bad_settings(small, kwargs, match):
    cost, params, loss = small
    with pytest.raises(ValueError, match=match):
        train_double_loop(cost, params, loss, **kwargs)


def test_cg_non_convergence_inside_training_is_flagged_and_warned(small):
    cost, params, loss = small
    with pytest.warns(bl.ConvergenceWarning, match="train_double_loop: 3 of 3 step"):
        result = train_double_loop(cost, params, loss, n_steps=3, cg_max_iter=1, cg_tol=1e-12)
    assert result.history.converged == [False, False, False] and not result.converged
    assert "missed a tolerance" in result.message
    assert result.history.as_arrays()["converged"].dtype == bool


def test_a_converged_run_records_its_flags_without_a_warning(small):
    cost, params, loss = small
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train_double_loop(cost, params, loss, n_steps=2)
    assert result.converged and result.history.converged == [True, True]


def test_ttsa_records_cg_misses(small):
    cost, params, loss = small
    with pytest.warns(bl.ConvergenceWarning, match="train_ttsa"):
        result = train_ttsa(cost, params, loss, n_steps=2, cg_max_iter=1, cg_tol=1e-12)
    assert result.history.converged == [False, False] and not result.converged


def test_grid_search_records_convergence(small):
    cost, params, loss = small
    result = grid_search_beta0(cost, params, loss, [-3.0, -2.0])
    assert result.converged and "2 lower-level solves" in result.message
    with pytest.raises(TypeError, match="grid must be an array of real numbers"):
        grid_search_beta0(cost, params, loss, [1j])


# ----------------------------------------------------------------------------- global state
IMPORT_STATE = r"""
import json, os, warnings
import threadpoolctl

def state():
    return dict(
        environ=dict(os.environ),
        filters=[repr(f) for f in warnings.filters],
        threads=[(i["internal_api"], i["num_threads"]) for i in threadpoolctl.threadpool_info()],
        errstate=__import__("numpy").geterr(),
    )

import numpy as np, scipy.fft, scipy.linalg, scipy.sparse  # the dependencies' own import effects come first
before = state()
import bilevel_lib as bl
from bilevel_lib import training
after_import = state()
from bilevel_lib.problem import filters
rng = np.random.default_rng(0)
truth = rng.standard_normal((1, 8, 8))
cost = bl.LowerLevelCost(truth)
params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=-2.0)
loss = bl.SquaredErrorLoss(truth)
bl.solve_lower_level(cost, params, tol=None, max_iter=5)
bl.implicit_hypergradient(cost, params, loss)
training.train_double_loop(cost, params, loss, n_steps=2)
try:
    bl.solve_lower_level(cost, params, tol=None, max_iter=100, step=10.0)
except ValueError:
    pass
after_use = state()
print(json.dumps(dict(before=before, after_import=after_import, after_use=after_use)))
"""


def test_the_library_changes_no_global_state_of_the_process():
    run = subprocess.run([sys.executable, "-c", IMPORT_STATE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    states = json.loads(run.stdout.strip().splitlines()[-1])
    before = states["before"]
    for moment in ("after_import", "after_use"):
        now = states[moment]
        added = set(now["environ"]) - set(before["environ"])
        changed = {k for k in before["environ"] if now["environ"].get(k) != before["environ"][k]}
        assert not added and not changed, f"{moment}: environment variables set {added | changed}"
        assert now["filters"] == before["filters"], f"{moment}: warning filters changed"
        assert now["threads"][: len(before["threads"])] == before["threads"], f"{moment}: BLAS threads changed"
        assert now["errstate"] == before["errstate"], f"{moment}: numpy's floating-point error state changed"


def test_importing_the_library_first_sets_no_environment_variable():
    """threadpoolctl (a dependency) sets KMP_DUPLICATE_LIB_OK when first imported; importing the
    library first must leave the caller's environment as it was."""
    script = (
        "import json, os; before = dict(os.environ); import bilevel_lib; from bilevel_lib import training; "
        "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
    )
    env = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
