"""The JAX peer of ``benchmarks/peers`` computes what bilevel_lib computes, so the peer benchmark
compares like with like.  Skipped where JAX is not installed (it lives only in ``.venv-peers``,
``make bench-peers``); run it there with ``.venv-peers/bin/python -m pytest tests/lib/test_peers.py``.

On a tiny problem (J = 2 images 12×10, K = 3 random non-symmetric 3×2 filters, CR1N ε = 0.1, a
random γ), for both ways of filtering: Φ, ∇ₓΦ, the Hessian-vector product (jvp-of-grad and
linearised), the mixed product, T OGM iterations with restarts, CG to the library's stopping rule,
and a few upper-level steps (hypergradient, Adam) all agree with bilevel_lib to 1e-10.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import bilevel_lib as bl
from bilevel_lib import training
from bilevel_lib.hypergrad.implicit import implicit_hypergradient
from bilevel_lib.solvers.cg import conjugate_gradient

jax = pytest.importorskip("jax", reason="JAX is only in the peer benchmark's environment (make bench-peers)")
jnp = pytest.importorskip("jax.numpy")

PEER_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "peers" / "jax_peer.py"
EPS = 0.1
TOL = 1e-10


def load_peer_module():
    spec = importlib.util.spec_from_file_location("jax_peer", PEER_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peer_module = load_peer_module()


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    truth = np.cumsum(rng.standard_normal((2, 12, 10)), axis=1) * 0.1
    y = truth + 0.1 * rng.standard_normal(truth.shape)
    params = bl.Hyperparameters(-1.5, 0.3 * rng.standard_normal(3), rng.standard_normal((3, 3, 2)))
    x = y + 0.1 * rng.standard_normal(y.shape)
    v = rng.standard_normal(y.shape)
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(EPS))
    return dict(truth=truth, y=y, params=params, x=x, v=v, cost=cost, loss=bl.SquaredErrorLoss(truth))


def as_jax(params):
    return dict(beta0=jnp.asarray(params.beta0), beta=jnp.asarray(params.beta), filters=jnp.asarray(params.filters))


@pytest.fixture(scope="module", params=sorted(peer_module.CORRELATIONS))
def peer(request, problem):
    return peer_module.JaxPeer(problem["y"], EPS, request.param)


def test_float64_is_on():
    assert jnp.ones(1).dtype == jnp.float64


def test_cost_and_derivatives_agree(problem, peer):
    cost, params, x, v = problem["cost"], problem["params"], problem["x"], problem["v"]
    jp = as_jax(params)
    assert relative_error(peer.value(x, jp), cost.value(x, params).sum()) < TOL
    assert relative_error(peer.gradient(x, jp), cost.gradient(x, params)) < TOL
    assert relative_error(peer.gradient_operator(jp)(x), cost.gradient(x, params)) < TOL
    hvp = cost.hessian_vector_product(x, params, v)
    assert relative_error(peer.hvp(x, jp, v), hvp) < TOL
    assert relative_error(peer.hessian_operator(x, jp)(v), hvp) < TOL
    mixed, reference = peer.mixed(x, jp, v), cost.mixed_transpose(x, params, v)
    for part in ("beta0", "beta", "filters"):
        assert relative_error(mixed[part], getattr(reference, part)) < TOL, part


def test_the_check_is_sensitive_to_the_filter_orientation(problem, peer):
    """Convolution instead of correlation (the filters flipped) must be caught by the checks above."""
    cost, params, x = problem["cost"], problem["params"], problem["x"]
    jp = as_jax(params)
    flipped = dict(jp, filters=jp["filters"][:, ::-1, ::-1])
    assert relative_error(peer.gradient(x, flipped), cost.gradient(x, params)) > 1e-3


def test_ogm_agrees_with_restarts(problem, peer):
    cost, params, y = problem["cost"], problem["params"], problem["y"]
    reference = bl.solve_lower_level(cost, params, x0=y, tol=None, max_iter=40)
    assert reference.restarts > 0  # the restart branch is exercised
    x, g = peer.ogm(jnp.asarray(y), as_jax(params), n_iter=40)
    assert relative_error(x, reference.x) < TOL
    assert relative_error(g, cost.gradient(reference.x, params)) < TOL


def test_cg_follows_the_library_stopping_rule(problem, peer):
    cost, params, x, loss = problem["cost"], problem["params"], problem["x"], problem["loss"]
    rhs, q0 = loss.gradient(x), 0.01 * problem["v"]
    hessian = cost.hessian_operator(x, params)
    reference = conjugate_gradient(hessian, rhs, x0=q0, tol=1e-3, relative_to="initial", max_iter=500, warn=False)
    jp = as_jax(params)
    q = peer.cg(jnp.asarray(x), jp, jnp.asarray(rhs), jnp.asarray(q0), 1e-3, max_iter=500)
    q_count, iterations = peer.cg_iterations(jnp.asarray(x), jp, jnp.asarray(rhs), jnp.asarray(q0), 1e-3, 500)
    assert int(np.max(iterations)) == reference.iterations > 1
    assert relative_error(q, reference.x) < 1e-8
    assert relative_error(q_count, q) < 1e-12


@pytest.mark.parametrize("parts", [("beta", "filters"), ("beta",)])
def test_upper_level_steps_agree(problem, peer, parts):
    """Three double-loop steps (T = 5, CG to 1e-10 of the initial residual, Adam) on both sides."""
    cost, params, loss, truth = problem["cost"], problem["params"], problem["loss"], problem["truth"]
    x0 = problem["y"]
    step, hypergradient = peer.make_step(truth, parts, n_iter=5, cg_tol=1e-10, cg_max_iter=500, lr=1e-2)
    state = peer_module.JaxPeer.initial_state(as_jax(params), x0, parts)
    optimizer, vector, x, lib_state = training.Adam(learning_rate=1e-2), params.flatten(parts), x0, None
    for _ in range(3):
        grad, _, _ = hypergradient(state[0], state[1], state[2])
        hyper = implicit_hypergradient(
            cost,
            params,
            loss,
            x0=x,
            state=lib_state,
            lower_tol=None,
            lower_max_iter=5,
            cg_tol=1e-10,
            cg_relative_to="initial",
            cg_max_iter=500,
            warn=False,
        )
        for part in parts:
            assert relative_error(grad[part], getattr(hyper.gradient, part)) < TOL, part
        x, lib_state = hyper.x, hyper.state
        vector = optimizer.step(vector, hyper.gradient.flatten(parts))
        params = params.unflatten(vector, parts)
        state = step(state)
        assert relative_error(state[1], x) < TOL
        for part in parts:
            assert relative_error(state[0][part], getattr(params, part)) < TOL, part


def test_bad_arguments_are_refused(problem):
    with pytest.raises(ValueError, match="method"):
        peer_module.JaxPeer(problem["y"], EPS, "direct")
    with pytest.raises(ValueError, match="y must have shape"):
        peer_module.JaxPeer(problem["y"][0], EPS)
    with pytest.raises(ValueError, match="eps"):
        peer_module.JaxPeer(problem["y"], 0.0)
    with pytest.raises(ValueError, match="parts"):
        peer_module.JaxPeer(problem["y"], EPS).make_step(problem["truth"], ("gamma",))
