r"""The exact ℓ1 lower level (Ch. "Translation to a single level").

The lower level of BLORC (Ghosh, McCann & Ravishankar 2022; review Sec. 4.3, eq. 4.12) is

    x\*(W) = argmin_x ½‖x − y‖² + ‖W x‖₁,         W ∈ R^{k×n} (the strength is folded into W).

It is not smooth, so instead of smoothing it this module solves it *exactly* and writes the
minimiser as a function of W that is smooth wherever the sign pattern of W x* does not change:

* :func:`solve_l1_denoising` solves the box-constrained dual (review App. A, eq. A.10),
  min_d ½‖y − W'd‖² s.t. ‖d‖_∞ ≤ 1, with x = y − W'd (eq. A.11).  Accelerated projected gradient
  (FISTA with adaptive restart) finds the active set; an active-set step then solves the KKT
  system exactly and *verifies* it (primal-dual active set), so the returned x is the minimiser to
  rounding error.  Warm-started from the dual of a nearby W (as during training) the active-set
  step alone usually suffices.  Also for the convolutional case (W = a filter bank).

The closed forms built on this solver (BLORC Thm 1, Lemma 1) are in :mod:`bilevel_lib.l1.gradients`.

Projections and pseudo-inverses are applied through a QR factorisation of W0' (an SVD for the rare
rank-deficient W0); no pseudo-inverse matrix is formed.  All functions take a batch of J signals
y of shape (J, n) with one shared W, and average the loss over the batch like
:class:`~bilevel_lib.problem.losses.SquaredErrorLoss`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.fft as sfft
from scipy.linalg.lapack import dgeqrf as _geqrf
from scipy.linalg.lapack import dorgqr as _orgqr
from scipy.linalg.lapack import dtrtrs as _trtrs

from ..problem.ops import FilterBankOperator, correlation_matrix
from ..solvers.lower import ConvergenceWarning, ogm_momentum
from ..util.validation import NonFiniteError, as_float_array, check_flag

__all__ = [
    "L1Result",
    "solve_l1_denoising",
    "sign_pattern",
    "DEFAULT_THRESHOLD",
    "MAX_MAGNITUDE",
]

#: default zero-set threshold, far above the error of a verified (polished) solve, ~1e-15
DEFAULT_THRESHOLD = 1e-8
RANK_RTOL = 1e-10  # |R_ii| (or σ_i) below this fraction of the largest counts as rank deficient


# ----------------------------------------------------------------------------- input checks
#: The largest magnitude accepted in y, W and the other arrays of the ℓ1 layer.  Squares and products
#: of a few such numbers stay far from float64 overflow (1.8e308), so a finite input gives finite output.
MAX_MAGNITUDE = 1e100


def real_array(value, name: str, *, ndim: int | None = None, min_ndim: int | None = None) -> np.ndarray:
    """``value`` as a finite float64 array with entries of magnitude ≤ :data:`MAX_MAGNITUDE`.

    Stricter than :func:`~bilevel_lib.util.validation.as_float_array`: boolean, complex, object and
    string data raise ``TypeError`` (numpy would cast them, dropping imaginary parts or reading
    True as 1) instead of being converted.
    """
    kind = getattr(value, "dtype", None)
    if kind is None and not isinstance(value, (int, float, np.integer, np.floating, list, tuple)):
        raise TypeError(f"{name} must be an array of real numbers; got {type(value).__name__}")
    if kind is None:
        try:
            kind = np.asarray(value).dtype
        except (TypeError, ValueError) as err:  # ragged nested lists
            raise TypeError(f"{name} must be an array of real numbers; got a ragged {type(value).__name__}") from err
    if isinstance(value, (bool, np.bool_)) or kind.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers (integer or float dtype); got dtype {kind}")
    array = as_float_array(value, name, ndim=ndim, min_ndim=min_ndim)
    if array.size and np.abs(array).max() > MAX_MAGNITUDE:
        raise ValueError(
            f"{name} must have entries of magnitude ≤ {MAX_MAGNITUDE:g} (larger ones overflow in the solver's "
            f"products); got {np.abs(array).max():.3g}"
        )
    return array


def real_number(value, name: str, *, minimum: float = 0.0, strict: bool = True, maximum: float = np.inf) -> float:
    """``value`` as a finite float in (``minimum``, ``maximum``] (``strict``) or [``minimum``, ``maximum``].

    Booleans, complex numbers, strings and arrays raise ``TypeError``; values out of range ``ValueError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    number = float(value)
    low = "(" if strict else "["
    ok = np.isfinite(number) and (number > minimum if strict else number >= minimum) and number <= maximum
    if not ok:
        high = f"{maximum:g}]" if np.isfinite(maximum) else "∞)"
        raise ValueError(f"{name} must be a finite number in {low}{minimum:g}, {high}; got {value!r}")
    return number


