r"""Unrolling a non-smooth lower level: ℓ1-analysis denoising by a Bregman primal–dual method.

The lower level (review Sec. 4.4.2, with A = I and φ = \|·\|) is

    x̂(λ, Ω) = argmin_x ½‖x − y‖² + λ‖Ωx‖₁ = argmin_x max_{\|d_i\| ≤ 1} ½‖x − y‖² + λ⟨d, Ωx⟩,

where Ω is a filter bank (the analysis operator of (Ex), any dimension) or a general matrix (1D
signals).  Its minimiser is not a differentiable function of y, λ or Ω everywhere, but the
iterates of a primal–dual algorithm whose steps are smooth are.  Following Ochs et al. (review
eq. 4.20–4.22) we run Chambolle–Pock with an entropy-like Bregman distance in the dual step,

    ψ(d) = ½[(1 + d) log(1 + d) + (1 − d) log(1 − d)],   ψ'(d) = artanh(d),

for which the dual proximal step has the closed form (4.22)

    d⁺ = tanh(artanh(d̃) + σ u),   u = λ[Ω x̄]_i,

a smooth map that keeps \|d_i\| ≤ 1 without a projection.  We store the dual variable in the
mirror coordinates η = artanh(d), so that the update is η⁺ = η + σλΩx̄ and the state stays finite
even where d = tanh(η) rounds to ±1 in floating point.  One iteration (t = 0, 1, …, with x̄_0 = x_0, η_0 = 0):

    η_{t+1} = η_t + σλ Ω x̄_t,         d_{t+1} = tanh(η_{t+1})
    x_{t+1} = (x_t + τ y − τλ Ω' d_{t+1}) / (1 + τ)
    x̄_{t+1} = 2 x_{t+1} − x_t.

The steps τ, σ are held fixed in the differentiation; by default τ = σ = 1/(λ‖Ω‖₂), computed once
(Chambolle & Pock need τσλ²‖Ω‖² ≤ 1).  :func:`unrolled_l1_hypergradient` differentiates x_T with
respect to λ and to Ω (matrix entries or filter taps) by a hand-written reverse sweep through
the stored iterates (no automatic differentiation), optionally only through the last k steps, as
in the note that trains an analysis operator by unrolling Chambolle–Pock.

Also here: the scalar proximal maps of Fig. 4.1 — soft thresholding, and the smooth prox of the
penalty β\|z\| + 2β̃\|z\|^{3/2}/(3/2) of Christof (review eq. 4.23).  Introduced in the chapter
"Unrolling".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from ..hypergrad.result import HypergradientResult
from ..problem.losses import UpperLoss
from ..problem.ops import FilterBankOperator
from ..util.validation import check_count
from .exact import check_finite, real_array, real_number

as_float_array = real_array  # the ℓ1 layer's strict check: bool, complex and object data are a TypeError


def positive_scalar(value, name: str) -> float:
    """A finite number > 0 (booleans, strings, complex: ``TypeError``)."""
    return real_number(value, name)


__all__ = [
    "AnalysisOperator",
    "PrimalDualResult",
    "UNROLLED_TOL",
    "primal_dual_gap",
    "LearningHistory",
    "soft_threshold",
    "power_prox",
    "bregman_dual_update",
    "euclidean_dual_update",
    "l1_analysis_objective",
    "default_steps",
    "chambolle_pock_l1",
    "unrolled_l1_loss",
    "unrolled_l1_hypergradient",
    "learn_analysis_operator",
]

DUAL_STEPS = ("bregman", "euclidean")


# ----------------------------------------------------------------------------- scalar maps (Fig. 4.1)
def soft_threshold(y, threshold: float) -> np.ndarray:
    r"""sign(y) max(\|y\| − t, 0): the proximal map of t\|·\|, i.e. argmin_x ½(x − y)² + t\|x\|."""
    y = as_float_array(y, "y")
    threshold = real_number(threshold, "threshold", strict=False)
    return np.sign(y) * np.maximum(np.abs(y) - threshold, 0.0)


def power_prox(y, beta: float, beta_tilde: float) -> np.ndarray:
    r"""Proximal map of φ(z) = β\|z\| + 2β̃ \|z\|^{3/2}/(3/2) (review eq. 4.23 with p = 3/2).

    argmin_x ½(x − y)² + φ(x) = sign(y) (sqrt(β̃² + \|y\| − β) − β̃)² for \|y\| > β, else 0.
    It is continuously differentiable in y (its slope is 0 at \|y\| = β), unlike soft thresholding,
    which it approaches as β̃ → 0.  (Set s = sqrt\|x\|; optimality is s² + 2β̃ s + β − \|y\| = 0.)
    """
    y = as_float_array(y, "y")
    beta = real_number(beta, "beta", strict=False)
    beta_tilde = positive_scalar(beta_tilde, "beta_tilde (β̃)")
    excess = np.maximum(np.abs(y) - beta, 0.0)
    return np.sign(y) * (np.sqrt(beta_tilde**2 + excess) - beta_tilde) ** 2


def bregman_dual_update(d_tilde, u, step: float) -> np.ndarray:
    r"""The dual step (4.20) with the entropy-like Bregman distance (4.21): review eq. (4.22).

    Maximises ⟨d, u⟩ − D_ψ(d, d̃)/step over \|d_i\| ≤ 1, coordinate by coordinate:

        d = (e^{2 step u} − (1 − d̃)/(1 + d̃)) / (e^{2 step u} + (1 − d̃)/(1 + d̃)) = tanh(artanh(d̃) + step·u).

    Smooth in d̃ and u, and \|d\| ≤ 1 whenever \|d̃\| < 1.  ``d_tilde`` must lie in the open interval (−1, 1).
    """
    d_tilde = as_float_array(d_tilde, "d_tilde")
    u = as_float_array(u, "u")
    if u.shape != d_tilde.shape:
        raise ValueError(f"u must have the shape of d_tilde, {d_tilde.shape}; got {u.shape}")
    step = positive_scalar(step, "step (σ)")
    if np.any(np.abs(d_tilde) >= 1):
        raise ValueError("d_tilde must lie strictly inside (−1, 1): the Bregman distance is infinite on the boundary")
    return np.tanh(np.arctanh(d_tilde) + step * u)


def euclidean_dual_update(d_tilde, u, step: float) -> np.ndarray:
    """The usual Chambolle–Pock dual step: the projection of d̃ + step·u onto [−1, 1] (non-smooth)."""
    d_tilde = as_float_array(d_tilde, "d_tilde")
    u = as_float_array(u, "u")
    if u.shape != d_tilde.shape:
        raise ValueError(f"u must have the shape of d_tilde, {d_tilde.shape}; got {u.shape}")
    step = positive_scalar(step, "step (σ)")
    return np.clip(d_tilde + step * u, -1.0, 1.0)


# ----------------------------------------------------------------------------- the analysis operator
@dataclass(frozen=True)
class AnalysisOperator:
    r"""Ω for the ℓ1-analysis lower level: a filter bank (any dimension) or a matrix (1D signals).

    Build it with :meth:`from_filters` or :meth:`from_matrix`.  ``parameters`` is the array that
    is learned: filters of shape (K, \*filter_shape), or the matrix of shape (M, n).

    Shapes for a batch of J signals: x is (J, \*signal_shape); Ωx is (J, K, \*signal_shape) for
    filters (circular correlation, as in (Ex)) and (J, M) for a matrix.
    """

    parameters: np.ndarray
    signal_shape: tuple
    kind: str

    def __post_init__(self):
        if self.kind not in ("filters", "matrix"):
            raise ValueError(f"kind must be 'filters' or 'matrix'; got {self.kind!r}")
        parameters = as_float_array(self.parameters, "parameters", min_ndim=2)
        if isinstance(self.signal_shape, (str, bytes)) or not hasattr(self.signal_shape, "__iter__"):
            raise TypeError(f"signal_shape must be a tuple of positive integers; got {self.signal_shape!r}")
        signal_shape = tuple(check_count(n, "signal_shape entries") for n in self.signal_shape)
        if self.kind == "matrix":
            if parameters.ndim != 2 or signal_shape != (parameters.shape[1],):
                raise ValueError(
                    f"a matrix operator needs shape (M, n) with signal_shape (n,); got "
                    f"{parameters.shape} and {signal_shape}"
                )
            bank = None
        else:
            bank = FilterBankOperator(parameters, signal_shape)
        object.__setattr__(self, "parameters", parameters)
        object.__setattr__(self, "signal_shape", signal_shape)
        object.__setattr__(self, "_bank", bank)

    @classmethod
    def from_filters(cls, filters, signal_shape) -> AnalysisOperator:
        r"""Ω = [C_1; …; C_K], circular correlation with K filters (shape (K, \*filter_shape))."""
        return cls(np.asarray(filters, dtype=np.float64), tuple(signal_shape), "filters")

    @classmethod
    def from_matrix(cls, matrix) -> AnalysisOperator:
        """Ω = a general (M, n) matrix acting on 1D signals of length n."""
        matrix = as_float_array(matrix, "matrix", ndim=2)
        return cls(matrix, (matrix.shape[1],), "matrix")

    def with_parameters(self, parameters) -> AnalysisOperator:
        """The same kind of operator with new filters or a new matrix of the same shape."""
        parameters = as_float_array(parameters, "parameters")
        if parameters.shape != self.parameters.shape:
            raise ValueError(f"parameters must have shape {self.parameters.shape}; got {parameters.shape}")
        return AnalysisOperator(parameters, self.signal_shape, self.kind)

    def _check(self, x, name="x"):
        x = np.asarray(x, dtype=np.float64)
        d = len(self.signal_shape)
        if x.ndim < d + 1 or x.shape[-d:] != self.signal_shape:
            raise ValueError(f"{name} must have shape (J, *{self.signal_shape}); got {x.shape}")
        return x

    def forward(self, x) -> np.ndarray:
        r"""Ωx for a batch x of shape (J, \*signal_shape)."""
        x = self._check(x)
        if self.kind == "matrix":
            return x @ self.parameters.T
        return self._bank.forward(x)

    def adjoint(self, d) -> np.ndarray:
        """Ω'd for a batch of dual variables of the shape of Ωx."""
        d = np.asarray(d, dtype=np.float64)
        if self.kind == "matrix":
            return d @ self.parameters
        return self._bank.adjoint(d)

    def parameter_gradient(self, a, b) -> np.ndarray:
        """∇ of Σ_j ⟨a_j, Ω b_j⟩ with respect to ``parameters`` (a: shape of Ωx, b: shape of x).

        For a matrix it is Σ_j a_j b_j'; for filters, r_k[s] = Σ_j Σ_i a_{j,k,i} b_{j,i+s}.
        """
        b = self._check(b, "b")
        a = np.asarray(a, dtype=np.float64)
        if self.kind == "matrix":
            return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])
        return self._bank.lag_correlation(a, b)

    def norm(self) -> float:
        """‖Ω‖₂, the largest singular value (exact: SVD for a matrix, FFT for a circulant bank)."""
        if self.kind == "matrix":
            return float(np.linalg.norm(self.parameters, 2))
        axes = tuple(range(1, self.parameters.ndim))
        spectra = sfft.rfftn(self.parameters, s=self.signal_shape, axes=axes)
        return float(np.sqrt(np.max(np.sum(np.abs(spectra) ** 2, axis=0))))


