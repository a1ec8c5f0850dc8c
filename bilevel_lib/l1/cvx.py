r"""CVXPY/diffcp references for the ℓ1 lower level (Ch. "CVXPY and diffcp").

CVXPY (Diamond & Boyd 2016) can differentiate the solution of a convex problem with respect to its
parameters when the problem follows the rules of *disciplined parametrized programming* (DPP):
it is canonicalised once into a cone program whose data depend affinely on the parameters, and
``backward()`` applies the adjoint of the derivative of that cone program's solution map, computed
by diffcp (Agrawal et al. 2019).  Two programs are provided:

* :class:`L1DenoisingProgram`: min ½‖x − y‖² + ‖W x‖₁ with W (k×n) and y as Parameters; W @ x is a
  parameter times a variable, which DPP allows.
* :class:`FilterDenoisingProgram`: the convolutional case min ½‖x − y‖² + Σ_k w_k Σ_i φ((c_k ⊛ x)_i)
  with the filter taps as a Parameter, φ = \|·\| or the corner-rounded √(z² + ε²).  A correlation
  written with the taps inside a convolution atom would multiply a parameter by a parameter-free
  *expression of a parameter-shaped operator*, which is not DPP; here each filter response is an
  auxiliary variable z_k constrained to Σ_a c_{k,a} · x^{⟨a⟩}, a sum of scalar parameters times
  shifted copies of x (library convention: circular correlation, (c ⊛ x)_i = Σ_a c_a x_{i+a}).

``gradient`` seeds **every** variable before ``backward()``: CVXPY treats a variable whose
``gradient`` is unset as if the loss contained the sum of its entries (it seeds it with ones), so
the auxiliary z must be seeded with zeros explicitly.  The SCS tolerance (``eps``) and diffcp's
derivative ``mode`` ("dense", "lsqr", "lsmr") are exposed.  Slow by design: these are references.
Every ``gradient`` returns :class:`~bilevel_lib.hypergrad.result.HypergradientResult` (SCS
iterations as ``lower_iterations``, status and SCS residuals in ``diagnostics``, ``converged``
False unless the status is "optimal"); :func:`cvx_l1_hypergradient` averages over a batch.
"""

from __future__ import annotations

import time

import numpy as np

from ..hypergrad.result import HypergradientResult
from .exact import as_batch, check_signals, count, flag, real_array, real_number

__all__ = ["L1DenoisingProgram", "FilterDenoisingProgram", "cvx_l1_hypergradient", "circular_shift_indices", "MODES"]

#: the ways diffcp solves its derivative system in ``backward()``: a dense factorisation, LSQR or LSMR
MODES = ("dense", "lsqr", "lsmr")


def _cvxpy():
    import cvxpy as cp  # imported lazily: the rest of the library does not need it

    return cp


def _result(parameter_gradient, x, x_true, problem, options, solve_seconds, backward_seconds) -> HypergradientResult:
    """A CVXPY/diffcp gradient as the contract: SCS's iterations and residuals, status, times."""
    stats = problem.solver_stats
    info = (stats.extra_stats or {}).get("info", {}) if isinstance(stats.extra_stats, dict) else {}
    iterations = int(stats.num_iters or info.get("iter", 0) or 0)
    status = problem.status
    converged = status == "optimal"
    scs = {key: float(info[key]) for key in ("res_pri", "res_dual", "gap") if key in info}
    detail = ", ".join(f"{key} {value:.1e}" for key, value in scs.items())
    if converged:
        message = (
            f"CVXPY/SCS: status {status} after {iterations} iterations ({detail}); diffcp backward() in "
            f"mode {options['mode']!r}"
        )
    else:
        message = (
            f"CVXPY/SCS: status {status} after {iterations} of max_iters = {options['max_iters']} iterations "
            f"({detail}): the solution, and so the gradient, is not accurate to eps = {options['eps_abs']:g}"
        )
    diagnostics = {
        "status": status,
        "scs_iterations": iterations,
        "solve_seconds": solve_seconds,
        "backward_seconds": backward_seconds,
        "mode": options["mode"],
        "eps": options["eps_abs"],
        **{f"scs_{key}": value for key, value in scs.items()},
    }
    return HypergradientResult(
        gradient=parameter_gradient,
        loss=float(0.5 * np.sum((x - x_true) ** 2)),
        x=x,
        lower_iterations=iterations,
        diagnostics=diagnostics,
        seconds=solve_seconds + backward_seconds,
        converged=converged,
        message=message,
        method=f"cvxpy-diffcp-{options['mode']}",
    )


def _solver_options(eps, mode, max_iters):
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    eps = real_number(eps, "eps", maximum=1.0)
    return {"eps_abs": eps, "eps_rel": eps, "mode": mode, "max_iters": count(max_iters, "max_iters")}


