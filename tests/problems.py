"""Small random instances of (Ex) shared by the tests."""

from __future__ import annotations

import numpy as np

import bilevel_lib as bl
from bilevel_lib.problem import forward_models as fm
from bilevel_lib.problem import ops

# (signal_shape, filter_shape, K): 1-D, 2-D with rectangular filters, 2-D with a full-size filter
GEOMETRIES = {
    "1d": ((16,), (3,), 3),
    "2d-4x2": ((8, 6), (4, 2), 3),
    "2d-full": ((5, 5), (5, 5), 2),
}


def forward_model(kind: str, signal_shape, rng) -> bl.problem.forward_models.ForwardModel:
    if kind == "identity":
        return fm.Identity()
    if kind == "blur":
        kernel = fm.gaussian_kernel(3, 0.8, ndim=len(signal_shape))
        return fm.CircularBlur(kernel, signal_shape)
    if kind == "mask":
        mask = (rng.random(signal_shape) < 0.7).astype(float)
        mask.flat[0] = 1.0
        return fm.PixelMask(mask)
    raise ValueError(kind)


def random_problem(geometry="2d-4x2", model="identity", penalty=None, n_images=2, seed=0):
    """Return (cost, params, x, rng) for a random instance."""
    rng = np.random.default_rng(seed)
    signal_shape, filter_shape, k = GEOMETRIES[geometry]
    truth = rng.standard_normal((n_images,) + signal_shape)
    A = forward_model(model, signal_shape, rng)
    y = A.forward(truth) + 0.1 * rng.standard_normal(truth.shape)
    penalty = bl.CornerRounded1Norm(eps=0.1) if penalty is None else penalty
    cost = bl.LowerLevelCost(y, penalty=penalty, forward_model=A)
    params = bl.Hyperparameters(
        beta0=rng.uniform(-1.0, 0.0),
        beta=rng.uniform(-0.5, 0.5, size=k),
        filters=rng.standard_normal((k,) + filter_shape) / np.sqrt(np.prod(filter_shape)),
    )
    x = rng.standard_normal(truth.shape)
    return cost, params, x, rng


def central_difference(f, x, direction, h):
    """(f(x + h d) − f(x − h d)) / 2h."""
    return (f(x + h * direction) - f(x - h * direction)) / (2.0 * h)


def relative_error(a, b) -> float:
    """metrics.relative_error of the flattened arrays (tests compare flat vectors with shaped ones)."""
    from bilevel_lib.problem.metrics import relative_error as relative_error_of_arrays

    return relative_error_of_arrays(np.ravel(a), np.ravel(b))


def explicit_gram(bank, signal_shape, scale, weights, diagonal):
    """Σ_k w_k C_k' diag(d_k) C_k + diag(g) for each image b of the batch (scale[b, k] = d_k,
    diagonal[b] = g), from dense correlation matrices: the reference for the assembled Hessians."""
    matrices = []
    for b in range(scale.shape[0]):
        matrix = np.diag(diagonal[b].ravel())
        for k in range(bank.shape[0]):
            C = ops.correlation_matrix(bank[k], signal_shape)
            matrix += weights[k] * C.T @ (scale[b, k].ravel()[:, None] * C)
        matrices.append(matrix)
    return np.stack(matrices)
