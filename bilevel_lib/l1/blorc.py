r"""BLORC: bilevel learning of an ℓ1 analysis transform W with closed-form gradients.

Ghosh, McCann & Ravishankar (ICASSP 2022), Sec. 3–4; review Sec. 4.3.  The upper level is the
training loss ℓ(W) = (1/J) Σ_j ½‖x\*_j(W) − x_true_j‖², the lower level is the exact ℓ1 denoiser of
:mod:`bilevel_lib.l1.exact`, and every step of minibatch gradient descent

1. solves the lower level for the batch exactly (warm-started from each pair's previous dual),
2. thresholds W x* to get the sign pattern (the zero set W0 and the signs s),
3. applies Lemma 1 (eqs. 7–8, :func:`~bilevel_lib.l1.gradients.l1_hypergradient`, a
   :class:`~bilevel_lib.hypergrad.result.HypergradientResult`) and averages over the batch, then W ← W − α ∇ℓ.
   Steps whose result is not converged are counted in ``unconverged_steps``.

W starts at the identity and the pairs are shuffled every epoch, as in the paper.  The strength of
the regulariser is part of W (‖βWx‖₁ = β‖Wx‖₁), so nothing else is learned.  The paper's data sets,
presets and the command line are in :mod:`bilevel_lib.experiments.blorc`.

Introduced in the chapter "Translation to a single level".
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.optimize import linear_sum_assignment

from ..hypergrad.result import HypergradientResult
from ..problem.metrics import psnr_db
from ..solvers.lower import ConvergenceWarning
from ..util.progress import progress_bar
from ..util.validation import check_count
from .exact import (
    DEFAULT_THRESHOLD,
    check_finite,
    check_threshold,
    count,
    flag,
    real_array,
    real_number,
    solve_l1_denoising,
)
from .gradients import l1_hypergradient

__all__ = [
    "BlorcResult",
    "train_blorc",
    "denoise",
    "mean_psnr",
    "best_scale",
    "match_rows",
    "finite_difference_matrix",
    "dct_matrix",
    "check_decay_epochs",
    "TRAINING_THRESHOLD",
    "PAPER_THRESHOLD",
]

#: The default zero-set threshold of :func:`train_blorc`, that of the exact solver
#: (:data:`~bilevel_lib.l1.exact.DEFAULT_THRESHOLD`, 1e-8).  Safe because the solver it uses is
#: exact.  A polished signal's \|(W x*)_i\| in the zero set is at rounding level (≤ 2e-15 on the
#: book's trained W), seven orders below; a signal left unpolished is certified to ‖x − x*‖ ≤ 1e-10,
#: so \|(W x)_i\| errs by at most 1e-10·‖w_i‖, still 100 times below for rows of norm ≤ 1.  And it is
#: far below the smallest genuine non-zeros (≥ 1e-5 on the book's trained W).  The measurement is
#: ``tests/lib/test_blorc.py::test_training_default_threshold_is_safe_on_a_trained_W``.
TRAINING_THRESHOLD = DEFAULT_THRESHOLD
#: The paper's threshold (Ghosh et al. 2022, Sec. 4.1), for runs that reproduce the paper only.  On a
#: trained W genuine non-zeros of \|W x*\| fall below it, the zero set is misread and the gradient
#: is that of another sign pattern (see the chapter "Translation to a single level").
PAPER_THRESHOLD = 1e-3


def check_decay_epochs(decay_epochs, epochs) -> tuple:
    """The epochs at which :func:`train_blorc` divides its step by 10, checked: increasing integers in 1 … epochs − 1.

    Returns them as a tuple of ints; raises ``ValueError`` naming ``lr_decay_epochs`` otherwise.
    """
    epochs = check_count(epochs, "epochs")
    try:
        decay = tuple(decay_epochs)
    except TypeError as err:
        raise TypeError(f"lr_decay_epochs must be a sequence of epoch numbers; got {decay_epochs!r}") from err
    if any(isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer, float, np.floating)) for e in decay):
        raise TypeError(f"lr_decay_epochs must hold integers; got {decay_epochs!r}")
    if any(not np.isfinite(e) or int(e) != e or not 0 < e < epochs for e in decay) or list(decay) != sorted(set(decay)):
        raise ValueError(f"lr_decay_epochs must be increasing epoch numbers in 1…{epochs - 1}; got {decay_epochs!r}")
    return tuple(int(e) for e in decay)


def finite_difference_matrix(n: int) -> np.ndarray:
    """The (n−1)×n forward-difference matrix, (D x)_i = x_{i+1} − x_i (no wrap-around); n ≥ 2."""
    n = count(n, "n", minimum=2)
    return np.eye(n - 1, n, 1) - np.eye(n - 1, n)


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix, rows = atoms of increasing frequency; n ≥ 1."""
    n = count(n, "n")
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
    unconverged_steps : int     steps whose gradient reported ``converged=False`` (lower level not
                                solved, or the threshold's sign pattern is not the minimiser's:
                                its closed-form x differs from the solver's x)
    unconverged_message : str   the message of the first such step ("" if none)
    estimator : str             the method of the gradients (``HypergradientResult.method``)
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
    unconverged_steps: int = 0
    unconverged_message: str = ""
    estimator: str = ""


def train_blorc(
    x_train,
    y_train,
    *,
    W0=None,
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 1e-4,
    threshold: float | None = None,
    seed: int = 0,
    x_test=None,
    y_test=None,
    progress: bool = False,
    optimizer: str = "gd",
    callback=None,
    lr_decay_epochs=(),
    estimator=None,
    estimator_settings: dict | None = None,
    warn: bool = True,
) -> BlorcResult:
    r"""Minibatch gradient descent on ℓ(W) with BLORC's closed-form gradients (paper Sec. 3).

    Parameters
    ----------
    x_train, y_train : arrays (M, n)   clean and noisy training signals
    W0 : array (k, n), optional        initial transform (default: the identity, as in the paper)
    epochs, batch_size, lr             passes over the data, pairs per step, step size α
    threshold : float, optional        zero-set threshold γ on \|W x*\| of the default estimator;
                                       default :data:`TRAINING_THRESHOLD` (1e-8), safe for the exact
                                       solver (see there).  The paper's 1e-3 (:data:`PAPER_THRESHOLD`)
                                       misreads small genuine non-zeros once W is trained
    seed : int                         shuffling of the pairs every epoch
    x_test, y_test : arrays, optional  for the test PSNR after every epoch
    progress : bool                    show a tqdm progress bar over the steps
    optimizer : {"gd", "adam"}         plain gradient descent (the paper) or Adam (default moments
                                       0.9, 0.999), whose per-entry steps cope better with the
                                       badly scaled start W = I
    callback : callable, optional      called as callback(epoch, W) after every epoch
    lr_decay_epochs : sequence of int  the step α is divided by 10 at the start of each of these
                                       epochs (counted from 0), e.g. (650, 700) for the full run
    estimator : callable, optional     ``estimator(y, x_true, W, **estimator_settings) ->
                                       HypergradientResult``, any ℓ1 estimator of the contract, e.g.
                                       :func:`~bilevel_lib.l1.gradients.smoothed_hypergradient`,
                                       :func:`~bilevel_lib.l1.gradients.finite_difference_l1_hypergradient`
                                       or :func:`~bilevel_lib.l1.cvx.cvx_l1_hypergradient`.  Default:
                                       BLORC's closed form
                                       (:func:`~bilevel_lib.l1.gradients.l1_hypergradient`), warm-started
                                       from every pair's previous dual and active set; ``threshold``
                                       configures it only (give an estimator's own settings in
                                       ``estimator_settings``).  Steps whose result says
                                       ``converged=False`` are counted in ``unconverged_steps``.
    estimator_settings : dict, optional  keyword arguments for ``estimator``
    warn : bool                        after training, one :class:`~bilevel_lib.solvers.lower.ConvergenceWarning`
                                       if some step's gradient was not converged (the count and the
                                       first message are in the result either way)
    """
    x_train = real_array(x_train, "x_train", ndim=2)
    y_train = real_array(y_train, "y_train", ndim=2)
    if x_train.shape != y_train.shape:
        raise ValueError(f"x_train and y_train must have the same shape; got {x_train.shape} and {y_train.shape}")
    M, n = x_train.shape
    if M == 0 or n == 0:
        raise ValueError(f"x_train must hold at least one signal of at least one sample; got shape {x_train.shape}")
    W = np.eye(n) if W0 is None else real_array(W0, "W0", ndim=2).copy()
    if W.shape[1] != n or W.shape[0] == 0:
        raise ValueError(f"W0 must have n = {n} columns and at least one row; got shape {W.shape}")
    lr = real_number(lr, "lr", maximum=1e6)
    epochs = count(epochs, "epochs")
    batch_size = count(batch_size, "batch_size")
    seed = count(seed, "seed", minimum=0)
    progress = flag(progress, "progress")
    warn = flag(warn, "warn")
    decay_epochs = check_decay_epochs(lr_decay_epochs, epochs)
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")
    if x_test is not None:
        x_test = real_array(x_test, "x_test", ndim=2)
        y_test = real_array(y_test, "y_test", ndim=2)
        if x_test.shape != y_test.shape or x_test.shape[1:] != (n,) or x_test.shape[0] == 0:
            raise ValueError(
                f"x_test and y_test must have the same shape (J, {n}), J ≥ 1; got {x_test.shape} and {y_test.shape}"
            )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable(epoch, W); got {type(callback).__name__}")
    if estimator_settings is not None and not isinstance(estimator_settings, dict):
        raise TypeError(f"estimator_settings must be a dict; got {type(estimator_settings).__name__}")
    if not isinstance(optimizer, str) or optimizer not in ("gd", "adam"):
        raise ValueError(f"optimizer must be 'gd' or 'adam'; got {optimizer!r}")
    if estimator is not None and threshold is not None:
        raise ValueError(
            "threshold configures the default estimator; give a custom estimator's settings in estimator_settings"
        )
    if estimator is None and estimator_settings is not None:
        raise ValueError("estimator_settings need an estimator")
    if estimator is not None and not callable(estimator):
        raise TypeError(f"estimator must be callable(y, x_true, W, **settings); got {type(estimator).__name__}")
    threshold = TRAINING_THRESHOLD if threshold is None else check_threshold(threshold)
    test = x_test is not None and y_test is not None
    rng = np.random.default_rng(seed)
    first_moment, second_moment, step_count = np.zeros_like(W), np.zeros_like(W), 0
    duals = np.zeros((M, W.shape[0]))
    W_init = W.copy()
    batch_loss, epoch_loss = [], []
    test_psnr = [mean_psnr(W, x_test, y_test)] if test else []
    steps = epochs * int(np.ceil(M / batch_size))
    bar = progress_bar(steps, True, "BLORC", unit="step", mininterval=1.0, leave=True) if progress else None
    iterations = rounds = unconverged = 0
    method = ""
    first_message = ""
    warm_first = True  # try each pair's previous active set first while that keeps working
    start = time.perf_counter()
    for epoch in range(epochs):
        if epoch in decay_epochs:
            lr /= 10
        order = rng.permutation(M)
        losses = []
        for first in range(0, M, batch_size):
            batch = order[first : first + batch_size]
            if estimator is None:
                result = l1_hypergradient(
                    y_train[batch],
                    x_train[batch],
                    W,
                    d0=duals[batch],
                    threshold=threshold,
                    active_set_first=warm_first,
                    warn=False,
                )
                solve = result.state["solve"]
                duals[batch] = solve.d
                if warm_first and epoch > 0:
                    warm_first = solve.warm_accepted >= 0.5 * batch.size
                iterations += solve.iterations
                rounds += solve.active_set_iterations
            else:
                result = estimator(y_train[batch], x_train[batch], W, **(estimator_settings or {}))
                if not isinstance(result, HypergradientResult):
                    raise TypeError(
                        f"estimator must return a HypergradientResult; {getattr(estimator, '__name__', estimator)!r} "
                        f"returned {type(result).__name__}"
                    )
                if np.shape(result.gradient) != W.shape:
                    raise ValueError(
                        f"estimator's gradient must have W's shape {W.shape}; got {np.shape(result.gradient)}"
                    )
                iterations += int(result.lower_iterations)
            method = result.method
            if not result.converged:
                unconverged += 1
                first_message = first_message or f"epoch {epoch}, step at pair {first}: {result.message}"
            if not np.all(np.isfinite(result.gradient)) or not np.isfinite(result.loss):
                raise FloatingPointError(
                    f"train_blorc: non-finite gradient or loss at epoch {epoch}, step at pair {first} "
                    f"({result.method}: {result.message}); lower the step lr or check the data"
                )
            losses.append(result.loss)
            if optimizer == "gd":
                W -= lr * result.gradient
            else:  # Adam (Kingma & Ba), bias-corrected
                step_count += 1
                first_moment = 0.9 * first_moment + 0.1 * result.gradient
                second_moment = 0.999 * second_moment + 0.001 * result.gradient**2
                W -= (
                    lr
                    * (first_moment / (1 - 0.9**step_count))
                    / (np.sqrt(second_moment / (1 - 0.999**step_count)) + 1e-8)
                )
            check_finite(
                "train_blorc",
                f"in W after the step at epoch {epoch}, pair {first}",
                f"the step lr = {lr:g} is too large for this gradient",
                W,
            )
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
    if warn and unconverged:
        warnings.warn(
            f"train_blorc: {unconverged} of {len(batch_loss)} steps used a gradient that was not converged; "
            f"first: {first_message}",
            ConvergenceWarning,
            stacklevel=2,
        )
    return BlorcResult(
        W=W,
        W_init=W_init,
        batch_loss=np.array(batch_loss),
        epoch_loss=np.array(epoch_loss),
        test_psnr=np.array(test_psnr),
        seconds=time.perf_counter() - start,
        fista_iterations=iterations,
        active_set_rounds=rounds,
        unconverged_steps=unconverged,
        unconverged_message=first_message,
        estimator=method,
    )


def denoise(W, y) -> np.ndarray:
    r"""x\*(W) for every row of y (exact ℓ1 solve; a :class:`~bilevel_lib.solvers.lower.ConvergenceWarning` if not solved)."""
    return solve_l1_denoising(y, W).x


def mean_psnr(W, x, y) -> float:
    r"""Mean PSNR (dB, peak = max\|x_true\| per signal) of the ℓ1 denoiser with transform W."""
    x = real_array(x, "x", min_ndim=1)
    y = real_array(y, "y", min_ndim=1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got {x.shape} and {y.shape}")
    return float(np.mean(psnr_db(denoise(W, y), x, per_image=True)))


def best_scale(transform, x, y, scales=None) -> tuple[float, np.ndarray]:
    r"""Scale β of a fixed transform T maximising the mean PSNR of x\*(βT) on (x, y); returns (β, PSNRs).

    A grid search, so the baseline gets its regularisation strength tuned like the learned W.
    """
    transform = real_array(transform, "transform", ndim=2)
    scales = np.geomspace(0.01, 1.0, 41) if scales is None else real_array(scales, "scales", ndim=1)
    if scales.size == 0 or np.any(scales < 0):
        raise ValueError(f"scales must be a non-empty 1-D array of numbers ≥ 0; got {scales!r}")
    values = np.array([mean_psnr(s * transform, x, y) for s in scales])
    return float(scales[int(np.argmax(values))]), values


def match_rows(W, reference) -> tuple[np.ndarray, np.ndarray]:
    r"""Reorder and sign-flip the rows of W to best match the rows of ``reference`` (\|correlation\|).

    Returns (matched W, correlation per matched row); used to compare a learned W with the DCT,
    as the paper does for its Fig. 1(d).
    """
    W = real_array(W, "W", ndim=2)
    reference = real_array(reference, "reference", ndim=2)
    if reference.shape[1] != W.shape[1] or 0 in W.shape or 0 in reference.shape:
        raise ValueError(
            f"reference must have W's columns, both at least one row; got {reference.shape} and W {W.shape}"
        )
    unit = lambda A: A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-300)
    correlation = unit(reference) @ unit(W).T  # (rows of reference, rows of W)
    rows, cols = linear_sum_assignment(-np.abs(correlation))
    signs = np.sign(correlation[rows, cols])
    return W[cols] * signs[:, None], np.abs(correlation[rows, cols])
