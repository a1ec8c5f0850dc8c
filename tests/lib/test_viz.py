"""Plotting functions, the running-example widget's engine and the chapter explorers' callbacks
(no display needed: widgets hand their figures to a recorder instead)."""

import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bilevel_lib.book import viz, widgets
from bilevel_lib.experiments.profiling import format_bytes  # noqa: E402
from bilevel_lib.problem import data, filters  # noqa: E402


def test_plots_render_to_png():
    viz.use_book_style()
    truth = data.vertical_bars((16, 16))
    noisy = data.add_noise(truth, 0.1, 0)
    for fig in (
        viz.plot_penalty(),
        viz.show_filters(filters.dct_filters(3)),
        viz.show_filters(np.ones((2, 3))),
        viz.show_images([truth, noisy]),
        viz.plot_denoising(truth, noisy, truth),
        viz.plot_denoising(truth[0], noisy[0], truth[0]),
    ):
        png = viz.figure_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_explorer_warm_starts_and_reports_the_solve():
    image = data.cameraman()[100:148, 200:248]
    explorer = widgets.DenoisingExplorer(image, seed=1)
    explorer.denoise(0.01, 0.1, -3.0, "finite differences")
    first = explorer.last_result.iterations
    explorer.denoise(0.01, 0.1, -3.0, "finite differences")  # same setting: warm start is the answer
    assert explorer.last_result.iterations < first and explorer.last_result.converged
    explorer.denoise(0.01, 0.1, -3.0, "finite differences", warm_start=False)  # afresh: as the first call
    assert explorer.last_result.iterations == first
    np.testing.assert_array_equal(explorer.noisy(0.0), image)
    with pytest.raises(ValueError, match="bank must be one of"):
        explorer.denoise(0.01, 0.1, -3.0, "wavelets")


def test_tolerance_plot_marks_the_chosen_pair():
    errors = np.logspace(-8, 0, 12).reshape(3, 4)
    work = np.ones((3, 4, 2), dtype=int)
    fig = widgets.plot_tolerance_errors(errors, work, np.arange(-3, 0), np.arange(-4, 0), -2, -3)
    assert "lower tol 1e-2, CG tol 1e-3" in fig._suptitle.get_text()
    viz.figure_png(fig)


# --- figure_png options -------------------------------------------------------------------------


def _png_size(png):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.size, image.mode


def test_figure_png_scales_with_dpi_and_quantizes_to_a_palette():
    import matplotlib.pyplot as plt

    def figure():
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.plot(np.sin(np.linspace(0, 9, 200)))
        return fig

    full = viz.figure_png(figure())
    assert _png_size(full) == ((400, 200), "RGBA")  # the book's 100 dpi
    assert _png_size(viz.figure_png(figure(), dpi=50))[0] == (200, 100)
    small = viz.figure_png(figure(), colors=16)
    assert _png_size(small) == ((400, 200), "P") and len(small) < len(full) / 2
    for bad in ({"dpi": 0}, {"dpi": "high"}, {"colors": 1}, {"colors": 300}, {"colors": 8.5}):
        with pytest.raises(ValueError, match="dpi|colors"):
            viz.figure_png(figure(), **bad)
    plt.close("all")


# --- Ch. "Unrolling": storage diagram -----------------------------------------------------------


def test_storage_diagram_draws_every_box_and_arrow_and_highlights_one_step():
    from matplotlib.patches import FancyArrowPatch, Rectangle

    for T in (1, 6, 12):
        fig = viz.plot_storage_diagram(T=T, current=min(3, T))
        (ax,) = fig.axes
        boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
        assert len(boxes) == 4 * T + 3 and len(arrows) == 3 * T
        forward_colour = plt_colour(3)
        highlighted = [b for b in boxes if np.allclose(b.get_facecolor()[:3], forward_colour)]
        assert len(highlighted) == 2  # x and Z at t = current
        assert {round(b.get_x() + b.get_width() / 2, 6) for b in highlighted} == {round(1.15 * min(3, T), 6)}
        viz.figure_png(fig)
    for bad in ({"T": 0}, {"T": 2.5}, {"T": 6, "current": 7}, {"T": 6, "current": -1}):
        with pytest.raises(ValueError, match="T must|current must"):
            viz.plot_storage_diagram(**bad)


def plt_colour(index):
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    viz.use_book_style()
    return mcolors.to_rgb(plt.rcParams["axes.prop_cycle"].by_key()["color"][index])


# --- widget callbacks: record what the widget would display --------------------------------------


@pytest.fixture
def shown(monkeypatch):
    """Figures the widgets hand to the display, in order (instead of rendering them)."""
    figures = []

    def record(fig):
        figures.append(fig)

    monkeypatch.setattr(viz, "display_png", record)
    yield figures
    import matplotlib.pyplot as plt

    plt.close("all")


