"""Input validation shared by the modules: clear errors that say what was expected and what came."""

from __future__ import annotations

import numpy as np

__all__ = ["as_float_array", "positive_scalar"]


def as_float_array(value, name: str, *, ndim: int | None = None, min_ndim: int | None = None) -> np.ndarray:
    """Return ``value`` as a finite float64 array, or raise a ``ValueError`` naming ``name``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers; got {type(value).__name__}") from err
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {array.shape}")
    if min_ndim is not None and array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s); got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} must be finite; it has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}")
    return array


def positive_scalar(value, name: str) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise ``ValueError``."""
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a positive number; got {value!r}") from err
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number
