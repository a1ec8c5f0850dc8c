"""The one result every hypergradient estimator of the book returns.

Whatever the method (implicit with CG, KKT, finite differences, unrolled reverse or forward mode,
truncated, Jacobian-free, the φ = z² closed form, MAID's inexact estimate, the ℓ1 closed form, the
smoothed ℓ1 IFT, CVXPY/diffcp), an estimate of ∇ℓ(γ) comes back as a :class:`HypergradientResult`:

* ``gradient``: ∇ℓ in the parameter container the caller gave (a
  :class:`~bilevel_lib.problem.params.Hyperparameters` for the running example, the matrix W for the
  ℓ1 problems);
* ``loss``: ℓ at the lower-level solution used;
* the work done: ``lower_iterations``, ``cg_iterations`` and ``products`` (Hessian-vector,
  mixed or Jacobian-vector products, counted where the method has them);
* ``diagnostics``: what the method knows about its own accuracy (``lower_residual`` ‖∇ₓΦ‖/√N,
  ``cg_residual``, ``error_bound``, …);
* ``seconds``: wall time of the call;
* ``converged`` and ``message``: did every inner solve reach its tolerance, and if not, which one.

``x`` and ``state`` carry what a training loop needs to warm start the next call (x̂, the CG
solution q, the ℓ1 dual d); ``parts`` names the parts of γ that were differentiated (None: all).

The estimator protocol
----------------------
An *estimator* of the smooth lower level is a callable::

    estimator(cost, params, loss, *, x0=None, state=None, **settings)
        -> HypergradientResult

``x0`` warm starts the lower level (or, for the unrolled estimators, is the x_0 of the unrolled
map), ``state`` is the previous result's ``state``.  Every estimator of :mod:`bilevel_lib.hypergrad`
follows it (the φ = z² closed form through :func:`~bilevel_lib.hypergrad.closed_form.quadratic_estimator`),
and :func:`bilevel_lib.training.loops.train_double_loop` takes any of them as ``estimator=``.

Names (one per concept)
-----------------------
=====================  ==========================================================================
``n_iter``             T, the number of unrolled lower-level iterations of an unrolled estimator
``lower_iterations``   lower-level iterations: counted in a result and a training history, and
                       the fixed budget T of ``train_double_loop`` (App. D.2: T = 10)
``n_steps``            upper-level iterations of a training loop or of ``gradient_descent_beta``
``lower_tol``          tolerance on max_j ‖∇ₓΦ(x_j)‖/√N of a lower-level solve
``lower_max_iter``     iteration cap of a lower-level solve
``cg_tol``             CG tolerance (relative to ``cg_relative_to``: "rhs" or "initial")
``cg_max_iter``        iteration cap of CG
``lower_residual``     diagnostics key: max_j ‖∇ₓΦ(x_j)‖/√N at the x used
``cg_residual``        diagnostics key: final relative CG residual (max over images)
``error_bound``        diagnostics key: a computable bound on ‖estimate − ∇ℓ‖ (MAID)
``step``               α, the fixed step of an unrolled solver (diagnostics of the unrolled ones)
``backprop_steps``     k, the iterations a truncated sweep differentiates
``rng`` / ``seed``     a seed or ``numpy.random.Generator`` is passed as ``rng``; ``seed`` only
                       where a recipe draws its own data from an integer
=====================  ==========================================================================

A diagnostic (or warm-start state entry) can also be read as an attribute: ``result.cg_residual``
is ``result.diagnostics["cg_residual"]``, ``result.q`` is ``result.state["q"]``.

Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..util.validation import NonFiniteError

__all__ = ["HypergradientResult", "check_problem", "check_compatible", "check_finite_estimate"]


def check_problem(cost, params, loss=None) -> None:
    """``TypeError`` unless cost is a LowerLevelCost, params a Hyperparameters and loss has value/gradient.

    The entry check of the estimators of the smooth lower level (names the argument and what came).
    """
    from ..problem.cost import LowerLevelCost
    from ..problem.params import Hyperparameters

    if not isinstance(cost, LowerLevelCost):
        raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
    if not isinstance(params, Hyperparameters):
        raise TypeError(f"params must be a Hyperparameters instance; got {type(params).__name__}")
    if loss is not None and not (callable(getattr(loss, "value", None)) and callable(getattr(loss, "gradient", None))):
        raise TypeError(f"loss must have value(x) and gradient(x) methods; got {type(loss).__name__}")
    check_compatible(cost, params, loss)


def check_compatible(cost, params, loss=None) -> None:
    """``ValueError`` unless the filters of ``params`` act on the signals of ``cost`` and the truth of
    ``loss`` (if it has one) has the shape of the lower level's x: found at entry, before any solve."""
    signal_shape = tuple(cost.signal_shape)
    filter_shape = tuple(params.filters.shape[1:])
    if len(filter_shape) != len(signal_shape):
        raise ValueError(
            f"params must have {len(signal_shape)}-D filters for the {len(signal_shape)}-D signals of cost "
            f"{signal_shape}; got filters of shape {params.filters.shape}"
        )
    if any(f > n for f, n in zip(filter_shape, signal_shape)):
        raise ValueError(
            f"params must have filters that fit in the signals of cost {signal_shape}; got filters of shape {filter_shape}"
        )
    truth = getattr(loss, "truth", None)
    if isinstance(truth, np.ndarray) and truth.shape != cost.y.shape[:1] + signal_shape:
        raise ValueError(
            f"loss must compare x of shape {cost.y.shape[:1] + signal_shape} (one per training pair of cost); "
            f"got a loss whose truth has shape {truth.shape}"
        )


