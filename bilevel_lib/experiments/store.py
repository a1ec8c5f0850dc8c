"""The results store: one file format and one place for the results of every full-size experiment.

A result named ``<name>`` is two files side by side:

``<name>.npz``
    the arrays (numbers only, loadable with ``allow_pickle=False``);
``<name>.json``
    the sidecar record: ``format``, ``kind`` (``"training"`` or ``"blorc"``), ``name``, the exact
    ``command`` that made it, its run time ``seconds``, the ``versions`` of python, numpy, scipy and
    bilevel_lib, the ``machine``, the ``date`` (UTC, ISO 8601), the run's ``settings`` and its
    figures of merit ``metrics`` (plus ``message`` for training runs).

Results live in the repository's ``results/`` folder (:func:`results_dir`, found from the package's
location, not the working directory) unless a path stem is given (``--out`` on the command line;
``run``, ``run.npz`` and ``run.json`` all name the pair ``run.npz`` + ``run.json``).  Writes are
atomic (a temporary file in the same folder, then ``os.replace``) and never replace an existing
result unless ``force=True``.

    from bilevel_lib.experiments import store
    bars = store.load_result("bars")          # a TrainingResult
    record = store.read_record("bars")        # its sidecar: command, seconds, versions, metrics
    blorc_run = store.load("blorc_piecewise_full")   # any result: .arrays and .record
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "FORMAT",
    "ResultError",
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

#: the format tag of every sidecar written by this module
FORMAT = "bilevel_lib-result/1"
_RECORD_KEYS = ("format", "kind", "name", "command", "seconds", "versions", "machine", "date", "settings", "metrics")
_TRAINING_RUNS = ("bars", "cameraman-beta", "cameraman-filters")


class ResultError(FileNotFoundError):
    """A result that is missing or cannot be read; the message names the file and the command that makes it."""


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
    if isinstance(source, str) and not source:
        raise ValueError("a result needs a name or a path")
    path = Path(source)
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
    if name in _TRAINING_RUNS:
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


def check_free(source, *, force: bool = False) -> tuple[Path, Path]:
    """The result's two paths, after checking that neither exists (unless ``force``): call it before a
    long run, so that the run is not wasted.  Raises :class:`FileExistsError` naming the file."""
    paths = result_paths(source)
    if not force:
        for path in paths:
            if path.exists():
                raise FileExistsError(f"{path} exists; give --force to overwrite it (or --out for another place)")
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


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write(source, arrays: dict, record: dict, *, force: bool = False) -> tuple[Path, Path]:
    """Write a result: ``arrays`` to ``<stem>.npz`` and ``record`` (with ``format`` and ``name`` added)
    to ``<stem>.json``.  Both files are written atomically; an existing result is replaced only if
    ``force``.  Returns the two paths written."""
    npz, sidecar = check_free(source, force=force)
    missing = [key for key in _RECORD_KEYS if key not in record and key not in ("format", "name")]
    if missing:
        raise ValueError(f"a result record needs {', '.join(missing)}")
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.kind not in "biufc":
            raise ValueError(f"array {key!r} must be numeric; got dtype {value.dtype}")
    record = _json_ready({"format": FORMAT, "name": npz.stem, **record})
    text = json.dumps(record, indent=2, allow_nan=True) + "\n"
    npz.parent.mkdir(parents=True, exist_ok=True)
    temporaries = [_temporary(npz, lambda file: np.savez_compressed(file, **arrays))]
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


def read_record(source) -> dict:
    """The sidecar record of a result (by name or path)."""
    npz, sidecar = result_paths(source)
    if not sidecar.exists():
        raise ResultError(f"no saved result at {sidecar}; {_how_to_make(npz)}")
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(
            f"{sidecar} is not a readable result record ({error}); {_how_to_make(npz, force=True)}"
        ) from error
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ResultError(f"{sidecar} is not a result record of format {FORMAT!r}; {_how_to_make(npz, force=True)}")
    missing = [key for key in _RECORD_KEYS if key not in record]
    if missing:
        raise ResultError(f"{sidecar} lacks {', '.join(missing)}; {_how_to_make(npz, force=True)}")
    return record


def load(source) -> StoredResult:
    """A saved result (by name or path): its arrays and its record."""
    npz, _ = result_paths(source)
    record = read_record(source)
    if not npz.exists():
        raise ResultError(f"no saved arrays at {npz}; {_how_to_make(npz, force=True)}")
    try:
        with open(npz, "rb") as file, np.load(file, allow_pickle=False) as data:  # closed even when np.load fails
            arrays = {key: data[key] for key in data.files}
    except Exception as error:  # a truncated or foreign file: zipfile, OSError, ValueError …
        raise ResultError(
            f"{npz} is not a readable result ({type(error).__name__}: {error}); {_how_to_make(npz, force=True)}"
        ) from error
    return StoredResult(arrays, record, npz)


# ----------------------------------------------------------------------------- training runs
def save_result(
    result, source, *, command: str, seconds: float, metrics: dict | None = None, force: bool = False
) -> tuple[Path, Path]:
    """Save a :class:`~bilevel_lib.training.loops.TrainingResult`: γ, x̂ and the history as arrays; its
    settings, message, command, run time and ``metrics`` in the sidecar."""
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
        settings=dict(result.settings),
        metrics=dict(metrics or {}),
        message=result.message,
    )
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
        raise ResultError(
            f"{stored.path} is not a complete training result ({error!r}); {_how_to_make(stored.path, force=True)}"
        ) from error
    return TrainingResult(params, history, x, stored.record.get("message", ""), stored.record["settings"])


# ----------------------------------------------------------------------------- BLORC runs
def save_blorc_run(summary: dict, settings, source, *, command: str, force: bool = False) -> tuple[Path, Path]:
    """Save a BLORC run (the dict of :func:`bilevel_lib.experiments.blorc.run` and its settings)."""
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
    return write(source, arrays, record, force=force)
