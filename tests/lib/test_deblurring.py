"""The recipe of case (c) of Ch. "Case studies" (denoising vs deblurring) at a tiny size: the shared
setting is the chapter's, learning moves the trends the right way, every final solve is checked, and
bad inputs are refused by name."""

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib.experiments import deblurring
from bilevel_lib.problem import data, filters


@pytest.fixture(scope="module")
def tiny():
    return deblurring.deblurring_case(n_steps=60, lower_iterations=10, size=16)


def test_the_shared_setting_is_the_chapters():
    crops = deblurring.training_crops()
    np.testing.assert_array_equal(crops, data.cameraman_patches()[:, 9:41, 9:41])
    held_out = deblurring.test_crops()
    assert held_out.shape == crops.shape and not np.allclose(held_out, crops)
    blur = deblurring.blur_model(crops.shape[1:])
    np.testing.assert_allclose(blur.kernel, bl.problem.gaussian_kernel(5, 1.0))
    # both tasks of one seed see the same noise; the blur's adjoint is its transpose
    den, deb = (deblurring.task_cost(task, crops, 3) for task in deblurring.TASKS)
    np.testing.assert_allclose(deb.y - blur.forward(crops), den.y - crops, atol=1e-14)
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(crops.shape), rng.standard_normal(crops.shape)
    assert np.vdot(blur.forward(u), v) == pytest.approx(np.vdot(u, blur.adjoint(v)), rel=1e-12)


def test_tune_beta0_picks_the_best_grid_point():
    crops = deblurring.training_crops(16)
    cost = deblurring.task_cost("deblurring", crops, 0)
    bank = bl.Hyperparameters.from_filters(filters.dct_filters(3))
    best = deblurring.tune_beta0(cost, bank, crops)
    loss = bl.SquaredErrorLoss(crops)
    values = {
        b0: loss.value(deblurring.tight_solve(cost, bl.Hyperparameters(b0, bank.beta, bank.filters)).x)
        for b0 in (best.beta0 - 0.5, best.beta0, best.beta0 + 0.5)
    }
    assert min(values, key=values.get) == best.beta0
    np.testing.assert_array_equal(best.filters, bank.filters)


def test_the_rate_falls_geometrically_to_its_final_fraction():
    optimizer = deblurring._DecayingAdam(0.01, 0.1, 5)
    rates = []
    for _ in range(5):
        optimizer.step(np.zeros(2), np.ones(2))
        rates.append(optimizer.adam.learning_rate)
    np.testing.assert_allclose(rates, 0.01 * 0.1 ** (np.arange(5) / 4))


def test_a_best_beta0_at_the_end_of_the_grid_is_refused(monkeypatch):
    crops = deblurring.training_crops(16)
    monkeypatch.setattr(deblurring, "BETA0_GRID", (-12.0, -11.5))  # far too little regularisation
    cost = deblurring.task_cost("denoising", crops, 0)
    with pytest.raises(ValueError, match="end of the grid"):
        deblurring.tune_beta0(cost, bl.Hyperparameters.from_filters(filters.dct_filters(3)), crops)


def test_learning_helps_its_own_task_and_the_filters_do_not_transfer(tiny):
    train = tiny["tables"]["train"]
    for task in deblurring.TASKS:
        assert tiny["history"][task][-1] < 0.97, task  # each run lowered its training loss
    # on its own training data, the bank learned for deblurring beats the untrained bank by a clear
    # margin (1.4 dB seen), and the same filters used for denoising lose to it (by more than 2 dB seen):
    # swapping the forward models, or training the wrong task, fails these
    deb, den = train["deblurring"], train["denoising"]
    assert deb["learned for deblurring"] > deb["DCT 3×3"] + 0.5
    assert deb["learned for deblurring"] > deb["learned for denoising"] + 0.5
    assert den["learned for deblurring"] < den["DCT 3×3"] - 1.0
    # each reconstruction beats its measurement
    for split in tiny["tables"].values():
        for column in split.values():
            assert all(column[name] > column["measurement"] for name in deblurring.CONTENDERS)


def test_the_comparison_is_fair_and_every_final_solve_converged(tiny):
    assert tiny["unconverged"] == 0
    for split in tiny["converged"].values():
        for row in split.values():
            assert set(row) == set(deblurring.CONTENDERS) and all(row.values())
    for split in tiny["gradient_norm_final"].values():
        assert max(v for row in split.values() for v in row.values()) < 1e-6
    for task in deblurring.TASKS:
        learned, start = tiny["params"][task], tiny["start"][task]
        assert learned.beta0 == start.beta0  # β0 frozen while β and the filters learn
        assert not np.allclose(learned.filters, start.filters)
        assert tiny["beta0"][task][f"learned for {task}"] == start.beta0
    assert set(tiny["tables"]) == {"train", "held-out noise", "held-out crops"}
    assert 0.3 < tiny["blur_weak_fraction"] < 0.9  # a Gaussian of width 1 kills the high frequencies


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: deblurring.deblurring_case(n_steps=0), "n_steps"),
        (lambda: deblurring.deblurring_case(lower_iterations=1.5), "lower_iterations"),
        (lambda: deblurring.deblurring_case(lr=-1.0), "lr"),
        (lambda: deblurring.deblurring_case(lr_final=2.0), "lr_final"),
        (lambda: deblurring.deblurring_case(size=8), "size"),
        (lambda: deblurring.deblurring_case(sigma=0.0), "sigma"),
        (lambda: deblurring.deblurring_case(noise_seed=-1), "noise_seed"),
        (lambda: deblurring.deblurring_case(progress="yes"), "progress"),
        (lambda: deblurring.training_crops(51), "size"),
        (lambda: deblurring.forward_model("blurring", (8, 8)), "task"),
        (lambda: deblurring.task_cost("denoising", np.ones((8, 8)), 0), "truth"),
        (lambda: deblurring.task_cost("denoising", np.ones((1, 8, 8)), -2), "seed"),
        (lambda: deblurring.task_cost("denoising", np.ones((1, 8, 8)), 0, sigma=np.nan), "sigma"),
        (lambda: deblurring.tune_beta0("cost", None, np.ones((1, 8, 8))), "cost"),
        (lambda: deblurring.tight_solve(bl.LowerLevelCost(np.ones((1, 8, 8))), np.zeros(3)), "params"),
        (lambda: deblurring.crossover_contenders({"denoising": None}, np.ones((1, 8, 8)), 0), "trained"),
        (lambda: deblurring.crossover_table({}, np.ones((1, 8, 8)), 0), "contenders"),
    ],
)
def test_bad_inputs_are_refused_by_name(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()
