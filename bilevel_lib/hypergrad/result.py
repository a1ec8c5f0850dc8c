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
solution q, the ℓ1 dual d).  The names follow the notation page: T is ``n_iter``, tolerances end
in ``_tol``, iteration caps in ``_max_iter``.

Introduced in the chapter "Implicit differentiation".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["HypergradientResult"]


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

    @property
    def work(self) -> int:
        """Lower-level plus CG iterations: the work measure of the MAID slides and the training histories."""
        return int(self.lower_iterations + self.cg_iterations)

    def flat(self, parts=None) -> np.ndarray:
        """The gradient as a flat vector (over ``parts`` for a Hyperparameters container)."""
        if hasattr(self.gradient, "flatten") and not isinstance(self.gradient, np.ndarray):
            return self.gradient.flatten(parts) if parts is not None else self.gradient.flatten()
        return np.ravel(self.gradient)
