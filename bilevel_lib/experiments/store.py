"""The results store: one file format and one place for the results of every full-size experiment.

A result named ``<name>`` is two files side by side:

``<name>.npz``
    the arrays (numbers only, loadable with ``allow_pickle=False``);
``<name>.json``
    the sidecar record: ``format``, ``kind`` (``"training"`` or ``"blorc"``), ``name``, the exact
    ``command`` that made it, its run time ``seconds``, the ``versions`` of python, numpy, scipy and
    bilevel_lib, the ``machine``, the ``date`` (UTC, ISO 8601), the run's ``settings`` and its
    figures of merit ``metrics`` (plus ``message`` for training runs, and ``options``, the parsed
    command-line options, for runs of the command line), the ``arrays`` it holds (name → dtype and
    shape) and a ``checksum``: the SHA-256 of the .npz file and of the record itself.

Results live in the repository's ``results/`` folder (:func:`results_dir`, found from the package's
location, not the working directory) unless a path stem is given (``--out`` on the command line;
``run``, ``run.npz`` and ``run.json`` all name the pair ``run.npz`` + ``run.json``).  Writes are
atomic (a temporary file in the same folder, then ``os.replace``, the record last) and never replace
an existing result unless ``force=True``; :func:`check_free` checks a target before a long run (not
taken, writable).  Reading checks the format, the required fields, both checksums and the array
manifest, and any problem (missing, truncated, altered, foreign) raises the one error type
:class:`ResultError` (a ``ValueError``; :class:`MissingResultError`, a missing result, is also a
``FileNotFoundError``) naming the file and the command that makes it: a result loads whole or not at all.

    from bilevel_lib.experiments import store
    bars = store.load_result("bars")          # a TrainingResult
    record = store.read_record("bars")        # its sidecar: command, seconds, versions, metrics
    blorc_run = store.load("blorc_piecewise_full")   # any result: .arrays and .record
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..util.validation import check_real

__all__ = [
    "FORMAT",
    "ResultError",
    "MissingResultError",
    "StoredResult",
    "results_dir",
    "result_paths",
    "make_command",
    "provenance",
    "check_free",
    "write",
    "load",
    "read_record",
    "save_result",
    "load_result",
    "save_blorc_run",
]

#: the format tag of every sidecar written by this module; version 2 added the array manifest and the checksums
FORMAT = "bilevel_lib-result/2"
_RECORD_KEYS = ("format", "kind", "name", "command", "seconds", "versions", "machine", "date", "settings", "metrics")
#: the type of each record field (the two written by :func:`write` itself, ``arrays`` and ``checksum``, included)
_RECORD_TYPES = dict(
    format=str,
    kind=str,
    name=str,
    command=str,
    seconds=(int, float),
    versions=dict,
    machine=(dict, type(None)),
    date=str,
    settings=dict,
    metrics=dict,
    arrays=dict,
    checksum=dict,
)
#: the arrays a result of each kind must hold (training runs also hold history_* arrays)
_REQUIRED_ARRAYS = {
    "training": ("beta0", "beta", "filters", "x"),
    "blorc": ("W", "epoch_loss", "test_psnr"),
    "frontier": ("table",),
    "cameraman-full": ("noisy", "beta", "filters", "tv"),
}
_TRAINING_RUNS = ("bars", "cameraman-beta", "cameraman-filters")


class ResultError(ValueError):
    """A result that is missing or cannot be read (truncated, altered, of another format, incomplete):
    the one error of :func:`load`, :func:`read_record` and :func:`load_result`.  The message names the
    file and the command that makes it."""


class MissingResultError(ResultError, FileNotFoundError):
    """A result whose file does not exist (a :class:`ResultError` and a ``FileNotFoundError``)."""


@dataclass
class StoredResult:
    """A loaded result: its arrays (a dict of numpy arrays) and its sidecar record (a dict)."""

    arrays: dict
    record: dict
    path: Path = field(default=None)

    @property
    def command(self) -> str:
        """The command line that produced the result (e.g. ``python -m bilevel_lib bars``)."""
        return self.record["command"]

    @property
    def seconds(self) -> float:
        """The wall-clock run time of the experiment, in seconds."""
        return self.record["seconds"]

    @property
    def settings(self) -> dict:
        """The settings of the run (sizes, step counts, tolerances, seeds), as a dict."""
        return self.record["settings"]

    @property
    def metrics(self) -> dict:
        """The figures of merit of the run (e.g. final loss, PSNR), as a dict."""
        return self.record["metrics"]


def results_dir() -> Path:
    """The repository's ``results/`` folder (from the package location, whatever the working directory)."""
    return Path(__file__).resolve().parents[2] / "results"


