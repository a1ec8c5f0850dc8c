"""bilevel_lib against a JAX peer (issue 18, "peer benchmarks"), in one process run.

Run:  make bench-peers   (creates .venv-peers with JAX on first use; runs the comparison twice:
      JAX with every core, then both sides on one core; or, in that venv,
      .venv-peers/bin/python benchmarks/peers/bench_peers.py [--quick] [--one-core])

The setting of the review's cameraman experiment (App. D.2): J = 3 noisy cameraman patches 50×50
(σ = 25/255), K = 48 DCT filters 7×7 without the DC atom, CR1N φ(z) = √(z² + ε²), ε = 0.01,
β0 = −4, β_k = 0; and one 256×256 cameraman crop for ∇ₓΦ.  The JAX side (``jax_peer.py``) is timed
with both ways of filtering (real FFTs and ``lax.conv``) and the faster one is the peer.

First it checks that both sides compute the same numbers (∇ₓΦ, Hessian-vector and mixed products to
1e-10 relative, T = 10 OGM iterations, one upper-level step's hypergradient, and the γ after all
timed steps); then it times, after warm-up, the minimum over repeats (``block_until_ready`` on the
JAX side), alternating the two sides in rounds so that both see the same load.  The upper-level
step is the library's ``train_double_loop`` step with its defaults (T = 10 warm-started OGM
iterations, CG warm-started from the previous q to 1e-3 of its initial residual, at most 500
iterations, −(∇ₓγΦ)'q, Adam with lr 1e-3) against the same step in one jitted JAX function, over
the same sequence of steps from the same start, timed as the mean step over that sequence (the
library's first step still filters with the separable DCT bank, its later ones with learned filters
on the direct back end; the fastest single step would flatter it).  Prints one Markdown table with
a verdict per acceptance target of issue 18 (times in ms; "speed-up" = JAX time / library time).
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

# --one-core: both sides on one core, a like-for-like comparison (the library runs its filter
# products on one thread; XLA uses every core it is given).  Set before JAX starts its threads.
ONE_CORE = "--one-core" in sys.argv[1:]
if ONE_CORE:
    if not hasattr(os, "sched_setaffinity"):
        sys.exit("--one-core needs os.sched_setaffinity (Linux); run without it, or pin with the system's tools")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax_peer import CORRELATIONS, JaxPeer  # noqa: E402

import bilevel_lib as bl  # noqa: E402
from bilevel_lib import training  # noqa: E402
from bilevel_lib.experiments.profiling import measure  # noqa: E402
from bilevel_lib.hypergrad.implicit import implicit_hypergradient  # noqa: E402
from bilevel_lib.problem import data, filters  # noqa: E402

EPS = 0.01
BETA0 = -4.0
#: the acceptance targets of issue 18: minimum library speed-up over the JAX peer
TARGETS = {"grad": 1.5, "hvp": 1.5, "mixed": 1.5, "step": 1.5, "grad256": 2.0}


def relative_error(a, b) -> float:
    """max |a − b| / max |b| over all entries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def to_jax(params: bl.Hyperparameters) -> dict:
    return dict(beta0=jnp.asarray(params.beta0), beta=jnp.asarray(params.beta), filters=jnp.asarray(params.filters))


def check(label: str, error: float, tol: float) -> str:
    if not error <= tol:
        raise AssertionError(f"{label}: JAX and bilevel_lib differ by {error:.3g} (relative) > {tol:g}")
    return f"{label} {error:.1e}"


def library_step_settings() -> dict:
    """The double loop's defaults (``training.train_double_loop``), read from its signature."""
    defaults = {k: p.default for k, p in inspect.signature(training.train_double_loop).parameters.items()}
    return dict(
        n_iter=10,  # its default rule: lower_iterations = 10 when no rule is given
        cg_tol=defaults["cg_tol"],
        cg_relative_to=defaults["cg_relative_to"],
        cg_max_iter=defaults["cg_max_iter"],
        initial_tol=defaults["initial_tol"],
        lr=training.Adam().learning_rate,
    )