def l1_analysis_objective(x, y, operator: AnalysisOperator, lam: float) -> np.ndarray:
    """½‖x_j − y_j‖² + λ‖Ωx_j‖₁ for each signal of the batch, shape (J,)."""
    _check_operator(operator)
    x = operator._check(as_float_array(x, "x"))
    y = operator._check(as_float_array(y, "y"), "y")
    if x.shape != y.shape:
        raise ValueError(f"x must have the shape of y, {y.shape}; got {x.shape}")
    lam = positive_scalar(lam, "lam (λ)")
    axes = tuple(range(1, x.ndim))
    z = operator.forward(x)
    return 0.5 * np.sum((x - y) ** 2, axis=axes) + lam * np.sum(np.abs(z), axis=tuple(range(1, z.ndim)))


def default_steps(operator: AnalysisOperator, lam: float) -> tuple[float, float]:
    """τ = σ = 1/(λ‖Ω‖₂), so that τσλ²‖Ω‖² = 1 (Chambolle–Pock's step condition)."""
    _check_operator(operator)
    lam = positive_scalar(lam, "lam (λ)")
    norm = operator.norm()
    if norm == 0:
        raise ValueError("the analysis operator is zero; there is nothing to regularise")
    step = 1.0 / (lam * norm)
    return step, step