def _solve(problem, options, requires_grad) -> None:
    """Solve by SCS: with ``requires_grad`` through diffcp (which takes ``mode``), else SCS directly.

    Without ``requires_grad`` CVXPY picks another solver (Clarabel) by default, which knows neither
    SCS's ``eps_abs``/``max_iters`` nor diffcp's ``mode``; naming SCS keeps the two paths the same solver.
    """
    requires_grad = flag(requires_grad, "requires_grad")
    if requires_grad:
        problem.solve(requires_grad=True, **options)
    else:
        cp = _cvxpy()
        scs = {key: value for key, value in options.items() if key != "mode"}
        problem.solve(solver=cp.SCS, **scs)


class L1DenoisingProgram:
    """min_x ½‖x − y‖² + ‖W x‖₁ for one signal, as a DPP program with W and y as Parameters.

    Build once for a shape (k, n); every call only sets parameter values, so CVXPY's
    canonicalisation is paid once.

    Parameters
    ----------
    n, k : int              signal length and number of rows of W
    eps : float             SCS tolerance (absolute and relative)
    mode : str              diffcp derivative mode: "dense", "lsqr" or "lsmr"
    max_iters : int         SCS iteration budget
    """

    def __init__(self, n: int, k: int, *, eps: float = 1e-8, mode: str = "dense", max_iters: int = 100_000):
        cp = _cvxpy()
        self.n, self.k = count(n, "n"), count(k, "k")
        self.options = _solver_options(eps, mode, max_iters)
        self.W = cp.Parameter((self.k, self.n), name="W")
        self.y = cp.Parameter(self.n, name="y")
        self.x = cp.Variable(self.n, name="x")
        objective = 0.5 * cp.sum_squares(self.x - self.y) + cp.norm1(self.W @ self.x)
        self.problem = cp.Problem(cp.Minimize(objective))
        if not self.problem.is_dcp(dpp=True):  # pragma: no cover - a guard for future edits
            raise RuntimeError("the ℓ1 program is not DPP")

    def _set(self, y, W):
        y = real_array(y, "y", ndim=1)
        W = real_array(W, "W", ndim=2)
        if y.shape != (self.n,) or W.shape != (self.k, self.n):
            raise ValueError(
                f"expected y of shape ({self.n},) and W of shape ({self.k}, {self.n}); got {y.shape} and {W.shape}"
            )
        self.y.value, self.W.value = y, W

    def solve(self, y, W, *, requires_grad: bool = False) -> np.ndarray:
        r"""x\*(W) by SCS (through diffcp); returns x."""
        self._set(y, W)
        _solve(self.problem, self.options, requires_grad)
        if self.problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"CVXPY could not solve the ℓ1 problem: status {self.problem.status}")
        return np.array(self.x.value)

    def gradient(self, y, x_true, W) -> HypergradientResult:
        r"""∇_W ½‖x\*(W) − x_true‖² by ``solve(requires_grad=True)`` and ``backward()`` (one signal).

        Returns a HypergradientResult: ``gradient`` (k, n), ``loss`` = ½‖x − x_true‖² (one signal,
        not averaged), ``x``, ``lower_iterations`` = SCS iterations, ``cg_iterations`` = 0 (diffcp
        does not report its LSQR/LSMR iterations), ``diagnostics``: ``status``, SCS residuals
        ``scs_res_pri``, ``scs_res_dual``, ``scs_gap``, ``solve_seconds``, ``backward_seconds``,
        ``mode``, ``eps``; ``converged`` = status "optimal" (False for "optimal_inaccurate").
        Accurate to about SCS's ``eps``, not to rounding.
        """
        x_true = real_array(x_true, "x_true", ndim=1)
        if x_true.shape != (self.n,):
            raise ValueError(f"x_true must have shape ({self.n},); got {x_true.shape}")
        start = time.perf_counter()
        x = self.solve(y, W, requires_grad=True)
        middle = time.perf_counter()
        self.x.gradient = x - x_true  # the only variable: seed it with ∇ₓℓ
        self.problem.backward()
        end = time.perf_counter()
        return _result(np.array(self.W.gradient), x, x_true, self.problem, self.options, middle - start, end - middle)


def _shape(value, name) -> tuple:
    if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"{name} must be a non-empty tuple of positive integers; got {value!r}")
    return tuple(count(v, f"{name} entries") for v in value)


