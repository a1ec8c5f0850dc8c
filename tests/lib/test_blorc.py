"""BLORC training: data, one step = one Lemma-1 gradient step, the loss falls, helpers, CLI."""

from dataclasses import replace

import numpy as np
import pytest

from bilevel_lib import l1 as sl
from bilevel_lib.experiments import blorc, cli, store
from bilevel_lib.solvers.lower import ConvergenceWarning


def small(signal="piecewise", **changes):
    settings = dict(signal=signal, n=16, n_train=40, n_test=5, batch_size=10, epochs=2, lr=1e-2)
    settings.update(changes)
    return blorc.BlorcSettings(**settings)


@pytest.mark.parametrize("signal", blorc.SIGNALS)
def test_pairs_have_the_paper_shape_and_are_reproducible(signal):
    settings = small(signal, n=64 if signal.startswith("stripes") else 16)
    x, y, xt, yt = blorc.make_pairs(settings)
    assert x.shape == y.shape == (40, settings.n) and xt.shape == yt.shape == (5, settings.n)
    if not signal.startswith("stripes"):
        assert np.allclose(np.max(np.abs(np.vstack([x, xt])), axis=1), 1.0)  # peak normalised
    again = blorc.make_pairs(settings)
    assert np.array_equal(again[1], y)
    noise = np.std(np.vstack([y - x, yt - xt]))
    assert 0.08 < noise < 0.12


def test_stripe_patches_overlap_by_one_pixel():
    clean, noisy = blorc.stripe_patches("diagonal", 0.1, rng=0, size=22, patch=8, stride=7)
    assert clean.shape == (9, 64)  # starts 0, 7, 14 on each axis
    image = blorc.stripe_image("diagonal", 22)
    assert np.array_equal(clean[1].reshape(8, 8), image[0:8, 7:15])


def test_one_step_is_a_lemma1_gradient_step():
    settings = small(n_train=10, batch_size=10)
    x, y, _, _ = blorc.make_pairs(settings)
    W0 = 0.3 * np.eye(16)
    result = blorc.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05, threshold=1e-3)
    solve = sl.solve_l1_denoising(y, W0, threshold=1e-3)
    expected = W0 - 0.05 * sl.closed_form_gradient(y, x, W0, solve.signs).gradient
    assert np.allclose(result.W, expected, atol=1e-13)
    assert np.array_equal(result.W_init, W0)


def test_step_decay_divides_the_step_by_ten():
    """lr_decay_epochs=(1,): the second epoch is a step of lr/10 from where the first ended."""
    settings = small(n_train=10, batch_size=10)
    x, y, _, _ = blorc.make_pairs(settings)
    W0 = 0.3 * np.eye(16)
    decayed = blorc.train_blorc(x, y, W0=W0, epochs=2, batch_size=10, lr=0.05, lr_decay_epochs=(1,))
    first = blorc.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05)
    solve = sl.solve_l1_denoising(y, first.W, threshold=sl.TRAINING_THRESHOLD)  # train_blorc's default
    expected = first.W - 0.005 * sl.closed_form_gradient(y, x, first.W, solve.signs).gradient
    assert np.allclose(decayed.W, expected, atol=1e-12)
    constant = blorc.train_blorc(x, y, W0=W0, epochs=2, batch_size=10, lr=0.05)
    assert not np.allclose(constant.W, decayed.W, atol=1e-6)  # the decay changed the second step


def test_training_lowers_the_training_loss():
    settings = small(n_train=60, batch_size=20)
    x, y, _, _ = blorc.make_pairs(settings)
    W0 = 0.3 * np.eye(16)

    def loss(W):
        return sl.l1_loss(y, x, W)[0]

    for optimizer, lr in (("gd", 0.05), ("adam", 0.01)):
        result = blorc.train_blorc(x, y, W0=W0, epochs=4, batch_size=20, lr=lr, optimizer=optimizer, seed=1)
        assert loss(result.W) < 0.8 * loss(W0), optimizer
        assert result.batch_loss.shape == (12,) and result.epoch_loss.shape == (4,)


def test_test_psnr_history_and_callback():
    settings = small()
    x, y, xt, yt = blorc.make_pairs(settings)
    seen = []
    result = blorc.train_blorc(
        x, y, epochs=2, batch_size=10, lr=1e-2, x_test=xt, y_test=yt, callback=lambda epoch, W: seen.append(epoch)
    )
    assert seen == [0, 1]
    assert result.test_psnr.shape == (3,)
    assert result.test_psnr[0] == pytest.approx(blorc.mean_psnr(np.eye(16), xt, yt))


def test_match_rows_undoes_a_permutation_and_sign_flips():
    reference = blorc.dct_matrix(8)
    rng = np.random.default_rng(0)
    order = rng.permutation(8)
    signs = rng.choice([-1.0, 1.0], 8)
    shuffled = 2.0 * reference[order] * signs[:, None]
    matched, correlation = blorc.match_rows(shuffled, reference)
    assert np.allclose(matched, 2.0 * reference)
    assert np.allclose(correlation, 1.0)


