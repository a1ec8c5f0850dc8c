"""Command line: run the full-size experiments of the book and save their results.

    python -m bilevel_lib reproduce bars                 # review Fig. 1.3, U = 4000, T = 50, the authors' draws
    python -m bilevel_lib reproduce bars --draws numpy --seed 1 --filter-seed 3   # another noise and start
    python -m bilevel_lib reproduce cameraman-beta       # review Fig. 6.1b, β only
    python -m bilevel_lib reproduce cameraman-filters    # review Fig. 6.1c, filters and β
    python -m bilevel_lib reproduce bars --steps 400 --out /tmp/bars.npz

Each run shows a progress bar, prints its figures of merit and run time, and saves the learned γ,
x̂ and the history to ``results/<name>.npz`` (load with :func:`bilevel_lib.training.load_result`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import recipes as experiments

RUNS = {
    "bars": dict(help="vertical bars, 4 random 4×2 filters (review Fig. 1.3, App. D.1)", steps=4000, lower=50),
    "cameraman-beta": dict(help="cameraman patches, β of 48 DCT 7×7 filters (review Fig. 6.1b)", steps=10_000,
                           lower=10),
    "cameraman-filters": dict(help="cameraman patches, filters and β (review Fig. 6.1c)", steps=10_000, lower=10),
}


def _summary(name: str, outcome: dict) -> dict:
    history = outcome["result"].history
    summary = dict(run=name, seconds=round(outcome["seconds"], 1), steps=len(history.loss),
                   snr_noisy_db=round(outcome["snr_noisy"], 2), snr_learned_db=round(outcome["snr_learned"], 2),
                   loss_first=history.loss[0], loss_last=history.loss[-1],
                   gradient_norm_last=history.gradient_norm[-1], beta0=outcome["result"].params.beta0)
    for key in ("max_abs_column_sum", "row_sum_range"):
        if key in outcome:
            summary[key] = outcome[key]
    summary["strengths"] = np.round(np.sort(np.asarray(outcome["strengths"]))[::-1][:8], 4).tolist()
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bilevel_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    reproduce = sub.add_parser("reproduce", help="run one of the full-size experiments")
    reproduce.add_argument("name", choices=sorted(RUNS), help="; ".join(f"{k}: {v['help']}" for k, v in RUNS.items()))
    reproduce.add_argument("--steps", type=int, help="upper-level steps U (default: the review's)")
    reproduce.add_argument("--lower-iterations", type=int, help="OGM iterations T per step (default: the review's)")
    reproduce.add_argument("--seed", type=int, default=0,
                           help="noise seed (default 0); for 'bars' with --draws julia, the seed of Julia's seed!")
    reproduce.add_argument("--draws", choices=("julia", "numpy"), default="julia",
                           help="'bars' only: 'julia' (default) redraws the noise and random filters of the authors' "
                                "script (Julia 1.7, seed!(--seed)); 'numpy' draws the noise from --seed and the "
                                "filters from --filter-seed")
    reproduce.add_argument("--filter-seed", type=int, default=1,
                           help="random-filter seed for 'bars' with --draws numpy (default 1)")
    reproduce.add_argument("--out", type=Path, help="where to save the result (default results/<name>.npz)")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    spec = RUNS[args.name]
    steps = args.steps or spec["steps"]
    lower = args.lower_iterations or spec["lower"]
    progress = not args.quiet
    if args.name != "bars" and args.draws != "julia":
        parser.error("--draws applies to 'bars' only")
    if args.name == "bars":
        outcome = experiments.vertical_bars_case(draws=args.draws, julia_seed=args.seed, noise_seed=args.seed,
                                                 filter_seed=args.filter_seed, n_steps=steps, lower_iterations=lower,
                                                 progress=progress)
    else:
        parts = ("beta",) if args.name == "cameraman-beta" else ("beta", "filters")
        outcome = experiments.cameraman_case(parts=parts, n_steps=steps, lower_iterations=lower, noise_seed=args.seed,
                                             progress=progress)
    out = args.out or Path("results") / f"{args.name}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    outcome["result"].settings.update(command="python -m bilevel_lib " + " ".join(sys.argv[1:] if argv is None else argv),
                                      seconds=round(outcome["seconds"], 1))
    outcome["result"].save(out)
    summary = _summary(args.name, outcome)
    print(json.dumps(summary, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
