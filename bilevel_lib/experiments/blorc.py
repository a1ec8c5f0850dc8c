"""BLORC experiments: the paper's data sets and settings, and a run with its baseline.

Data sets of Ghosh, McCann & Ravishankar (2022), Sec. 4: 1-D piecewise-constant signals (n = 64,
σ = 0.1, peak normalised to 1), 1-D signals sparse in the DCT (a few low harmonics), and 8×8
patches (stride 7) of 256×256 images with vertical or diagonal stripes.  Training itself is
:func:`bilevel_lib.l1.blorc.train_blorc`.

Command line (:mod:`bilevel_lib.experiments.cli`; saves ``results/blorc_<signal>[_full].{npz,json}``
through :mod:`bilevel_lib.experiments.store`)::

    python -m bilevel_lib blorc --help
    # a small run, about a minute
    python -m bilevel_lib blorc --signal piecewise
    # the paper: 4000 pairs, 750 epochs
    python -m bilevel_lib blorc --signal piecewise --full

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.fft as sfft

from ..l1.blorc import (
    PAPER_THRESHOLD,
    TRAINING_THRESHOLD,
    BlorcResult,
    best_scale,
    check_decay_epochs,
    dct_matrix,
    denoise,
    finite_difference_matrix,
    match_rows,
    mean_psnr,
    train_blorc,
)
from ..problem import data
from ..problem.metrics import psnr_db
from ..util.validation import positive_scalar

__all__ = [
    "BlorcSettings",
    "SIGNALS",
    "PAPER_SETTINGS",
    "FULL_SETTINGS",
    "BOOK_SETTINGS",
    "make_pairs",
    "piecewise_signals",
    "dct_signals",
    "stripe_image",
    "stripe_patches",
    "settings_for",
    "run",
    # training, re-exported for the chapter's one import
    "BlorcResult",
    "train_blorc",
    "denoise",
    "mean_psnr",
    "best_scale",
    "match_rows",
    "finite_difference_matrix",
    "dct_matrix",
]

#: The training signals of the BLORC experiments, ``"piecewise"`` (piecewise-constant signals),
#: ``"dct"`` (signals sparse in the DCT basis), both from :mod:`bilevel_lib.problem.data`, and
#: ``"stripes-vertical"``/``"stripes-diagonal"`` (patches of images of stripes, see the module docstring)
SIGNALS = ("piecewise", "dct", "stripes-vertical", "stripes-diagonal")
#: the shortest signal of each kind; 4 jumps need 5 samples, 3 harmonics 4, and a stripe patch needs 5×5 so that
#: it always holds some white stripe (of width 4), whose peak the PSNR divides by
MIN_LENGTH = {"piecewise": 5, "dct": 4, "stripes-vertical": 25, "stripes-diagonal": 25}


@dataclass(frozen=True)
class BlorcSettings:
    """One BLORC experiment.  The defaults are the paper's Sec. 4.1 (``PAPER_SETTINGS``) except the
    threshold: the training default (:data:`~bilevel_lib.l1.blorc.TRAINING_THRESHOLD`, safe for the
    exact solver); the paper's 1e-3 only in the presets that reproduce the paper."""

    signal: str = "piecewise"
    n: int = 64
    n_train: int = 4000
    n_test: int = 20
    sigma: float = 0.1
    batch_size: int = 100
    epochs: int = 750
    lr: float = 1e-4
    threshold: float = TRAINING_THRESHOLD
    seed: int = 0
    lr_decay_epochs: tuple = ()

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}; got {self.signal!r}")
        for name in ("n", "n_train", "n_test", "batch_size", "epochs"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if isinstance(self.seed, (bool, np.bool_)) or int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.n < MIN_LENGTH[self.signal]:
            raise ValueError(f"n must be ≥ {MIN_LENGTH[self.signal]} for {self.signal} signals; got {self.n}")
        if self.signal.startswith("stripes") and int(round(np.sqrt(self.n))) ** 2 != self.n:
            raise ValueError(f"stripe patches are √n×√n: n must be a square; got {self.n}")
        positive_scalar(self.lr, "lr")
        object.__setattr__(self, "lr_decay_epochs", check_decay_epochs(self.lr_decay_epochs, self.epochs))
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be ≥ 0; got {self.sigma!r}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be ≥ 0; got {self.threshold!r}")


#: The setting of Sec. 4.1 of the paper as printed, 4000 pairs, batch 100, 750 epochs, α = 1e-4, and the
#: paper's threshold 1e-3 (PAPER_THRESHOLD: it misreads small non-zeros of W x* once W is trained; reproduction only)
PAPER_SETTINGS = BlorcSettings(threshold=PAPER_THRESHOLD)
#: The ``--full`` setting, the paper's data, batch, epochs and threshold with α = 1e-2, divided by 10 at epochs
#: 650 and 700.  With our batch-*mean* gradient, α = 1e-4 hardly moves W from the identity (mean loss
#: 14.20 → 14.15 in two epochs); 1e-2 is what 1e-4 would be if applied to the *sum* over a batch of
#: 100.  A constant 1e-2 leaves minibatch noise of ~0.003 in every entry of W, which costs ~2.5 dB
#: (23.5 dB after 750 epochs); the two decays remove it.
FULL_SETTINGS = replace(PAPER_SETTINGS, lr=1e-2, lr_decay_epochs=(650, 700))
#: The book's small setting, same signals, 400 pairs, batch 20, 25 epochs (seconds, not hours)
BOOK_SETTINGS = BlorcSettings(n_train=400, batch_size=20, epochs=25, lr=1e-2)


# ----------------------------------------------------------------------------- data
def _normalise_peak(x: np.ndarray) -> np.ndarray:
    return x / np.max(np.abs(x), axis=1, keepdims=True)


def piecewise_signals(n: int, count: int, rng, n_jumps: int = 4) -> np.ndarray:
    """Piecewise-constant signals with peak ``|x| = 1``, shape (count, n)."""
    return _normalise_peak(data.piecewise_constant_1d(n, count, rng, n_jumps=n_jumps))


def dct_signals(n: int, count: int, rng, n_harmonics: int = 3, max_frequency: int = 12) -> np.ndarray:
    """Smooth signals: ``n_harmonics`` random DCT-II atoms among frequencies 1…max_frequency, peak 1."""
    rng = np.random.default_rng(rng)
    max_frequency = min(max_frequency, n - 1)
    coefficients = np.zeros((count, n))
    support = 1 + np.argsort(rng.random((count, max_frequency)), axis=1)[:, :n_harmonics]
    np.put_along_axis(coefficients, support, rng.standard_normal((count, n_harmonics)), axis=1)
    return _normalise_peak(sfft.idct(coefficients, norm="ortho", axis=1))


def stripe_image(kind: str, size: int = 256, width: int = 4) -> np.ndarray:
    """A size×size image of black/white stripes of the given width: 'vertical' or 'diagonal'."""
    rows, cols = np.indices((size, size))
    if kind == "vertical":
        return ((cols // width) % 2).astype(float)
    if kind == "diagonal":
        return (((rows + cols) // width) % 2).astype(float)
    raise ValueError(f"kind must be 'vertical' or 'diagonal'; got {kind!r}")


def stripe_patches(
    kind: str, sigma: float, rng, size: int = 256, patch: int = 8, stride: int = 7, width: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Clean and noisy patch pairs (vectorised, shape (count, patch²)) from a noisy stripe image."""
    clean = stripe_image(kind, size, width)
    noisy = data.add_noise(clean, sigma, rng)
    starts = np.arange(0, size - patch + 1, stride)
    windows = np.lib.stride_tricks.sliding_window_view
    take = lambda image: windows(image, (patch, patch))[np.ix_(starts, starts)].reshape(-1, patch * patch)
    return take(clean), take(noisy)


def make_pairs(settings: BlorcSettings):
    """(x_train, y_train, x_test, y_test) for the settings, drawn from ``settings.seed``."""
    rng = np.random.default_rng(settings.seed)
    total = settings.n_train + settings.n_test
    if settings.signal == "piecewise":
        x = piecewise_signals(settings.n, total, rng)
        y = data.add_noise(x, settings.sigma, rng)
    elif settings.signal == "dct":
        x = dct_signals(settings.n, total, rng)
        y = data.add_noise(x, settings.sigma, rng)
    else:
        side = int(round(np.sqrt(settings.n)))
        x, y = stripe_patches(settings.signal.split("-")[1], settings.sigma, rng, patch=side)
        order = rng.permutation(x.shape[0])
        if total > order.size:
            raise ValueError(f"the stripe image gives {order.size} patches; asked for {total}")
        x, y = x[order[:total]], y[order[:total]]
    return x[: settings.n_train], y[: settings.n_train], x[settings.n_train :], y[settings.n_train :]


# ----------------------------------------------------------------------------- one run
def settings_for(signal: str = "piecewise", *, full: bool = False, **overrides) -> BlorcSettings:
    """The settings of a run: the book's small preset (or ``full``: ``FULL_SETTINGS``) for ``signal``,
    with ``overrides`` (fields of :class:`BlorcSettings`; ``None`` means "the preset's").  Changing
    ``epochs`` without giving ``lr_decay_epochs`` keeps the preset's decays at the same fractions of
    the run."""
    base = FULL_SETTINGS if full else BOOK_SETTINGS
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if "lr_decay_epochs" in overrides:
        overrides["lr_decay_epochs"] = tuple(overrides["lr_decay_epochs"])
    elif "epochs" in overrides and base.lr_decay_epochs:
        epochs = overrides["epochs"]
        scaled = sorted({max(1, round(e * epochs / base.epochs)) for e in base.lr_decay_epochs})
        overrides["lr_decay_epochs"] = tuple(e for e in scaled if e < epochs)
    return replace(base, signal=signal, **overrides)


def run(settings: BlorcSettings, *, progress: bool = True) -> dict:
    """Train with ``settings``, evaluate against the tuned finite-difference (or DCT) transform."""
    x_train, y_train, x_test, y_test = make_pairs(settings)
    result = train_blorc(
        x_train,
        y_train,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        threshold=settings.threshold,
        seed=settings.seed,
        x_test=x_test,
        y_test=y_test,
        progress=progress,
        lr_decay_epochs=settings.lr_decay_epochs,
    )
    baseline = finite_difference_matrix(settings.n) if settings.signal != "dct" else dct_matrix(settings.n)[1:]
    tune = slice(0, min(400, settings.n_train))
    scale, _ = best_scale(baseline, x_train[tune], y_train[tune])
    return {
        "result": result,
        "psnr_learned": mean_psnr(result.W, x_test, y_test),
        "psnr_baseline": mean_psnr(scale * baseline, x_test, y_test),
        "psnr_noisy": float(np.mean(psnr_db(y_test, x_test, per_image=True))),
        "baseline": "finite differences" if settings.signal != "dct" else "DCT (no DC row)",
        "baseline_scale": scale,
    }


if __name__ == "__main__":
    import sys

    sys.exit("BLORC runs moved to the one command line: python -m bilevel_lib blorc --help")