def _shown_figure(panel, controls, shown):
    """The figure of the setting the live panel's controls show, after checking that the panel showed
    that setting's precomputed frame (a grid-only panel draws nothing live: it looks the frame up)."""
    setting = {axis.name: controls[axis.label].value for axis in panel.axes}
    assert isinstance(shown[-1], bytes) and shown[-1] == panel.frame(**setting)
    return panel.plot(**setting)


def _controls(box):
    """The sliders of a widget box, by description, whatever the nesting."""
    import ipywidgets as ipw

    found, stack = {}, [box]
    while stack:
        item = stack.pop()
        if isinstance(item, ipw.Box):
            stack.extend(item.children)
        elif getattr(item, "description", "") and hasattr(item, "value"):
            found[item.description] = item
    return found


# --- Ch. "Tuning β": ℓ(β0) against σ and ε --------------------------------------------------------


def _beta0_curves(sigmas=(0.05, 0.1, 0.2), epsilons=(0.1, 0.01)):
    from bilevel_lib import Hyperparameters
    from bilevel_lib.training import tuning

    grid = np.linspace(-5.0, 0.0, 21)
    curves = {}
    for sigma in sigmas:
        for eps in epsilons:
            centre = np.log(sigma) - 0.5 * np.log(eps)  # any smooth trend will do
            losses = (grid - centre) ** 2 + sigma
            best = int(np.argmin(losses))
            curves[sigma, eps] = tuning.SearchResult(
                best=Hyperparameters.from_filters(filters.finite_differences(2), beta0=grid[best]),
                best_loss=float(losses[best]),
                candidates=grid,
                losses=losses,
                n_solves=grid.size,
                lower_iterations=10 * grid.size,
            )
    return curves


def test_beta0_curves_draw_one_curve_per_eps_and_mark_the_chosen_pair():
    curves = _beta0_curves()
    fig = widgets.plot_beta0_curves(curves, 0.1, 0.01)
    left, right = fig.axes
    assert len(left.lines) == 2 + 1 and len(right.lines) == 2 + 1
    widths = {line.get_label(): line.get_linewidth() for line in left.lines[:2]}
    assert widths == {"ε = 0.1": 0.8, "ε = 0.01": 2.2}
    chosen = curves[0.1, 0.01]
    np.testing.assert_allclose(left.lines[-1].get_xydata(), [[chosen.best.beta0, chosen.best_loss]])
    assert left.get_ylim()[1] == pytest.approx(3 * max(curves[0.1, e].best_loss for e in (0.1, 0.01)))
    np.testing.assert_allclose(right.lines[0].get_xdata(), [0.05, 0.1, 0.2])
    assert f"best β0 = {chosen.best.beta0:.3f}" in left.get_title()
    viz.figure_png(fig)


def test_beta0_curves_reject_settings_that_were_not_precomputed():
    curves = _beta0_curves()
    with pytest.raises(ValueError, match=r"sigma must be one of the precomputed values \[0.05, 0.1, 0.2\]"):
        widgets.plot_beta0_curves(curves, 0.15, 0.01)
    with pytest.raises(ValueError, match="eps must be one of"):
        widgets.plot_beta0_curves(curves, 0.1, 0.3)
    del curves[0.2, 0.1]
    with pytest.raises(ValueError, match=r"grid is incomplete: missing \[\(0.2, 0.1\)\]"):
        widgets.plot_beta0_curves(curves, 0.1, 0.01)
    with pytest.raises(ValueError, match="non-empty dict"):
        widgets.plot_beta0_curves({}, 0.1, 0.01)


def test_beta0_explorer_redraws_the_chosen_setting(shown):
    curves = _beta0_curves()
    panel = widgets.beta0_explorer(curves, sigma=0.1, eps=0.01)
    assert len(panel) == 6 and not shown  # one frame per (σ, ε); nothing displayed yet
    controls = _controls(panel.widget())
    assert len(shown) == 1 and "σ = 0.1, ε = 0.01" in _shown_figure(panel, controls, shown).axes[0].get_title()
    assert controls["σ"].continuous_update is False
    controls["σ"].value = 0.2
    assert len(shown) == 2 and "σ = 0.2, ε = 0.01" in _shown_figure(panel, controls, shown).axes[0].get_title()
    np.testing.assert_allclose(
        _shown_figure(panel, controls, shown).axes[0].lines[0].get_ydata(), curves[0.2, 0.1].losses
    )
    controls["ε"].value = 0.1
    bold = [
        line.get_label() for line in _shown_figure(panel, controls, shown).axes[0].lines[:2] if line.get_linewidth() > 1
    ]
    assert bold == ["ε = 0.1"]
    with pytest.raises(ValueError, match="sigma must be one of"):
        widgets.beta0_explorer(curves, sigma=0.3)


# --- Ch. "Translation to a single level": the zero-set threshold ------------------------------------