def circular_shift_indices(signal_shape, filter_shape) -> np.ndarray:
    """Index arrays I[a] with x.ravel()[I[a]][i] = x_{i+a} (circularly), one per tap a (C order).

    Shape (S, N).  Row a turns the flattened signal into its copy shifted by the tap offset a, so
    (c ⊛ x) = Σ_a c_a x[I[a]] in the library's correlation convention.
    """
    signal_shape = _shape(signal_shape, "signal_shape")
    filter_shape = _shape(filter_shape, "filter_shape")
    if len(signal_shape) != len(filter_shape) or any(f > s for f, s in zip(filter_shape, signal_shape)):
        raise ValueError(f"filter shape {filter_shape} must have one entry per signal axis and fit in {signal_shape}")
    grid = np.indices(signal_shape).reshape(len(signal_shape), -1)
    rows = []
    for tap in np.ndindex(filter_shape):
        shifted = tuple((grid[a] + tap[a]) % signal_shape[a] for a in range(len(signal_shape)))
        rows.append(np.ravel_multi_index(shifted, signal_shape))
    return np.array(rows)


class FilterDenoisingProgram:
    r"""min_x ½‖x − y‖² + Σ_k w_k Σ_i φ((c_k ⊛ x)_i) for one image, filter taps as a Parameter (DPP).

    Parameters
    ----------
    signal_shape : tuple       image shape, e.g. (16, 16)
    n_filters : int            K
    filter_shape : tuple       e.g. (3, 3)
    penalty : {"l1", "cr1n"}   φ(z) = \|z\| or √(z² + ε²) (the corner-rounded 1-norm of (Ex))
    smoothing : float          ε for "cr1n"
    strengths : array (K,)     w_k = e^{β0+β_k} (default ones; for "l1" fold them into the filters)
    eps, mode, max_iters       SCS tolerance, diffcp mode, SCS budget
    """

    def __init__(
        self,
        signal_shape,
        n_filters: int,
        filter_shape,
        *,
        penalty: str = "l1",
        smoothing: float = 0.01,
        strengths=None,
        eps: float = 1e-8,
        mode: str = "dense",
        max_iters: int = 100_000,
    ):
        cp = _cvxpy()
        self.signal_shape = _shape(signal_shape, "signal_shape")
        self.filter_shape = _shape(filter_shape, "filter_shape")
        if not isinstance(penalty, str) or penalty not in ("l1", "cr1n"):
            raise ValueError(f"penalty must be 'l1' or 'cr1n'; got {penalty!r}")
        K = count(n_filters, "n_filters")
        shifts = circular_shift_indices(self.signal_shape, self.filter_shape)  # (S, N)
        S, N = shifts.shape
        strengths = np.ones(K) if strengths is None else real_array(strengths, "strengths", ndim=1)
        if strengths.shape != (K,) or np.any(strengths < 0):
            raise ValueError(f"strengths must be {K} non-negative numbers; got {strengths}")
        self.n_filters, self.n_pixels = K, N
        self.options = _solver_options(eps, mode, max_iters)
        self.filters = cp.Parameter((K, S), name="filters")
        self.y = cp.Parameter(N, name="y")
        self.x = cp.Variable(N, name="x")
        self.z = cp.Variable((K, N), name="z")  # auxiliary: the filter responses
        shifted = [self.x[shifts[a]] for a in range(S)]
        constraints = [self.z[k] == sum(self.filters[k, a] * shifted[a] for a in range(S)) for k in range(K)]
        if penalty == "l1":
            regulariser = sum(strengths[k] * cp.norm1(self.z[k]) for k in range(K))
        else:
            smoothing = real_number(smoothing, "smoothing")
            offset = np.full((1, N), smoothing)
            regulariser = sum(
                strengths[k] * cp.sum(cp.norm(cp.vstack([cp.reshape(self.z[k], (1, N), order="C"), offset]), 2, axis=0))
                for k in range(K)
            )
        self.problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(self.x - self.y) + regulariser), constraints)
        if not self.problem.is_dcp(dpp=True):  # pragma: no cover
            raise RuntimeError("the filter program is not DPP")

    def _set(self, y, filters):
        y = real_array(y, "y")
        filters = real_array(filters, "filters")
        if y.shape != self.signal_shape:
            raise ValueError(f"y must have shape {self.signal_shape}; got {y.shape}")
        if filters.shape != (self.n_filters,) + self.filter_shape:
            raise ValueError(f"filters must have shape {(self.n_filters,) + self.filter_shape}; got {filters.shape}")
        self.y.value = y.ravel()
        self.filters.value = filters.reshape(self.n_filters, -1)

    def solve(self, y, filters, *, requires_grad: bool = False) -> np.ndarray:
        """x̂ for one image; returns shape ``signal_shape``."""
        self._set(y, filters)
        _solve(self.problem, self.options, requires_grad)
        if self.problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"CVXPY could not solve the filter problem: status {self.problem.status}")
        return np.array(self.x.value).reshape(self.signal_shape)

    def gradient(self, y, x_true, filters, *, seed_auxiliary: bool = True) -> HypergradientResult:
        r"""∇ of ½‖x̂ − x_true‖² with respect to the filter taps, shape (K, \*filter_shape).

        The fields are those of :meth:`L1DenoisingProgram.gradient`; ``x`` has shape ``signal_shape``.

        ``seed_auxiliary=False`` leaves z.gradient unset, to show what goes wrong: CVXPY then seeds
        z with ones and returns the gradient of ½‖x̂ − x_true‖² + Σ ẑ instead.
        """
        x_true = real_array(x_true, "x_true")
        if x_true.shape != self.signal_shape:
            raise ValueError(f"x_true must have shape {self.signal_shape}; got {x_true.shape}")
        start = time.perf_counter()
        x = self.solve(y, filters, requires_grad=True)
        middle = time.perf_counter()
        self.x.gradient = (x - x_true).ravel()
        self.z.gradient = np.zeros(self.z.shape) if seed_auxiliary else None
        self.problem.backward()
        end = time.perf_counter()
        gradient = np.array(self.filters.gradient).reshape((self.n_filters,) + self.filter_shape)
        return _result(gradient, x, x_true, self.problem, self.options, middle - start, end - middle)


