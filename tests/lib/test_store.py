"""The results store: one format (.npz + .json sidecar), atomic writes, no silent overwrite, clear errors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bilevel_lib.experiments import store
from bilevel_lib.problem.params import Hyperparameters
from bilevel_lib.training.loops import TrainingHistory, TrainingResult


def record(**changes):
    fields = dict(
        kind="test",
        **store.provenance("python -m bilevel_lib test --flag", 12.34),
        settings=dict(n=3, parts=("beta",)),
        metrics=dict(psnr_db=21.5),
    )
    fields.update(changes)
    return fields


def arrays():
    return dict(W=np.arange(6.0).reshape(2, 3), counts=np.array([1, 2, 3]), scalar=np.float64(-4.6))


def tiny_training_result():
    params = Hyperparameters(-4.6, np.array([0.1, -0.2]), np.arange(16.0).reshape(2, 4, 2))
    history = TrainingHistory()
    for step in range(3):
        history.append(
            loss=1.0 / (step + 1),
            gradient_norm=0.1 * step,
            lower_gradient_norm=1e-3,
            lower_iterations=5,
            cg_iterations=2,
            elapsed=0.5 * step,
        )
    return TrainingResult(
        params,
        history,
        np.ones((1, 4, 4)),
        "ran 3 upper-level steps",
        dict(parts=["beta", "filters"], n_steps=3, lower_iterations=5),
    )


def test_round_trip_of_arrays_and_record(tmp_path):
    npz, sidecar = store.write(tmp_path / "run", arrays(), record())
    assert (npz, sidecar) == (tmp_path / "run.npz", tmp_path / "run.json")
    loaded = store.load(tmp_path / "run")
    for key, value in arrays().items():
        np.testing.assert_array_equal(loaded.arrays[key], value)
        assert loaded.arrays[key].dtype == np.asarray(value).dtype
    assert loaded.command == "python -m bilevel_lib test --flag" and loaded.seconds == 12.3
    assert loaded.settings == dict(n=3, parts=["beta"]) and loaded.metrics == dict(psnr_db=21.5)
    assert loaded.record["format"] == store.FORMAT and loaded.record["name"] == "run"
    assert set(loaded.record["versions"]) == {"python", "numpy", "scipy", "bilevel_lib"}
    assert loaded.record["versions"]["numpy"] == np.__version__
    assert loaded.record["machine"]["machine"] and loaded.record["date"].endswith("+00:00")
    assert store.read_record(tmp_path / "run.json") == loaded.record
    with np.load(npz, allow_pickle=False) as raw:  # plain numbers, no pickles
        assert sorted(raw.files) == sorted(arrays())
    umask = os.umask(0)
    os.umask(umask)
    assert all(path.stat().st_mode & 0o777 == 0o666 & ~umask for path in (npz, sidecar))  # not mkstemp's 0600


def test_stems_names_and_paths(tmp_path):
    # a suffix is dropped; a bare name means the repository's results/ folder, found from the package
    assert store.result_paths(tmp_path / "a.npz") == (tmp_path / "a.npz", tmp_path / "a.json")
    assert store.result_paths(str(tmp_path / "a.json")) == (tmp_path / "a.npz", tmp_path / "a.json")
    assert store.result_paths(tmp_path / "run.v2") == (tmp_path / "run.v2.npz", tmp_path / "run.v2.json")
    assert store.result_paths("bars")[0] == store.results_dir() / "bars.npz"
    assert store.results_dir() == Path(store.__file__).resolve().parents[2] / "results"
    assert store.make_command("bars") == "python -m bilevel_lib bars"
    assert store.make_command("blorc_dct_full") == "python -m bilevel_lib blorc --signal dct --full"
    assert store.make_command("blorc_piecewise") == "python -m bilevel_lib blorc --signal piecewise"


def test_results_dir_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    before = store.results_dir()
    monkeypatch.chdir(tmp_path)
    assert store.results_dir() == before and store.result_paths("bars")[0] == before / "bars.npz"


def test_refuses_to_overwrite_without_force(tmp_path):
    store.write(tmp_path / "run", arrays(), record())
    with pytest.raises(FileExistsError, match=str(tmp_path / "run.npz") + ".*--force"):
        store.write(tmp_path / "run", dict(W=np.zeros(2)), record())
    with pytest.raises(FileExistsError, match="run.npz"):
        store.check_free(tmp_path / "run")
    np.testing.assert_array_equal(store.load(tmp_path / "run").arrays["W"], arrays()["W"])  # untouched
    store.write(tmp_path / "run", dict(W=np.zeros(2)), record(), force=True)
    np.testing.assert_array_equal(store.load(tmp_path / "run").arrays["W"], np.zeros(2))
    (tmp_path / "run.npz").unlink()  # a lone sidecar also blocks the name
    with pytest.raises(FileExistsError, match="run.json"):
        store.check_free(tmp_path / "run")


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    def broken(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write(tmp_path / "run", arrays(), record())
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    # a failure while writing the sidecar leaves no sidecar and no temporary file
    store.write(tmp_path / "old", arrays(), record())
    monkeypatch.setattr(store.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("no rename")))
    with pytest.raises(OSError, match="no rename"):
        store.write(tmp_path / "new", arrays(), record())
    assert sorted(os.listdir(tmp_path)) == ["old.json", "old.npz"]


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="numeric"):
        store.write(tmp_path / "run", dict(text=np.array(["a"])), record())
    incomplete = record()
    del incomplete["seconds"]
    with pytest.raises(ValueError, match="seconds"):
        store.write(tmp_path / "run", arrays(), incomplete)
    assert os.listdir(tmp_path) == []


def test_missing_result_names_the_file_and_the_command(tmp_path):
    with pytest.raises(store.ResultError, match=r"no saved result at .*bars\.json.*python -m bilevel_lib bars"):
        store.load(tmp_path / "bars")
    store.write(tmp_path / "cameraman-beta", arrays(), record())
    (tmp_path / "cameraman-beta.npz").unlink()
    with pytest.raises(store.ResultError, match=r"cameraman-beta\.npz.*python -m bilevel_lib cameraman-beta"):
        store.load(tmp_path / "cameraman-beta")
    assert issubclass(store.ResultError, FileNotFoundError)


@pytest.mark.parametrize("damage", ["not json", "old format", "no seconds", "truncated npz", "not a zip"])
def test_malformed_result_names_the_file(tmp_path, damage):
    npz, sidecar = store.write(tmp_path / "bars", arrays(), record())
    if damage == "not json":
        sidecar.write_text("{ half", encoding="utf-8")
    elif damage == "old format":
        sidecar.write_text(json.dumps({"command": "x"}), encoding="utf-8")
    elif damage == "no seconds":
        text = json.loads(sidecar.read_text())
        del text["seconds"]
        sidecar.write_text(json.dumps(text), encoding="utf-8")
    elif damage == "truncated npz":
        npz.write_bytes(npz.read_bytes()[:40])
    else:
        npz.write_text("hello", encoding="utf-8")
    culprit = "bars.json" if damage in ("not json", "old format", "no seconds") else "bars.npz"
    with pytest.raises(store.ResultError, match=rf"{culprit}.*python -m bilevel_lib bars --force"):
        store.load(tmp_path / "bars")


def test_training_result_round_trip(tmp_path):
    result = tiny_training_result()
    npz, sidecar = store.save_result(
        result,
        tmp_path / "run.npz",
        command="python -m bilevel_lib bars --steps 3",
        seconds=1.25,
        metrics=dict(snr_learned_db=20.0, row_sum_range=(-1.0, 2.0)),
    )
    back = store.load_result(npz)
    np.testing.assert_array_equal(back.params.flatten(), result.params.flatten())
    np.testing.assert_array_equal(back.x, result.x)
    assert back.history == result.history and back.message == result.message
    assert back.settings == result.settings
    saved = store.read_record(sidecar)
    assert saved["kind"] == "training" and saved["command"] == "python -m bilevel_lib bars --steps 3"
    assert saved["seconds"] == 1.2 and saved["metrics"] == dict(snr_learned_db=20.0, row_sum_range=[-1.0, 2.0])
    with pytest.raises(FileExistsError):
        store.save_result(result, tmp_path / "run", command="c", seconds=1)


def test_load_result_refuses_other_kinds_and_incomplete_arrays(tmp_path):
    store.write(tmp_path / "blorc", arrays(), record(kind="blorc"))
    with pytest.raises(store.ResultError, match="'blorc' result, not a training run"):
        store.load_result(tmp_path / "blorc")
    store.write(tmp_path / "half", dict(beta0=np.float64(1.0)), record(kind="training"))
    with pytest.raises(store.ResultError, match="half.npz is not a complete training result"):
        store.load_result(tmp_path / "half")


@pytest.mark.parametrize(
    "name", ["bars", "cameraman-beta", "cameraman-filters", "blorc_piecewise_full", "blorc_dct_full"]
)
def test_the_saved_results_load(name):
    loaded = store.load(name)
    assert loaded.record["format"] == store.FORMAT and loaded.seconds > 0 and loaded.command.startswith("python -m")
    if loaded.record["kind"] == "training":
        result = store.load_result(name)
        assert len(result.history.loss) == result.settings["n_steps"]
        assert loaded.metrics["snr_learned_db"] > loaded.metrics["snr_noisy_db"]
    else:
        assert loaded.arrays["test_psnr"].shape == (loaded.settings["epochs"] + 1,)


def test_the_training_layer_knows_no_files():
    from bilevel_lib import training

    assert not hasattr(TrainingResult, "save") and not hasattr(training, "load_result")
    for path in Path(training.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in ("np.load(", "np.savez", "open(", ".write_text(", ".read_text("):
            assert call not in text, f"{path.name} calls {call}"


def test_a_failure_between_the_two_files_leaves_neither(tmp_path, monkeypatch):
    calls = []
    real_replace = os.replace

    def second_fails(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("no rename")
        real_replace(source, target)

    monkeypatch.setattr(store.os, "replace", second_fails)
    with pytest.raises(OSError, match="no rename"):
        store.write(tmp_path / "run", arrays(), record())
    assert calls == [tmp_path / "run.npz", tmp_path / "run.json"] and os.listdir(tmp_path) == []