def library_steps(cost, params, loss, x, parts, settings, n_steps):
    """``n_steps`` steps of the double loop's body (``train_double_loop`` with its default
    implicit estimator and Adam), each timed.  Returns (params, times, CG iterations per step)."""
    optimizer = training.Adam(learning_rate=settings["lr"])
    vector, state = params.flatten(parts), None
    times, cg_iterations = [], []
    for _ in range(n_steps):
        start = time.perf_counter()
        hyper = implicit_hypergradient(
            cost,
            params,
            loss,
            x0=x,
            state=state,
            lower_tol=None,
            lower_max_iter=settings["n_iter"],
            cg_tol=settings["cg_tol"],
            cg_relative_to=settings["cg_relative_to"],
            cg_max_iter=settings["cg_max_iter"],
            warn=False,
            parts=parts,  # as train_double_loop passes them: a β-only step skips the filter taps
        )
        x, state = hyper.x, hyper.state
        vector = optimizer.step(vector, hyper.gradient.flatten(parts))
        params = params.unflatten(vector, parts)
        times.append(time.perf_counter() - start)
        cg_iterations.append(hyper.cg_iterations)
    return params, np.array(times), np.array(cg_iterations)


def jax_steps(step, state, n_steps):
    """``n_steps`` calls of the jitted step, each timed to ``block_until_ready``."""
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        state = jax.block_until_ready(step(state))
        times.append(time.perf_counter() - start)
    return state, np.array(times)


def jax_cg_counts(peer, step, state, truth, settings, n_steps):
    """Replay the steps untimed, counting CG iterations (the max over images, as the library
    reports) with the counting loop, and checking its q against the one the step computed."""
    counts = []
    for _ in range(n_steps):
        params, x, q = state[0], state[1], state[2]
        x_t, _ = peer.ogm(x, params, n_iter=settings["n_iter"])
        rhs = (x_t - truth) / truth.shape[0]
        q_count, k = peer.cg_iterations(x_t, params, rhs, q, settings["cg_tol"], settings["cg_max_iter"])
        state = step(jax.tree.map(jnp.copy, state))
        check("counting CG vs jax cg", relative_error(q_count, state[2]), 1e-9)
        counts.append(int(np.max(k)))
    return np.array(counts)


