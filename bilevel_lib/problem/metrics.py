"""Image-quality measures (review Sec. 3.1.1) and the relative error of an estimate.

MSE, SNR and PSNR are introduced in the chapter "The running example", the relative error in
"Implicit differentiation".  All take arrays of equal shape.  With ``per_image=True`` the first
axis is a batch of J images and one value per image is returned; otherwise the whole array counts
as one signal.
"""

from __future__ import annotations

import numpy as np

from ..util.validation import as_float_array, check_finite_result, positive_scalar

__all__ = ["mse", "snr_db", "psnr_db", "relative_error"]


def _pair(estimate, truth, per_image, names=("estimate", "truth")):
    estimate = as_float_array(estimate, names[0])
    truth = as_float_array(truth, names[1])
    if not isinstance(per_image, (bool, np.bool_)):
        raise TypeError(f"per_image must be True or False; got {per_image!r}")
    if estimate.shape != truth.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got {estimate.shape} and {truth.shape}")
    if per_image and truth.ndim < 2:
        raise ValueError(f"per_image=True needs a leading batch axis (J, ...); got shape {truth.shape}")
    axes = tuple(range(1, truth.ndim)) if per_image else None
    return estimate, truth, axes


def mse(estimate, truth, per_image: bool = False):
    """Mean squared error (1/N)‖x̂ − x^true‖²."""
    estimate, truth, axes = _pair(estimate, truth, per_image)
    with np.errstate(over="ignore"):
        value = np.mean(np.square(estimate - truth), axis=axes)
    check_finite_result(value, "mse", "the mean squared error", "it overflows float64 (huge entries)")
    return value


def _log10_sum_squares(values, axes, scale):
    """log10 Σ values², computed on values/scale so that huge entries do not overflow."""
    with np.errstate(divide="ignore"):
        return np.log10(np.sum(np.square(values / scale), axis=axes)) + 2.0 * np.log10(scale)


def _scale(*arrays) -> float:
    return max(max(float(np.max(np.abs(a), initial=0.0)) for a in arrays), 1e-300)


def snr_db(estimate, truth, per_image: bool = False):
    """SNR in dB, 10 log10(‖x^true‖² / ‖x̂ − x^true‖²) (review eq. 3.2); +inf for a perfect estimate."""
    estimate, truth, axes = _pair(estimate, truth, per_image)
    scale = _scale(estimate, truth)
    return 10.0 * (_log10_sum_squares(truth, axes, scale) - _log10_sum_squares(estimate - truth, axes, scale))


def psnr_db(estimate, truth, per_image: bool = False, data_range: float | None = None):
    """Peak SNR in dB, 10 log10(peak² / MSE).

    The peak is ``data_range`` if given, else ``max|x^true|``.  (The review's eq. after (3.2) prints the
    peak unsquared; we use the standard squared peak, as scikit-image does.)  +inf for a perfect
    estimate; computed in the log domain, so huge values do not overflow.
    """
    estimate, truth, axes = _pair(estimate, truth, per_image)
    peak = np.max(np.abs(truth), axis=axes) if data_range is None else positive_scalar(data_range, "data_range")
    if np.any(peak == 0):
        raise ValueError("the truth is zero (max|x^true| = 0), so the peak of the PSNR is undefined; give data_range")
    scale = _scale(estimate, truth)
    count = truth.size if axes is None else int(np.prod(truth.shape[1:]))
    log_mse = _log10_sum_squares(estimate - truth, axes, scale) - np.log10(count)
    return 20.0 * np.log10(peak) - 10.0 * log_mse


def relative_error(estimate, reference, per_image: bool = False):
    """Relative error ‖estimate − reference‖ / ‖reference‖ in the Euclidean (Frobenius) norm.

    The book compares every derivative estimate with a reference this way (a hypergradient
    against finite differences, an unrolled gradient against the implicit one).  Introduced in
    the chapter "Implicit differentiation"; also used in "Unrolling", "Translation to a single
    level" and "CVXPY and diffcp".

    Parameters
    ----------
    estimate, reference : array_like, same shape
        For example two hypergradients of shape (R,).  Shapes must match exactly: flatten
        both first (``np.ravel``) if one is a flat vector and the other is not.
    per_image : bool
        If True, the first axis is a batch of J items and one error per item is returned.

    Returns
    -------
    float, or array (J,) with ``per_image=True``

    Raises
    ------
    ValueError
        If the shapes differ, an entry is not finite (``TypeError`` if an input is not numeric),
        or the reference is zero (for any item
        with ``per_image=True``), where the relative error is undefined.
    """
    estimate, reference, axes = _pair(estimate, reference, per_image, names=("estimate", "reference"))
    # norms of the arrays scaled to a largest entry of 1: no overflow for huge entries
    size = max(float(np.max(np.abs(reference), initial=0.0)), float(np.max(np.abs(estimate), initial=0.0)), 1e-300)
    estimate, reference = estimate / size, reference / size
    if axes is None:
        scale, distance = np.linalg.norm(reference.ravel()), np.linalg.norm((estimate - reference).ravel())
    else:
        items = reference.shape[0]
        scale = np.linalg.norm(reference.reshape(items, -1), axis=1)
        distance = np.linalg.norm((estimate - reference).reshape(items, -1), axis=1)
    if np.any(scale == 0):
        which = "" if axes is None else f" for item(s) {np.flatnonzero(scale == 0).tolist()}"
        raise ValueError(
            f"the reference is zero{which}, so the relative error is undefined; compare absolute errors instead"
        )
    return float(distance / scale) if axes is None else distance / scale
