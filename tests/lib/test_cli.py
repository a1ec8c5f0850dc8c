"""The one command line ``python -m bilevel_lib``: every experiment listed, every option reaching the run,
inapplicable options refused by name, results saved through the store (``--out``, ``--force``)."""

import json
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from bilevel_lib.experiments import blorc, cli, recipes, store
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
    assert record["settings"] == dict(n_steps=4, lower_iterations=10)
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
        (["bars", "--steps", "many"], "--steps: invalid"),
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
        (["--sigma", "-1"], "--sigma: sigma must be"),
        (["--lr", "0"], "--lr: lr must be"),
        (["--threshold", "-0.1"], "--threshold: threshold must be"),
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
    assert record["metrics"]["snr_learned_db"] == summary["snr_learned_db"] and record["seconds"] > 0


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
