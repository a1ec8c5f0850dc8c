"""The exact ℓ1 lower level and its closed form (Ch. "Translation to a single level").

The lower level of BLORC (Ghosh, McCann & Ravishankar 2022; review Sec. 4.3, eq. 4.12) is

    x*(W) = argmin_x ½‖x − y‖² + ‖W x‖₁,         W ∈ R^{k×n} (the strength is folded into W).

It is not smooth, so instead of smoothing it this module solves it *exactly* and writes the
minimiser as a function of W that is smooth wherever the sign pattern of W x* does not change:

* :func:`solve_l1_denoising` solves the box-constrained dual (review App. A, eq. A.10),
  min_d ½‖y − W'd‖² s.t. ‖d‖_∞ ≤ 1, with x = y − W'd (eq. A.11).  Accelerated projected gradient
  (FISTA with adaptive restart) finds the active set; an active-set step then solves the KKT
  system exactly and *verifies* it (primal-dual active set), so the returned x is the minimiser to
  rounding error.  Warm-started from the dual of a nearby W (as during training) the active-set
  step alone usually suffices.  Also for the convolutional case (W = a filter bank).
* :func:`closed_form_solution` is Thm 1 of BLORC, x* = P_N(W0) (y − W±' s), where W0 holds the
  rows with (W x*)_i = 0 and s the signs of the others.
* :func:`closed_form_gradient` is Lemma 1 (eqs. 7–8), the gradient of ½‖x* − x_true‖² in W.
* :func:`sign_split_gradient` reaches the same gradient from the equality-constrained quadratic
  of McCann & Ravishankar (review eq. 4.13) through its KKT system: an independent route that needs
  linearly independent rows in W0.
* :func:`smoothed_hypergradient` is the implicit gradient of the corner-rounded problem
  (φ(z) = √(z² + ε²)) with a dense W, for comparison; :func:`finite_difference_l1_gradient` is the
  reference both are measured against.

Projections and pseudo-inverses are applied through a QR factorisation of W0' (an SVD for the rare
rank-deficient W0); no pseudo-inverse matrix is formed.  All functions take a batch of J signals
y of shape (J, n) with one shared W, and average the loss over the batch like
:class:`~bilevel_lib.losses.SquaredErrorLoss`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from ._checks import as_float_array, positive_scalar
from .lower import ConvergenceWarning
from .ops import FilterBankOperator, correlation_matrix

__all__ = [
    "L1Result",
    "solve_l1_denoising",
    "sign_pattern",
    "closed_form_solution",
    "closed_form_gradient",
    "ClosedFormGradient",
    "sign_split_gradient",
    "smoothed_hypergradient",
    "finite_difference_l1_gradient",
    "l1_loss",
    "filter_gradient_from_matrix",
    "DEFAULT_THRESHOLD",
]

#: default zero-set threshold: far above the error of a verified (polished) solve, ~1e-15
DEFAULT_THRESHOLD = 1e-8
_RANK_RTOL = 1e-10  # |R_ii| (or σ_i) below this fraction of the largest counts as rank deficient


# ----------------------------------------------------------------------------- input checks
def _as_batch(y, name: str = "y") -> np.ndarray:
    y = as_float_array(y, name, min_ndim=1)
    return y[None] if y.ndim == 1 else y


def _check_matrix(W, n: int | None = None) -> np.ndarray:
    W = as_float_array(W, "W", ndim=2)
    if n is not None and W.shape[1] != n:
        raise ValueError(f"W must have one column per signal sample: signals have n = {n}, W has shape {W.shape}")
    return W


def _check_signals(y, W) -> tuple[np.ndarray, np.ndarray]:
    y = _as_batch(y)
    if y.ndim != 2:
        raise ValueError(f"y must have shape (n,) or (J, n) for a matrix W; got {y.shape}")
    return y, _check_matrix(W, y.shape[1])


def _check_signs(signs, shape) -> np.ndarray:
    signs = as_float_array(signs, "signs")
    if signs.ndim == 1:
        signs = signs[None]
    if signs.shape != shape:
        raise ValueError(f"signs must have shape (J, k) = {shape}; got {signs.shape}")
    if not np.all(np.isin(signs, (-1.0, 0.0, 1.0))):
        raise ValueError("signs must contain only −1, 0 and +1 (use sign_pattern to threshold W x)")
    return signs


def sign_pattern(z, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Thresholded sign of z = W x: −1, 0 or +1 (float array), 0 where |z_i| ≤ ``threshold``.

    The threshold must sit above the solver's accuracy in z, or rounding noise in a true zero is
    read as a sign; and below the smallest true non-zero |z_i|, or a non-zero is read as a zero.
    """
    z = as_float_array(z, "z")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number ≥ 0; got {threshold!r}")
    return np.where(np.abs(z) > threshold, np.sign(z), 0.0)


