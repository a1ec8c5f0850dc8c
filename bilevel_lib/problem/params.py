"""The hyperparameters γ = (β0, β_k, c_k) of (Ex) in one container (Ch. "The running example").

Optimisers and finite differences work on a flat vector; :meth:`Hyperparameters.flatten` and
:meth:`Hyperparameters.unflatten` convert, for all of γ or only some parts of it (the review's
experiments freeze β0 after a grid search and learn β_k and the filters).  Gradients with respect
to γ are returned in the same container.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..util.validation import NonFiniteError, as_float_array

__all__ = ["Hyperparameters", "PARTS"]

#: the names of the three parts of γ, in the order of :meth:`Hyperparameters.flatten`
PARTS = ("beta0", "beta", "filters")


def check_parts(parts) -> tuple[str, ...]:
    """Validate a selection of parts of γ and put it in the canonical order of :data:`PARTS`.

    Parameters
    ----------
    parts : str or iterable of str
        One name of :data:`PARTS`, or a non-empty collection of them.

    Returns
    -------
    tuple of str
        The selected parts, without repetition, in the order of :data:`PARTS` (the order of
        :meth:`Hyperparameters.flatten`).

    Raises
    ------
    ValueError
        If ``parts`` is empty or names something that is not in :data:`PARTS`.
    TypeError
        If ``parts`` is neither a string nor a collection of strings (bytes, a dict, a number, …).
    """
    if isinstance(parts, str):  # one name, never its letters
        parts = (parts,)
    elif isinstance(parts, (bytes, dict)) or not hasattr(parts, "__iter__"):
        raise TypeError(f"parts must be a name of {PARTS} or a collection of them; got {type(parts).__name__}")
    parts = tuple(parts)
    if not all(isinstance(p, str) for p in parts):
        raise TypeError(f"parts must hold names (str) of {PARTS}; got {parts!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}; got {parts}")
    return tuple(p for p in PARTS if p in parts)  # canonical order


@dataclass(frozen=True)
class Hyperparameters:
    """γ for (Ex): regularisation strength e^{β0} Σ_k e^{β_k} 1'φ.(c_k ⊛ x).

    Attributes
    ----------
    beta0 : float
        Global log-strength β0.
    beta : array, shape (K,)
        Per-filter log-strengths β_k.
    filters : array, shape ``(K, *filter_shape)``
        Filter taps c_k, e.g. (4, 4, 2) for four 4×2 filters or (48, 7, 7).
    """

    beta0: float
    beta: np.ndarray
    filters: np.ndarray

    def __post_init__(self):
        beta0 = as_float_array(self.beta0, "beta0", ndim=0)
        filters = as_float_array(self.filters, "filters", min_ndim=2)
        beta = as_float_array(self.beta, "beta", ndim=1)
        if filters.size == 0:
            raise ValueError(f"filters must hold at least one filter of at least one tap; got shape {filters.shape}")
        if beta.shape[0] != filters.shape[0]:
            raise ValueError(
                f"beta must have one entry per filter: filters has K={filters.shape[0]}, beta has {beta.shape[0]}"
            )
        object.__setattr__(self, "beta0", float(beta0))
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "filters", filters)

    @classmethod
    def from_filters(cls, filters, beta0: float = 0.0, beta=None) -> Hyperparameters:
        """γ with the given filters, β0 and β_k = 0 (e^{β_k} = 1) unless ``beta`` is given."""
        filters = as_float_array(filters, "filters", min_ndim=2)
        if beta is None:
            beta = np.zeros(filters.shape[0] if filters.ndim else 0)
        return cls(beta0=beta0, beta=beta, filters=filters)

    @property
    def n_filters(self) -> int:
        """K."""
        return self.filters.shape[0]

    @property
    def filter_shape(self) -> tuple[int, ...]:
        """The support of one filter c_k, ``filters.shape[1:]``."""
        return self.filters.shape[1:]

    @property
    def strengths(self) -> np.ndarray:
        """e^{β0 + β_k}, the weight of each filter's penalty, shape (K,).

        Raises :class:`~bilevel_lib.util.validation.NonFiniteError` when e^{β0 + β_k} overflows
        float64 (β0 + β_k > 709.78) rather than returning infinity.
        """
        with np.errstate(over="ignore"):
            strengths = np.exp(self.beta0 + self.beta)
        if not np.isfinite(strengths).all():
            k = int(np.flatnonzero(~np.isfinite(strengths))[0])
            raise NonFiniteError(
                f"e^(β0 + β_k) overflows float64 for filter k = {k}: β0 = {self.beta0:g}, β_k = {self.beta[k]:g}, "
                f"β0 + β_k = {self.beta0 + self.beta[k]:g} > {np.log(np.finfo(float).max):.2f}; "
                "the strengths are too large (a diverging upper-level step, or a wrong β0)"
            )
        return strengths

    @property
    def effective_strengths(self) -> np.ndarray:
        """e^{β0 + β_k} ‖c_k‖₂, the approximate strength per filter of review eq. (D.1)."""
        norms = np.linalg.norm(self.filters.reshape(self.n_filters, -1), axis=1)
        return self.strengths * norms

    def _sizes(self) -> dict:
        """The number of entries of each part, by name."""
        return {"beta0": 1, "beta": self.beta.size, "filters": self.filters.size}

    def size(self, parts=PARTS) -> int:
        """Number of entries R of the chosen parts."""
        sizes = self._sizes()
        return sum(sizes[p] for p in check_parts(parts))

    def flatten(self, parts=PARTS) -> np.ndarray:
        """The chosen parts stacked into one float64 vector, in the order β0, β, filters."""
        pieces = {"beta0": np.array([self.beta0]), "beta": self.beta, "filters": self.filters.ravel()}
        return np.concatenate([pieces[p] for p in check_parts(parts)])

    def unflatten(self, vector, parts=PARTS) -> Hyperparameters:
        """A copy of γ with the chosen parts replaced by the entries of ``vector`` (inverse of flatten)."""
        parts = check_parts(parts)
        vector = as_float_array(vector, "vector", ndim=1)
        sizes = self._sizes()
        expected = sum(sizes[p] for p in parts)
        if vector.size != expected:
            raise ValueError(f"vector must have {expected} entries for parts {parts}; got {vector.size}")
        values = {"beta0": self.beta0, "beta": self.beta.copy(), "filters": self.filters.copy()}
        start = 0
        for p in parts:
            n = sizes[p]
            chunk = vector[start : start + n]
            values[p] = float(chunk[0]) if p == "beta0" else chunk.reshape(np.shape(values[p])).copy()
            start += n
        return Hyperparameters(**values)

    def copy(self) -> Hyperparameters:
        """A copy that shares no array with this γ (β and the filters are copied)."""
        return Hyperparameters(self.beta0, self.beta.copy(), self.filters.copy())

    def __add__(self, other: Hyperparameters) -> Hyperparameters:
        if not isinstance(other, Hyperparameters):
            return NotImplemented
        return Hyperparameters(self.beta0 + other.beta0, self.beta + other.beta, self.filters + other.filters)

    def __mul__(self, scale: float) -> Hyperparameters:
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)):
            return NotImplemented
        return Hyperparameters(self.beta0 * scale, self.beta * scale, self.filters * scale)

    __rmul__ = __mul__
