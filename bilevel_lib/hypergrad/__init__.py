"""Layer 3, hypergradient estimators of the smooth lower level.

Implicit (IFT + CG) and KKT, finite differences, unrolled reverse and forward mode, truncated,
Jacobian-free, the exact φ = z² closed form and MAID's inexact estimate with its error bound;
diagnostics of an estimate (the error split of an implicit hypergradient, a directional check).
Every estimator returns a :class:`~bilevel_lib.hypergrad.result.HypergradientResult`.
"""

from .closed_form import quadratic_estimator, quadratic_hypergradient, quadratic_solution
from .diagnostics import DirectionalCheck, ErrorSplit, directional_check, implicit_error_split, upper_loss_function
from .finite_differences import finite_difference_gradient
from .implicit import (
    ImplicitStep,
    finite_difference_hypergradient,
    gradient_angle_degrees,
    implicit_hypergradient,
    implicit_step,
    kkt_hypergradient,
)
from .inexact import certified_lower_tol, inexact_hypergradient
from .result import HypergradientResult
from .unrolling import (
    MODES,
    SOLVERS,
    default_step,
    finite_difference_unrolled_hypergradient,
    forward_mode_hypergradient,
    gradient_jvp,
    jacobian_free_hypergradient,
    ogm_coefficients,
    reverse_mode_hypergradient,
    truncated_hypergradient,
    unrolled_hypergradient,
    unrolled_loss,
    unrolled_solution,
)

__all__ = [
    "DirectionalCheck",
    "ErrorSplit",
    "HypergradientResult",
    "ImplicitStep",
    "MODES",
    "SOLVERS",
    "certified_lower_tol",
    "default_step",
    "directional_check",
    "finite_difference_gradient",
    "finite_difference_hypergradient",
    "finite_difference_unrolled_hypergradient",
    "forward_mode_hypergradient",
    "gradient_angle_degrees",
    "gradient_jvp",
    "implicit_error_split",
    "implicit_hypergradient",
    "implicit_step",
    "inexact_hypergradient",
    "jacobian_free_hypergradient",
    "kkt_hypergradient",
    "ogm_coefficients",
    "quadratic_estimator",
    "quadratic_hypergradient",
    "quadratic_solution",
    "reverse_mode_hypergradient",
    "truncated_hypergradient",
    "unrolled_hypergradient",
    "unrolled_loss",
    "unrolled_solution",
    "upper_loss_function",
    "implicit",
    "finite_differences",
    "unrolling",
    "closed_form",
    "inexact",
    "diagnostics",
    "result",
]
