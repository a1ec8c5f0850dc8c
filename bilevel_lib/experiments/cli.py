"""The one command line of the book's full-size experiments: python -m bilevel_lib.

    python -m bilevel_lib list                      # the experiments, their results and whether they are saved
    python -m bilevel_lib bars                      # review Fig. 1.3, U = 4000, T = 50, the authors' draws
    python -m bilevel_lib bars --draws numpy --seed 1 --filter-seed 3   # another noise and start
    python -m bilevel_lib cameraman-beta            # review Fig. 6.1b, β only
    python -m bilevel_lib cameraman-filters         # review Fig. 6.1c, filters and β
    python -m bilevel_lib cameraman-full            # review Fig. 6.2, the whole image: learned γ, tuned TV, BM3D
    python -m bilevel_lib blorc --signal piecewise  # BLORC, the book's small setting (about a minute)
    python -m bilevel_lib blorc --signal piecewise --full   # BLORC, the paper's Sec. 4.1 (about an hour)
    python -m bilevel_lib frontier                  # every hypergradient estimator on three problems
    python -m bilevel_lib losses                    # β trained with the squared error, Huber and 1 − SSIM
    python -m bilevel_lib inpainting                # learned strengths vs tuned TV for a 60 % pixel mask
    python -m bilevel_lib penalties                 # β (and filters) learned with CR1N vs the non-convex log(1 + z²/ε²)
    python -m bilevel_lib maid-hoag                 # MAID vs three HOAG schedules, same work, 24 filters learned
    python -m bilevel_lib deblurring                # β and 3×3 filters learned for denoising and for deblurring
    python -m bilevel_lib deblurring --size 50 --out results/deblurring-50   # the same on the whole 50×50 patches
    python -m bilevel_lib bars --steps 400 --out /tmp/bars  # writes /tmp/bars.npz and /tmp/bars.json

Each run shows a progress bar (``--quiet``: none), prints its figures of merit and run time, and
saves its result through :mod:`bilevel_lib.experiments.store`: ``results/<name>.npz`` (arrays) and
``results/<name>.json`` (settings, command, run time, versions, machine, date, figures of merit) in
the repository, or at ``--out`` (a path stem; an existing folder, or a path ending in ``/``, takes
the result under its default name).  Before any work, every option is checked (a count must be a
positive integer, a seed a non-negative one, a rate a finite positive number; an option that does
not apply is refused by name) and so is the target: it must be writable, and an existing result is
never overwritten without ``--force``.  The path printed is the path written.  A run that fails or
is interrupted (Ctrl-C: exit status 130) saves nothing.  ``reproduce NAME …`` is an alias of ``NAME …``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from . import beyond_mse, blorc, deblurring, full_image, maid_hoag, recipes, store

__all__ = ["main"]

PROG = "python -m bilevel_lib"
DESCRIPTION = """\
Run the book's full-size experiments.  Each run saves NAME.npz (arrays) and NAME.json (settings,
the command, run time, versions, machine, date, figures of merit) in the repository's results/
folder, or at --out; a result is never overwritten without --force."""

#: the upper steps U and lower iterations T of ``deblurring`` (chosen where the training loss has flattened)
DEBLURRING_STEPS, DEBLURRING_LOWER = 4000, 30

#: Every full-size experiment, by subcommand, with what it is and its defaults
EXPERIMENTS = {
    "bars": dict(
        help="vertical bars, 4 random 4×2 filters and β (review Fig. 1.3, App. D.1); about 1 min",
        steps=4000,
        lower=50,
        result="bars",
    ),
    "cameraman-beta": dict(
        help="cameraman patches, β of 48 DCT 7×7 filters (review Fig. 6.1b); about 3 min",
        steps=10_000,
        lower=10,
        result="cameraman-beta",
    ),
    "cameraman-filters": dict(
        help="cameraman patches, filters and β (review Fig. 6.1c); about 12 min",
        steps=10_000,
        lower=10,
        result="cameraman-filters",
    ),
    "cameraman-full": dict(
        help="the whole 512×512 cameraman image denoised with the learned β only and filters + β, "
        "TV with β0 tuned on a grid, and BM3D, all on one noise draw (review Fig. 6.2; Ch. 'Case studies'); "
        "about 4 min",
        max_iter=1500,
        result="cameraman-full",
    ),
    "blorc": dict(
        help="BLORC: learn an ℓ1 analysis transform W (Ghosh et al. 2022); the book's small "
        "setting, or --full for the paper's (about an hour)",
        result="blorc_<signal>[_full]",
    ),
    "frontier": dict(
        help="every hypergradient estimator over its accuracy knob on three problems: error, time, "
        "memory, work (Ch. 'Choosing a hypergradient'); a few minutes",
        result="frontier",
    ),
    "losses": dict(
        help="cameraman patches, β of 24 DCT 5×5 filters trained with the squared error, Huber and 1 − SSIM, "
        "scored on held-out patches (review Sec. 3.1; Ch. 'Other losses and inpainting'); about 10 min",
        steps=2000,
        lower=10,
        result="losses",
    ),
    "inpainting": dict(
        help="cameraman patches with 60 percent of the pixels missing: learned β of the 3×3 DCT bank vs tuned TV "
        "(Ch. 'Other losses and inpainting'); about 2 min",
        steps=1000,
        lower=20,
        result="inpainting",
    ),
    "penalties": dict(
        help="cameraman patches, β of 24 DCT 5×5 filters (and, in a second run, the filters too) learned "
        "with CR1N and with the non-convex log(1 + z²/ε²) (ε from a grid), the Hessian checked at x̂ "
        "(review Sec. 6; Ch. 'Other losses and inpainting'); about 5 min",
        steps=600,
        lower=10,
        result="penalties",
    ),
    "maid-hoag": dict(
        help="64×64 cameraman crops, 24 DCT 5×5 filters and their strengths learned by MAID and by HOAG "
        "with three tolerance schedules, the same work for each, scored on held-out crops (the MAID "
        "slides' comparison; Ch. 'Single- vs double-loop algorithms'); about 10 min",
        budget=10_000,
        result="maid-hoag",
    ),
    "deblurring": dict(
        help="three 32×32 cameraman crops, a 5×5 Gaussian blur: β and the 3×3 DCT filters learned for denoising "
        "and for deblurring, the crossover against tuned TV on held-out noise and held-out crops (Ch. 'Case "
        "studies', case (c)); about 4 min (--size 50: about 6 min)",
        steps=DEBLURRING_STEPS,
        lower=DEBLURRING_LOWER,
        result="deblurring",
    ),
}


def _integer(text: str, smallest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if value < smallest:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text}")
    return value


def _positive_int(text: str) -> int:
    """A count: an integer ≥ 1 (argparse type; the error names the option)."""
    return _integer(text, 1, "a positive integer")


def _seed(text: str) -> int:
    """A seed: an integer ≥ 0."""
    return _integer(text, 0, "a non-negative integer (a seed)")


def _real(text: str, positive: bool) -> float:
    what = "a finite number > 0" if positive else "a finite number ≥ 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text}")
    return value


def _positive_real(text: str) -> float:
    """A rate or a scale: a finite number > 0."""
    return _real(text, True)


def _nonnegative_real(text: str) -> float:
    """A threshold: a finite number ≥ 0."""
    return _real(text, False)


def _epilog() -> str:
    return "\n".join(
        [
            "examples:",
            f"  {PROG} list                                # the experiments and which results are saved",
            f"  {PROG} bars                                # review Fig. 1.3, saved to results/bars.{{npz,json}}",
            f"  {PROG} bars --steps 400 --out /tmp/bars    # writes /tmp/bars.npz and /tmp/bars.json",
            f"  {PROG} blorc --signal piecewise --full     # BLORC, the paper's setting",
            f"  {PROG} NAME --help                         # the options of one experiment",
            "",
            "'reproduce NAME ...' is an alias of 'NAME ...'.",
        ]
    )


def _add_common(parser: argparse.ArgumentParser, default_result: str) -> None:
    parser.add_argument(
        "--out",
        metavar="STEM",
        help=f"where to save: writes STEM.npz and STEM.json (a trailing .npz or .json is dropped; an "
        f"existing folder, or a path ending in /, gets {default_result}.npz and .json inside it; "
        f"default: results/{default_result} in the repository)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing result (default: refuse)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: a progress bar)")


def _add_training(sub, name: str) -> None:
    spec = EXPERIMENTS[name]
    parser = sub.add_parser(name, help=spec["help"], description=spec["help"])
    parser.add_argument(
        "--steps", type=_positive_int, default=spec["steps"], help=f"upper-level steps U (default {spec['steps']})"
    )
    parser.add_argument(
        "--lower-iterations",
        type=_positive_int,
        default=spec["lower"],
        help=f"warm-started OGM iterations T per step (default {spec['lower']})",
    )
    if name == "bars":
        parser.add_argument(
            "--draws",
            choices=("julia", "numpy"),
            default="julia",
            help="'julia': the noise and random filters of the authors' script (Julia 1.7, "
            "seed!(--seed)); 'numpy': noise from --seed, filters from --filter-seed (default julia)",
        )
        parser.add_argument(
            "--seed",
            type=_seed,
            default=0,
            help="the seed of Julia's seed! (--draws julia) or of the noise (--draws numpy) (default 0)",
        )
        parser.add_argument(
            "--filter-seed",
            type=_seed,
            default=None,
            help=f"the random-filter seed; --draws numpy only (default {FILTER_SEED})",
        )
    else:
        parser.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    _add_common(parser, spec["result"])


#: the random-filter seed of ``bars --draws numpy`` when --filter-seed is not given
FILTER_SEED = 1

#: the options of ``blorc`` that override a field of its settings: option → (field, type, what it is)
BLORC_FIELDS = {
    "--n": ("n", _positive_int, "signal length (a square for stripes)"),
    "--pairs": ("n_train", _positive_int, "training pairs"),
    "--test": ("n_test", _positive_int, "test signals"),
    "--sigma": ("sigma", _positive_real, "noise standard deviation"),
    "--batch": ("batch_size", _positive_int, "batch size"),
    "--epochs": ("epochs", _positive_int, "epochs (the preset's decays keep their fractions of the run)"),
    "--lr": ("lr", _positive_real, "step size α"),
    "--threshold": ("threshold", _nonnegative_real, "zero-set threshold γ"),
    "--seed": ("seed", _seed, "random seed of the data and the batches"),
    "--lr-decay-epochs": ("lr_decay_epochs", _positive_int, "divide the step by 10 at the start of these epochs"),
}


def _preset_value(value) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_blorc(sub) -> None:
    parser = sub.add_parser(
        "blorc",
        help=EXPERIMENTS["blorc"]["help"],
        description="Learn an ℓ1 analysis transform W by BLORC (closed-form gradients, exact "
        "lower level).  Defaults: the book's small setting (400 pairs, batch 20, "
        "25 epochs, α = 1e-2); --full: the paper's Sec. 4.1.  Each other option "
        "overrides the preset.",
    )
    parser.add_argument(
        "--signal", choices=blorc.SIGNALS, default="piecewise", help="training signals (default piecewise)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="paper settings (4000 pairs, batch 100, 750 epochs, threshold 1e-3) with lr 1e-2 "
        "for the batch-mean gradient (the printed 1e-4 hardly moves W), divided by 10 at "
        "epochs 650 and 700; about an hour (default: the book's small setting)",
    )
    for option, (field, kind, text) in BLORC_FIELDS.items():
        book, full = (_preset_value(getattr(preset, field)) for preset in (blorc.BOOK_SETTINGS, blorc.FULL_SETTINGS))
        default = f"default {book}" + (f"; with --full {full}" if full != book else "")
        extra = dict(nargs="*", metavar="EPOCH") if field == "lr_decay_epochs" else {}
        more = "; give none for a constant step" if field == "lr_decay_epochs" else ""
        parser.add_argument(option, type=kind, default=None, help=f"{text} ({default}{more})", **extra)
    _add_common(parser, EXPERIMENTS["blorc"]["result"])
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help="the same as --quiet (default off)")


def _add_frontier(sub) -> None:
    spec = EXPERIMENTS["frontier"]
    parser = sub.add_parser("frontier", help=spec["help"], description=spec["help"])
    parser.add_argument(
        "--size", type=_positive_int, default=24, help="side of the 2-D image patches, 4 to 45 (default 24)"
    )
    parser.add_argument(
        "--l1-size", type=_positive_int, default=24, help="length of the 1-D ℓ1 signals, 4 to 45 (default 24)"
    )
    parser.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    parser.add_argument(
        "--repeat", type=_positive_int, default=1, help="timed runs per setting, the shortest kept (default 1)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the scaled-down sweep of the chapter's live run (default: the full one)"
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the tracemalloc run (default: measure memory)"
    )
    _add_common(parser, spec["result"])


def _add_beyond_mse(sub, name: str) -> None:
    spec = EXPERIMENTS[name]
    parser = sub.add_parser(name, help=spec["help"], description=spec["help"])
    parser.add_argument(
        "--steps", type=_positive_int, default=spec["steps"], help=f"upper-level steps U (default {spec['steps']})"
    )
    parser.add_argument(
        "--lower-iterations",
        type=_positive_int,
        default=spec["lower"],
        help=f"warm-started OGM iterations T per step (default {spec['lower']})",
    )
    what = "noise (and mask) seed" if name == "inpainting" else "noise seed"
    parser.add_argument("--seed", type=_seed, default=0, help=f"{what} (default 0)")
    if name == "deblurring":
        parser.add_argument(
            "--size",
            type=_positive_int,
            default=32,
            help="side of the training crops and of the held-out crops, 16 to 50 (default 32)",
        )
    if name == "inpainting":
        parser.add_argument(
            "--missing", type=_positive_real, default=0.6, help="fraction of missing pixels, at most 0.95 (default 0.6)"
        )
    _add_common(parser, spec["result"])


def _add_full_image(sub) -> None:
    spec = EXPERIMENTS["cameraman-full"]
    parser = sub.add_parser("cameraman-full", help=spec["help"], description=spec["help"])
    parser.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    parser.add_argument(
        "--max-iter",
        type=_positive_int,
        default=spec["max_iter"],
        help=f"OGM iterations allowed per lower-level solve, each run to ‖∇Φ‖/√N < 1e-5; a solve that "
        f"needs more is an error (default {spec['max_iter']})",
    )
    parser.add_argument(
        "--no-bm3d",
        dest="bm3d",
        action="store_false",
        help=f"leave BM3D out (default: run it; it needs the bm3d package, {full_image.BM3D_INSTALL})",
    )
    _add_common(parser, spec["result"])


def _add_maid_hoag(sub) -> None:
    spec = EXPERIMENTS["maid-hoag"]
    parser = sub.add_parser("maid-hoag", help=spec["help"], description=spec["help"])
    parser.add_argument(
        "--budget",
        type=_positive_int,
        default=spec["budget"],
        help=f"work (lower-level plus CG iterations) given to each run (default {spec['budget']})",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="crop shuffle and noise seed (default 0)")
    _add_common(parser, spec["result"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parser.commands = sub.choices  # the parser of each command, for its own parser.error
    sub.add_parser(
        "list",
        help="list the experiments, their result files and whether they are saved",
        description="List the experiments, their result files and whether they are saved.",
    )
    for name in EXPERIMENTS:
        if name == "blorc":
            _add_blorc(sub)
        elif name == "frontier":
            _add_frontier(sub)
        elif name in ("losses", "inpainting", "penalties", "deblurring"):
            _add_beyond_mse(sub, name)
        elif name == "cameraman-full":
            _add_full_image(sub)
        elif name == "maid-hoag":
            _add_maid_hoag(sub)
        else:
            _add_training(sub, name)
    alias = sub.add_parser(
        "reproduce",
        help="alias: 'reproduce NAME …' is 'NAME …'",
        description="An alias kept from earlier versions: 'reproduce NAME …' runs 'NAME …'.",
    )
    alias.add_argument("name", choices=list(EXPERIMENTS), help="the experiment")
    alias.add_argument("options", nargs=argparse.REMAINDER, help="its options")
    return parser


# ----------------------------------------------------------------------------- list
def _list() -> int:
    print(f"experiments of {PROG} (results in {store.results_dir()}):")
    for name, spec in EXPERIMENTS.items():
        print(f"\n  {name:<18} {spec['help']}")
        names = (
            [spec["result"]]
            if name != "blorc"
            else sorted(path.stem for path in store.results_dir().glob("blorc_*.json"))
        )
        for result in names or ["blorc_<signal>[_full]"]:
            status = "not saved"
            if "<" not in result and store.result_paths(result)[1].exists():
                try:
                    record = store.load(result).record  # the whole result, checksums included
                    status = f"saved: {record['seconds']:.0f} s, {record['command']}"
                except store.ResultError as error:
                    status = f"unreadable: {error}"
            print(f"  {'':<18} {result}.{{npz,json}}: {status}")
    print(f"\nrun one with '{PROG} NAME'; '{PROG} NAME --help' for its options")
    return 0


# ----------------------------------------------------------------------------- training runs
def metrics_of(name: str, outcome: dict) -> dict:
    """The figures of merit of a training run (what the command prints and the sidecar keeps)."""
    result = outcome["result"]
    history = result.history
    metrics = dict(
        snr_noisy_db=round(outcome["snr_noisy"], 2),
        snr_learned_db=round(outcome["snr_learned"], 2),
        loss_first=history.loss[0],
        loss_last=history.loss[-1],
        gradient_norm_last=history.gradient_norm[-1],
        beta0=result.params.beta0,
    )
    for key in ("max_abs_column_sum", "row_sum_range"):
        if key in outcome:
            metrics[key] = outcome[key]
    metrics["strengths"] = np.round(np.sort(np.asarray(outcome["strengths"]))[::-1][:8], 4).tolist()
    return metrics


def target_of(out: str | None, default: str) -> Path:
    """The .npz path a run writes: ``results/<default>.npz`` without ``--out``; ``<out>/<default>.npz``
    if ``out`` is an existing folder or ends in a path separator; else ``out`` as a stem (a trailing
    ``.npz`` or ``.json`` dropped, any other suffix kept: ``run.v1`` and ``run.v2`` stay apart)."""
    if out is None:
        return store.results_dir() / f"{default}.npz"
    if not out.strip():
        raise ValueError("--out needs a path stem; got ''")
    path = Path(out).expanduser()
    if out.endswith(("/", os.sep)) or path.is_dir():
        path = path / default
    return store.result_paths(path)[0]


def _checked_target(parser, args, default: str) -> Path:
    """The run's target, checked before any work: a usable --out, writable, not taken unless --force."""
    try:
        target = target_of(args.out, default)
        store.check_free(target, force=args.force)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"--out: {error}" if args.out is not None else f"{error}; give --out for another place")
    return target


