"""Speed of the (Ex) core: ∇Φ evaluations and OGM vs GD (the widget callbacks: bench_widgets.py).

Run:  .venv/bin/python benchmarks/bench_core.py   (or `make bench`)

Prints, in one run:
* milliseconds per ∇ₓΦ for J=3 cameraman patches 50×50 with K=48 7×7 DCT filters (target ≤ 5 ms),
  and for one 256×256 image, with both filter back ends (direct patches×taps and FFT) as peers;
* Hessian-vector and mixed products at the same size;
* OGM vs gradient-descent iterations to ‖∇Φ‖/√N < 1e-5 (target: OGM needs ≥ 3× fewer).
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

import bilevel_lib as bl  # noqa: E402
from bilevel_lib.problem import data, filters, ops  # noqa: E402


def per_call_ms(function, number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` timings of ``number`` calls, in ms per call."""
    function()
    return 1e3 * statistics.median(timeit.repeat(function, number=number, repeat=repeat)) / number


def with_back_end(cost: bl.LowerLevelCost, params: bl.Hyperparameters, method: str) -> bl.LowerLevelCost:
    """A copy of ``cost`` whose filter operator uses the given back end."""
    clone = bl.LowerLevelCost(cost.y, cost.penalty, cost.forward_model)
    clone._cached_operator = ops.FilterBankOperator(params.filters, cost.signal_shape, method)
    clone._cached_filters = params.filters.copy()
    return clone


def bench_gradients(quick: bool) -> None:
    patches = data.cameraman_patches()
    y = data.add_noise(patches, 25 / 255, rng=0)
    params = bl.Hyperparameters.from_filters(filters.dct_filters(7), beta0=-4.0)
    cost = bl.LowerLevelCost(y)
    print("∇ₓΦ, K = 48 filters 7×7 (DCT), CR1N ε = 0.01")
    for label, c, x, number in [
        ("J=3, 50×50", cost, y, 20 if quick else 100),
        (
            "J=1, 256×256",
            bl.LowerLevelCost(data.add_noise(data.cameraman()[None, 128:384, 128:384], 0.1, 1)),
            None,
            3 if quick else 15,
        ),
    ]:
        x = c.y if x is None else x
        times = {}
        for method in ("direct", "fft"):
            variant = with_back_end(c, params, method)
            times[method] = per_call_ms(lambda: variant.gradient(x, params), number)
        chosen = c.operator(params).method
        print(
            f"  {label:>14}: {times[chosen]:7.2f} ms per ∇Φ ({chosen}; the other back end: "
            f"{times['fft' if chosen == 'direct' else 'direct']:.2f} ms, ratio "
            f"{times['fft' if chosen == 'direct' else 'direct'] / times[chosen]:.1f}×)"
        )
        if label.startswith("J=3"):
            target = "meets" if times[chosen] <= 5.0 else "MISSES"
            print(f"  {'':>14}  target ≤ 5 ms: {target}")
            hessian = c.hessian_operator(x, params)
            print(
                f"  {'':>14}  Hessian-vector product {per_call_ms(lambda: hessian(x), number):.2f} ms, "
                f"mixed product (∇ₓγΦ)'v {per_call_ms(lambda: c.mixed_transpose(x, params, x), max(number // 5, 2)):.2f} ms"
            )


def bench_ogm_vs_gd() -> None:
    print("Lower level to ‖∇Φ‖/√N < 1e-5: OGM (adaptive restart) vs gradient descent, step 1/L (4.19)")
    problems = {
        "vertical bars 32×32, 4 random 4×2, β0=−4.6": (
            data.add_noise(data.vertical_bars()[None], 25 / 255, rng=0),
            bl.Hyperparameters.from_filters(filters.random_filters(4, (4, 2), rng=1), beta0=-4.6),
        ),
        "cameraman J=3 50×50, 48 DCT 7×7, β0=−4": (
            data.add_noise(data.cameraman_patches(), 25 / 255, rng=0),
            bl.Hyperparameters.from_filters(filters.dct_filters(7), beta0=-4.0),
        ),
    }
    for label, (y, params) in problems.items():
        cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.01))
        runs = {}
        for method in ("ogm", "gd"):
            start = time.perf_counter()
            runs[method] = bl.solve_lower_level(cost, params, method=method, tol=1e-5, max_iter=200_000)
            runs[method].seconds = time.perf_counter() - start
        ratio = runs["gd"].iterations / runs["ogm"].iterations
        print(
            f"  {label}: OGM {runs['ogm'].iterations} it ({runs['ogm'].seconds:.2f} s), "
            f"GD {runs['gd'].iterations} it ({runs['gd'].seconds:.2f} s): {ratio:.1f}× fewer "
            f"[target ≥ 3×: {'meets' if ratio >= 3 else 'MISSES'}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for a smoke test)")
    args = parser.parse_args()
    print(f"bilevel_lib {bl.__version__}, numpy {np.__version__}")
    bench_gradients(args.quick)
    bench_ogm_vs_gd()


if __name__ == "__main__":
    main()
