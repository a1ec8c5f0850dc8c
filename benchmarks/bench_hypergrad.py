"""Cost of one implicit hypergradient (review eq. 4.8) for the cameraman setting of App. D.2.

Run:  .venv/bin/python benchmarks/bench_hypergrad.py   (or `make bench`)

Setting: J = 3 cameraman patches 50×50, σ = 25/255, K = 48 non-constant 7×7 DCT filters,
β0 = −4, β_k = 0, CR1N with ε = 0.01, so R = 1 + 48 + 48·49 = 2401 hyperparameters.
Prints, in one run:
* a cold hypergradient: lower level from y to ‖∇Φ‖/√N < 1e-7 (the review's initial solve), CG
  to a relative residual 1e-6, then the mixed product: iterations and milliseconds of each part;
* a warm double-loop step as in the review's experiments: γ moved slightly, T = 10 OGM iterations
  from the previous x̂, CG warm-started from the previous q;
* the peer: central finite differences need 2R lower-level solves; their cost is extrapolated from
  timed warm-started solves of the same problem, and the ratio is printed.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import bilevel_lib as bl
from bilevel_lib.problem import data, filters
from bilevel_lib.solvers.cg import conjugate_gradient


def timed(function, repeat: int = 5):
    """(median seconds, last result) over ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    truth = data.cameraman_patches()
    y = data.add_noise(truth, 25 / 255, rng=0)
    params = bl.Hyperparameters.from_filters(filters.dct_filters(7), beta0=-4.0)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.01))
    loss = bl.SquaredErrorLoss(truth)
    print(f"J = 3 × 50×50, K = 48 DCT 7×7, R = {params.size()} hyperparameters")

    # ---- cold: each part timed on its own
    t_lower, lower = timed(lambda: bl.solve_lower_level(cost, params, tol=1e-7, max_iter=100_000), repeat=3)
    rhs = loss.gradient(lower.x)
    hessian = cost.hessian_operator(lower.x, params)
    t_cg, cg = timed(lambda: conjugate_gradient(hessian, rhs, tol=1e-6, max_iter=5000), repeat=3)
    t_mixed, _ = timed(lambda: cost.mixed_transpose(lower.x, params, cg.x))
    t_total, cold = timed(lambda: bl.implicit_hypergradient(cost, params, loss, lower_tol=1e-7, cg_tol=1e-6), repeat=3)
    print(
        f"cold hypergradient: {1e3 * t_total:.0f} ms in all — lower level {lower.iterations} OGM iterations "
        f"({1e3 * t_lower:.0f} ms), CG {cg.iterations} iterations ({1e3 * t_cg:.0f} ms), "
        f"mixed product {1e3 * t_mixed:.1f} ms"
    )

    # ---- warm double-loop step (review Sec. 5.1, App. D.2: T = 10 OGM, warm CG)
    rng = np.random.default_rng(0)
    moved = params.unflatten(params.flatten() + 1e-3 * rng.standard_normal(params.size()))

    def warm_step():
        return bl.implicit_hypergradient(
            cost,
            moved,
            loss,
            x0=cold.x,
            state=cold.state,
            lower_tol=None,
            lower_max_iter=10,
            cg_tol=1e-3,
            cg_relative_to="initial",
        )

    t_warm, warm = timed(warm_step)
    print(
        f"warm step (T = 10 OGM from previous x̂, CG from previous q to 1e-3 of its initial residual): "
        f"{1e3 * t_warm:.1f} ms, {warm.cg_iterations} CG iterations, ‖∇Φ‖/√N after T = "
        f"{warm.diagnostics['lower_residual']:.1e}"
    )

    # ---- peer: finite differences, 2R warm-started solves to the same accuracy
    probes = []
    for r in rng.choice(params.size(), size=4, replace=False):
        bump = np.zeros(params.size())
        bump[r] = 1e-5
        probes.append(params.unflatten(params.flatten() + bump))
    t_probe = statistics.median(
        timed(lambda p=p: bl.solve_lower_level(cost, p, x0=cold.x, tol=1e-7, max_iter=100_000), repeat=1)[0]
        for p in probes
    )
    t_fd = 2 * params.size() * t_probe
    print(
        f"peer — finite differences: 2R = {2 * params.size()} warm solves × {1e3 * t_probe:.0f} ms "
        f"≈ {t_fd:.0f} s (extrapolated), {t_fd / t_total:.0f}× the cold implicit hypergradient"
    )


if __name__ == "__main__":
    main()
