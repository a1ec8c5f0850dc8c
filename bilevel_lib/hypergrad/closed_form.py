"""The exact case φ(z) = z²: the lower level of (Ex) is linear and everything has a closed form.

With φ(z) = z² and a circulant A (identity or circular blur), every operator in

    ∇ₓₓΦ = M = A'A + 2 e^{β0} Σ_k e^{β_k} C_k'C_k

is diagonalised by the DFT, so x̂ = M⁻¹A'y is a division of spectra and the hypergradient is
exact (review Sec. 4.2, Fig. 5.1; Kunisch & Pock discuss this case).  Writing D(ω) for the
spectrum of M, q = M⁻¹∇ₓℓ and G(ω) = Re Σ_j conj(q̂_j(ω)) x̂_j(ω) (DFT without normalisation)::

    ∂ℓ/∂β_k   = −(2 w_k / N) Σ_ω G(ω) |ĉ_k(ω)|²
    ∂ℓ/∂c_k,s = −(4 w_k / N) Re Σ_ω G(ω) conj(ĉ_k(ω)) e^{−2πi⟨ω,s⟩/N}

with w_k = e^{β0+β_k}.  This module shares no code with the spatial operators in
:mod:`bilevel_lib.problem.ops`, so it is an independent check of the implicit hypergradient.
Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

import time

import numpy as np

from ..problem.forward_models import CircularBlur, ForwardModel, Identity
from ..problem.params import Hyperparameters
from ..problem.penalties import Quadratic
from ..util.validation import as_float_array
from .result import HypergradientResult, check_finite_estimate

__all__ = ["quadratic_solution", "quadratic_hypergradient", "quadratic_estimator"]


def _spectra(y, params: Hyperparameters, forward_model: ForwardModel):
    y = as_float_array(y, "y", min_ndim=2)
    if not isinstance(params, Hyperparameters):
        raise TypeError(f"params must be a Hyperparameters instance; got {type(params).__name__}")
    if not isinstance(forward_model, ForwardModel):
        raise TypeError(f"forward_model must be a ForwardModel; got {type(forward_model).__name__}")
    signal_shape = y.shape[1:]
    if params.filters.ndim - 1 != len(signal_shape):
        raise ValueError(f"filters {params.filters.shape} do not match signals of shape {signal_shape}")
    if any(f > n for f, n in zip(params.filter_shape, signal_shape)):
        raise ValueError(
            f"each filter must fit inside the signal: filter shape {params.filter_shape} is larger than "
            f"the signal shape {signal_shape} of y along some axis (the circular correlation would wrap it)"
        )
    model_shape = getattr(forward_model, "signal_shape", None)
    if model_shape is not None and tuple(model_shape) != signal_shape:
        raise ValueError(
            f"y must have shape (J, *{tuple(model_shape)}) to match the forward model "
            f"{type(forward_model).__name__}; got {y.shape}"
        )
    axes = tuple(range(1, y.ndim))
    if isinstance(forward_model, Identity):
        a_hat = np.ones(signal_shape)
    elif isinstance(forward_model, CircularBlur):
        # the full spectrum of A from its public kernel (padded and centred as CircularBlur does)
        kernel = np.asarray(forward_model.kernel, dtype=np.float64)
        spatial_axes = tuple(range(len(signal_shape)))
        padded = np.zeros(signal_shape)
        padded[tuple(slice(0, k) for k in kernel.shape)] = kernel
        padded = np.roll(padded, tuple(-(k // 2) for k in kernel.shape), axis=spatial_axes)
        a_hat = np.fft.fftn(padded)
    else:
        raise TypeError(
            f"the closed form needs a circulant A (Identity or CircularBlur); got {type(forward_model).__name__}"
        )
    c_hat = np.fft.fftn(params.filters, s=signal_shape, axes=tuple(range(1, params.filters.ndim)))
    weights = params.strengths.reshape((-1,) + (1,) * len(signal_shape))
    denominator = np.abs(a_hat) ** 2 + 2.0 * np.sum(weights * np.abs(c_hat) ** 2, axis=0)
    y_hat = np.fft.fftn(y, axes=axes)
    return y, axes, a_hat, c_hat, weights, denominator, y_hat


def quadratic_solution(y, params: Hyperparameters, forward_model: ForwardModel | None = None) -> np.ndarray:
    """x̂ = (A'A + 2 Σ_k w_k C_k'C_k)⁻¹ A'y for φ(z) = z², by division of spectra.  Shape of y."""
    forward_model = Identity() if forward_model is None else forward_model
    y, axes, a_hat, _, _, denominator, y_hat = _spectra(y, params, forward_model)
    return np.real(np.fft.ifftn(np.conj(a_hat) * y_hat / denominator, axes=axes))