def check_finite_estimate(result: HypergradientResult) -> HypergradientResult:
    """Return ``result`` if its gradient and loss are finite, else raise
    :class:`~bilevel_lib.util.validation.NonFiniteError` naming the estimator and the non-finite quantity."""
    gradient = np.asarray(result.flat(None) if result.parts is None else result.flat(), dtype=np.float64)
    if not np.isfinite(gradient).all():
        bad = int(gradient.size - np.count_nonzero(np.isfinite(gradient)))
        raise NonFiniteError(
            f"{result.method or 'hypergradient'}: the hypergradient has {bad} of {gradient.size} entries NaN or "
            f"infinite (an overflow in the adjoint solve or the mixed product; {result.message})"
        )
    if not np.isfinite(result.loss):
        raise NonFiniteError(f"{result.method or 'hypergradient'}: the loss ℓ(x) is {result.loss} ({result.message})")
    return result


@dataclass
class HypergradientResult:
    """∇ℓ(γ) by one estimator, with its loss, work, diagnostics, time and convergence.

    Attributes
    ----------
    gradient : Hyperparameters or array
        The estimate, in the container of the parameters it was taken for.
    loss : float
        ℓ at the lower-level solution used (NaN only if the method has no loss of its own).
    x : array or None
        That lower-level solution (J, …), to warm start the next call.
    lower_iterations, cg_iterations, products : int
        Work: lower-level iterations, CG iterations, operator products (Hessian-vector, mixed,
        Jacobian-vector) beyond those inside the counted iterations.
    diagnostics : dict
        Method-specific accuracy information, e.g. ``lower_residual`` (max_j ‖∇ₓΦ(x_j)‖/√N),
        ``cg_residual`` (final relative CG residual), ``error_bound`` (a bound on ‖error‖).
    seconds : float
        Wall time of the estimate.
    converged : bool
        True when every inner solve reached the tolerance it was asked for.
    message : str
        What happened, in words (which solve missed its tolerance, by how much).
    method : str
        The estimator's name, e.g. ``"implicit"``, ``"unrolled-reverse"``.
    state : dict
        Warm-start state for the next call (e.g. ``q`` for CG, ``d`` for the ℓ1 dual).
    parts : tuple of str or None
        The parts of γ that were differentiated (``Hyperparameters.flatten(parts)``); the gradient
        holds zeros elsewhere.  None: all of them (or a gradient that is not a Hyperparameters).
    lower : LowerLevelResult or None
        The lower-level solve behind ``x``, for estimators that run one (its iterations are
        ``lower_iterations``, its residual ``diagnostics["lower_residual"]``).
    """

    gradient: Any
    loss: float
    x: np.ndarray | None = None
    lower_iterations: int = 0
    cg_iterations: int = 0
    products: int = 0
    diagnostics: dict = field(default_factory=dict)
    seconds: float = 0.0
    converged: bool = True
    message: str = ""
    method: str = ""
    state: dict = field(default_factory=dict)
    parts: tuple | None = None
    lower: Any = field(default=None, repr=False)

    def __post_init__(self):
        # one type per field, whatever numpy scalar an estimator computed it as
        self.loss = float(self.loss)
        self.lower_iterations, self.cg_iterations = int(self.lower_iterations), int(self.cg_iterations)
        self.products, self.seconds = int(self.products), float(self.seconds)
        self.converged, self.message, self.method = bool(self.converged), str(self.message), str(self.method)
        if self.parts is not None:
            self.parts = (self.parts,) if isinstance(self.parts, str) else tuple(self.parts)

    def __getattr__(self, name):
        # only called when normal lookup fails: diagnostics and warm-start state read as attributes
        if name.startswith("__") or name in ("diagnostics", "state"):
            raise AttributeError(name)
        for store in (self.__dict__.get("diagnostics", {}), self.__dict__.get("state", {})):
            if name in store:
                return store[name]
        raise AttributeError(f"{type(self).__name__} has no attribute, diagnostic or state entry {name!r}")

    def __array__(self, dtype=None, copy=None):
        """A result stands where its flat gradient (over ``parts``) is expected, e.g. in ``np.ravel``."""
        return np.asarray(self.flat(), dtype=dtype)

    @property
    def work(self) -> int:
        """The work measure of the MAID slides and the training histories, lower-level plus CG iterations."""
        return int(self.lower_iterations + self.cg_iterations)

    def flat(self, parts=None) -> np.ndarray:
        """The gradient as a flat vector over ``parts`` (default: the differentiated ``self.parts``)."""
        parts = self.parts if parts is None else parts
        if hasattr(self.gradient, "flatten") and not isinstance(self.gradient, np.ndarray):
            return self.gradient.flatten(parts) if parts is not None else self.gradient.flatten()
        return np.ravel(self.gradient)
