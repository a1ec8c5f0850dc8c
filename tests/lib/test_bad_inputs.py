"""The audit of issue 14: several hundred bad inputs thrown at every public function, table-driven.

Every public name that ``bilevel_lib`` and its layers export (their ``__all__``), the command line
and the results store, is either covered by a row of :data:`SPECS` / :data:`ITERATIVE` or listed in
:data:`NOT_COVERED` with the reason; :func:`test_every_public_function_is_audited_or_listed` fails
when a new public function is neither.

Each row of :data:`SPECS` is one function with a cheap good call and, for each argument, the kinds
of bad value it must refuse (:func:`bad_array`, :data:`COUNTS`, :data:`POSITIVES`, …).  A case
passes only if the call raises ``ValueError`` or ``TypeError`` (the library's ``NonFiniteError`` is a
``ValueError``) whose message names the argument.  It fails on a returned result (silent garbage:
NaN, a crop, a cast, ``converged=True``), on any other exception (a raw ``IndexError`` or
broadcasting error from inside numpy), and on a warning (warnings are errors here: a cast or an
overflow that only warns is not a refusal).  The good calls use tiny budgets, so a check that is
missing shows up as a returned result rather than as a long run.

:data:`ITERATIVE` runs each iterative routine with a budget of one iteration and requires the
non-convergence to be reported (``converged`` false in the result or its history, or a
``ConvergenceWarning``).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import hypergrad as hg
from bilevel_lib import l1, util
from bilevel_lib import problem as pb
from bilevel_lib import training as tr
from bilevel_lib.experiments import beyond_mse, cli, full_image, julia_random, maid_hoag, profiling, recipes, store
from bilevel_lib.problem import filters as fb
from bilevel_lib.training.loops import TrainingHistory, TrainingResult

# ----------------------------------------------------------------------------- the small problems
RNG = np.random.default_rng(7)
TRUTH = RNG.standard_normal((2, 8, 8))
Y = TRUTH + 0.1 * RNG.standard_normal(TRUTH.shape)
FILTERS = fb.finite_differences(2)  # (2, 2, 2)
PARAMS = bl.Hyperparameters.from_filters(FILTERS, beta0=-2.0)
COST = bl.LowerLevelCost(Y)
LOSS = bl.SquaredErrorLoss(TRUTH)
X = COST.y.copy()
QUADRATIC_COST = bl.LowerLevelCost(Y, penalty=bl.Quadratic())
BLUR = bl.CircularBlur(pb.gaussian_kernel(3, 1.0), signal_shape=(8, 8))

# the ℓ1 problems: J = 3 signals of length 12, W of 5 rows
Y1 = RNG.standard_normal((3, 12))
X1 = Y1 + 0.1 * RNG.standard_normal(Y1.shape)
W1 = 0.3 * RNG.standard_normal((5, 12))
SIGNS1 = np.sign(RNG.standard_normal((3, 5)))
OPERATOR = l1.AnalysisOperator.from_matrix(W1)
FILTER_OPERATOR = l1.AnalysisOperator.from_filters(FILTERS, (8, 8))
LOSS1 = bl.SquaredErrorLoss(X1)


# ----------------------------------------------------------------------------- kinds of bad value
def bad_values(good) -> list[tuple[str, Any]]:
    """An array argument's bad values whatever its shape: non-finite, complex, object, string, bool, ragged, empty."""
    good = np.asarray(good, dtype=np.float64)
    nan, inf = good.copy(), good.copy()
    nan.flat[0], inf.flat[-1] = np.nan, -np.inf
    return [
        ("nan", nan),
        ("inf", inf),
        ("complex", good + 1j),
        ("object", good.astype(object)),
        ("str", np.full(good.shape, "a")),
        ("bool", np.ones(good.shape, dtype=bool)),
        ("ragged", [[1.0, 2.0], [3.0]]),
        ("none-entries", [None] * 3),
    ]


def empty(good) -> list[tuple[str, Any]]:
    """A data argument with no signal (J = 0) or no sample: refused where a batch of data is required."""
    good = np.asarray(good, dtype=np.float64)
    return [("empty", np.empty((0,) + good.shape[1:])), ("no-samples", np.empty(good.shape[:1] + (0,)))]


def bad_shapes(good) -> list[tuple[str, Any]]:
    """An array argument whose shape is fixed by another argument: one dimension less or more, a wrong length."""
    good = np.asarray(good, dtype=np.float64)
    longer = np.concatenate([good, good[..., :1]], axis=-1)
    cases = [("ndim+1", good[..., None]), ("last+1", longer)]
    if good.ndim >= 2:
        cases.append(("ndim-1", good.reshape(good.shape[0], -1) if good.ndim > 2 else good[0]))
    elif good.ndim == 1:
        cases.append(("scalar", good[0]))
    return cases


def bad_array(good, *, skip=()) -> list[tuple[str, Any]]:
    """:func:`bad_values` and :func:`bad_shapes` of an argument, less the labels in ``skip``."""
    return [case for case in bad_values(good) + bad_shapes(good) if case[0] not in skip]


#: the ℓ1 functions take one 1-D signal as a batch of one (documented), so "one dimension less" is not bad there
ONE_SIGNAL = ("ndim-1",)


#: counts (iterations, steps, samples): zero, negative, fractional, non-finite, bool, string
COUNTS = [("0", 0), ("-3", -3), ("2.5", 2.5), ("nan", np.nan), ("inf", np.inf), ("True", True), ("str", "5")]
#: positive reals (tolerances, steps, rates, eps, widths): zero, negative, non-finite, bool, string, complex, list
POSITIVES = [
    ("0", 0.0),
    ("-1", -1.0),
    ("nan", np.nan),
    ("inf", np.inf),
    ("True", True),
    ("str", "0.1"),
    ("complex", 1e-3j),
    ("list", [0.1]),
]
#: non-negative reals (thresholds): negative, non-finite, bool, string
NONNEGATIVES = [("-1", -1.0), ("nan", np.nan), ("inf", np.inf), ("True", True), ("str", "0")]
#: any finite real (β0, a log-strength, a bound): non-finite, bool, string, complex
REALS = [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf), ("True", True), ("str", "1"), ("complex", 1j)]
#: an option chosen by name: unknown string, a number, None
CHOICES = [("unknown", "bogus"), ("int", 3), ("None", None)]
#: a seed or generator: negative, fractional, string
SEEDS = [("-1", -1), ("2.5", 2.5), ("str", "seed"), ("None-list", [None])]
#: something that is not a Hyperparameters
PARAMS_BAD = [
    ("list", [0.0, 1.0]),
    ("dict", {"beta0": 0.0}),
    ("array", np.zeros(3)),
    ("1d-filters", bl.Hyperparameters.from_filters(np.ones((2, 3)))),
    ("filter>image", bl.Hyperparameters.from_filters(np.ones((2, 9, 9)))),
    ("3d-filters", bl.Hyperparameters.from_filters(np.ones((2, 2, 2, 2)))),
]
#: β so large that e^{β0 + β_k} overflows in the solve
HUGE_BETA = [("beta0=710", bl.Hyperparameters.from_filters(FILTERS, beta0=710.0))]
COSTS_BAD = [("array", np.zeros((2, 8, 8))), ("str", "cost"), ("None", None)]
LOSSES_BAD = [
    ("array", np.zeros((2, 8, 8))),
    ("str", "mse"),
    ("truth-shape", bl.SquaredErrorLoss(TRUTH[:, :4, :4])),
    ("truth-batch", bl.SquaredErrorLoss(TRUTH[:1])),
]
CALLABLES_BAD = [("int", 3), ("None", None), ("array", np.zeros(3))]
PARTS_BAD = [("unknown", ("beta", "gamma")), ("int", 3), ("empty", ()), ("str-typo", "betas")]
FORWARD_BAD = [
    ("array", np.eye(3)),
    ("str", "blur"),
    ("blur-16", bl.CircularBlur(pb.gaussian_kernel(3, 1.0), signal_shape=(16, 16))),
    ("mask-4", bl.PixelMask(np.ones((4, 4), dtype=bool))),
]
FLAGS_BAD = [("str", "yes"), ("int", 2), ("None-list", [None])]


# ----------------------------------------------------------------------------- the table
@dataclass
class Spec:
    """One public function: how to call it well, and the bad values of each argument."""

    name: str
    call: Callable[..., Any]
    good: Callable[[], dict]
    bad: dict[str, list[tuple[str, Any]]]
    #: the words a message may use for an argument, besides its own name
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)


def spec(_label, _call, _good, /, names=None, **bad):
    """A row: the public name, the function, its good keyword arguments, and per argument its bad values."""
    return Spec(_label, _call, _good, bad, names or {})


def _implicit_result():
    """A good implicit estimate for the error split (x̃ and q̃ in its state)."""
    return bl.implicit_hypergradient(COST, PARAMS, LOSS, lower_tol=1e-6, cg_tol=1e-6, warn=False)


def _x0():
    return X.copy()


