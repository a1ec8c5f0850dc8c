"""Hand-crafted and random filter banks, shape ``(K, *filter_shape)`` (Ch. "The running example").

* finite differences: the filters of (anisotropic) total variation;
* DCT: the orthonormal DCT-II basis minus its constant (DC) atom, scaled by 1/√S as in the
  review's experiments (App. D.2), so a 7×7 filter has norm 1/7;
* random: Gaussian taps, each filter scaled to unit norm (App. D.1).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..util.validation import check_count, check_generator

__all__ = ["finite_differences", "dct_filters", "random_filters", "FILTER_BANKS"]


def finite_differences(ndim: int = 2) -> np.ndarray:
    """First-order finite differences along each axis.

    ndim=1 gives one filter [−1, 1], shape (1, 2).  ndim=2 gives a horizontal and a vertical
    difference on a 2×2 support, shape (2, 2, 2): z = x[i, j+1] − x[i, j] and x[i+1, j] − x[i, j].
    """
    ndim = check_count(ndim, "ndim")
    if ndim == 1:
        return np.array([[-1.0, 1.0]])
    if ndim == 2:
        bank = np.zeros((2, 2, 2))
        bank[0, 0, 0], bank[0, 0, 1] = -1.0, 1.0  # horizontal
        bank[1, 0, 0], bank[1, 1, 0] = -1.0, 1.0  # vertical
        return bank
    raise ValueError(f"ndim must be 1 or 2; got {ndim}")


def dct_filters(size: int, ndim: int = 2, include_dc: bool = False) -> np.ndarray:
    """The S = size**ndim DCT-II basis filters of one side ``size``, scaled by 1/√S.

    Without the DC atom there are K = S − 1 filters (48 for 7×7, 8 for 3×3), ordered by
    frequency index in C order.  Each has ℓ2 norm 1/√S.
    """
    size = check_count(size, "size", minimum=2)
    ndim = check_count(ndim, "ndim")
    if not isinstance(include_dc, (bool, np.bool_)):
        raise TypeError(f"include_dc must be True or False; got {include_dc!r}")
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2; got {ndim}")
    basis_1d = sfft.idct(np.eye(size), norm="ortho", axis=0).T  # rows: orthonormal DCT-II atoms
    if ndim == 1:
        bank = basis_1d
    else:
        bank = np.einsum("ai,bj->abij", basis_1d, basis_1d).reshape(size * size, size, size)
    bank = bank / np.sqrt(bank[0].size)
    return bank if include_dc else bank[1:]


def random_filters(n_filters: int, shape, rng: np.random.Generator | int) -> np.ndarray:
    """``n_filters`` Gaussian random filters of the given shape, each scaled to unit ℓ2 norm."""
    n_filters = check_count(n_filters, "n_filters")
    rng = check_generator(rng, "rng")
    if np.isscalar(shape):
        shape = (check_count(shape, "shape"),)
    else:
        try:
            shape = tuple(check_count(s, "shape entries") for s in shape)
        except TypeError as err:
            raise TypeError(f"shape must be a positive integer or a tuple of them; got {shape!r}") from err
        if not shape:
            raise ValueError("shape must have at least one axis; got ()")
    bank = rng.standard_normal((n_filters,) + shape)
    return bank / np.linalg.norm(bank.reshape(n_filters, -1), axis=1).reshape((-1,) + (1,) * len(shape))


#: the hand-crafted banks by name (a function with no argument that returns the bank), as the
#: widgets of Ch. "The running example" offer them
FILTER_BANKS = {
    "finite differences": lambda: finite_differences(2),
    "DCT 3×3": lambda: dct_filters(3),
    "DCT 5×5": lambda: dct_filters(5),
}