# ----------------------------------------------------------------------------- factorisation
class _ZeroSetFactor:
    """For each signal j, a factorisation of W0_j' (the rows of W in the zero set, transposed).

    Provides P v = (I − W0⁺W0) v, the projection onto N(W0), and (W0')⁺ v, the minimum-norm
    least-squares solution u of W0' u = v, scattered back to k rows (zero outside the zero set).
    Signals are stacked with zero-padded columns and factorised by one batched QR; a signal whose
    W0 is (numerically) rank deficient, or has more rows than columns, gets an SVD instead.
    """

    def __init__(self, W: np.ndarray, zero: np.ndarray):
        J, k = zero.shape
        n = W.shape[1]
        self.k, self.n = k, n
        counts = zero.sum(axis=1)
        self.kmax = kmax = int(counts.max(initial=0))
        self.order = np.argsort(~zero, axis=1, kind="stable")[:, :kmax]          # zero-set rows first
        self.valid = np.arange(kmax)[None, :] < counts[:, None]                    # (J, kmax)
        self.rank = counts.copy()
        if kmax == 0:
            return
        rows = W[self.order] * self.valid[..., None]                               # (J, kmax, n)
        self.svd_signals = np.flatnonzero(counts > n)
        qr_signals = np.flatnonzero(counts <= n)
        m = min(n, kmax)
        self.Q = np.zeros((J, n, kmax))
        self.R = np.zeros((J, kmax, kmax))
        self.inverse_s = np.zeros((J, kmax))
        self.U = np.zeros((J, kmax, kmax))
        self.use_svd = np.zeros(J, dtype=bool)
        if qr_signals.size:
            Q, R = np.linalg.qr(rows[qr_signals].transpose(0, 2, 1))               # (·, n, m), (·, m, kmax)
            diag = np.abs(np.diagonal(R[:, :, :m], axis1=1, axis2=2))               # (·, m)
            valid = self.valid[qr_signals][:, :m]
            scale = np.max(np.where(valid, diag, 0.0), axis=1, initial=0.0)
            deficient = np.any(valid & (diag <= _RANK_RTOL * scale[:, None]), axis=1)
            good = qr_signals[~deficient]
            self.svd_signals = np.union1d(self.svd_signals, qr_signals[deficient])
            Q, R = Q[~deficient], R[~deficient]
            # kmax ≤ n here only if every QR signal has counts ≤ kmax ≤ n; pad Q/R to kmax columns
            self.Q[good, :, :m] = Q * self.valid[good][:, None, :m]
            self.R[good, :m, :] = R
            pad = ~self.valid[good]
            idx = np.nonzero(pad)
            self.R[good[idx[0]], idx[1], idx[1]] = 1.0                              # identity on padding
        self.use_svd[self.svd_signals] = True
        for j in self.svd_signals:                                                 # rare: a loop is fine
            U, s, Vt = np.linalg.svd(rows[j], full_matrices=False)                 # rows[j]: (kmax, n)
            keep = s > _RANK_RTOL * max(s.max(initial=0.0), 1e-300)
            r = int(keep.sum())
            self.rank[j] = r
            self.Q[j] = 0.0
            self.Q[j, :, :r] = Vt[:r].T                                            # basis of the row space
            self.U[j, :, :r] = U[:, :r]
            self.inverse_s[j, :r] = 1.0 / s[:r]

    def project(self, v: np.ndarray) -> np.ndarray:
        """P v for v of shape (J, n): remove the component in the row space of W0."""
        if self.kmax == 0:
            return v.copy()
        return v - np.einsum("jnm,jm->jn", self.Q, np.einsum("jnm,jn->jm", self.Q, v))

    def pinv_transpose(self, v: np.ndarray) -> np.ndarray:
        """(W0')⁺ v for v of shape (J, n), returned as (J, k) with zeros outside the zero set."""
        J = v.shape[0]
        out = np.zeros((J, self.k))
        if self.kmax == 0:
            return out
        coefficients = np.einsum("jnm,jn->jm", self.Q, v)                          # Q' v
        compact = np.zeros((J, self.kmax))
        qr = ~self.use_svd
        if np.any(qr):                                                             # R⁻¹ Q' v
            compact[qr] = np.linalg.solve(self.R[qr], coefficients[qr][..., None])[..., 0]
        if np.any(self.use_svd):                                                   # U S⁻¹ V' v
            s = self.use_svd
            compact[s] = np.einsum("jab,jb->ja", self.U[s], self.inverse_s[s] * coefficients[s])
        j, p = np.nonzero(self.valid)
        out[j, self.order[j, p]] = compact[j, p]
        return out
