"""Small experiment recipes shared by chapters, tests and benchmarks.

Each returns plain arrays, so a chapter can plot them and a test can check their trend.
"""

from __future__ import annotations

import numpy as np

from . import data
from .closed_form import quadratic_hypergradient
from .cg import conjugate_gradient
from .cost import LowerLevelCost
from .hypergrad import gradient_angle_degrees
from .losses import SquaredErrorLoss
from .lower import solve_lower_level
from .params import Hyperparameters
from .penalties import Quadratic

__all__ = ["two_tap_problem", "angle_error_vs_tolerance"]


def two_tap_problem(n: int = 64, n_signals: int = 20, sigma: float = 0.1, seed: int = 0, beta0: float = 0.0,
                    beta1: float = -2.0):
    """The setting of review Fig. 5.1: 1-D piecewise-constant training signals, one 2-tap filter, φ(z) = z².

    Returns (cost, truth, loss, make_params) where ``make_params(c0, c1)`` builds γ for the filter
    [c0, c1] with the fixed β0, β1.  The review fixes the strengths and learns the two taps.
    """
    rng = np.random.default_rng(seed)
    truth = data.piecewise_constant_1d(n, n_signals, rng, n_jumps=4)
    y = data.add_noise(truth, sigma, rng)
    cost = LowerLevelCost(y, Quadratic())

    def make_params(c0: float, c1: float) -> Hyperparameters:
        return Hyperparameters(beta0, np.array([beta1]), np.array([[c0, c1]]))

    return cost, truth, SquaredErrorLoss(truth), make_params


def angle_error_vs_tolerance(cost: LowerLevelCost, truth, params: Hyperparameters, tolerances, *,
                             parts=("filters",), x0=None):
    """Angle between the implicit hypergradient and the exact one as the lower-level tolerance varies.

    For each tolerance the lower level is solved by OGM from ``x0`` (default A'y) until
    ‖∇ₓΦ‖/√N < tol, then (4.8) is applied at that inexact x̂ with an exact linear solve (CG to
    1e-12), so the only error left is the lower level's.  The exact gradient comes from
    :func:`~bilevel_lib.closed_form.quadratic_hypergradient` (φ(z) = z² only).
    Returns (angles in degrees, lower-level iterations), one entry per tolerance.

    The angle is meaningless where the exact gradient (nearly) vanishes, at the minimiser, and on
    the symmetry lines c1 = ±c0 of the two-tap problem, where the filter gradient is parallel to
    (1, ±1) and the angle is ~0 for any tolerance: probe points away from them.
    """
    if not isinstance(cost.penalty, Quadratic):
        raise ValueError("angle_error_vs_tolerance needs the exact case φ(z) = z² (penalty Quadratic())")
    exact, _ = quadratic_hypergradient(cost.y, truth, params, cost.forward_model)
    loss = SquaredErrorLoss(truth)
    angles, iterations = [], []
    for tol in tolerances:
        lower = solve_lower_level(cost, params, x0=x0, tol=tol, max_iter=1_000_000)
        q = conjugate_gradient(cost.hessian_operator(lower.x, params), loss.gradient(lower.x), tol=1e-12).x
        estimate = cost.mixed_transpose(lower.x, params, q) * -1.0
        angles.append(gradient_angle_degrees(estimate.flatten(parts), exact.flatten(parts)))
        iterations.append(lower.iterations)
    return np.array(angles), np.array(iterations)