def _options(args) -> dict:
    """The parsed options of a run, as saved in its record (``options``)."""
    return {key: value for key, value in vars(args).items() if key not in ("command", "name", "options")}


def _write(kind: str, target: Path, arrays: dict, args, command: str, seconds: float, settings, metrics) -> tuple:
    """Write one result: its arrays and the record (kind, provenance, settings, metrics, every option).

    Returns the paths written (``.npz``, ``.json``); refuses an existing result unless ``--force``.
    """
    record = dict(
        kind=kind, **store.provenance(command, seconds), settings=settings, metrics=metrics, options=_options(args)
    )
    return store.write(target, arrays, record, force=args.force)


def _run_training(name: str, args, parser, command: str) -> int:
    spec = EXPERIMENTS[name]
    kwargs = dict(n_steps=args.steps, lower_iterations=args.lower_iterations)
    if name == "bars":
        kwargs["draws"] = args.draws
        if args.draws == "julia":
            if args.filter_seed is not None:
                parser.error("--filter-seed applies only with --draws numpy (the authors' draws fix the filters)")
            kwargs["julia_seed"] = args.seed
        else:
            kwargs.update(
                noise_seed=args.seed, filter_seed=FILTER_SEED if args.filter_seed is None else args.filter_seed
            )
        runner = recipes.vertical_bars_case
    else:
        kwargs.update(parts=("beta",) if name == "cameraman-beta" else ("beta", "filters"), noise_seed=args.seed)
        runner = recipes.cameraman_case
    target = _checked_target(parser, args, spec["result"])
    outcome = runner(**kwargs, progress=not args.quiet)
    metrics = metrics_of(name, outcome)
    npz, sidecar = store.save_result(
        outcome["result"],
        target,
        command=command,
        seconds=outcome["seconds"],
        metrics=metrics,
        settings=dict(experiment=name, **kwargs),
        options=_options(args),
        force=args.force,
    )
    summary = dict(run=name, seconds=round(outcome["seconds"], 1), steps=len(outcome["result"].history.loss), **metrics)
    print(json.dumps(summary, indent=2))
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- BLORC
_BLORC_OPTIONS = {field: option for option, (field, _, _) in BLORC_FIELDS.items()}


