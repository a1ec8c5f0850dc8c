"""Upper-level optimizers on the flattened γ: gradient descent and Adam (Ch. "Single- vs double-loop").

Each optimizer is a small object with ``step(vector, gradient) -> new vector`` and its own state,
so the training loops can treat them alike.  Adam uses the default parameters of Kingma & Ba, as
the review's experiments do (Sec. 5.1, App. D).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GradientDescent", "Adam"]


@dataclass
class GradientDescent:
    """γ ← γ − α ∇ℓ with a fixed step α (``learning_rate``)."""

    learning_rate: float = 1e-3

    def __post_init__(self):
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number; got {self.learning_rate!r}")

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
        return vector - self.learning_rate * gradient


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
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number; got {self.learning_rate!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1); got {self.beta1}, {self.beta2}")

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
            If the shape of ``gradient`` differs from that of the first step.
        """
        gradient = np.asarray(gradient, dtype=np.float64)
        if self._m is None:
            self._m = np.zeros_like(gradient)
            self._v = np.zeros_like(gradient)
        if gradient.shape != self._m.shape:
            raise ValueError(f"gradient shape changed from {self._m.shape} to {gradient.shape}")
        self._t += 1
        self._m = self.beta1 * self._m + (1 - self.beta1) * gradient
        self._v = self.beta2 * self._v + (1 - self.beta2) * np.square(gradient)
        m_hat = self._m / (1 - self.beta1**self._t)
        v_hat = self._v / (1 - self.beta2**self._t)
        return vector - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)
