"""bilevel_lib: a numpy reference implementation of the running example (Ex) of
Crockett & Fessler, *Bilevel Methods for Image Reconstruction* (2022), and the methods around it.

Modules (one idea each):

* :mod:`~bilevel_lib.ops`            circular correlation with K filters and its adjoint (FFT)
* :mod:`~bilevel_lib.forward_models` A and A': identity, circular blur, pixel mask
* :mod:`~bilevel_lib.penalties`      φ, φ̇, φ̈ with ε (corner-rounded 1-norm, log, quadratic)
* :mod:`~bilevel_lib.params`         γ = (β0, β_k, c_k) with flatten / unflatten
* :mod:`~bilevel_lib.cost`           Φ(x; γ) with gradient, Hessian (implicit or sparse) and mixed products
* :mod:`~bilevel_lib.lower`          lower-level solvers (gradient descent, OGM with restart)
* :mod:`~bilevel_lib.metrics`        MSE, SNR, PSNR, relative error
* :mod:`~bilevel_lib.filters`        finite-difference, DCT and random filter banks
* :mod:`~bilevel_lib.data`           synthetic signals, test images, noise
* :mod:`~bilevel_lib.losses`         upper-level losses ℓ
* :mod:`~bilevel_lib.cg`             batched (preconditioned) conjugate gradient
* :mod:`~bilevel_lib.preconditioners` circulant and banded-Cholesky preconditioners for the Hessian system
* :mod:`~bilevel_lib.hypergrad`      hypergradients: implicit (IFT + CG), KKT, finite differences
* :mod:`~bilevel_lib.closed_form`    the exact case φ(z) = z² by FFT
* :mod:`~bilevel_lib.tuning`         grid / random search and gradient descent on β
* :mod:`~bilevel_lib.unrolling`      unrolled hypergradients: reverse, forward, truncated, Jacobian-free
* :mod:`~bilevel_lib.nonsmooth`      Bregman Chambolle–Pock for the ℓ1-analysis lower level, unrolled
* :mod:`~bilevel_lib.single_level`   exact ℓ1 lower level, BLORC closed form and Lemma 1 gradient
* :mod:`~bilevel_lib.blorc`          BLORC training (command line: python -m bilevel_lib.blorc)
* :mod:`~bilevel_lib.cvx`            CVXPY/diffcp reference programs
* :mod:`~bilevel_lib.upper`          upper-level optimizers (gradient descent, Adam)
* :mod:`~bilevel_lib.training`       double loop (fixed T, tolerance, HOAG) and TTSA with history
* :mod:`~bilevel_lib.maid`           MAID with its computable hypergradient error bound
* :mod:`~bilevel_lib.profiling`      time and peak memory of a call
* :mod:`~bilevel_lib.experiments`    small recipes shared by chapters, tests and benchmarks
* :mod:`~bilevel_lib.julia_random`   Julia 1.7's seed!/randn, to redraw the authors' random start (App. D.1)
* :mod:`~bilevel_lib.checks`         finite-difference checks and self-checks for exercises
* :mod:`~bilevel_lib.viz`            the book's static figures, style and static sliders (imports matplotlib)
* :mod:`~bilevel_lib.widgets`        the chapters' live explorers (ipywidgets) and the plots behind them
"""

from .cg import CGResult, conjugate_gradient
from .cost import LowerLevelCost
from .forward_models import CircularBlur, Identity, PixelMask
from .hypergrad import HypergradientResult, implicit_hypergradient
from .losses import SquaredErrorLoss
from .lower import ConvergenceWarning, LowerLevelResult, solve_lower_level
from .params import Hyperparameters
from .penalties import CornerRounded1Norm, LogSquare, Quadratic

__version__ = "0.1.0"

__all__ = [
    "CGResult",
    "HypergradientResult",
    "SquaredErrorLoss",
    "conjugate_gradient",
    "implicit_hypergradient",
    "CircularBlur",
    "ConvergenceWarning",
    "CornerRounded1Norm",
    "Hyperparameters",
    "Identity",
    "LogSquare",
    "LowerLevelCost",
    "LowerLevelResult",
    "PixelMask",
    "Quadratic",
    "solve_lower_level",
]
