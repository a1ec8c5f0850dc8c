"""Preconditioned conjugate gradient on the Hessian system ∇ₓₓΦ q = ∇ₓℓ (review eq. 4.10): the
circulant and banded-Cholesky preconditioners give the solution of a dense solve, need fewer
iterations where they should, leave the implicit hypergradient unchanged, and bad input fails
clearly.  (Speed is measured in benchmarks/bench_single_level.py, not here.)"""

import numpy as np
import pytest
from problems import GEOMETRIES, random_problem, relative_error

import bilevel_lib as bl
from bilevel_lib import hypergrad
from bilevel_lib.problem import data, filters
from bilevel_lib.solvers.cg import conjugate_gradient
from bilevel_lib.solvers.preconditioners import BandedCholesky, CirculantPreconditioner, make_preconditioner

GEOMS = list(GEOMETRIES)
MODELS = ["identity", "blur", "mask"]


def dense_hessians(hessian):
    """The explicit Hessian of each image, formed column by column from the implicit products."""
    shape = hessian.shape
    n = int(np.prod(shape[1:]))
    columns = [
        hessian(np.broadcast_to(np.eye(n)[i].reshape(shape[1:]), shape).copy()).reshape(shape[0], n) for i in range(n)
    ]
    return np.stack(columns, axis=-1)  # (J, N, N)


def dense_solve(hessian, b):
    return np.linalg.solve(dense_hessians(hessian), b.reshape(b.shape[0], -1, 1))[..., 0].reshape(b.shape)


def preconditioners_for(model):
    """The preconditioners that apply to a forward model (Cholesky needs a diagonal A'A)."""
    return ["circulant"] + ([] if model == "blur" else ["cholesky"])


# --------------------------------------------------------------------------- same solution
@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
def test_preconditioned_cg_gives_the_dense_solution(geometry, model):
    cost, params, x, rng = random_problem(geometry, model)
    hessian = cost.hessian_operator(x, params, method="implicit")
    b = rng.standard_normal(x.shape)
    exact = dense_solve(hessian, b)
    plain = conjugate_gradient(hessian, b, tol=1e-12)
    assert plain.converged and relative_error(plain.x, exact) <= 1e-10
    for name in preconditioners_for(model):
        result = conjugate_gradient(hessian, b, tol=1e-12, preconditioner=make_preconditioner(name, hessian))
        assert result.converged, name
        assert relative_error(result.x, exact) <= 1e-10, name
        assert relative_error(result.x, plain.x) <= 1e-10, name
        # the stopping test is on the true residual, whatever the preconditioner
        residual = np.linalg.norm((b - hessian(result.x)).reshape(len(b), -1), axis=1)
        assert np.all(residual <= 1e-12 * np.linalg.norm(b.reshape(len(b), -1), axis=1))


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", ["identity", "mask"])
def test_banded_cholesky_is_the_exact_inverse(geometry, model):
    cost, params, x, rng = random_problem(geometry, model)
    hessian = cost.hessian_operator(x, params)
    factor = BandedCholesky.from_hessian(hessian)
    r = rng.standard_normal(x.shape)
    np.testing.assert_allclose(factor(r), dense_solve(hessian, r), rtol=1e-11, atol=1e-12)
    assert conjugate_gradient(hessian, r, tol=1e-12, preconditioner=factor).iterations == 1


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
def test_circulant_preconditioner_is_the_inverse_of_t_chans_circulant(geometry, model):
    """M = circ(A'A) + Σ_k w_k mean(φ̈_k) C_k'C_k, assembled densely from the review's terms."""
    cost, params, x, rng = random_problem(geometry, model)
    hessian = cost.hessian_operator(x, params)
    shape = cost.signal_shape
    n = int(np.prod(shape))
    gram = cost.forward_model.gram(np.eye(n).reshape((n,) + shape)).reshape(n, n)
    if model == "mask":
        gram = np.mean(np.diag(gram)) * np.eye(n)  # the circulant nearest to diag(mask)
    r = rng.standard_normal(x.shape)
    for j in range(cost.n_images):
        matrix = gram.copy()
        for k in range(params.n_filters):
            C = bl.problem.ops.correlation_matrix(params.filters[k], shape)
            matrix += params.strengths[k] * hessian.curvature[j, k].mean() * C.T @ C
        expected = np.linalg.solve(matrix, r[j].ravel())
        np.testing.assert_allclose(
            CirculantPreconditioner.from_hessian(hessian)(r)[j].ravel(), expected, rtol=1e-10, atol=1e-12
        )


