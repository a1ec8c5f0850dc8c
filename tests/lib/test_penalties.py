"""Penalties: derivatives against finite differences and closed forms, Lipschitz constants, bad ε."""

import numpy as np
import pytest

import bilevel_lib as bl

PENALTIES = [
    bl.CornerRounded1Norm(0.01),
    bl.CornerRounded1Norm(0.3),
    bl.LogSquare(1.0),
    bl.LogSquare(0.2),
    bl.Quadratic(),
]


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: f"{type(p).__name__}")
def test_derivatives_match_central_differences(penalty):
    z = np.linspace(-2.0, 2.0, 41) + 0.013
    h = 1e-6
    fd1 = (penalty.value(z + h) - penalty.value(z - h)) / (2 * h)
    fd2 = (penalty.derivative(z + h) - penalty.derivative(z - h)) / (2 * h)
    np.testing.assert_allclose(penalty.derivative(z), fd1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(penalty.second_derivative(z), fd2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: f"{type(p).__name__}")
def test_lipschitz_bounds_the_second_derivative_and_is_attained(penalty):
    z = np.linspace(-5, 5, 20001)
    curvature = np.abs(penalty.second_derivative(z))
    assert curvature.max() <= penalty.lipschitz * (1 + 1e-12)
    assert curvature.max() >= 0.99 * penalty.lipschitz  # the bound is tight at z = 0


def test_corner_rounded_norm_tends_to_absolute_value():
    z = np.linspace(-1, 1, 11)
    for eps in (1e-1, 1e-3, 1e-6):
        assert np.max(np.abs(bl.CornerRounded1Norm(eps).value(z) - np.abs(z))) <= eps + 1e-15
    np.testing.assert_allclose(bl.CornerRounded1Norm(0.5).value(np.array([0.0])), [0.5])


def test_log_square_is_non_convex_far_from_zero():
    penalty = bl.LogSquare(1.0)
    assert not penalty.is_convex
    assert penalty.second_derivative(np.array([2.0]))[0] < 0
    np.testing.assert_allclose(penalty.value(np.array([1.0])), [np.log(2.0)])


@pytest.mark.parametrize("eps", [0.0, -1.0, np.nan, np.inf])
@pytest.mark.parametrize("cls", [bl.CornerRounded1Norm, bl.LogSquare])
def test_bad_eps_raises(cls, eps):
    with pytest.raises(ValueError, match="eps"):
        cls(eps)


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: f"{type(p).__name__}")
def test_out_argument_gives_the_same_values_and_leaves_z_alone(penalty):
    z = np.linspace(-2.0, 2.0, 17)
    z_before = z.copy()
    for name in ("value", "derivative", "second_derivative"):
        function = getattr(penalty, name)
        out = np.full_like(z, np.nan)
        result = function(z, out=out)
        assert result is out
        np.testing.assert_allclose(out, function(z), rtol=1e-15)
        np.testing.assert_array_equal(z, z_before)


@pytest.mark.parametrize(
    "penalty", [bl.CornerRounded1Norm(0.01), bl.CornerRounded1Norm(0.4), bl.Quadratic()], ids=lambda p: repr(p)
)
def test_third_derivative_bound_is_attained_and_bounds_the_finite_differences(penalty):
    z = np.linspace(-3, 3, 600_001)
    third = np.abs(np.gradient(penalty.second_derivative(z), z))
    assert third.max() <= penalty.third_derivative_bound * (1 + 1e-6) + 1e-9
    assert third.max() >= 0.999 * penalty.third_derivative_bound - 1e-9
