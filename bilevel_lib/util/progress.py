"""A progress bar for long runs: tqdm when it is installed (``bilevel_lib[book]``), else a plain counter.

Used by the training loops, BLORC training and the command line; the library itself does not
need tqdm.
"""

from __future__ import annotations

import sys
import time

from .validation import check_count, check_flag

__all__ = ["progress_bar"]


class _PlainProgress:
    """A minimal stand-in for ``tqdm``: prints ``description: done/total`` at most once a second."""

    def __init__(self, total: int, description: str, enabled: bool):
        self.total, self.description, self.enabled = int(total), description, enabled
        self.done, self._last = 0, 0.0

    def update(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self._last >= 1.0 or self.done >= self.total):
            self._last = now
            print(f"\r{self.description}: {self.done}/{self.total}", end="", file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        self.description = (
            self.description.split(" [")[0] + " [" + ", ".join(f"{k}={v}" for k, v in values.items()) + "]"
        )

    def close(self) -> None:
        if self.enabled and self.done:
            print(file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, enabled: bool, description: str, **options):
    """A context manager with ``update(n)``: a tqdm bar if tqdm is installed, else a plain counter.

    ``enabled=False`` shows nothing.  ``options`` go to ``tqdm`` (e.g. ``unit``, ``mininterval``).
    """
    total = check_count(total, "total", minimum=0)
    enabled = check_flag(enabled, "enabled")
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total, description, enabled)
    options.setdefault("leave", False)
    return tqdm(total=total, disable=not enabled, desc=description, **options)
