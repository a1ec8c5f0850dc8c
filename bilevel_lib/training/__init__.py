"""Layer 5, training: upper-level optimizers, β search, the double loop, HOAG, TTSA and MAID.
"""


from .optimizers import GradientDescent, Adam
from .tuning import SearchResult, DescentResult, grid_search_beta0, random_search_beta, gradient_descent_beta
from .loops import TrainingHistory, TrainingResult, hoag_schedule, train_double_loop, train_ttsa
from .maid import train_maid

__all__ = ["Adam", "DescentResult", "GradientDescent", "SearchResult", "TrainingHistory", "TrainingResult", "gradient_descent_beta", "grid_search_beta0", "hoag_schedule", "random_search_beta", "train_double_loop", "train_maid", "train_ttsa", "optimizers", "tuning", "loops", "maid"]
