"""Layer 0, utilities: input validation and the progress bar.  Imports nothing of bilevel_lib."""

from .progress import progress_bar
from .validation import (
    NonFiniteError,
    as_float_array,
    check_choice,
    check_count,
    check_finite_result,
    check_flag,
    check_generator,
    check_real,
    positive_scalar,
)

__all__ = [
    "NonFiniteError",
    "as_float_array",
    "check_choice",
    "check_count",
    "check_finite_result",
    "check_flag",
    "check_generator",
    "check_real",
    "positive_scalar",
    "progress_bar",
]
