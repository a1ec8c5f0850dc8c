"""The one command line of the book's full-size experiments: python -m bilevel_lib.

    python -m bilevel_lib list                      # the experiments, their results and whether they are saved
    python -m bilevel_lib bars                      # review Fig. 1.3, U = 4000, T = 50, the authors' draws
    python -m bilevel_lib bars --draws numpy --seed 1 --filter-seed 3   # another noise and start
    python -m bilevel_lib cameraman-beta            # review Fig. 6.1b, β only
    python -m bilevel_lib cameraman-filters         # review Fig. 6.1c, filters and β
    python -m bilevel_lib blorc --signal piecewise  # BLORC, the book's small setting (about a minute)
    python -m bilevel_lib blorc --signal piecewise --full   # BLORC, the paper's Sec. 4.1 (about an hour)
    python -m bilevel_lib bars --steps 400 --out /tmp/bars  # writes /tmp/bars.npz and /tmp/bars.json

Each run shows a progress bar (``--quiet``: none), prints its figures of merit and run time, and
saves its result through :mod:`bilevel_lib.experiments.store`: ``results/<name>.npz`` (arrays) and
``results/<name>.json`` (settings, command, run time, versions, machine, date, figures of merit) in
the repository, or at ``--out``.  An existing result is never overwritten without ``--force``; this
is checked before the run starts.  ``reproduce NAME …`` is an alias of ``NAME …``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from . import blorc, recipes, store

__all__ = ["main"]

PROG = "python -m bilevel_lib"
DESCRIPTION = """\
Run the book's full-size experiments.  Each run saves NAME.npz (arrays) and NAME.json (settings,
the command, run time, versions, machine, date, figures of merit) in the repository's results/
folder, or at --out; a result is never overwritten without --force."""

#: Every full-size experiment, by subcommand, with what it is and its defaults
EXPERIMENTS = {
    "bars": dict(
        help="vertical bars, 4 random 4×2 filters and β (review Fig. 1.3, App. D.1); about 1 min",
        steps=4000,
        lower=50,
        result="bars",
    ),
    "cameraman-beta": dict(
        help="cameraman patches, β of 48 DCT 7×7 filters (review Fig. 6.1b); about 20 min",
        steps=10_000,
        lower=10,
        result="cameraman-beta",
    ),
    "cameraman-filters": dict(
        help="cameraman patches, filters and β (review Fig. 6.1c); about 20 min",
        steps=10_000,
        lower=10,
        result="cameraman-filters",
    ),
    "blorc": dict(
        help="BLORC: learn an ℓ1 analysis transform W (Ghosh et al. 2022); the book's small "
        "setting, or --full for the paper's (about an hour)",
        result="blorc_<signal>[_full]",
    ),
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


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
        type=Path,
        metavar="STEM",
        help=f"where to save: writes STEM.npz and STEM.json (a trailing .npz or .json is "
        f"dropped; default: results/{default_result} in the repository)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing result")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_training(sub, name: str) -> None:
    spec = EXPERIMENTS[name]
    parser = sub.add_parser(name, help=spec["help"], description=spec["help"])
    parser.add_argument("--steps", type=_positive_int, help=f"upper-level steps U (default {spec['steps']})")
    parser.add_argument(
        "--lower-iterations",
        type=_positive_int,
        help=f"warm-started OGM iterations T per step (default {spec['lower']})",
    )
    if name == "bars":
        parser.add_argument(
            "--draws",
            choices=("julia", "numpy"),
            default=None,
            help="'julia' (default): the noise and random filters of the authors' script "
            "(Julia 1.7, seed!(--seed)); 'numpy': noise from --seed, filters from --filter-seed",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="the seed of Julia's seed! (--draws julia) or of the noise (--draws numpy); default 0",
        )
        parser.add_argument(
            "--filter-seed", type=int, default=None, help="the random-filter seed; --draws numpy only (default 1)"
        )
    else:
        parser.add_argument("--seed", type=int, default=None, help="noise seed (default 0)")
    _add_common(parser, spec["result"])


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
        "epochs 650 and 700; about an hour",
    )
    for option, kind, text in [
        ("n", _positive_int, "signal length (a square for stripes)"),
        ("pairs", _positive_int, "training pairs"),
        ("test", _positive_int, "test signals"),
        ("sigma", float, "noise standard deviation"),
        ("batch", _positive_int, "batch size"),
        ("epochs", _positive_int, "epochs (the preset's decays keep their fractions of the run)"),
        ("lr", float, "step size α"),
        ("threshold", float, "zero-set threshold γ"),
        ("seed", int, "random seed"),
    ]:
        parser.add_argument(f"--{option}", type=kind, default=None, help=f"{text} (overrides the preset)")
    parser.add_argument(
        "--lr-decay-epochs",
        type=_positive_int,
        nargs="*",
        default=None,
        metavar="EPOCH",
        help="divide the step by 10 at the start of these epochs (overrides the preset; give none for a constant step)",
    )
    _add_common(parser, EXPERIMENTS["blorc"]["result"])
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help="the same as --quiet")


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
                    record = store.read_record(result)
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


def _target(args, default: str) -> Path:
    return args.out if args.out is not None else store.results_dir() / default


def _check_free(parser, target: Path, force: bool) -> None:
    try:
        store.check_free(target, force=force)
    except FileExistsError as error:
        parser.error(str(error))


def _run_training(name: str, args, parser, command: str) -> int:
    spec = EXPERIMENTS[name]
    steps = args.steps or spec["steps"]
    lower = args.lower_iterations or spec["lower"]
    seed = 0 if args.seed is None else args.seed
    if name == "bars":
        draws = args.draws or "julia"
        kwargs = dict(draws=draws, n_steps=steps, lower_iterations=lower, progress=not args.quiet)
        if draws == "julia":
            if args.filter_seed is not None:
                parser.error("--filter-seed applies only with --draws numpy (the authors' draws fix the filters)")
            kwargs["julia_seed"] = seed
        else:
            kwargs.update(noise_seed=seed, filter_seed=1 if args.filter_seed is None else args.filter_seed)
        runner = recipes.vertical_bars_case
    else:
        parts = ("beta",) if name == "cameraman-beta" else ("beta", "filters")
        kwargs = dict(parts=parts, n_steps=steps, lower_iterations=lower, noise_seed=seed, progress=not args.quiet)
        runner = recipes.cameraman_case
    target = _target(args, spec["result"])
    _check_free(parser, target, args.force)
    outcome = runner(**kwargs)
    metrics = metrics_of(name, outcome)
    npz, sidecar = store.save_result(
        outcome["result"], target, command=command, seconds=outcome["seconds"], metrics=metrics, force=args.force
    )
    summary = dict(run=name, seconds=round(outcome["seconds"], 1), steps=len(outcome["result"].history.loss), **metrics)
    print(json.dumps(summary, indent=2))
    print(f"saved {npz} and {sidecar}")
    return 0


# ----------------------------------------------------------------------------- BLORC
_BLORC_OPTIONS = {
    "n_train": "--pairs",
    "n_test": "--test",
    "batch_size": "--batch",
    "lr_decay_epochs": "--lr-decay-epochs",
    "n": "--n",
    "sigma": "--sigma",
    "epochs": "--epochs",
    "lr": "--lr",
    "threshold": "--threshold",
}


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
    target = _target(args, f"blorc_{settings.signal}{'_full' if args.full else ''}")
    _check_free(parser, target, args.force)
    print(
        f"BLORC on {settings.signal}: {settings.n_train} pairs, n = {settings.n}, σ = {settings.sigma}, "
        f"batch {settings.batch_size}, {settings.epochs} epochs, α = {settings.lr:g}"
        + (f" (÷10 at epochs {', '.join(map(str, settings.lr_decay_epochs))})" if settings.lr_decay_epochs else "")
        + f", γ = {settings.threshold:g}"
    )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small matrices: one BLAS thread is faster and polite
        summary = blorc.run(settings, progress=not args.quiet)
    npz, sidecar = store.save_blorc_run(summary, settings, target, command=command, force=args.force)
    result = summary["result"]
    print(
        f"trained in {result.seconds:.1f} s; test PSNR (mean over {settings.n_test} signals): "
        f"learned W {summary['psnr_learned']:.2f} dB, {summary['baseline']} (scale {summary['baseline_scale']:.3g}) "
        f"{summary['psnr_baseline']:.2f} dB, noisy {summary['psnr_noisy']:.2f} dB"
    )
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
        saved run). Invalid arguments, or an existing result without ``--force``, exit through
        ``argparse`` with status 2.
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
    if args.command == "blorc":
        return _run_blorc(args, subparser, command)
    return _run_training(args.command, args, subparser, command)


if __name__ == "__main__":
    raise SystemExit(main())