def cvx_l1_hypergradient(
    y,
    x_true,
    W,
    *,
    eps: float = 1e-9,
    mode: str = "dense",
    max_iters: int = 100_000,
    program: L1DenoisingProgram | None = None,
) -> HypergradientResult:
    r"""∇_W ℓ for a batch, ℓ(W) = (1/J) Σ_j ½‖x\*_j(W) − x_true_j‖², by CVXPY/diffcp, one signal at a time.

    The reference with the signature of :func:`~bilevel_lib.l1.gradients.l1_hypergradient`: it
    averages :meth:`L1DenoisingProgram.gradient` over the J signals (the library's loss
    convention).  Pass ``program`` to reuse a compiled one (its eps, mode and max_iters are used).

    Returns
    -------
    HypergradientResult
        ``gradient`` (k, n), ``loss`` (batch mean), ``x`` (J, n), ``lower_iterations`` = SCS
        iterations summed over signals, ``diagnostics``: ``status`` (one per signal),
        ``solve_seconds``, ``backward_seconds`` (sums), the worst SCS residuals; ``converged``
        = every signal "optimal".
    """
    y, W = check_signals(y, W)
    x_true = as_batch(x_true, "x_true")
    if x_true.shape != y.shape:
        raise ValueError(f"x_true must have the shape of y, {y.shape}; got {x_true.shape}")
    J, n = y.shape
    if program is None:
        program = L1DenoisingProgram(n, W.shape[0], eps=eps, mode=mode, max_iters=max_iters)
    elif not isinstance(program, L1DenoisingProgram):
        raise TypeError(f"program must be an L1DenoisingProgram; got {type(program).__name__}")
    elif (program.n, program.k) != (n, W.shape[0]):
        raise ValueError(f"program was built for (n, k) = {(program.n, program.k)}; W and y need {(n, W.shape[0])}")
    parts = [program.gradient(y[j], x_true[j], W) for j in range(J)]
    gradient = sum(p.gradient for p in parts) / J
    diagnostics = {
        "status": [p.diagnostics["status"] for p in parts],
        "scs_iterations": sum(p.lower_iterations for p in parts),
        "solve_seconds": sum(p.diagnostics["solve_seconds"] for p in parts),
        "backward_seconds": sum(p.diagnostics["backward_seconds"] for p in parts),
        "mode": program.options["mode"],
        "eps": program.options["eps_abs"],
    }
    for key in ("scs_res_pri", "scs_res_dual", "scs_gap"):
        values = [abs(p.diagnostics[key]) for p in parts if key in p.diagnostics]
        if values:
            diagnostics[key] = max(values)
    bad = [j for j, p in enumerate(parts) if not p.converged]
    converged = not bad
    message = f"CVXPY/diffcp over {J} signals: " + (
        "every solve optimal"
        if converged
        else f"{len(bad)} of {J} solves not optimal (first: signal {bad[0]}: {parts[bad[0]].message})"
    )
    return HypergradientResult(
        gradient=gradient,
        loss=float(np.mean([p.loss for p in parts])),
        x=np.stack([p.x for p in parts]),
        lower_iterations=diagnostics["scs_iterations"],
        diagnostics=diagnostics,
        seconds=sum(p.seconds for p in parts),
        converged=converged,
        message=message,
        method=parts[0].method if parts else "cvxpy-diffcp",
    )