def test_batched_pcg_treats_each_image_as_its_own_system():
    """Image j's answer and iteration count do not depend on the other images of the batch."""
    cost, params, x, rng = random_problem("2d-4x2", "identity", n_images=3)
    hessian = cost.hessian_operator(x, params)
    b = rng.standard_normal(x.shape)
    b[1] = 0.0  # already solved: must stay exactly zero
    for name in (None, "circulant"):
        batch = conjugate_gradient(hessian, b, tol=1e-11, preconditioner=make_preconditioner(name, hessian))
        assert np.all(batch.x[1] == 0.0)
        for j in (0, 2):
            single_cost = bl.LowerLevelCost(cost.y[j : j + 1], cost.penalty, cost.forward_model)
            single_hessian = single_cost.hessian_operator(x[j : j + 1], params)
            single = conjugate_gradient(
                single_hessian, b[j : j + 1], tol=1e-11, preconditioner=make_preconditioner(name, single_hessian)
            )
            assert relative_error(batch.x[j], single.x[0]) <= 1e-12


# --------------------------------------------------------------------------- fewer iterations
def smooth_denoising_problem(size=24):
    """A strongly regularised crop (finite differences, β0 = 0, ε = 0.1): nearly uniform φ̈."""
    truth = data.cameraman()[140 : 140 + size, 200 : 200 + size]
    y = data.add_noise(truth, 0.1, rng=0)
    params = bl.Hyperparameters.from_filters(filters.finite_differences(2), beta0=0.0)
    cost = bl.LowerLevelCost(y[None], bl.CornerRounded1Norm(0.1))
    x = bl.solve_lower_level(cost, params, tol=1e-9, max_iter=100_000).x
    return cost, params, bl.SquaredErrorLoss(truth[None]), x


def test_preconditioners_need_fewer_iterations_where_they_should():
    cost, params, loss, x = smooth_denoising_problem()
    hessian = cost.hessian_operator(x, params)
    rhs = loss.gradient(x)
    plain = conjugate_gradient(hessian, rhs, tol=1e-10)
    circulant = conjugate_gradient(
        hessian, rhs, tol=1e-10, preconditioner=CirculantPreconditioner.from_hessian(hessian)
    )
    cholesky = conjugate_gradient(hessian, rhs, tol=1e-10, preconditioner=BandedCholesky.from_hessian(hessian))
    assert plain.converged and circulant.converged and cholesky.converged
    assert circulant.iterations < plain.iterations / 3, (circulant.iterations, plain.iterations)
    assert cholesky.iterations == 1 < plain.iterations
    assert relative_error(circulant.x, plain.x) <= 1e-9 and relative_error(cholesky.x, plain.x) <= 1e-9


# --------------------------------------------------------------------------- the hypergradient
@pytest.mark.parametrize("geometry", ["1d", "2d-4x2"])
@pytest.mark.parametrize("name", ["circulant", "cholesky", CirculantPreconditioner.from_hessian])
def test_implicit_hypergradient_with_a_preconditioner_matches_finite_differences(geometry, name):
    cost, params, x, rng = random_problem(geometry, "identity")
    loss = bl.SquaredErrorLoss(cost.y + 0.05 * rng.standard_normal(cost.y.shape))
    plain = hypergrad.implicit_hypergradient(cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=200_000)
    pre = hypergrad.implicit_hypergradient(
        cost, params, loss, lower_tol=1e-12, cg_tol=1e-12, lower_max_iter=200_000, cg_preconditioner=name
    )
    assert pre.cg_converged and pre.cg_iterations <= plain.cg_iterations
    assert relative_error(pre.gradient.flatten(), plain.gradient.flatten()) <= 1e-9
    fd = hypergrad.finite_difference_hypergradient(cost, params, loss, step=1e-5, lower_tol=1e-12)
    assert relative_error(pre.gradient.flatten(), fd) <= 1e-6


