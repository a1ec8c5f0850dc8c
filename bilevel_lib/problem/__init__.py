"""Layer 1, the problem: the data model of the running example (Ex).

Circular correlation with K filters, forward models A, penalties φ(·; ε), γ = (β0, β_k, c_k),
the cost Φ with its derivatives (and the compiled Hessian stencil), upper-level losses ℓ, metrics,
filter banks and test data.  All array arithmetic of the core lives here.
(The compiled stencil, :mod:`bilevel_lib.problem.stencil`, loads numba and is imported on first use.)
"""

from .ops import FilterBankOperator, correlate, correlate_adjoint, correlation_matrix, DIRECT_MAX_TAPS
from .forward_models import ForwardModel, Identity, CircularBlur, PixelMask, gaussian_kernel
from .penalties import Penalty, CornerRounded1Norm, LogSquare, Quadratic, PENALTIES
from .params import Hyperparameters, PARTS
from .cost import LowerLevelCost, HessianOperator, SPARSE_HESSIAN_MAX_WORK
from .losses import UpperLoss, SquaredErrorLoss
from .metrics import mse, snr_db, psnr_db, relative_error
from .filters import finite_differences, dct_filters, random_filters, FILTER_BANKS
from .data import piecewise_constant_1d, dct_sparse_1d, vertical_bars, cameraman, cameraman_patches, CAMERAMAN_PATCHES, add_noise

__all__ = ["CAMERAMAN_PATCHES", "CircularBlur", "CornerRounded1Norm", "DIRECT_MAX_TAPS", "FILTER_BANKS", "FilterBankOperator", "ForwardModel", "HessianOperator", "Hyperparameters", "Identity", "LogSquare", "LowerLevelCost", "PARTS", "PENALTIES", "Penalty", "PixelMask", "Quadratic", "SPARSE_HESSIAN_MAX_WORK", "SquaredErrorLoss", "UpperLoss", "add_noise", "cameraman", "cameraman_patches", "correlate", "correlate_adjoint", "correlation_matrix", "dct_filters", "dct_sparse_1d", "finite_differences", "gaussian_kernel", "mse", "piecewise_constant_1d", "psnr_db", "random_filters", "relative_error", "snr_db", "vertical_bars", "ops", "forward_models", "penalties", "params", "cost", "losses", "metrics", "filters", "data"]