def test_finite_difference_and_best_scale():
    D = blorc.finite_difference_matrix(5)
    assert np.allclose(D @ np.arange(5.0), 1.0) and D.shape == (4, 5)
    settings = small(n_train=20)
    x, y, _, _ = blorc.make_pairs(settings)
    scales = np.array([0.01, 0.1, 0.3, 3.0])
    best, values = blorc.best_scale(blorc.finite_difference_matrix(16), x, y, scales)
    assert best == scales[np.argmax(values)] and best in (0.1, 0.3)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="signal must be one of"):
        blorc.BlorcSettings(signal="wavelets")
    with pytest.raises(ValueError, match="n must be a square"):
        blorc.BlorcSettings(signal="stripes-vertical", n=60)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        blorc.BlorcSettings(batch_size=0)
    x = np.zeros((4, 6))
    with pytest.raises(ValueError, match="same shape"):
        blorc.train_blorc(x, x[:, :5])
    with pytest.raises(ValueError, match="optimizer"):
        blorc.train_blorc(x, x, optimizer="sgd")
    with pytest.raises(ValueError, match="W0 must have n = 6 columns"):
        blorc.train_blorc(x, x, W0=np.eye(5))
    with pytest.raises(ValueError, match="lr_decay_epochs must be increasing epoch numbers in 1…1"):
        blorc.train_blorc(x, x, epochs=2, lr_decay_epochs=(2,))
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        blorc.BlorcSettings(epochs=10, lr_decay_epochs=(5, 3))