def _check_dual_step(dual_step):
    if dual_step not in DUAL_STEPS:
        raise ValueError(f"dual_step must be one of {DUAL_STEPS}; got {dual_step!r}")


def _check_operator(operator) -> None:
    if not isinstance(operator, AnalysisOperator):
        raise TypeError(f"operator must be an AnalysisOperator; got {type(operator).__name__}")


def _check_loss(loss) -> None:
    if not (callable(getattr(loss, "value", None)) and callable(getattr(loss, "gradient", None))):
        raise TypeError(f"loss must have value(x) and gradient(x) methods; got {type(loss).__name__}")


def _check_problem(y, operator, lam, n_iter, tau, sigma, x0):
    _check_operator(operator)
    y = operator._check(as_float_array(y, "y"), "y")
    lam = positive_scalar(lam, "lam (λ)")
    n_iter = check_count(n_iter, "n_iter (T)", minimum=0)
    if tau is None or sigma is None:
        default_tau, default_sigma = default_steps(operator, lam)
        tau = default_tau if tau is None else tau
        sigma = default_sigma if sigma is None else sigma
    tau = positive_scalar(tau, "tau (τ)")
    sigma = positive_scalar(sigma, "sigma (σ)")
    if x0 is None:
        x0 = y.copy()
    else:
        x0 = as_float_array(x0, "x0")
        if x0.shape != y.shape:
            raise ValueError(f"x0 must have the shape of y, {y.shape}; got {x0.shape}")
    return y, lam, int(n_iter), tau, sigma, x0


