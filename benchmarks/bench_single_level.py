"""Closed-form (BLORC) gradients vs CVXPY/diffcp, in the spirit of BLORC's Table 1, and 2-D filters.

Run:  .venv/bin/python benchmarks/bench_single_level.py [--quick] [--pairs P] [--filters-only]

Prints, in one run:
* for n = 36, 64, 128, 256 with W = I (Table 1's setting) and 1-D piecewise-constant pairs
  (peak 1, σ = 0.1): the median time of one gradient ∇_W ½‖x* − x_true‖² by
  (a) the exact dual solver + Lemma 1 (``single_level.l1_hypergradient``), (b) CVXPY/diffcp
  (``solve(requires_grad=True)`` + ``backward()``, SCS eps 1e-8, diffcp mode "dense", problem
  compiled once beforehand), and (c) the implicit gradient of the corner-rounded problem (ε = 1e-2,
  dense Newton); the time ratio CVXPY / exact (target ≥ 10×), and each one's relative error against
  central finite differences of the exactly solved problem (step 1e-6; all n² entries for n ≤ 64,
  400 random entries above) (target ≤ 1e-8 for the closed form);
* 2-D filters, corner-rounded 1-norm (ε = 0.01), 3×3 filters, cameraman crops: the library's
  implicit gradient (``hypergrad.implicit_hypergradient``: OGM + CG + mixed product) against
  CVXPY's ``backward()`` on the *same* smoothed problem, for 16×16 with 2 filters and 32×32 with
  4 filters (target ≥ 1000× on the larger; solve + gradient in all, issue 18: ≥ 200× at 32×32 and ≥ 50×
  at 16×16, printed with the IFT timed both with OGM's compiled loop, the default, and its Python loop).  The library's "gradient step", the peer of
  ``backward()``, is timed from x̂ on: the Hessian of eq. 4.10 (its φ̈ and, if used, its sparse
  assembly), CG to a relative residual of 1e-10, and the mixed product; in five variants (Hessian
  products through the filter bank, or assembled as a scipy sparse matrix, both with CG's Python
  loop; or assembled as a stencil with compiled products and CG loop (numba), the default; and
  the stencil with circulant- or banded-Cholesky-preconditioned CG), each with its CG iterations
  and its gradient's error against a dense (LAPACK) solve of the Hessian system.
  diffcp modes: "lsqr" (CVXPY's default; iterative, its gradient is only good to ~1e-6 here),
  "lsmr" (iterative with tight tolerances, ~1e-8) and "dense" (a dense factorisation of the
  derivative matrix; run at 16×16 only — at 32×32 that matrix has 27,649 rows, 6.1 GB, so its time
  is estimated by n³ scaling from the 16×16 run, and labelled as an estimate).  For each mode the
  library's default step is also timed at the peer's accuracy: the loosest CG tolerance (1e-10 …
  1e-3) whose gradient error against the dense solve is at most CVXPY's.  ``--quick`` skips the
  32×32 CVXPY cases.

All linear algebra runs on one BLAS thread (threadpoolctl), for both sides; the machine may be
shared, so treat times as indicative and compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import bilevel_lib as bl
from bilevel_lib import l1 as sl
from bilevel_lib.experiments import blorc
from bilevel_lib.l1 import cvx
from bilevel_lib.problem import data, filters
from bilevel_lib.problem.metrics import relative_error
from bilevel_lib.solvers import lower
from bilevel_lib.solvers.preconditioners import make_preconditioner


def timed(function, repeat: int):
    """(median seconds, last result) of ``repeat`` calls after one warm-up call."""
    result = function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def table1(pairs: int, repeat: int) -> None:
    print(f"Gradient for one pair, W = I (BLORC Table 1 setting); medians over {pairs} pairs × {repeat} repeats")
    print("    n   exact+Lemma 1   CVXPY/diffcp   ratio   smoothed IFT |  rel. error vs FD: exact   CVXPY    smoothed")
    for n in (36, 64, 128, 256):
        rng = np.random.default_rng(n)
        truths = blorc.piecewise_signals(n, pairs, rng)
        noisy = data.add_noise(truths, 0.1, rng)
        W = np.eye(n)
        program = cvx.L1DenoisingProgram(n, n, eps=1e-8, mode="dense")
        program.gradient(noisy[0], truths[0], W)  # compile the DPP program once
        rows = []
        for truth, y in zip(truths, noisy):
            t_exact, exact = timed(lambda: sl.l1_hypergradient(y, truth, W), repeat)
            solve = exact.state["solve"]
            t_cvx, reference = timed(lambda: program.gradient(y, truth, W), max(1, repeat // 3))
            t_smooth, smooth = timed(lambda: sl.smoothed_hypergradient(y, truth, W, eps=1e-2), max(1, repeat // 3))
            if n <= 64:
                entries = np.unravel_index(np.arange(n * n), (n, n))
            else:
                entries = np.unravel_index(rng.choice(n * n, 400, replace=False), (n, n))
            fd = sl.finite_difference_l1_gradient(y, truth, W, entries=entries, step=1e-6, d0=solve.d)
            pick = lambda g: np.asarray(g)[entries]
            rows.append(
                (
                    t_exact,
                    t_cvx,
                    t_smooth,
                    relative_error(pick(exact.gradient), fd),
                    relative_error(pick(reference.gradient), fd),
                    relative_error(pick(smooth.gradient), fd),
                )
            )
        t_exact, t_cvx, t_smooth, e_exact, e_cvx, e_smooth = (statistics.median(c) for c in zip(*rows))
        ratio = t_cvx / t_exact
        print(
            f"  {n:3d}   {1e3 * t_exact:9.2f} ms   {1e3 * t_cvx:9.1f} ms   {ratio:5.1f}×  {1e3 * t_smooth:8.1f} ms"
            f"  |  {e_exact:9.1e}  {e_cvx:8.1e}  {e_smooth:8.1e}"
            f"   [ratio ≥ 10×: {'meets' if ratio >= 10 else 'MISSES'}; exact error ≤ 1e-8: "
            f"{'meets' if e_exact <= 1e-8 else 'MISSES'}]"
        )


def derivative_matrix_side(program) -> int:
    """Rows of diffcp's derivative matrix for a CVXPY program: n + m + 1 of its cone program."""
    import cvxpy as cp

    A = program.problem.get_problem_data(cp.SCS)[0]["A"]
    return A.shape[0] + A.shape[1] + 1