def _run_blorc(args, parser, command: str) -> int:
    try:
        settings = blorc.settings_for(
            args.signal,
            full=args.full,
            n=args.n,
            n_train=args.pairs,
            n_test=args.test,
            sigma=args.sigma,
            batch_size=args.batch,
            epochs=args.epochs,
            lr=args.lr,
            threshold=args.threshold,
            seed=args.seed,
            lr_decay_epochs=args.lr_decay_epochs,
        )
    except ValueError as error:
        message = str(error)
        named = [
            option
            for field, option in sorted(_BLORC_OPTIONS.items(), key=lambda item: -len(item[0]))
            if re.search(rf"\b{field}\b", message)
        ]
        parser.error(f"{named[0] if named else 'the options'}: {message}")
    if settings.signal.startswith("stripes"):
        side = int(round(np.sqrt(settings.n)))
        available = len(range(0, 256 - side + 1, 7)) ** 2
        if settings.n_train + settings.n_test > available:
            parser.error(
                f"--pairs and --test: the stripe image gives {available} patches of {side}×{side}; "
                f"asked for {settings.n_train} + {settings.n_test}"
            )
    if settings.batch_size > settings.n_train:
        parser.error(f"--batch {settings.batch_size} is more than the {settings.n_train} training pairs (--pairs)")
    target = _checked_target(parser, args, f"blorc_{settings.signal}{'_full' if args.full else ''}")
    print(
        f"BLORC on {settings.signal}: {settings.n_train} pairs, n = {settings.n}, σ = {settings.sigma}, "
        f"batch {settings.batch_size}, {settings.epochs} epochs, α = {settings.lr:g}"
        + (f" (÷10 at epochs {', '.join(map(str, settings.lr_decay_epochs))})" if settings.lr_decay_epochs else "")
        + f", γ = {settings.threshold:g}"
    )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small matrices: one BLAS thread is faster and polite
        summary = blorc.run(settings, progress=not args.quiet)
    npz, sidecar = store.save_blorc_run(
        summary, settings, target, command=command, options=_options(args), force=args.force
    )
    result = summary["result"]
    print(
        f"trained in {result.seconds:.1f} s; test PSNR (mean over {settings.n_test} signals): "
        f"learned W {summary['psnr_learned']:.2f} dB, {summary['baseline']} (scale {summary['baseline_scale']:.3g}) "
        f"{summary['psnr_baseline']:.2f} dB, noisy {summary['psnr_noisy']:.2f} dB"
    )
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- the frontier
def _run_frontier(args, parser, command: str) -> int:
    from . import frontier

    for option, value in (("--size", args.size), ("--l1-size", args.l1_size)):
        if not 4 <= value <= 45:
            parser.error(f"{option} must be an integer in [4, 45] (the KKT reference is dense); got {value}")
    target = _checked_target(parser, args, EXPERIMENTS["frontier"]["result"])
    if args.quick:
        problems, estimators, knobs = ("running-example",), tuple(frontier.QUICK_KNOBS), frontier.QUICK_KNOBS
    else:
        problems, estimators, knobs = tuple(frontier.PROBLEMS), tuple(frontier.ESTIMATORS), None
    sweep = frontier.run_frontier(
        problems,
        estimators,
        knobs=knobs,
        size=args.size,
        l1_size=args.l1_size,
        seed=args.seed,
        repeat=args.repeat,
        memory=args.memory,
        progress=not args.quiet,
    )
    error = sweep.column("error")
    metrics = dict(
        runs=int(sweep.table.shape[0]),
        best_error=float(np.min(error)),
        worst_error=float(np.max(error)),
        unconverged=int(np.sum(sweep.column("converged") == 0)),
    )
    npz, sidecar = _write(
        "frontier", target, sweep.arrays(), args, command, sweep.seconds_total, sweep.settings, metrics
    )
    print(json.dumps(dict(run="frontier", seconds=round(sweep.seconds_total, 1), **metrics), indent=2))
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- other losses, inpainting
def _table(rows, split: dict, metric: str) -> np.ndarray:
    return np.stack([np.asarray(split[row][metric], dtype=np.float64) for row in rows])