# ----------------------------------------------------------------------------- the solver
@dataclass
class PrimalDualResult:
    r"""T iterations of Chambolle–Pock on the ℓ1-analysis problem.

    Attributes
    ----------
    x : array (J, \*signal_shape)   x_T
    d : array (shape of Ωx)        the dual variable d_T (\|d_i\| ≤ 1)
    n_iter : int
    tau, sigma : float             the primal and dual steps
    dual_step : str                "bregman" (smooth, eq. 4.22) or "euclidean" (projection)
    objective : array (J,)         ½‖x_T − y‖² + λ‖Ωx_T‖₁
    """

    x: np.ndarray
    d: np.ndarray
    n_iter: int
    tau: float
    sigma: float
    dual_step: str
    objective: np.ndarray


def _iterate(y, operator, lam, n_iter, tau, sigma, x0, dual_step="bregman", store=0):
    r"""The primal–dual loop; returns (x_T, d_T, stored).

    ``stored`` holds (x̄_t, d_{t+1}, s_{t+1}) for the last ``store`` steps, where s is the
    derivative of the dual update with respect to its argument: 1 − d² for the Bregman step
    (d = tanh η), and the indicator of \|d̃ + u\| < 1 for the projection.
    """
    x, x_bar = x0, x0
    dual = np.zeros_like(operator.forward(x0))  # η (Bregman, mirror coordinates) or d (projection); d_0 = 0
    d = dual
    stored = []
    first_kept = n_iter - store
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, where it happened
        return _loop(y, operator, lam, n_iter, tau, sigma, x, x_bar, dual, d, stored, first_kept, dual_step)


