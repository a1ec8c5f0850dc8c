"""Gradients of the exact ℓ1 lower level in W: the BLORC closed form and its references.

* :func:`closed_form_solution` is Thm 1 of BLORC, x* = P_N(W0) (y − W±' s), where W0 holds the
  rows with (W x*)_i = 0 and s the signs of the others.
* :func:`closed_form_gradient` is Lemma 1 (eqs. 7–8), the gradient of ½‖x* − x_true‖² in W;
  :func:`l1_hypergradient` solves the lower level (:func:`~bilevel_lib.l1.exact.solve_l1_denoising`),
  reads the sign pattern off W x* and applies it.
* :func:`sign_split_gradient` reaches the same gradient from the equality-constrained quadratic
  of McCann & Ravishankar (review eq. 4.13) through its KKT system: an independent route that needs
  linearly independent rows in W0.
* :func:`smoothed_hypergradient` is the implicit gradient of the corner-rounded problem
  (φ(z) = √(z² + ε²)) with a dense W, for comparison; :func:`finite_difference_l1_gradient` is the
  reference both are measured against.

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.fft as sfft

from ..util.validation import as_float_array, positive_scalar
from .exact import DEFAULT_THRESHOLD, L1Result, RANK_RTOL, ZeroSetFactor, as_batch, check_signals, check_signs, solve_l1_denoising

__all__ = [
    "closed_form_solution",
    "closed_form_gradient",
    "l1_hypergradient",
    "ClosedFormGradient",
    "sign_split_gradient",
    "smoothed_hypergradient",
    "SmoothedGradient",
    "finite_difference_l1_gradient",
    "l1_loss",
    "filter_gradient_from_matrix",
]


# ----------------------------------------------------------------------------- closed forms
def closed_form_solution(y, W, signs) -> np.ndarray:
    """x* = P_N(W0) (y − W±' s) (BLORC Thm 1; review eq. 4.16), shape (J, n).

    ``signs`` (J, k) holds the sign pattern of W x*: rows with sign 0 form W0, the others W±.
    """
    y, W = check_signals(y, W)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    return ZeroSetFactor(W, signs == 0).project(y - signs @ W)


@dataclass
class ClosedFormGradient:
    """A gradient of ℓ(W) = (1/J) Σ_j ½‖x*_j(W) − x_true_j‖² with what it was computed from.

    Attributes
    ----------
    gradient : array (k, n)    ∇_W ℓ
    loss : float               ℓ at the closed-form x
    x : array (J, n)           the closed-form minimiser for the given sign pattern
    zero_set_size : array (J,) number of rows in W0 per signal
    rank : array (J,)          rank of W0 per signal
    """

    gradient: np.ndarray
    loss: float
    x: np.ndarray
    zero_set_size: np.ndarray
    rank: np.ndarray


def _check_truth(x_true, shape):
    x_true = as_batch(x_true, "x_true")
    if x_true.shape != shape:
        raise ValueError(f"x_true must have the shape of y, {shape}; got {x_true.shape}")
    return x_true


def closed_form_gradient(y, x_true, W, signs) -> ClosedFormGradient:
    """∇_W ℓ by BLORC's Lemma 1 (eqs. 7–8), averaged over the batch, for a fixed sign pattern.

    With P the projector onto N(W0), q = y − W±' s, x = P q and g = ∇ₓℓ = (x − x_true)/J:

        ∇_{W±} ℓ = −s (P g)',        ∇_{W0} ℓ = −(W0')⁺ (g x' + q (P g)'),

    summed over signals.  Valid where the sign pattern is constant near W (Thm 2); correct when
    W0 is empty (P = I) or rank deficient (pseudo-inverses through an SVD).
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    return _lemma1(y, x_true, W, signs, ZeroSetFactor(W, signs == 0))


def _lemma1(y, x_true, W, signs, factor) -> ClosedFormGradient:
    J = y.shape[0]
    q = y - signs @ W
    Qq = factor.coefficients(q)
    x = factor.project(q, Qq)
    residual = x - x_true
    g = residual / J
    Qg = factor.coefficients(g)
    Pg = factor.project(g, Qg)
    pinv = factor.pinv_transpose_of_coefficients(np.stack([Qg, Qq], axis=2))   # (J, k, 2)
    u, v = pinv[:, :, 0], pinv[:, :, 1]
    gradient = -((signs + v).T @ Pg + u.T @ x)
    loss = float(0.5 * (residual * residual).sum() / J)
    return ClosedFormGradient(gradient, loss, x, (signs == 0).sum(axis=1), factor.rank)


