"""The one command line ``python -m bilevel_lib``: every experiment listed, every option reaching the run
and its record, bad and inapplicable options refused by name before any work, results saved through the
store (``--out`` paths, ``--force``, unwritable targets), nothing saved by a run that fails."""

import inspect
import json
import os
import subprocess
import sys
from dataclasses import replace
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from bilevel_lib.experiments import blorc, cli, full_image, maid_hoag, recipes, store
from bilevel_lib.problem.params import Hyperparameters
from bilevel_lib.training.loops import TrainingHistory, TrainingResult

TRAINING_RUNS = ("bars", "cameraman-beta", "cameraman-filters")
COMMANDS = (*cli.EXPERIMENTS, "list", "reproduce")


def run_cli(argv, capsys):
    """main(argv) → (exit code, stdout, stderr); argparse errors exit with 2."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- fakes of the expensive runs
@pytest.fixture
def training_calls(monkeypatch):
    """Replace both training recipes by fakes that record their keyword arguments."""
    calls = []

    def fake(name):
        def run(**kwargs):
            calls.append((name, kwargs))
            params = Hyperparameters(-4.6, np.zeros(2), np.ones((2, 4, 2)))
            history = TrainingHistory()
            history.append(
                loss=2.0, gradient_norm=0.5, lower_gradient_norm=1e-3, lower_iterations=3, cg_iterations=1, elapsed=0.1
            )
            result = TrainingResult(
                params,
                history,
                np.zeros((1, 4, 4)),
                "ran 1 upper-level steps",
                dict(n_steps=kwargs["n_steps"], lower_iterations=kwargs["lower_iterations"]),
            )
            return dict(
                result=result,
                seconds=3.21,
                snr_noisy=12.0,
                snr_learned=20.0,
                strengths=[0.3, 0.1],
                max_abs_column_sum=1e-5,
                row_sum_range=(-1.0, 2.0),
            )

        return run

    monkeypatch.setattr(recipes, "vertical_bars_case", fake("bars"))
    monkeypatch.setattr(recipes, "cameraman_case", fake("cameraman"))
    return calls


@pytest.fixture
def blorc_calls(monkeypatch):
    """Replace the BLORC run by a fake that records the settings it got."""
    calls = []

    def run(settings, *, progress=True):
        calls.append((settings, progress))
        result = SimpleNamespace(
            W=np.eye(settings.n),
            epoch_loss=np.ones(settings.epochs),
            test_psnr=np.ones(settings.epochs + 1),
            seconds=0.5,
            fista_iterations=10,
            active_set_rounds=2,
        )
        return dict(
            result=result,
            psnr_learned=21.0,
            psnr_baseline=20.0,
            psnr_noisy=15.0,
            baseline="finite differences",
            baseline_scale=0.2,
        )

    monkeypatch.setattr(blorc, "run", run)
    return calls


@pytest.fixture
def frontier_calls(monkeypatch):
    """Replace the frontier sweep by a fake that records its arguments and returns a one-row sweep."""
    from bilevel_lib.experiments import frontier

    calls = []

    def run(problems, estimators, **kwargs):
        calls.append((problems, estimators, kwargs))
        settings = dict(problems=list(problems), estimators=list(estimators), references={}, **kwargs)
        table = np.zeros((1, len(frontier.COLUMNS)))
        table[0, frontier.COLUMNS.index("error")] = 1e-3
        return frontier.FrontierSweep(tuple(problems), tuple(estimators), table, {}, 0.5, settings)

    monkeypatch.setattr(frontier, "run_frontier", run)
    return calls


@pytest.fixture
def beyond_calls(monkeypatch):
    """Replace the recipes of ``losses``, ``inpainting``, ``penalties``, ``maid-hoag`` and ``deblurring`` by fakes
    that record their keyword arguments."""
    from bilevel_lib.experiments import beyond_mse, deblurring

    calls = []
    params = Hyperparameters(-3.0, np.zeros(2), np.ones((2, 3, 3)))
    one = dict(snr=np.array([10.0]), psnr=np.array([20.0]), ssim=np.array([0.5]))

    def outcome(rows, kwargs, **more):
        return dict(
            train={row: one for row in rows},
            test={row: one for row in rows} | {"masked data": one},
            test_truth=np.zeros((1, 4, 4)),
            test_x={row: np.zeros((1, 4, 4)) for row in rows},
            settings=dict(kwargs),
            seconds_total=0.25,
            **more,
        )

    def losses(**kwargs):
        calls.append(("losses", kwargs))
        return outcome(
            ["start", "mse"],
            {k: v for k, v in kwargs.items() if k != "progress"},
            losses=("mse",),
            start=params,
            params={"mse": params},
            history={"mse": np.ones(2)},
            test_noisy=np.zeros((1, 4, 4)),
            seconds={"mse": 0.1},
        )

    def inpainting(**kwargs):
        calls.append(("inpainting", kwargs))
        rows = ["TV", "DCT", "learned"]
        return outcome(
            rows,
            {k: v for k, v in kwargs.items() if k != "progress"},
            params={row: params for row in rows},
            history=np.ones(2),
            test_y=np.zeros((1, 4, 4)),
            test_mask=np.ones((4, 4)),
        )

    def penalties(**kwargs):
        calls.append(("penalties", kwargs))
        names = ("CR1N", "log")
        runs = {"CR1N": "CR1N", "log": "log", "CR1N filters": "CR1N"}
        learned = Hyperparameters(-3.0, np.zeros(2), 2 * np.ones((2, 3, 3)))
        return outcome(
            ["CR1N start", "CR1N", "CR1N filters", "log start", "log"],
            {k: v for k, v in kwargs.items() if k != "progress"},
            penalties=names,
            runs=runs,
            eps={"CR1N": 0.01, "log": 0.005},
            eps_search={0.005: 1.5, 0.01: 1.7},
            start={name: params for name in names},
            params={run: learned if "filters" in run else params for run in runs},
            history={run: np.ones(2) for run in runs},
            hessian_min={run: dict(train=np.array([0.5]), test=np.array([0.75])) for run in runs},
            concave_fraction={"CR1N": 0.0, "log": 0.1, "CR1N filters": 0.0},
            start_spread={run: 1e-8 for run in runs},
            stopped={"CR1N": None, "log": None, "CR1N filters": dict(step=1, message="not positive definite")},
            test_noisy=np.zeros((1, 4, 4)),
            noisy_scores=one,
            seconds={run: 0.1 for run in runs},
        )

    def deblurring_case(**kwargs):
        calls.append(("deblurring", kwargs))
        tasks, rows = ("denoising", "deblurring"), ("TV", "DCT 3×3", "learned for denoising", "learned for deblurring")
        table = {task: {"measurement": 15.0} | {row: 20.0 for row in rows} for task in tasks}
        splits = ("train", "held-out noise", "held-out crops")
        return dict(
            tasks=tasks,
            contenders=rows,
            params={task: params for task in tasks},
            start={task: params for task in tasks},
            beta0={task: {row: -3.0 for row in rows} for task in tasks},
            history={task: np.ones(2) for task in tasks},
            gradient_norm={task: np.ones(2) for task in tasks},
            lower_residual={task: np.ones(2) for task in tasks},
            missed_steps={task: 0 for task in tasks},
            tables={split: table for split in splits},
            converged={split: {task: {row: True for row in rows} for task in tasks} for split in splits},
            gradient_norm_final={split: {task: {row: 1e-7 for row in rows} for task in tasks} for split in splits},
            unconverged=0,
            blur_weak_fraction=0.6,
            weak_band_energy={name: np.ones(2) for name in ("DCT 3×3", *tasks)},
            test_truth=np.zeros((1, 4, 4)),
            test_x={task: {row: np.zeros((1, 4, 4)) for row in rows} for task in tasks},
            training_messages={task: "ran 2 upper-level steps" for task in tasks},
            seconds={task: 0.1 for task in tasks},
            settings={k: v for k, v in kwargs.items() if k != "progress"},
            seconds_total=0.25,
        )

    monkeypatch.setattr(deblurring, "deblurring_case", deblurring_case)
    monkeypatch.setattr(beyond_mse, "loss_comparison", losses)
    monkeypatch.setattr(beyond_mse, "inpainting_case", inpainting)

    def comparison(**kwargs):
        calls.append(("maid-hoag", kwargs))
        names = ["MAID", "HOAG 0.9"]
        history = dict(loss=np.array([2.0, 1.0]), work=np.array([3, 6]), converged=np.array([True, True]))
        scores = dict(noisy=np.array([20.0]), start=np.array([25.0]), MAID=np.array([26.0]))
        return dict(
            names=names,
            start=params,
            beta0_grid=np.array([-3.0, -2.0]),
            beta0_losses=np.array([1.0, 2.0]),
            params={name: params for name in names},
            history={name: history for name in names},
            message={name: "ran" for name in names},
            seconds={name: 0.1 for name in names},
            unconverged={name: 0 for name in names},
            train_loss={"start": 2.0, "MAID": 1.0, "HOAG 0.9": 1.5},
            test_psnr=scores | {"HOAG 0.9": np.array([25.5])},
            test_snr=scores | {"HOAG 0.9": np.array([25.5])},
            settings=dict(budget=kwargs["budget"], seed=kwargs["seed"]),
            seconds_total=0.25,
        )

    monkeypatch.setattr(beyond_mse, "loss_comparison", losses)
    monkeypatch.setattr(beyond_mse, "inpainting_case", inpainting)
    monkeypatch.setattr(beyond_mse, "penalty_comparison", penalties)
    monkeypatch.setattr(maid_hoag, "maid_hoag_comparison", comparison)
    return calls


@pytest.fixture
def full_calls(monkeypatch):
    """Replace the whole-image recipe by a fake on 4×4 images that records its keyword arguments (and
    let ``import bm3d`` succeed, so that the command's check for BM3D passes where it is not installed)."""
    calls = []
    monkeypatch.setitem(sys.modules, "bm3d", sys.modules.get("bm3d") or ModuleType("bm3d"))

    def run(**kwargs):
        calls.append(kwargs)
        keys = [key for key in full_image.METHODS if kwargs.get("bm3d", True) or key != "bm3d"]
        images = {key: np.full((4, 4), 0.1 * i) for i, key in enumerate(keys)}
        images["noisy"][0, 0] = -0.75  # outside the stored range: clipped, and counted
        solved = ("tv", "beta", "filters")
        settings = {k: v for k, v in kwargs.items() if k != "progress"}
        return dict(
            images=images,
            snr={key: 10.0 + i for i, key in enumerate(keys)},
            psnr={key: 20.0 + i for i, key in enumerate(keys)},
            iterations={key: 5 for key in solved},
            gradient_norm={key: 1e-6 for key in solved},
            converged={key: True for key in solved},
            tv_beta0=-2.75,
            tv_grid=np.array([-3.0, -2.75]),
            tv_grid_snr=np.array([11.0, 12.0]),
            tv_grid_iterations=np.array([4, 5]),
            seconds={key: 0.5 for key in (*solved, "bm3d")[: len(keys) - 1]},
            seconds_total=1.25,
            settings=dict(shape=[4, 4], **settings),
        )

    monkeypatch.setattr(full_image, "full_image_case", run)
    return calls


@pytest.fixture
def results_in_tmp(tmp_path, monkeypatch):
    """The repository's results/ folder, moved to tmp_path for the test."""
    monkeypatch.setattr(store, "results_dir", lambda: tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- listing and help
def test_plain_call_and_help_list_every_experiment(capsys):
    code, out, _ = run_cli([], capsys)
    assert code == 0
    for name in COMMANDS:
        assert name in out
    code, out_help, _ = run_cli(["--help"], capsys)
    assert code == 0 and out_help == out


def test_list_shows_every_experiment_and_the_saved_results(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    for name in cli.EXPERIMENTS:
        assert f"\n  {name} " in out
    for result in ("bars", "cameraman-beta", "cameraman-filters", "blorc_piecewise_full", "blorc_dct_full"):
        line = next(line for line in out.splitlines() if f" {result}.{{npz,json}}" in line)
        assert "saved: " in line and "python -m bilevel_lib" in line


def test_list_in_an_empty_results_folder(results_in_tmp, capsys):
    (results_in_tmp / "bars.json").write_text("{", encoding="utf-8")
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "cameraman-beta.{npz,json}: not saved" in out
    assert "bars.{npz,json}: unreadable" in out


EXPECTED_OPTIONS = {
    "bars": ["--steps", "--lower-iterations", "--draws", "--seed", "--filter-seed", "--out", "--force", "--quiet"],
    "cameraman-beta": ["--steps", "--lower-iterations", "--seed", "--out", "--force", "--quiet"],
    "cameraman-filters": ["--steps", "--lower-iterations", "--seed", "--out", "--force", "--quiet"],
    "blorc": [
        "--signal",
        "--full",
        "--n",
        "--pairs",
        "--test",
        "--sigma",
        "--batch",
        "--epochs",
        "--lr",
        "--threshold",
        "--seed",
        "--lr-decay-epochs",
        "--out",
        "--force",
        "--quiet",
        "--no-progress",
    ],
    "frontier": ["--size", "--l1-size", "--seed", "--repeat", "--quick", "--no-memory", "--out", "--force", "--quiet"],
    "losses": ["--steps", "--lower-iterations", "--seed", "--out", "--force", "--quiet"],
    "inpainting": ["--steps", "--lower-iterations", "--seed", "--missing", "--out", "--force", "--quiet"],
    "penalties": ["--steps", "--lower-iterations", "--seed", "--out", "--force", "--quiet"],
    "deblurring": ["--steps", "--lower-iterations", "--seed", "--size", "--out", "--force", "--quiet"],
    "cameraman-full": ["--seed", "--max-iter", "--no-bm3d", "--out", "--force", "--quiet"],
    "maid-hoag": ["--budget", "--seed", "--out", "--force", "--quiet"],
    "list": [],
    "reproduce": [],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_own_help(command, capsys):
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: python -m bilevel_lib {command}")
    for option in EXPECTED_OPTIONS[command]:
        assert option in out


def test_reproduce_name_help_is_the_commands_help(capsys):
    _, out, _ = run_cli(["reproduce", "bars", "--help"], capsys)
    assert out.startswith("usage: python -m bilevel_lib bars")


def test_the_module_entry_point_and_the_old_blorc_one():
    completed = subprocess.run(
        [sys.executable, "-m", "bilevel_lib", "list"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0 and "cameraman-filters" in completed.stdout
    moved = subprocess.run(
        [sys.executable, "-m", "bilevel_lib.experiments.blorc", "--signal", "dct"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert moved.returncode == 1 and "python -m bilevel_lib blorc" in moved.stderr


# ----------------------------------------------------------------------------- training options reach the run
BARS = dict(draws="julia", julia_seed=0, n_steps=4000, lower_iterations=50, progress=True)
CAMERAMAN = dict(parts=("beta",), n_steps=10_000, lower_iterations=10, noise_seed=0, progress=True)


@pytest.mark.parametrize(
    "argv, runner, expected",
    [
        (["bars"], "bars", BARS),
        (["bars", "--steps", "7"], "bars", {**BARS, "n_steps": 7}),
        (["bars", "--lower-iterations", "9"], "bars", {**BARS, "lower_iterations": 9}),
        (["bars", "--seed", "5"], "bars", {**BARS, "julia_seed": 5}),
        (["bars", "--draws", "julia", "--seed", "2"], "bars", {**BARS, "julia_seed": 2}),
        (["bars", "--quiet"], "bars", {**BARS, "progress": False}),
        (
            ["bars", "--draws", "numpy"],
            "bars",
            dict(draws="numpy", noise_seed=0, filter_seed=1, n_steps=4000, lower_iterations=50, progress=True),
        ),
        (
            ["bars", "--draws", "numpy", "--seed", "2", "--filter-seed", "3"],
            "bars",
            dict(draws="numpy", noise_seed=2, filter_seed=3, n_steps=4000, lower_iterations=50, progress=True),
        ),
        (["cameraman-beta"], "cameraman", CAMERAMAN),
        (
            ["cameraman-beta", "--steps", "4", "--lower-iterations", "2", "--seed", "8", "--quiet"],
            "cameraman",
            dict(parts=("beta",), n_steps=4, lower_iterations=2, noise_seed=8, progress=False),
        ),
        (["cameraman-filters"], "cameraman", {**CAMERAMAN, "parts": ("beta", "filters")}),
        (
            ["cameraman-filters", "--seed", "3"],
            "cameraman",
            {**CAMERAMAN, "parts": ("beta", "filters"), "noise_seed": 3},
        ),
        (["reproduce", "bars", "--steps", "6"], "bars", {**BARS, "n_steps": 6}),
        (
            ["reproduce", "cameraman-filters", "--quiet"],
            "cameraman",
            {**CAMERAMAN, "parts": ("beta", "filters"), "progress": False},
        ),
    ],
)
def test_every_training_option_reaches_the_run(argv, runner, expected, training_calls, tmp_path, capsys):
    code, out, _ = run_cli([*argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert training_calls == [(runner, expected)]
    record = store.read_record(tmp_path / "run")
    assert record["command"] == "python -m bilevel_lib " + " ".join(argv) + f" --out {tmp_path / 'run'}"


def test_a_training_run_is_saved_where_it_says(training_calls, results_in_tmp, capsys):
    code, out, _ = run_cli(["cameraman-beta", "--steps", "4"], capsys)
    assert code == 0
    npz, sidecar = results_in_tmp / "cameraman-beta.npz", results_in_tmp / "cameraman-beta.json"
    assert out.rstrip().splitlines()[-1] == f"saved {npz} and {sidecar}"
    summary = json.loads(out[: out.rindex("}") + 1])
    assert summary["run"] == "cameraman-beta" and summary["seconds"] == 3.2
    record = store.read_record(sidecar)
    assert record["seconds"] == 3.2 and record["kind"] == "training"
    assert record["metrics"]["snr_learned_db"] == 20.0 and record["metrics"]["row_sum_range"] == [-1.0, 2.0]
    assert record["settings"] == dict(
        n_steps=4, lower_iterations=10, experiment="cameraman-beta", parts=["beta"], noise_seed=0
    )
    assert store.load_result(npz).message == "ran 1 upper-level steps"


@pytest.mark.parametrize("out", ["run", "run.npz", "run.json", "sub/dir/run"])
def test_out_is_a_stem_and_the_printed_path_is_the_written_one(out, training_calls, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, printed, _ = run_cli(["bars", "--out", out], capsys)
    assert code == 0
    stem = out.removesuffix(".npz").removesuffix(".json")
    assert printed.rstrip().splitlines()[-1] == f"saved {stem}.npz and {stem}.json"
    assert (tmp_path / f"{stem}.npz").is_file() and (tmp_path / f"{stem}.json").is_file()


def test_an_existing_result_is_kept_unless_force(training_calls, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["bars", "--steps", "5", "--out", str(out)], capsys)[0] == 0
    code, _, err = run_cli(["bars", "--steps", "6", "--out", str(out)], capsys)
    assert code == 2 and f"{out}.npz exists" in err and "--force" in err
    assert len(training_calls) == 1  # refused before the run started
    assert store.read_record(out)["settings"]["n_steps"] == 5
    assert run_cli(["bars", "--steps", "6", "--out", str(out), "--force"], capsys)[0] == 0
    assert store.read_record(out)["settings"]["n_steps"] == 6


def test_a_failed_run_writes_nothing(monkeypatch, tmp_path, capsys):
    def broken(**kwargs):
        raise RuntimeError("diverged")

    monkeypatch.setattr(recipes, "vertical_bars_case", broken)
    with pytest.raises(RuntimeError, match="diverged"):
        cli.main(["bars", "--out", str(tmp_path / "run")])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bars", "--filter-seed", "3"], "--filter-seed applies only with --draws numpy"),
        (["bars", "--draws", "julia", "--filter-seed", "3"], "--filter-seed applies only with --draws numpy"),
        (["bars", "--draws", "torch"], "--draws: invalid choice"),
        (["bars", "--steps", "0"], "--steps: must be a positive integer"),
        (["bars", "--lower-iterations", "-1"], "--lower-iterations: must be a positive integer"),
        (["bars", "--steps", "many"], "--steps: must be a positive integer; got 'many'"),
        (["bars", "--signal", "dct"], "unrecognized arguments: --signal"),
        (["cameraman-beta", "--draws", "numpy"], "unrecognized arguments: --draws"),
        (["cameraman-filters", "--filter-seed", "1"], "unrecognized arguments: --filter-seed"),
        (["blorc", "--steps", "3"], "unrecognized arguments: --steps"),
        (["blorc", "--lower-iterations", "3"], "unrecognized arguments: --lower-iterations"),
        (["list", "--out", "x"], "unrecognized arguments: --out"),
        (["fig13"], "invalid choice: 'fig13'"),
        (["reproduce", "fig13"], "invalid choice: 'fig13'"),
    ],
)
def test_bad_or_inapplicable_options_are_refused_by_name(argv, message, training_calls, blorc_calls, tmp_path, capsys):
    code, _, err = run_cli(
        [*argv, "--out", str(tmp_path / "run")] if argv[0] not in ("list", "fig13", "reproduce") else argv, capsys
    )
    assert code == 2 and message in err
    assert training_calls == [] and blorc_calls == [] and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- BLORC options reach the run
@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], blorc.BOOK_SETTINGS),
        (["--signal", "dct"], replace(blorc.BOOK_SETTINGS, signal="dct")),
        (["--full"], blorc.FULL_SETTINGS),
        (["--n", "16"], replace(blorc.BOOK_SETTINGS, n=16)),
        (["--pairs", "50"], replace(blorc.BOOK_SETTINGS, n_train=50)),
        (["--test", "7"], replace(blorc.BOOK_SETTINGS, n_test=7)),
        (["--sigma", "0.2"], replace(blorc.BOOK_SETTINGS, sigma=0.2)),
        (["--batch", "5"], replace(blorc.BOOK_SETTINGS, batch_size=5)),
        (["--epochs", "3"], replace(blorc.BOOK_SETTINGS, epochs=3)),
        (["--lr", "0.5"], replace(blorc.BOOK_SETTINGS, lr=0.5)),
        (["--threshold", "0.01"], replace(blorc.BOOK_SETTINGS, threshold=0.01)),
        (["--seed", "4"], replace(blorc.BOOK_SETTINGS, seed=4)),
        (["--lr-decay-epochs", "10", "20"], replace(blorc.BOOK_SETTINGS, lr_decay_epochs=(10, 20))),
        (["--full", "--lr-decay-epochs"], replace(blorc.FULL_SETTINGS, lr_decay_epochs=())),
        (["--full", "--epochs", "15"], replace(blorc.FULL_SETTINGS, epochs=15, lr_decay_epochs=(13, 14))),
        (
            ["--full", "--epochs", "15", "--lr-decay-epochs", "5"],
            replace(blorc.FULL_SETTINGS, epochs=15, lr_decay_epochs=(5,)),
        ),
        (
            ["--signal", "stripes-diagonal", "--pairs", "300", "--lr", "1e-4"],
            replace(blorc.BOOK_SETTINGS, signal="stripes-diagonal", n_train=300, lr=1e-4),
        ),
    ],
)
def test_every_blorc_option_reaches_the_run(argv, expected, blorc_calls, tmp_path, capsys):
    code, out, _ = run_cli(["blorc", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 0
    assert blorc_calls == [(expected, True)]
    record = store.read_record(tmp_path / "run")
    assert record["kind"] == "blorc" and blorc.BlorcSettings(**record["settings"]) == expected
    assert record["command"] == "python -m bilevel_lib blorc " + " ".join([*argv, "--out", str(tmp_path / "run")])


@pytest.mark.parametrize("option", ["--quiet", "--no-progress"])
def test_blorc_quiet(option, blorc_calls, tmp_path, capsys):
    assert run_cli(["blorc", option, "--out", str(tmp_path / "run")], capsys)[0] == 0
    assert blorc_calls[0][1] is False


@pytest.mark.parametrize(
    "argv, name",
    [
        (["--signal", "dct"], "blorc_dct"),
        (["--full"], "blorc_piecewise_full"),
        (["--signal", "dct", "--full"], "blorc_dct_full"),
    ],
)
def test_blorc_default_result_name_and_force(argv, name, blorc_calls, results_in_tmp, capsys):
    code, out, _ = run_cli(["blorc", *argv], capsys)
    assert code == 0
    npz, sidecar = results_in_tmp / f"{name}.npz", results_in_tmp / f"{name}.json"
    assert out.rstrip().splitlines()[-1] == f"saved {npz} and {sidecar}"
    assert store.load(name).metrics["psnr_learned_db"] == 21.0
    code, _, err = run_cli(["blorc", *argv], capsys)
    assert code == 2 and f"{npz} exists" in err and len(blorc_calls) == 1
    assert run_cli(["blorc", *argv, "--force"], capsys)[0] == 0 and len(blorc_calls) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr-decay-epochs", "30"], "--lr-decay-epochs: lr_decay_epochs must be increasing"),
        (["--lr-decay-epochs", "9", "4"], "--lr-decay-epochs: lr_decay_epochs must be increasing"),
        (["--full", "--epochs", "600", "--lr-decay-epochs", "650"], "--lr-decay-epochs"),
        (["--signal", "stripes-vertical", "--n", "60"], "--n: stripe patches"),
        (["--sigma", "-1"], "--sigma: must be a finite number > 0"),
        (["--lr", "0"], "--lr: must be a finite number > 0"),
        (["--threshold", "-0.1"], "--threshold: must be a finite number ≥ 0"),
        (["--signal", "piecewise", "--n", "4"], "--n: n must be ≥ 5 for piecewise signals"),
        (["--signal", "stripes-diagonal", "--n", "16"], "--n: n must be ≥ 25 for stripes-diagonal signals"),
        (["--batch", "50", "--pairs", "40"], "--batch 50 is more than the 40 training pairs (--pairs)"),
        (["--signal", "stripes-vertical", "--pairs", "2000"], "--pairs and --test: the stripe image gives 1296"),
        (["--signal", "wavelets"], "--signal: invalid choice"),
        (["--pairs", "0"], "--pairs: must be a positive integer"),
        (["--epochs", "0"], "--epochs: must be a positive integer"),
    ],
)
def test_bad_blorc_options_are_refused_by_name(argv, message, blorc_calls, tmp_path, capsys):
    code, _, err = run_cli(["blorc", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and message in err
    assert blorc_calls == [] and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- real tiny runs, end to end
def test_bars_end_to_end(tmp_path, capsys):
    out = tmp_path / "bars"
    code, printed, _ = run_cli(
        ["bars", "--steps", "3", "--lower-iterations", "5", "--quiet", "--out", str(out)], capsys
    )
    assert code == 0
    summary = json.loads(printed[: printed.rindex("}") + 1])
    assert summary["steps"] == 3 and summary["beta0"] == -4.6 and summary["snr_noisy_db"] == 12.69
    loaded = store.load_result(out)
    assert len(loaded.history.loss) == 3 and loaded.settings["lower_iterations"] == 5
    record = store.read_record(out)
    assert record["command"] == f"python -m bilevel_lib bars --steps 3 --lower-iterations 5 --quiet --out {out}"
    assert (
        record["metrics"]["snr_learned_db"] == summary["snr_learned_db"] and record["seconds"] >= 0
    )  # rounded to 0.1 s: a 3-step run may record 0.0


def test_blorc_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, _ = run_cli(
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
            "--quiet",
        ],
        capsys,
    )
    assert code == 0 and "test PSNR" in printed
    saved = store.load(out)
    assert saved.settings["n_train"] == 20 and saved.settings["signal"] == "dct"
    assert saved.command.startswith("python -m bilevel_lib blorc --signal dct")
    for key in ("psnr_learned_db", "psnr_baseline_db", "psnr_noisy_db"):
        assert np.isfinite(saved.metrics[key])
    assert saved.arrays["W"].shape == (16, 16) and saved.arrays["test_psnr"].shape == (2,)


# ----------------------------------------------------------------------------- every numeric option, every bad count
def numeric_options():
    """(command, option, kind) of every option whose argparse type is one of the command line's number types."""
    kinds = {
        cli._positive_int: "count",
        cli._seed: "seed",
        cli._positive_real: "positive",
        cli._nonnegative_real: "real",
    }
    found = []
    for name, sub in cli.build_parser().commands.items():
        for action in sub._actions:
            if action.option_strings and action.type is not None:
                assert action.type in kinds, f"{name} {action.option_strings}: a number type the tests do not know"
                found.append((name, action.option_strings[0], kinds[action.type]))
    return found


NUMERIC = numeric_options()
BAD = {
    "count": ["0", "-3", "1.5", "1e3", "nan", "x", ""],
    "seed": ["-1", "0.5", "nan", "x", ""],
    "positive": ["0", "-1", "nan", "inf", "-inf", "x", ""],
    "real": ["-0.1", "nan", "inf", "x", ""],
}
WHAT = dict(
    count="must be a positive integer", seed="must be a non-negative integer", positive="> 0", real="must be a finite"
)


def test_the_numeric_options_are_all_found():
    options = {(name, option) for name, option, _ in NUMERIC}
    assert {
        ("bars", "--steps"),
        ("bars", "--lower-iterations"),
        ("bars", "--seed"),
        ("bars", "--filter-seed"),
    } <= options
    assert {("cameraman-beta", "--steps"), ("cameraman-filters", "--lower-iterations")} <= options
    assert {
        ("blorc", f"--{o}") for o in ("n", "pairs", "test", "sigma", "batch", "epochs", "lr", "threshold")
    } <= options
    assert {("frontier", f"--{o}") for o in ("size", "l1-size", "seed", "repeat")} <= options
    assert {("losses", "--steps"), ("inpainting", "--missing")} <= options
    assert {("cameraman-full", "--seed"), ("cameraman-full", "--max-iter")} <= options
    assert ("maid-hoag", "--budget") in options
    assert ("deblurring", "--steps") in options and ("deblurring", "--size") in options
    assert len(NUMERIC) == 4 + 3 + 3 + 10 + 4 + 3 + 4 + 3 + 2 + 2 + 4


@pytest.mark.parametrize("name, option, kind", NUMERIC, ids=[f"{n}{o}" for n, o, _ in NUMERIC])
def test_every_bad_number_is_refused_by_the_parser_before_any_work(
    name, option, kind, training_calls, blorc_calls, frontier_calls, beyond_calls, full_calls, tmp_path, capsys
):
    extra = ["--draws", "numpy"] if option == "--filter-seed" else []
    for value in BAD[kind]:
        code, _, err = run_cli([name, *extra, f"{option}={value}", "--out", str(tmp_path / "run")], capsys)
        assert code == 2, (option, value)
        assert f"argument {option}: {'' if kind != 'positive' else 'must be a finite number '}" in err
        assert WHAT[kind] in err and (repr(value) in err or value in err)
    assert training_calls == [] and blorc_calls == [] and beyond_calls == [] and full_calls == []
    assert list(tmp_path.iterdir()) == []


def test_inpainting_refuses_a_mask_that_hides_almost_everything(beyond_calls, tmp_path, capsys):
    code, _, err = run_cli(["inpainting", "--missing", "0.99", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "--missing" in err and beyond_calls == [] and list(tmp_path.iterdir()) == []


def test_losses_and_inpainting_save_their_tables(beyond_calls, tmp_path, capsys):
    for name, rows in (("losses", ["start", "mse"]), ("inpainting", ["TV", "DCT", "learned"])):
        out = tmp_path / name
        code, printed, _ = run_cli([name, "--steps", "3", "--out", str(out), "--quiet"], capsys)
        assert code == 0 and f'"run": "{name}"' in printed
        saved = store.load(out)
        assert saved.record["kind"] == name and saved.settings["rows"] == rows
        assert saved.arrays["test_snr"].shape == (len(rows), 1) and saved.arrays["test_x"].shape == (len(rows), 1, 4, 4)
        assert saved.metrics["test"][rows[-1]] == dict(snr=10.0, psnr=20.0, ssim=0.5)
        assert beyond_calls[-1][1]["n_steps"] == 3 and beyond_calls[-1][1]["progress"] is False


def test_maid_hoag_saves_its_table_and_verdict(beyond_calls, tmp_path, capsys):
    out = tmp_path / "maid"
    code, printed, _ = run_cli(["maid-hoag", "--budget", "30", "--out", str(out), "--quiet"], capsys)
    assert code == 0 and "verdict: MAID above the best HOAG schedule (HOAG 0.9) by 0.50 dB" in printed
    assert "run time 0.2 s" in printed
    saved = store.load(out)
    assert saved.record["kind"] == "maid-hoag" and saved.settings["names"] == ["MAID", "HOAG 0.9"]
    assert saved.arrays["test_psnr"].shape == (4, 1)  # noisy, start, MAID, HOAG 0.9
    assert [row["work"] for row in saved.metrics["runs"]] == [6, 6]
    assert saved.metrics["maid_minus_best_hoag_db"] == 0.5
    np.testing.assert_array_equal(saved.arrays["history_1_work"], [3, 6])
    assert beyond_calls[-1] == ("maid-hoag", dict(budget=30, seed=0, progress=False))


def test_penalties_saves_its_table_and_the_hessian_check(beyond_calls, tmp_path, capsys):
    out = tmp_path / "penalties"
    code, printed, _ = run_cli(["penalties", "--steps", "3", "--out", str(out), "--quiet"], capsys)
    assert code == 0 and '"run": "penalties"' in printed
    saved = store.load(out)
    rows = ["CR1N start", "CR1N", "CR1N filters", "log start", "log"]
    assert saved.record["kind"] == "penalties" and saved.settings["rows"] == rows
    assert saved.arrays["test_snr"].shape == (5, 1) and saved.arrays["test_x"].shape == (3, 1, 4, 4)
    # the smallest over training and test
    assert saved.metrics["hessian_min"] == {"CR1N": 0.5, "log": 0.5, "CR1N filters": 0.5}
    assert saved.metrics["runs"]["CR1N filters"] == "CR1N" and saved.metrics["stopped"]["CR1N"] is None
    assert saved.metrics["stopped"]["CR1N filters"] == dict(step=1, message="not positive definite")
    # learned filters are saved, fixed ones are not
    assert "filters_CR1N_filters_learned" in saved.arrays and "filters_CR1N_learned" not in saved.arrays
    np.testing.assert_array_equal(saved.arrays["beta_CR1N_filters_learned"], np.zeros(2))
    assert saved.metrics["eps"]["log"] == 0.005 and saved.metrics["eps_search"] == {"0.005": 1.5, "0.01": 1.7}
    np.testing.assert_array_equal(saved.arrays["hessian_min_log_test"], [0.75])
    assert beyond_calls[-1] == ("penalties", dict(n_steps=3, lower_iterations=10, noise_seed=0, progress=False))


def test_cameraman_full_saves_16_bit_images_and_prints_its_table(full_calls, results_in_tmp, capsys):
    code, printed, _ = run_cli(["cameraman-full", "--seed", "2", "--max-iter", "30", "--quiet"], capsys)
    assert code == 0
    assert full_calls == [dict(seed=2, max_iter=30, bm3d=True, progress=False)]
    lines = printed.rstrip().splitlines()
    npz, sidecar = results_in_tmp / "cameraman-full.npz", results_in_tmp / "cameraman-full.json"
    assert lines[-1] == f"saved {npz} and {sidecar}" and lines[-2] == "run time 1.2 s"
    assert lines[0].split() == ["method", "SNR", "(dB)", "PSNR", "(dB)", "iterations", "time", "(s)"]
    assert lines[4].split() == ["TV", "β0=-2.75", "13.00", "23.00", "5", "0.5"]
    saved = store.load("cameraman-full")
    assert saved.record["kind"] == "cameraman-full" and saved.command.startswith("python -m bilevel_lib cameraman-full")
    assert saved.arrays["beta"].dtype == np.uint16 and saved.arrays["tv_grid"].tolist() == [-3.0, -2.75]
    assert saved.settings["quant_range"] == [-0.5, 1.5] and saved.settings["seed"] == 2
    assert saved.metrics["clipped"]["noisy"] == 1 and saved.metrics["snr_db"]["bm3d"] == 14.0
    images = full_image.stored_images(saved)
    assert images["noisy"][0, 0] == -0.5  # the one clipped pixel
    np.testing.assert_allclose(images["filters"], 0.2, atol=2e-5)
    assert store.make_command("cameraman-full") == "python -m bilevel_lib cameraman-full"


def test_cameraman_full_without_bm3d_is_refused_before_any_work_unless_no_bm3d(
    full_calls, results_in_tmp, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    code, _, err = run_cli(["cameraman-full"], capsys)
    assert code == 2 and "pip install bm3d==4.0.3" in err and "--no-bm3d" in err
    assert full_calls == [] and list(results_in_tmp.iterdir()) == []
    assert run_cli(["cameraman-full", "--no-bm3d", "--quiet"], capsys)[0] == 0
    assert full_calls == [dict(seed=0, max_iter=1500, bm3d=False, progress=False)]
    assert "bm3d" not in store.load("cameraman-full").arrays


def test_a_failed_cameraman_full_run_saves_nothing(monkeypatch, results_in_tmp, capsys):
    def unconverged(**kwargs):
        raise RuntimeError("full_image_case: the lower-level solve of β only (OGM) stopped at max_iter = 2")

    monkeypatch.setattr(full_image, "full_image_case", unconverged)
    with pytest.raises(RuntimeError, match="β only"):
        cli.main(["cameraman-full", "--no-bm3d", "--max-iter", "2"])
    assert "the run failed; nothing was saved" in capsys.readouterr().err
    assert list(results_in_tmp.iterdir()) == []


def test_deblurring_saves_its_tables_and_prints_them_with_the_run_time(beyond_calls, tmp_path, capsys):
    out = tmp_path / "deblurring"
    code, printed, _ = run_cli(["deblurring", "--steps", "3", "--lower", "2", "--out", str(out), "--quiet"], capsys)
    assert code == 0 and "SNR (dB), held-out crops" in printed and "run time 0 s" in printed
    assert "learned for deblurring" in printed and printed.rstrip().endswith(f"saved {out}.npz and {out}.json")
    saved = store.load(out)
    assert saved.record["kind"] == "deblurring" and saved.settings["rows"][0] == "measurement"
    assert saved.arrays["snr_held_out_crops"].shape == (5, 2) and saved.arrays["test_x"].shape == (2, 4, 1, 4, 4)
    assert saved.arrays["converged_train"].all() and saved.metrics["unconverged"] == 0
    assert saved.metrics["tables"]["held-out noise"]["deblurring"]["TV"] == 20.0
    assert beyond_calls[-1] == (
        "deblurring",
        dict(n_steps=3, lower_iterations=2, size=32, noise_seed=0, progress=False),
    )
    code, _, err = run_cli(["deblurring", "--size", "60", "--out", str(tmp_path / "big")], capsys)
    assert code == 2 and "--size must be an integer from 16 to 50" in err and len(beyond_calls) == 1


# ----------------------------------------------------------------------------- every option is recorded in the result
#: one case per option of every run: (argv, where the record keeps it, the value it must hold)
RECORDED = [
    (["bars", "--steps", "7"], ("settings", "n_steps"), 7),
    (["bars", "--lower-iterations", "9"], ("settings", "lower_iterations"), 9),
    (["bars", "--draws", "numpy"], ("settings", "draws"), "numpy"),
    (["bars", "--seed", "5"], ("settings", "julia_seed"), 5),
    (["bars", "--draws", "numpy", "--seed", "5"], ("settings", "noise_seed"), 5),
    (["bars", "--draws", "numpy", "--filter-seed", "4"], ("settings", "filter_seed"), 4),
    (["bars", "--quiet"], ("options", "quiet"), True),
    (["bars", "--force"], ("options", "force"), True),
    (["cameraman-beta", "--steps", "3"], ("settings", "n_steps"), 3),
    (["cameraman-beta", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["cameraman-beta", "--seed", "8"], ("settings", "noise_seed"), 8),
    (["cameraman-beta", "--quiet"], ("options", "quiet"), True),
    (["cameraman-beta", "--force"], ("options", "force"), True),
    (["cameraman-filters", "--steps", "3"], ("settings", "n_steps"), 3),
    (["cameraman-filters", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["cameraman-filters", "--seed", "8"], ("settings", "noise_seed"), 8),
    (["cameraman-filters", "--quiet"], ("options", "quiet"), True),
    (["cameraman-filters", "--force"], ("options", "force"), True),
    (["blorc", "--signal", "dct"], ("settings", "signal"), "dct"),
    (["blorc", "--full"], ("settings", "epochs"), blorc.FULL_SETTINGS.epochs),
    (["blorc", "--n", "16"], ("settings", "n"), 16),
    (["blorc", "--pairs", "50"], ("settings", "n_train"), 50),
    (["blorc", "--test", "7"], ("settings", "n_test"), 7),
    (["blorc", "--sigma", "0.2"], ("settings", "sigma"), 0.2),
    (["blorc", "--batch", "5"], ("settings", "batch_size"), 5),
    (["blorc", "--epochs", "3"], ("settings", "epochs"), 3),
    (["blorc", "--lr", "0.5"], ("settings", "lr"), 0.5),
    (["blorc", "--threshold", "0.01"], ("settings", "threshold"), 0.01),
    (["blorc", "--seed", "4"], ("settings", "seed"), 4),
    (["blorc", "--lr-decay-epochs", "10", "20"], ("settings", "lr_decay_epochs"), [10, 20]),
    (["blorc", "--quiet"], ("options", "quiet"), True),
    (["blorc", "--no-progress"], ("options", "quiet"), True),
    (["blorc", "--force"], ("options", "force"), True),
    (["frontier", "--size", "12"], ("settings", "size"), 12),
    (["frontier", "--l1-size", "10"], ("settings", "l1_size"), 10),
    (["frontier", "--seed", "3"], ("settings", "seed"), 3),
    (["frontier", "--repeat", "2"], ("settings", "repeat"), 2),
    (["frontier", "--quick"], ("settings", "problems"), ["running-example"]),
    (["frontier", "--no-memory"], ("settings", "memory"), False),
    (["frontier", "--quiet"], ("options", "quiet"), True),
    (["frontier", "--force"], ("options", "force"), True),
    (["losses", "--steps", "3"], ("settings", "n_steps"), 3),
    (["losses", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["losses", "--seed", "4"], ("settings", "noise_seed"), 4),
    (["losses", "--quiet"], ("options", "quiet"), True),
    (["losses", "--force"], ("options", "force"), True),
    (["inpainting", "--steps", "3"], ("settings", "n_steps"), 3),
    (["inpainting", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["inpainting", "--seed", "4"], ("settings", "noise_seed"), 4),
    (["inpainting", "--missing", "0.5"], ("settings", "missing"), 0.5),
    (["inpainting", "--quiet"], ("options", "quiet"), True),
    (["inpainting", "--force"], ("options", "force"), True),
    (["penalties", "--steps", "3"], ("settings", "n_steps"), 3),
    (["penalties", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["penalties", "--seed", "4"], ("settings", "noise_seed"), 4),
    (["penalties", "--quiet"], ("options", "quiet"), True),
    (["penalties", "--force"], ("options", "force"), True),
    (["deblurring", "--steps", "3"], ("settings", "n_steps"), 3),
    (["deblurring", "--lower-iterations", "2"], ("settings", "lower_iterations"), 2),
    (["deblurring", "--seed", "4"], ("settings", "noise_seed"), 4),
    (["deblurring", "--size", "20"], ("settings", "size"), 20),
    (["deblurring", "--quiet"], ("options", "quiet"), True),
    (["deblurring", "--force"], ("options", "force"), True),
    (["cameraman-full", "--seed", "4"], ("settings", "seed"), 4),
    (["cameraman-full", "--max-iter", "20"], ("settings", "max_iter"), 20),
    (["cameraman-full", "--no-bm3d"], ("settings", "bm3d"), False),
    (["cameraman-full", "--quiet"], ("options", "quiet"), True),
    (["cameraman-full", "--force"], ("options", "force"), True),
    (["maid-hoag", "--budget", "30"], ("settings", "budget"), 30),
    (["maid-hoag", "--seed", "4"], ("settings", "seed"), 4),
    (["maid-hoag", "--quiet"], ("options", "quiet"), True),
    (["maid-hoag", "--force"], ("options", "force"), True),
]


@pytest.mark.parametrize("argv, where, value", RECORDED, ids=[" ".join(case[0]) for case in RECORDED])
def test_every_option_is_recorded_with_the_value_given(
    argv, where, value, training_calls, blorc_calls, frontier_calls, beyond_calls, full_calls, tmp_path, capsys
):
    out = tmp_path / "run"
    code, printed, _ = run_cli([*argv, "--out", str(out)], capsys)
    assert code == 0
    saved = store.read_record(out)
    assert saved[where[0]][where[1]] == value
    assert saved["options"]["out"] == str(out)
    default = dict(cli.build_parser().commands[argv[0]].parse_args([]).__dict__, out=None)
    changed = {key for key, given in saved["options"].items() if given != default.get(key)}
    assert changed - {"out"}, "the option did not change what the run saw"


def test_every_option_of_every_run_has_a_recorded_case():
    recorded = {(argv[0], option) for argv, _, _ in RECORDED for option in argv[1:] if option.startswith("--")}
    for name, sub in cli.build_parser().commands.items():
        if name in ("list", "reproduce"):
            continue
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help", "--out"):  # --out: the tests of paths below
                    assert (name, option) in recorded, f"{name} {option} has no test that its value is recorded"


# ----------------------------------------------------------------------------- help lists every option and its default
@pytest.mark.parametrize("command", [*cli.EXPERIMENTS])
def test_help_gives_every_option_with_its_true_default(command, capsys):
    sub = cli.build_parser().commands[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), f"{command} {action.option_strings[0]}: no default in its help"
    _, text, _ = run_cli([command, "--help"], capsys)
    text = " ".join(text.split())  # help is wrapped at the terminal width
    if command == "blorc":
        for option, (field, _, _) in cli.BLORC_FIELDS.items():
            book = cli._preset_value(getattr(blorc.BOOK_SETTINGS, field))
            assert f"default {book}" in text, option
        assert "with --full 4000" in text and "with --full 650 700" in text
    elif command == "frontier":
        defaults = sub.parse_args([])
        assert (defaults.size, defaults.l1_size, defaults.seed, defaults.repeat) == (24, 24, 0, 1)
        assert "(default 24)" in text and "(default 1)" in text
    elif command == "cameraman-full":
        defaults = sub.parse_args([])
        assert (defaults.seed, defaults.max_iter, defaults.bm3d) == (0, 1500, True)
        assert "(default 0)" in text and "(default 1500)" in text and "(default: run it;" in text
    elif command == "maid-hoag":
        defaults = sub.parse_args([])
        assert (defaults.budget, defaults.seed) == (cli.EXPERIMENTS[command]["budget"], 0)
        assert f"(default {defaults.budget})" in text
        assert (
            cli.EXPERIMENTS[command]["budget"]
            == inspect.signature(maid_hoag.maid_hoag_comparison).parameters["budget"].default
        )
    else:
        spec = cli.EXPERIMENTS[command]
        assert f"(default {spec['steps']})" in text and f"(default {spec['lower']})" in text
        defaults = sub.parse_args([])
        assert (defaults.steps, defaults.lower_iterations, defaults.seed) == (spec["steps"], spec["lower"], 0)
    assert f"default: results/{cli.EXPERIMENTS[command]['result']}" in text


# ----------------------------------------------------------------------------- paths
def saved_paths(printed: str):
    last = printed.rstrip().splitlines()[-1]
    assert last.startswith("saved ") and " and " in last
    npz, sidecar = last[len("saved ") :].split(" and ")
    return npz, sidecar


@pytest.mark.parametrize("absolute", [False, True])
def test_the_printed_path_is_the_written_one_and_loads(absolute, training_calls, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "a" / "run") if absolute else "a/run"
    code, printed, _ = run_cli(["bars", "--steps", "2", "--out", out], capsys)
    assert code == 0
    npz, sidecar = saved_paths(printed)
    assert (npz, sidecar) == (f"{out}.npz", f"{out}.json")
    assert sorted(os.listdir(tmp_path / "a")) == ["run.json", "run.npz"]  # exactly these, no temporary file
    for printed_path in (npz, sidecar):
        assert store.load(printed_path).settings["n_steps"] == 2
        assert store.load_result(printed_path).settings["n_steps"] == 2


def test_out_as_an_existing_folder_or_a_trailing_slash_takes_the_default_name(training_calls, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    for out, expected in [
        (str(tmp_path / "folder"), tmp_path / "folder" / "bars"),
        (str(tmp_path / "new") + "/", tmp_path / "new" / "bars"),
    ]:
        code, printed, _ = run_cli(["bars", "--out", out], capsys)
        assert code == 0 and saved_paths(printed) == (f"{expected}.npz", f"{expected}.json")
        assert store.load(expected).record["name"] == "bars"
    assert not (tmp_path / "folder.npz").exists() and not (tmp_path / "new.npz").exists()
    code, _, err = run_cli(["bars", "--out", str(tmp_path / "folder")], capsys)
    assert code == 2 and f"{tmp_path / 'folder' / 'bars.npz'} exists" in err and len(training_calls) == 2


def test_blorc_into_a_folder_uses_its_result_name(blorc_calls, tmp_path, capsys):
    code, printed, _ = run_cli(["blorc", "--signal", "dct", "--full", "--out", str(tmp_path)], capsys)
    assert code == 0 and saved_paths(printed)[0] == str(tmp_path / "blorc_dct_full.npz")


def test_stems_with_dots_never_collide(training_calls, tmp_path, capsys):
    for version in ("run.v1", "run.v2", "run.v1.npz"):
        code, printed, _ = run_cli(["bars", "--steps", str(len(version)), "--out", str(tmp_path / version)], capsys)
        assert code == (2 if version == "run.v1.npz" else 0)  # run.v1.npz is the stem run.v1: taken
    assert sorted(os.listdir(tmp_path)) == ["run.v1.json", "run.v1.npz", "run.v2.json", "run.v2.npz"]
    assert store.load(tmp_path / "run.v1.npz").settings["n_steps"] == 6
    assert store.load(tmp_path / "run.v2.npz").settings["n_steps"] == 6
    assert store.read_record(tmp_path / "run.v1")["command"].endswith("run.v1")


def test_out_foo_and_foo_npz_are_the_same_result(training_calls, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(["bars", "--out", "foo"], capsys)[0] == 0
    code, _, err = run_cli(["bars", "--out", "foo.npz"], capsys)
    assert code == 2 and "foo.npz exists" in err
    code, printed, _ = run_cli(["bars", "--out", "foo.json", "--force"], capsys)
    assert code == 0 and saved_paths(printed) == ("foo.npz", "foo.json")
    assert sorted(os.listdir(tmp_path)) == ["foo.json", "foo.npz"]


@pytest.mark.parametrize("case", ["under a file", "a folder in the way", "proc", "empty"])
def test_an_unwritable_out_is_refused_before_the_run_naming_the_path(
    case, training_calls, blorc_calls, tmp_path, capsys
):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    (tmp_path / "dir.npz").mkdir()
    out, shown = {
        "under a file": (str(tmp_path / "file" / "run"), str(tmp_path / "file" / "run.npz")),
        "a folder in the way": (str(tmp_path / "dir"), str(tmp_path / "dir.npz")),
        "proc": ("/proc/bilevel-no-such-folder/run", "/proc/bilevel-no-such-folder/run.npz"),
        "empty": ("", "--out needs a path stem"),
    }[case]
    if case == "proc" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    for command in (["bars"], ["cameraman-filters"], ["blorc"]):
        for force in ([], ["--force"]):
            code, out_text, err = run_cli([*command, "--out", out, *force], capsys)
            assert code == 2 and shown in err and "cannot write" in err or case == "empty" and shown in err
            assert out_text == ""
    assert training_calls == [] and blorc_calls == []
    assert sorted(os.listdir(tmp_path)) == ["dir.npz", "file"]


def test_an_unwritable_results_folder_suggests_out(training_calls, tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    monkeypatch.setattr(store, "results_dir", lambda: tmp_path / "file" / "results")
    code, _, err = run_cli(["bars"], capsys)
    assert code == 2 and "cannot write" in err and "give --out for another place" in err and training_calls == []


# ----------------------------------------------------------------------------- the frontier
def test_a_frontier_run_is_saved_and_loads_as_a_sweep(frontier_calls, results_in_tmp, capsys):
    from bilevel_lib.experiments import frontier

    code, printed, _ = run_cli(["frontier", "--quick", "--quiet", "--size", "12"], capsys)
    assert code == 0 and saved_paths(printed)[0] == str(results_in_tmp / "frontier.npz")
    ((problems, estimators, kwargs),) = frontier_calls
    assert problems == ("running-example",) and estimators == tuple(frontier.QUICK_KNOBS)
    assert kwargs["knobs"] == frontier.QUICK_KNOBS and kwargs["size"] == 12 and kwargs["progress"] is False
    stored = store.load("frontier")
    assert (
        stored.record["kind"] == "frontier"
        and stored.command == "python -m bilevel_lib frontier --quick --quiet --size 12"
    )
    assert frontier.FrontierSweep.from_stored(stored).column("error")[0] == 1e-3
    assert store.make_command("frontier") == "python -m bilevel_lib frontier"


@pytest.mark.parametrize("option", ["--size", "--l1-size"])
def test_a_frontier_size_outside_the_dense_range_is_refused_before_any_work(option, frontier_calls, tmp_path, capsys):
    code, _, err = run_cli(["frontier", option, "46", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and f"{option} must be an integer in [4, 45]" in err and "got 46" in err
    assert frontier_calls == [] and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a failing run saves nothing
@pytest.mark.parametrize("failure", [RuntimeError("diverged at step 3"), KeyboardInterrupt()])
@pytest.mark.parametrize("command", ["bars", "cameraman-beta", "blorc"])
def test_a_run_that_fails_or_is_interrupted_saves_nothing(failure, command, monkeypatch, results_in_tmp, capsys):
    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(recipes, "vertical_bars_case", broken)
    monkeypatch.setattr(recipes, "cameraman_case", broken)
    monkeypatch.setattr(blorc, "run", broken)
    for argv in ([command], [command, "--out", str(results_in_tmp / "elsewhere")]):
        if isinstance(failure, KeyboardInterrupt):
            assert cli.main(argv) == 130
            assert "interrupted; nothing was saved" in capsys.readouterr().err
        else:
            with pytest.raises(RuntimeError, match="diverged"):
                cli.main(argv)
            assert "the run failed; nothing was saved" in capsys.readouterr().err
    assert list(results_in_tmp.iterdir()) == []
    with pytest.raises(store.MissingResultError):
        store.load(results_in_tmp / "elsewhere")


def test_an_interrupt_while_saving_leaves_nothing(training_calls, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "replace", interrupted)
    assert cli.main(["bars", "--out", str(tmp_path / "run")]) == 130
    assert list(tmp_path.iterdir()) == [] and len(training_calls) == 1


def test_the_command_line_refuses_a_bad_option_in_a_subprocess(tmp_path):
    """The installed entry point: a zero count exits 2 naming the option, before any work, writing nothing."""
    completed = subprocess.run(
        [sys.executable, "-m", "bilevel_lib", "reproduce", "bars", "--steps", "0", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2 and "argument --steps: must be a positive integer; got 0" in completed.stderr
    assert list(tmp_path.iterdir()) == []
