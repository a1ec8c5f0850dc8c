"""The results store: one format (.npz + .json sidecar), atomic writes, no silent overwrite, plain JSON
settings, and one clear error for every missing or damaged file (truncation, byte flips: identical data or
:class:`~bilevel_lib.experiments.store.ResultError`, never a partial load)."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

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
    # one error type for every problem: ResultError (a ValueError); a missing file is also a FileNotFoundError
    assert issubclass(store.ResultError, ValueError) and not issubclass(store.ResultError, OSError)
    assert issubclass(store.MissingResultError, store.ResultError)
    assert issubclass(store.MissingResultError, FileNotFoundError)
    with pytest.raises(store.MissingResultError):
        store.load_result(tmp_path / "nothing")


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
    store.write(tmp_path / "blorc", dict(W=np.eye(2), epoch_loss=[1.0], test_psnr=[2.0, 3.0]), record(kind="blorc"))
    with pytest.raises(store.ResultError, match="'blorc' result, not a training run"):
        store.load_result(tmp_path / "blorc")
    # a training result without its arrays is refused when written, and found when read
    with pytest.raises(ValueError, match="'training' result needs the arrays beta, filters, x"):
        store.write(tmp_path / "half", dict(beta0=np.float64(1.0)), record(kind="training"))
    assert not (tmp_path / "half.npz").exists()
    store.write(tmp_path / "half", dict(beta0=np.float64(1.0)), record(kind="other"))
    forge(tmp_path / "half", kind="training")
    with pytest.raises(store.ResultError, match=r"half\.npz lacks the arrays beta, filters, x of a 'training'"):
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


# ----------------------------------------------------------------------------- damaged files: one error, never garbage
def forge(stem, **changes):
    """Change fields of a written record and re-sign it (checksums recomputed): what a careful forger, or a
    writer of another program, would leave.  Returns the new record."""
    import hashlib

    sidecar = Path(f"{stem}.json")
    saved = json.loads(sidecar.read_text(encoding="utf-8"))
    saved.update(changes)
    saved["checksum"]["npz_sha256"] = hashlib.sha256(Path(f"{stem}.npz").read_bytes()).hexdigest()
    saved["checksum"]["record_sha256"] = hashlib.sha256(store._canonical(saved)).hexdigest()
    sidecar.write_text(json.dumps(saved), encoding="utf-8")
    return saved


@pytest.fixture
def saved_run(tmp_path):
    """A small training result on disk, its bytes, and what it loads as."""
    npz, sidecar = store.save_result(
        tiny_training_result(), tmp_path / "run", command="python -m bilevel_lib bars", seconds=2.5
    )
    good = store.load(npz)
    return SimpleNamespace(
        npz=npz, sidecar=sidecar, npz_bytes=npz.read_bytes(), json_bytes=sidecar.read_bytes(), good=good
    )


def outcome(saved_run) -> str:
    """'same' if the result loads with identical arrays and record, 'error' if it raises ResultError (as a
    training run too); any other exception, or different data, fails the test."""
    try:
        loaded = store.load(saved_run.npz)
    except store.ResultError as error:
        assert str(saved_run.npz.parent) in str(error)
        text = str(error)
        for raw in ("BadZipFile", "EOFError", "KeyError", "pickle", "Traceback", "zlib"):
            assert raw not in text, text
        return "error"
    assert loaded.record == saved_run.good.record
    assert loaded.arrays.keys() == saved_run.good.arrays.keys()
    for key, value in saved_run.good.arrays.items():
        assert loaded.arrays[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded.arrays[key], value)
    store.load_result(saved_run.npz)
    return "same"


@pytest.mark.parametrize("which", ["npz", "json"])
def test_truncation_at_every_length_is_the_one_error(saved_run, which):
    path = saved_run.npz if which == "npz" else saved_run.sidecar
    original = saved_run.npz_bytes if which == "npz" else saved_run.json_bytes
    lengths = sorted(
        {*range(0, len(original), max(1, len(original) // 400)), *range(len(original) - 40, len(original))}
    )
    assert len(lengths) > 300
    seen = []
    for length in lengths:
        path.write_bytes(original[:length])
        seen.append(outcome(saved_run))
    # the JSON may lose its final newline and still be the same record; nothing else survives a cut
    allowed_same = [len(original) - 1] if which == "json" else []
    assert [length for length, o in zip(lengths, seen) if o == "same"] == [
        length for length in allowed_same if length in lengths
    ]
    path.write_bytes(original)
    assert outcome(saved_run) == "same"


@pytest.mark.parametrize("which", ["npz", "json"])
@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80, 0xFF])
def test_a_flipped_byte_anywhere_is_identical_data_or_the_one_error(saved_run, which, mask):
    path = saved_run.npz if which == "npz" else saved_run.sidecar
    original = saved_run.npz_bytes if which == "npz" else saved_run.json_bytes
    stride = 3 if mask == 0x01 else 13  # every 3rd offset, the other masks at every 13th
    seen = {"same": 0, "error": 0}
    for offset in range(0, len(original), stride):
        damaged = bytearray(original)
        damaged[offset] ^= mask
        path.write_bytes(bytes(damaged))
        seen[outcome(saved_run)] += 1
    assert seen["error"] > 0.9 * sum(seen.values())  # a flip is almost always caught, never loaded as other data
    path.write_bytes(original)


def test_swapped_arrays_from_another_run_are_caught(saved_run, tmp_path):
    other = tiny_training_result()
    other.x[...] = 2.0
    store.save_result(other, tmp_path / "other", command="c", seconds=1)
    saved_run.npz.write_bytes((tmp_path / "other.npz").read_bytes())
    with pytest.raises(store.ResultError, match=r"run\.npz does not match its record"):
        store.load(saved_run.npz)


def test_forged_records_are_still_checked(saved_run, tmp_path):
    """Files whose checksums were recomputed (another program's writer) still load whole or not at all."""
    forge(saved_run.npz.with_suffix(""), seconds="fast")
    with pytest.raises(store.ResultError, match=r"run\.json has fields of the wrong type \(seconds\)"):
        store.load(saved_run.npz)
    saved_run.sidecar.write_bytes(saved_run.json_bytes)
    # an archive with a pickled object array: refused as unreadable, never unpickled
    np.savez(saved_run.npz, x=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    forge(saved_run.npz.with_suffix(""))
    with pytest.raises(store.ResultError, match=r"run\.npz is not a readable \.npz archive of numbers"):
        store.load(saved_run.npz)
    # an archive of numbers that are not the ones the record lists
    np.savez(saved_run.npz, **{**saved_run.good.arrays, "x": np.zeros(3)})
    forge(saved_run.npz.with_suffix(""))
    with pytest.raises(store.ResultError, match=r"run\.npz does not hold the arrays its record lists"):
        store.load(saved_run.npz)


def test_other_format_versions_and_foreign_json_are_refused(saved_run):
    for text, message in [
        (json.dumps(dict(json.loads(saved_run.json_bytes), format="bilevel_lib-result/1")), "another version"),
        ("[1, 2]", "is not a result record"),
        ('{"format": "' + store.FORMAT + '"}', "lacks kind, name, command"),
        ("\udcff".encode("utf-8", "surrogatepass").decode("latin-1"), "not JSON"),
        ("[" * 100_000, "not JSON"),
    ]:
        saved_run.sidecar.write_text(text, encoding="latin-1" if not text.isascii() else "utf-8")
        with pytest.raises(store.ResultError, match=rf"run\.json .*{message}.*python -m bilevel_lib list"):
            store.load(saved_run.npz)
    saved_run.sidecar.unlink()
    saved_run.sidecar.mkdir()  # not a file at all
    with pytest.raises(store.ResultError, match=r"run\.json cannot be read"):
        store.read_record(saved_run.npz)


def test_the_committed_results_carry_checksums():
    for sidecar in sorted(store.results_dir().glob("*.json")):
        saved = json.loads(sidecar.read_text(encoding="utf-8"))
        assert saved["format"] == store.FORMAT and len(saved["checksum"]["npz_sha256"]) == 64
        assert set(saved["arrays"]) == set(store.load(sidecar).arrays)


# ----------------------------------------------------------------------------- settings as plain JSON
def test_settings_are_stored_as_plain_json_types(tmp_path):
    settings = dict(
        parts="beta",
        many=("beta", "filters"),
        count=np.int64(7),
        rate=np.float32(0.5),
        flag=np.bool_(True),
        grid=np.arange(3),
        nested={"a": [np.int32(1), (2.5, None)], 3: "three"},
        path=tmp_path / "x",
    )
    store.write(tmp_path / "run", arrays(), record(settings=settings))
    text = (tmp_path / "run.json").read_text(encoding="utf-8")
    assert '"parts": "beta"' in text
    back = store.read_record(tmp_path / "run")["settings"]
    assert back == dict(
        parts="beta",
        many=["beta", "filters"],
        count=7,
        rate=0.5,
        flag=True,
        grid=[0, 1, 2],
        nested={"a": [1, [2.5, None]], "3": "three"},
        path=str(tmp_path / "x"),
    )
    assert type(back["count"]) is int and type(back["flag"]) is bool


@pytest.mark.parametrize(
    "settings, where",
    [
        (dict(penalty=object()), r"record\['settings'\]\['penalty'\] is a object"),
        (dict(deep=[1, {"f": {1, 2}}]), r"\['deep'\]\[1\]\['f'\] is a set"),
        (dict(grid=np.array(["a"])), r"\['grid'\] is an array of dtype <U1"),
        ({(1, 2): 3}, r"has a key \(1, 2\) of type tuple"),
    ],
)
def test_settings_that_are_not_json_are_refused_by_key_before_writing(settings, where, tmp_path):
    with pytest.raises(TypeError, match=where):
        store.write(tmp_path / "run", arrays(), record(settings=settings))
    assert os.listdir(tmp_path) == []


def test_parts_beta_is_recorded_as_one_part_by_training(tmp_path):
    """parts='beta' (a string) is one part, never its letters: fixed where the training loops record it."""
    from bilevel_lib import training
    from bilevel_lib.problem import data, filters
    from bilevel_lib.problem.cost import LowerLevelCost
    from bilevel_lib.problem.losses import SquaredErrorLoss
    from bilevel_lib.problem.params import check_parts
    from bilevel_lib.problem.penalties import Quadratic

    truth = data.piecewise_constant_1d(16, 2, rng=0, n_jumps=2)
    cost = LowerLevelCost(data.add_noise(truth, 0.1, rng=1), Quadratic())
    params = Hyperparameters(0.0, [0.0], filters.finite_differences(1))
    loss = SquaredErrorLoss(truth)
    result = training.train_double_loop(cost, params, loss, parts="beta", n_steps=2, lower_iterations=3)
    assert result.settings["parts"] == ["beta"]
    assert training.train_ttsa(cost, params, loss, parts="beta", n_steps=2).settings["parts"] == ["beta"]
    store.save_result(result, tmp_path / "run", command="c", seconds=1)
    assert store.load_result(tmp_path / "run").settings["parts"] == ["beta"]
    assert check_parts(["filters", "beta"]) == ("beta", "filters")
    for bad in (b"beta", ["beta", 1], None, 3, {"beta": 1}):
        with pytest.raises(TypeError, match="parts must"):
            check_parts(bad)
    with pytest.raises(ValueError, match="parts must be a non-empty subset"):
        check_parts(["b", "e", "t", "a"])


def test_settings_the_caller_adds_must_agree_with_the_run(tmp_path):
    result = tiny_training_result()
    store.save_result(result, tmp_path / "a", command="c", seconds=1, settings=dict(seed=3, n_steps=3))
    assert store.read_record(tmp_path / "a")["settings"]["seed"] == 3
    with pytest.raises(ValueError, match=r"settings\['n_steps'\]: the run says 3, the caller 4"):
        store.save_result(result, tmp_path / "b", command="c", seconds=1, settings=dict(n_steps=4))
    assert not (tmp_path / "b.json").exists()


# ----------------------------------------------------------------------------- where a result can be written
def test_check_free_finds_unwritable_places_before_anything_is_written(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match=rf"cannot write {tmp_path / 'file' / 'run.npz'}: .* not a folder"):
        store.check_free(tmp_path / "file" / "run")
    (tmp_path / "taken.npz").mkdir()
    for force in (False, True):  # a folder in the way is never replaced
        with pytest.raises(IsADirectoryError, match=r"taken\.npz: it is a folder"):
            store.check_free(tmp_path / "taken", force=force)
    # a folder still to be made is fine, and the check makes nothing
    assert store.check_free(tmp_path / "new" / "sub" / "run")[0] == tmp_path / "new" / "sub" / "run.npz"
    assert sorted(os.listdir(tmp_path)) == ["file", "taken.npz"]
    if Path("/proc/self").is_dir():  # a place that takes no file, even for root
        with pytest.raises(PermissionError, match=r"cannot write /proc/bilevel-nothing/run\.npz: /proc takes no"):
            store.check_free("/proc/bilevel-nothing/run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_found_before_the_run(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="locked takes no new file"):
            store.check_free(folder / "run")
    finally:
        folder.chmod(0o755)


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = []

    def interrupted(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(store.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write(tmp_path / "run", arrays(), record())
    assert os.listdir(tmp_path) == []  # no result, no temporary file
    with pytest.raises(store.MissingResultError):
        store.load(tmp_path / "run")
