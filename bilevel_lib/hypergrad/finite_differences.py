"""Central finite differences: the reference every analytic derivative of the book is checked against.

Introduced in the chapter "Implicit differentiation"; the hypergradient of the running example by
finite differences of ℓ(γ) is :func:`bilevel_lib.hypergrad.implicit.finite_difference_hypergradient`.
"""

from __future__ import annotations

import numpy as np

from ..util.validation import NonFiniteError, as_float_array, check_real

__all__ = ["finite_difference_gradient"]


def finite_difference_gradient(f, x, step: float = 1e-6) -> np.ndarray:
    """Central finite differences (f(x + h e_i) − f(x − h e_i)) / 2h for every entry of x.

    ``f`` maps an array shaped like ``x`` to a scalar; the result has the shape of ``x``.
    Costs 2·x.size evaluations of ``f``.  A non-finite difference quotient raises
    :class:`~bilevel_lib.util.validation.NonFiniteError` naming the entry.
    """
    if not callable(f):
        raise TypeError(f"f must be a callable array -> scalar; got {type(f).__name__}")
    x = as_float_array(x, "x")
    step = check_real(step, "step", low=0.0, low_open=True)
    grad = np.empty(x.size)
    flat = x.ravel()
    for i in range(x.size):
        bump = np.zeros(x.size)
        bump[i] = step
        grad[i] = (f((flat + bump).reshape(x.shape)) - f((flat - bump).reshape(x.shape))) / (2 * step)
        if not np.isfinite(grad[i]):
            raise NonFiniteError(
                f"finite_difference_gradient: the difference quotient for entry {i} is {grad[i]} "
                f"(f is not finite at x ± {step:g} e_{i})"
            )
    return grad.reshape(x.shape)