def test_command_line_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(
        [
            "blorc",
            "--signal",
            "dct",
            "--n",
            "16",
            "--pairs",
            "20",
            "--test",
            "4",
            "--batch",
            "10",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    saved = store.load(out)
    assert saved.settings["n_train"] == 20 and saved.settings["signal"] == "dct"
    assert saved.command.startswith("python -m bilevel_lib blorc --signal dct")
    for key in ("psnr_learned_db", "psnr_baseline_db", "psnr_noisy_db"):
        assert np.isfinite(saved.metrics[key])
    assert saved.seconds >= 0
    assert saved.arrays["W"].shape == (16, 16) and saved.arrays["test_psnr"].shape == (2,)
    assert "test PSNR" in capsys.readouterr().out


def test_full_preset_decays_and_scales_its_decays_with_the_epochs(tmp_path, capsys):
    assert blorc.FULL_SETTINGS.lr_decay_epochs == (650, 700)
    assert blorc.settings_for(full=True, epochs=15).lr_decay_epochs == (13, 14)  # 650/750, 700/750 of 15
    assert blorc.settings_for(full=True, epochs=15, lr_decay_epochs=[]).lr_decay_epochs == ()
    assert blorc.settings_for("dct", lr=None) == replace(blorc.BOOK_SETTINGS, signal="dct")  # None: the preset's
    out = tmp_path / "run"
    # the full preset keeps the paper's threshold 1e-3: some of its steps misread the zero set, and say so
    with pytest.warns(ConvergenceWarning, match="train_blorc: .* steps used a gradient that was not converged"):
        cli.main(
            [
                "blorc",
                "--full",
                "--n",
                "16",
                "--pairs",
                "20",
                "--test",
                "4",
                "--batch",
                "10",
                "--epochs",
                "15",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
    assert store.read_record(out)["settings"]["lr_decay_epochs"] == [13, 14]
    assert "÷10 at epochs 13, 14" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the training threshold on a trained W
@pytest.fixture(scope="module")
def trained():
    """(x, y, W) after six epochs of BLORC from 0.3·I on 40 piecewise-constant pairs (n = 16)."""
    x, y, _, _ = blorc.make_pairs(small(n_train=40, epochs=6))
    run = blorc.train_blorc(x, y, W0=0.3 * np.eye(16), epochs=6, batch_size=10, lr=0.05)
    assert run.unconverged_steps == 0, run.unconverged_message
    return x, y, run.W


def test_training_default_threshold_is_safe_on_a_trained_W(trained):
    """At train_blorc's default threshold the BLORC gradient of a trained W matches central differences.

    The trained W has genuine non-zeros of W x* below the paper's 1e-3, and the zero rows are at
    rounding level, many orders below the default 1e-8: the margin the default relies on.
    """
    x, y, W = trained
    assert sl.TRAINING_THRESHOLD == sl.DEFAULT_THRESHOLD == 1e-8
    result = sl.l1_hypergradient(y, x, W)  # train_blorc's default estimator and threshold
    assert result.converged, result.message
    solve = result.state["solve"]
    z, signs = np.abs(solve.z), solve.signs
    smallest, zero_level = z[signs != 0].min(), z[signs == 0].max()
    assert smallest < sl.PAPER_THRESHOLD  # small genuine non-zeros, below the paper's threshold
    assert zero_level < 1e-13 < 1e-5 * sl.TRAINING_THRESHOLD  # zero rows at rounding level
    assert smallest > 1e3 * sl.TRAINING_THRESHOLD
    rng = np.random.default_rng(0)
    rows, cols = np.unravel_index(rng.choice(W.size, 30, replace=False), W.shape)
    step = 1e-7  # far below the smallest non-zero, so no difference crosses a kink
    numeric = sl.finite_difference_l1_gradient(y, x, W, (rows, cols), step=step)
    scale = np.abs(result.gradient).max()
    assert np.abs(numeric - result.gradient[rows, cols]).max() < 1e-6 * scale
    # the paper's threshold on the same W reads a genuine non-zero as zero: caught, with a warning
    with pytest.warns(ConvergenceWarning, match="not the minimiser's"):
        paper = sl.l1_hypergradient(y, x, W, threshold=sl.PAPER_THRESHOLD)
    assert paper.converged is False and paper.diagnostics["closed_form_failed"].any()
    assert np.abs(numeric - paper.gradient[rows, cols]).max() > 1e-2 * scale  # and it is wrong


def test_a_planted_wrong_zero_set_is_caught(trained):
    x, y, W = trained
    solve = sl.solve_l1_denoising(y, W)
    z, signs = solve.z, solve.signs
    j, i = np.unravel_index(np.argmin(np.where(signs != 0, np.abs(z), np.inf)), z.shape)
    planted = signs.copy()
    planted[j, i] = 0.0  # the smallest genuine non-zero put in the zero set
    block = sl.closed_form_gradient(y, x, W, planted, x_reference=solve.x)
    assert block.converged is False and block.diagnostics["closed_form_failed"][j]
    assert block.diagnostics["closed_form_failed"].sum() == 1
    right = sl.closed_form_gradient(y, x, W, signs, x_reference=solve.x)
    assert right.converged and right.diagnostics["closed_form_mismatch"] < 1e-12
    # the estimator with a threshold just above that |z|: the same row misread, reported and warned
    with pytest.warns(ConvergenceWarning, match="l1_hypergradient: lemma1: the sign pattern is not"):
        estimate = sl.l1_hypergradient(y, x, W, threshold=1.5 * abs(z[j, i]))
    assert estimate.converged is False and estimate.diagnostics["closed_form_failed"][j]
    quiet = sl.l1_hypergradient(y, x, W, threshold=1.5 * abs(z[j, i]), warn=False)  # no warning asked for
    assert quiet.converged is False


def test_a_full_rank_zero_set_with_a_small_nonzero_x_is_caught():
    """W = I, one y_i just above 1: x* = soft threshold has one entry 1e-13 and |W x*| ≤ 1e-8 everywhere.

    The zero set read at the default threshold then has full rank, so x_cf = 0.  The old check measured
    x against 1e-12‖y‖ and took x* for zero; the rounding-level floor (10 n eps ‖y‖) does not.
    """
    W = np.eye(4)
    y = np.array([[0.5, -0.25, 1.0 + 1e-13, 0.75]])
    truth = np.array([[0.3, 0.0, 0.2, 0.5]])
    solve = sl.solve_l1_denoising(y, W)
    assert solve.converged and solve.polished.all()
    assert solve.x[0, 2] == pytest.approx(y[0, 2] - 1.0, rel=1e-3) and np.count_nonzero(solve.x) == 1
    with pytest.warns(ConvergenceWarning, match="zero set has full rank n = 4, so x_cf = 0"):
        result = sl.l1_hypergradient(y, truth, W)
    assert result.converged is False and result.diagnostics["rank"][0] == 4
    # read at a threshold below that entry the pattern is the minimiser's, and the check passes
    fine = sl.l1_hypergradient(y, truth, W, threshold=1e-15)
    assert fine.converged, fine.message
    assert fine.diagnostics["zero_set_size"][0] == 3


def test_presets_use_the_paper_threshold_only_where_they_reproduce_the_paper():
    assert blorc.BlorcSettings().threshold == sl.TRAINING_THRESHOLD
    assert blorc.BOOK_SETTINGS.threshold == sl.TRAINING_THRESHOLD
    assert blorc.settings_for("dct").threshold == sl.TRAINING_THRESHOLD
    assert blorc.PAPER_SETTINGS.threshold == sl.PAPER_THRESHOLD == 1e-3
    assert blorc.FULL_SETTINGS.threshold == sl.PAPER_THRESHOLD


def test_train_blorc_default_is_the_training_threshold():
    x, y, _, _ = blorc.make_pairs(small(n_train=10, batch_size=10))
    W0 = 0.3 * np.eye(16)
    default = blorc.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05)
    explicit = blorc.train_blorc(x, y, W0=W0, epochs=1, batch_size=10, lr=0.05, threshold=sl.TRAINING_THRESHOLD)
    assert np.array_equal(default.W, explicit.W)
    with pytest.raises(TypeError, match="warn"):
        blorc.train_blorc(x, y, W0=W0, epochs=1, warn="no")
    with pytest.raises(ValueError, match="threshold"):
        blorc.train_blorc(x, y, W0=W0, epochs=1, threshold=-1.0)
    with pytest.raises(ValueError, match="lr"):
        blorc.train_blorc(x, y, W0=W0, epochs=1, lr=1e9)
