"""Time and peak memory of a computation, for the measured Table 4.1 (Ch. "Unrolling").

:func:`measure` runs a function a few times for its wall-clock time and once more under
``tracemalloc`` for the peak of the memory it allocates.  NumPy reports its array buffers to
``tracemalloc``, so the peak counts the arrays a hypergradient method creates (stored iterates,
the forward-mode matrix Z, temporaries), not the interpreter or arrays that existed before.

Timing and tracing are separate runs because tracing slows Python down; the timed runs come
first, so caches (FFT plans, the filter bank's work arrays) are warm when memory is traced and
only what the method itself needs is counted.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

from ..util.validation import check_count, check_flag, check_real

__all__ = ["Measurement", "measure", "format_bytes"]


class Measurement(NamedTuple):
    """What :func:`measure` returns; unpacks as ``result, seconds, peak_bytes``.

    Attributes
    ----------
    result : object
        what the function returned (from the traced run, or the last timed run)
    seconds : float
        shortest (or median, see ``statistic``) wall-clock time over the timed runs
    peak_bytes : int
        peak of the memory allocated while the function ran (0 if not traced)
    """

    result: Any
    seconds: float
    peak_bytes: int


def measure(fn: Callable[[], Any], *, repeat: int = 1, memory: bool = True, statistic: str = "min") -> Measurement:
    """Run ``fn()`` and report (result, seconds, peak_bytes).

    Parameters
    ----------
    fn : callable without arguments
        The computation, e.g. ``lambda: reverse_mode_hypergradient(cost, params, loss, 50)``.
    repeat : int
        Number of timed runs.
    statistic : "min" or "median"
        Which of the ``repeat`` times to report: the shortest (the default; the run least
        disturbed by other work on the machine) or the median.
    memory : bool
        Also run ``fn`` once under ``tracemalloc`` and report the peak of the memory it
        allocated above what was allocated when it started.

    Returns
    -------
    Measurement
        A named tuple ``(result, seconds, peak_bytes)``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable without arguments; got {type(fn).__name__}")
    repeat = check_count(repeat, "repeat")
    memory = check_flag(memory, "memory")
    if statistic not in ("min", "median"):
        raise ValueError(f"statistic must be 'min' or 'median'; got {statistic!r}")
    times = []
    result = None
    for _ in range(int(repeat)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    best = min(times) if statistic == "min" else float(statistics.median(times))
    peak = 0
    if memory:
        already = tracemalloc.is_tracing()
        if not already:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            result = fn()
            _, top = tracemalloc.get_traced_memory()
            peak = max(int(top - baseline), 0)
        finally:
            if not already:
                tracemalloc.stop()
    return Measurement(result, best, peak)


def format_bytes(n_bytes: float) -> str:
    """A byte count as a short human-readable string, e.g. ``'3.2 MB'`` (powers of 1000)."""
    n_bytes = check_real(n_bytes, "n_bytes", low=0.0)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n_bytes) < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"  # pragma: no cover