def _means(rows, split: dict) -> dict:
    return {row: {metric: round(float(np.mean(split[row][metric])), 4) for metric in split[row]} for row in rows}


def _run_beyond_mse(name: str, args, parser, command: str) -> int:
    kwargs = dict(n_steps=args.steps, lower_iterations=args.lower_iterations, noise_seed=args.seed)
    if name == "inpainting":
        if args.missing > 0.95:
            parser.error(f"--missing must be a fraction in (0, 0.95]; got {args.missing}")
        kwargs["missing"] = args.missing
    target = _checked_target(parser, args, EXPERIMENTS[name]["result"])
    if name == "losses":
        outcome = beyond_mse.loss_comparison(**kwargs, progress=not args.quiet)
        rows = ["start", *outcome["losses"]]
        arrays = {f"history_{loss}": outcome["history"][loss] for loss in outcome["losses"]}
        arrays["test_noisy"] = outcome["test_noisy"]
        extra = dict(seconds_per_loss={k: round(v, 1) for k, v in outcome["seconds"].items()})
    else:
        outcome = beyond_mse.inpainting_case(**kwargs, progress=not args.quiet)
        rows = list(outcome["params"])
        arrays = dict(history=outcome["history"], test_y=outcome["test_y"], test_mask=outcome["test_mask"])
        extra = dict(masked_data=_means(["masked data"], outcome["test"])["masked data"])
    params = outcome["params"] if name == "inpainting" else {"start": outcome["start"], **outcome["params"]}
    arrays.update(
        test_truth=outcome["test_truth"],
        test_x=np.stack([outcome["test_x"][row] for row in rows]),
        beta0=np.array([params[row].beta0 for row in rows]),
    )
    for row in rows:
        arrays[f"beta_{row.replace(' ', '_')}"] = params[row].beta
        arrays[f"filters_{row.replace(' ', '_')}"] = params[row].filters
    for split in ("train", "test"):
        for metric in ("snr", "psnr", "ssim"):
            arrays[f"{split}_{metric}"] = _table(rows, outcome[split], metric)
    metrics = dict(rows=rows, train=_means(rows, outcome["train"]), test=_means(rows, outcome["test"]), **extra)
    settings = dict(outcome["settings"], rows=rows)
    npz, sidecar = _write(name, target, arrays, args, command, outcome["seconds_total"], settings, metrics)
    print(json.dumps(dict(run=name, seconds=round(outcome["seconds_total"], 1), test=metrics["test"]), indent=2))
    print(f"saved {npz} and {sidecar}")
    return 0


