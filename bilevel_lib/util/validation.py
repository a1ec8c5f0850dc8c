"""Input validation shared by the modules: clear errors that say what was expected and what came.

The library's error policy, in one place:

* **bad input** (wrong type, dtype, shape, a non-finite entry, a value out of range, an unknown
  option, a zero or negative count) raises ``TypeError`` (wrong kind of object or dtype: complex,
  bool, object or string arrays are refused, never cast) or ``ValueError`` (right kind, wrong
  value) at the entry of the public function, with a message that names the argument, what was
  expected and what came;
* **non-finite numbers produced during a computation** (an overflow of e^{β}, a step too large,
  a diverging iteration) stop it with a :class:`NonFiniteError`, whose message names where
  (function, iteration or step, quantity) and the likely cause.  ``NonFiniteError`` derives from
  both ``FloatingPointError`` (what numpy raises under ``np.errstate(all="raise")``) and
  ``ValueError``, so ``except ValueError`` still catches every error of the library about numbers;
* **non-convergence** is not an error: it is recorded in the result (``converged``, ``message``)
  and, where the caller asked for a tolerance, reported as a
  :class:`~bilevel_lib.solvers.lower.ConvergenceWarning`.

The checks run once per public call, at its entry; hot loops only test the scalars they compute
anyway (residual norms) for finiteness.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np
from scipy.linalg.blas import ddot as _ddot

__all__ = [
    "NonFiniteError",
    "as_float_array",
    "check_choice",
    "check_count",
    "check_real",
    "check_finite_result",
    "check_flag",
    "check_generator",
    "positive_scalar",
]


class NonFiniteError(FloatingPointError, ValueError):
    """A NaN or infinity appeared during a computation (not in its input): the message says where and why."""


def _describe(value) -> str:
    """A short description of what came: the type, and the dtype and shape of an array."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def as_float_array(
    value,
    name: str,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    shape: tuple | None = None,
    finite: bool = True,
    allow_bool: bool = False,
) -> np.ndarray:
    """Return ``value`` as a float64 array after checking it, or raise naming ``name``.

    Integer and float arrays (and nested sequences of real numbers) are accepted; complex, bool
    (unless ``allow_bool``), object and string arrays raise ``TypeError`` rather than being cast.
    ``ndim``, ``min_ndim`` and ``shape`` check the dimensions (``ValueError``); with ``finite`` (the
    default) a NaN or infinite entry is a ``ValueError`` too.
    """
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged nested sequences
            raise TypeError(f"{name} must be an array of real numbers; got {_describe(value)} ({err})") from err
    kind = array.dtype.kind
    if kind == "b" and allow_bool:
        array = array.astype(np.float64)
    elif kind not in "iuf":
        what = {"c": "complex", "b": "bool", "O": "object", "U": "string", "S": "bytes"}.get(kind, str(array.dtype))
        raise TypeError(f"{name} must be an array of real numbers (int or float); got {what} data, {_describe(value)}")
    if array.dtype != np.float64:
        array = np.asarray(array, dtype=np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {array.shape}")
    if min_ndim is not None and array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s); got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {array.shape}")
    if finite and not _all_finite(array):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} must be finite; it has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}")
    return array


def _all_finite(array: np.ndarray) -> bool:
    """Whether every entry of the float64 ``array`` is finite: by one dot product x'x (BLAS, no
    temporary array, no floating-point warning) in place of an elementwise test.

    A NaN or an infinity makes x'x NaN or infinite (a sum of squares never meets ∞ − ∞), so a
    finite x'x means every entry is finite; only when x'x is not finite (a non-finite entry, or
    entries above ~1e154 whose squares overflow) are the entries tested one by one.
    """
    flat = array.ravel(order="K")  # memory order: a view, not a copy, for a transposed block (e.g. moveaxis)
    if 0 < flat.size < 2**31:  # BLAS counts in 32-bit integers
        return math.isfinite(_ddot(flat, flat)) or bool(np.isfinite(flat).all())
    return bool(np.isfinite(flat).all())


def check_real(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float in the given range, or raise naming ``name``.

    ``TypeError`` for something that is not a real number (bool, complex, a string, an array of
    more than one entry); ``ValueError`` for NaN, ±inf or a value outside [low, high] (open ends
    with ``low_open`` / ``high_open``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"{name} must be a real number; got {_describe(value)}")
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a real number; got {_describe(value)}")
        value = value.reshape(())[()]
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        if low == 0:
            raise ValueError(f"{name} must be a {'positive' if low_open else 'non-negative'} number; got {value!r}")
        raise ValueError(f"{name} must be {'>' if low_open else '≥'} {low:g}; got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '≤'} {high:g}; got {value!r}")
    return number


def positive_scalar(value, name: str) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise ``ValueError`` (``TypeError`` if not a number)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"{name} must be a positive number; got {_describe(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a positive number; got {_describe(value)}") from err
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int ≥ ``minimum`` (default 1), or raise naming ``name``.

    Python and numpy integers are accepted, and floats with an integral value (``1e3``); a
    fractional or non-finite float, or a count below ``minimum``, raises ``ValueError``; bool or
    anything that is not a real number raises ``TypeError``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    if isinstance(value, numbers.Integral):
        count = operator.index(value)
    elif isinstance(value, numbers.Real):
        if not (np.isfinite(float(value)) and float(value).is_integer()):
            raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
        count = int(value)
    else:
        raise TypeError(f"{name} must be an integer ≥ {minimum}; got {_describe(value)}")
    if count < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return count


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` (``TypeError`` if not a string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {tuple(choices)}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_flag(value, name: str) -> bool:
    """Return ``value`` if it is a bool (Python or numpy), else raise ``TypeError`` naming ``name``.

    An on/off option given a string, a number or a list is refused rather than read by its truth value
    (``"no"`` would mean on).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {_describe(value)}")
    return bool(value)


def check_generator(value, name: str) -> np.random.Generator:
    """Return a numpy ``Generator`` from ``value``: a Generator, a BitGenerator or SeedSequence, or an
    integer seed ≥ 0 (:func:`check_count` rules), or None (fresh entropy); anything else raises naming ``name``."""
    if value is None:
        return np.random.default_rng()
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, (np.random.BitGenerator, np.random.SeedSequence)):
        return np.random.default_rng(value)
    return np.random.default_rng(check_count(value, name, minimum=0))


def check_finite_result(value, where: str, quantity: str, why: str = "") -> None:
    """Raise :class:`NonFiniteError` if ``value`` (a number or array computed by the library) is not finite.

    ``where`` names the function and iteration, ``quantity`` what was computed, ``why`` the likely cause.
    """
    array = np.asarray(value, dtype=np.float64)
    if _all_finite(array):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    cause = f": {why}" if why else ""
    raise NonFiniteError(f"{where}: {quantity} is not finite ({bad} of {array.size} entries NaN or infinite){cause}")