def l1_hypergradient(y, x_true, W, *, d0=None, threshold: float = DEFAULT_THRESHOLD,
                     **solver_options) -> tuple[ClosedFormGradient, L1Result]:
    """Exact lower-level solve, thresholded sign pattern, then Lemma 1: one BLORC gradient.

    Returns (gradient result, solver result).  When the zero set read off the solution equals the
    one the solver's last active-set step used, its factorisation is reused (no second QR).
    Pass ``d0=previous_result.d`` to warm start from the previous W.
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    result = solve_l1_denoising(y, W, d0=d0, threshold=threshold, **solver_options)
    zero = result.signs == 0
    cached = result._factor
    if cached is None:
        factor = ZeroSetFactor(W, zero)
    else:
        reuse = cached.covered & (cached.zero == zero).all(axis=1)
        if reuse.all():
            factor = cached
        else:
            rebuild = np.flatnonzero(~reuse)
            factor = ZeroSetFactor.merge([(np.flatnonzero(reuse), cached.select(reuse)),
                                           (rebuild, ZeroSetFactor(W, zero[rebuild]))], y.shape[0])
    return _lemma1(y, x_true, W, result.signs, factor), result


def sign_split_gradient(y, x_true, W, signs) -> ClosedFormGradient:
    """The same gradient from the sign-split problem of McCann & Ravishankar (review eq. 4.13).

    With the sign pattern fixed, x* solves min ½‖x − y‖² + s'W± x s.t. W0 x = 0, a quadratic with
    equality constraints whose KKT system is [[I, W0'], [W0, 0]] [x; ν] = [y − W±'s; 0].
    Differentiating that system (its adjoint [λ; μ] solves the same matrix with right side
    [∇ₓℓ; 0]) gives ∇_{W±} = −s λ' and ∇_{W0} = −ν λ' − μ x'.  Shares no code with
    :func:`closed_form_gradient`.  Needs linearly independent rows in W0, else the KKT matrix is
    singular and a ValueError is raised.
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    signs = check_signs(signs, (y.shape[0], W.shape[0]))
    J, n = y.shape
    k = W.shape[0]
    zero = signs == 0
    counts = zero.sum(axis=1)
    kmax = int(counts.max(initial=0))
    order = np.argsort(~zero, axis=1, kind="stable")[:, :kmax]
    valid = np.arange(kmax)[None, :] < counts[:, None]
    rows = W[order] * valid[..., None]                                   # (J, kmax, n)
    if kmax:
        singular = np.linalg.svd(rows, compute_uv=False)                   # (J, min)
        rank = np.sum(singular > RANK_RTOL * np.max(singular, axis=1, keepdims=True), axis=1)
        if np.any(rank < counts):
            j = int(np.flatnonzero(rank < counts)[0])
            raise ValueError(f"the sign-split form needs linearly independent rows in W0; signal {j} has "
                             f"{counts[j]} zero-set rows of rank {rank[j]} (use closed_form_gradient)")
    else:
        rank = counts
    K = np.zeros((J, n + kmax, n + kmax))
    K[:, :n, :n] = np.eye(n)
    K[:, :n, n:] = rows.transpose(0, 2, 1)
    K[:, n:, :n] = rows
    K[:, n:, n:] = np.eye(kmax) * (~valid)[:, None, :]                       # padding: ν_p = 0
    rhs = np.zeros((J, n + kmax))
    rhs[:, :n] = y - signs @ W
    primal = np.linalg.solve(K, rhs[..., None])[..., 0]
    x, nu = primal[:, :n], primal[:, n:]
    g = (x - x_true) / J
    adjoint_rhs = np.zeros_like(rhs)
    adjoint_rhs[:, :n] = g
    adjoint = np.linalg.solve(K, adjoint_rhs[..., None])[..., 0]
    lam, mu = adjoint[:, :n], adjoint[:, n:]
    gradient = -(signs.T @ lam)
    jj, pp = np.nonzero(valid)
    np.add.at(gradient, order[jj, pp], -(nu[jj, pp, None] * lam[jj] + mu[jj, pp, None] * x[jj]))
    loss = float(0.5 * np.sum((x - x_true) ** 2) / J)
    return ClosedFormGradient(gradient, loss, x, counts, rank)


def l1_loss(y, x_true, W, d0=None, **solver_options) -> tuple[float, L1Result]:
    """ℓ(W) = (1/J) Σ_j ½‖x*_j(W) − x_true_j‖² with x* from :func:`solve_l1_denoising`."""
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    result = solve_l1_denoising(y, W, d0=d0, **solver_options)
    return float(0.5 * np.sum((result.x - x_true) ** 2) / y.shape[0]), result


def finite_difference_l1_gradient(y, x_true, W, entries=None, *, step: float = 1e-6, d0=None) -> np.ndarray:
    """Central differences (ℓ(W + h E_ab) − ℓ(W − h E_ab)) / 2h with exact lower-level solves.

    ``entries`` is a pair of index arrays (rows, cols), default every entry of W.  Every solve is
    warm-started from the dual at W, so each difference usually costs one closed-form solve.
    Valid while the sign pattern does not change within ±h.
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    step = positive_scalar(step, "step")
    if entries is None:
        rows, cols = np.unravel_index(np.arange(W.size), W.shape)
    else:
        rows, cols = (np.asarray(e, dtype=int).ravel() for e in entries)
    if d0 is None:
        d0 = solve_l1_denoising(y, W).d
    values = np.empty(rows.size)
    moved = W.copy()
    for index, (a, b) in enumerate(zip(rows, cols)):
        losses = []
        for sign in (1.0, -1.0):
            moved[a, b] = W[a, b] + sign * step
            losses.append(l1_loss(y, x_true, moved, d0=d0)[0])
        moved[a, b] = W[a, b]
        values[index] = (losses[0] - losses[1]) / (2.0 * step)
    return values.reshape(W.shape) if entries is None else values


def filter_gradient_from_matrix(gradient, filter_shape, signal_shape) -> np.ndarray:
    """Chain rule from ∇_W ℓ of the stacked correlation matrix (K·N × N) to the filter taps.

    W's row i of block k holds c_{k,a} at column i + a (circularly), so ∂ℓ/∂c_{k,a} sums ∇_W ℓ
    over those positions.  Returns shape (K, *filter_shape).
    """
    gradient = as_float_array(gradient, "gradient", ndim=2)
    signal_shape = tuple(int(s) for s in signal_shape)
    filter_shape = tuple(int(s) for s in filter_shape)
    n = int(np.prod(signal_shape))
    if gradient.shape[1] != n or gradient.shape[0] % n:
        raise ValueError(f"gradient must have shape (K·{n}, {n}) for signals of shape {signal_shape}; got {gradient.shape}")
    blocks = gradient.reshape(-1, n, n)
    rows = np.arange(n)
    index = np.array(np.unravel_index(rows, signal_shape))
    taps = np.empty((blocks.shape[0],) + filter_shape)
    for tap in np.ndindex(filter_shape):
        cols = np.ravel_multi_index(tuple((index[a] + tap[a]) % signal_shape[a] for a in range(len(signal_shape))),
                                    signal_shape)
        taps[(slice(None),) + tap] = blocks[:, rows, cols].sum(axis=1)
    return taps


# ----------------------------------------------------------------------------- smoothed reference
@dataclass
class SmoothedGradient:
    """Result of :func:`smoothed_hypergradient`: gradient (k, n), loss, x (J, n), Newton iterations."""

    gradient: np.ndarray
    loss: float
    x: np.ndarray
    iterations: int
    gradient_norm: float


def smoothed_hypergradient(y, x_true, W, eps: float = 0.01, *, tol: float = 1e-12, max_iter: int = 200,
                           x0=None) -> SmoothedGradient:
    """Implicit gradient in W of the corner-rounded problem, for a dense W (for comparisons).

    Lower level: min ½‖x − y‖² + Σ_i φ((W x)_i) with φ(z) = √(z² + ε²), solved by damped Newton
    to ‖∇Φ‖/√n < tol.  Then (review eq. 4.8) with H = I + W' diag(φ̈(z)) W and q = H⁻¹ ∇ₓℓ,

        ∇_W ℓ = −Σ_j [ φ̇(z_j) q_j' + (φ̈(z_j) ⊙ W q_j) x_j' ].

    It is the gradient of a *different*, smoothed problem: its distance to the ℓ1 gradient is the
    smoothing error, which shrinks with ε.
    """
    y, W = check_signals(y, W)
    x_true = _check_truth(x_true, y.shape)
    eps = positive_scalar(eps, "eps")
    J, n = y.shape
    x = y.copy() if x0 is None else _check_truth(x0, y.shape).copy()

    def parts(x):
        z = x @ W.T
        root = np.sqrt(z * z + eps * eps)
        value = 0.5 * np.sum((x - y) ** 2, axis=1) + np.sum(root, axis=1)
        return z, root, value

    z, root, value = parts(x)
    iterations = 0
    norm = np.inf
    for iterations in range(max_iter + 1):
        grad = x - y + (z / root) @ W
        norm = float(np.max(np.linalg.norm(grad, axis=1)) / np.sqrt(n))
        if norm < tol or iterations == max_iter:
            break
        curvature = eps * eps / root**3
        H = np.eye(n) + np.einsum("ka,jk,kb->jab", W, curvature, W)
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        decrease = np.sum(grad * step, axis=1)
        t = np.ones(J)
        while True:                                        # Armijo backtracking per signal
            trial = x - t[:, None] * step
            z_t, root_t, value_t = parts(trial)
            fine = value_t <= value - 0.25 * t * decrease + 1e-15 * np.abs(value)
            if np.all(fine) or t.min() < 1e-12:
                break
            t = np.where(fine, t, 0.5 * t)
        x, z, root, value = trial, z_t, root_t, value_t
    slope, curvature = z / root, eps * eps / root**3
    H = np.eye(n) + np.einsum("ka,jk,kb->jab", W, curvature, W)
    g = (x - x_true) / J
    q = np.linalg.solve(H, g[..., None])[..., 0]
    gradient = -(slope.T @ q + (curvature * (q @ W.T)).T @ x)
    loss = float(0.5 * np.sum((x - x_true) ** 2) / J)
    return SmoothedGradient(gradient, loss, x, iterations, norm)