def count(value, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; booleans and non-integers raise ``TypeError``, smaller ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer ≥ {minimum}; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return int(value)


#: ``value`` if it is a bool (Python or numpy), else ``TypeError``: the one on/off check of the library
flag = check_flag


def check_threshold(threshold) -> float:
    """A zero-set threshold: a finite number ≥ 0."""
    return real_number(threshold, "threshold", strict=False)


def as_batch(y, name: str = "y") -> np.ndarray:
    y = real_array(y, name, min_ndim=1)
    y = y[None] if y.ndim == 1 else y
    if y.shape[0] == 0 or y.shape[-1] == 0:
        raise ValueError(f"{name} must hold at least one signal of at least one sample; got shape {y.shape}")
    return y


def check_matrix(W, n: int | None = None) -> np.ndarray:
    W = real_array(W, "W", ndim=2)
    if W.shape[0] == 0:
        raise ValueError(f"W must have at least one row; got shape {W.shape}")
    if n is not None and W.shape[1] != n:
        raise ValueError(f"W must have one column per signal sample: the signals y have n = {n}, W has shape {W.shape}")
    return W


def check_signals(y, W) -> tuple[np.ndarray, np.ndarray]:
    y = as_batch(y)
    if y.ndim != 2:
        raise ValueError(f"y must have shape (n,) or (J, n) for a matrix W; got {y.shape}")
    return y, check_matrix(W, y.shape[1])


def check_signs(signs, shape) -> np.ndarray:
    signs = real_array(signs, "signs")
    if signs.ndim == 1:
        signs = signs[None]
    if signs.shape != shape:
        raise ValueError(f"signs must have shape (J, k) = {shape}; got {signs.shape}")
    if not np.all(np.isin(signs, (-1.0, 0.0, 1.0))):
        raise ValueError("signs must contain only −1, 0 and +1 (use sign_pattern to threshold W x)")
    return signs


def check_finite(name: str, where: str, why: str, *arrays) -> None:
    """Raise :class:`NonFiniteError` if any of ``arrays`` has a NaN or inf (``name`` computed ``where``)."""
    for array in arrays:
        if not np.all(np.isfinite(array)):
            raise NonFiniteError(f"{name}: non-finite values {where} ({why})")


def sign_pattern(z, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    r"""Thresholded sign of z = W x: −1, 0 or +1 (float array), 0 where \|z_i\| ≤ ``threshold``.

    The threshold must sit above the solver's accuracy in z, or rounding noise in a true zero is
    read as a sign; and below the smallest true non-zero \|z_i\|, or a non-zero is read as a zero.
    """
    z = real_array(z, "z")
    threshold = check_threshold(threshold)
    return np.where(np.abs(z) > threshold, np.sign(z), 0.0)


# ----------------------------------------------------------------------------- factorisation
def _bmv(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched A_j v_j for A (J, a, b), v (J, b)."""
    return np.matmul(A, v[..., None])[..., 0]


def _bmtv(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched A_j' v_j for A (J, a, b), v (J, a)."""
    return np.matmul(v[:, None, :], A)[:, 0, :]


def batched_qr(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced QR of each A_j (J, n, m): Q (J, n, p) and upper-triangular R (J, p, m), p = min(n, m).

    The LAPACK calls of np.linalg.qr (geqrf, orgqr) made per signal: for the few, small
    matrices here numpy's batched wrapper costs several times the factorisation itself.
    """
    J, n, m = A.shape
    p = min(n, m)
    Q, R = np.empty((J, n, p)), np.empty((J, p, m))
    for j in range(J):
        qr, tau, _, info = _geqrf(A[j])
        if info:
            raise np.linalg.LinAlgError(f"QR of the zero-set rows failed (LAPACK geqrf info {info})")
        R[j] = np.triu(qr[:p])
        Q[j], _, info = _orgqr(qr[:, :p], tau)
        if info:
            raise np.linalg.LinAlgError(f"QR of the zero-set rows failed (LAPACK orgqr info {info})")
    return Q, R


class ZeroSetFactor:
    """For each signal j, a factorisation of W0_j' (the rows of W in the zero set, transposed).

    Provides P v = (I − W0⁺W0) v, the projection onto N(W0), and (W0')⁺ v, the minimum-norm
    least-squares solution u of W0' u = v, scattered back to k rows (zero outside the zero set).
    Signals are stacked with zero-padded columns (Q, R padded with zero columns and an identity
    block) and factorised by QR, W0' = Q R; a signal whose W0 is (numerically) rank deficient, or
    has more rows than columns, gets an SVD instead.  Then P v = v − Q Q'v and (W0')⁺ v = R⁻¹ Q'v.
    """

    def __init__(self, W: np.ndarray, zero: np.ndarray):
        J, k = zero.shape
        n = W.shape[1]
        self.k, self.n = k, n
        self.zero = zero.copy()
        counts = zero.sum(axis=1)
        self.kmax = kmax = int(counts.max(initial=0))
        self.order = np.argsort(~zero, axis=1, kind="stable")[:, :kmax]  # zero-set rows first
        self.valid = np.arange(kmax) < counts[:, None]  # (J, kmax)
        self.rank = counts
        self.covered = np.ones(J, dtype=bool)
        self.inverse_s = np.zeros((J, kmax))
        self.U = np.zeros((J, kmax, kmax))
        self.use_svd = counts > n  # more rows than columns: rank deficient
        if kmax == 0:
            self.Q, self.R = np.zeros((J, n, 0)), np.zeros((J, 0, 0))
            return
        padded = not self.valid.all()
        rows = W[self.order]  # (J, kmax, n)
        if padded:
            rows *= self.valid[..., None]
        m = min(n, kmax)
        everyone = not self.use_svd.any()
        qr_signals = np.arange(J) if everyone else np.flatnonzero(~self.use_svd)
        if qr_signals.size:
            Q, R = batched_qr((rows if everyone else rows[qr_signals]).transpose(0, 2, 1))  # (·, n, m), (·, m, kmax)
            valid = (self.valid if everyone else self.valid[qr_signals])[:, :m]
            diag = np.abs(np.diagonal(R, axis1=1, axis2=2))  # (·, m), ≥ 0
            scale = (diag * valid).max(axis=1)  # largest valid |R_ii|
            deficient = (valid & (diag <= RANK_RTOL * scale[:, None])).any(axis=1)
        if everyone and kmax <= n and not deficient.any():  # the usual case
            self.Q, self.R = Q, R
            if padded:
                Q *= self.valid[:, None, :]
        else:
            self.Q = np.zeros((J, n, kmax))
            self.R = np.zeros((J, kmax, kmax))
            if qr_signals.size:
                self.use_svd[qr_signals[deficient]] = True
                keep = ~deficient
                self.Q[qr_signals[keep], :, :m] = Q[keep] * valid[keep][:, None, :]
                self.R[qr_signals[keep], :m, :] = R[keep]
        if padded:
            jj, pp = np.nonzero(~self.valid)
            self.R[jj, pp, pp] = 1.0  # identity on padding
        for j in np.flatnonzero(self.use_svd):  # rare: a loop is fine
            U, s, Vt = np.linalg.svd(rows[j], full_matrices=False)  # rows[j]: (kmax, n)
            keep = s > RANK_RTOL * max(s.max(initial=0.0), 1e-300)
            r = int(keep.sum())
            self.rank[j] = r
            self.Q[j, :, :r] = Vt[:r].T  # basis of the row space
            self.U[j, :, :r] = U[:, :r]
            self.inverse_s[j, :r] = 1.0 / s[:r]

    def select(self, mask) -> ZeroSetFactor:
        """The factor restricted to the signals where ``mask`` is True."""
        chosen = object.__new__(ZeroSetFactor)
        chosen.k, chosen.n, chosen.kmax = self.k, self.n, self.kmax
        for name in ("zero", "order", "valid", "rank", "Q", "R", "inverse_s", "U", "use_svd", "covered"):
            setattr(chosen, name, getattr(self, name)[mask])
        return chosen

    @staticmethod
    def merge(parts, J: int) -> ZeroSetFactor:
        """One factor for J signals from [(signal indices, factor), …] (padded to a common size).

        Signals not covered by any part get an empty zero set; ``covered`` marks the others.
        """
        k, n = parts[0][1].k, parts[0][1].n
        kmax = max(f.kmax for _, f in parts)
        merged = object.__new__(ZeroSetFactor)
        merged.k, merged.n, merged.kmax = k, n, kmax
        merged.zero = np.zeros((J, k), dtype=bool)
        merged.order = np.zeros((J, kmax), dtype=int)
        merged.valid = np.zeros((J, kmax), dtype=bool)
        merged.rank = np.zeros(J, dtype=int)
        merged.Q = np.zeros((J, n, kmax))
        merged.R = np.zeros((J, kmax, kmax)) + np.eye(kmax)
        merged.inverse_s = np.zeros((J, kmax))
        merged.U = np.zeros((J, kmax, kmax))
        merged.use_svd = np.zeros(J, dtype=bool)
        merged.covered = np.zeros(J, dtype=bool)
        for index, f in parts:
            m = f.kmax
            merged.zero[index] = f.zero
            merged.order[index, :m] = f.order
            merged.valid[index, :m] = f.valid
            merged.rank[index] = f.rank
            merged.Q[index, :, :m] = f.Q
            merged.R[index, :m, :m] = f.R
            merged.inverse_s[index, :m] = f.inverse_s
            merged.U[index, :m, :m] = f.U
            merged.use_svd[index] = f.use_svd
            merged.covered[index] = True
        return merged

    def coefficients(self, v: np.ndarray) -> np.ndarray:
        """Q'v, shape (J, kmax), for v of shape (J, n): the coordinates of v's part in the row space."""
        return _bmtv(self.Q, v)

    def project(self, v: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
        """P v for v of shape (J, n), or (J, c, n) for c vectors per signal: remove the row-space part.

        ``coefficients``: Q'v if already at hand (for v of shape (J, n)).
        """
        if self.kmax == 0:
            return v.copy()
        if v.ndim == 2:
            return v - _bmv(self.Q, self.coefficients(v) if coefficients is None else coefficients)
        return v - np.matmul(np.matmul(v, self.Q), self.Q.transpose(0, 2, 1))

    def pinv_transpose(self, v: np.ndarray) -> np.ndarray:
        """(W0')⁺ v for v of shape (J, n) (or (J, c, n)), as (J, k) (or (J, c, k)), zero outside W0."""
        single = v.ndim == 2
        V = v[:, None, :] if single else v
        out = self.pinv_transpose_of_coefficients(np.matmul(V, self.Q).transpose(0, 2, 1)).transpose(0, 2, 1)
        return out[:, 0, :] if single else out

    def pinv_transpose_of_coefficients(self, C: np.ndarray) -> np.ndarray:
        """(W0')⁺ v from C = Q'v of shape (J, kmax, c) (c vectors per signal), as (J, k, c).

        QR: R⁻¹ Q'v by back substitution (LAPACK trtrs, O(kmax² c) per signal; a batched
        np.linalg.solve would pay an O(kmax³) LU for not knowing R is triangular).  SVD: U S⁻¹ V'v.
        """
        J, _, c = C.shape
        out = np.zeros((J, self.k, c))
        if self.kmax:
            compact = np.empty(C.shape)
            for j in range(J):
                if self.use_svd[j]:
                    compact[j] = self.U[j] @ (self.inverse_s[j][:, None] * C[j])
                else:  # R_j' is a Fortran-ordered view: solve with its transpose
                    compact[j], info = _trtrs(self.R[j].T, C[j], lower=1, trans=1)
                    if info:
                        raise np.linalg.LinAlgError(f"singular R in the zero-set QR (LAPACK info {info})")
            out.reshape(J * self.k, c)[self._scatter_rows] = compact[self.valid]
        return out

    @cached_property
    def _scatter_rows(self) -> np.ndarray:
        """Rows of the (J·k)-row output that the valid compact entries (J, kmax)[valid] go to."""
        return (np.arange(self.zero.shape[0])[:, None] * self.k + self.order)[self.valid]


def _combine(parts, J: int):
    """One factor for all J signals from (indices, factor) parts, or None if there are none."""
    if not parts:
        return None
    if len(parts) == 1 and parts[0][0].size == J and np.all(parts[0][0] == np.arange(J)):
        return parts[0][1]
    return ZeroSetFactor.merge(parts, J)


# ----------------------------------------------------------------------------- W as an operator
class _DenseTransform:
    """x ↦ W x for a dense k×n matrix, on batches of flattened signals (J, n)."""

    def __init__(self, W: np.ndarray, lipschitz: float | None = None):
        self.W = W
        self.k, self.n = W.shape
        self._lipschitz = lipschitz

    def forward(self, x):
        return x @ self.W.T

    def adjoint(self, d):
        return d @ self.W

    def lipschitz(self) -> float:
        r"""An upper bound on ‖W‖₂², the Lipschitz constant of the dual gradient.

        Gershgorin's bound on the smaller Gram matrix (max row sum of \|W W'\| or \|W'W\|): exact for
        orthogonal rows such as W = I, within a small factor for dense W, and one matrix product
        instead of an SVD.
        """
        if self._lipschitz is None:
            W = self.W
            gram = W @ W.T if W.shape[0] <= W.shape[1] else W.T @ W
            self._lipschitz = float(np.abs(gram).sum(axis=1).max(initial=0.0))
        return self._lipschitz

    def matrix(self) -> np.ndarray:
        return self.W


class _FilterTransform:
    """x ↦ (c_k ⊛ x)_k for a filter bank, on batches of flattened signals (J, N) -> (J, K·N)."""

    def __init__(self, operator: FilterBankOperator, lipschitz: float | None = None):
        self.op = operator
        self.shape = operator.signal_shape
        self.n = int(np.prod(self.shape))
        self.k = operator.n_filters * self.n
        self._lipschitz = lipschitz

    def forward(self, x):
        J = x.shape[0]
        return self.op.forward(x.reshape((J,) + self.shape)).reshape(J, self.k)

    def adjoint(self, d):
        J = d.shape[0]
        return self.op.adjoint(d.reshape((J, self.op.n_filters) + self.shape)).reshape(J, self.n)

    def lipschitz(self) -> float:
        r"""‖C‖₂² = max_ω Σ_k \|ĉ_k(ω)\|², exact for circular correlation."""
        if self._lipschitz is None:
            axes = tuple(range(1, self.op.filters.ndim))
            spectra = sfft.rfftn(self.op.filters, s=self.shape, axes=axes)
            self._lipschitz = float(np.max(np.sum(np.abs(spectra) ** 2, axis=0)))
        return self._lipschitz

    def matrix(self) -> np.ndarray:
        return np.concatenate([correlation_matrix(f, self.shape) for f in self.op.filters])


# ----------------------------------------------------------------------------- the exact solver
@dataclass
class L1Result:
    r"""What :func:`solve_l1_denoising` returns (in the manner of ``scipy.optimize.OptimizeResult``).

    Attributes
    ----------
    x : array (J, n) or (J, *signal_shape)     the minimiser x* = y − W'd
    d : array (J, k) or (J, K, \*signal_shape)  the dual solution, \|d_i\| ≤ 1 (review eq. A.10)
    z : array like d                           W x*
    signs : array like d                       sign_pattern(W x*, threshold): −1, 0 or +1
    threshold : float                          the zero-set threshold used for ``signs``
    gap : array (J,)                           duality gap Σ_i \|z_i\| − d_i z_i ≥ 0 per signal
    polished : array (J,) of bool              KKT conditions verified after an exact active-set solve
    iterations : int                           accelerated projected-gradient iterations
    active_set_iterations : int                active-set (closed-form) rounds
    warm_accepted : int                        signals verified by the active set read off ``d0``
    converged : bool                           every signal polished, or certified to ``tol``
    message : str
    factor : object or None                    the factorisation of the zero set found (dense W only),
                                               reused by :func:`~bilevel_lib.l1.gradients.l1_hypergradient`
    """

    x: np.ndarray
    d: np.ndarray
    z: np.ndarray
    signs: np.ndarray
    threshold: float
    gap: np.ndarray
    polished: np.ndarray
    iterations: int
    active_set_iterations: int
    converged: bool
    message: str
    warm_accepted: int = 0  # signals solved by the warm active set
    factor: object = field(default=None, repr=False, compare=False)

    @property
    def error_bound(self) -> np.ndarray:
        """Certified bound on ‖x − x*‖ per signal from the duality gap, √(2·gap).

        Φ is 1-strongly convex, so ½‖x − x*‖² ≤ Φ(x) − Φ(x*) ≤ gap.  For polished signals the gap
        is at rounding level and this bound is ~1e-8 even though x is exact to ~1e-15.
        """
        return np.sqrt(2.0 * np.maximum(self.gap, 0.0))


def _duality_gap(x, d, T) -> tuple[np.ndarray, np.ndarray]:
    z = T.forward(x)
    return np.sum(np.abs(z) - d * z, axis=1), z


def _fista(Y, T, d, step, target, budget):
    """Accelerated projected gradient on the dual with gradient-based adaptive restart.

    Stops when every signal's certified error √(2 gap) is ≤ ``target`` or after ``budget`` steps.
    """
    J = Y.shape[0]
    v = d  # (v and d are replaced, never modified in place)
    t = np.ones(J)
    gap = np.full(J, np.inf)
    iterations = 0
    for iterations in range(1, budget + 1):
        # a step along −∇ ½‖y − W'v‖² = W x(v), then the projection onto the box |d_i| ≤ 1
        d_new = np.minimum(np.maximum(v + step * T.forward(Y - T.adjoint(v)), -1.0), 1.0)
        if iterations == 1 or iterations % 10 == 0 or iterations == budget:
            gap, _ = _duality_gap(Y - T.adjoint(d_new), d_new, T)
            if (np.sqrt(2.0 * np.maximum(gap, 0.0)) <= target).all():
                d = d_new
                break
        change = d_new - d
        restart = ((v - d_new) * change).sum(axis=1) > 0
        t_new, momentum, _ = ogm_momentum(t)  # FISTA's momentum is OGM's first factor
        momentum = np.where(restart, 0.0, momentum)
        t = np.where(restart, 1.0, t_new)
        v = d_new + momentum[:, None] * change
        d = d_new
    return d, gap, iterations


_BOUND_TOL = 1e-9  # |d_i| ≥ 1 − this counts as "on the boundary" when reading an active set off d
_DUAL_TOL = 1e-9  # accepted excess of |d_i| over 1 in the KKT check


def _active_set(Y, M, d, z_tol, max_rounds):
    r"""Primal-dual active-set rounds from the partition read off ``d``.

    Each round solves the KKT system of the current partition in closed form (Thm 1):
    boundary rows B carry d_i = σ_i = ±1, the others form W0 and x = P_N(W0)(y − W_B'σ); the
    interior d solves W0'd_0 = y − W_B'σ − x (minimum-norm change from the current d).  The
    partition is accepted when \|d_0\| ≤ 1 and \|(W x)_i\| ≤ ``z_tol`` off B, and σ_i (W x)_i ≥ −``z_tol``
    (per signal) on B;
    otherwise violators move.  Returns (accepted mask, x, d, rounds, factors): ``factors`` lists
    (signal indices, factor) for the accepted signals, to be reused by the gradient.
    """
    J = d.shape[0]
    bound = np.abs(d) >= 1.0 - _BOUND_TOL
    sigma = np.where(bound, np.sign(d), 0.0)
    accepted = np.zeros(J, dtype=bool)
    X, D = np.zeros(Y.shape), np.zeros(d.shape)
    todo = np.arange(J)  # the signals still to do; Y, d, z_tol, bound, sigma hold only those
    rounds = 0
    factors = []
    while todo.size and rounds < max_rounds:
        rounds += 1
        factor = ZeroSetFactor(M, ~bound)
        q = Y - sigma @ M
        x = factor.project(q)
        interior = np.where(bound, 0.0, d)
        d_new = np.where(bound, sigma, interior + factor.pinv_transpose(q - x - interior @ M))
        z = x @ M.T
        bad_interior = ~bound & (np.abs(d_new) > 1.0 + _DUAL_TOL)
        bad_bound = bound & (sigma * z < -z_tol[:, None])
        # primal feasibility of the interior rows, W0 x = 0: automatic for a QR of full rank, but not
        # when the rank test of an SVD dropped a small singular value (x then keeps that direction)
        infeasible = ~bound & (np.abs(z) > z_tol[:, None])
        good = ~(bad_interior | bad_bound | infeasible).any(axis=1)
        if good.all():
            if todo.size == J:  # all accepted at once (the usual case)
                return np.ones(J, dtype=bool), x, np.minimum(np.maximum(d_new, -1.0), 1.0), rounds, [(todo, factor)]
            factors.append((todo, factor))
            accepted[todo], X[todo], D[todo] = True, x, np.minimum(np.maximum(d_new, -1.0), 1.0)
            break
        if good.any():
            done = todo[good]
            factors.append((done, factor.select(good)))
            accepted[done], X[done], D[done] = True, x[good], np.minimum(np.maximum(d_new[good], -1.0), 1.0)
        bad = ~good
        todo, Y, z_tol = todo[bad], Y[bad], z_tol[bad]
        bad_interior, d_new = bad_interior[bad], d_new[bad]
        new_bound = (bound[bad] & ~bad_bound[bad]) | bad_interior
        sigma = np.where(bad_interior, np.sign(d_new), np.where(new_bound, sigma[bad], 0.0))
        bound = new_bound
        d = np.where(new_bound, sigma, np.minimum(np.maximum(d_new, -1.0), 1.0))
    return accepted, X, D, rounds, factors


def solve_l1_denoising(
    y,
    W,
    *,
    d0=None,
    tol: float = 1e-10,
    max_iter: int = 20_000,
    polish="auto",
    threshold: float = DEFAULT_THRESHOLD,
    lipschitz: float | None = None,
    active_set_first: bool = True,
    warn: bool = True,
) -> L1Result:
    r"""Solve x\*(W) = argmin_x ½‖x − y‖² + ‖W x‖₁ exactly, for a batch of signals, via the dual.

    Parameters
    ----------
    y : array, shape (J, n) or (n,)
        Noisy signals (for a filter bank: shape (J, \*signal_shape) or signal_shape).
    W : array (k, n) or FilterBankOperator
        The sparsifying transform, any shape; or a bank of K filters (circular correlation, the
        convolutional case), for which k = K·N.
    d0 : array like the dual, optional
        Warm start, e.g. ``result.d`` at the previous W.  With ``polish`` on, the active set read
        off d0 is tried first, so a small change of W often costs one closed-form solve.
    tol : float
        Accuracy required of signals whose KKT check does not pass: certified ‖x − x*‖ ≤ tol.
    max_iter : int
        Budget of accelerated projected-gradient (FISTA) iterations.
    polish : bool or "auto"
        Finish with an exact active-set solve and a KKT check (dense linear algebra, O(n³) per
        signal).  "auto": always for a matrix W, for a filter bank only when N ≤ 256.
    threshold : float
        Zero-set threshold for ``result.signs``; it must sit above the solver's accuracy in W x.
    lipschitz : float, optional
        ‖W‖₂² (or an upper bound) if known; default: Gershgorin's bound on the Gram matrix.
    active_set_first : bool
        With ``d0``, try the active set read off d0 before any FISTA iteration (one closed-form
        solve).  Worth it when W moved little since d0; after large steps it usually fails, and
        FISTA from d0 followed by one active-set step is cheaper.
    warn : bool
        Issue a :class:`~bilevel_lib.solvers.lower.ConvergenceWarning` when some signal is neither
        verified nor certified to ``tol`` after ``max_iter`` iterations.

    Returns
    -------
    L1Result
    """
    tol = real_number(tol, "tol")
    max_iter = count(max_iter, "max_iter", minimum=0)
    if not (polish is True or polish is False or (isinstance(polish, str) and polish == "auto")):
        raise ValueError(f"polish must be True, False or 'auto'; got {polish!r}")
    threshold = check_threshold(threshold)
    if lipschitz is not None:
        lipschitz = real_number(lipschitz, "lipschitz")
    active_set_first = flag(active_set_first, "active_set_first")
    warn = flag(warn, "warn")
    if isinstance(W, FilterBankOperator):
        shape = W.signal_shape
        y = real_array(y, "y")
        if y.shape == shape:
            y = y[None]
        if y.ndim != len(shape) + 1 or y.shape[1:] != shape:
            raise ValueError(f"y must have shape (J, *{shape}) for this filter bank; got {y.shape}")
        T = _FilterTransform(W, lipschitz)
        out_x, out_d = y.shape, (y.shape[0], W.n_filters) + shape
        do_polish = polish is True or (polish == "auto" and T.n <= 256)
    else:
        y, W = check_signals(y, W)
        T = _DenseTransform(W, lipschitz)
        out_x, out_d = y.shape, (y.shape[0], W.shape[0])
        do_polish = polish in (True, "auto")
    J = y.shape[0]
    Y = y.reshape(J, T.n)
    if d0 is None:
        d = np.zeros((J, T.k))
    else:
        d = real_array(d0, "d0")
        if d.shape != out_d:
            raise ValueError(f"d0 must have the shape of the dual, {out_d}; got {d.shape}")
        d = np.clip(d.reshape(J, T.k), -1.0, 1.0)

    scale = 1.0 + np.abs(Y).max(axis=1) if J else np.ones(0)
    M = z_tol = None
    if do_polish:
        M = T.matrix()
        # tolerance of the active set's sign check on W x, relative to the sizes of y and of W's rows
        largest_row = float(np.sqrt((M * M).sum(axis=1).max(initial=0.0)))  # max_i ‖W_i‖
        z_tol = 1e-10 * scale * max(1.0, largest_row)
    polished = np.zeros(J, dtype=bool)
    X = np.zeros((J, T.n))
    rounds = 0
    factors = []  # (signal indices, factor) of the verified active sets
    if do_polish and d0 is not None and active_set_first:
        ok, X_ok, D_ok, r, parts = _active_set(Y, M, d, z_tol, max_rounds=1)
        rounds += r
        factors += parts
        polished[ok], X[ok], d[ok] = True, X_ok[ok], D_ok[ok]
        warm_accepted = int(ok.sum())
        todo = np.flatnonzero(~polished)
    else:
        warm_accepted = 0
        todo = np.arange(J)

    iterations = 0
    target = max(tol, 1e-3 * float(scale.max(initial=1.0))) if do_polish else tol
    while todo.size:
        sub = slice(None) if todo.size == J else todo  # all signals: views, not copies
        step = 1.0 / max(T.lipschitz(), 1e-300)
        d_sub, gap_sub, its = _fista(Y[sub], T, d[sub], step, target, max_iter - iterations)
        iterations += its
        check_finite(
            "solve_l1_denoising",
            f"in the dual d after {iterations} FISTA iterations",
            f"step 1/L with L = {T.lipschitz():.3g}; the products W x or W'd overflowed",
            d_sub,
        )
        d[sub] = d_sub
        if do_polish:
            ok, X_ok, D_ok, r, parts = _active_set(Y[sub], M, d_sub, z_tol[sub], max_rounds=10)
            factors += [(todo[index], f) for index, f in parts]
            rounds += r
            idx = todo[ok]
            polished[idx], X[idx], d[idx] = True, X_ok[ok], D_ok[ok]
        certified = np.sqrt(2.0 * np.maximum(gap_sub, 0.0)) <= tol
        todo = todo[~(polished[todo] | certified)]
        if iterations >= max_iter or target <= tol:
            break
        target = max(target * 1e-2, tol)

    if not polished.all():
        unpolished = ~polished
        X[unpolished] = Y[unpolished] - T.adjoint(d[unpolished])
    gap, z = _duality_gap(X, d, T)
    check_finite(
        "solve_l1_denoising",
        "in the solution x, W x or the duality gap",
        "an overflow in the products with W; scale y and W down",
        X,
        z,
        gap,
    )
    bound = np.sqrt(2.0 * np.maximum(gap, 0.0))
    converged = bool((polished | (bound <= tol)).all())
    if converged:
        message = (
            f"solved: {int(polished.sum())} of {J} signals verified by the KKT conditions "
            f"({iterations} FISTA iterations, {rounds} active-set rounds)"
        )
    else:
        message = (
            f"stopped at max_iter={max_iter}: {int(np.sum(~polished & (bound > tol)))} of {J} signals have "
            f"certified error up to {bound.max():.2e} > tol = {tol:g}"
        )
        if warn:
            warnings.warn(f"solve_l1_denoising: {message}", ConvergenceWarning, stacklevel=2)
    return L1Result(
        x=X.reshape(out_x),
        d=d.reshape(out_d),
        z=z.reshape(out_d),
        signs=sign_pattern(z, threshold).reshape(out_d),
        threshold=float(threshold),
        gap=gap,
        polished=polished,
        iterations=iterations,
        active_set_iterations=rounds,
        converged=converged,
        message=message,
        warm_accepted=warm_accepted,
        factor=_combine(factors, J) if isinstance(T, _DenseTransform) else None,
    )