def _run_penalties(args, parser, command: str) -> int:
    target = _checked_target(parser, args, EXPERIMENTS["penalties"]["result"])
    outcome = beyond_mse.penalty_comparison(
        n_steps=args.steps, lower_iterations=args.lower_iterations, noise_seed=args.seed, progress=not args.quiet
    )
    names = list(outcome["penalties"])
    runs = outcome.get("runs", {name: name for name in names})  # run → its penalty
    rows = [row for name in names for row in [f"{name} start"] + [run for run in runs if runs[run] == name]]

    def key(run):
        return run.replace(" ", "_")

    arrays = {f"history_{key(run)}": outcome["history"][run] for run in runs}
    arrays.update(test_truth=outcome["test_truth"], test_noisy=outcome["test_noisy"])
    arrays["test_x"] = np.stack([outcome["test_x"][run] for run in runs])
    for name in names:
        arrays[f"beta_{name}_start"] = outcome["start"][name].beta
    for run in runs:
        arrays[f"beta_{key(run)}_learned"] = outcome["params"][run].beta
        if not np.array_equal(outcome["params"][run].filters, outcome["start"][runs[run]].filters):
            arrays[f"filters_{key(run)}_learned"] = outcome["params"][run].filters
        for split in ("train", "test"):
            arrays[f"hessian_min_{key(run)}_{split}"] = outcome["hessian_min"][run][split]
    for split in ("train", "test"):
        for metric in ("snr", "psnr", "ssim"):
            arrays[f"{split}_{metric}"] = _table(rows, outcome[split], metric)
    metrics = dict(
        rows=rows,
        train=_means(rows, outcome["train"]),
        test=_means(rows, outcome["test"]),
        noisy=_means(["noisy"], {"noisy": outcome["noisy_scores"]})["noisy"],
        eps={name: outcome["eps"][name] for name in names},
        eps_search={f"{eps:g}": round(value, 4) for eps, value in outcome["eps_search"].items()},
        beta0={name: float(outcome["start"][name].beta0) for name in names},
        runs=dict(runs),
        hessian_min={run: float(np.min(np.concatenate(list(outcome["hessian_min"][run].values())))) for run in runs},
        concave_fraction={run: round(outcome["concave_fraction"][run], 4) for run in runs},
        start_spread={run: float(f"{outcome['start_spread'][run]:.3g}") for run in runs},
        stopped={run: outcome.get("stopped", {}).get(run) for run in runs},
        seconds_per_penalty={run: round(value, 1) for run, value in outcome["seconds"].items()},
    )
    settings = dict(outcome["settings"], rows=rows)
    npz, sidecar = _write("penalties", target, arrays, args, command, outcome["seconds_total"], settings, metrics)
    print(json.dumps(dict(run="penalties", seconds=round(outcome["seconds_total"], 1), **metrics), indent=2))
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- the whole cameraman image
def _full_image_table(outcome: dict) -> str:
    """The figures of merit of ``cameraman-full`` as a plain-text table (one row per method)."""
    lines = [f"{'method':<12} {'SNR (dB)':>9} {'PSNR (dB)':>10} {'iterations':>11} {'time (s)':>9}"]
    for key, label in full_image.METHODS.items():
        if key not in outcome["images"]:
            continue
        if key == "tv":
            label = f"TV β0={outcome['tv_beta0']:g}"
        iterations = outcome["iterations"].get(key)
        seconds = outcome["seconds"].get(key)
        lines.append(
            f"{label:<12} {outcome['snr'][key]:>9.2f} {outcome['psnr'][key]:>10.2f} "
            f"{'' if iterations is None else iterations:>11} {'' if seconds is None else f'{seconds:.1f}':>9}"
        )
    return "\n".join(lines)


