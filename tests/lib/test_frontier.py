"""The frontier sweep (experiments/frontier.py): every estimator agrees with the tight reference within its
knob's expected accuracy; the references agree with their independent checks; the sweep's table, its
saved form and the Pareto front."""

import numpy as np
import pytest

from bilevel_lib.experiments import frontier, store

#: (estimator, tight knob, the relative error it must reach): tight settings ≤ 1e-6, except the
#: methods whose accuracy is limited by their own knob (finite differences: O(h²); the smoothed ℓ1
#: IFT: the smoothing ε; CVXPY's iterative derivative modes: their inner tolerance)
TIGHT = [
    ("implicit", 1e-10, 1e-6),
    ("kkt", 1e-12, 1e-6),
    ("unrolled-reverse", 1000, 1e-6),
    ("unrolled-forward", 600, 1e-6),  # R = 81 tangents: on the running example only (see below)
    ("truncated", 1000, 1e-6),
    ("maid-inexact", 1e-8, 1e-6),
    ("finite-differences", 1e-4, 1e-4),
    ("l1-closed-form", 1e-10, 1e-10),
    ("l1-sign-split", 1e-10, 1e-10),
    ("cvxpy-dense", 1e-9, 1e-6),
    ("cvxpy-lsqr", 1e-9, 1e-4),
    ("cvxpy-lsmr", 1e-9, 1e-4),
    ("smoothed-l1-ift", 1e-6, 1e-2),
    ("l1-finite-differences", 1e-6, 1e-7),
]


@pytest.fixture(scope="module")
def problems():
    return {
        "running-example": frontier.make_problem("running-example", size=10),
        "blur": frontier.make_problem("blur", size=10),
        "l1-1d": frontier.make_problem("l1-1d", size=16),
    }


def error_of(problem, estimator, knob):
    result = frontier.estimator_call(problem, estimator, knob)()
    flat = np.ravel(result.gradient) if problem.kind == "l1" else result.flat(frontier.PARTS)
    return frontier.relative_error(flat, problem.reference), result


def test_the_references_agree_with_their_independent_checks(problems):
    for name in ("running-example", "blur"):
        info = problems[name].reference_info
        assert info["kkt_agreement"] < 1e-11 and info["lower_residual"] < 1e-13 and info["cg_residual"] < 1e-14
    info = problems["l1-1d"].reference_info
    assert info["sign_split_agreement"] < 1e-11 and info["finite_difference_agreement"] < 1e-7


@pytest.mark.parametrize("estimator, knob, accuracy", TIGHT, ids=[case[0] for case in TIGHT])
def test_every_estimator_agrees_with_the_reference_at_its_tight_setting(problems, estimator, knob, accuracy):
    kind = frontier.ESTIMATORS[estimator][0]
    names = ("running-example", "blur") if kind == "smooth" else ("l1-1d",)
    if estimator == "unrolled-forward":  # the same numbers as the reverse mode, R times the products: one problem
        names = ("running-example",)
    for name in names:
        error, result = error_of(problems[name], estimator, knob)
        assert error <= accuracy, (name, estimator, error)
        if estimator == "maid-inexact":
            assert result.error_bound >= error * problems[name].reference_info["norm"]


