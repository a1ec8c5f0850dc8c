"""Image-quality measures (review Sec. 3.1.1).  Introduced in the chapter "The running example".

All take arrays of equal shape.  With ``per_image=True`` the first axis is a batch of J images and
one value per image is returned; otherwise the whole array counts as one signal.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array

__all__ = ["mse", "snr_db", "psnr_db"]


def _pair(estimate, truth, per_image):
    estimate = as_float_array(estimate, "estimate")
    truth = as_float_array(truth, "truth")
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate and truth must have the same shape; got {estimate.shape} and {truth.shape}")
    if per_image and truth.ndim < 2:
        raise ValueError(f"per_image=True needs a leading batch axis (J, ...); got shape {truth.shape}")
    axes = tuple(range(1, truth.ndim)) if per_image else None
    return estimate, truth, axes


def mse(estimate, truth, per_image: bool = False):
    """Mean squared error (1/N)‖x̂ − x^true‖²."""
    estimate, truth, axes = _pair(estimate, truth, per_image)
    return np.mean(np.square(estimate - truth), axis=axes)


def snr_db(estimate, truth, per_image: bool = False):
    """SNR in dB, 10 log10(‖x^true‖² / ‖x̂ − x^true‖²) (review eq. 3.2); +inf for a perfect estimate."""
    estimate, truth, axes = _pair(estimate, truth, per_image)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.sum(np.square(truth), axis=axes) / np.sum(np.square(estimate - truth), axis=axes))


def psnr_db(estimate, truth, per_image: bool = False, data_range: float | None = None):
    """Peak SNR in dB, 10 log10(peak² / MSE).

    The peak is ``data_range`` if given, else max|x^true|.  (The review's eq. after (3.2) prints the
    peak unsquared; we use the standard squared peak, as scikit-image does.)
    """
    estimate, truth, axes = _pair(estimate, truth, per_image)
    peak = np.max(np.abs(truth), axis=axes) if data_range is None else float(data_range)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.square(peak) / np.mean(np.square(estimate - truth), axis=axes))