SPECS: list[Spec] = [
    # ---- util (the name of the argument is the caller's label; only the value is audited)
    spec(
        "util.as_float_array",
        util.as_float_array,
        lambda: dict(value=[1.0, 2.0], name="v", ndim=1),
        names={"value": ("v",)},
        value=bad_array([1.0, 2.0], skip=("last+1",)),  # ndim=1 asks nothing of the length
    ),
    spec("util.check_real", util.check_real, lambda: dict(value=1.0, name="v"), names={"value": ("v",)}, value=REALS),
    spec("util.check_count", util.check_count, lambda: dict(value=1, name="v"), names={"value": ("v",)}, value=COUNTS),
    spec(
        "util.positive_scalar",
        util.positive_scalar,
        lambda: dict(value=1.0, name="v"),
        names={"value": ("v",)},
        value=POSITIVES,
    ),
    spec(
        "util.check_choice",
        util.check_choice,
        lambda: dict(value="a", name="v", choices=("a",)),
        names={"value": ("v",)},
        value=CHOICES,
    ),
    spec(
        "util.check_flag", util.check_flag, lambda: dict(value=True, name="v"), names={"value": ("v",)}, value=FLAGS_BAD
    ),
    spec(
        "util.check_generator",
        util.check_generator,
        lambda: dict(value=0, name="v"),
        names={"value": ("v",)},
        value=SEEDS,
    ),
    spec(
        "util.check_finite_result",
        util.check_finite_result,
        lambda: dict(value=1.0, where="w", quantity="q"),
        names={"value": ("w",)},
        value=[("nan", np.nan), ("inf-array", np.array([1.0, np.inf]))],
    ),
    spec(
        "util.progress_bar",
        util.progress_bar,
        lambda: dict(total=3, enabled=False, description="d"),
        total=COUNTS[1:],
        enabled=FLAGS_BAD,
    ),
    # ---- problem: data and filters
    spec(
        "problem.Hyperparameters",
        bl.Hyperparameters,
        lambda: dict(beta0=0.0, beta=np.zeros(2), filters=FILTERS),
        beta0=REALS + [("array", np.zeros(2))],
        beta=bad_array(np.zeros(2)),
        filters=bad_values(FILTERS) + [("1d", np.ones(3)), ("zero-size", np.ones((2, 0, 2)))],
    ),
    spec(
        "problem.LowerLevelCost",
        bl.LowerLevelCost,
        lambda: dict(y=Y),
        names={"forward_model": ("forward_model", "signal_shape", "shape")},
        y=bad_values(Y) + empty(Y) + [("1d-scalar", 1.0)],
        penalty=[("str", "cr1n"), ("int", 3)],
        forward_model=FORWARD_BAD,
    ),
    spec(
        "problem.SquaredErrorLoss",
        bl.SquaredErrorLoss,
        lambda: dict(truth=TRUTH),
        truth=bad_values(TRUTH) + empty(TRUTH),
    ),
    spec(
        "problem.HuberLoss",
        bl.HuberLoss,
        lambda: dict(truth=TRUTH, delta=0.1),
        names={"delta": ("delta", "δ")},
        truth=bad_values(TRUTH) + empty(TRUTH),
        delta=POSITIVES,
    ),
    spec(
        "problem.SSIMLoss",
        bl.SSIMLoss,
        lambda: dict(truth=TRUTH, data_range=1.0, window="uniform", win_size=3),
        names={"win_size": ("win_size", "window")},
        truth=bad_values(TRUTH) + empty(TRUTH) + [("smaller-than-window", TRUTH[:, :2, :2])],
        data_range=POSITIVES,
        window=CHOICES,
        win_size=[("4", 4), ("1", 1), ("-3", -3), ("7.0", 7.0), ("True", True), ("str", "5"), ("9>8", 9)],
        k1=POSITIVES,
        k2=POSITIVES,
        sample_covariance=FLAGS_BAD,
    ),
    spec(
        "problem.SSIMLoss(gaussian)",
        bl.SSIMLoss,
        lambda: dict(truth=np.ones((1, 12, 12)), data_range=1.0, window="gaussian", sigma=1.5),
        names={"sigma": ("sigma", "σ", "window")},
        sigma=POSITIVES + [("0.1", 0.1), ("too-wide", 2.0)],
    ),
    spec("problem.CornerRounded1Norm", bl.CornerRounded1Norm, lambda: dict(eps=0.1), eps=POSITIVES),
    spec("problem.LogSquare", bl.LogSquare, lambda: dict(eps=0.1), eps=POSITIVES),
    spec(
        "problem.CircularBlur",
        bl.CircularBlur,
        lambda: dict(kernel=pb.gaussian_kernel(3, 1.0), signal_shape=(8, 8)),
        names={"signal_shape": ("signal_shape", "kernel")},
        kernel=bad_values(pb.gaussian_kernel(3, 1.0)),
        signal_shape=[("kernel>image", (2, 2)), ("zero", (0, 8)), ("negative", (-8, 8)), ("str", "8x8"), ("1d", (8,))],
    ),
    spec(
        "problem.Identity",
        bl.Identity,
        lambda: dict(signal_shape=(8, 8)),
        signal_shape=[("zero", (0, 8)), ("negative", (-8, 8)), ("str", "8x8"), ("float", (8.5, 8))],
    ),
    spec(
        "problem.PixelMask",
        bl.PixelMask,
        lambda: dict(mask=np.ones((8, 8), dtype=bool)),
        mask=[v for v in bad_values(np.ones((8, 8))) if v[0] != "bool"] + [("two-valued", np.full((8, 8), 0.5))],
    ),
    spec(
        "problem.FilterBankOperator",
        pb.FilterBankOperator,
        lambda: dict(filters=FILTERS, signal_shape=(8, 8)),
        filters=bad_values(FILTERS) + [("larger", np.ones((2, 9, 9))), ("ndim", np.ones((2, 2, 2, 2)))],
        signal_shape=[("zero", (0, 8)), ("negative", (-8, 8)), ("str", "8x8"), ("1d", (8,))],
        method=CHOICES,
    ),
    spec(
        "problem.HessianOperator",
        pb.HessianOperator,
        lambda: dict(
            cost=COST,
            filter_bank=pb.FilterBankOperator(FILTERS, (8, 8)),
            curvature=np.ones((2, 2, 8, 8)),
            weights=np.ones(2),
        ),
        cost=COSTS_BAD,
        filter_bank=[("array", FILTERS), ("bank-16", pb.FilterBankOperator(FILTERS, (16, 16)))],
        curvature=bad_array(np.ones((2, 2, 8, 8))),
        weights=bad_array(np.ones(2)),
        method=CHOICES,
    ),
    spec(
        "problem.add_noise",
        pb.add_noise,
        lambda: dict(x=TRUTH, sigma=0.1, rng=np.random.default_rng(0)),
        x=bad_values(TRUTH),
        sigma=[v for v in POSITIVES if v[0] != "0"],
        rng=[("str", "rng"), ("float", 1.5), ("-1", -1)],
    ),
    spec(
        "problem.cameraman_patches",
        pb.cameraman_patches,
        lambda: dict(patches=pb.CAMERAMAN_PATCHES[:1]),
        patches=[("int", 3), ("str", "all"), ("empty", ()), ("out-of-image", ((slice(500, 600), slice(0, 50)),))],
    ),
    spec(
        "problem.correlate",
        pb.correlate,
        lambda: dict(x=X, filters=FILTERS),
        x=bad_values(X) + [("smaller-than-filter", np.ones((2, 1, 1))), ("1d", np.ones(8))],
        filters=bad_values(FILTERS) + [("larger", np.ones((2, 9, 9))), ("ndim", np.ones((2, 2, 2, 2, 2)))],
        method=CHOICES,
    ),
    spec(
        "problem.correlate_adjoint",
        pb.correlate_adjoint,
        lambda: dict(v=np.ones((2, 2, 8, 8)), filters=FILTERS),
        names={"v": ("v", "filters")},
        v=bad_values(np.ones((2, 2, 8, 8))) + [("K-mismatch", np.ones((2, 3, 8, 8))), ("ndim-2", np.ones((8, 8)))],
        filters=bad_values(FILTERS) + [("larger", np.ones((2, 9, 9)))],
        method=CHOICES,
    ),
    spec(
        "problem.correlation_matrix",
        pb.correlation_matrix,
        lambda: dict(filter_=FILTERS[0], signal_shape=(8, 8)),
        names={"filter_": ("filter_", "filter")},
        filter_=bad_values(FILTERS[0]) + [("larger", np.ones((9, 9))), ("ndim", np.ones((2, 2, 2)))],
        signal_shape=[("zero", (0, 8)), ("negative", (-8, 8)), ("str", "8x8"), ("1d", (8,))],
    ),
    spec(
        "problem.dct_filters",
        pb.dct_filters,
        lambda: dict(size=3),
        size=COUNTS,
        ndim=COUNTS + [("4", 4)],
        include_dc=FLAGS_BAD,
    ),
    spec(
        "problem.dct_sparse_1d",
        pb.dct_sparse_1d,
        lambda: dict(n=16, n_signals=2, rng=np.random.default_rng(0)),
        n=COUNTS,
        n_signals=COUNTS,
        rng=[("str", "rng"), ("float", 1.5)],
        sparsity=COUNTS + [("n+1", 17)],
        amplitude=NONNEGATIVES,  # amplitude 0 gives zero signals
    ),
    spec("problem.finite_differences", pb.finite_differences, lambda: dict(ndim=2), ndim=COUNTS + [("4", 4)]),
    spec(
        "problem.gaussian_kernel",
        pb.gaussian_kernel,
        lambda: dict(size=3, width=1.0),
        size=COUNTS,
        width=POSITIVES,
        ndim=COUNTS,
    ),
    *[
        spec(
            f"problem.{metric.__name__}",
            metric,
            lambda: dict(estimate=X, truth=TRUTH),
            names={"estimate": ("estimate", "truth")},
            estimate=bad_array(X),
            truth=bad_values(TRUTH),
            per_image=FLAGS_BAD,
        )
        for metric in (pb.mse, pb.psnr_db, pb.snr_db)
    ],
    spec(
        "problem.relative_error",
        pb.relative_error,
        lambda: dict(estimate=X, reference=TRUTH),
        names={"estimate": ("estimate", "reference")},
        estimate=bad_array(X),
        reference=bad_values(TRUTH) + [("zero", np.zeros_like(TRUTH))],
        per_image=FLAGS_BAD,
    ),
    spec(
        "problem.psnr_db(data_range)",
        pb.psnr_db,
        lambda: dict(estimate=X, truth=TRUTH),
        data_range=POSITIVES,
    ),
    spec(
        "problem.piecewise_constant_1d",
        pb.piecewise_constant_1d,
        lambda: dict(n=16, n_signals=2, rng=np.random.default_rng(0)),
        n=COUNTS,
        n_signals=COUNTS,
        rng=[("str", "rng"), ("float", 1.5)],
        n_jumps=COUNTS[1:] + [("n", 16)],
        amplitude=NONNEGATIVES,  # amplitude 0 gives zero signals
    ),
    spec(
        "problem.random_filters",
        pb.random_filters,
        lambda: dict(n_filters=2, shape=(2, 2), rng=0),
        n_filters=COUNTS,
        shape=[("zero", (0, 2)), ("negative", (-2, 2)), ("str", "2x2"), ("float", (2.5, 2))],
        rng=SEEDS,
    ),
    spec(
        "problem.vertical_bars",
        pb.vertical_bars,
        lambda: dict(shape=(8, 8), period=4),
        shape=[("zero", (0, 8)), ("negative", (-8, 8)), ("str", "8x8"), ("1d", (8,))],
        period=COUNTS,
    ),
    # ---- solvers
    spec(
        "solvers.solve_lower_level",
        bl.solve_lower_level,
        lambda: dict(cost=COST, params=PARAMS, max_iter=5, tol=None),
        names={"params": ("params", "filters", "filter", "β0", "beta0")},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        x0=bad_array(X),
        method=CHOICES,
        tol=POSITIVES,
        max_iter=COUNTS,
        step=POSITIVES,
        restart=FLAGS_BAD,
        record_history=FLAGS_BAD,
    ),
    spec(
        "solvers.conjugate_gradient",
        bl.conjugate_gradient,
        lambda: dict(apply_hessian=lambda v: 2.0 * v, b=np.ones((2, 4)), max_iter=5),
        names={"x0": ("x0", "b")},
        apply_hessian=CALLABLES_BAD,
        b=bad_values(np.ones((2, 4))),
        x0=bad_array(np.ones((2, 4))),
        tol=POSITIVES,
        max_iter=COUNTS,
        relative_to=CHOICES,
        preconditioner=[("int", 3), ("str", "jacobi")],
    ),
    # ---- hypergrad
    spec(
        "hypergrad.implicit_hypergradient",
        bl.implicit_hypergradient,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, lower_max_iter=5, cg_max_iter=5, lower_tol=None, warn=False),
        names={"params": ("params", "filters", "filter", "β0", "beta0"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        x0=bad_array(X),
        q0=bad_array(X),
        lower_tol=POSITIVES,
        lower_max_iter=COUNTS,
        cg_tol=POSITIVES,
        cg_max_iter=COUNTS,
        cg_relative_to=CHOICES,
        state=[("list", [1]), ("str", "state")],
    ),
    spec(
        "hypergrad.implicit_step",
        hg.implicit_step,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, x=X, cg_max_iter=5),
        names={"params": ("params", "filters", "filter"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        x=bad_array(X),
        q0=bad_array(X),
        rhs=bad_array(X),
        cg_tol=POSITIVES,
        cg_max_iter=COUNTS,
        cg_relative_to=CHOICES,
    ),
    spec(
        "hypergrad.implicit_error_split",
        hg.implicit_error_split,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, result=_implicit_result(), cg_max_iter=50),
        names={"params": ("params", "filters", "filter"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        result=[("None", None), ("str", "result"), ("dict", {"x": X})],
        mu=POSITIVES,
        tight_tol=POSITIVES,
        newton_tol=POSITIVES,
        cg_max_iter=COUNTS,
    ),
    spec(
        "hypergrad.directional_check",
        hg.directional_check,
        lambda: dict(function=lambda v: float(v @ v), point=np.ones(3), gradient=2 * np.ones(3), n_directions=2),
        function=CALLABLES_BAD,
        point=bad_array(np.ones(3)),
        gradient=[("zero", np.zeros(3)), ("short", np.ones(2)), ("nan", np.array([1.0, np.nan, 1.0]))],
        n_directions=COUNTS,
        step=POSITIVES,
        confidence=[("0", 0.0), ("1", 1.0), ("nan", np.nan), ("str", "0.9"), ("True", True)],
        rtol=POSITIVES,
        rng=SEEDS,
    ),
    spec(
        "hypergrad.upper_loss_function",
        hg.upper_loss_function,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, parts=("beta0",)),
        names={"params": ("params", "filters", "filter"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        lower_tol=POSITIVES,
        x0=bad_array(X),
    ),
    spec(
        "hypergrad.kkt_hypergradient",
        hg.kkt_hypergradient,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, x=X),
        names={"params": ("params", "filters", "filter"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        x=bad_array(X),
        x0=bad_array(X),
        lower_tol=POSITIVES,
        lower_max_iter=COUNTS,
    ),
    spec(
        "hypergrad.finite_difference_hypergradient",
        hg.finite_difference_hypergradient,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, lower_max_iter=3, lower_tol=1e-3, parts=("beta0",)),
        names={"params": ("params", "filters", "filter", "β0"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        step=POSITIVES,
        lower_tol=POSITIVES,
        lower_max_iter=COUNTS,
        x0=bad_array(X),
    ),
    spec(
        "hypergrad.finite_difference_gradient",
        hg.finite_difference_gradient,
        lambda: dict(f=lambda v: float(np.sum(v**2)), x=np.ones(3)),
        f=CALLABLES_BAD,
        x=bad_values(np.ones(3)),
        step=POSITIVES,
    ),
    spec(
        "hypergrad.gradient_angle_degrees",
        hg.gradient_angle_degrees,
        lambda: dict(estimate=np.ones(3), reference=np.ones(3)),
        names={"estimate": ("estimate", "reference")},
        estimate=bad_array(np.ones(3), skip=("ndim+1",)) + [("zero", np.zeros(3))],  # both are raveled
        reference=bad_values(np.ones(3)) + [("zero", np.zeros(3))],
    ),
    spec(
        "hypergrad.gradient_jvp",
        hg.gradient_jvp,
        lambda: dict(cost=COST, x=X, params=PARAMS, x_dot=np.zeros((PARAMS.size(), *X.shape))),
        names={"params": ("params", "filters", "filter"), "x_dot": ("x_dot",)},
        cost=COSTS_BAD,
        x=bad_array(X),
        params=PARAMS_BAD,
        x_dot=bad_array(np.zeros((PARAMS.size(), *X.shape))) + [("Hyperparameters", PARAMS)],
        parts=PARTS_BAD,
    ),
    spec(
        "hypergrad.ogm_coefficients",
        hg.ogm_coefficients,
        lambda: dict(n_iter=3),
        n_iter=COUNTS[1:],
    ),
    spec(
        "hypergrad.default_step",
        hg.default_step,
        lambda: dict(cost=COST, params=PARAMS),
        names={"params": ("params", "filters", "filter", "β0")},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
    ),
    spec(
        "hypergrad.certified_lower_tol",
        hg.certified_lower_tol,
        lambda: dict(cost=COST, eps=0.1),
        cost=COSTS_BAD,
        eps=POSITIVES,
    ),
    spec(
        "hypergrad.inexact_hypergradient",
        hg.inexact_hypergradient,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, eps=0.1, delta=0.1, lower_max_iter=5, cg_max_iter=5),
        names={"params": ("params", "filters", "filter", "β0"), "loss": ("loss", "truth")},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        eps=POSITIVES,
        delta=POSITIVES,
        parts=PARTS_BAD,
        x0=bad_array(X),
        q0=bad_array(X),
        lower_max_iter=COUNTS,
        cg_max_iter=COUNTS,
    ),
    spec(
        "hypergrad.quadratic_solution",
        hg.quadratic_solution,
        lambda: dict(y=Y, params=PARAMS),
        names={"params": ("params", "filters", "filter", "β0"), "forward_model": ("forward_model", "shape")},
        y=bad_values(Y),
        params=PARAMS_BAD + HUGE_BETA,
        forward_model=FORWARD_BAD,
    ),
    spec(
        "hypergrad.quadratic_hypergradient",
        hg.quadratic_hypergradient,
        lambda: dict(y=Y, truth=TRUTH, params=PARAMS),
        names={
            "params": ("params", "filters", "filter", "β0"),
            "forward_model": ("forward_model", "shape"),
            "truth": ("truth", "y"),
        },
        y=bad_values(Y),
        truth=bad_array(TRUTH),
        params=PARAMS_BAD + HUGE_BETA,
        forward_model=FORWARD_BAD,
    ),
    spec(
        "hypergrad.quadratic_estimator",
        hg.quadratic_estimator,
        lambda: dict(cost=QUADRATIC_COST, params=PARAMS, loss=LOSS),
        names={"params": ("params", "filters", "filter", "β0"), "loss": ("loss", "truth"), "cost": ("cost", "φ")},
        cost=COSTS_BAD + [("cr1n", COST)],
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        x0=bad_array(X),
    ),
]

# the unrolled family: every estimator with (cost, params, loss, n_iter) and the same options
UNROLLED_NAMES = {
    "params": ("params", "filters", "filter", "β0"),
    "loss": ("loss", "truth"),
    "step": ("step",),
}
for _fn, _extra, _parts in [
    (hg.unrolled_hypergradient, {}, True),
    (hg.reverse_mode_hypergradient, {}, False),
    (hg.forward_mode_hypergradient, {}, True),
    (hg.truncated_hypergradient, {"backprop_steps": 2}, False),
    (hg.jacobian_free_hypergradient, {}, False),
    (hg.unrolled_loss, {}, False),
    (hg.finite_difference_unrolled_hypergradient, {}, True),
]:
    _bad = dict(
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        n_iter=COUNTS[1:],  # T = 0 is allowed: x_T = x0
        solver=CHOICES,
        step=POSITIVES,
        x0=bad_array(X),
    )
    if _parts:
        _bad["parts"] = PARTS_BAD
    if _extra:
        _bad["backprop_steps"] = COUNTS + [("n_iter+1", 4)]
    SPECS.append(
        Spec(
            f"hypergrad.{_fn.__name__}",
            _fn,
            (lambda extra: lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_iter=3, **extra))(_extra),
            _bad,
            UNROLLED_NAMES,
        )
    )
SPECS.append(
    spec(
        "hypergrad.unrolled_solution",
        hg.unrolled_solution,
        lambda: dict(cost=COST, params=PARAMS, n_iter=3),
        names=UNROLLED_NAMES,
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        n_iter=COUNTS[1:],
        solver=CHOICES,
        step=POSITIVES,
        x0=bad_array(X),
    )
)
SPECS.append(
    spec(
        "hypergrad.unrolled_hypergradient(mode)",
        hg.unrolled_hypergradient,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_iter=3),
        mode=CHOICES,
        backprop_steps=COUNTS + [("n_iter+1", 4)],
        lower_tol=POSITIVES,
        state=[("list", [1]), ("str", "state")],
    )
)

# ---- l1
L1_NAMES = {"W": ("W", "y"), "x_true": ("x_true", "y"), "d0": ("d0", "W")}
SPECS += [
    spec(
        "l1.solve_l1_denoising",
        l1.solve_l1_denoising,
        lambda: dict(y=Y1, W=W1, max_iter=5, warn=False),
        names=L1_NAMES,
        y=bad_array(Y1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        d0=bad_array(np.zeros((3, 5))),
        tol=POSITIVES,
        max_iter=COUNTS[1:],  # 0: the active-set solve alone, documented
        polish=[("str", "sometimes"), ("int", 3)],
        threshold=NONNEGATIVES,
        lipschitz=POSITIVES,
        active_set_first=FLAGS_BAD,
        warn=FLAGS_BAD,
    ),
    spec(
        "l1.l1_hypergradient",
        l1.l1_hypergradient,
        lambda: dict(y=Y1, x_true=X1, W=W1, warn=False),
        names=L1_NAMES,
        y=bad_array(Y1, skip=ONE_SIGNAL),
        x_true=bad_array(X1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        d0=bad_array(np.zeros((3, 5))),
        threshold=NONNEGATIVES,
        route=CHOICES,
        closed_form_tol=POSITIVES,
    ),
    spec(
        "l1.l1_loss",
        l1.l1_loss,
        lambda: dict(y=Y1, x_true=X1, W=W1, warn=False),
        names=L1_NAMES,
        y=bad_array(Y1, skip=ONE_SIGNAL),
        x_true=bad_array(X1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        d0=bad_array(np.zeros((3, 5))),
    ),
    spec(
        "l1.smoothed_hypergradient",
        l1.smoothed_hypergradient,
        lambda: dict(y=Y1, x_true=X1, W=W1, max_iter=5, warn=False),
        names=L1_NAMES | {"x0": ("x0", "y")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        x_true=bad_array(X1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        eps=POSITIVES,
        tol=POSITIVES,
        max_iter=COUNTS[1:],  # 0 Newton steps: reported by converged
        x0=bad_array(Y1),
    ),
    *[
        spec(
            f"l1.{fn.__name__}",
            fn,
            lambda: dict(y=Y1, x_true=X1, W=W1, signs=SIGNS1),
            names=L1_NAMES | {"signs": ("signs", "W", "y")},
            y=bad_array(Y1, skip=ONE_SIGNAL),
            x_true=bad_array(X1, skip=ONE_SIGNAL),
            W=bad_array(W1),
            signs=bad_array(SIGNS1) + [("values", np.full((3, 5), 0.5))],
            x_reference=bad_array(Y1),
            closed_form_tol=POSITIVES,
        )
        for fn in (l1.closed_form_gradient, l1.sign_split_gradient)
    ],
    spec(
        "l1.closed_form_solution",
        l1.closed_form_solution,
        lambda: dict(y=Y1, W=W1, signs=SIGNS1),
        names=L1_NAMES | {"signs": ("signs", "W", "y")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        signs=bad_array(SIGNS1) + [("values", np.full((3, 5), 0.5))],
    ),
    spec(
        "l1.finite_difference_l1_gradient",
        l1.finite_difference_l1_gradient,
        lambda: dict(y=Y1, x_true=X1, W=W1, entries=(np.array([0]), np.array([0]))),
        names=L1_NAMES | {"entries": ("entries", "W")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        x_true=bad_array(X1, skip=ONE_SIGNAL),
        W=bad_array(W1),
        entries=[
            ("out-of-range", (np.array([9]), np.array([0]))),
            ("negative", (np.array([-9]), np.array([0]))),
            ("str", "all"),
            ("float", (np.array([0.5]), np.array([0]))),
            ("unequal", (np.array([0, 1]), np.array([0]))),
        ],
        step=POSITIVES,
        d0=bad_array(np.zeros((3, 5))),
    ),
    spec(
        "l1.finite_difference_l1_hypergradient",
        l1.finite_difference_l1_hypergradient,
        lambda: dict(y=Y1[:1, :4], x_true=X1[:1, :4], W=W1[:2, :4], warn=False),
        names=L1_NAMES,
        y=bad_array(Y1[:1, :4], skip=ONE_SIGNAL),
        x_true=bad_array(X1[:1, :4], skip=ONE_SIGNAL),
        W=bad_array(W1[:2, :4]),
        step=POSITIVES,
        d0=bad_array(np.zeros((1, 2))),
    ),
    spec(
        "l1.filter_gradient_from_matrix",
        l1.filter_gradient_from_matrix,
        lambda: dict(gradient=np.ones((2 * 16, 16)), filter_shape=(2, 2), signal_shape=(4, 4)),
        names={"gradient": ("gradient", "filter_shape", "signal_shape")},
        gradient=bad_array(np.ones((32, 16))),
        filter_shape=[("larger", (5, 5)), ("zero", (0, 2)), ("str", "2x2"), ("ndim", (2,))],
        signal_shape=[("zero", (0, 4)), ("negative", (-4, 4)), ("str", "4x4")],
    ),
    spec(
        "l1.sign_pattern",
        l1.sign_pattern,
        lambda: dict(z=np.ones((3, 5))),
        z=bad_values(np.ones((3, 5))),
        threshold=NONNEGATIVES,
    ),
    spec(
        "l1.soft_threshold",
        l1.soft_threshold,
        lambda: dict(y=np.ones(4), threshold=0.5),
        y=bad_values(np.ones(4)),
        threshold=NONNEGATIVES,
    ),
    spec(
        "l1.power_prox",
        l1.power_prox,
        lambda: dict(y=np.ones(4), beta=0.5, beta_tilde=0.5),
        y=bad_values(np.ones(4)),
        beta=NONNEGATIVES,
        beta_tilde=POSITIVES,
    ),
    *[
        spec(
            f"l1.{fn.__name__}",
            fn,
            lambda: dict(d_tilde=np.full(4, 0.5), u=np.full(4, 0.1), step=0.5),
            names={"u": ("u", "d_tilde")},
            d_tilde=bad_values(np.full(4, 0.5)),
            u=bad_array(np.full(4, 0.1)),
            step=POSITIVES,
        )
        for fn in (l1.bregman_dual_update, l1.euclidean_dual_update)
    ],
    spec(
        "l1.AnalysisOperator",
        l1.AnalysisOperator,
        lambda: dict(parameters=W1, signal_shape=(12,), kind="matrix"),
        names={"signal_shape": ("signal_shape", "shape")},
        parameters=bad_values(W1),
        signal_shape=[("mismatch", (11,)), ("zero", (0,)), ("str", "12"), ("negative", (-12,))],
        kind=CHOICES,
    ),
    spec(
        "l1.AnalysisOperator(filters)",
        l1.AnalysisOperator,
        lambda: dict(parameters=FILTERS, signal_shape=(8, 8), kind="filters"),
        names={"signal_shape": ("signal_shape", "shape", "filters")},
        signal_shape=[("smaller", (1, 1)), ("ndim", (8,)), ("zero", (0, 8)), ("float", (8.5, 8))],
    ),
    spec(
        "l1.chambolle_pock_l1",
        l1.chambolle_pock_l1,
        lambda: dict(y=Y1, operator=OPERATOR, lam=0.1, n_iter=3),
        names={"y": ("y", "signal_shape", "operator"), "x0": ("x0", "y")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        operator=[("array", W1), ("str", "dct")],
        lam=POSITIVES,
        n_iter=COUNTS[1:],  # T = 0 returns x0, documented
        tau=POSITIVES,
        sigma=POSITIVES,
        dual_step=CHOICES,
        x0=bad_array(Y1),
    ),
    spec(
        "l1.default_steps",
        l1.default_steps,
        lambda: dict(operator=OPERATOR, lam=0.1),
        operator=[("array", W1), ("str", "dct")],
        lam=POSITIVES,
    ),
    spec(
        "l1.l1_analysis_objective",
        l1.l1_analysis_objective,
        lambda: dict(x=Y1, y=Y1, operator=OPERATOR, lam=0.1),
        names={"x": ("x", "y"), "y": ("y", "x")},
        x=bad_array(Y1),
        y=bad_array(Y1, skip=ONE_SIGNAL),
        operator=[("array", W1), ("str", "dct")],
        lam=POSITIVES,
    ),
    spec(
        "l1.primal_dual_gap",
        l1.primal_dual_gap,
        lambda: dict(x=Y1, d=np.zeros((3, 5)), y=Y1, operator=OPERATOR, lam=0.1),
        names={"x": ("x", "y"), "y": ("y", "x"), "d": ("d", "operator")},
        x=bad_array(Y1),
        d=bad_array(np.zeros((3, 5))),
        y=bad_array(Y1, skip=ONE_SIGNAL),
        operator=[("array", W1), ("str", "dct")],
        lam=POSITIVES,
    ),
    spec(
        "l1.unrolled_l1_hypergradient",
        l1.unrolled_l1_hypergradient,
        lambda: dict(y=Y1, loss=LOSS1, operator=OPERATOR, lam=0.1, n_iter=3),
        names={"y": ("y", "signal_shape", "operator"), "loss": ("loss", "truth"), "x0": ("x0", "y")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        loss=LOSSES_BAD[:2] + [("truth-shape", bl.SquaredErrorLoss(X1[:, :4]))],
        operator=[("array", W1), ("str", "dct")],
        lam=POSITIVES,
        n_iter=COUNTS,
        backprop_steps=COUNTS + [("n_iter+1", 4)],
        tau=POSITIVES,
        sigma=POSITIVES,
        dual_step=CHOICES,
        x0=bad_array(Y1),
        tol=POSITIVES,
    ),
    spec(
        "l1.unrolled_l1_loss",
        l1.unrolled_l1_loss,
        lambda: dict(y=Y1, loss=LOSS1, operator=OPERATOR, lam=0.1, n_iter=3),
        names={"y": ("y", "signal_shape", "operator"), "loss": ("loss", "truth"), "x0": ("x0", "y")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        loss=LOSSES_BAD[:2] + [("truth-shape", bl.SquaredErrorLoss(X1[:, :4]))],
        lam=POSITIVES,
        n_iter=COUNTS[1:],
        dual_step=CHOICES,
        x0=bad_array(Y1),
    ),
    spec(
        "l1.learn_analysis_operator",
        l1.learn_analysis_operator,
        lambda: dict(y=Y1, loss=LOSS1, operator=OPERATOR, lam=0.1, n_iter=2, n_updates=1),
        names={"y": ("y", "signal_shape", "operator"), "loss": ("loss", "truth")},
        y=bad_array(Y1, skip=ONE_SIGNAL),
        loss=LOSSES_BAD[:2],
        operator=[("array", W1)],
        lam=POSITIVES,
        n_iter=COUNTS,
        backprop_steps=COUNTS + [("n_iter+1", 3)],
        n_updates=COUNTS[1:],  # 0 updates: W0 back, documented
        learning_rate=POSITIVES,
        decay=POSITIVES,
        dual_step=CHOICES,
    ),
    spec("l1.dct_matrix", l1.dct_matrix, lambda: dict(n=4), n=COUNTS),
    spec("l1.finite_difference_matrix", l1.finite_difference_matrix, lambda: dict(n=4), n=COUNTS),
    spec(
        "l1.denoise",
        l1.denoise,
        lambda: dict(W=W1, y=Y1),
        names={"W": ("W", "y"), "y": ("y", "W")},
        W=bad_array(W1),
        y=bad_array(Y1, skip=ONE_SIGNAL),
    ),
    spec(
        "l1.mean_psnr",
        l1.mean_psnr,
        lambda: dict(W=W1, x=X1, y=Y1),
        names={"W": ("W", "y"), "y": ("y", "W", "x"), "x": ("x", "y")},
        W=bad_array(W1),
        x=bad_array(X1),
        y=bad_array(Y1, skip=ONE_SIGNAL),
    ),
    spec(
        "l1.best_scale",
        l1.best_scale,
        lambda: dict(transform=W1, x=X1, y=Y1, scales=[0.5, 1.0]),
        names={"transform": ("transform", "y"), "y": ("y", "transform", "x"), "x": ("x", "y")},
        transform=bad_array(W1),
        x=bad_array(X1),
        y=bad_array(Y1, skip=ONE_SIGNAL),
        scales=bad_values(np.array([0.5, 1.0])) + [("negative", [-1.0])],
    ),
    spec(
        "l1.match_rows",
        l1.match_rows,
        lambda: dict(W=W1, reference=W1),
        names={"W": ("W", "reference"), "reference": ("reference", "W")},
        W=bad_array(W1),
        reference=bad_array(W1),
    ),
    spec(
        "l1.check_decay_epochs",
        l1.check_decay_epochs,
        lambda: dict(decay_epochs=(2,), epochs=4),
        names={"decay_epochs": ("decay_epochs", "lr_decay_epochs")},
        decay_epochs=[("beyond", (9,)), ("zero", (0,)), ("float", (1.5,)), ("str", "2"), ("nan", (np.nan,))],
        epochs=COUNTS,
    ),
    spec(
        "l1.train_blorc",
        l1.train_blorc,
        lambda: dict(x_train=X1, y_train=Y1, W0=W1, epochs=1, batch_size=3, warn=False),
        names={"y_train": ("y_train", "x_train"), "x_train": ("x_train", "y_train"), "W0": ("W0", "W")},
        x_train=bad_array(X1),
        y_train=bad_array(Y1),
        W0=bad_array(W1),
        epochs=COUNTS,
        batch_size=COUNTS,
        lr=POSITIVES,
        threshold=NONNEGATIVES,
        seed=SEEDS,
        x_test=bad_array(X1),
        optimizer=CHOICES,
        callback=[("int", 3), ("str", "print")],
        lr_decay_epochs=[("beyond", (9,)), ("zero", (0,)), ("str", "2")],
        estimator=[("unknown", "bogus"), ("int", 3)],
        estimator_settings=[("list", [1]), ("unknown-key", {"bogus": 1})],
        progress=FLAGS_BAD,
    ),
]

# ---- training
TRAIN_NAMES = {"params": ("params", "filters", "filter", "β0"), "loss": ("loss", "truth")}
SPECS += [
    spec("training.GradientDescent", tr.GradientDescent, lambda: dict(learning_rate=0.1), learning_rate=POSITIVES),
    spec(
        "training.Adam",
        tr.Adam,
        lambda: dict(learning_rate=0.1),
        learning_rate=POSITIVES,
        beta1=REALS + [("1", 1.0), ("-0.1", -0.1)],
        beta2=REALS + [("1", 1.0), ("-0.1", -0.1)],
        eps=POSITIVES,
    ),
    spec(
        "training.hoag_schedule",
        tr.hoag_schedule,
        lambda: dict(),
        initial=POSITIVES,
        decay=POSITIVES + [("1.5", 1.5)],
        floor=NONNEGATIVES,
    ),
    spec(
        "training.train_double_loop",
        tr.train_double_loop,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_steps=1, lower_iterations=2, cg_max_iter=3),
        names=TRAIN_NAMES | {"x0": ("x0",), "optimizer": ("optimizer",)},
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        n_steps=COUNTS,
        optimizer=[("str", "adam"), ("int", 3)],
        lower_iterations=COUNTS,
        lower_tol=POSITIVES,
        initial_tol=POSITIVES,
        cg_tol=POSITIVES,
        cg_relative_to=CHOICES,
        cg_max_iter=COUNTS,
        stop_gradient_norm=POSITIVES,
        stop_relative_change=POSITIVES,
        warm_start=FLAGS_BAD,
        x0=bad_array(X),
        schedule=[("int", 3), ("str", "hoag")],
        estimator=[("int", 3), ("str", "bogus")],
        estimator_settings=[("list", [1]), ("unknown-key", {"bogus": 1})],
        max_work=COUNTS,
    ),
    spec(
        "training.train_ttsa",
        tr.train_ttsa,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_steps=1, cg_max_iter=3),
        names=TRAIN_NAMES,
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        n_steps=COUNTS,
        upper_step=POSITIVES,
        upper_decay=NONNEGATIVES,
        cg_tol=POSITIVES,
        cg_max_iter=COUNTS,
        x0=bad_array(X),
    ),
    spec(
        "training.train_maid",
        tr.train_maid,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_steps=1, max_rounds=1),
        names=TRAIN_NAMES,
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        n_steps=COUNTS,
        eps=POSITIVES,
        delta=POSITIVES,
        step=POSITIVES,
        shrink=POSITIVES + [("1", 1.0)],
        reduce=POSITIVES + [("1", 1.0)],
        increase=POSITIVES + [("0.5", 0.5)],
        eta=POSITIVES,
        sufficient=POSITIVES,
        backtracks=COUNTS[1:],
        max_rounds=COUNTS,
        max_work=COUNTS,
    ),
    spec(
        "training.gradient_descent_beta",
        tr.gradient_descent_beta,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_steps=1, lower_max_iter=5, max_backtracks=1),
        names=TRAIN_NAMES,
        cost=COSTS_BAD,
        params=PARAMS_BAD + HUGE_BETA,
        loss=LOSSES_BAD,
        parts=PARTS_BAD,
        n_steps=COUNTS,
        step=POSITIVES,
        lower_tol=POSITIVES,
        cg_tol=POSITIVES,
        lower_max_iter=COUNTS,
        shrink=POSITIVES + [("1", 1.0)],
        grow=POSITIVES + [("0.5", 0.5)],
        max_backtracks=COUNTS[1:],
    ),
    spec(
        "training.grid_search_beta0",
        tr.grid_search_beta0,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, grid=[-2.0, -1.0], lower_max_iter=5),
        names=TRAIN_NAMES,
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        grid=bad_values(np.array([-2.0, -1.0])) + [("huge", [710.0])],
        lower_tol=POSITIVES,
        lower_max_iter=COUNTS,
    ),
    spec(
        "training.random_search_beta",
        tr.random_search_beta,
        lambda: dict(cost=COST, params=PARAMS, loss=LOSS, n_samples=2, rng=0, lower_max_iter=5),
        names=TRAIN_NAMES | {"high": ("high", "low")},
        cost=COSTS_BAD,
        params=PARAMS_BAD,
        loss=LOSSES_BAD,
        n_samples=COUNTS,
        rng=SEEDS,
        low=REALS,
        high=REALS + [("below-low", -3.0)],
        lower_tol=POSITIVES,
        lower_max_iter=COUNTS,
    ),
]

# ---- experiments (the results store and the command line have their own rows below)
SPECS += [
    spec(
        "experiments.angle_error_vs_tolerance",
        recipes.angle_error_vs_tolerance,
        lambda: dict(cost=QUADRATIC_COST, truth=TRUTH, params=PARAMS, tolerances=[1e-2]),
        names={"params": ("params", "filters", "filter")},
        cost=COSTS_BAD,
        truth=bad_array(TRUTH),
        params=PARAMS_BAD,
        tolerances=bad_values(np.array([1e-2])) + [("zero", [0.0]), ("negative", [-1e-3])],
        parts=PARTS_BAD,
        x0=bad_array(X),
    ),
    spec(
        "experiments.cameraman_case",
        recipes.cameraman_case,
        lambda: dict(n_steps=1, lower_iterations=1, beta0=-4.0),
        names={"grid": ("grid", "beta0")},
        parts=PARTS_BAD,
        n_steps=COUNTS,
        lower_iterations=COUNTS,
        beta0=REALS,
        grid=[("with-beta0", [-1.0])],
        noise_seed=SEEDS,
    ),
    spec(
        "experiments.cameraman_case(grid)",
        recipes.cameraman_case,
        lambda: dict(n_steps=1, lower_iterations=1, grid=[-1.0]),
        grid=bad_values(np.array([-1.0])),
    ),
    spec(
        "experiments.loss_comparison",
        beyond_mse.loss_comparison,
        lambda: dict(losses=("mse",), filter_size=3, n_steps=1, lower_iterations=1, size=16),
        losses=[("unknown", ("mse", "l1")), ("str", "mse"), ("empty", ()), ("twice", ("mse", "mse")), ("int", 3)],
        parts=PARTS_BAD,
        filter_size=[("4", 4), ("0", 0), ("2.5", 2.5), ("str", "5"), ("True", True)],
        n_steps=COUNTS,
        lower_iterations=COUNTS,
        lr=POSITIVES,
        huber_delta=POSITIVES,
        sigma=POSITIVES,
        size=[("8", 8), ("51", 51), ("2.5", 2.5), ("str", "16"), ("0", 0)],
        noise_seed=SEEDS,
        progress=FLAGS_BAD,
    ),
    spec(
        "experiments.inpainting_case",
        beyond_mse.inpainting_case,
        lambda: dict(filter_size=3, n_steps=1, lower_iterations=1, size=16),
        missing=POSITIVES + [("0.99", 0.99), ("1", 1.0)],
        sigma=POSITIVES,
        parts=PARTS_BAD,
        filter_size=[("4", 4), ("0", 0), ("str", "3")],
        n_steps=COUNTS,
        lower_iterations=COUNTS,
        lr=POSITIVES,
        size=[("8", 8), ("51", 51), ("2.5", 2.5)],
        noise_seed=SEEDS,
        progress=FLAGS_BAD,
    ),
    spec(
        "experiments.penalty_comparison",
        beyond_mse.penalty_comparison,
        lambda: dict(
            log_eps_grid=(0.05,), filter_size=3, n_steps=1, lower_iterations=1, filter_lower_iterations=1, size=16
        ),
        log_eps_grid=[
            ("empty", ()),
            ("negative", (0.01, -1.0)),
            ("nan", (float("nan"),)),
            ("float", 0.01),
            ("str", "0.01"),
        ],
        filter_size=[("4", 4), ("0", 0), ("str", "5")],
        n_steps=COUNTS,
        lower_iterations=COUNTS,
        lr=POSITIVES,
        sigma=POSITIVES,
        size=[("8", 8), ("51", 51), ("2.5", 2.5)],
        noise_seed=SEEDS,
        filters=FLAGS_BAD,
        # a rate or a sequence of distinct rates: a one-element list is a valid sequence
        filter_lr=[case for case in POSITIVES if case[0] != "list"]
        + [("empty", ()), ("repeated", (0.01, 0.01)), ("negative in list", (0.01, -1.0)), ("nan in list", [np.nan])],
        filter_lower_iterations=COUNTS,
        progress=FLAGS_BAD,
    ),
    spec(
        "experiments.maid_hoag_comparison",
        maid_hoag.maid_hoag_comparison,
        lambda: dict(budget=1, n_train=1, n_test=1, size=8, filter_size=3, decays=(0.9,)),
        budget=COUNTS,
        n_train=COUNTS + [("too-many", 10_000)],
        n_test=COUNTS,
        size=[("4", 4), ("300", 300), ("2.5", 2.5), ("str", "16")],
        sigma=POSITIVES,
        filter_size=[("4", 4), ("0", 0), ("str", "5")],
        decays=[("empty", ()), ("1", (1.0,)), ("twice", (0.9, 0.9)), ("float", 0.9), ("str", "0.9")],
        initial_tol=POSITIVES,
        learning_rate=POSITIVES,
        maid_step=POSITIVES,
        seed=SEEDS,
        progress=FLAGS_BAD,
    ),
    spec(
        "experiments.cameraman_crops",
        maid_hoag.cameraman_crops,
        lambda: dict(n_train=1, n_test=1, size=8),
        n_train=COUNTS + [("too-many", 10_000)],
        n_test=COUNTS,
        size=[("4", 4), ("300", 300), ("2.5", 2.5)],
        seed=SEEDS,
    ),
    spec(
        "experiments.run_names",
        maid_hoag.run_names,
        lambda: dict(),
        decays=[("empty", ()), ("0", (0.0,)), ("nan", (float("nan"),)), ("float", 0.9)],
    ),
    spec(
        "experiments.smallest_hessian_eigenvalues",
        beyond_mse.smallest_hessian_eigenvalues,
        lambda: dict(
            cost=bl.LowerLevelCost(np.ones((1, 8, 8)), bl.LogSquare(0.05)),
            params=bl.Hyperparameters(-3.0, np.zeros(8), pb.filters.dct_filters(3)),
            x=np.ones((1, 8, 8)),
        ),
        cost=[("none", None), ("str", "cost")],
        params=[("none", None), ("array", np.zeros(8))],
        x=bad_array(np.ones((1, 8, 8))),
        tol=POSITIVES,
    ),
    spec(
        "experiments.scores",
        beyond_mse.scores,
        lambda: dict(x=np.ones((1, 12, 12)), truth=np.ones((1, 12, 12))),
        names={"truth": ("truth", "x must have shape")},  # a truth of another shape: x no longer matches it
        x=bad_array(np.ones((1, 12, 12))),
        truth=bad_values(np.ones((1, 12, 12))) + [("2d", np.ones((12, 12))), ("small", np.ones((1, 8, 8)))],
    ),
    spec(
        "experiments.vertical_bars_case",
        recipes.vertical_bars_case,
        lambda: dict(n_steps=1, lower_iterations=1, grid=[-1.0]),
        draws=CHOICES,
        julia_seed=SEEDS,
        filter_seed=SEEDS,
        noise_seed=SEEDS,
        n_steps=COUNTS,
        lower_iterations=COUNTS,
        grid=bad_values(np.array([-1.0])),
        bank=CHOICES,
    ),
    spec("experiments.vertical_bars_draws", recipes.vertical_bars_draws, lambda: dict(seed=0), seed=SEEDS),
    spec(
        "experiments.two_tap_problem",
        recipes.two_tap_problem,
        lambda: dict(n=8, n_signals=2),
        n=COUNTS + [("1", 1)],
        n_signals=COUNTS,
        sigma=NONNEGATIVES,  # σ = 0: noise-free data
        seed=SEEDS,
        beta0=REALS,
        beta1=REALS,
    ),
    spec("experiments.JuliaXoshiro", julia_random.JuliaXoshiro, lambda: dict(seed=0), seed=SEEDS),
    spec("experiments.ziggurat_tables", julia_random.ziggurat_tables, lambda: dict(kind="normal"), kind=CHOICES),
    spec(
        "experiments.measure",
        profiling.measure,
        lambda: dict(fn=lambda: 1, memory=False),
        fn=CALLABLES_BAD,
        repeat=COUNTS,
        statistic=CHOICES,
        memory=FLAGS_BAD,
    ),
    spec(
        "experiments.format_bytes",
        profiling.format_bytes,
        lambda: dict(n_bytes=10),
        names={"n_bytes": ("n_bytes", "bytes")},
        n_bytes=[("-1", -1), ("nan", np.nan), ("inf", np.inf), ("str", "10"), ("True", True)],
    ),
]


#: the committed result of ``python -m bilevel_lib bars`` (the cases redirect the results folder to a temporary one)
SAVED_BARS = store.results_dir() / "bars"


def _training_result():
    history = TrainingHistory()
    history.append(
        loss=1.0, gradient_norm=1.0, lower_gradient_norm=1.0, lower_iterations=1, cg_iterations=1, elapsed=0.1
    )
    return TrainingResult(params=PARAMS, history=history, x=X.copy(), message="ok", settings={"n_steps": 1})


SPECS += [
    spec(
        "experiments.save_result",
        store.save_result,
        lambda: dict(result=_training_result(), source=None, command="test", seconds=1.0),
        names={"source": ("source", "out", "path", "stem")},
        result=[("dict", {"params": PARAMS}), ("str", "bars"), ("None", None)],
        source=[("int", 3), ("empty", ""), ("list", ["a"])],
        command=[("int", 3), ("None", None)],
        seconds=[("-1", -1.0), ("nan", np.nan), ("inf", np.inf), ("str", "1")],
        metrics=[("list", [1]), ("object", {"f": object()})],
        settings=[("list", [1]), ("object", {"f": object()})],
        options=[("list", [1]), ("object", {"f": object()})],
    ),
    spec(
        "experiments.load_result",
        store.load_result,
        lambda: dict(source=SAVED_BARS),
        names={"source": ("source", "result", ".npz", "name")},
        source=[("int", 3), ("None", None), ("empty", ""), ("missing", "no_such_result_s8"), ("list", ["bars"])],
    ),
]


#: the saved runs whose γ the whole-image case applies, as paths (the cases redirect the results folder)
SAVED_BETA, SAVED_FILTERS = (store.results_dir() / name for name in ("cameraman-beta", "cameraman-filters"))
SPECS += [
    spec(
        "experiments.full_image_case",
        full_image.full_image_case,
        lambda: dict(
            image=np.full((16, 16), 0.5),
            tv_grid=[-3.0],
            max_iter=2,
            allow_unconverged=True,
            bm3d=False,
            beta_result=SAVED_BETA,
            filters_result=SAVED_FILTERS,
        ),
        image=bad_values(np.full((16, 16), 0.5))
        + [("3d", np.full((1, 16, 16), 0.5)), ("8x16", np.full((8, 16), 0.5)), ("above-1", np.full((16, 16), 2.0))],
        seed=SEEDS,
        tol=POSITIVES,
        max_iter=COUNTS,
        tv_grid=[("empty", []), ("str", "-3"), ("2d", [[-3.0]]), ("nan", [np.nan])],
        bm3d=FLAGS_BAD,
        beta_result=[("int", 3), ("missing", "no_such_result_s11"), ("None", None)],
        filters_result=[("int", 3), ("missing", "no_such_result_s11")],
        allow_unconverged=FLAGS_BAD,
        progress=FLAGS_BAD,
    ),
    spec(
        "experiments.quantise",
        full_image.quantise,
        lambda: dict(images=np.full((4, 4), 0.5)),
        images=bad_values(np.full((4, 4), 0.5)) + [("outside", np.full((4, 4), 2.0))],
        value_range=[("reversed", (1.0, 0.0)), ("one", (0.0,)), ("str", "01"), ("nan", (0.0, np.nan))],
        clip=FLAGS_BAD,
    ),
    spec(
        "experiments.dequantise",
        full_image.dequantise,
        lambda: dict(codes=np.zeros((4, 4), np.uint16)),
        codes=[("float", np.zeros(4)), ("list", [1, 2]), ("int64", np.zeros(4, np.int64))],
        value_range=[("reversed", (1.0, 0.0)), ("inf", (0.0, np.inf))],
    ),
]


#: rows whose good call takes seconds (a training run on the cameraman patches): not run by the good-call test
EXPENSIVE = {"experiments.cameraman_case", "experiments.cameraman_case(grid)"}


# ---- methods of the main classes (the objects the chapters call most)
_V = np.ones_like(X)
_PARAMS_FOR_COST = [("list", [0.0, 1.0]), ("1d-filters", PARAMS_BAD[3][1]), ("filter>image", PARAMS_BAD[4][1])]
_PARAMS_NAMES = ("params", "filters", "filter")
SPECS += [
    *[
        spec(
            f"LowerLevelCost.{method}",
            getattr(COST, method),
            lambda: dict(x=X, params=PARAMS),
            names={"params": _PARAMS_NAMES},
            x=bad_array(X),
            params=_PARAMS_FOR_COST,
        )
        for method in ("value", "gradient", "gradient_norm", "hessian_operator")
    ],
    *[
        spec(
            f"LowerLevelCost.{method}",
            getattr(COST, method),
            lambda: dict(x=X, params=PARAMS, v=_V),
            names={"params": _PARAMS_NAMES},
            x=bad_array(X),
            params=_PARAMS_FOR_COST,
            v=bad_array(_V),
        )
        for method in ("hessian_vector_product", "mixed_transpose")
    ],
    spec(
        "LowerLevelCost.lipschitz",
        COST.lipschitz,
        lambda: dict(params=PARAMS),
        names={"params": _PARAMS_NAMES},
        params=_PARAMS_FOR_COST,
    ),
    *[
        spec(f"SquaredErrorLoss.{method}", getattr(LOSS, method), lambda: dict(x=X), x=bad_array(X))
        for method in ("value", "gradient")
    ],
    *[
        spec(f"{type(loss).__name__}.{method}", getattr(loss, method), lambda: dict(x=X), x=bad_array(X))
        for loss in (bl.HuberLoss(TRUTH, 0.1), bl.SSIMLoss(TRUTH, 1.0, window="uniform", win_size=3))
        for method in ("value", "gradient") + (("ssim",) if isinstance(loss, bl.SSIMLoss) else ())
    ],
    *[
        spec(f"{type(model).__name__}.{method}", getattr(model, method), lambda: dict(x=X), x=bad_array(X))
        for model in (BLUR, bl.PixelMask(np.ones((8, 8), dtype=bool)))
        for method in ("forward", "gram")
    ],
    spec(
        "Hyperparameters.unflatten",
        PARAMS.unflatten,
        lambda: dict(vector=PARAMS.flatten()),
        vector=bad_array(PARAMS.flatten()),
        parts=PARTS_BAD,
    ),
    spec("Hyperparameters.flatten", PARAMS.flatten, lambda: dict(), parts=PARTS_BAD),
    *[
        spec(
            f"{type(optimizer).__name__}.step",
            optimizer.step,
            lambda: dict(vector=np.ones(3), gradient=np.ones(3)),
            vector=bad_array(np.ones(3)),
            gradient=bad_array(np.ones(3)),
        )
        for optimizer in (tr.GradientDescent(0.1), tr.Adam(0.1))
    ],
    spec(
        "AnalysisOperator.with_parameters",
        OPERATOR.with_parameters,
        lambda: dict(parameters=W1),
        parameters=bad_array(W1),
    ),
]


def _case_id(spec_: Spec, arg: str, label: str) -> str:
    return f"{spec_.name}-{arg}-{label}"


CASES = [
    pytest.param(s, arg, value, id=_case_id(s, arg, label))
    for s in SPECS
    for arg, values in s.bad.items()
    for label, value in values
]


def _summary(result) -> str:
    text = repr(result)
    return text if len(text) < 300 else text[:297] + "..."


@pytest.fixture
def tmp_results(tmp_path, monkeypatch):
    """Results written by the store go to a temporary folder (save_result with ``source=None`` uses its name)."""
    monkeypatch.setattr(store, "results_dir", lambda: tmp_path)
    return tmp_path


@pytest.mark.parametrize("spec_,arg,value", CASES)
def test_bad_input_is_refused_naming_the_argument(spec_, arg, value, tmp_results):
    kwargs = spec_.good()
    if spec_.name == "experiments.save_result":
        kwargs["source"] = tmp_results / "case"
    kwargs[arg] = value
    names = spec_.names.get(arg, (arg,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            result = spec_.call(**kwargs)
        except (ValueError, TypeError) as error:
            message = str(error)
            assert any(n in message for n in names), f"{type(error).__name__} does not name {names}: {message}"
            return
        except Exception as error:  # noqa: BLE001 - anything else is the failure being audited
            pytest.fail(f"{type(error).__name__} instead of ValueError/TypeError naming {names}: {error}")
    pytest.fail(f"accepted {arg}={_summary(value)}: returned {_summary(result)}")


def test_the_good_calls_of_the_table_succeed(tmp_results):
    """Every row's good call works, so that each bad case fails because of its one bad argument."""
    failed = []
    for spec_ in SPECS:
        if spec_.name in EXPENSIVE:
            continue
        kwargs = spec_.good()
        if spec_.name == "experiments.save_result":
            kwargs["source"] = tmp_results / "good"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec_.call(**kwargs)
            except Exception as error:  # noqa: BLE001 - collected and reported together
                failed.append(f"{spec_.name}: {type(error).__name__}: {error}")
    assert not failed, "\n".join(failed)


# ----------------------------------------------------------------------------- non-convergence
def _reported(result, caught) -> bool:
    if any(issubclass(w.category, bl.ConvergenceWarning) for w in caught):
        return True
    converged = getattr(result, "converged", getattr(getattr(result, "cg", None), "converged", None))
    if converged is False or getattr(result, "unconverged_steps", 0) > 0:
        return True
    history = getattr(result, "history", None)
    if history is not None and hasattr(history, "converged") and not all(history.converged):
        return True
    return False


#: every iterative routine with a budget of one iteration against a tolerance it cannot reach (MAID has no
#: such budget: its inner solves run to the accuracy it certifies; its options are audited in SPECS)
ITERATIVE = {
    "solvers.solve_lower_level": lambda: bl.solve_lower_level(COST, PARAMS, max_iter=1, tol=1e-10),
    "solvers.conjugate_gradient": lambda: bl.conjugate_gradient(
        lambda v: v * np.arange(1, 5), np.ones((1, 4)), max_iter=1
    ),
    "hypergrad.implicit_hypergradient(lower)": lambda: bl.implicit_hypergradient(
        COST, PARAMS, LOSS, lower_max_iter=1, lower_tol=1e-10
    ),
    "hypergrad.implicit_hypergradient(cg)": lambda: bl.implicit_hypergradient(
        COST, PARAMS, LOSS, X, cg_max_iter=1, lower_max_iter=1, lower_tol=None
    ),
    "hypergrad.implicit_step": lambda: hg.implicit_step(COST, PARAMS, LOSS, X, cg_max_iter=1),
    "hypergrad.kkt_hypergradient": lambda: hg.kkt_hypergradient(COST, PARAMS, LOSS, lower_max_iter=1),
    "hypergrad.finite_difference_hypergradient": lambda: hg.finite_difference_hypergradient(
        COST, PARAMS, LOSS, parts=("beta0",), lower_max_iter=1
    ),
    "hypergrad.inexact_hypergradient": lambda: hg.inexact_hypergradient(
        COST, PARAMS, LOSS, 1e-8, 1e-8, lower_max_iter=1, cg_max_iter=1
    ),
    "hypergrad.unrolled_hypergradient(lower_tol)": lambda: hg.unrolled_hypergradient(
        COST, PARAMS, LOSS, 1, lower_tol=1e-10
    ),
    "hypergrad.reverse_mode_hypergradient": lambda: hg.reverse_mode_hypergradient(
        COST, PARAMS, LOSS, 1, lower_tol=1e-10
    ),
    "hypergrad.forward_mode_hypergradient": lambda: hg.forward_mode_hypergradient(
        COST, PARAMS, LOSS, 1, lower_tol=1e-10
    ),
    "hypergrad.truncated_hypergradient": lambda: hg.truncated_hypergradient(COST, PARAMS, LOSS, 1, 1, lower_tol=1e-10),
    "hypergrad.jacobian_free_hypergradient": lambda: hg.jacobian_free_hypergradient(
        COST, PARAMS, LOSS, 1, lower_tol=1e-10
    ),
    "l1.solve_l1_denoising": lambda: l1.solve_l1_denoising(Y1, W1, max_iter=1, active_set_first=False, polish=False),
    "l1.l1_hypergradient": lambda: l1.l1_hypergradient(Y1, X1, W1, max_iter=1, active_set_first=False, polish=False),
    "l1.smoothed_hypergradient": lambda: l1.smoothed_hypergradient(Y1, X1, W1, max_iter=1),
    "training.train_double_loop(cg)": lambda: tr.train_double_loop(
        COST, PARAMS, LOSS, n_steps=1, lower_iterations=2, cg_max_iter=1, cg_tol=1e-12
    ),
    "training.train_double_loop(lower)": lambda: tr.train_double_loop(
        COST, PARAMS, LOSS, n_steps=1, lower_tol=1e-12, lower_iterations=None, cg_max_iter=3
    ),
    "training.train_ttsa": lambda: tr.train_ttsa(COST, PARAMS, LOSS, n_steps=1, cg_max_iter=1, cg_tol=1e-12),
    "training.gradient_descent_beta": lambda: tr.gradient_descent_beta(
        COST, PARAMS, LOSS, n_steps=1, lower_max_iter=1, lower_tol=1e-12
    ),
    "training.grid_search_beta0": lambda: tr.grid_search_beta0(
        COST, PARAMS, LOSS, [-2.0], lower_max_iter=1, lower_tol=1e-12
    ),
    "training.random_search_beta": lambda: tr.random_search_beta(
        COST, PARAMS, LOSS, 1, 0, lower_max_iter=1, lower_tol=1e-12
    ),
    "l1.train_blorc": lambda: l1.train_blorc(
        X1, Y1, W0=W1, epochs=1, batch_size=3, estimator=l1.smoothed_hypergradient, estimator_settings={"max_iter": 1}
    ),
}


@pytest.mark.parametrize("name", sorted(ITERATIVE))
def test_a_budget_of_one_iteration_is_reported_as_not_converged(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ITERATIVE[name]()
    assert _reported(result, caught), f"{name}: one iteration reported as converged: {_summary(result)}"


# ----------------------------------------------------------------------------- the command line
CLI_CASES = [
    (["bars", "--steps", "0"], "--steps"),
    (["bars", "--steps", "-3"], "--steps"),
    (["bars", "--steps", "2.5"], "--steps"),
    (["bars", "--steps", "nan"], "--steps"),
    (["bars", "--lower-iterations", "0"], "--lower-iterations"),
    (["bars", "--lower-iterations", "1e400"], "--lower-iterations"),
    (["bars", "--seed", "-1"], "--seed"),
    (["bars", "--seed", "x"], "--seed"),
    (["bars", "--draws", "matlab"], "--draws"),
    (["bars", "--filter-seed", "3"], "--filter-seed"),
    (["bars", "--out", ""], "--out"),
    (["cameraman-beta", "--steps", "0"], "--steps"),
    (["cameraman-filters", "--lower-iterations", "-1"], "--lower-iterations"),
    (["cameraman-beta", "--draws", "numpy"], "--draws"),
    (["blorc", "--signal", "noise"], "--signal"),
    (["blorc", "--n", "0"], "--n"),
    (["blorc", "--pairs", "-1"], "--pairs"),
    (["blorc", "--sigma", "0"], "--sigma"),
    (["blorc", "--sigma", "inf"], "--sigma"),
    (["blorc", "--lr", "nan"], "--lr"),
    (["blorc", "--lr", "-1"], "--lr"),
    (["blorc", "--threshold", "-1e-3"], "--threshold"),
    (["blorc", "--batch", "0"], "--batch"),
    (["blorc", "--epochs", "1.5"], "--epochs"),
    (["blorc", "--lr-decay-epochs", "0"], "--lr-decay-epochs"),
    (["blorc", "--epochs", "3", "--lr-decay-epochs", "9"], "--lr-decay-epochs"),
    (["blorc", "--seed", "-2"], "--seed"),
    (["deblurring", "--steps", "0"], "--steps"),
    (["deblurring", "--lower-iterations", "2.5"], "--lower-iterations"),
    (["deblurring", "--seed", "-1"], "--seed"),
    (["deblurring", "--missing", "0.5"], "--missing"),
    (["deblurring", "--size", "60"], "--size"),
    (["cameraman-full", "--max-iter", "0"], "--max-iter"),
    (["cameraman-full", "--seed", "-1"], "--seed"),
    (["cameraman-full", "--steps", "3"], "--steps"),
    (["cameraman-full", "--no-bm3d", "--out", ""], "--out"),
    (["reproduce", "nothing"], "nothing"),
    (["nothing"], "nothing"),
    (["bars", "--bogus"], "--bogus"),
]


@pytest.mark.parametrize("argv,named", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_the_command_line_refuses_bad_options_before_any_work(argv, named, monkeypatch, tmp_path, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the run started although an option was bad")

    monkeypatch.setattr(store, "results_dir", lambda: tmp_path)
    for module, names in (
        (recipes, ("vertical_bars_case", "cameraman_case")),
        (cli.blorc, ("run",)),
        (full_image, ("full_image_case",)),
        (cli.deblurring, ("deblurring_case",)),
    ):
        for attribute in names:
            monkeypatch.setattr(module, attribute, no_work)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


# ----------------------------------------------------------------------------- coverage of the public API
#: public names this audit does not call, with the reason
NOT_COVERED = {
    # records returned by the library, and exceptions
    "CGResult": "a record the library returns (no input of the caller's)",
    "LowerLevelResult": "a record the library returns",
    "HypergradientResult": "a record the library returns",
    "ImplicitStep": "a record the library returns",
    "L1Result": "a record the library returns",
    "PrimalDualResult": "a record the library returns",
    "LearningHistory": "a record the library returns",
    "BlorcResult": "a record the library returns",
    "DescentResult": "a record the library returns",
    "SearchResult": "a record the library returns",
    "TrainingHistory": "a record the library fills (its append is the training loops')",
    "TrainingResult": "a record the library returns (saved and loaded: experiments.save_result/load_result)",
    "Measurement": "a record the library returns",
    "ZigguratTables": "a record the library returns (experiments.ziggurat_tables is covered)",
    "ErrorSplit": "a record the library returns (hypergrad.implicit_error_split is covered)",
    "DirectionalCheck": "a record the library returns (hypergrad.directional_check is covered)",
    "ConvergenceWarning": "an exception class",
    "NonFiniteError": "an exception class",
    # abstract bases: their subclasses are covered
    "ForwardModel": "abstract base (Identity, CircularBlur, PixelMask are covered)",
    "Penalty": "abstract base (CornerRounded1Norm, LogSquare, Quadratic are covered)",
    "UpperLoss": "abstract base (SquaredErrorLoss is covered)",
    "Quadratic": "takes no argument",
    "cameraman": "takes no argument",
}
#: public methods this audit does not call: the inner-loop kernels.  They run once per iteration on arrays
#: the public function validated at its entry; a check per call would be a pass over the data per iteration
#: (the policy of util.validation: checks at entries, loops test only the scalars they compute)
KERNELS_NOT_AUDITED = {
    "Penalty.value/derivative/second_derivative": "elementwise φ, φ̇, φ̈ of z = Cx inside every gradient",
    "FilterBankOperator.forward/adjoint/adjoint_of_*/scaled_gram_*/mixed_terms/lag_correlation": "C x and C'v",
    "AnalysisOperator.forward/adjoint/parameter_gradient": "Ωx and Ω'd inside every Chambolle–Pock step",
    "HessianOperator.__call__": "one Hessian product per CG iteration (the operator's inputs are checked)",
}
#: the book layer (layer 7): figures, widgets and self-checks, audited in tests/lib/test_viz.py and test_checks.py
BOOK_REASON = (
    "book layer: figure, widget and self-check helpers fed the chapters' own computed data; "
    "their argument checks are tested in tests/lib/test_viz.py and tests/lib/test_checks.py, not audited here"
)
#: the command line's ``main`` is audited by test_the_command_line_refuses_bad_options_before_any_work
ALSO_COVERED = {"main", "load_result", "save_result"}

LAYER_PACKAGES = ["bilevel_lib", *(f"bilevel_lib.{layer}" for layer in bl.LAYERS)]


def public_callables() -> dict[str, str]:
    """Every exported function and class, by name → the package that exports it first."""
    found: dict[str, str] = {}
    for package in LAYER_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.ismodule(value) or not callable(value):
                continue
            found.setdefault(name, package)
    return found


def unaudited() -> list[str]:
    """The public functions and classes neither covered by a row of the audit nor listed in NOT_COVERED."""
    covered = {s.name.split(".", 1)[1].split("(")[0] for s in SPECS}
    covered |= {name.split(".", 1)[1].split("(")[0] for name in ITERATIVE} | ALSO_COVERED
    return [
        f"{package}.{name}"
        for name, package in sorted(public_callables().items())
        if name not in covered and name not in NOT_COVERED and package != "bilevel_lib.book"  # BOOK_REASON
    ]


def test_every_public_function_is_audited_or_listed():
    missing = unaudited()
    assert not missing, f"public functions neither audited nor listed in NOT_COVERED: {missing}"
    stale = sorted(set(NOT_COVERED) - set(public_callables()))
    assert not stale, f"NOT_COVERED lists names that are no longer public: {stale}"


def test_a_new_public_function_fails_the_coverage_check(monkeypatch):
    def new_function(x):
        """A public function nobody audited."""
        return x

    monkeypatch.setattr(pb, "new_function", new_function, raising=False)
    monkeypatch.setattr(pb, "__all__", [*pb.__all__, "new_function"])
    assert unaudited() == ["bilevel_lib.problem.new_function"]


def test_the_audit_has_several_hundred_cases():
    assert len(CASES) + len(ITERATIVE) + len(CLI_CASES) >= 300