def _stem(source) -> Path:
    """A result's path stem: a bare name (``"bars"``) is looked up in :func:`results_dir`; anything
    with a folder or an ``.npz``/``.json`` suffix is a path (relative to the working directory)."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a result is given by a name or a path; got {type(source).__name__}")
    if isinstance(source, str) and not source.strip():
        raise ValueError(f"a result needs a name or a path; got {source!r}")
    path = Path(source).expanduser()
    bare = not path.is_absolute() and len(path.parts) == 1 and path.suffix not in (".npz", ".json")
    if bare and isinstance(source, str):
        return results_dir() / path
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path


def result_paths(source) -> tuple[Path, Path]:
    """The two files (``.npz``, ``.json``) of a result given by name or path stem (a bare name is looked up in :func:`results_dir`, anything with a folder or an ``.npz``/``.json`` suffix is a path)."""
    stem = _stem(source)
    return Path(f"{stem}.npz"), Path(f"{stem}.json")


def make_command(name: str) -> str:
    """The command that makes the result ``name`` in :func:`results_dir` (for error messages)."""
    name = Path(str(name)).name
    for suffix in (".npz", ".json"):
        name = name.removesuffix(suffix)
    if name in _TRAINING_RUNS or name in ("frontier", "cameraman-full"):
        return f"python -m bilevel_lib {name}"
    match = re.fullmatch(r"blorc_(.+?)(_full)?", name)
    if match:
        return f"python -m bilevel_lib blorc --signal {match[1]}" + (" --full" if match[2] else "")
    return "python -m bilevel_lib list  (shows the experiments and their commands)"


def provenance(command: str, seconds: float) -> dict:
    """The sidecar fields that say how and where a result was made."""
    import scipy

    from .. import __version__

    return dict(
        command=command,
        seconds=round(float(seconds), 1),
        versions=dict(
            python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__, bilevel_lib=__version__
        ),
        machine=dict(
            machine=platform.machine(),
            system=platform.system(),
            release=platform.release(),
            processor=platform.processor() or None,
            cpus=os.cpu_count(),
        ),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def _check_writable(path: Path) -> None:
    """Raise an ``OSError`` naming ``path`` unless a file can be created there (its folder exists and
    takes a new file, or can be made inside the nearest existing folder): a probe file, removed at once."""
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the folder is made by write(), later
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
    except OSError as error:
        raise PermissionError(f"cannot write {path}: {folder} takes no new file ({error.strerror or error})") from None
    os.close(handle)
    os.unlink(probe)


def check_free(source, *, force: bool = False) -> tuple[Path, Path]:
    """The result's two paths, after checking that they can be written and that neither exists (unless
    ``force``): call it before a long run, so that the run is not wasted.  Raises
    :class:`FileExistsError` for an existing file and another ``OSError`` (``PermissionError``,
    ``NotADirectoryError``, ``IsADirectoryError``) for a place that cannot be written, naming the path."""
    paths = result_paths(source)
    for path in paths:
        if path.exists() and not force and not path.is_dir():
            raise FileExistsError(f"{path} exists; give --force to overwrite it (or --out for another place)")
        _check_writable(path)
    return paths


def _temporary(path: Path, write) -> Path:
    """Call ``write(file)`` on a new temporary file next to ``path`` (same folder, so that
    ``os.replace`` is atomic) and return its path; on failure remove it and re-raise."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; a result is an ordinary file
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _json_ready(value, where: str = "record"):
    """``value`` as plain JSON types: numpy scalars and arrays become numbers and lists, tuples lists,
    paths strings; a string stays one string.  Anything else is a ``TypeError`` naming where it is."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; keys must be str")
            out[str(key)] = _json_ready(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where} is an array of dtype {value.dtype}; only real numbers are stored")
        return _json_ready(value.tolist(), where)
    if isinstance(value, np.generic):
        return _json_ready(value.item(), where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}); a result stores only str, numbers, bools, None, "
        "lists and dicts (and numpy numbers and arrays, converted)"
    )


def _canonical(record: dict) -> bytes:
    """The record without its checksum, as canonical JSON bytes (what ``checksum.record_sha256`` hashes)."""
    body = {key: value for key, value in record.items() if key != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode("ascii")


def _manifest(arrays: dict) -> dict:
    return {key: dict(dtype=value.dtype.str, shape=list(value.shape)) for key, value in arrays.items()}


def write(source, arrays: dict, record: dict, *, force: bool = False) -> tuple[Path, Path]:
    """Write a result: ``arrays`` to ``<stem>.npz`` and ``record`` (with ``format`` and ``name`` added)
    to ``<stem>.json``.  Both files are written atomically; an existing result is replaced only if
    ``force``.  Returns the two paths written."""
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict; got {type(record).__name__}")
    if not isinstance(arrays, dict) or not all(isinstance(key, str) and key for key in arrays):
        raise TypeError(f"arrays must be a dict with names (non-empty str) as keys; got {arrays!r:.80}")
    missing = [key for key in _RECORD_KEYS if key not in record and key not in ("format", "name")]
    if missing:
        raise ValueError(f"a result record needs {', '.join(missing)}")
    reserved = [key for key in ("format", "name", "arrays", "checksum") if key in record]
    if reserved:
        raise ValueError(f"a result record must not set {', '.join(reserved)}: write() fills them in")
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.kind not in "biufc":
            raise ValueError(f"array {key!r} must be numeric; got dtype {value.dtype}")
    lacking = [key for key in _REQUIRED_ARRAYS.get(record["kind"], ()) if key not in arrays]
    if lacking:
        raise ValueError(f"a {record['kind']!r} result needs the arrays {', '.join(lacking)}")
    npz, sidecar = check_free(source, force=force)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    record = _json_ready({"format": FORMAT, "name": npz.stem, **record, "arrays": _manifest(arrays)})
    wrong = [key for key, kind in _RECORD_TYPES.items() if key in record and not isinstance(record[key], kind)]
    if wrong or isinstance(record["seconds"], bool) or not math.isfinite(record["seconds"]):
        raise TypeError(f"record fields of the wrong type: {', '.join(wrong) or 'seconds'} (see store._RECORD_TYPES)")
    record["checksum"] = dict(
        npz_sha256=hashlib.sha256(data).hexdigest(), record_sha256=hashlib.sha256(_canonical(record)).hexdigest()
    )
    text = json.dumps(record, indent=2, allow_nan=True) + "\n"
    npz.parent.mkdir(parents=True, exist_ok=True)
    temporaries = [_temporary(npz, lambda file: file.write(data))]
    replaced = False
    try:
        temporaries.append(_temporary(sidecar, lambda file: file.write(text.encode("utf-8"))))
        os.replace(temporaries[0], npz)
        replaced = True
        os.replace(temporaries[1], sidecar)  # the record last: a result exists once its record does
    except BaseException:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        if replaced:  # arrays without their record are no result
            npz.unlink(missing_ok=True)
        raise
    return npz, sidecar


def _how_to_make(npz: Path, force: bool = False) -> str:
    command = make_command(npz.stem)
    if command.endswith("list  (shows the experiments and their commands)"):
        return f"see {command}"
    return f"make it with: {command}" + (" --force" if force else "")


def _damaged(path: Path, npz: Path, what: str) -> ResultError:
    return ResultError(f"{path} {what}; {_how_to_make(npz, force=True)}")


def _read_bytes(path: Path, npz: Path, what: str) -> bytes:
    if not path.exists():
        raise MissingResultError(f"no saved {what} at {path}; {_how_to_make(npz, force=what == 'arrays')}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise _damaged(path, npz, f"cannot be read ({error.strerror or error})") from None


def read_record(source) -> dict:
    """The sidecar record of a result (by name or path), after checking its format, its fields and its
    checksum.  Raises :class:`ResultError` (:class:`MissingResultError` if there is none)."""
    npz, sidecar = result_paths(source)
    raw = _read_bytes(sidecar, npz, "result")
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _damaged(sidecar, npz, "is not a readable result record (not JSON text)") from None
    if not isinstance(record, dict) or "format" not in record:
        raise _damaged(sidecar, npz, f"is not a result record (no 'format' field of {FORMAT!r})")
    if record["format"] != FORMAT:
        raise _damaged(sidecar, npz, f"has format {record['format']!r:.60}, not {FORMAT!r} (another version)")
    missing = [key for key in (*_RECORD_KEYS, "arrays", "checksum") if key not in record]
    if missing:
        raise _damaged(sidecar, npz, f"lacks {', '.join(missing)}")
    wrong = [key for key, kind in _RECORD_TYPES.items() if not isinstance(record[key], kind)]
    checksum = record["checksum"]
    if wrong or not all(isinstance(checksum.get(key), str) for key in ("npz_sha256", "record_sha256")):
        raise _damaged(sidecar, npz, f"has fields of the wrong type ({', '.join(wrong) or 'checksum'})")
    if hashlib.sha256(_canonical(record)).hexdigest() != checksum["record_sha256"]:
        raise _damaged(sidecar, npz, "was altered after it was written (its checksum does not match)")
    return record


def load(source) -> StoredResult:
    """A saved result (by name or path): its arrays and its record, whole or not at all.

    The record is read by :func:`read_record`; the .npz must match the record's checksum and hold
    exactly the arrays of its manifest (names, dtypes, shapes).  Any problem is a :class:`ResultError`
    naming the file; pickled objects are never loaded."""
    npz, _ = result_paths(source)
    record = read_record(source)
    data = _read_bytes(npz, npz, "arrays")
    if hashlib.sha256(data).hexdigest() != record["checksum"]["npz_sha256"]:
        raise _damaged(npz, npz, "does not match its record (truncated, altered or from another run: checksum)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception:  # checksummed bytes that numpy cannot read: written by something else
        raise _damaged(npz, npz, "is not a readable .npz archive of numbers") from None
    if _manifest(arrays) != record["arrays"]:
        raise _damaged(npz, npz, "does not hold the arrays its record lists")
    lacking = [key for key in _REQUIRED_ARRAYS.get(record["kind"], ()) if key not in arrays]
    if lacking:
        raise _damaged(npz, npz, f"lacks the arrays {', '.join(lacking)} of a {record['kind']!r} result")
    return StoredResult(arrays, record, npz)


# ----------------------------------------------------------------------------- training runs
def _merged_settings(own: dict, extra: dict | None) -> dict:
    """``own`` with the entries of ``extra`` added; a key in both must have the same value."""
    merged = dict(own)
    for key, value in (extra or {}).items():
        if key in merged and _json_ready(merged[key]) != _json_ready(value):
            raise ValueError(f"settings[{key!r}]: the run says {merged[key]!r}, the caller {value!r}")
        merged[key] = value
    return merged


def _check_record_fields(command, seconds, **mappings) -> None:
    """The caller's parts of a record, checked before anything is written."""
    if not isinstance(command, str):
        raise TypeError(f"command must be a str; got {type(command).__name__}")
    check_real(seconds, "seconds", low=0.0)
    for name, value in mappings.items():
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict (or None); got {type(value).__name__}")


