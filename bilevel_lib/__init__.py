"""bilevel_lib: a numpy reference implementation of the running example (Ex) of
Crockett & Fessler, *Bilevel Methods for Image Reconstruction* (2022), and the methods around it.

The package is built in layers; data flows one way, and a module imports only from its own layer
or from lower ones (``tests/lib/test_layers.py`` checks this):

====  ================  ===========================================================================
 0    ``util``          input validation, progress bar
 1    ``problem``       (Ex): correlation with K filters, A, φ, γ, the cost Φ and its derivatives,
                        the compiled Hessian stencil, losses ℓ, metrics, filter banks, test data
 2    ``solvers``       lower-level solvers (GD, OGM + restart), batched CG, CG preconditioners
 3    ``hypergrad``     hypergradient estimators of the smooth lower level (implicit/KKT, finite
                        differences, unrolled, truncated, Jacobian-free, closed form φ = z²)
 4    ``l1``            the exact ℓ1 lower level, BLORC closed form, primal–dual unrolling, BLORC
                        training, CVXPY/diffcp references
 5    ``training``      upper-level optimisers, β search, double loop / HOAG / TTSA / MAID
 6    ``experiments``   recipes shared by chapters, tests and benchmarks; results; command line
 7    ``book``          figures, widgets, exercise self-checks (the only layer that imports
                        matplotlib and ipywidgets)
====  ================  ===========================================================================

``import bilevel_lib`` loads layers 0–3 and the main names below; import the others explicitly,
e.g. ``from bilevel_lib.l1 import solve_l1_denoising`` or ``from bilevel_lib.book import viz``.
"""

from .hypergrad.implicit import HypergradientResult, implicit_hypergradient
from .problem.cost import LowerLevelCost
from .problem.forward_models import CircularBlur, Identity, PixelMask
from .problem.losses import HuberLoss, SquaredErrorLoss, SSIMLoss
from .problem.params import Hyperparameters
from .problem.penalties import CornerRounded1Norm, LogSquare, Quadratic
from .solvers.cg import CGResult, conjugate_gradient
from .solvers.lower import ConvergenceWarning, LowerLevelResult, solve_lower_level

__version__ = "0.1.0"

#: the layers, lowest first: a module of one may import only from its own layer and those before it
LAYERS = ("util", "problem", "solvers", "hypergrad", "l1", "training", "experiments", "book")

__all__ = [
    "CGResult",
    "CircularBlur",
    "ConvergenceWarning",
    "CornerRounded1Norm",
    "HypergradientResult",
    "HuberLoss",
    "Hyperparameters",
    "Identity",
    "LAYERS",
    "LogSquare",
    "LowerLevelCost",
    "LowerLevelResult",
    "PixelMask",
    "Quadratic",
    "SSIMLoss",
    "SquaredErrorLoss",
    "conjugate_gradient",
    "implicit_hypergradient",
    "solve_lower_level",
]
