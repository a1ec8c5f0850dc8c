"""Metrics against scikit-image and closed forms; seeded data; filter banks."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from bilevel_lib.problem import data, filters, metrics


def test_snr_and_mse_closed_form():
    truth = np.array([3.0, 4.0])  # ‖x‖² = 25
    estimate = truth + np.array([1.0, 0.0])  # ‖e‖² = 1
    assert metrics.snr_db(estimate, truth) == pytest.approx(10 * np.log10(25.0))
    assert metrics.mse(estimate, truth) == pytest.approx(0.5)


def test_perfect_estimate_has_infinite_snr_without_warning():
    truth = np.array([1.0, -2.0])
    assert metrics.snr_db(truth, truth) == np.inf
    assert metrics.psnr_db(truth, truth) == np.inf


def test_psnr_matches_scikit_image():
    rng = np.random.default_rng(0)
    truth = rng.random((20, 20))
    estimate = truth + 0.05 * rng.standard_normal(truth.shape)
    assert metrics.psnr_db(estimate, truth, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(truth, estimate, data_range=1.0), rel=1e-12
    )


def test_per_image_metrics():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((3, 8, 8))
    estimate = truth + 0.1 * rng.standard_normal(truth.shape)
    per = metrics.snr_db(estimate, truth, per_image=True)
    assert per.shape == (3,)
    assert per[1] == pytest.approx(metrics.snr_db(estimate[1], truth[1]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.snr_db(estimate[:, :4], truth)
    with pytest.raises(ValueError, match="batch axis"):
        metrics.mse(truth[0, 0], truth[0, 0], per_image=True)


def test_vertical_bars_are_the_review_image():
    bars = data.vertical_bars()
    assert bars.shape == (32, 32)
    assert np.sum(bars**2) == pytest.approx(192.0)
    assert abs(bars.mean()) < 1e-15
    np.testing.assert_allclose(bars[5, :8], [0.75, -0.25, -0.25, -0.25] * 2)  # xtrue[:, 1:4:end] .= 1
    np.testing.assert_allclose(bars, bars[:1].repeat(32, axis=0))  # constant down columns


def test_noisy_bars_snr_is_about_13_db():
    bars = data.vertical_bars()
    snrs = [metrics.snr_db(data.add_noise(bars, 25 / 255, rng=seed), bars) for seed in range(20)]
    assert 12.5 < np.mean(snrs) < 13.5  # 10 log10(192 / (1024 σ²)) = 12.9 dB on average


def test_noise_is_seeded():
    x = np.zeros((4, 5))
    np.testing.assert_array_equal(data.add_noise(x, 0.1, 7), data.add_noise(x, 0.1, 7))
    assert not np.array_equal(data.add_noise(x, 0.1, 7), data.add_noise(x, 0.1, 8))
    assert np.std(data.add_noise(np.zeros(200_000), 0.3, 0)) == pytest.approx(0.3, rel=0.01)
    with pytest.raises(ValueError, match="sigma"):
        data.add_noise(x, -1.0, 0)


def test_piecewise_constant_signals_have_the_requested_jumps():
    signals = data.piecewise_constant_1d(64, 50, rng=3, n_jumps=5)
    assert signals.shape == (50, 64)
    jumps = np.count_nonzero(np.diff(signals, axis=1), axis=1)
    assert np.all(jumps == 5)
    np.testing.assert_array_equal(signals, data.piecewise_constant_1d(64, 50, rng=3, n_jumps=5))


def test_dct_sparse_signals_are_sparse_in_the_dct():
    from scipy.fft import dct

    signals = data.dct_sparse_1d(32, 10, rng=4, sparsity=3)
    coefficients = dct(signals, norm="ortho", axis=1)
    assert np.all(np.count_nonzero(np.abs(coefficients) > 1e-12, axis=1) == 3)


def test_cameraman_patches_have_structure():
    patches = data.cameraman_patches()
    assert patches.shape == (3, 50, 50)
    assert patches.min() >= 0.0 and patches.max() <= 1.0
    assert np.all(patches.std(axis=(1, 2)) > 0.05)  # hand-picked to contain edges
    np.testing.assert_array_equal(patches[0], data.cameraman()[310:360, 220:270])


def test_dct_filters_follow_the_review_scaling():
    bank = filters.dct_filters(7)
    assert bank.shape == (48, 7, 7)
    np.testing.assert_allclose(np.linalg.norm(bank.reshape(48, -1), axis=1), 1 / 7)
    np.testing.assert_allclose(bank.sum(axis=(1, 2)), 0.0, atol=1e-14)  # DC removed: zero-mean
    gram = bank.reshape(48, -1) @ bank.reshape(48, -1).T
    np.testing.assert_allclose(gram, np.eye(48) / 49, atol=1e-14)  # orthogonal
    assert filters.dct_filters(3).shape == (8, 3, 3)
    np.testing.assert_allclose(np.linalg.norm(filters.dct_filters(3)[0]), 1 / 3)
    assert filters.dct_filters(8, ndim=1).shape == (7, 8)
    assert filters.dct_filters(3, include_dc=True).shape == (9, 3, 3)


def test_finite_difference_filters_annihilate_constants():
    for ndim, shape in [(1, (10,)), (2, (6, 7))]:
        from bilevel_lib.problem.ops import correlate

        bank = filters.finite_differences(ndim)
        np.testing.assert_allclose(correlate(np.full(shape, 3.0), bank), 0.0, atol=1e-13)
    with pytest.raises(ValueError, match="ndim"):
        filters.finite_differences(3)


def test_random_filters_are_seeded_and_unit_norm():
    bank = filters.random_filters(4, (4, 2), rng=11)
    assert bank.shape == (4, 4, 2)
    np.testing.assert_allclose(np.linalg.norm(bank.reshape(4, -1), axis=1), 1.0)
    np.testing.assert_array_equal(bank, filters.random_filters(4, (4, 2), rng=11))