def _threshold_sweep():
    rng = np.random.default_rng(0)
    n, sigmas, exponents = 16, np.array([0.05, 0.1, 0.2]), np.arange(-6, -1)
    signal = np.repeat([0.0, 1.0], n // 2)
    noisy = signal + sigmas[:, None] * rng.standard_normal((3, n))
    errors = 10.0 ** rng.uniform(-12, 0, (3, exponents.size))
    return widgets.ThresholdSweep(
        signal,
        sigmas,
        noisy,
        0.5 * (noisy + signal),
        np.tile(signal + 0.01, (3, 1)),
        exponents,
        errors,
        z_accuracy=[1e-5, 2e-5, 4e-5],
    )


def test_threshold_plot_marks_the_threshold_at_the_chosen_noise_level():
    sweep = _threshold_sweep()
    fig = widgets.plot_threshold(sweep, 0.1, -4)
    left, right = fig.axes
    assert len(left.lines) == 4 and len(right.lines) == 3  # error curve, marker, accuracy line
    np.testing.assert_allclose(left.lines[0].get_ydata(), sweep.noisy[1])
    np.testing.assert_allclose(right.lines[1].get_xydata(), [[-4, sweep.errors[1, 2]]])
    np.testing.assert_allclose(right.lines[2].get_xdata(), [np.log10(2e-5)] * 2)
    assert fig._suptitle.get_text() == f"σ = 0.1, τ = 1e-4: gradient error {sweep.errors[1, 2]:.1e}"
    with pytest.raises(ValueError, match="sigma must be one of the precomputed noise levels"):
        widgets.plot_threshold(sweep, 0.19, -4)  # no longer the nearest σ under another title
    with pytest.raises(ValueError, match=r"exponent must be an integer in \[-6, -2\]"):
        widgets.plot_threshold(sweep, 0.1, -1)


def test_threshold_sweep_checks_shapes():
    good = _threshold_sweep()
    with pytest.raises(ValueError, match=r"errors must have shape \(3, 5\).*got \(3, 4\)"):
        widgets.ThresholdSweep(
            good.signal,
            good.sigmas,
            good.noisy,
            good.learned,
            good.finite,
            good.exponents,
            good.errors[:, :4],
            good.z_accuracy,
        )
    with pytest.raises(ValueError, match="consecutive integers"):
        widgets.ThresholdSweep(
            good.signal,
            good.sigmas,
            good.noisy,
            good.learned,
            good.finite,
            good.exponents * 2,
            good.errors,
            good.z_accuracy,
        )
    with pytest.raises(ValueError, match="learned must have shape"):
        widgets.ThresholdSweep(
            good.signal,
            good.sigmas,
            good.noisy,
            good.learned.T,
            good.finite,
            good.exponents,
            good.errors,
            good.z_accuracy,
        )


def test_threshold_explorer_redraws_when_a_slider_moves(shown):
    sweep = _threshold_sweep()
    panel = widgets.threshold_explorer(sweep, sigma=0.1, exponent=-4)
    assert len(panel) == 3 * 5
    controls = _controls(panel.widget())
    assert len(shown) == 1
    controls["log₁₀ threshold"].value = -2
    np.testing.assert_allclose(
        _shown_figure(panel, controls, shown).axes[1].lines[1].get_xydata(), [[-2, sweep.errors[1, 4]]]
    )
    controls["noise σ"].value = 0.2
    np.testing.assert_allclose(_shown_figure(panel, controls, shown).axes[0].lines[0].get_ydata(), sweep.noisy[2])
    assert len(shown) == 3


# --- Ch. "Unrolling": truncated back-propagation ---------------------------------------------------


def _truncation_errors(T_values=(5, 10, 20), scales=(0.5, 1.0, 1.9)):
    truncation, unrolled = {}, {}
    for T in T_values:
        for s in scales:
            k = np.arange(1, T + 1)
            truncation[T, s] = 10.0 ** (-s * k / T) / T
            unrolled[T, s] = 10.0 ** (-(k[:-1] / T) * 8)
    return truncation, unrolled


def test_truncation_plot_shows_the_chosen_truncation_and_its_cost():
    truncation, unrolled = _truncation_errors()
    fig = widgets.plot_truncation(truncation, unrolled, 10, 4, 1.0, iterate_bytes=2048)
    left, right = fig.axes
    assert len(left.lines) == 3 and len(right.lines) == 3 + 1
    np.testing.assert_allclose(left.lines[2].get_xydata(), [[4, np.log10(truncation[10, 1.0][3])]])
    np.testing.assert_allclose(right.lines[0].get_xdata(), [5, 10, 20])
    assert [line.get_linewidth() for line in right.lines[:3]] == [0.8, 1.8, 0.8]
    assert [line.get_linestyle() for line in right.lines[:3]] == [":", "-", ":"]  # the step 1/L is solid
    title = fig._suptitle.get_text()
    assert "T = 10, k = 4" in title and "3 Hessian-vector + 4 mixed products" in title
    assert f"{format_bytes(4 * 2048)} stored" in title
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, T\] = \[1, 5\]; got 40"):
        widgets.plot_truncation(truncation, unrolled, 5, 40, 0.5, iterate_bytes=2048)  # off the grid


