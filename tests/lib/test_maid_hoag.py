"""The MAID-against-HOAG recipe at a tiny size: it runs, both methods learn, the budgets are shared,
and bad inputs are refused by name."""

import numpy as np
import pytest

from bilevel_lib.experiments import maid_hoag

BUDGET = 300


@pytest.fixture(scope="module")
def comparison():
    return maid_hoag.maid_hoag_comparison(
        budget=BUDGET, n_train=2, n_test=2, size=16, filter_size=3, decays=(0.9, 0.99)
    )


def test_every_run_is_reported(comparison):
    names = comparison["names"]
    assert names == ["MAID", "HOAG 0.9", "HOAG 0.99"] == maid_hoag.run_names((0.9, 0.99))
    for table in ("params", "history", "seconds", "message", "unconverged"):
        assert set(comparison[table]) == set(names), table
    for table in ("test_psnr", "test_snr"):
        assert set(comparison[table]) == {"noisy", "start", *names}, table
        assert all(values.shape == (2,) and np.all(np.isfinite(values)) for values in comparison[table].values())
    assert comparison["settings"]["n_hyperparameters"] == 8 + 8 * 9  # β and the taps of 8 filters 3×3


def test_both_methods_lower_the_training_loss(comparison):
    start = comparison["train_loss"]["start"]
    assert comparison["train_loss"]["MAID"] < start
    assert min(comparison["train_loss"][name] for name in comparison["names"][1:]) < start
    # learning also helps on the held-out crops: the best run beats the start in test PSNR
    best = max(np.mean(comparison["test_psnr"][name]) for name in comparison["names"])
    assert best > np.mean(comparison["test_psnr"]["start"])
    # and every reconstruction beats the noisy data
    assert np.mean(comparison["test_psnr"]["start"]) > np.mean(comparison["test_psnr"]["noisy"])


def test_every_run_gets_the_same_budget_within_one_step(comparison):
    for name, history in comparison["history"].items():
        work = history["work"]
        assert work[-1] >= BUDGET, name  # the budget was used up
        assert work.size == 1 or work[-2] < BUDGET, name  # and the run stopped at the first step past it
        assert "max_work" in comparison["message"][name], name


def test_the_crops_are_disjoint_and_not_flat():
    train, test = maid_hoag.cameraman_crops(3, 2, size=32, seed=1)
    assert train.shape == (3, 32, 32) and test.shape == (2, 32, 32)
    assert np.all(train.std(axis=(1, 2)) > maid_hoag.FLAT_STD) and np.all(test.std(axis=(1, 2)) > maid_hoag.FLAT_STD)
    assert not any(np.array_equal(a, b) for a in train for b in test)
    again, _ = maid_hoag.cameraman_crops(3, 2, size=32, seed=1)
    np.testing.assert_array_equal(train, again)  # the same seed, the same crops
    other, _ = maid_hoag.cameraman_crops(3, 2, size=32, seed=2)
    assert not np.array_equal(train, other)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(budget=0), "budget"),
        (dict(budget=2.5), "budget"),
        (dict(decays=(1.5,)), "decays"),
        (dict(decays=()), "decays"),
        (dict(sigma=-0.1), "sigma"),
        (dict(filter_size=4), "filter_size"),
        (dict(n_train=10_000), "n_train"),
        (dict(size=4), "size"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(maid_step=float("nan")), "maid_step"),
        (dict(seed=-1), "seed"),
        (dict(progress="yes"), "progress"),
    ],
)
def test_bad_inputs_are_refused_by_name(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        maid_hoag.maid_hoag_comparison(**kwargs)
