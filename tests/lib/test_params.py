"""γ container: flatten/unflatten round trips, partial parts, strengths, bad input."""

import numpy as np
import pytest

import bilevel_lib as bl


def make(rng):
    return bl.Hyperparameters(beta0=-4.6, beta=rng.standard_normal(4), filters=rng.standard_normal((4, 4, 2)))


def test_flatten_unflatten_round_trip_for_every_subset_of_parts():
    rng = np.random.default_rng(0)
    params = make(rng)
    for parts in [("beta0", "beta", "filters"), ("beta", "filters"), ("beta",), ("filters",), ("beta0",)]:
        vector = params.flatten(parts)
        assert vector.size == params.size(parts)
        back = params.unflatten(vector, parts)
        np.testing.assert_array_equal(back.flatten(), params.flatten())
        moved = params.unflatten(vector + 1.0, parts)
        assert np.allclose(moved.flatten(parts) - vector, 1.0)
        for other in {"beta0", "beta", "filters"} - set(parts):
            np.testing.assert_array_equal(np.ravel(getattr(moved, other)), np.ravel(getattr(params, other)))


def test_flatten_order_and_size():
    params = bl.Hyperparameters(beta0=1.0, beta=[2.0, 3.0], filters=[[4.0, 5.0], [6.0, 7.0]])
    np.testing.assert_array_equal(params.flatten(), [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(params.flatten(("filters", "beta")), [2, 3, 4, 5, 6, 7])  # canonical order
    assert params.size() == 7


def test_unflatten_does_not_alias_the_vector():
    params = bl.Hyperparameters.from_filters(np.ones((2, 3)))
    vector = params.flatten()
    back = params.unflatten(vector)
    vector[:] = 99.0
    assert back.beta0 == 0.0 and np.all(back.filters == 1.0)


def test_strengths_follow_eq_d1():
    params = bl.Hyperparameters(beta0=-1.0, beta=[0.0, 1.0], filters=[[3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(params.strengths, np.exp([-1.0, 0.0]))
    np.testing.assert_allclose(params.effective_strengths, np.exp([-1.0, 0.0]) * [5.0, 1.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="one entry per filter"):
        bl.Hyperparameters(beta0=0.0, beta=[0.0], filters=np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        bl.Hyperparameters(beta0=np.nan, beta=[0.0], filters=np.ones((1, 3)))
    with pytest.raises(ValueError, match="subset"):
        bl.Hyperparameters.from_filters(np.ones((1, 3))).flatten(("gamma",))
    with pytest.raises(ValueError, match="entries"):
        bl.Hyperparameters.from_filters(np.ones((1, 3))).unflatten(np.zeros(2))
