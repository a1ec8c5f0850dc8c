"""Upper-level optimisers on the flattened γ: gradient descent and Adam (Ch. "Single- vs double-loop").

Each optimiser is a small object with ``step(vector, gradient) -> new vector`` and its own state,
so the training loops can treat them alike.  Adam uses the default parameters of Kingma & Ba, as
the review's experiments do (Sec. 5.1, App. D).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..util.validation import NonFiniteError, as_float_array, check_real

__all__ = ["GradientDescent", "Adam"]


@dataclass
class GradientDescent:
    """γ ← γ − α ∇ℓ with a fixed step α (``learning_rate``)."""

    learning_rate: float = 1e-3

    def __post_init__(self):
        self.learning_rate = check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)

    def step(self, vector: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """One step γ − α ∇ℓ.

        Parameters
        ----------
        vector : numpy.ndarray, shape (R,)
            The current hyperparameters γ, flattened (:meth:`bilevel_lib.problem.params.Hyperparameters.flatten`).
        gradient : numpy.ndarray, shape (R,)
            The hypergradient ∇ℓ(γ) in the same layout.

        Returns
        -------
        numpy.ndarray, shape (R,)
            The new γ.
        """
        vector, gradient = _check_step(vector, gradient)
        with np.errstate(over="ignore", invalid="ignore"):
            return _checked(vector - self.learning_rate * gradient, "GradientDescent")


@dataclass
class Adam:
    """Adam: per-coordinate steps from running moments of the gradient (Kingma & Ba, 2015).

    m ← b1 m + (1 − b1) g,  v ← b2 v + (1 − b2) g²,  γ ← γ − α m̂ / (sqrt(v̂) + eps), with the
    bias corrections m̂ = m / (1 − b1^t), v̂ = v / (1 − b2^t).
    """

    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    _m: np.ndarray | None = field(default=None, init=False, repr=False)
    _v: np.ndarray | None = field(default=None, init=False, repr=False)
    _t: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        self.learning_rate = check_real(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        self.beta1 = check_real(self.beta1, "beta1", low=0.0, high=1.0, high_open=True)
        self.beta2 = check_real(self.beta2, "beta2", low=0.0, high=1.0, high_open=True)
        self.eps = check_real(self.eps, "eps", low=0.0, low_open=True)

    def step(self, vector: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """One Adam step: update the moments with ``gradient`` and return the new γ.

        Parameters
        ----------
        vector : numpy.ndarray, shape (R,)
            The current hyperparameters γ, flattened.
        gradient : numpy.ndarray, shape (R,)
            The hypergradient ∇ℓ(γ); its shape must stay the same from step to step.

        Returns
        -------
        numpy.ndarray, shape (R,)
            The new γ.

        Raises
        ------
        ValueError
            If ``vector`` or ``gradient`` is not a finite real array, their shapes differ, or the shape
            of ``gradient`` differs from that of the first step.
        """
        vector, gradient = _check_step(vector, gradient)
        if self._m is None:
            self._m = np.zeros_like(gradient)
            self._v = np.zeros_like(gradient)
        if gradient.shape != self._m.shape:
            raise ValueError(f"gradient shape changed from {self._m.shape} to {gradient.shape}")
        self._t += 1
        with np.errstate(over="ignore", invalid="ignore"):
            return self._update(vector, gradient)

    def _update(self, vector, gradient):
        self._m = self.beta1 * self._m + (1 - self.beta1) * gradient
        self._v = self.beta2 * self._v + (1 - self.beta2) * np.square(gradient)
        m_hat = self._m / (1 - self.beta1**self._t)
        v_hat = self._v / (1 - self.beta2**self._t)
        return _checked(vector - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps), "Adam")


def _check_step(vector, gradient):
    """The arguments of ``step``: finite real arrays of one shape (ValueError/TypeError naming them)."""
    vector = as_float_array(vector, "vector")
    gradient = as_float_array(gradient, "gradient")
    if gradient.shape != vector.shape:
        raise ValueError(f"gradient must have the shape of vector, {vector.shape}; got {gradient.shape}")
    return vector, gradient


def _checked(new_vector, name):
    """The new γ, or :class:`~bilevel_lib.util.validation.NonFiniteError` if the step overflowed."""
    if not np.isfinite(new_vector).all():
        raise NonFiniteError(
            f"{name}.step: the new γ is not finite (the step overflowed: huge gradient or learning rate)"
        )
    return new_vector
