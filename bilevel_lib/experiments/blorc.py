"""BLORC experiments: the paper's data sets and settings, a run with its baseline, and the command line.

Data sets of Ghosh, McCann & Ravishankar (2022), Sec. 4: 1-D piecewise-constant signals (n = 64,
σ = 0.1, peak normalised to 1), 1-D signals sparse in the DCT (a few low harmonics), and 8×8
patches (stride 7) of 256×256 images with vertical or diagonal stripes.  Training itself is
:func:`bilevel_lib.l1.blorc.train_blorc`.

Command line (saves a small .npz and .json under ``results/``)::

    python -m bilevel_lib blorc --help
    python -m bilevel_lib blorc --signal piecewise             # a small run, about a minute
    python -m bilevel_lib blorc --signal piecewise --full      # the paper: 4000 pairs, 750 epochs

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from ..l1.blorc import (BlorcResult, best_scale, check_decay_epochs, dct_matrix, denoise, finite_difference_matrix,
                        match_rows, mean_psnr, train_blorc)
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
    "run",
    "save",
    "results_dir",
    "load_run",
    "main",
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

SIGNALS = ("piecewise", "dct", "stripes-vertical", "stripes-diagonal")


@dataclass(frozen=True)
class BlorcSettings:
    """One BLORC experiment.  The defaults are the paper's Sec. 4.1 (``PAPER_SETTINGS``)."""

    signal: str = "piecewise"
    n: int = 64
    n_train: int = 4000
    n_test: int = 20
    sigma: float = 0.1
    batch_size: int = 100
    epochs: int = 750
    lr: float = 1e-4
    threshold: float = 1e-3
    seed: int = 0
    lr_decay_epochs: tuple = ()

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}; got {self.signal!r}")
        for name in ("n", "n_train", "n_test", "batch_size", "epochs"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.signal.startswith("stripes") and int(round(np.sqrt(self.n))) ** 2 != self.n:
            raise ValueError(f"stripe patches are √n×√n: n must be a square; got {self.n}")
        positive_scalar(self.lr, "lr")
        check_decay_epochs(self.lr_decay_epochs, self.epochs)
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be ≥ 0; got {self.sigma!r}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be ≥ 0; got {self.threshold!r}")



#: Sec. 4.1 of the paper as printed: 4000 pairs, batch 100, 750 epochs, α = 1e-4, threshold 1e-3
PAPER_SETTINGS = BlorcSettings()
#: ``--full``: the paper's data, batch, epochs and threshold with α = 1e-2, divided by 10 at epochs
#: 650 and 700.  With our batch-*mean* gradient, α = 1e-4 hardly moves W from the identity (mean loss
#: 14.20 → 14.15 in two epochs); 1e-2 is what 1e-4 would be if applied to the *sum* over a batch of
#: 100.  A constant 1e-2 leaves minibatch noise of ~0.003 in every entry of W, which costs ~2.5 dB
#: (23.5 dB after 750 epochs); the two decays remove it.
FULL_SETTINGS = replace(PAPER_SETTINGS, lr=1e-2, lr_decay_epochs=(650, 700))
#: the book's small setting: same signals, 400 pairs, batch 20, 25 epochs (seconds, not hours)
BOOK_SETTINGS = BlorcSettings(n_train=400, batch_size=20, epochs=25, lr=1e-2)


# ----------------------------------------------------------------------------- data
def _normalise_peak(x: np.ndarray) -> np.ndarray:
    return x / np.max(np.abs(x), axis=1, keepdims=True)


def piecewise_signals(n: int, count: int, rng, n_jumps: int = 4) -> np.ndarray:
    """Piecewise-constant signals with peak |x| = 1, shape (count, n)."""
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


def stripe_patches(kind: str, sigma: float, rng, size: int = 256, patch: int = 8, stride: int = 7,
                   width: int = 4) -> tuple[np.ndarray, np.ndarray]:
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
    return x[: settings.n_train], y[: settings.n_train], x[settings.n_train:], y[settings.n_train:]



# ----------------------------------------------------------------------------- command line
def run(settings: BlorcSettings, *, progress: bool = True) -> dict:
    """Train with ``settings``, evaluate against the tuned finite-difference (or DCT) transform."""
    x_train, y_train, x_test, y_test = make_pairs(settings)
    result = train_blorc(x_train, y_train, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                         threshold=settings.threshold, seed=settings.seed, x_test=x_test, y_test=y_test,
                         progress=progress, lr_decay_epochs=settings.lr_decay_epochs)
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


def save(summary: dict, settings: BlorcSettings, out: Path, command: str) -> tuple[Path, Path]:
    """Write ``out``.npz (W, losses, PSNR history) and ``out``.json (settings and numbers)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result = summary["result"]
    npz = out.with_suffix(".npz")
    np.savez_compressed(npz, W=result.W, epoch_loss=result.epoch_loss, test_psnr=result.test_psnr)
    record = {
        "command": command,
        "settings": asdict(settings),
        "seconds": round(result.seconds, 1),
        "psnr_learned_db": round(summary["psnr_learned"], 3),
        "psnr_baseline_db": round(summary["psnr_baseline"], 3),
        "psnr_noisy_db": round(summary["psnr_noisy"], 3),
        "baseline": summary["baseline"],
        "baseline_scale": summary["baseline_scale"],
        "fista_iterations": result.fista_iterations,
        "active_set_rounds": result.active_set_rounds,
        "machine": f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}",
    }
    path = out.with_suffix(".json")
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return npz, path


def results_dir() -> Path:
    """The repository's ``results/`` folder, where the command line saves its runs."""
    return Path(__file__).resolve().parents[2] / "results"


def load_run(stem: str) -> dict:
    """A saved run: the arrays of ``results/<stem>.npz`` plus the record of ``results/<stem>.json``."""
    base = results_dir() / stem
    with np.load(base.with_suffix(".npz")) as arrays:
        run = {key: arrays[key] for key in arrays.files}
    run.update(json.loads(base.with_suffix(".json").read_text(encoding="utf-8")))
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bilevel_lib.blorc",
        description="Learn an ℓ1 analysis transform W by BLORC (closed-form gradients, exact lower level). "
                    "Defaults: the book's small setting; --full: the paper's Sec. 4.1.")
    parser.add_argument("--signal", choices=SIGNALS, default="piecewise", help="training signals (default piecewise)")
    parser.add_argument("--full", action="store_true",
                        help="paper settings (4000 pairs, batch 100, 750 epochs, threshold 1e-3) with lr 1e-2 "
                             "for the batch-mean gradient (the printed 1e-4 hardly moves W), divided by 10 at "
                             "epochs 650 and 700; about an hour")
    for name, kind, help_text in [("n", int, "signal length (a square for stripes)"),
                                  ("pairs", int, "training pairs"), ("test", int, "test signals"),
                                  ("sigma", float, "noise standard deviation"), ("batch", int, "batch size"),
                                  ("epochs", int, "epochs"), ("lr", float, "step size α"),
                                  ("threshold", float, "zero-set threshold γ"), ("seed", int, "random seed")]:
        parser.add_argument(f"--{name}", type=kind, default=None, help=f"{help_text} (overrides the preset)")
    parser.add_argument("--lr-decay-epochs", type=int, nargs="*", default=None, metavar="EPOCH",
                        help="divide the step by 10 at the start of these epochs (overrides the preset; "
                             "give none for a constant step)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output stem (default <repo>/results/blorc_<signal>[_full]); writes .npz and .json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    base = FULL_SETTINGS if args.full else BOOK_SETTINGS
    overrides = {key: value for key, value in {
        "n": args.n, "n_train": args.pairs, "n_test": args.test, "sigma": args.sigma, "batch_size": args.batch,
        "epochs": args.epochs, "lr": args.lr, "threshold": args.threshold, "seed": args.seed,
        "lr_decay_epochs": None if args.lr_decay_epochs is None else tuple(args.lr_decay_epochs)}.items()
        if value is not None}
    if args.epochs is not None and args.lr_decay_epochs is None and base.lr_decay_epochs:
        # fewer (or more) epochs than the preset: keep the decays at the same fractions of the run
        scaled = sorted({max(1, round(e * args.epochs / base.epochs)) for e in base.lr_decay_epochs})
        overrides["lr_decay_epochs"] = tuple(e for e in scaled if e < args.epochs)
    settings = replace(base, signal=args.signal, **overrides)
    out = args.out or results_dir() / f"blorc_{args.signal}{'_full' if args.full else ''}"
    command = "python -m bilevel_lib.blorc " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"BLORC on {settings.signal}: {settings.n_train} pairs, n = {settings.n}, σ = {settings.sigma}, "
          f"batch {settings.batch_size}, {settings.epochs} epochs, α = {settings.lr:g}"
          + (f" (÷10 at epochs {', '.join(map(str, settings.lr_decay_epochs))})" if settings.lr_decay_epochs else "")
          + f", γ = {settings.threshold:g}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):   # small matrices: one BLAS thread is faster and polite
        summary = run(settings, progress=not args.no_progress)
    npz, path = save(summary, settings, out, command)
    result = summary["result"]
    print(f"trained in {result.seconds:.1f} s; test PSNR (mean over {settings.n_test} signals): "
          f"learned W {summary['psnr_learned']:.2f} dB, {summary['baseline']} (scale {summary['baseline_scale']:.3g}) "
          f"{summary['psnr_baseline']:.2f} dB, noisy {summary['psnr_noisy']:.2f} dB")
    print(f"saved {npz} and {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
