"""Layer 1, the problem: the data model of the running example (Ex).

Circular correlation with K filters, forward models A, penalties φ(·; ε), γ = (β0, β_k, c_k),
the cost Φ with its derivatives (and the compiled Hessian stencil), upper-level losses ℓ, metrics,
filter banks and test data.  All array arithmetic of the core lives here.
(The compiled stencil, :mod:`bilevel_lib.problem.stencil`, loads numba and is imported on first use.)
"""

from .cost import SPARSE_HESSIAN_MAX_WORK, HessianOperator, LowerLevelCost
from .data import (
    CAMERAMAN_PATCHES,
    add_noise,
    cameraman,
    cameraman_patches,
    dct_sparse_1d,
    piecewise_constant_1d,
    vertical_bars,
)
from .filters import FILTER_BANKS, dct_filters, finite_differences, random_filters
from .forward_models import CircularBlur, ForwardModel, Identity, PixelMask, gaussian_kernel
from .losses import HuberLoss, SquaredErrorLoss, SSIMLoss, UpperLoss
from .metrics import mse, psnr_db, relative_error, snr_db
from .ops import DIRECT_MAX_TAPS, FilterBankOperator, correlate, correlate_adjoint, correlation_matrix
from .params import PARTS, Hyperparameters
from .penalties import PENALTIES, CornerRounded1Norm, LogSquare, Penalty, Quadratic

__all__ = [
    "CAMERAMAN_PATCHES",
    "CircularBlur",
    "CornerRounded1Norm",
    "DIRECT_MAX_TAPS",
    "FILTER_BANKS",
    "FilterBankOperator",
    "ForwardModel",
    "HessianOperator",
    "HuberLoss",
    "Hyperparameters",
    "Identity",
    "LogSquare",
    "LowerLevelCost",
    "PARTS",
    "PENALTIES",
    "Penalty",
    "PixelMask",
    "Quadratic",
    "SPARSE_HESSIAN_MAX_WORK",
    "SSIMLoss",
    "SquaredErrorLoss",
    "UpperLoss",
    "add_noise",
    "cameraman",
    "cameraman_patches",
    "correlate",
    "correlate_adjoint",
    "correlation_matrix",
    "dct_filters",
    "dct_sparse_1d",
    "finite_differences",
    "gaussian_kernel",
    "mse",
    "piecewise_constant_1d",
    "psnr_db",
    "random_filters",
    "relative_error",
    "snr_db",
    "vertical_bars",
    "ops",
    "forward_models",
    "penalties",
    "params",
    "cost",
    "losses",
    "metrics",
    "filters",
    "data",
]
