"""The accuracy–cost–memory frontier of every hypergradient estimator (Ch. "Choosing a hypergradient").

Three fixed problems, every estimator of the book on each, each estimator over its own accuracy knob:

* ``"running-example"``: the review's (Ex) on small cameraman patches (J = 2 patches of 24×24 cut
  from the three of App. D.2, σ = 25/255), the 8 non-constant 3×3 DCT filters, the corner-rounded
  1-norm (ε = 0.01), β0 = −3, β_k = 0; R = 81 hyperparameters (β0, β_k, taps), A = I.
* ``"blur"``: the same patches blurred by a 3×3 Gaussian (width 0.6, σ_min(A)² ≈ 0.0125) plus noise,
  A the blur: a non-identity forward model with a much smaller strong-convexity modulus.
* ``"l1-1d"``: the exact ℓ1 lower level min ½‖x − y‖² + ‖W x‖₁ of BLORC with W = 0.1 D (D the
  24×23 first differences), J = 4 piecewise-constant signals of length 24, σ = 0.1, gradient in W.

The smooth problems are swept with the implicit estimator (lower level and CG to the same
tolerance τ, a cold start A'y), KKT (dense), unrolled OGM in reverse and forward mode over T,
truncated back-propagation over k (T = 1000), Jacobian-free over T, MAID's inexact estimate over
ε = δ (with its bound) and central finite differences over the step h (lower level to 1e-11).  The
ℓ1 problem with BLORC's closed form (Lemma 1 and the sign-split KKT route), the smoothed ℓ1 IFT
over its ε, CVXPY/diffcp in its three derivative modes over SCS's ε, and finite differences of the
exact solve over h.

References (computed far tighter than any estimator, :func:`smooth_reference`,
:func:`l1_reference`): for the smooth problems the implicit gradient with the lower level solved to
‖∇ₓΦ‖/√N < 1e-13 and CG to a relative residual 1e-14, checked against the dense KKT solve at the
same x̂ (they agree to ~1e-14); for the ℓ1 problem the closed form after an exact solve (tolerance
1e-12, verified active set), checked against the sign-split route and against finite differences.

Each run records the relative error ‖g − g_ref‖/‖g_ref‖ over all of γ (or W), the wall time
(shortest of ``repeat`` runs, after a warm-up call so compilation is not timed), the peak of the
memory allocated (``tracemalloc``, :func:`~bilevel_lib.experiments.profiling.measure`), the work
(lower-level iterations, CG iterations, products) and, for MAID, the bound.  :func:`run_frontier` is
the sweep, ``python -m bilevel_lib frontier`` saves it to ``results/frontier.{npz,json}``, and
:func:`pareto_front` marks the runs no other run beats in both error and cost.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..hypergrad import implicit, inexact, unrolling
from ..hypergrad.implicit import gradient_angle_degrees
from ..problem import data
from ..problem.cost import LowerLevelCost
from ..problem.filters import dct_filters
from ..problem.forward_models import CircularBlur, gaussian_kernel
from ..problem.losses import SquaredErrorLoss
from ..problem.params import PARTS, Hyperparameters
from ..problem.penalties import CornerRounded1Norm
from ..util.progress import progress_bar
from .profiling import measure

__all__ = [
    "PROBLEMS",
    "ESTIMATORS",
    "FrontierProblem",
    "FrontierSweep",
    "make_problem",
    "smooth_reference",
    "l1_reference",
    "estimator_call",
    "run_frontier",
    "pareto_front",
    "relative_error",
    "QUICK_KNOBS",
    "COLUMNS",
]

#: The problems of the sweep, by name, with what they are
PROBLEMS = {
    "running-example": "2-D (Ex): 2 cameraman patches 24×24, 8 DCT 3×3 filters, CR1N ε = 0.01, A = I",
    "blur": "2-D (Ex) with A a 3×3 Gaussian blur (width 0.6): σ_min(A)² ≈ 0.0125",
    "l1-1d": "1-D exact ℓ1: 4 piecewise-constant signals, n = 24, W = 0.1·D (first differences)",
}

#: Every estimator by name, with the kind of problem it applies to, its knob's name, the knob's default values and a description
ESTIMATORS = {
    "implicit": ("smooth", "τ (lower_tol = cg_tol)", (1e-2, 1e-4, 1e-6, 1e-8, 1e-10), "IFT + CG, eq. (4.8)"),
    "kkt": ("smooth", "lower_tol", (1e-4, 1e-8, 1e-12), "dense KKT solve, Sec. 4.2.2"),
    "unrolled-reverse": ("smooth", "T", (10, 30, 100, 300, 1000), "back-propagation through T OGM steps"),
    "unrolled-forward": ("smooth", "T", (10, 30, 100, 300), "forward mode through T OGM steps"),
    "truncated": ("smooth", "k (T = 1000)", (1, 10, 30, 100, 300), "last k of T = 1000 OGM steps"),
    "jacobian-free": ("smooth", "T", (10, 100, 1000), "one step at x_T (Fung et al.)"),
    "maid-inexact": ("smooth", "ε = δ", (1e-2, 1e-4, 1e-6, 1e-8), "MAID's inexact estimate with its bound"),
    "finite-differences": ("smooth", "h", (1e-2, 1e-4, 1e-6), "central differences, lower level to 1e-11"),
    "l1-closed-form": ("l1", "solver tol", (1e-6, 1e-10), "BLORC Lemma 1 after an exact solve"),
    "l1-sign-split": ("l1", "solver tol", (1e-10,), "KKT of the sign-split problem (4.13)"),
    "smoothed-l1-ift": ("l1", "ε", (1e-2, 1e-4, 1e-6), "IFT of the corner-rounded problem"),
    "cvxpy-dense": ("l1", "SCS ε", (1e-4, 1e-6, 1e-9), "CVXPY/diffcp, dense derivative"),
    "cvxpy-lsqr": ("l1", "SCS ε", (1e-4, 1e-6, 1e-9), "CVXPY/diffcp, LSQR derivative"),
    "cvxpy-lsmr": ("l1", "SCS ε", (1e-4, 1e-6, 1e-9), "CVXPY/diffcp, LSMR derivative"),
    "l1-finite-differences": ("l1", "h", (1e-4, 1e-6), "central differences of the exact solve"),
}

#: The knobs of a scaled-down sweep, fewer values of the cheaper estimators (``frontier --quick``)
QUICK_KNOBS = {
    "implicit": (1e-2, 1e-5, 1e-8),
    "kkt": (1e-8,),
    "unrolled-reverse": (10, 100, 1000),
    "unrolled-forward": (10, 100),
    "truncated": (1, 10, 100),
    "jacobian-free": (10, 1000),
    "maid-inexact": (1e-2, 1e-5, 1e-8),
    "finite-differences": (1e-4,),
}

_TRUNCATION_T = 1000


@dataclass
class FrontierProblem:
    """One problem of the sweep: its name, kind ("smooth" or "l1"), what an estimator needs, its reference.

    For a smooth problem ``cost``, ``params``, ``loss``; for the ℓ1 problem ``y``, ``truth``, ``W``.
    ``reference`` is the flat reference gradient and ``reference_info`` says how it was checked.
    """

    name: str
    kind: str
    cost: LowerLevelCost | None = None
    params: Hyperparameters | None = None
    loss: SquaredErrorLoss | None = None
    y: np.ndarray | None = None
    truth: np.ndarray | None = None
    W: np.ndarray | None = None
    reference: np.ndarray | None = field(default=None, repr=False)
    reference_info: dict = field(default_factory=dict)


def make_problem(name: str, *, size: int = 24, seed: int = 0, reference: bool = True) -> FrontierProblem:
    """Build the problem ``name`` of :data:`PROBLEMS` (and its reference unless ``reference=False``).

    ``size`` is the side of the image patches (2-D) or the signal length (ℓ1); ``seed`` the noise seed.
    """
    if name not in PROBLEMS:
        raise ValueError(f"name must be one of {', '.join(PROBLEMS)}; got {name!r}")
    if isinstance(size, bool) or int(size) != size or not 4 <= size <= 45:
        raise ValueError(f"size must be an integer in [4, 45] (small problems: KKT is dense); got {size!r}")
    size = int(size)
    if name == "l1-1d":
        from ..l1.blorc import finite_difference_matrix

        rng = np.random.default_rng(seed)
        truth = data.piecewise_constant_1d(size, 4, rng, n_jumps=3)
        y = data.add_noise(truth, 0.1, rng)
        problem = FrontierProblem(name, "l1", y=y, truth=truth, W=0.1 * finite_difference_matrix(size))
        if reference:
            problem.reference, problem.reference_info = l1_reference(problem)
        return problem
    truth = data.cameraman_patches()[:2, :size, :size]
    forward_model = None
    measured = truth
    if name == "blur":
        forward_model = CircularBlur(gaussian_kernel(3, 0.6), (size, size))
        measured = forward_model.forward(truth)
    y = data.add_noise(measured, 25 / 255, rng=seed)
    cost = LowerLevelCost(y, CornerRounded1Norm(0.01), forward_model)
    params = Hyperparameters.from_filters(dct_filters(3), beta0=-3.0)
    problem = FrontierProblem(name, "smooth", cost=cost, params=params, loss=SquaredErrorLoss(truth))
    if reference:
        problem.reference, problem.reference_info = smooth_reference(problem)
    return problem


def relative_error(estimate, reference) -> float:
    """‖estimate − reference‖ / ‖reference‖ of the flattened vectors."""
    estimate, reference = np.ravel(np.asarray(estimate, float)), np.ravel(np.asarray(reference, float))
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate has {estimate.size} entries, the reference {reference.size}")
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def smooth_reference(problem: FrontierProblem) -> tuple[np.ndarray, dict]:
    """The implicit gradient at ‖∇ₓΦ‖/√N < 1e-13 with CG to 1e-14, and its distance to dense KKT at that x̂."""
    cost, params, loss = problem.cost, problem.params, problem.loss
    tight = implicit.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-13, lower_max_iter=500_000, cg_tol=1e-14, cg_max_iter=50_000
    )
    if not tight.converged:
        raise RuntimeError(f"the reference of {problem.name} did not converge: {tight.message}")
    kkt = implicit.kkt_hypergradient(cost, params, loss, tight.x)
    reference = tight.flat(PARTS)
    return reference, dict(
        how="implicit, lower level to ‖∇ₓΦ‖/√N < 1e-13, CG to relative residual 1e-14; checked against dense KKT",
        lower_residual=tight.diagnostics["lower_residual"],
        cg_residual=tight.diagnostics["cg_residual"],
        kkt_agreement=relative_error(kkt.flat(PARTS), reference),
        norm=float(np.linalg.norm(reference)),
    )


def l1_reference(problem: FrontierProblem) -> tuple[np.ndarray, dict]:
    """BLORC's closed form after an exact solve (tol 1e-12), checked against sign-split KKT and differences."""
    from ..l1 import gradients

    y, truth, W = problem.y, problem.truth, problem.W
    exact = gradients.l1_hypergradient(y, truth, W, tol=1e-12)
    if not exact.converged:
        raise RuntimeError(f"the reference of {problem.name} did not converge: {exact.message}")
    split = gradients.l1_hypergradient(y, truth, W, tol=1e-12, route="sign-split")
    differences = gradients.finite_difference_l1_hypergradient(y, truth, W, step=1e-6)
    reference = np.ravel(exact.gradient)
    return reference, dict(
        how="BLORC closed form after an exact solve (tol 1e-12, verified active set); checked against "
        "the sign-split KKT route and central differences (h = 1e-6)",
        sign_split_agreement=relative_error(split.gradient, reference),
        finite_difference_agreement=relative_error(differences.gradient, reference),
        norm=float(np.linalg.norm(reference)),
    )


