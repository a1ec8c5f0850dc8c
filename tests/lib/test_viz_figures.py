"""The chapters' figures show what they claim: the noise is not clipped away, the stacked layout
draws the images large, and curves that cross get distinct colours."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bilevel_lib.book import viz  # noqa: E402
from bilevel_lib.problem import data  # noqa: E402


@pytest.mark.parametrize("layout", ["row", "stacked"])
def test_denoising_images_share_a_scale_that_holds_the_noise(layout):
    viz.use_book_style()
    truth = data.vertical_bars((32, 32))
    noisy = data.add_noise(truth, 25 / 255, 0)
    fig = viz.plot_denoising(truth, noisy, truth, layout=layout)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    for image in images:  # one scale for all three, wide enough for every noisy pixel
        assert image.get_clim() == (noisy.min(), noisy.max())
    # the old scale (the truth's range) saturated about half the noisy pixels
    clipped = np.mean((noisy < truth.min()) | (noisy > truth.max()))
    assert clipped > 0.3
    plt.close(fig)


def test_stacked_layout_draws_each_image_on_a_third_of_the_width():
    viz.use_book_style()
    truth = data.vertical_bars((32, 32))
    noisy = data.add_noise(truth, 0.1, 1)
    row = viz.plot_denoising(truth, noisy, truth)
    stacked = viz.plot_denoising(truth, noisy, truth, layout="stacked")

    def image_width_in(fig):
        fig.canvas.draw()
        ax = next(ax for ax in fig.axes if ax.images)
        return ax.get_window_extent().width / fig.dpi

    assert image_width_in(stacked) > 1.4 * image_width_in(row)
    assert image_width_in(stacked) > 2.2  # inches at 100 dpi: over 220 px per image
    profile = [ax for ax in stacked.axes if not ax.images]
    assert len(profile) == 1 and profile[0].get_window_extent().width / stacked.dpi > 7
    plt.close("all")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"layout": "grid"}, "layout must be 'row' or 'stacked'"), ({"width": 0}, "width must be a positive")],
)
def test_denoising_plot_rejects_bad_settings(kwargs, message):
    truth = np.zeros((8, 8))
    with pytest.raises(ValueError, match=message):
        viz.plot_denoising(truth, truth, truth, **kwargs)


def test_the_first_four_curve_colours_are_far_apart():
    """Four crossing curves (penalty for four ε, four truncation depths) take the first four
    colours of the book's cycle: no two may be near each other (RGB distance)."""
    colours = [mcolors.to_rgb(c) for c in viz.BOOK_STYLE["axes.prop_cycle"].by_key()["color"][:4]]
    distances = [np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(colours) for b in colours[i + 1 :]]
    assert min(distances) > 0.35, distances
