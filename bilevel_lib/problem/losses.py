"""Upper-level losses ℓ(γ) = ℓ(x̂(γ)) and their gradients in x (Ch. "Tuning β").

A loss is any object with ``value(x)`` (a float) and ``gradient(x)`` (an array of x's shape); the
hypergradient estimators accept any such object, so other losses can be added beside this one.
"""

from __future__ import annotations

import numpy as np

from ..util.validation import as_float_array, check_finite_result

__all__ = ["UpperLoss", "SquaredErrorLoss"]


class UpperLoss:
    """Interface of an upper-level loss: ``value(x)`` and ``gradient(x)`` for a batch x (J, …)."""

    def value(self, x) -> float:  # pragma: no cover - interface
        """ℓ(x) for a batch x of shape (J, …) of lower-level solutions, a float."""
        raise TypeError(f"{type(self).__name__} does not define value()")

    def gradient(self, x) -> np.ndarray:  # pragma: no cover - interface
        """∇ₓℓ(x), of x's shape (J, …): the right-hand side of the Hessian system (review eq. 4.10)."""
        raise TypeError(f"{type(self).__name__} does not define gradient()")


class SquaredErrorLoss(UpperLoss):
    """ℓ(x̂) = (1/J) Σ_j ½‖x̂_j − x_j^true‖², the loss of (Ex) averaged over J training pairs.

    Its gradient is ∇ₓℓ = (x̂ − x^true)/J (review eq. 4.9, last line, with the 1/J of (1.5)).
    """

    def __init__(self, truth):
        truth = as_float_array(truth, "truth", min_ndim=2)
        if truth.size == 0:
            raise ValueError(f"truth must hold at least one image with at least one sample; got shape {truth.shape}")
        self.truth = truth

    def _check(self, x):
        x = as_float_array(x, "x")
        if x.shape != self.truth.shape:
            raise ValueError(
                f"x must have the shape of the loss's truth (the training images), {self.truth.shape}; got {x.shape}"
            )
        return x

    def value(self, x) -> float:
        x = self._check(x)
        with np.errstate(over="ignore"):
            value = float(0.5 * np.sum(np.square(x - self.truth)) / self.truth.shape[0])
        check_finite_result(
            value, "SquaredErrorLoss.value", "½‖x − x^true‖²/J", "it overflows float64 (huge x or truth)"
        )
        return value

    def gradient(self, x) -> np.ndarray:
        x = self._check(x)
        with np.errstate(over="ignore"):
            gradient = (x - self.truth) / self.truth.shape[0]
        check_finite_result(gradient, "SquaredErrorLoss.gradient", "(x − x^true)/J", "it overflows float64")
        return gradient

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant 1/J of ∇ₓℓ (used by error bounds)."""
        return 1.0 / self.truth.shape[0]
