"""Time to an accuracy of the main hypergradient estimators on the 2-D running example (issue 15).

Run:  .venv/bin/python benchmarks/bench_frontier.py [--size 24] [--repeat 3]   (or `make bench`)

Setting: the "running-example" problem of :mod:`bilevel_lib.experiments.frontier` (J = 2 cameraman
patches, 8 DCT 3×3 filters, CR1N ε = 0.01, R = 81), every estimator over its knob as in the saved
sweep (without the memory trace).  Prints, in one run, for a relative error ≤ 1e-4 and ≤ 1e-8, the
shortest time of each estimator among its settings that reached it and its ratio to the fastest
estimator (a dash: no setting reached it).  The Jacobian-free gradient is left out: its error does
not fall with its knob (see the chapter "Choosing a hypergradient").
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bilevel_lib.experiments import frontier

ESTIMATORS = ("implicit", "maid-inexact", "kkt", "unrolled-reverse", "unrolled-forward", "truncated")
TARGETS = (1e-4, 1e-8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24, help="patch side (default 24)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per setting, shortest kept (default 3)")
    parser.add_argument("--with-differences", action="store_true", help="add finite differences (slow; default off)")
    args = parser.parse_args()
    estimators = ESTIMATORS + (("finite-differences",) if args.with_differences else ())
    load = os.getloadavg()[0]
    start = time.perf_counter()
    sweep = frontier.run_frontier(
        ("running-example",),
        estimators,
        knobs={"finite-differences": (1e-4,)},
        size=args.size,
        repeat=args.repeat,
        memory=False,
    )
    print(
        f"# time to accuracy, running example {args.size}×{args.size} (J = 2, R = 81); "
        f"{time.perf_counter() - start:.0f} s, load average {load:.2f} → {os.getloadavg()[0]:.2f}"
    )
    error, seconds = sweep.column("error"), sweep.column("seconds")
    which = sweep.column("estimator").astype(int)
    best = {
        (name, target): float(np.min(seconds[(which == index) & (error <= target)], initial=np.inf))
        for index, name in enumerate(sweep.estimators)
        for target in TARGETS
    }
    print("| estimator | " + " | ".join(f"error ≤ {t:g}" for t in TARGETS) + " |")
    print("| --- |" + " --- |" * len(TARGETS))
    for name in sweep.estimators:
        cells = []
        for target in TARGETS:
            fastest = min(best[(other, target)] for other in sweep.estimators)
            mine = best[(name, target)]
            cells.append("—" if not np.isfinite(mine) else f"{1e3 * mine:.3g} ms ({mine / fastest:.1f}×)")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
