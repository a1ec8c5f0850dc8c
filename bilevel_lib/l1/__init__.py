"""Layer 4, the ℓ1 lower level: exact solver, BLORC closed form and Lemma 1, primal–dual unrolling, BLORC training.

Every ℓ1 hypergradient estimator returns :class:`~bilevel_lib.hypergrad.result.HypergradientResult`.

The CVXPY/diffcp references (:mod:`bilevel_lib.l1.cvx`) import cvxpy and are not imported here.
"""


from .exact import L1Result, solve_l1_denoising, sign_pattern, DEFAULT_THRESHOLD
from .gradients import closed_form_solution, closed_form_gradient, l1_hypergradient, sign_split_gradient, smoothed_hypergradient, finite_difference_l1_gradient, finite_difference_l1_hypergradient, l1_loss, filter_gradient_from_matrix, CLOSED_FORM_TOL
from .primal_dual import AnalysisOperator, PrimalDualResult, LearningHistory, soft_threshold, power_prox, bregman_dual_update, euclidean_dual_update, l1_analysis_objective, primal_dual_gap, default_steps, chambolle_pock_l1, unrolled_l1_loss, unrolled_l1_hypergradient, learn_analysis_operator
from .blorc import BlorcResult, train_blorc, denoise, mean_psnr, best_scale, match_rows, finite_difference_matrix, dct_matrix, check_decay_epochs

__all__ = ["AnalysisOperator", "CLOSED_FORM_TOL", "BlorcResult", "DEFAULT_THRESHOLD", "L1Result", "LearningHistory", "PrimalDualResult", "best_scale", "bregman_dual_update", "chambolle_pock_l1", "check_decay_epochs", "closed_form_gradient", "closed_form_solution", "dct_matrix", "default_steps", "denoise", "euclidean_dual_update", "filter_gradient_from_matrix", "finite_difference_l1_gradient", "finite_difference_l1_hypergradient", "finite_difference_matrix", "l1_analysis_objective", "l1_hypergradient", "l1_loss", "learn_analysis_operator", "match_rows", "mean_psnr", "power_prox", "primal_dual_gap", "sign_pattern", "sign_split_gradient", "smoothed_hypergradient", "soft_threshold", "solve_l1_denoising", "train_blorc", "unrolled_l1_hypergradient", "unrolled_l1_loss", "exact", "gradients", "primal_dual", "blorc"]
