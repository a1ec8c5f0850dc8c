"""Speed of the live panels' callbacks (issue 18: the running-example callback median ≤ 50 ms).

Run:  .venv/bin/python benchmarks/bench_widgets.py   (or `make bench`)

Prints, in one run and on the same slider moves:
* the running example (:class:`~bilevel_lib.book.widgets.DenoisingExplorer`, the one panel that
  solves live): the median callback, solve + picture, as the panel draws it now
  (:meth:`~bilevel_lib.book.widgets.DenoisingExplorer.live_png`: one kept figure redrawn in place)
  and as it did before (a new figure per move, rendered by ``figure_png`` at 100 dpi), and the
  solve alone;
* a grid-only panel (every other "Try it" panel of the book: the sliders reach only grid points,
  so the callback shows the precomputed frame), against drawing the frame's figure afresh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from IPython.display import Image  # noqa: E402

import bilevel_lib as bl  # noqa: E402
from bilevel_lib.book import viz, widgets  # noqa: E402
from bilevel_lib.book.explorer import explorer  # noqa: E402
from bilevel_lib.problem import data  # noqa: E402


def slider_moves(banks, count: int, seed: int = 0) -> list[tuple]:
    """A reader moving one control at a time over the live sliders' ranges."""
    rng = np.random.default_rng(seed)
    settings = [(0.01, 0.1, -3.0, banks[0])]
    for _ in range(count):
        eps, sigma, beta0, bank = settings[-1]
        which = rng.integers(4)
        if which == 0:
            eps = float(10 ** rng.choice(np.arange(-3, 0.01, 0.25)))
        elif which == 1:
            sigma = float(rng.choice(np.arange(0.0, 0.301, 0.02)))
        elif which == 2:
            beta0 = float(rng.choice(np.arange(-7, 1.01, 0.25)))
        else:
            bank = banks[rng.integers(len(banks))]
        settings.append((eps, sigma, beta0, bank))
    return settings


def bench_running_example(quick: bool) -> float:
    image = data.cameraman()[120:216, 200:296]
    settings = slider_moves(list(widgets.DenoisingExplorer(image).banks), 8 if quick else 30)
    # both explorers walk the same moves, so their warm starts and solves are the same
    now, before = widgets.DenoisingExplorer(image, seed=5), widgets.DenoisingExplorer(image, seed=5)
    now_ms, before_ms, solve_ms = [], [], []
    for setting in settings:
        start = time.perf_counter()
        Image(now.live_png(*setting))
        middle = time.perf_counter()
        x_hat = before.denoise(*setting)
        solved = time.perf_counter()
        Image(viz.figure_png(before._figure(x_hat, *setting)))
        end = time.perf_counter()
        now_ms.append(1e3 * (middle - start))
        before_ms.append(1e3 * (end - middle))
        solve_ms.append(1e3 * (solved - middle))
    median = statistics.median(now_ms[1:])  # the first call builds the figure and solves from scratch
    canvas = now._canvas
    print(
        f"Running-example callback (96×96 crop, {len(settings) - 1} slider moves): median {median:.0f} ms "
        f"(max {max(now_ms[1:]):.0f} ms; {canvas.blits} with x̂ redrawn in place, {canvas.repaints} repainted "
        f"for a new σ, {canvas.fresh} fresh figures), "
        f"before: a new figure per move, median {statistics.median(before_ms[1:]):.0f} ms; "
        f"solve alone {statistics.median(solve_ms[1:]):.0f} ms [target ≤ 50 ms: {'meets' if median <= 50 else 'MISSES'}]"
    )
    return median


def bench_grid_panel(quick: bool) -> None:
    rng = np.random.default_rng(1)
    curves = {(s, e): rng.standard_normal(40).cumsum() for s in (0.05, 0.1, 0.2) for e in (0.01, 0.1)}

    def plot(sigma, eps):
        fig, ax = plt.subplots(figsize=(6.2, 2.6))
        ax.plot(curves[sigma, eps])
        ax.set_title(f"σ = {sigma}, ε = {eps}")
        return fig

    panel = explorer(plot, {"sigma": [0.05, 0.1, 0.2], "eps": [0.01, 0.1]}, {"sigma": 0.1, "eps": 0.01})
    moves = [{"sigma": s, "eps": e} for s in (0.05, 0.1, 0.2) for e in (0.01, 0.1)] * (2 if quick else 5)
    lookup, draw = [], []
    for setting in moves:
        start = time.perf_counter()
        Image(panel.frame(**setting))  # what the grid-only panel's callback displays
        middle = time.perf_counter()
        Image(viz.figure_png(panel.plot(**setting)))  # a new figure, as it did before
        draw.append(1e3 * (time.perf_counter() - middle))
        lookup.append(1e3 * (middle - start))
    print(
        f"Grid-only panel callback (the six other 'Try it' panels; a 2-axis line plot here): median "
        f"{statistics.median(lookup):.2f} ms (the precomputed frame), before: a new figure per move, "
        f"median {statistics.median(draw):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer moves (for a smoke test)")
    args = parser.parse_args()
    print(
        f"bilevel_lib {bl.__version__}, numpy {np.__version__}, matplotlib {matplotlib.__version__}; "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    viz.use_book_style()
    bench_running_example(args.quick)
    bench_grid_panel(args.quick)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