def best_of_rounds(functions: dict, repeat: int, rounds: int) -> dict:
    """min over ``rounds`` × ``repeat`` runs of each function (fewer repeats, at least 3, for slow ones),
    the functions alternating by round."""
    best, repeats = {}, {}
    for name, fn in functions.items():  # warm-up (compilation, caches), then a first timing
        fn()
        best[name] = measure(fn, memory=False).seconds
        repeats[name] = max(3, min(repeat, int(0.5 / best[name])))  # at most ~0.5 s per function and round
    for _ in range(rounds):
        for name, fn in functions.items():
            best[name] = min(best[name], measure(fn, repeat=repeats[name], memory=False).seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="upper-level steps timed per side (default 20)")
    parser.add_argument(
        "--one-core",
        action="store_true",
        help="run both sides on one core (this process pinned to the first CPU it may use); "
        "by default JAX uses every core with XLA's defaults and the library one thread",
    )
    args = parser.parse_args()
    repeat, rounds = (5, 2) if args.quick else (20, 4)
    n_steps = args.steps if args.steps is not None else (5 if args.quick else 20)
    if n_steps < 1:
        raise ValueError(f"--steps must be a positive integer; got {n_steps}")

    truth = data.cameraman_patches()
    y = data.add_noise(truth, 25 / 255, rng=0)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(EPS))
    loss = bl.SquaredErrorLoss(truth)
    params = bl.Hyperparameters.from_filters(filters.dct_filters(7), beta0=BETA0)
    # filters after some learning: no longer outer products, so the library filters them directly
    perturbed = filters.dct_filters(7) + 1e-3 * np.random.default_rng(1).standard_normal((48, 7, 7))
    learned = bl.Hyperparameters.from_filters(perturbed, beta0=BETA0)
    big_y = data.add_noise(data.cameraman()[None, 128:384, 128:384], 0.1, 1)
    big_cost = bl.LowerLevelCost(big_y, bl.CornerRounded1Norm(EPS))
    settings = library_step_settings()
    rng = np.random.default_rng(0)
    x = y + 0.05 * rng.standard_normal(y.shape)  # a generic point and direction
    v = rng.standard_normal(y.shape)
    jp, jl = to_jax(params), to_jax(learned)
    peers = {m: JaxPeer(y, EPS, m) for m in CORRELATIONS}
    big_peers = {m: JaxPeer(big_y, EPS, m) for m in CORRELATIONS}

    print(
        f"# bilevel_lib vs JAX peer — {datetime.datetime.now().isoformat(timespec='seconds')}, "
        f"load average {' '.join(f'{a:.2f}' for a in os.getloadavg())}, {os.cpu_count()} cores"
    )
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, jax {jax.__version__} "
        f"({jax.devices()[0].platform}, float64: {jnp.ones(1).dtype == jnp.float64}), bilevel_lib {bl.__version__}"
    )
    print(
        f"J = 3 cameraman 50×50 (σ = 25/255), K = 48 DCT 7×7, CR1N ε = {EPS}, β0 = {BETA0}; "
        f"256×256: J = 1 crop (σ = 0.1); library filter back end: {cost.operator(params).method} "
        f"(learned filters: {cost.operator(learned).method})"
    )
    if ONE_CORE:
        print(
            f"Threads: both sides on one core (--one-core: process pinned to CPU {min(os.sched_getaffinity(0))}; "
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); bilevel_lib limits BLAS to one thread in its "
            "filter products"
        )
    else:
        print(
            f"Threads: JAX with XLA's defaults on {len(os.sched_getaffinity(0))} cores "
            f"(XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}); bilevel_lib limits BLAS to one thread in its "
            "filter products"
        )

    # ---------------------------------------------------------------- agreement before timing
    library = dict(
        grad=cost.gradient(x, params),
        hvp=cost.hessian_vector_product(x, params, v),
        mixed=cost.mixed_transpose(x, params, v),
    )
    lower = bl.solve_lower_level(cost, params, x0=y, tol=None, max_iter=settings["n_iter"])
    big_x = big_y + 0.05 * rng.standard_normal(big_y.shape)
    agreement = []
    for method, peer in peers.items():
        mixed = peer.mixed(x, jp, v)
        agreement += [
            check(f"{method}: ∇ₓΦ", relative_error(peer.gradient(x, jp), library["grad"]), 1e-10),
            check("∇ₓΦ at fixed γ", relative_error(peer.gradient_operator(jp)(x), library["grad"]), 1e-10),
            check("HVP", relative_error(peer.hvp(x, jp, v), library["hvp"]), 1e-10),
            check("linearised HVP", relative_error(peer.hessian_operator(x, jp)(v), library["hvp"]), 1e-10),
            check(
                "mixed",
                max(
                    relative_error(mixed["beta0"], library["mixed"].beta0),
                    relative_error(mixed["beta"], library["mixed"].beta),
                    relative_error(mixed["filters"], library["mixed"].filters),
                ),
                1e-10,
            ),
            check(
                "OGM T=10", relative_error(peer.ogm(jnp.asarray(y), jp, n_iter=settings["n_iter"])[0], lower.x), 1e-10
            ),
            check(
                "∇ₓΦ learned filters",
                relative_error(peer.gradient_operator(jl)(x), cost.gradient(x, learned)),
                1e-10,
            ),
            check(
                "∇ₓΦ 256×256",
                relative_error(big_peers[method].gradient_operator(jp)(big_x), big_cost.gradient(big_x, params)),
                1e-10,
            ),
        ]

    print("Agreement (max relative difference, JAX vs bilevel_lib): " + "; ".join(agreement))

    # the start of the upper-level steps: the double loop's cold solve to initial_tol
    start = bl.solve_lower_level(cost, params, tol=settings["initial_tol"], max_iter=200_000).x
    assert settings["cg_relative_to"] == "initial", "the JAX step's CG tolerance is relative to the initial residual"
    step_kwargs = {k: settings[k] for k in ("n_iter", "cg_tol", "cg_max_iter", "lr")}
    reference = implicit_hypergradient(
        cost,
        params,
        loss,
        x0=start,
        lower_tol=None,
        lower_max_iter=settings["n_iter"],
        cg_tol=settings["cg_tol"],
        cg_relative_to=settings["cg_relative_to"],
        cg_max_iter=settings["cg_max_iter"],
        warn=False,
    ).gradient

    def build_step(method, parts):
        """The jitted step, after checking its first hypergradient against the library's."""
        step, hypergradient = peers[method].make_step(truth, parts, **step_kwargs)
        grad, _, _ = hypergradient(jp, jnp.asarray(start), jnp.zeros_like(jnp.asarray(start)))
        error = max(relative_error(grad[p], getattr(reference, p)) for p in parts)
        print("Agreement: " + check(f"{method} first step's hypergradient ({'+'.join(parts)})", error, 1e-8))
        return step

    # ---------------------------------------------------------------- primitives
    x_j, v_j, big_x_j = jnp.asarray(x), jnp.asarray(v), jnp.asarray(big_x)
    hessian = cost.hessian_operator(x, params)
    functions = dict(
        lib_grad=lambda: cost.gradient(x, params),
        lib_hvp=lambda: hessian(v),
        lib_hvpfull=lambda: cost.hessian_vector_product(x, params, v),
        lib_mixed=lambda: cost.mixed_transpose(x, params, v),
        lib_grad256=lambda: big_cost.gradient(big_x, params),
        lib_gradlearned=lambda: cost.gradient(x, learned),
    )
    for method, peer in peers.items():
        gradient = peer.gradient_operator(jp)
        functions[f"{method}_grad"] = lambda gradient=gradient: gradient(x_j).block_until_ready()
        operator = peer.hessian_operator(x_j, jp)
        functions[f"{method}_hvp"] = lambda operator=operator: operator(v_j).block_until_ready()
        functions[f"{method}_hvpfull"] = lambda peer=peer: peer.hvp(x_j, jp, v_j).block_until_ready()
        functions[f"{method}_mixed"] = lambda peer=peer: jax.block_until_ready(peer.mixed(x_j, jp, v_j))
        big = big_peers[method]
        big_gradient = big.gradient_operator(jp)
        functions[f"{method}_grad256"] = lambda big_gradient=big_gradient: big_gradient(big_x_j).block_until_ready()
        learned_gradient = peer.gradient_operator(jl)
        functions[f"{method}_gradlearned"] = lambda g=learned_gradient: g(x_j).block_until_ready()
    times = best_of_rounds(functions, repeat, rounds)

    # ---------------------------------------------------------------- upper-level steps
    def time_steps(parts, methods):
        steps = {m: build_step(m, parts) for m in methods}
        state0 = JaxPeer.initial_state(jp, start, parts)
        counts = {m: jax_cg_counts(peers[m], steps[m], state0, truth, settings, n_steps) for m in methods}
        # per step: the mean over the whole sequence of steps (the best of two rounds), not the fastest
        # single step: the library's first step filters with the separable DCT bank, every later one
        # with learned filters on the direct back end, while the peer's steps all cost the same
        lib_best, jax_best, final = np.inf, {m: np.inf for m in methods}, 0.0
        for _ in range(2):  # two rounds, alternating sides
            lib_params, lib_times, lib_cg = library_steps(cost, params, loss, start, parts, settings, n_steps)
            if lib_times.mean() < lib_best:
                lib_best, lib_first, lib_later = lib_times.mean(), lib_times[0], np.median(lib_times[1:])
            for m in methods:
                state, jax_times = jax_steps(steps[m], JaxPeer.initial_state(jp, start, parts), n_steps)
                jax_best[m] = min(jax_best[m], jax_times.mean())
                error = max(relative_error(state[0][p], getattr(lib_params, p)) for p in parts)
                final = max(final, error)
                check(f"{m}: γ after {n_steps} steps", error, 1e-6)
        return dict(
            lib=lib_best,
            lib_first=lib_first,
            lib_later=lib_later,
            jax=jax_best,
            lib_cg=lib_cg,
            jax_cg=counts,
            final=final,
        )

    # the step is ~11 gradients and a few Hessian products: time it with the filterings whose ∇ₓΦ is
    # within 2× of the fastest JAX one (the others cannot win, and cost minutes under load)
    fastest = min(times[f"{m}_grad"] for m in peers)
    contenders = [m for m in peers if times[f"{m}_grad"] <= 2 * fastest]
    step_rows = {("beta", "filters"): time_steps(("beta", "filters"), contenders)}
    best_method = min(contenders, key=lambda m: step_rows["beta", "filters"]["jax"][m])
    step_rows["beta",] = time_steps(("beta",), [best_method])  # with the filtering fastest on the full step

    # ---------------------------------------------------------------- table
    def faster(kind):
        return min(peers, key=lambda m: times[f"{m}_{kind}"])

    rows = []
    settings_text = dict(
        grad="J=3 50×50, K=48 7×7, at a fixed γ (JAX: jax.grad with the filter spectra computed once)",
        hvp="at a fixed x, as in CG: library hessian_operator(x) (→ implicit), JAX jax.linearize of jax.grad",
        hvpfull="from scratch: library hessian_vector_product, JAX jvp of grad",
        mixed="same; all of β0, β_k, c_k",
        grad256="J=1 256×256, K=48 7×7, at a fixed γ as above",
        gradlearned="as ∇ₓΦ, with the DCT filters + 1e-3 N(0, 1) noise (not outer products: "
        "the library's direct back end)",
    )
    names = dict(
        grad="∇ₓΦ",
        hvp="Hessian-vector ∇ₓₓΦ v",
        hvpfull="Hessian-vector, from scratch",
        mixed="mixed (∇ₓγΦ)'v",
        grad256="∇ₓΦ 256×256",
        gradlearned="∇ₓΦ, learned filters",
    )

    def others(timings, m):
        return ", ".join(f"{o} {1e3 * t:.2f}" for o, t in timings.items() if o != m)

    for kind in ("grad", "hvp", "hvpfull", "mixed", "grad256", "gradlearned"):
        m = faster(kind)
        rows.append(
            (
                names[kind],
                settings_text[kind] + "; other JAX filterings: " + others({o: times[f"{o}_{kind}"] for o in peers}, m),
                times[f"lib_{kind}"],
                times[f"{m}_{kind}"],
                m,
                TARGETS.get(kind),
            )
        )
    for parts, row in step_rows.items():
        m = min(row["jax"], key=lambda m: row["jax"][m])
        text = (
            f"{'+'.join(parts)}; T={settings['n_iter']} warm OGM, CG tol {settings['cg_tol']:g} of initial residual "
            f"(max {settings['cg_max_iter']}), warm q, Adam lr {settings['lr']:g}; {n_steps} steps, CG it/step "
            f"lib {row['lib_cg'].mean():.1f}, JAX {row['jax_cg'][m].mean():.1f}; lib first step "
            f"{1e3 * row['lib_first']:.1f}, median of the others {1e3 * row['lib_later']:.1f}; "
            f"max Δγ after the steps {row['final']:.0e}"
            + (
                f"; other JAX filterings: {others(row['jax'], m)}"
                if len(row["jax"]) > 1
                else f"; JAX timed with {m} only"
            )
        )
        target = TARGETS["step"]
        rows.append((f"upper-level step ({'+'.join(parts)})", text, row["lib"], row["jax"][m], m, target))

    print()
    print("| quantity | bilevel_lib ms | JAX ms | lib/JAX | JAX/lib (speed-up) | target | verdict | settings |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- |")
    verdicts = []
    for name, text, lib, peer, method, target in rows:
        speedup = peer / lib
        verdict = "—" if target is None else ("PASS" if speedup >= target else "FAIL")
        if target is not None:
            verdicts.append(f"{verdict}: {name} is {speedup:.2f}× the JAX peer's speed (target ≥ {target:g}×)")
        print(
            f"| {name} | {1e3 * lib:.2f} | {1e3 * peer:.2f} ({method}) | {lib / peer:.2f} | {speedup:.2f} | "
            f"{'—' if target is None else f'≥ {target:g}×'} | {verdict} | {text} |"
        )
    print(
        f"Times: minimum over {rounds} rounds × up to {repeat} repeats, after warm-up; a step: the mean over "
        f"a sequence of {n_steps} steps from the same start, the better of 2 rounds."
    )
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