def _loop(y, operator, lam, n_iter, tau, sigma, x, x_bar, dual, d, stored, first_kept, dual_step):
    for t in range(n_iter):
        u = (sigma * lam) * operator.forward(x_bar)
        if dual_step == "bregman":
            dual = dual + u
            d = np.tanh(dual)
            slope = (1.0 - d * d) if t >= first_kept else None
        else:
            moved = d + u
            d = np.clip(moved, -1.0, 1.0)
            slope = (np.abs(moved) < 1.0).astype(np.float64) if t >= first_kept else None
        x_next = (x + tau * y - (tau * lam) * operator.adjoint(d)) / (1.0 + tau)
        if t >= first_kept:
            stored.append((x_bar, d, slope))
        x_bar = 2.0 * x_next - x
        x = x_next
        if t % 50 == 49 or t == n_iter - 1:  # cheap: one check every 50 steps
            check_finite(
                "the primal–dual iteration",
                f"in x at step {t + 1}",
                f"the steps τ = {tau:g}, σ = {sigma:g} with λ = {lam:g} are too large (τσλ²‖Ω‖² must be ≤ 1)",
                x,
            )
    return x, d, stored


def chambolle_pock_l1(
    y,
    operator: AnalysisOperator,
    lam: float,
    n_iter: int,
    *,
    tau: float | None = None,
    sigma: float | None = None,
    dual_step: str = "bregman",
    x0=None,
) -> PrimalDualResult:
    r"""T iterations of Chambolle–Pock for min_x ½‖x − y‖² + λ‖Ωx‖₁ (review eq. 4.20).

    Parameters
    ----------
    y : array (J, \*signal_shape)
        Noisy signals, one per row.
    operator : AnalysisOperator
        Ω (filters or matrix).
    lam : float
        λ > 0.
    n_iter : int
        T.
    tau, sigma : float, optional
        Primal and dual steps; default 1/(λ‖Ω‖₂) each.
    dual_step : {"bregman", "euclidean"}
        The smooth Bregman step (4.22) or the usual projection (non-smooth in its input).
    x0 : array, optional
        Primal starting point, default y; the dual starts at d = 0.

    Returns
    -------
    PrimalDualResult
    """
    _check_dual_step(dual_step)
    y, lam, n_iter, tau, sigma, x0 = _check_problem(y, operator, lam, n_iter, tau, sigma, x0)
    x, d, _ = _iterate(y, operator, lam, n_iter, tau, sigma, x0, dual_step)
    return PrimalDualResult(
        x=x,
        d=d,
        n_iter=n_iter,
        tau=tau,
        sigma=sigma,
        dual_step=dual_step,
        objective=l1_analysis_objective(x, y, operator, lam),
    )


def unrolled_l1_loss(
    y,
    loss: UpperLoss,
    operator: AnalysisOperator,
    lam: float,
    n_iter: int,
    *,
    tau: float | None = None,
    sigma: float | None = None,
    dual_step: str = "bregman",
    x0=None,
) -> float:
    """ℓ(x_T(λ, Ω)) for T Chambolle–Pock iterations with fixed steps (for finite differences)."""
    _check_loss(loss)
    _check_dual_step(dual_step)
    y, lam, n_iter, tau, sigma, x0 = _check_problem(y, operator, lam, n_iter, tau, sigma, x0)
    return loss.value(_iterate(y, operator, lam, n_iter, tau, sigma, x0, dual_step)[0])


# ----------------------------------------------------------------------------- reverse mode
#: certified accuracy ‖x_T − x̂‖ asked of the unrolled iterate before ``converged`` is True
UNROLLED_TOL = 1e-6