def save_result(
    result,
    source,
    *,
    command: str,
    seconds: float,
    metrics: dict | None = None,
    settings: dict | None = None,
    options: dict | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """Save a :class:`~bilevel_lib.training.loops.TrainingResult`: γ, x̂ and the history as arrays; its
    settings (the training settings, plus the experiment's ``settings`` such as seeds, which must
    agree with them where both name a key), message, command, run time, ``metrics`` and the
    command-line ``options`` in the sidecar."""
    from ..training.loops import TrainingResult

    if not isinstance(result, TrainingResult):
        raise TypeError(f"result must be a TrainingResult; got {type(result).__name__}")
    _check_record_fields(command, seconds, metrics=metrics, settings=settings, options=options)
    params = result.params
    arrays = dict(
        beta0=params.beta0,
        beta=params.beta,
        filters=params.filters,
        x=result.x,
        **{f"history_{key}": value for key, value in result.history.as_arrays().items()},
    )
    record = dict(
        kind="training",
        **provenance(command, seconds),
        settings=_merged_settings(result.settings, settings),
        metrics=dict(metrics or {}),
        message=result.message,
    )
    if options is not None:
        record["options"] = dict(options)
    return write(source, arrays, record, force=force)


def load_result(source):
    """A saved training run (by name, e.g. ``"bars"``, or path) as a :class:`~bilevel_lib.training.loops.TrainingResult`.

    Its ``settings`` are the training settings; :func:`read_record` gives the command, run time and metrics.
    """
    from ..problem.params import Hyperparameters
    from ..training.loops import TrainingHistory, TrainingResult

    stored = load(source)
    if stored.record["kind"] != "training":
        raise ResultError(
            f"{stored.path} holds a {stored.record['kind']!r} result, not a training run; load it with store.load"
        )
    arrays = stored.arrays
    try:
        params = Hyperparameters(float(arrays["beta0"]), arrays["beta"], arrays["filters"])
        history = TrainingHistory(
            **{key[len("history_") :]: arrays[key].tolist() for key in arrays if key.startswith("history_")}
        )
        x = arrays["x"]
    except (KeyError, TypeError, ValueError) as error:
        raise _damaged(stored.path, stored.path, f"does not hold a training result's arrays ({error})") from None
    return TrainingResult(params, history, x, stored.record.get("message", ""), stored.record["settings"])


# ----------------------------------------------------------------------------- BLORC runs
def save_blorc_run(
    summary: dict, settings, source, *, command: str, options: dict | None = None, force: bool = False
) -> tuple[Path, Path]:
    """Save a BLORC run (the dict of :func:`bilevel_lib.experiments.blorc.run`, its settings and the
    command-line ``options``)."""
    from dataclasses import asdict

    result = summary["result"]
    arrays = dict(W=result.W, epoch_loss=result.epoch_loss, test_psnr=result.test_psnr)
    metrics = dict(
        psnr_learned_db=round(summary["psnr_learned"], 3),
        psnr_baseline_db=round(summary["psnr_baseline"], 3),
        psnr_noisy_db=round(summary["psnr_noisy"], 3),
        baseline=summary["baseline"],
        baseline_scale=summary["baseline_scale"],
        fista_iterations=result.fista_iterations,
        active_set_rounds=result.active_set_rounds,
    )
    record = dict(kind="blorc", **provenance(command, result.seconds), settings=asdict(settings), metrics=metrics)
    if options is not None:
        record["options"] = dict(options)
    return write(source, arrays, record, force=force)
