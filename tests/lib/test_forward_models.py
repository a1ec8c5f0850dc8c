"""Forward models: adjointness, Gram operator, σ₁(A)² against a dense computation, bad input."""

import numpy as np
import pytest
from problems import forward_model

from bilevel_lib.problem import forward_models as fm


def dense(model, signal_shape):
    n = int(np.prod(signal_shape))
    basis = np.eye(n).reshape((n,) + signal_shape)
    return model.forward(basis).reshape(n, n).T


@pytest.mark.parametrize("kind", ["identity", "blur", "mask"])
@pytest.mark.parametrize("signal_shape", [(12,), (6, 5)])
def test_adjoint_dot_product_and_gram(kind, signal_shape):
    rng = np.random.default_rng(0)
    model = forward_model(kind, signal_shape, rng)
    x = rng.standard_normal((3,) + signal_shape)
    v = rng.standard_normal((3,) + signal_shape)
    lhs = np.sum(model.forward(x) * v)
    rhs = np.sum(x * model.adjoint(v))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    np.testing.assert_allclose(model.gram(x), model.adjoint(model.forward(x)), atol=1e-12)


@pytest.mark.parametrize("kind", ["identity", "blur", "mask"])
def test_sigma1_squared_is_the_largest_squared_singular_value(kind):
    rng = np.random.default_rng(1)
    shape = (6, 5)
    model = forward_model(kind, shape, rng)
    singular = np.linalg.svd(dense(model, shape), compute_uv=False)
    assert model.sigma1_squared == pytest.approx(singular[0] ** 2, rel=1e-10)


def test_blur_kernel_is_centred():
    kernel = fm.gaussian_kernel(3, 1.0, ndim=1)
    model = fm.CircularBlur(kernel, (9,))
    impulse = np.zeros(9)
    impulse[4] = 1.0
    np.testing.assert_allclose(model.forward(impulse)[3:6], kernel, atol=1e-14)


def test_bad_inputs():
    with pytest.raises(ValueError, match="0 \\(missing\\) and 1"):
        fm.PixelMask(np.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="observes no pixel"):
        fm.PixelMask(np.zeros(4))
    with pytest.raises(ValueError, match="fit in"):
        fm.CircularBlur(np.ones((5, 5)), (4, 4))
    with pytest.raises(ValueError, match="shape"):
        fm.PixelMask(np.ones((4, 4))).forward(np.ones((3, 5)))
    with pytest.raises(ValueError, match="odd"):
        fm.gaussian_kernel(4, 1.0)


@pytest.mark.parametrize("kind", ["identity", "blur", "mask"])
def test_sigma_min_squared_is_the_smallest_squared_singular_value(kind):
    rng = np.random.default_rng(3)
    shape = (6, 5)
    model = forward_model(kind, shape, rng)
    singular = np.linalg.svd(dense(model, shape), compute_uv=False)
    assert model.sigma_min_squared == pytest.approx(singular[-1] ** 2, rel=1e-9, abs=1e-12)
