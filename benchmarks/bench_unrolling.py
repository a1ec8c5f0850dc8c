"""Time and peak memory of implicit, reverse-mode and forward-mode hypergradients (measured Table 4.1).

Run:  .venv/bin/python benchmarks/bench_unrolling.py   [--quick]

One 2D problem: a 64×64 crop of the cameraman image (rows 200:264, columns 220:284), noise
σ = 25/255, K = 8 non-constant 3×3 DCT filters, CR1N with ε = 0.01, β0 = −3.3, β_k = 0.
For T ∈ {10, 50, 200} lower-level iterations it prints, for each method, the wall-clock time (best
of a few runs) and the peak memory allocated during the call (tracemalloc):

* implicit: T OGM iterations (with restart, as in the fixed-T double loop), then CG on
  ∇ₓₓΦ q = ∇ₓℓ to a relative residual of 1e-8, then (∇ₓγΦ)'q — all R = 81 hyperparameters;
* reverse:  T unrolled gradient-descent steps, storing the iterates, then the backward sweep —
  all R = 81 hyperparameters at once;
* forward:  the same T steps carrying Z_t = ∂x_t/∂γ, **with respect to β only** (R = K = 8), so
  that forward mode stays affordable: it costs R Hessian-vector products per iteration.

and the ratio of reverse-mode peak memory at T = 200 to that at T = 10 (Table 4.1: O(TN)).
The machine may be shared: timings are noisy, memory is not.
"""

from __future__ import annotations

import argparse

import numpy as np

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.experiments.profiling import format_bytes, measure
from bilevel_lib.hypergrad import unrolling as ur
from bilevel_lib.problem import data, filters


def problem():
    truth = data.cameraman()[200:264, 220:284][None]
    y = data.add_noise(truth, 25 / 255, rng=0)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.01))
    params = bl.Hyperparameters.from_filters(filters.dct_filters(3), beta0=-3.3)
    return cost, params, bl.SquaredErrorLoss(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed run per entry (for a smoke test)")
    args = parser.parse_args()
    repeat = 1 if args.quick else 3
    cost, params, loss = problem()
    print(f"bilevel_lib {bl.__version__}, numpy {np.__version__}")
    print(
        f"64×64 cameraman crop, J = 1, N = {cost.n_pixels}, K = {params.n_filters} DCT 3×3 filters, "
        f"R = {params.size()} (forward mode: β only, R = {params.n_filters}); ε = 0.01, β0 = −3.3"
    )
    print(f"one iterate x_t takes {format_bytes(cost.y.nbytes)}\n")
    print(f"{'T':>5}  {'method':<26}{'time':>10}  {'peak memory':>12}   notes")
    reverse_peak = {}
    for T in (10, 50, 200):
        runs = {
            "implicit (OGM + CG)": lambda: hypergrad.implicit_hypergradient(
                cost, params, loss, lower_tol=None, lower_max_iter=T, cg_tol=1e-8, warn=False
            ),
            "reverse (all R)": lambda: ur.reverse_mode_hypergradient(cost, params, loss, T),
            "forward (β only)": lambda: ur.forward_mode_hypergradient(cost, params, loss, T, parts=("beta",)),
        }
        for name, run in runs.items():
            result, seconds, peak = measure(run, repeat=repeat)
            if name.startswith("implicit"):
                note = f"{result.cg_iterations} CG iterations"
            else:
                note = (
                    f"{result.diagnostics['hessian_vector_products']} Hessian-vector products, "
                    f"stores {format_bytes(result.diagnostics['stored_bytes'])}"
                )
            if name.startswith("reverse"):
                reverse_peak[T] = peak
            print(f"{T:5d}  {name:<26}{1e3 * seconds:8.1f} ms  {format_bytes(peak):>12}   {note}")
        print()
    ratio = reverse_peak[200] / reverse_peak[10]
    print(
        f"reverse-mode peak memory, T = 200 vs T = 10: {format_bytes(reverse_peak[200])} / "
        f"{format_bytes(reverse_peak[10])} = {ratio:.1f}× (the iterates alone grow 20×; the rest is "
        "the filter bank's work arrays, the same for every T)"
    )


if __name__ == "__main__":
    main()
