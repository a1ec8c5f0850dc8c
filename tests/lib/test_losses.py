"""The upper-level losses beside the squared error (review Sec. 3.1): Huber and 1 − SSIM.

SSIM's value is checked against scikit-image's ``structural_similarity`` with matching options on
several images, both gradients against central finite differences in random directions, the Huber
loss against its direct formula and its limits, and both losses inside the implicit hypergradient
against finite differences of the upper-level objective with the inner problem solved tightly.
"""

import numpy as np
import pytest
from skimage import data as skdata
from skimage.metrics import structural_similarity

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.problem import data
from bilevel_lib.problem.metrics import relative_error

#: (window options of SSIMLoss, the matching options of scikit-image)
SSIM_OPTIONS = {
    "gaussian": (dict(window="gaussian"), dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)),
    "gaussian-1-sample": (
        dict(window="gaussian", sigma=1.0, sample_covariance=True),
        dict(gaussian_weights=True, sigma=1.0, use_sample_covariance=True),
    ),
    "uniform-7-sample": (
        dict(window="uniform", win_size=7, sample_covariance=True),
        dict(win_size=7, use_sample_covariance=True),
    ),
    "uniform-5": (dict(window="uniform", win_size=5), dict(win_size=5, use_sample_covariance=False)),
}


def images():
    """Several image pairs (J, H, W): cameraman patches, a texture with noise, random, a non-square crop."""
    rng = np.random.default_rng(3)
    patches = data.cameraman_patches()
    brick = skdata.brick()[:40, :36] / 255.0
    rand = rng.random((2, 24, 24))
    return {
        "cameraman-noisy": (patches, patches + 0.1 * rng.standard_normal(patches.shape)),
        "brick-blurred": (brick[None], (0.5 * (brick + np.roll(brick, 1, axis=1)))[None]),
        "random": (rand, rand + 0.3 * rng.standard_normal(rand.shape)),
        "scaled": (3.0 * rand[:1, :19, :], 2.0 * rand[:1, :19, :] + 0.5),
    }


@pytest.mark.parametrize("option", list(SSIM_OPTIONS))
@pytest.mark.parametrize("pair", list(images()))
def test_ssim_matches_scikit_image(option, pair):
    truth, x = images()[pair]
    ours, theirs = SSIM_OPTIONS[option]
    data_range = 3.0 if pair == "scaled" else 1.0
    loss = bl.SSIMLoss(truth, data_range, **ours)
    reference = [structural_similarity(x[j], truth[j], data_range=data_range, **theirs) for j in range(len(x))]
    np.testing.assert_allclose(loss.ssim(x), reference, rtol=0, atol=1e-10)
    assert loss.value(x) == pytest.approx(1.0 - np.mean(reference), abs=1e-10)
    assert loss.value(truth) == pytest.approx(0.0, abs=1e-12)  # SSIM(x, x) = 1


def directional_fd(f, x, d, h):
    return (f(x + h * d) - f(x - h * d)) / (2 * h)


@pytest.mark.parametrize("option", list(SSIM_OPTIONS))
def test_ssim_gradient_matches_finite_differences(option):
    rng = np.random.default_rng(11)
    truth, x = images()["cameraman-noisy"]
    loss = bl.SSIMLoss(truth, 1.0, **SSIM_OPTIONS[option][0])
    gradient = loss.gradient(x)
    assert gradient.shape == x.shape
    for _ in range(4):
        d = rng.standard_normal(x.shape)
        fd = directional_fd(loss.value, x, d, 1e-5)
        assert np.sum(gradient * d) == pytest.approx(fd, rel=1e-6)  # FD round-off ≈ 1e-15/h
    # entry by entry on a small image (the border, where the window is cut, included)
    small_truth, small_x = truth[:1, :13, :14], x[:1, :13, :14]
    small = bl.SSIMLoss(small_truth, 1.0, **SSIM_OPTIONS[option][0])
    fd = np.zeros(small_x.size)
    for i in range(small_x.size):
        e = np.zeros(small_x.size)
        e[i] = 1.0
        fd[i] = directional_fd(small.value, small_x, e.reshape(small_x.shape), 1e-5)
    # h = 1e-5 balances truncation (~h²) and round-off (~1e-15/h): errors seen ≈ 3e-10, |∇| up to 0.2
    np.testing.assert_allclose(small.gradient(small_x).ravel(), fd, atol=2e-9)


def test_ssim_gradient_vanishes_at_the_truth_and_points_downhill():
    truth, x = images()["cameraman-noisy"]
    loss = bl.SSIMLoss(truth, 1.0)
    np.testing.assert_allclose(loss.gradient(truth), 0.0, atol=1e-12)
    step = x - 1e-2 * loss.gradient(x) / np.abs(loss.gradient(x)).max()
    assert loss.value(step) < loss.value(x)