def estimator_call(problem: FrontierProblem, estimator: str, knob):
    """A callable without arguments that runs ``estimator`` at ``knob`` on ``problem`` (a HypergradientResult)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    if ESTIMATORS[estimator][0] != problem.kind:
        raise ValueError(f"estimator {estimator!r} applies to {ESTIMATORS[estimator][0]} problems, not {problem.name}")
    if problem.kind == "l1":
        from ..l1 import gradients

        y, truth, W = problem.y, problem.truth, problem.W
        if estimator == "l1-closed-form":
            return lambda: gradients.l1_hypergradient(y, truth, W, tol=knob, warn=False)
        if estimator == "l1-sign-split":
            return lambda: gradients.l1_hypergradient(y, truth, W, tol=knob, route="sign-split", warn=False)
        if estimator == "smoothed-l1-ift":
            return lambda: gradients.smoothed_hypergradient(y, truth, W, knob, max_iter=500, warn=False)
        if estimator == "l1-finite-differences":
            return lambda: gradients.finite_difference_l1_hypergradient(y, truth, W, step=knob, warn=False)
        from ..l1 import cvx

        mode = estimator.removeprefix("cvxpy-")
        program = cvx.L1DenoisingProgram(y.shape[1], W.shape[0], eps=knob, mode=mode)  # compiled once, not timed
        return lambda: cvx.cvx_l1_hypergradient(y, truth, W, program=program)
    cost, params, loss = problem.cost, problem.params, problem.loss
    if estimator == "implicit":
        return lambda: implicit.implicit_hypergradient(
            cost, params, loss, lower_tol=knob, cg_tol=knob, lower_max_iter=200_000, cg_max_iter=20_000, warn=False
        )
    if estimator == "kkt":
        return lambda: implicit.kkt_hypergradient(cost, params, loss, lower_tol=knob)
    if estimator == "unrolled-reverse":
        return lambda: unrolling.reverse_mode_hypergradient(cost, params, loss, int(knob), solver="ogm")
    if estimator == "unrolled-forward":
        return lambda: unrolling.forward_mode_hypergradient(cost, params, loss, int(knob), solver="ogm")
    if estimator == "truncated":
        return lambda: unrolling.truncated_hypergradient(cost, params, loss, _TRUNCATION_T, int(knob), solver="ogm")
    if estimator == "jacobian-free":
        return lambda: unrolling.jacobian_free_hypergradient(cost, params, loss, int(knob), solver="ogm")
    if estimator == "maid-inexact":
        return lambda: inexact.inexact_hypergradient(cost, params, loss, knob, knob, parts=PARTS)
    return lambda: implicit.finite_difference_hypergradient(cost, params, loss, step=knob, lower_tol=1e-11)


#: the numeric columns of a sweep, in the order of the columns of ``FrontierSweep.table``
COLUMNS = (
    "problem",
    "estimator",
    "knob",
    "error",
    "angle",
    "seconds",
    "peak_bytes",
    "lower_iterations",
    "cg_iterations",
    "products",
    "error_bound",
    "converged",
)


@dataclass
class FrontierSweep:
    """The sweep: one row per (problem, estimator, knob), columns :data:`COLUMNS`.

    ``problem`` and ``estimator`` are indices into ``problems`` and ``estimators``; ``error`` is
    ‖g − g_ref‖/‖g_ref‖, ``angle`` the angle to g_ref in degrees (review Fig. 5.1); ``error_bound``
    is MAID's bound relative to ‖g_ref‖ (NaN for the others); ``references`` holds how each
    reference was computed and checked; ``seconds_total`` the sweep's run time.
    """

    problems: tuple
    estimators: tuple
    table: np.ndarray
    references: dict
    seconds_total: float = 0.0
    settings: dict = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One column of the table by its name (see :data:`COLUMNS`)."""
        if name not in COLUMNS:
            raise ValueError(f"name must be one of {', '.join(COLUMNS)}; got {name!r}")
        return self.table[:, COLUMNS.index(name)]

    def rows(self, problem: str, estimator: str | None = None) -> np.ndarray:
        """The rows of one problem (and one estimator), ordered as run (by knob)."""
        if problem not in self.problems:
            raise ValueError(f"problem must be one of {', '.join(self.problems)}; got {problem!r}")
        keep = self.column("problem") == self.problems.index(problem)
        if estimator is not None:
            if estimator not in self.estimators:
                raise ValueError(f"estimator must be one of {', '.join(self.estimators)}; got {estimator!r}")
            keep &= self.column("estimator") == self.estimators.index(estimator)
        return self.table[keep]

    def records(self, problem: str) -> list[dict]:
        """The rows of one problem as dicts (names instead of indices), for tables."""
        return [
            dict(zip(COLUMNS, row), problem=problem, estimator=self.estimators[int(row[1])])
            for row in self.rows(problem)
        ]

    def arrays(self) -> dict:
        """The numeric arrays to save (``table``)."""
        return dict(table=self.table)

    @classmethod
    def from_stored(cls, stored) -> FrontierSweep:
        """The sweep back from a :class:`~bilevel_lib.experiments.store.StoredResult` of kind ``"frontier"``."""
        settings = stored.record["settings"]
        return cls(
            tuple(settings["problems"]),
            tuple(settings["estimators"]),
            np.asarray(stored.arrays["table"], float),
            dict(settings["references"]),
            float(stored.record["seconds"]),
            dict(settings),
        )


