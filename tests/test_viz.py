"""Plotting functions and the running-example widget's engine (no display needed)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bilevel_lib import data, filters, viz  # noqa: E402


def test_plots_render_to_png():
    viz.use_book_style()
    truth = data.vertical_bars((16, 16))
    noisy = data.add_noise(truth, 0.1, 0)
    for fig in (viz.plot_penalty(), viz.show_filters(filters.dct_filters(3)), viz.show_filters(np.ones((2, 3))),
                viz.show_images([truth, noisy]), viz.plot_denoising(truth, noisy, truth),
                viz.plot_denoising(truth[0], noisy[0], truth[0])):
        png = viz.figure_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_explorer_warm_starts_and_reports_the_solve():
    image = data.cameraman()[100:148, 200:248]
    explorer = viz.DenoisingExplorer(image, seed=1)
    explorer.denoise(0.01, 0.1, -3.0, "finite differences")
    first = explorer.last_result.iterations
    explorer.denoise(0.01, 0.1, -3.0, "finite differences")  # same setting: warm start is the answer
    assert explorer.last_result.iterations < first and explorer.last_result.converged
    np.testing.assert_array_equal(explorer.noisy(0.0), image)
    with pytest.raises(ValueError, match="bank must be one of"):
        explorer.denoise(0.01, 0.1, -3.0, "wavelets")


def test_tolerance_plot_marks_the_chosen_pair():
    errors = np.logspace(-8, 0, 12).reshape(3, 4)
    work = np.ones((3, 4, 2), dtype=int)
    fig = viz.plot_tolerance_errors(errors, work, np.arange(-3, 0), np.arange(-4, 0), -2, -3)
    assert "lower tol 1e-2, CG tol 1e-3" in fig._suptitle.get_text()
    viz.figure_png(fig)