def test_truncation_plot_rejects_bad_settings():
    truncation, unrolled = _truncation_errors()
    with pytest.raises(ValueError, match=r"T must be one of the precomputed values \[5, 10, 20\]"):
        widgets.plot_truncation(truncation, unrolled, 40, 4, 1.0, iterate_bytes=1)
    with pytest.raises(ValueError, match="k must be an integer in"):
        widgets.plot_truncation(truncation, unrolled, 10, 0, 1.0, iterate_bytes=1)
    unrolled[10, 1.0] = unrolled[10, 1.0][:-2]
    with pytest.raises(ValueError, match="expected 10 truncation errors and 9 unrolled errors"):
        widgets.plot_truncation(truncation, unrolled, 10, 4, 1.0, iterate_bytes=1)


def test_truncation_explorer_redraws_when_k_or_T_changes(shown):
    truncation, unrolled = _truncation_errors()
    panel = widgets.truncation_explorer(truncation, unrolled, iterate_bytes=8, T=10, k="T/4", scale=1.0)
    assert len(panel) == 3 * 4 * 3  # every depth exists for every T: no clipped duplicates
    assert len(set(panel.frames)) == len(panel.frames)
    controls = _controls(panel.widget())
    assert set(controls) == {"iterations T", "back-prop k", "step α"}
    assert all(c.continuous_update is False for c in controls.values())
    np.testing.assert_allclose(_shown_figure(panel, controls, shown).axes[0].lines[2].get_xdata(), [3])  # ⌈10/4⌉
    controls["back-prop k"].value = "T/2"
    np.testing.assert_allclose(_shown_figure(panel, controls, shown).axes[0].lines[2].get_xdata(), [5])
    controls["iterations T"].value = 20
    assert _shown_figure(panel, controls, shown).axes[0].lines[0].get_xdata().size == 20
    np.testing.assert_allclose(_shown_figure(panel, controls, shown).axes[0].lines[2].get_xdata(), [10])
    assert len(shown) == 3
    with pytest.raises(ValueError, match="k must be one of"):
        widgets.truncation_explorer(truncation, unrolled, iterate_bytes=8, T=10, k=4, scale=1.0)


# --- Ch. "Single- vs double-loop algorithms": training runs against work ---------------------------


def _work_curves():
    steps = np.arange(1, 11)
    return {
        "fast": widgets.WorkCurves(100 * steps, 1.0 + 0.01 / steps, 10.0 ** (-2.0 - 0.5 * steps), "#d1495b", ":"),
        "slow": widgets.WorkCurves(300 * steps, 1.0 + 0.02 / steps, np.full(10, 1e-5)),
        "late": widgets.WorkCurves([2500, 2600], [1.003, 1.001], [1e-7, 1e-8]),
    }


