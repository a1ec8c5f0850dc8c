"""Layer 2, solvers: the lower-level solvers (GD, OGM with restart) and batched conjugate gradient.

The optional CG preconditioners (:mod:`bilevel_lib.solvers.preconditioners`) are not imported here.
"""

from .cg import CGResult, conjugate_gradient
from .lower import METHODS, ConvergenceWarning, LowerLevelResult, solve_lower_level

__all__ = [
    "CGResult",
    "ConvergenceWarning",
    "LowerLevelResult",
    "METHODS",
    "conjugate_gradient",
    "solve_lower_level",
    "lower",
    "cg",
]