def _run_full_image(args, parser, command: str) -> int:
    if args.bm3d:
        try:
            full_image.require_bm3d()
        except ImportError as error:
            parser.error(str(error))
    target = _checked_target(parser, args, EXPERIMENTS["cameraman-full"]["result"])
    outcome = full_image.full_image_case(
        seed=args.seed, max_iter=args.max_iter, bm3d=args.bm3d, progress=not args.quiet
    )
    low, high = full_image.QUANT_RANGE
    arrays, clipped = {}, {}
    for key, image in outcome["images"].items():
        clipped[key] = int(np.count_nonzero((image < low) | (image > high)))
        arrays[key] = full_image.quantise(image, clip=True)
    for key in ("tv_grid", "tv_grid_snr", "tv_grid_iterations"):
        arrays[key] = np.asarray(outcome[key])
    metrics = dict(
        methods=list(outcome["images"]),
        snr_db={key: round(value, 4) for key, value in outcome["snr"].items()},
        psnr_db={key: round(value, 4) for key, value in outcome["psnr"].items()},
        iterations=outcome["iterations"],
        gradient_norm={key: float(f"{value:.3g}") for key, value in outcome["gradient_norm"].items()},
        converged=outcome["converged"],
        tv_beta0=outcome["tv_beta0"],
        seconds_per_method={key: round(value, 1) for key, value in outcome["seconds"].items()},
        clipped=clipped,
    )
    settings = dict(outcome["settings"], experiment="cameraman-full", quant_range=list(full_image.QUANT_RANGE))
    npz, sidecar = _write("cameraman-full", target, arrays, args, command, outcome["seconds_total"], settings, metrics)
    print(_full_image_table(outcome))
    print(f"run time {outcome['seconds_total']:.1f} s")
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- MAID against HOAG
def _run_maid_hoag(args, parser, command: str) -> int:
    target = _checked_target(parser, args, EXPERIMENTS["maid-hoag"]["result"])
    outcome = maid_hoag.maid_hoag_comparison(budget=args.budget, seed=args.seed, progress=not args.quiet)
    names = outcome["names"]
    rows = ["noisy", "start", *names]
    arrays = dict(beta0_grid=outcome["beta0_grid"], beta0_losses=outcome["beta0_losses"])
    arrays["test_psnr"] = np.stack([outcome["test_psnr"][row] for row in rows])
    arrays["test_snr"] = np.stack([outcome["test_snr"][row] for row in rows])
    arrays["beta_start"], arrays["filters_start"] = outcome["start"].beta, outcome["start"].filters
    for i, name in enumerate(names):
        arrays[f"beta_{i}"], arrays[f"filters_{i}"] = outcome["params"][name].beta, outcome["params"][name].filters
        for key, values in outcome["history"][name].items():
            arrays[f"history_{i}_{key}"] = values
    table = []
    for name in names:
        history = outcome["history"][name]
        table.append(
            dict(
                method=name,
                steps=int(history["loss"].size),
                work=int(history["work"][-1]),
                seconds=round(outcome["seconds"][name], 1),
                train_loss=round(outcome["train_loss"][name], 5),
                test_psnr_db=round(float(np.mean(outcome["test_psnr"][name])), 3),
                test_snr_db=round(float(np.mean(outcome["test_snr"][name])), 3),
                unconverged=outcome["unconverged"][name],
                message=outcome["message"][name],
            )
        )
    best_hoag = max(table[1:], key=lambda row: row["test_psnr_db"])
    margin = table[0]["test_psnr_db"] - best_hoag["test_psnr_db"]
    verdict = (
        f"MAID {'above' if margin > 0 else 'below'} the best HOAG schedule ({best_hoag['method']}) "
        f"by {abs(margin):.2f} dB in test PSNR"
    )
    metrics = dict(
        rows=rows,
        runs=table,
        start=dict(
            train_loss=round(outcome["train_loss"]["start"], 5),
            test_psnr_db=round(float(np.mean(outcome["test_psnr"]["start"])), 3),
        ),
        noisy_psnr_db=round(float(np.mean(outcome["test_psnr"]["noisy"])), 3),
        best_hoag=best_hoag["method"],
        maid_minus_best_hoag_db=round(margin, 3),
        verdict=verdict,
    )
    settings = dict(outcome["settings"], names=names)
    npz, sidecar = _write("maid-hoag", target, arrays, args, command, outcome["seconds_total"], settings, metrics)
    print(f"{'method':<10} {'steps':>6} {'work':>7} {'time':>7} {'train ℓ':>9} {'test PSNR':>10}")
    for row in table:
        print(
            f"{row['method']:<10} {row['steps']:6d} {row['work']:7d} {row['seconds']:6.1f}s "
            f"{row['train_loss']:9.4f} {row['test_psnr_db']:9.2f}"
        )
    print(f"verdict: {verdict}")
    print(f"run time {outcome['seconds_total']:.1f} s")
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- deblurring
#: the array-name part of each table of ``deblurring`` (its split names hold spaces)
DEBLURRING_SPLITS = {"train": "train", "held-out noise": "held_out_noise", "held-out crops": "held_out_crops"}