def test_work_curves_check_their_inputs():
    with pytest.raises(ValueError, match=r"one length.*got shapes \(3,\), \(2,\) and \(3,\)"):
        widgets.WorkCurves([1, 2, 3], [1.0, 0.9], [1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="work must be cumulative"):
        widgets.WorkCurves([10, 5], [1.0, 0.9], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="accuracy must be finite and ≥ 0"):
        widgets.WorkCurves([1, 2], [1.0, 0.9], [1e-3, -1.0])
    with pytest.raises(TypeError, match="work must be numbers"):
        widgets.WorkCurves(["1", "2"], [1.0, 0.9], [1e-3, 1e-3])
    curves = _work_curves()
    assert curves["fast"].loss_at(350) == pytest.approx(1.0 + 0.01 / 3)  # the last step within the budget
    assert curves["late"].loss_at(2000) is None


def test_loss_and_accuracy_plots_draw_the_runs_within_the_budget():
    import matplotlib.pyplot as plt

    curves = _work_curves()
    fig, (left, right) = plt.subplots(1, 2)
    widgets.plot_loss_against_work(left, curves, ["fast", "slow"], budget=650, best=1.0)
    assert [line.get_label() for line in left.lines[:2]] == ["fast", "slow"] and len(left.lines) == 3
    np.testing.assert_array_equal(left.lines[0].get_xdata(), [100, 200, 300, 400, 500, 600])
    np.testing.assert_allclose(left.lines[1].get_ydata(), [1.02, 1.01])
    assert left.lines[0].get_linestyle() == ":" and left.lines[0].get_color() == "#d1495b"
    np.testing.assert_allclose(left.lines[2].get_ydata(), [1.0, 1.0])  # the dotted best loss
    assert left.get_xlim() == (0, 650) and left.get_ylim() == pytest.approx((1.0 - 0.0015, 1.0 + 0.006))
    widgets.plot_accuracy_against_work(right, curves, budget=650)
    assert len(right.lines) == 3 and right.lines[2].get_xdata().size == 0  # "late" has no step by W = 650
    np.testing.assert_allclose(right.lines[0].get_ydata(), -2.0 - 0.5 * np.arange(1, 7))  # log₁₀ accuracy
    assert [t.get_text() for t in right.get_yticklabels()] == ["10⁻⁸", "10⁻⁶", "10⁻⁴", "10⁻²"]
    whole = plt.figure().add_subplot()
    widgets.plot_loss_against_work(whole, curves)  # whole runs, no reference
    assert len(whole.lines) == 3 and whole.lines[1].get_xdata().size == 10
    plt.close("all")


def test_work_budget_plot_reports_each_loss_at_the_budget():
    curves = _work_curves()
    fig = widgets.plot_work_budget(curves, ["fast", "slow", "late"], 2000, 1.0)
    left, right = fig.axes
    assert len(left.lines) == 3 + 1 and len(right.lines) == 3
    assert fig._suptitle.get_text() == "loss at W = 2000 · fast: 1.0010, slow: 1.0033, late: –"
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["fast", "slow", "late"]
    empty = widgets.plot_work_budget(curves, [], 500, 1.0)
    assert len(empty.axes[0].lines) == 1 and empty.axes[0].get_legend() is None
    viz.figure_png(fig)


def test_work_budget_plot_rejects_unknown_runs_and_bad_budgets():
    curves = _work_curves()
    with pytest.raises(
        ValueError,
        match=r"unknown run\(s\) \['TTSA'\]; the precomputed runs are "
        r"\['fast', 'slow', 'late'\]",
    ):
        widgets.plot_work_budget(curves, ["fast", "TTSA"], 1000, 1.0)
    for budget in (0, -100, float("nan"), "1000"):
        with pytest.raises(ValueError, match="budget must be a positive amount of work"):
            widgets.plot_work_budget(curves, ["fast"], budget, 1.0)
    with pytest.raises(ValueError, match=r"expected a non-empty dict \{name: WorkCurves\}"):
        widgets.plot_work_budget({"fast": {"work": [1]}}, ["fast"], 1000, 1.0)
    with pytest.raises(ValueError, match="non-empty dict"):
        widgets.plot_work_budget({}, [], 1000, 1.0)


def test_work_budget_explorer_redraws_with_the_new_budget_and_runs(shown):
    curves = _work_curves()
    groups = {"fast only": ["fast"], "slow and late": ["slow", "late"]}
    panel = widgets.work_budget_explorer(curves, 1.0, groups, group="fast only", budgets=[500, 900, 2600], budget=500)
    assert len(panel) == 2 * 3
    controls = _controls(panel.widget())
    assert set(controls) == {"methods", "work W"}
    assert controls["work W"].continuous_update is False
    assert (
        len(shown) == 1
        and _shown_figure(panel, controls, shown)._suptitle.get_text() == "loss at W = 500 · fast: 1.0020"
    )
    controls["work W"].value = 900
    assert len(shown) == 2 and _shown_figure(panel, controls, shown).axes[0].lines[0].get_xdata().size == 9
    assert _shown_figure(panel, controls, shown).axes[0].get_xlim() == (0, 900)
    controls["methods"].value = "slow and late"
    assert [line.get_label() for line in _shown_figure(panel, controls, shown).axes[0].lines[:2]] == ["slow", "late"]
    assert "slow: 1.0067, late: –" in _shown_figure(panel, controls, shown)._suptitle.get_text()
    with pytest.raises(ValueError, match=r"budget must be one of the precomputed values \[500, 900\]"):
        widgets.work_budget_explorer(curves, 1.0, groups, group="fast only", budgets=[500, 900], budget=2600)
    with pytest.raises(ValueError, match=r"unknown run\(s\) \['fastest'\]"):
        widgets.work_budget_explorer(curves, 1.0, {"g": ["fastest"]}, group="g", budgets=[500], budget=500)
    with pytest.raises(ValueError, match="budgets must be positive and increasing"):
        widgets.work_budget_explorer(curves, 1.0, groups, group="fast only", budgets=[900, 500], budget=500)


# --- off-grid settings: every plot_… helper names the argument (issue 14) -------------------------


def test_plot_helpers_reject_settings_off_their_grid():
    sweep = _threshold_sweep()
    with pytest.raises(
        ValueError, match=r"sigma must be one of the precomputed noise levels \[0.05, 0.1, 0.2\]; got 0.12"
    ):
        widgets.plot_threshold(sweep, 0.12, -4)  # used to draw the nearest σ under the requested title
    with pytest.raises(ValueError, match=r"exponent must be an integer in \[-6, -2\]; got -9"):
        widgets.plot_threshold(sweep, 0.1, -9)
    errors = np.logspace(-8, 0, 12).reshape(3, 4)
    work = np.ones((3, 4, 2), dtype=int)
    with pytest.raises(ValueError, match=r"lower_exp must be one of the precomputed values \[-3, -2, -1\]; got 0"):
        widgets.plot_tolerance_errors(errors, work, np.arange(-3, 0), np.arange(-4, 0), 0, -3)
    with pytest.raises(ValueError, match=r"cg_exp must be one of the precomputed values \[-4, -3, -2, -1\]; got -5"):
        widgets.plot_tolerance_errors(errors, work, np.arange(-3, 0), np.arange(-4, 0), -2, -5)  # used to wrap
    with pytest.raises(ValueError, match=r"errors must have shape \(3, 4\)"):
        widgets.plot_tolerance_errors(errors[:2], work, np.arange(-3, 0), np.arange(-4, 0), -2, -3)
    with pytest.raises(ValueError, match="budget must be a positive amount of work"):
        widgets.plot_work_budget(_work_curves(), ["fast"], -1, 1.0)


# --- the explorer: one plotting function, a live panel and a static viewer -----------------------


def _toy_plot(calls=None):
    import matplotlib.pyplot as plt

    def plot(a, kind):
        if calls is not None:
            calls.append((a, kind))
        fig, ax = plt.subplots(figsize=(2.0, 1.2))
        ax.plot([0, 1], [0, a], color={"up": "C0", "down": "C1", "flat": "C2"}[kind])
        ax.set_title(f"a = {a}, {kind}")
        return fig

    return plot


def test_explorer_precomputes_one_frame_per_grid_point_and_offers_both_renderings():
    from bilevel_lib.book.explorer import WIDGET_VIEW, explorer

    calls = []
    panel = explorer(
        _toy_plot(calls),
        {"a": [1, 2, 3], "kind": ["up", "down"]},
        {"a": 2, "kind": "down"},
        caption=lambda a, kind: f"caption {a} {kind}",
        labels={"a": "slope a"},
        title="Toy <panel>",
    )
    assert calls == [(a, k) for a in (1, 2, 3) for k in ("up", "down")]  # the grid product, last axis fastest
    assert len(panel) == 6 and len(set(panel.frames)) == 6 and all(f[:4] == b"\x89PNG" for f in panel.frames)
    assert panel.frame(a=3, kind="up") == panel.frames[4]
    bundle = panel._repr_mimebundle_()
    assert {"text/html", WIDGET_VIEW, "text/plain"} <= set(bundle)
    assert set(bundle[WIDGET_VIEW]) >= {"model_id", "version_major"}
    page = bundle["text/html"]
    assert page.count('type="range"') == 1 and page.count("<select") == 1  # numbers slide, strings drop down
    assert page.count("<option") == 2 and '<option value="1" selected>down</option>' in page
    assert 'value="1"' in page and "caption 2 down" in page and "Toy &lt;panel&gt;" in page
    assert ">slope a</label>" in page and ">kind</label>" in page
    data = _viewer_payload(page)
    assert data["sizes"] == [3, 2] and len(data["frames"]) == 6 and len(data["captions"]) == 6
    assert data["captions"][data["sizes"][1] * 1 + 1] == "caption 2 down"
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing fetched


def _viewer_payload(page):
    import json

    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', page, re.S).group(1))


def test_explorer_stores_identical_frames_once():
    from bilevel_lib.book.explorer import explorer

    panel = explorer(lambda a, b: _toy_plot()(a, "up"), {"a": [1, 2], "b": [0, 1, 2]}, {"a": 1, "b": 0})
    data = _viewer_payload(panel.html())
    assert len(data["frames"]) == 2 and data["index"] == [0, 0, 0, 1, 1, 1]


def test_explorer_rejects_bad_grids_and_defaults():
    from bilevel_lib.book.explorer import explorer

    plot = _toy_plot()
    grid = {"a": [1, 2], "kind": ["up", "down"]}
    with pytest.raises(
        ValueError, match=r"defaults must give one value for each axis \['a', 'kind'\].*missing \['kind'\]"
    ):
        explorer(plot, grid, {"a": 1})
    with pytest.raises(ValueError, match=r"unknown \['b'\]"):
        explorer(plot, grid, {"a": 1, "kind": "up", "b": 0})
    with pytest.raises(ValueError, match=r"a must be one of the grid values \[1, 2\]; got 3"):
        explorer(plot, grid, {"a": 3, "kind": "up"})
    with pytest.raises(ValueError, match=r"kind must be one of the grid values \['up', 'down'\]; got 'sideways'"):
        explorer(plot, grid, {"a": 1, "kind": "sideways"})
    with pytest.raises(ValueError, match=r"grid\['a'\] must hold at least one value"):
        explorer(plot, {"a": [], "kind": ["up"]}, {"a": 1, "kind": "up"})
    with pytest.raises(ValueError, match=r"grid\['a'\] repeats the value 1"):
        explorer(plot, {"a": [1, 1.0], "kind": ["up"]}, {"a": 1, "kind": "up"})
    with pytest.raises(TypeError, match=r"grid\['a'\] must be a sequence"):
        explorer(plot, {"a": "12", "kind": ["up"]}, {"a": "1", "kind": "up"})
    with pytest.raises(ValueError, match="grid must be a non-empty dict"):
        explorer(plot, {}, {})
    with pytest.raises(ValueError, match=r"labels names axes \['b'\] that are not in the grid"):
        explorer(plot, grid, {"a": 1, "kind": "up"}, labels={"b": "B"})
    with pytest.raises(ValueError, match=r"controls\['a'\] must be 'slider' or 'dropdown'; got 'knob'"):
        explorer(plot, grid, {"a": 1, "kind": "up"}, controls={"a": "knob"})
    with pytest.raises(TypeError, match="plot must be a function"):
        explorer("plot", grid, {"a": 1, "kind": "up"})
    with pytest.raises(
        TypeError, match=r"plot must return a matplotlib figure or PNG bytes; for \{'a': 1, 'kind': 'up'\}"
    ):
        explorer(lambda a, kind: None, grid, {"a": 1, "kind": "up"})
    panel = explorer(plot, grid, {"a": 1, "kind": "up"})
    with pytest.raises(ValueError, match=r"a must be one of the grid values \[1, 2\]; got 5"):
        panel.frame(a=5, kind="up")


def test_explorer_live_panel_redraws_and_accepts_its_own_controls(shown):
    import ipywidgets as ipw

    from bilevel_lib.book.explorer import explorer

    panel = explorer(
        _toy_plot(),
        {"a": [1, 2], "kind": ["up", "down"]},
        {"a": 1, "kind": "up"},
        live={"a": ipw.FloatSlider(value=1.0, min=0, max=5, description="a live")},
    )
    controls = _controls(panel.widget())
    assert set(controls) == {"a live", "kind"} and len(shown) == 1
    controls["a live"].value = 4.5  # off the static grid: the live panel draws it anyway
    assert shown[-1].axes[0].get_title() == "a = 4.5, up"
    controls["kind"].value = "down"
    assert shown[-1].axes[0].get_title() == "a = 4.5, down" and len(shown) == 3


def test_static_slider_is_the_one_axis_viewer():
    frames = [np.full((4, 5), value) for value in (0.0, 0.5, 1.0)]
    page = viz.static_slider(frames, ["a", "b", "c"], start=1, title="t <1>", vmin=0, vmax=1).data
    assert 'class="bl-explorer"' in page and page.count('type="range"') == 1
    data = _viewer_payload(page)
    assert len(data["frames"]) == 3 and data["captions"] == ["a", "b", "c"] and data["sizes"] == [3]
    assert 'value="1"' in page and ">b</output>" in page and "t &lt;1&gt;" in page
    with pytest.raises(ValueError, match="one label per frame"):
        viz.static_slider(frames, ["a"])
    with pytest.raises(ValueError, match="start must be a frame index"):
        viz.static_slider(frames, ["a", "b", "c"], start=3)


def test_denoising_explorer_precomputes_its_grid_and_solves_live(shown):
    image = data.cameraman()[100:124, 200:224]
    denoiser = widgets.DenoisingExplorer(image, seed=1)
    grid = {"eps": [0.01, 0.3], "sigma": [0.1], "beta0": [-3.0, -2.0], "bank": ["finite differences"]}
    panel = denoiser.explorer(grid, {"eps": 0.01, "sigma": 0.1, "beta0": -3.0, "bank": "finite differences"})
    assert len(panel) == 4 and len(set(panel.frames)) == 4
    assert panel.captions[0].startswith("finite differences, ε = 0.01, σ = 0.1, β0 = -3: SNR ")
    # each frame's caption reports its own solve (a first solve, from the default start)
    first = denoiser.denoise(0.01, 0.1, -3.0, "finite differences", warm_start=False)
    assert f"OGM: {denoiser.last_result.iterations} iterations" in panel.captions[0]
    assert first.shape == image.shape
    controls = _controls(panel.widget())
    assert set(controls) == {"ε", "σ", "β0", "filters"} and len(shown) == 1
    controls["β0"].value = -2.5  # not a grid value: solved live, the picture of a fresh figure
    fresh = denoiser._figure(
        denoiser._last["finite differences"][0], 0.01, 0.1, -2.5, "finite differences", caption=False
    )
    assert fresh._suptitle is None  # the setting and OGM's report are in the text under the picture
    np.testing.assert_array_equal(_pixels(shown[-1]), _pixels(viz.figure_png(fresh, dpi=72)))
    assert controls["σ"].max == widgets.DenoisingExplorer.SIGMA_MAX
    with pytest.raises(ValueError, match=r"grid\['bank'\] must hold bank names"):
        denoiser.explorer(
            {**grid, "bank": ["wavelets"]}, {"eps": 0.01, "sigma": 0.1, "beta0": -3.0, "bank": "wavelets"}
        )
    with pytest.raises(ValueError, match="grid must give values for"):
        denoiser.explorer({"eps": [0.01]}, {"eps": 0.01})


def test_display_png_shows_png_bytes_as_they_are_and_refuses_other_bytes(monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    seen = []
    monkeypatch.setattr(IPython.display, "display", lambda image: seen.append(image.data))
    fig, _ = plt.subplots(figsize=(1, 1))
    png = viz.figure_png(fig, dpi=20)
    viz.display_png(png)  # an explorer's plot may return PNG bytes (the live panel shows them)
    assert seen == [png]
    with pytest.raises(ValueError, match="fig must be a matplotlib figure or PNG bytes"):
        viz.display_png(b"not a picture")


def _pixels(png):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_denoising_canvas_redraws_in_place_the_picture_of_a_fresh_render():
    """The live panel's fast path: every picture equals, pixel for pixel, a fresh figure at the same dpi."""
    viz.use_book_style()
    image = data.cameraman()[120:184, 200:264]
    denoiser = widgets.DenoisingExplorer(image, seed=5)
    moves = [  # β0, ε and bank moves redraw x̂ in place; a σ move (new noisy image) repaints the kept figure
        (0.01, 0.1, -3.0, "finite differences"),
        (0.01, 0.1, -2.75, "finite differences"),
        (0.03, 0.1, -2.75, "finite differences"),
        (0.03, 0.1, -2.75, "DCT 3×3"),
        (0.03, 0.14, -2.75, "DCT 3×3"),
        (0.03, 0.14, -4.0, "DCT 3×3"),
        (0.1, 0.14, -4.0, "DCT 3×3"),
        (0.1, 0.3, -4.0, "DCT 3×3"),  # the largest σ: the noisy profile reaches the fixed limits
        (0.1, 0.0, -4.0, "DCT 3×3"),
    ]
    for eps, sigma, beta0, bank in moves:
        live = denoiser.live_png(eps, sigma, beta0, bank)
        fresh = denoiser._figure(denoiser._last[bank][0], eps, sigma, beta0, bank, caption=False)
        np.testing.assert_array_equal(
            _pixels(live), _pixels(viz.figure_png(fresh, dpi=72)), err_msg=f"{bank}, σ = {sigma}"
        )
        assert fresh.axes[3].get_ylim() == denoiser.profile_ylim
    canvas = denoiser._canvas
    assert canvas.fresh == 1 and canvas.repaints == 3 and canvas.blits == len(moves) - 4
    # a canvas at another dpi draws that dpi's fresh picture
    other = viz.DenoisingCanvas(image, dpi=50)
    x_hat = denoiser.denoise(0.01, 0.1, -3.0, "finite differences")
    for beta0 in (-3.0, -2.9):
        x_hat = denoiser.denoise(0.01, 0.1, beta0, "finite differences")
        png = other.png(denoiser.noisy(0.1), x_hat, "caption")
        reference = viz.figure_png(viz.plot_denoising(image, denoiser.noisy(0.1), x_hat, "caption"), dpi=50)
        np.testing.assert_array_equal(_pixels(png), _pixels(reference))
    assert other.blits == 1
    # without fixed limits: a new noisy image repaints, or builds afresh when the limits move
    png = other.png(denoiser.noisy(0.2), x_hat, "caption")
    reference = viz.figure_png(viz.plot_denoising(image, denoiser.noisy(0.2), x_hat, "caption"), dpi=50)
    np.testing.assert_array_equal(_pixels(png), _pixels(reference))
    assert other.repaints + other.fresh == 2
    with pytest.raises(ValueError, match=r"ylim must be a pair \(low, high\) of finite numbers"):
        viz.DenoisingCanvas(image, ylim=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"ylim must be a pair \(low, high\) of numbers; got 'ab'"):
        viz.plot_denoising(image, image, image, ylim="ab")
    with pytest.raises(ValueError, match=r"truth must be a 2-D image; got an array of shape \(4,\)"):
        viz.DenoisingCanvas(np.ones(4))
    with pytest.raises(ValueError, match="dpi must be a positive number; got 0"):
        viz.DenoisingCanvas(image, dpi=0)
    with pytest.raises(ValueError, match=r"denoised must have the truth's shape \(64, 64\); got \(3, 3\)"):
        other.png(image, np.ones((3, 3)))


def test_segments_meet_box_finds_a_crossing_polyline_only():
    from matplotlib.transforms import Bbox

    box = Bbox([[10.0, 10.0], [20.0, 20.0]])
    meet = viz._segments_meet_box
    assert meet(np.array([[0.0, 15.0], [30.0, 15.0]]), box)  # through the box, no point inside
    assert meet(np.array([[12.0, 12.0], [13.0, 13.0]]), box)  # inside
    assert meet(np.array([[0.0, 0.0], [30.0, 30.0]]), box)  # the diagonal
    assert not meet(np.array([[0.0, 0.0], [30.0, 5.0]]), box)  # below it
    assert not meet(np.array([[0.0, 0.0], [9.0, 30.0]]), box)  # left of it, though as high
    assert not meet(np.array([[0.0, 25.0], [15.0, 25.0], [30.0, 25.0]]), box)  # above it
    assert not meet(np.array([[0.0, 15.0], [5.0, 15.0]]), box)  # beside it, at its height
    assert not meet(np.array([[25.0, 12.0], [40.0, 18.0]]), box)  # right of it, at its height
    assert meet(np.array([[15.0, 0.0], [15.0, 30.0]]), box)  # vertical, through it