def primal_dual_gap(x, d, y, operator: AnalysisOperator, lam: float) -> np.ndarray:
    r"""P(x) − D(d) per signal for min_x ½‖x − y‖² + λ‖Ωx‖₁, with \|d_i\| ≤ 1 (review App. A, eq. A.10).

    D(d) = ½‖y‖² − ½‖y − λΩ'd‖² is the dual objective; since P is 1-strongly convex,
    ½‖x − x̂‖² ≤ P(x) − P(x̂) ≤ P(x) − D(d), so √(2 gap) certifies ‖x − x̂‖.
    """
    objective = l1_analysis_objective(x, y, operator, lam)  # checks x, y, operator and λ
    y = as_float_array(y, "y")
    d = as_float_array(d, "d")
    expected = operator.forward(y).shape
    if d.shape != expected:
        raise ValueError(f"d must have the shape of Ωy, {expected}; got {d.shape}")
    lam = positive_scalar(lam, "lam (λ)")
    axes = tuple(range(1, np.ndim(y)))
    dual = 0.5 * np.sum(y * y, axis=axes) - 0.5 * np.sum((y - lam * operator.adjoint(d)) ** 2, axis=axes)
    return objective - dual


def unrolled_l1_hypergradient(
    y,
    loss: UpperLoss,
    operator: AnalysisOperator,
    lam: float,
    n_iter: int,
    *,
    backprop_steps: int | None = None,
    tau: float | None = None,
    sigma: float | None = None,
    dual_step: str = "bregman",
    x0=None,
    record_truncations: bool = False,
    tol: float = UNROLLED_TOL,
) -> HypergradientResult:
    r"""∂ℓ(x_T)/∂λ and ∂ℓ(x_T)/∂Ω for T Bregman Chambolle–Pock iterations, by a hand-written reverse sweep.

    The forward pass stores x̄_t and d_{t+1} for the last k steps.  With adjoints x̂, x̄̂, η̂ of
    x_t, x̄_t, η_t (starting from x̂_T = ∇ₓℓ(x_T), x̄̂_T = η̂_T = 0), one step back is

        a   = x̂_{t+1} + 2 x̄̂_{t+1}                         (adjoint of x_{t+1} inside the step)
        a_η = η̂_{t+1} − (1 − d_{t+1}²) ⊙ (τλ/(1+τ)) Ω a       (through d = tanh η)
        ∂λ += −τ/(1+τ) ⟨d_{t+1}, Ω a⟩ + σ ⟨a_η, Ω x̄_t⟩
        ∂Ω += −τλ/(1+τ) ∇_Ω⟨d_{t+1}, Ω a⟩ + σλ ∇_Ω⟨a_η, Ω x̄_t⟩
        x̂_t = a/(1+τ) − x̄̂_{t+1},   x̄̂_t = σλ Ω' a_η,   η̂_t = a_η.

    k = ``backprop_steps`` < T truncates the sweep (the first T − k steps are treated as
    constant), as in the note on unrolled Chambolle–Pock for analysis-operator learning.

    Parameters
    ----------
    y : array (J, \*signal_shape)
    loss : UpperLoss
        e.g. ``SquaredErrorLoss(truth)``.
    operator : AnalysisOperator
    lam : float
    n_iter : int
        T ≥ 1.
    backprop_steps : int, optional
        k with 1 ≤ k ≤ T; default T.
    tau, sigma : float, optional
        Default 1/(λ‖Ω‖₂), computed once and held fixed.
    x0 : array, optional
        Default y.
    record_truncations : bool
        Keep ∂ℓ/∂λ after every backward step.
    tol : float
        Certified accuracy asked of x_T: ``converged`` is True when every signal's
        √(2·(P(x_T) − D(d_T))) ≤ tol (see :func:`primal_dual_gap`).  With k = T the gradient is
        exact for the unrolled map x_T whatever T; ``converged`` says whether x_T is also the
        lower-level minimiser, i.e. whether the estimate is one of the exactly solved loss.  A
        truncated sweep (k < T) is biased either way; the message says so.

    Returns
    -------
    HypergradientResult
        ``gradient`` = ∂ℓ/∂Ω in the shape of ``operator.parameters`` (the matrix, or the filters),
        ``loss`` = ℓ(x_T), ``x`` = x_T, ``lower_iterations`` = T, ``products`` = operator
        applications of the reverse sweep (Ω, Ω' and the two parameter correlations: 5 per step),
        ``diagnostics``: ``gradient_lam`` (∂ℓ/∂λ), ``gap`` and ``error_bound`` (max over signals),
        ``backprop_steps`` k, ``tau``, ``sigma``, ``dual_step``, ``stored_bytes`` (the stored
        (x̄_t, d_{t+1}, slope) triples), ``truncated_lam`` (∂ℓ/∂λ after 1…k backward steps, or
        None); ``state["d"]`` = d_T.
    """
    start = time.perf_counter()
    _check_loss(loss)
    _check_dual_step(dual_step)
    tol = positive_scalar(tol, "tol")
    y, lam, n_iter, tau, sigma, x0 = _check_problem(y, operator, lam, n_iter, tau, sigma, x0)
    if n_iter < 1:
        raise ValueError("n_iter (T) must be at least 1 to differentiate the iteration")
    k = n_iter if backprop_steps is None else check_count(backprop_steps, "backprop_steps (k)")
    if not 1 <= k <= n_iter:
        raise ValueError(f"backprop_steps (k) must be an integer with 1 ≤ k ≤ T = {n_iter}; got {backprop_steps!r}")
    k = int(k)
    x_T, d_T, stored = _iterate(y, operator, lam, n_iter, tau, sigma, x0, dual_step, store=k)
    adj_x = loss.gradient(x_T)
    adj_xbar = np.zeros_like(adj_x)
    adj_eta = None
    g_lam = 0.0
    g_op = np.zeros_like(operator.parameters)
    history = [] if record_truncations else None
    shrink = 1.0 / (1.0 + tau)
    for i in range(k):
        x_bar, d, slope = stored[k - 1 - i]
        a = adj_x + 2.0 * adj_xbar
        omega_a = operator.forward(a)
        a_d = (-tau * lam * shrink) * omega_a
        a_eta = slope * a_d
        if adj_eta is not None:
            a_eta += adj_eta
        g_lam += -tau * shrink * float(np.sum(d * omega_a)) + sigma * float(np.sum(a_eta * operator.forward(x_bar)))
        g_op += (-tau * lam * shrink) * operator.parameter_gradient(d, a)
        g_op += (sigma * lam) * operator.parameter_gradient(a_eta, x_bar)
        if history is not None:
            history.append(g_lam)
        adj_x = shrink * a - adj_xbar
        adj_xbar = (sigma * lam) * operator.adjoint(a_eta)
        adj_eta = a_eta
    stored_bytes = sum(int(xb.nbytes + dd.nbytes + ss.nbytes) for xb, dd, ss in stored)
    gap = np.maximum(primal_dual_gap(x_T, d_T, y, operator, lam), 0.0)
    bound = np.sqrt(2.0 * gap)
    worst = float(bound.max(initial=0.0))
    converged = bool(np.all(bound <= tol))
    if converged:
        message = (
            f"unrolled {dual_step} Chambolle–Pock: T = {n_iter} iterations certify ‖x_T − x̂‖ ≤ {worst:.1e} "
            f"≤ tol = {tol:g}; gradient through the last {k} of {n_iter} steps"
            + (" (truncated: biased)" if k < n_iter else "")
        )
    else:
        message = (
            f"unrolled {dual_step} Chambolle–Pock: after T = {n_iter} iterations the certified ‖x_T − x̂‖ "
            f"is up to {worst:.1e} > tol = {tol:g}: the gradient is that of the unrolled loss ℓ(x_T), "
            "not yet of the exactly solved one (increase n_iter)"
        )
    diagnostics = {
        "gradient_lam": g_lam,
        "gap": float(gap.max(initial=0.0)),
        "error_bound": worst,
        "backprop_steps": k,
        "tau": tau,
        "sigma": sigma,
        "dual_step": dual_step,
        "stored_bytes": stored_bytes,
        "truncated_lam": None if history is None else np.array(history),
    }
    return HypergradientResult(
        gradient=g_op,
        loss=loss.value(x_T),
        x=x_T,
        lower_iterations=n_iter,
        products=5 * k,
        diagnostics=diagnostics,
        seconds=time.perf_counter() - start,
        converged=converged,
        message=message,
        method=f"unrolled-{dual_step}-primal-dual",
        state={"d": d_T},
    )


