"""Layer 2, solvers: the lower-level solvers (GD, OGM with restart) and batched conjugate gradient.

The optional CG preconditioners (:mod:`bilevel_lib.solvers.preconditioners`) are not imported here.
"""


from .lower import LowerLevelResult, ConvergenceWarning, solve_lower_level, METHODS
from .cg import CGResult, conjugate_gradient

__all__ = ["CGResult", "ConvergenceWarning", "LowerLevelResult", "METHODS", "conjugate_gradient", "solve_lower_level", "lower", "cg"]
