"""metrics.relative_error: exact values on small arrays, per-item errors, and clear errors on bad input."""

import numpy as np
import pytest

from bilevel_lib.problem import metrics


def test_relative_error_has_the_exact_value_on_small_arrays():
    assert metrics.relative_error([3.0, 4.0], [0.0, 0.0 + 5.0]) == pytest.approx(np.sqrt(9 + 1) / 5)
    assert metrics.relative_error([1.0, 2.0, 2.0], [1.0, 2.0, 2.0]) == 0.0
    assert metrics.relative_error([0.0, 0.0], [3.0, 4.0]) == 1.0  # the zero estimate
    # ‖(1, −1, 0, 2)‖ / ‖(1, 2, 2, 4)‖ = √6 / 5, whatever the (equal) shapes
    estimate, reference = np.array([[2.0, 1.0], [2.0, 6.0]]), np.array([[1.0, 2.0], [2.0, 4.0]])
    assert metrics.relative_error(estimate, reference) == pytest.approx(np.sqrt(6) / 5, rel=1e-15)
    assert isinstance(metrics.relative_error(estimate, reference), float)
    # not symmetric: the reference sets the scale
    assert metrics.relative_error(reference, estimate) == pytest.approx(np.sqrt(6) / np.sqrt(45), rel=1e-15)


def test_relative_error_per_image_gives_one_value_per_item():
    estimate = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]])
    reference = np.array([[0.0, 4.0], [1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(metrics.relative_error(estimate, reference, per_image=True), [0.75, 0.0, 1.0])


def test_relative_error_rejects_mismatched_shapes_and_a_zero_reference():
    with pytest.raises(ValueError, match=r"estimate and reference must have the same shape; got \(4,\) and \(2, 2\)"):
        metrics.relative_error(np.ones(4), np.ones((2, 2)))
    with pytest.raises(ValueError, match="the reference is zero, so the relative error is undefined"):
        metrics.relative_error([1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"the reference is zero for item\(s\) \[1\]"):
        metrics.relative_error(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]), per_image=True)
    with pytest.raises(ValueError, match="per_image=True needs a leading batch axis"):
        metrics.relative_error([1.0, 2.0], [1.0, 2.0], per_image=True)
    with pytest.raises(ValueError, match="reference must be finite"):
        metrics.relative_error([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(TypeError, match="estimate must be an array of real numbers"):
        metrics.relative_error(["a", "b"], [1.0, 2.0])