# --------------------------------------------------------------------------- bad input
def test_a_preconditioner_of_the_wrong_shape_or_values_raises_value_error():
    cost, params, x, rng = random_problem("2d-4x2", "identity")
    hessian = cost.hessian_operator(x, params)
    b = rng.standard_normal(x.shape)
    with pytest.raises(ValueError, match="residual's shape"):
        conjugate_gradient(hessian, b, preconditioner=lambda r: r[0])
    with pytest.raises(ValueError, match="residual's shape"):
        conjugate_gradient(hessian, b, preconditioner=lambda r: list(r))
    with pytest.raises(ValueError, match="NaN or infinite"):
        conjugate_gradient(hessian, b, preconditioner=lambda r: np.full_like(r, np.nan))
    with pytest.raises(ValueError, match="NaN or infinite"):
        conjugate_gradient(hessian, b, preconditioner=lambda r: r * np.inf)
    with pytest.raises(ValueError, match="not positive definite"):
        conjugate_gradient(hessian, b, preconditioner=lambda r: -r)
    with pytest.raises(TypeError, match="callable"):
        conjugate_gradient(hessian, b, preconditioner=np.ones(x.shape))
    with pytest.raises(ValueError, match="finite"):
        conjugate_gradient(hessian, np.full(x.shape, np.nan))
    with pytest.raises(ValueError, match="apply_hessian must return"):
        conjugate_gradient(lambda v: v[:1], b)


def test_preconditioner_constructors_reject_bad_input():
    cost, params, x, rng = random_problem("2d-4x2", "identity")
    hessian = cost.hessian_operator(x, params)
    spectrum = CirculantPreconditioner.from_hessian(hessian).eigenvalues
    with pytest.raises(ValueError, match="shape"):
        CirculantPreconditioner(spectrum[:, :, :-1], cost.signal_shape)
    with pytest.raises(ValueError, match="finite"):
        CirculantPreconditioner(np.where(spectrum > spectrum.mean(), np.nan, spectrum), cost.signal_shape)
    with pytest.raises(ValueError, match="positive"):
        CirculantPreconditioner(-spectrum, cost.signal_shape)
    with pytest.raises(ValueError, match="must be 96×96"):
        BandedCholesky(hessian.matrix[:10, :10], hessian.shape, (3, 1))
    with pytest.raises(ValueError, match="reach"):
        BandedCholesky(hessian.matrix, hessian.shape, (3,))
    with pytest.raises(ValueError, match="farther apart"):
        BandedCholesky(hessian.matrix, hessian.shape, (1, 0))
    with pytest.raises(ValueError, match="not positive definite"):
        BandedCholesky(-hessian.matrix, hessian.shape, (3, 1))
    blurred, params_b, x_b, _ = random_problem("2d-4x2", "blur")
    with pytest.raises(ValueError, match="diagonal"):
        BandedCholesky.from_hessian(blurred.hessian_operator(x_b, params_b))
    with pytest.raises(ValueError, match="unknown preconditioner"):
        make_preconditioner("jacobi", hessian)
    with pytest.raises(TypeError, match="callable"):
        make_preconditioner(3, hessian)
    with pytest.raises(ValueError, match="unknown preconditioner"):
        hypergrad.implicit_hypergradient(cost, params, bl.SquaredErrorLoss(cost.y), cg_preconditioner="ilu")


def test_circulant_preconditioner_cuts_cg_iterations_on_the_cameraman_run():
    """Where the cameraman recipe uses it (recipes.cameraman_case): 48 DCT 7×7 filters, ε = 0.01, at the
    β the saved β-only run ends with, CG to the recipe's relative tolerance needs far fewer iterations
    with the circulant preconditioner and reaches the same q (both stop on the true residual)."""
    from bilevel_lib.experiments import recipes, store

    saved = store.load_result("cameraman-beta")
    truth = data.cameraman_patches()
    cost = bl.LowerLevelCost(data.add_noise(truth, recipes.CAMERAMAN_SIGMA, rng=0), bl.CornerRounded1Norm(0.01))
    params = saved.params
    x = bl.solve_lower_level(cost, params, x0=saved.x, tol=1e-8, max_iter=20_000).x
    hessian = cost.hessian_operator(x, params)
    rhs = bl.SquaredErrorLoss(truth).gradient(x)
    plain = conjugate_gradient(hessian, rhs, tol=1e-8, max_iter=2000)
    circulant = conjugate_gradient(
        hessian, rhs, tol=1e-8, max_iter=2000, preconditioner=CirculantPreconditioner.from_hessian(hessian)
    )
    assert plain.converged and circulant.converged
    assert circulant.iterations < plain.iterations / 2.5, (circulant.iterations, plain.iterations)
    assert relative_error(circulant.x, plain.x) <= 1e-7
