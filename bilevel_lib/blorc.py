"""BLORC: bilevel learning of an ℓ1 analysis transform W with closed-form gradients.

Ghosh, McCann & Ravishankar (ICASSP 2022), Sec. 3–4; review Sec. 4.3.  The upper level is the
training loss ℓ(W) = (1/J) Σ_j ½‖x*_j(W) − x_true_j‖², the lower level is the exact ℓ1 denoiser of
:mod:`bilevel_lib.single_level`, and every step of minibatch gradient descent

1. solves the lower level for the batch exactly (warm-started from each pair's previous dual),
2. thresholds W x* to get the sign pattern (the zero set W0 and the signs s),
3. applies Lemma 1 (eqs. 7–8) and averages over the batch, then W ← W − α ∇ℓ.

W starts at the identity and the pairs are shuffled every epoch, as in the paper.  The strength of
the regulariser is part of W (‖βWx‖₁ = β‖Wx‖₁), so nothing else is learned.

Data sets of the paper: 1-D piecewise-constant signals (n = 64, σ = 0.1, peak normalised to 1),
1-D signals sparse in the DCT (a few low harmonics), and 8×8 patches (stride 7) of 256×256 images
with vertical or diagonal stripes.

Command line (saves a small .npz and .json under ``results/``)::

    python -m bilevel_lib.blorc --help
    python -m bilevel_lib.blorc --signal piecewise             # a small run, about a minute
    python -m bilevel_lib.blorc --signal piecewise --full      # the paper: 4000 pairs, 750 epochs

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy.optimize import linear_sum_assignment

from . import data
from ._checks import as_float_array, positive_scalar
from .metrics import psnr_db
from .single_level import l1_hypergradient, solve_l1_denoising

__all__ = [
    "BlorcSettings",
    "BlorcResult",
    "SIGNALS",
    "PAPER_SETTINGS",
    "FULL_SETTINGS",
    "BOOK_SETTINGS",
    "make_pairs",
    "piecewise_signals",
    "dct_signals",
    "stripe_patches",
    "finite_difference_matrix",
    "dct_matrix",
    "train_blorc",
    "denoise",
    "mean_psnr",
    "best_scale",
    "match_rows",
    "run",
    "results_dir",
    "load_run",
    "main",
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
        _check_decay_epochs(self.lr_decay_epochs, self.epochs)
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be ≥ 0; got {self.sigma!r}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"threshold must be ≥ 0; got {self.threshold!r}")


def _check_decay_epochs(decay_epochs, epochs) -> tuple:
    decay = tuple(decay_epochs)
    if any(int(e) != e or not 0 < e < epochs for e in decay) or list(decay) != sorted(set(decay)):
        raise ValueError(f"lr_decay_epochs must be increasing epoch numbers in 1…{epochs - 1}; got {decay_epochs!r}")
    return tuple(int(e) for e in decay)


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


def finite_difference_matrix(n: int) -> np.ndarray:
    """The (n−1)×n forward-difference matrix, (D x)_i = x_{i+1} − x_i (no wrap-around)."""
    return np.eye(n - 1, n, 1) - np.eye(n - 1, n)


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix, rows = atoms of increasing frequency."""
    return sfft.dct(np.eye(n), norm="ortho", axis=0)


# ----------------------------------------------------------------------------- training
@dataclass
class BlorcResult:
    """Outcome of :func:`train_blorc`.

    Attributes
    ----------
    W : array (k, n)            the learned transform
    W_init : array (k, n)       where it started
    batch_loss : array          training loss of every minibatch (before its step)
    epoch_loss : array (E,)     mean batch loss per epoch
    test_psnr : array (E+1,)    mean test PSNR before training and after each epoch (if test data)
    seconds : float             wall time of the training loop
    fista_iterations : int      total accelerated-gradient iterations of the lower level
    active_set_rounds : int     total closed-form (active-set) rounds of the lower level
    """

    W: np.ndarray
    W_init: np.ndarray
    batch_loss: np.ndarray
    epoch_loss: np.ndarray
    test_psnr: np.ndarray
    seconds: float
    fista_iterations: int = 0
    active_set_rounds: int = 0
    settings: dict = field(default_factory=dict)