def _deblurring_text(tables: dict, seconds: float) -> str:
    """The crossover tables of a ``deblurring`` run (``tables`` of its record's metrics), as text, and its run time."""
    tasks, lines = deblurring.TASKS, []
    for split, table in tables.items():
        lines.append(f"{'SNR (dB), ' + split:<26}" + "".join(f"{task:>13}" for task in tasks))
        for row in table[tasks[0]]:
            lines.append(f"  {row:<24}" + "".join(f"{table[task][row]:13.2f}" for task in tasks))
    lines.append(f"run time {seconds:.0f} s")
    return "\n".join(lines)


def _run_deblurring(args, parser, command: str) -> int:
    if not 16 <= args.size <= 50:
        parser.error(f"--size must be an integer from 16 to 50 (the side of the cameraman patches); got {args.size}")
    target = _checked_target(parser, args, EXPERIMENTS["deblurring"]["result"])
    outcome = deblurring.deblurring_case(
        n_steps=args.steps,
        lower_iterations=args.lower_iterations,
        size=args.size,
        noise_seed=args.seed,
        progress=not args.quiet,
    )
    tasks, rows = list(outcome["tasks"]), ["measurement", *outcome["contenders"]]
    arrays = dict(test_truth=outcome["test_truth"])
    arrays["test_x"] = np.stack([np.stack([outcome["test_x"][t][r] for r in rows[1:]]) for t in tasks])
    for task in tasks:
        arrays[f"history_{task}"] = outcome["history"][task]
        arrays[f"gradient_norm_{task}"] = outcome["gradient_norm"][task]
        arrays[f"lower_residual_{task}"] = outcome["lower_residual"][task]
        for when, params in (("start", outcome["start"][task]), ("learned", outcome["params"][task])):
            arrays[f"beta_{task}_{when}"] = params.beta
            arrays[f"filters_{task}_{when}"] = params.filters
    arrays["beta0"] = np.array([[outcome["beta0"][t][r] for r in rows[1:]] for t in tasks])
    arrays["weak_band_energy"] = np.stack([outcome["weak_band_energy"][k] for k in ("DCT 3×3", *tasks)])
    for split, key in DEBLURRING_SPLITS.items():
        arrays[f"snr_{key}"] = np.array([[outcome["tables"][split][t][r] for t in tasks] for r in rows])
        arrays[f"converged_{key}"] = np.array([[outcome["converged"][split][t][r] for t in tasks] for r in rows[1:]])
    tables = {
        split: {t: {r: round(v, 3) for r, v in table[t].items()} for t in tasks}
        for split, table in outcome["tables"].items()
    }
    metrics = dict(
        rows=rows,
        tables=tables,
        beta0=outcome["beta0"],
        unconverged=int(outcome["unconverged"]),
        worst_final_gradient_norm=max(
            v for split in outcome["gradient_norm_final"].values() for row in split.values() for v in row.values()
        ),
        blur_weak_fraction=round(outcome["blur_weak_fraction"], 4),
        final_loss={t: round(float(outcome["history"][t][-1]), 4) for t in tasks},
        training_messages=outcome["training_messages"],
        missed_steps=outcome["missed_steps"],
        seconds_per_task={t: round(v, 1) for t, v in outcome["seconds"].items()},
    )
    settings = dict(outcome["settings"], rows=rows)
    npz, sidecar = _write("deblurring", target, arrays, args, command, outcome["seconds_total"], settings, metrics)
    print(_deblurring_text(tables, outcome["seconds_total"]))
    if metrics["unconverged"]:
        print(f"{metrics['unconverged']} final lower-level solve(s) missed the tolerance 1e-6")
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- entry point
def main(argv=None) -> int:
    """Run the command line ``python -m bilevel_lib`` (see the module's description).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 on success (the help text, the list of experiments, or a finished and
        saved run); 130 if the run was interrupted (Ctrl-C), with nothing saved.  Invalid
        arguments, an unwritable target, or an existing result without ``--force`` exit through
        ``argparse`` with status 2 before any work.  An error during a run propagates, with
        nothing saved.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join([PROG, *map(shlex.quote, argv)])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "reproduce":
        args = parser.parse_args([args.name, *args.options])
    if args.command == "list":
        return _list()
    subparser = parser.commands[args.command]
    try:
        if args.command == "blorc":
            return _run_blorc(args, subparser, command)
        if args.command == "frontier":
            return _run_frontier(args, subparser, command)
        if args.command == "penalties":
            return _run_penalties(args, subparser, command)
        if args.command == "deblurring":
            return _run_deblurring(args, subparser, command)
        if args.command == "cameraman-full":
            return _run_full_image(args, subparser, command)
        if args.command == "maid-hoag":
            return _run_maid_hoag(args, subparser, command)
        if args.command in ("losses", "inpainting"):
            return _run_beyond_mse(args.command, args, subparser, command)
        return _run_training(args.command, args, subparser, command)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; nothing was saved", file=sys.stderr)
        return 130
    except Exception:
        print(f"{PROG} {args.command}: the run failed; nothing was saved", file=sys.stderr)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
