"""Layer 7, the book: figures, widgets and the exercises' self-checks.

The only layer that imports matplotlib and ipywidgets.
"""


from .viz import use_book_style, plot_penalty, show_filters, show_images, plot_denoising, figure_png, plot_storage_diagram, static_slider
from .widgets import plot_beta0_curves, beta0_widget, ThresholdSweep, plot_threshold, threshold_widget, plot_truncation, truncation_widget, WorkCurves, plot_loss_against_work, plot_accuracy_against_work, plot_work_budget, work_budget_widget, plot_tolerance_errors, tolerance_widget, DenoisingExplorer
from .checks import finite_difference_gradient, CheckResult, check_penalty_derivative, check_denoising_gradient, check_mixed_beta, check_forward_beta0_ogm, check_closed_form, check_golden_section, check_stopping_rule, check_sum_gradient, check_strength_correlation

__all__ = ["CheckResult", "DenoisingExplorer", "ThresholdSweep", "WorkCurves", "beta0_widget", "check_closed_form", "check_denoising_gradient", "check_forward_beta0_ogm", "check_golden_section", "check_mixed_beta", "check_penalty_derivative", "check_stopping_rule", "check_strength_correlation", "check_sum_gradient", "figure_png", "finite_difference_gradient", "plot_accuracy_against_work", "plot_beta0_curves", "plot_denoising", "plot_loss_against_work", "plot_penalty", "plot_storage_diagram", "plot_threshold", "plot_tolerance_errors", "plot_truncation", "plot_work_budget", "show_filters", "show_images", "static_slider", "threshold_widget", "tolerance_widget", "truncation_widget", "use_book_style", "work_budget_widget", "viz", "widgets", "checks"]