def test_huber_matches_its_formula_and_its_limits():
    rng = np.random.default_rng(5)
    truth = rng.standard_normal((3, 9, 7))
    x = truth + rng.standard_normal(truth.shape)
    delta = 0.4
    loss = bl.HuberLoss(truth, delta)
    r = (x - truth).ravel()
    direct = sum(0.5 * ri**2 if abs(ri) <= delta else delta * abs(ri) - 0.5 * delta**2 for ri in r) / 3
    assert loss.value(x) == pytest.approx(direct, rel=1e-14)
    assert 0.05 < np.mean(np.abs(r) > delta) < 0.95  # both branches are exercised
    np.testing.assert_allclose(loss.gradient(x).ravel(), np.clip(r, -delta, delta) / 3, rtol=1e-14)
    # δ above every |r|: the squared error; δ → 0: δ times the ℓ1 error
    mse = bl.SquaredErrorLoss(truth)
    assert bl.HuberLoss(truth, 10.0 * np.abs(r).max()).value(x) == pytest.approx(mse.value(x), rel=1e-14)
    np.testing.assert_allclose(bl.HuberLoss(truth, 1e3).gradient(x), mse.gradient(x), rtol=1e-14)
    tiny = 1e-8
    assert bl.HuberLoss(truth, tiny).value(x) / tiny == pytest.approx(np.abs(r).sum() / 3, rel=1e-6)
    assert loss.lipschitz == pytest.approx(1 / 3)


def test_huber_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    truth = rng.standard_normal((2, 8, 8))
    x = truth + rng.standard_normal(truth.shape)
    loss = bl.HuberLoss(truth, 0.5)
    gradient = loss.gradient(x)
    for _ in range(4):
        d = rng.standard_normal(x.shape)
        assert np.sum(gradient * d) == pytest.approx(directional_fd(loss.value, x, d, 1e-6), rel=1e-7)


def inpainting_or_denoising(model, seed=0):
    """A small (Ex) with images in [0, 1]: denoising or a 60 %-missing pixel mask."""
    rng = np.random.default_rng(seed)
    truth = data.cameraman_patches()[:2, :14, :14]
    if model == "mask":
        A = bl.PixelMask(rng.random((14, 14)) > 0.6)
    else:
        A = bl.Identity()
    y = A.forward(truth) + 0.08 * rng.standard_normal(truth.shape)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.05), A)
    filters = rng.standard_normal((3, 2, 2)) / 2
    params = bl.Hyperparameters(beta0=-2.0, beta=rng.uniform(-0.5, 0.5, 3), filters=filters)
    return cost, params, truth


@pytest.mark.parametrize("model", ["identity", "mask"])
@pytest.mark.parametrize("kind", ["huber", "ssim"])
def test_implicit_hypergradient_with_the_new_losses_matches_finite_differences(kind, model):
    cost, params, truth = inpainting_or_denoising(model)
    loss = bl.HuberLoss(truth, 0.05) if kind == "huber" else bl.SSIMLoss(truth, 1.0, window="uniform", win_size=5)
    result = hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=200_000)
    assert result.converged and result.lower.converged
    fd = hypergrad.finite_difference_hypergradient(cost, params, loss, step=1e-5, lower_tol=1e-12)
    assert fd.converged, fd.message
    fd = fd.flat()
    analytic = result.gradient.flatten()
    assert np.linalg.norm(fd) > 1e-6
    assert relative_error(analytic, fd) <= 1e-5
    sizes = np.cumsum([0, 1, params.n_filters, params.filters.size])
    for start, stop, name in zip(sizes[:-1], sizes[1:], ["beta0", "beta", "filters"]):
        assert relative_error(analytic[start:stop], fd[start:stop]) <= 1e-5, name


def test_the_losses_disagree_where_they_should():
    """A few large errors cost the squared error more than many small ones; Huber ranks them the other way."""
    truth, x = images()["cameraman-noisy"]
    outliers = truth.copy()
    outliers[:, 10, 10] += 5.0
    spread = truth + 0.05 * np.random.default_rng(0).standard_normal(truth.shape)
    mse, huber = bl.SquaredErrorLoss(truth), bl.HuberLoss(truth, 0.05)
    assert mse.value(outliers) > mse.value(spread) and huber.value(outliers) < huber.value(spread)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda t: bl.SSIMLoss(t[:, :5, :5], 1.0), "truth"),  # smaller than the 11-wide Gaussian window
        (lambda t: bl.SSIMLoss(t, 1.0, window="uniform", win_size=4), "win_size"),
        (lambda t: bl.SSIMLoss(t, 1.0, window="uniform", win_size=7.0), "win_size"),
        (lambda t: bl.SSIMLoss(t, 1.0, sigma=0.1), "sigma"),
        (lambda t: bl.SSIMLoss(t, 1.0, window="box"), "window"),
        (lambda t: bl.SSIMLoss(t, 0.0), "data_range"),
        (lambda t: bl.SSIMLoss(t, 1.0, sample_covariance="no"), "sample_covariance"),
        (lambda t: bl.HuberLoss(t, -1.0), "delta"),
    ],
)
def test_bad_options_are_refused_naming_them(make, match):
    truth = images()["cameraman-noisy"][0]
    with pytest.raises((ValueError, TypeError), match=match):
        make(truth)
