"""Layer 5, training: upper-level optimisers, β search, the double loop, HOAG, TTSA and MAID."""

from .loops import TrainingHistory, TrainingResult, hoag_schedule, train_double_loop, train_ttsa
from .maid import train_maid
from .optimizers import Adam, GradientDescent
from .tuning import DescentResult, SearchResult, gradient_descent_beta, grid_search_beta0, random_search_beta

__all__ = [
    "Adam",
    "DescentResult",
    "GradientDescent",
    "SearchResult",
    "TrainingHistory",
    "TrainingResult",
    "gradient_descent_beta",
    "grid_search_beta0",
    "hoag_schedule",
    "random_search_beta",
    "train_double_loop",
    "train_maid",
    "train_ttsa",
    "optimizers",
    "tuning",
    "loops",
    "maid",
]