def run_frontier(
    problems=tuple(PROBLEMS),
    estimators=tuple(ESTIMATORS),
    *,
    knobs: dict | None = None,
    size: int = 24,
    l1_size: int = 24,
    seed: int = 0,
    repeat: int = 1,
    memory: bool = True,
    warmup: bool = True,
    progress: bool = False,
) -> FrontierSweep:
    """Run every estimator of ``estimators`` over its knob on every problem of ``problems`` it applies to.

    ``knobs`` overrides the knob values of some estimators (e.g. :data:`QUICK_KNOBS`); ``size`` is the
    patch side of the 2-D problems, ``l1_size`` the signal length of the ℓ1 problem.  With ``warmup``
    each estimator is called once untimed on each problem (compilation, FFT plans), then every run
    is timed ``repeat`` times (shortest kept) and, with ``memory``, run once more under
    ``tracemalloc``.  Returns a :class:`FrontierSweep`.
    """
    start = time.perf_counter()
    problems, estimators = tuple(problems), tuple(estimators)
    for name in problems:
        if name not in PROBLEMS:
            raise ValueError(f"problems: each must be one of {', '.join(PROBLEMS)}; got {name!r}")
    for name in estimators:
        if name not in ESTIMATORS:
            raise ValueError(f"estimators: each must be one of {', '.join(ESTIMATORS)}; got {name!r}")
    knobs = dict(knobs or {})
    unknown = [name for name in knobs if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"knobs: unknown estimators {', '.join(unknown)}")
    built = [make_problem(name, size=l1_size if name == "l1-1d" else size, seed=seed) for name in problems]
    plan = [
        (p, problem, e, knob)
        for p, problem in enumerate(built)
        for e, name in enumerate(estimators)
        if ESTIMATORS[name][0] == problem.kind
        for knob in knobs.get(name, ESTIMATORS[name][2])
    ]
    rows = []
    with progress_bar(len(plan), progress, "frontier") as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a loose knob misses its tolerance by design; the error column says how much
        warmed = set()
        for p, problem, e, knob in plan:
            call = estimator_call(problem, estimators[e], knob)
            if warmup and (p, e) not in warmed:
                call()  # once per estimator and problem, not timed: compilation, FFT plans, caches
                warmed.add((p, e))
            measured = measure(call, repeat=repeat, memory=memory)
            result = measured.result
            flat = np.ravel(result.gradient) if problem.kind == "l1" else result.flat(PARTS)
            bound = result.diagnostics.get("error_bound", np.nan) if estimators[e] == "maid-inexact" else np.nan
            rows.append(
                [
                    p,
                    e,
                    float(knob),
                    relative_error(flat, problem.reference),
                    gradient_angle_degrees(flat, problem.reference) if np.any(flat) else 90.0,
                    measured.seconds,
                    measured.peak_bytes,
                    result.lower_iterations,
                    result.cg_iterations,
                    result.products,
                    float(bound) / problem.reference_info["norm"],
                    float(result.converged),
                ]
            )
            bar.update(1)
    settings = dict(
        problems=list(problems),
        estimators=list(estimators),
        knob_names={name: ESTIMATORS[name][1] for name in estimators},
        descriptions={name: ESTIMATORS[name][3] for name in estimators},
        problem_descriptions={name: PROBLEMS[name] for name in problems},
        references={problem.name: problem.reference_info for problem in built},
        size=size,
        l1_size=l1_size,
        seed=seed,
        repeat=repeat,
        memory=memory,
        warmup=warmup,
        columns=list(COLUMNS),
    )
    return FrontierSweep(
        problems,
        estimators,
        np.array(rows, dtype=float).reshape(-1, len(COLUMNS)),
        settings["references"],
        time.perf_counter() - start,
        settings,
    )


def pareto_front(error, cost) -> np.ndarray:
    """Boolean mask of the points no other point beats: none has both error ≤ and cost ≤ with one strict.

    Both arguments are 1-D arrays of the same length (e.g. relative error and seconds of one problem).
    """
    error, cost = np.asarray(error, float), np.asarray(cost, float)
    if error.ndim != 1 or error.shape != cost.shape:
        raise ValueError(f"error and cost must be 1-D arrays of one length; got shapes {error.shape} and {cost.shape}")
    keep = np.ones(error.size, dtype=bool)
    for i in range(error.size):
        dominated = (error <= error[i]) & (cost <= cost[i]) & ((error < error[i]) | (cost < cost[i]))
        keep[i] = not dominated.any()
    return keep