def gradient_step(cost, params, x, rhs, method="auto", preconditioner=None, tol=1e-10):
    """The library's gradient step at x̂: the Hessian (review eq. 4.10) at x̂, CG on ∇ₓₓΦ q = ∇ₓℓ to a
    relative residual of ``tol``, and the mixed product (∇ₓγΦ)'q; returns (gradient, CG result)."""
    hessian = cost.hessian_operator(x, params, method=method)
    cg = bl.conjugate_gradient(hessian, rhs, tol=tol, preconditioner=make_preconditioner(preconditioner, hessian))
    return cost.mixed_transpose(x, params, cg.x) * -1.0, cg


#: the gradient-step variants timed at each size: (label, Hessian products, CG preconditioner)
STEP_VARIANTS = [
    ("implicit Hessian products, plain CG", "implicit", None),
    ("sparse-matrix Hessian, plain CG", "sparse", None),
    ("compiled stencil Hessian and CG (default)", "auto", None),
    ("stencil Hessian, circulant PCG", "auto", "circulant"),
    ("stencil Hessian, banded-Cholesky PCG", "auto", "cholesky"),
]
DEFAULT_STEP = STEP_VARIANTS[2][0]


def accuracy_matched_step(cost, params, x, rhs, reference, target_error):
    """The default gradient step with the loosest CG tolerance (1e-10 … 1e-3) whose gradient error against the
    dense solve is still at most ``target_error``: the library at the accuracy of its peer.
    Returns (tolerance, median seconds of 101, error)."""
    chosen = None
    for tol in (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
        gradient, _ = gradient_step(cost, params, x, rhs, tol=tol)
        error = relative_error(gradient.flatten(), reference.flatten())
        if error > target_error:
            break
        chosen = (tol, error)
    tol, error = chosen if chosen is not None else (1e-10, error)
    seconds, _ = timed(lambda: gradient_step(cost, params, x, rhs, tol=tol), 101)
    return tol, seconds, error


def filters_2d(quick: bool) -> None:
    print("2-D filters, φ = corner-rounded 1-norm (ε = 0.01), 3×3 filters, β0 = −2.5, one cameraman crop")
    dense_16 = None  # (matrix side, backward seconds) of dense mode at 16×16
    for size, count in ((16, 2), (32, 4)):
        truth = data.cameraman()[140 : 140 + size, 200 : 200 + size]
        y = data.add_noise(truth, 0.1, rng=0)
        bank = filters.random_filters(count, (3, 3), rng=1)
        params = bl.Hyperparameters.from_filters(bank, beta0=-2.5)
        cost = bl.LowerLevelCost(y[None], bl.CornerRounded1Norm(0.01))
        loss = bl.SquaredErrorLoss(truth[None])

        def ift_run():
            return bl.implicit_hypergradient(cost, params, loss, lower_tol=1e-9, cg_tol=1e-10, lower_max_iter=100_000)

        t_ift, ift = timed(ift_run, 21)
        # the same with OGM's Python loop (the compiled loop switched off), in the same run
        saved, lower.COMPILED_MAX_WORK = lower.COMPILED_MAX_WORK, 0
        t_ift_python, _ = timed(ift_run, 5)
        lower.COMPILED_MAX_WORK = saved
        rhs = loss.gradient(ift.x)
        # reference: the Hessian system solved densely (LAPACK) and the same mixed product
        hessian = cost.hessian_operator(ift.x, params, method="sparse")
        q_exact = np.linalg.solve(hessian.matrix.toarray(), rhs.ravel()).reshape(rhs.shape)
        reference = cost.mixed_transpose(ift.x, params, q_exact) * -1.0
        print(
            f"  {size}×{size}, K = {count}: library IFT {1e3 * t_ift:7.2f} ms in all, median of 21 "
            f"({ift.lower.iterations} OGM + {ift.cg_iterations} CG it.; with OGM's Python loop "
            f"{1e3 * t_ift_python:.1f} ms); gradient step (Hessian at x̂, CG to 1e-10, "
            f"mixed product), median of 101, error vs a dense solve:"
        )
        steps = {}
        for label, method, preconditioner in STEP_VARIANTS:
            seconds, (gradient, cg) = timed(
                lambda: gradient_step(cost, params, ift.x, rhs, method, preconditioner), 101
            )
            steps[label] = seconds
            print(
                f"      {label:<52} {1e3 * seconds:6.2f} ms, {cg.iterations:3d} CG it., "
                f"gradient error {relative_error(gradient.flatten(), reference.flatten()):.1e}"
            )
        t_step = steps[DEFAULT_STEP]
        fastest = min(steps, key=steps.get)
        if quick and size == 32:
            print("      CVXPY skipped (--quick)")
            continue
        for mode in ("lsqr", "lsmr", "dense") if size == 16 else ("lsqr", "lsmr"):
            start = time.perf_counter()
            program = cvx.FilterDenoisingProgram(
                (size, size),
                count,
                (3, 3),
                penalty="cr1n",
                smoothing=0.01,
                strengths=params.strengths,
                eps=1e-8,
                mode=mode,
            )
            first = program.gradient(y, truth, bank)
            t_first = time.perf_counter() - start
            second = program.gradient(y, truth, bank)
            error = relative_error(second.gradient, ift.gradient.filters)
            cvx_error = relative_error(second.gradient, reference.filters)
            matched_tol, matched_seconds, matched_error = accuracy_matched_step(
                cost, params, ift.x, rhs, reference, cvx_error
            )
            ratio_backward = second.diagnostics["backward_seconds"] / t_step
            ratio_fastest = second.diagnostics["backward_seconds"] / steps[fastest]
            ratio_total = second.seconds / t_ift
            ratio_total_python = second.seconds / t_ift_python
            total_target = 200 if size == 32 else 50
            if mode == "dense":
                dense_16 = (derivative_matrix_side(program), second.diagnostics["backward_seconds"])
            print(
                f"      CVXPY ({mode}): build + first solve + backward {t_first:.1f} s; again: solve "
                f"{second.diagnostics['solve_seconds']:.2f} s, backward() {second.diagnostics['backward_seconds']:.2f} s "
                f"(first backward {first.diagnostics['backward_seconds']:.2f} s)"
            )
            print(
                f"        backward() / library gradient step = {ratio_backward:,.0f}× (default), "
                f"{ratio_fastest:,.0f}× (fastest: {fastest}); solve+backward / library "
                f"IFT = {ratio_total:,.0f}× ({ratio_total_python:,.0f}× with OGM's Python loop) "
                f"[issue 18: ≥ {total_target}×: {'meets' if ratio_total >= total_target else 'MISSES'}]; "
                f"gradients differ by {error:.1e} (relative)"
                + (
                    f"   [≥ 1000× on the larger: {'meets' if ratio_backward >= 1000 else 'MISSES'} (default step), "
                    f"{'meets' if ratio_fastest >= 1000 else 'MISSES'} (fastest step), "
                    f"{'meets' if ratio_total >= 1000 else 'misses'} (in all)]"
                    if size == 32
                    else ""
                )
            )
            ratio_matched = second.diagnostics["backward_seconds"] / matched_seconds
            print(
                f"        at CVXPY's accuracy (its error vs the dense solve {cvx_error:.1e}): library CG to {matched_tol:g}, "
                f"error {matched_error:.1e}, {1e3 * matched_seconds:.2f} ms → {ratio_matched:,.0f}×"
                + (
                    f"   [≥ 1000×: {'meets' if ratio_matched >= 1000 else 'MISSES'} (accuracy-matched)]"
                    if size == 32
                    else ""
                )
            )
        if size == 32 and dense_16 is not None:
            side = derivative_matrix_side(program)
            estimate = dense_16[1] * (side / dense_16[0]) ** 3
            print(
                f"      CVXPY (dense) not run at 32×32: derivative matrix {side:,} rows ({8 * side**2 / 1e9:.1f} GB); "
                f"ESTIMATE by n³ scaling from 16×16 ({dense_16[0]:,} rows, {dense_16[1]:.1f} s): "
                f"≈{estimate / 60:,.0f} min, ≈{estimate / t_step:,.0f}× the library's gradient step"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats; skip CVXPY at 32×32")
    parser.add_argument("--pairs", type=int, default=None, help="training pairs per n (default 5, quick 2)")
    parser.add_argument("--filters-only", action="store_true", help="only the 2-D filter cases (skip Table 1)")
    args = parser.parse_args()
    pairs = args.pairs or (2 if args.quick else 5)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"bilevel_lib {bl.__version__}, numpy {np.__version__}; one BLAS thread; load average {load}")
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("error")  # a solver warning would make the numbers suspect
        if not args.filters_only:
            table1(pairs, repeat=3 if args.quick else 9)
        filters_2d(args.quick)


if __name__ == "__main__":
    main()