# ----------------------------------------------------------------------------- learning Ω
@dataclass
class LearningHistory:
    """Gradient descent on Ω through the unrolled iteration.

    Attributes
    ----------
    operator : AnalysisOperator    the learned Ω
    loss : array (U + 1,)           ℓ(x_T) before each update and after the last
    backprop_steps : int            k
    n_iter : int                    T
    """

    operator: AnalysisOperator
    loss: np.ndarray
    backprop_steps: int
    n_iter: int


def learn_analysis_operator(
    y,
    loss: UpperLoss,
    operator: AnalysisOperator,
    lam: float,
    n_iter: int,
    *,
    backprop_steps: int | None = None,
    n_updates: int = 100,
    learning_rate: float = 1e-2,
    decay: float = 1.0,
    dual_step: str = "bregman",
) -> LearningHistory:
    """Learn Ω by normalised gradient descent on ℓ(x_T(Ω)), back-propagating through the last k steps.

    Each update recomputes the steps τ = σ = 1/(λ‖Ω‖₂) for the current Ω (held fixed in that
    update's gradient) and moves Ω by ``learning_rate`` · ‖Ω‖ along −g/‖g‖, where g is the
    (possibly truncated) gradient of :func:`unrolled_l1_hypergradient`.  The normalised step
    makes runs with different k comparable: only the direction of their gradients differs.
    The learning rate is multiplied by ``decay`` (0 < decay ≤ 1) after every update.
    """
    learning_rate = positive_scalar(learning_rate, "learning_rate")
    decay = positive_scalar(decay, "decay")
    if decay > 1:
        raise ValueError(f"decay must lie in (0, 1]; got {decay!r}")
    n_updates = check_count(n_updates, "n_updates", minimum=0)
    _check_loss(loss)
    _check_dual_step(dual_step)
    n_iter = _check_problem(y, operator, lam, n_iter, None, None, None)[2]  # every update checks y again
    if n_iter < 1:
        raise ValueError("n_iter (T) must be at least 1 to differentiate the iteration")
    if backprop_steps is not None and not 1 <= check_count(backprop_steps, "backprop_steps (k)") <= n_iter:
        raise ValueError(f"backprop_steps (k) must be an integer with 1 ≤ k ≤ T = {n_iter}; got {backprop_steps!r}")
    losses = []
    k = n_iter if backprop_steps is None else backprop_steps
    for _ in range(int(n_updates)):
        result = unrolled_l1_hypergradient(y, loss, operator, lam, n_iter, backprop_steps=k, dual_step=dual_step)
        losses.append(result.loss)
        g = result.gradient
        g_norm = np.linalg.norm(g)
        if g_norm == 0:
            break
        params = operator.parameters
        operator = operator.with_parameters(params - learning_rate * np.linalg.norm(params) * g / g_norm)
        learning_rate *= decay
    losses.append(unrolled_l1_loss(y, loss, operator, lam, n_iter, dual_step=dual_step))
    return LearningHistory(operator=operator, loss=np.array(losses), backprop_steps=int(k), n_iter=int(n_iter))