def train_blorc(x_train, y_train, *, W0=None, epochs: int = 10, batch_size: int = 100, lr: float = 1e-4,
                threshold: float = 1e-3, seed: int = 0, x_test=None, y_test=None, progress: bool = False,
                optimizer: str = "gd", callback=None, lr_decay_epochs=()) -> BlorcResult:
    """Minibatch gradient descent on ℓ(W) with BLORC's closed-form gradients (paper Sec. 3).

    Parameters
    ----------
    x_train, y_train : arrays (M, n)   clean and noisy training signals
    W0 : array (k, n), optional        initial transform (default: the identity, as in the paper)
    epochs, batch_size, lr             passes over the data, pairs per step, step size α
    threshold : float                  zero-set threshold γ on |W x*| (the solver is exact, so any
                                       γ ≥ 1e-12 is above its accuracy; the paper uses 1e-3)
    seed : int                         shuffling of the pairs every epoch
    x_test, y_test : arrays, optional  for the test PSNR after every epoch
    progress : bool                    show a tqdm progress bar over the steps
    optimizer : {"gd", "adam"}         plain gradient descent (the paper) or Adam (default moments
                                       0.9, 0.999), whose per-entry steps cope better with the
                                       badly scaled start W = I
    callback : callable, optional      called as callback(epoch, W) after every epoch
    lr_decay_epochs : sequence of int  the step α is divided by 10 at the start of each of these
                                       epochs (counted from 0), e.g. (650, 700) for the full run
    """
    x_train = as_float_array(x_train, "x_train", ndim=2)
    y_train = as_float_array(y_train, "y_train", ndim=2)
    if x_train.shape != y_train.shape:
        raise ValueError(f"x_train and y_train must have the same shape; got {x_train.shape} and {y_train.shape}")
    M, n = x_train.shape
    W = np.eye(n) if W0 is None else as_float_array(W0, "W0", ndim=2).copy()
    if W.shape[1] != n:
        raise ValueError(f"W0 must have n = {n} columns; got shape {W.shape}")
    lr = positive_scalar(lr, "lr")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    decay_epochs = _check_decay_epochs(lr_decay_epochs, epochs)
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"optimizer must be 'gd' or 'adam'; got {optimizer!r}")
    test = x_test is not None and y_test is not None
    rng = np.random.default_rng(seed)
    first_moment, second_moment, step_count = np.zeros_like(W), np.zeros_like(W), 0
    duals = np.zeros((M, W.shape[0]))
    W_init = W.copy()
    batch_loss, epoch_loss = [], []
    test_psnr = [mean_psnr(W, x_test, y_test)] if test else []
    steps = epochs * int(np.ceil(M / batch_size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="BLORC", unit="step", mininterval=1.0)
    iterations = rounds = 0
    warm_first = True   # try each pair's previous active set first while that keeps working
    start = time.perf_counter()
    for epoch in range(epochs):
        if epoch in decay_epochs:
            lr /= 10
        order = rng.permutation(M)
        losses = []
        for first in range(0, M, batch_size):
            batch = order[first:first + batch_size]
            result, solve = l1_hypergradient(y_train[batch], x_train[batch], W, d0=duals[batch],
                                             threshold=threshold, active_set_first=warm_first)
            duals[batch] = solve.d
            if warm_first and epoch > 0:
                warm_first = solve.warm_accepted >= 0.5 * batch.size
            iterations += solve.iterations
            rounds += solve.active_set_iterations
            losses.append(result.loss)
            if optimizer == "gd":
                W -= lr * result.gradient
            else:                                   # Adam (Kingma & Ba), bias-corrected
                step_count += 1
                first_moment = 0.9 * first_moment + 0.1 * result.gradient
                second_moment = 0.999 * second_moment + 0.001 * result.gradient**2
                W -= lr * (first_moment / (1 - 0.9**step_count)) / (
                    np.sqrt(second_moment / (1 - 0.999**step_count)) + 1e-8)
            if bar is not None:
                bar.update(1)
        batch_loss.extend(losses)
        epoch_loss.append(float(np.mean(losses)))
        if test:
            test_psnr.append(mean_psnr(W, x_test, y_test))
        if bar is not None:
            bar.set_postfix(loss=f"{epoch_loss[-1]:.4f}", psnr=f"{test_psnr[-1]:.2f}" if test else "-")
        if callback is not None:
            callback(epoch, W)
    if bar is not None:
        bar.close()
    return BlorcResult(W=W, W_init=W_init, batch_loss=np.array(batch_loss), epoch_loss=np.array(epoch_loss),
                       test_psnr=np.array(test_psnr), seconds=time.perf_counter() - start,
                       fista_iterations=iterations, active_set_rounds=rounds)


def denoise(W, y) -> np.ndarray:
    """x*(W) for every row of y (exact ℓ1 solve)."""
    return solve_l1_denoising(y, W).x


def mean_psnr(W, x, y) -> float:
    """Mean PSNR (dB, peak = max|x_true| per signal) of the ℓ1 denoiser with transform W."""
    return float(np.mean(psnr_db(denoise(W, y), x, per_image=True)))


def best_scale(transform, x, y, scales=None) -> tuple[float, np.ndarray]:
    """Scale β of a fixed transform T maximising the mean PSNR of x*(βT) on (x, y); returns (β, PSNRs).

    A grid search, so the baseline gets its regularisation strength tuned like the learned W.
    """
    scales = np.geomspace(0.01, 1.0, 41) if scales is None else np.asarray(scales, dtype=float)
    values = np.array([mean_psnr(s * transform, x, y) for s in scales])
    return float(scales[int(np.argmax(values))]), values


def match_rows(W, reference) -> tuple[np.ndarray, np.ndarray]:
    """Reorder and sign-flip the rows of W to best match the rows of ``reference`` (|correlation|).

    Returns (matched W, correlation per matched row); used to compare a learned W with the DCT,
    as the paper does for its Fig. 1(d).
    """
    W = as_float_array(W, "W", ndim=2)
    reference = as_float_array(reference, "reference", ndim=2)
    unit = lambda A: A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
    correlation = unit(reference) @ unit(W).T                   # (rows of reference, rows of W)
    rows, cols = linear_sum_assignment(-np.abs(correlation))
    signs = np.sign(correlation[rows, cols])
    return W[cols] * signs[:, None], np.abs(correlation[rows, cols])


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
    return Path(__file__).resolve().parents[1] / "results"


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