@pytest.mark.parametrize(
    "estimator, knobs",
    [
        ("implicit", (1e-2, 1e-5, 1e-8)),
        ("unrolled-reverse", (10, 100, 1000)),
        ("truncated", (1, 30, 1000)),
        ("maid-inexact", (1e-2, 1e-5, 1e-8)),
        ("smoothed-l1-ift", (1e-2, 1e-4, 1e-6)),
        ("cvxpy-dense", (1e-4, 1e-9)),
    ],
)
def test_the_error_falls_as_the_knob_tightens(problems, estimator, knobs):
    name = "l1-1d" if frontier.ESTIMATORS[estimator][0] == "l1" else "running-example"
    errors = [error_of(problems[name], estimator, knob)[0] for knob in knobs]
    assert all(later < earlier / 1.5 for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 100


def test_the_jacobian_free_gradient_is_a_descent_direction_but_biased(problems):
    """Its knob T does not buy accuracy: the bias of replacing (I − ∇ₓΨ)⁻¹ by I stays (review Sec. 7.2)."""
    for name in ("running-example", "blur"):
        problem = problems[name]
        errors = []
        for T in (100, 1000):
            error, result = error_of(problem, "jacobian-free", T)
            assert float(result.flat(frontier.PARTS) @ problem.reference) > 0
            errors.append(error)
        assert min(errors) > 0.1 and errors[1] == pytest.approx(errors[0], rel=0.2)


def test_an_estimator_is_refused_on_a_problem_it_does_not_apply_to(problems):
    with pytest.raises(ValueError, match="estimator 'cvxpy-dense' applies to l1 problems, not running-example"):
        frontier.estimator_call(problems["running-example"], "cvxpy-dense", 1e-6)
    with pytest.raises(ValueError, match="estimator must be one of implicit, kkt"):
        frontier.estimator_call(problems["running-example"], "newton", 1e-6)
    with pytest.raises(ValueError, match="name must be one of running-example, blur, l1-1d; got 'x'"):
        frontier.make_problem("x")
    with pytest.raises(ValueError, match=r"size must be an integer in \[4, 45\]"):
        frontier.make_problem("blur", size=100)


# ----------------------------------------------------------------------------- the sweep, saved and loaded
@pytest.fixture(scope="module")
def sweep():
    return frontier.run_frontier(
        ("running-example", "l1-1d"),
        ("implicit", "unrolled-reverse", "maid-inexact", "l1-closed-form", "smoothed-l1-ift"),
        knobs={"implicit": (1e-3, 1e-9), "unrolled-reverse": (10, 300), "maid-inexact": (1e-6,)},
        size=8,
        l1_size=12,
    )


def test_the_sweep_has_a_row_per_run_with_its_measurements(sweep):
    assert sweep.table.shape == (2 + 2 + 1 + 2 + 3, len(frontier.COLUMNS))
    rows = sweep.rows("running-example", "implicit")
    assert list(rows[:, frontier.COLUMNS.index("knob")]) == [1e-3, 1e-9]
    error = rows[:, frontier.COLUMNS.index("error")]
    assert error[1] < 1e-6 < error[0]
    assert np.all(sweep.column("seconds") > 0) and np.all(sweep.column("peak_bytes") > 0)
    maid = sweep.rows("running-example", "maid-inexact")[0]
    assert maid[frontier.COLUMNS.index("error_bound")] >= maid[frontier.COLUMNS.index("error")]
    assert np.isnan(rows[:, frontier.COLUMNS.index("error_bound")]).all()
    assert [r["estimator"] for r in sweep.records("l1-1d")] == ["l1-closed-form"] * 2 + ["smoothed-l1-ift"] * 3


def test_the_sweep_saves_and_loads_whole(sweep, tmp_path):
    record = dict(kind="frontier", **store.provenance("test", sweep.seconds_total), settings=sweep.settings, metrics={})
    store.write(tmp_path / "frontier", sweep.arrays(), record)
    loaded = frontier.FrontierSweep.from_stored(store.load(tmp_path / "frontier"))
    assert loaded.problems == sweep.problems and loaded.estimators == sweep.estimators
    np.testing.assert_array_equal(loaded.table, sweep.table)
    assert loaded.references["running-example"]["kkt_agreement"] < 1e-11


def test_the_pareto_front_keeps_exactly_the_undominated_points():
    error = np.array([1.0, 0.5, 0.5, 0.1, 0.2, 1e-3])
    cost = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 10.0])
    np.testing.assert_array_equal(frontier.pareto_front(error, cost), [True, True, False, True, False, True])
    with pytest.raises(ValueError, match="error and cost must be 1-D arrays of one length"):
        frontier.pareto_front(error, cost[:3])


def test_bad_sweep_arguments_are_refused():
    with pytest.raises(ValueError, match="problems: each must be one of"):
        frontier.run_frontier(("nope",))
    with pytest.raises(ValueError, match="knobs: unknown estimators newton"):
        frontier.run_frontier(knobs={"newton": (1,)})
