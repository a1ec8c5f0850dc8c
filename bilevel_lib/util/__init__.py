"""Layer 0, utilities: input validation and the progress bar.  Imports nothing of bilevel_lib."""

from .progress import progress_bar
from .validation import as_float_array, positive_scalar

__all__ = ["as_float_array", "positive_scalar", "progress_bar"]