def quadratic_hypergradient(
    y, truth, params: Hyperparameters, forward_model: ForwardModel | None = None
) -> HypergradientResult:
    """Exact ∇ℓ(γ) and ℓ(γ) for ℓ = (1/J) Σ_j ½‖x̂_j − x_j^true‖² and φ(z) = z² (review eq. 4.8 in closed form).

    Returns
    -------
    HypergradientResult
        The gradient as :class:`~bilevel_lib.problem.params.Hyperparameters`, the loss, x̂; no iterations (everything is a
        division of spectra), ``converged`` always True, diagnostics ``lower_residual`` = 0.
    """
    start = time.perf_counter()
    forward_model = Identity() if forward_model is None else forward_model
    y, axes, a_hat, c_hat, weights, denominator, y_hat = _spectra(y, params, forward_model)
    truth = as_float_array(truth, "truth")
    if truth.shape != y.shape:
        raise ValueError(f"truth must have the shape of y, {y.shape}; got {truth.shape}")
    n_images, n = y.shape[0], int(np.prod(y.shape[1:]))
    x_hat_spec = np.conj(a_hat) * y_hat / denominator
    x_hat = np.real(np.fft.ifftn(x_hat_spec, axes=axes))
    residual = (x_hat - truth) / n_images
    q_spec = np.fft.fftn(residual, axes=axes) / denominator
    g = np.real(np.sum(np.conj(q_spec) * x_hat_spec, axis=0))  # G(ω)
    d_beta = -(2.0 / n) * weights.ravel() * np.sum(g * np.abs(c_hat) ** 2, axis=tuple(range(1, c_hat.ndim)))
    filter_axes = tuple(range(1, c_hat.ndim))
    lag_sums = np.fft.fftn(g * np.conj(c_hat), axes=filter_axes)  # Σ_ω (…) e^{−2πi⟨ω,s⟩/N} for every s
    support = (slice(None),) + tuple(slice(0, f) for f in params.filter_shape)
    d_filters = -(4.0 / n) * weights * np.real(lag_sums)
    gradient = Hyperparameters(beta0=float(d_beta.sum()), beta=d_beta, filters=d_filters[support])
    loss = float(0.5 * np.sum(np.square(x_hat - truth)) / n_images)
    return check_finite_estimate(
        HypergradientResult(
            gradient=gradient,
            loss=loss,
            x=x_hat,
            diagnostics=dict(lower_residual=0.0),
            seconds=time.perf_counter() - start,
            converged=True,
            message="exact: x̂ and ∇ℓ by division of spectra",
            method="closed-form",
        )
    )


def quadratic_estimator(
    cost, params: Hyperparameters, loss, *, x0=None, state: dict | None = None
) -> HypergradientResult:
    """:func:`quadratic_hypergradient` in the estimator protocol ``(cost, params, loss, *, x0, state)``.

    ``cost`` must have φ(z) = z² and a circulant A, ``loss`` be a squared-error loss with a
    ``truth`` (the mean ½‖x̂_j − x_j^true‖² of :class:`~bilevel_lib.problem.losses.SquaredErrorLoss`).
    ``x0`` and ``state`` are accepted and unused (nothing to warm start).
    """
    from ..problem.cost import LowerLevelCost

    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    if not isinstance(cost.penalty, Quadratic):
        raise TypeError(f"the closed form needs φ(z) = z² (Quadratic); got {type(cost.penalty).__name__}")
    truth = getattr(loss, "truth", None)
    if truth is None:
        raise TypeError(f"the closed form needs a squared-error loss with a truth; got {type(loss).__name__}")
    if x0 is not None:  # not needed by the closed form, but checked like every estimator's warm start
        cost.check_x(x0, "x0")
    if state is not None and not isinstance(state, dict):
        raise TypeError(f"state must be a dict (or None); got {type(state).__name__}")
    return quadratic_hypergradient(cost.y, truth, params, cost.forward_model)
