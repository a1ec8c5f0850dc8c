"""Φ(x; γ) of (Ex): every derivative checked against central finite differences and against an
independent explicit-matrix computation (review eq. 4.9, 4.11, App. C.1), for 1-D and 2-D signals,
several filter shapes, each forward model A and two penalties."""

import numpy as np
import pytest
from problems import GEOMETRIES, central_difference, explicit_gram, random_problem

import bilevel_lib as bl
from bilevel_lib.problem import filters, ops
from bilevel_lib.problem.cost import SPARSE_HESSIAN_MAX_WORK

GEOMS = list(GEOMETRIES)
MODELS = ["identity", "blur", "mask"]
PENALTIES = {"cr1n": bl.CornerRounded1Norm(0.1), "log": bl.LogSquare(0.5)}


def total_value(cost, params):
    return lambda x: float(np.sum(cost.value(x, params)))


# --------------------------------------------------------------------------- ∇ₓΦ
@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("penalty", list(PENALTIES))
def test_gradient_matches_finite_differences_entrywise(geometry, model, penalty):
    cost, params, x, rng = random_problem(geometry, model, PENALTIES[penalty])
    grad = cost.gradient(x, params)
    f = total_value(cost, params)
    fd = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        fd[i] = central_difference(f, x, e.reshape(x.shape), 1e-6)
    np.testing.assert_allclose(grad.ravel(), fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())


# --------------------------------------------------------------------------- ∇ₓₓΦ v
@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("penalty", list(PENALTIES))
def test_hessian_vector_product_matches_finite_differences(geometry, model, penalty):
    cost, params, x, rng = random_problem(geometry, model, PENALTIES[penalty])
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        hv = cost.hessian_vector_product(x, params, v)
        fd = central_difference(lambda u: cost.gradient(u, params), x, v, 1e-6)
        np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())
        np.testing.assert_allclose(cost.hessian_operator(x, params)(v), hv, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
def test_hessian_matches_explicit_matrix_formula(geometry, model):
    """∇ₓₓΦ = A'A + e^{β0} Σ_k e^{β_k} C_k' diag(φ̈.(C_k x)) C_k, built from dense matrices (eq. 4.9)."""
    cost, params, x, rng = random_problem(geometry, model)
    shape = cost.signal_shape
    n = int(np.prod(shape))
    basis = np.eye(n).reshape((n,) + shape)
    gram = cost.forward_model.gram(basis).reshape(n, n)
    for j in range(cost.n_images):
        hessian = gram.copy()
        for k in range(params.n_filters):
            C = ops.correlation_matrix(params.filters[k], shape)
            curvature = cost.penalty.second_derivative(C @ x[j].ravel())
            hessian += params.strengths[k] * C.T @ (curvature[:, None] * C)
        v = rng.standard_normal(x.shape)
        np.testing.assert_allclose(
            cost.hessian_vector_product(x, params, v)[j].ravel(), hessian @ v[j].ravel(), rtol=1e-11, atol=1e-11
        )
        for method in ("implicit", "sparse", "stencil"):
            np.testing.assert_allclose(
                cost.hessian_operator(x, params, method=method)(v)[j].ravel(),
                hessian @ v[j].ravel(),
                rtol=1e-11,
                atol=1e-11,
            )
        assembled = cost.hessian_operator(x, params, method="sparse")
        block = assembled.matrix.toarray()[j * n : (j + 1) * n, j * n : (j + 1) * n]
        np.testing.assert_allclose(
            block, hessian if assembled.matrix_is_hessian else hessian - gram, rtol=1e-11, atol=1e-11
        )
        if cost.penalty.is_convex:
            assert np.linalg.eigvalsh(hessian).min() > -1e-10


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("penalty", list(PENALTIES))
def test_sparse_and_implicit_hessian_products_agree(geometry, model, penalty):
    """The assembled Hessian (one sparse stencil per pixel) and the filter-bank products (eq. 4.11)."""
    cost, params, x, rng = random_problem(geometry, model, PENALTIES[penalty], n_images=3)
    implicit = cost.hessian_operator(x, params, method="implicit")
    sparse = cost.hessian_operator(x, params, method="sparse")
    assert (implicit.method, sparse.method) == ("implicit", "sparse")
    assert sparse.matrix_is_hessian == (model != "blur")
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        np.testing.assert_allclose(sparse(v), implicit(v), rtol=1e-12, atol=1e-12 * np.abs(implicit(v)).max())
    matrix = sparse.matrix.toarray()
    n = cost.n_pixels
    np.testing.assert_array_equal(matrix[:n, n:], 0.0)  # block diagonal: images never couple
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-13 * np.abs(matrix).max())


def test_auto_assembles_the_hessian_only_when_that_is_cheap():
    cost, params, x, rng = random_problem("2d-4x2", "identity")
    assert cost.hessian_operator(x, params).method == "stencil"  # assembled, compiled products
    big = bl.LowerLevelCost(np.zeros((1, 256, 256)))
    dct = bl.Hyperparameters.from_filters(filters.dct_filters(7))
    hessian = big.hessian_operator(big.y, dct)
    assert hessian.method == "implicit" and hessian.assembly_work > SPARSE_HESSIAN_MAX_WORK
    assert hessian._matrix is None and hessian._stencil is None  # never assembled behind the user's back
    with pytest.raises(ValueError, match="method must be"):
        cost.hessian_operator(x, params, method="dense")


def test_scaled_gram_matrix_is_the_sum_of_explicit_correlation_matrices():
    """Σ_k w_k C_k' diag(d_k) C_k + diag(g) from dense matrices, on signals smaller than the stencil."""
    rng = np.random.default_rng(5)
    for signal_shape, filter_shape in [((7,), (3,)), ((4, 5), (3, 4)), ((3, 3), (3, 2))]:
        bank = rng.standard_normal((2,) + filter_shape)
        op = ops.FilterBankOperator(bank, signal_shape)
        scale = rng.random((2, 2) + signal_shape)
        weights, diagonal = rng.random(2), rng.random((2,) + signal_shape)
        matrix = op.scaled_gram_matrix(scale, weights=weights, diagonal=diagonal).toarray()
        n = int(np.prod(signal_shape))
        expected = explicit_gram(bank, signal_shape, scale, weights, diagonal)
        for b in range(2):
            np.testing.assert_allclose(
                matrix[b * n : (b + 1) * n, b * n : (b + 1) * n], expected[b], rtol=1e-12, atol=1e-13
            )


# --------------------------------------------------------------------------- (∇ₓγΦ)' v
@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("penalty", list(PENALTIES))
def test_mixed_products_match_finite_differences_in_every_hyperparameter(geometry, model, penalty):
    """d/dγ ⟨v, ∇ₓΦ(x; γ)⟩ for β0, every β_k and every filter tap, by central differences on flat γ."""
    cost, params, x, rng = random_problem(geometry, model, PENALTIES[penalty])
    v = rng.standard_normal(x.shape)
    analytic = cost.mixed_transpose(x, params, v).flatten()
    flat = params.flatten()

    def inner(vector):
        return float(np.sum(v * cost.gradient(x, params.unflatten(vector))))

    fd = np.array([central_difference(inner, flat, np.eye(flat.size)[r], 1e-6) for r in range(flat.size)])
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("geometry", GEOMS)
def test_filter_mixed_product_matches_appendix_c1_with_circular_shifts(geometry):
    """∂/∂c_{k,s} ∇ₓΦ = e^{β0+β_k} [roll(φ̇.(z_k), +s) + C_k'(φ̈.(z_k) ⊙ roll(x, −s))]  (App. C.1)."""
    cost, params, x, rng = random_problem(geometry, "identity")
    v = rng.standard_normal(x.shape)
    analytic = cost.mixed_transpose(x, params, v).filters
    axes = tuple(range(1, x.ndim))
    z = ops.correlate(x, params.filters)
    for k in range(params.n_filters):
        slope = cost.penalty.derivative(z[:, k])
        curvature = cost.penalty.second_derivative(z[:, k])
        for s in np.ndindex(params.filter_shape):
            column = np.roll(slope, s, axis=axes) + ops.correlate_adjoint(
                (curvature * np.roll(x, tuple(-t for t in s), axis=axes))[:, None], params.filters[k : k + 1]
            )
            expected = params.strengths[k] * np.sum(v * column)
            assert analytic[(k,) + s] == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_beta_mixed_products_match_review_formula():
    """∇ₓβ_kΦ = e^{β0+β_k} c̃_k ⊛ φ̇.(c_k ⊛ x) and ∇ₓβ0Φ = Σ_k of those (eq. 4.9)."""
    cost, params, x, rng = random_problem("2d-4x2", "blur")
    v = rng.standard_normal(x.shape)
    mixed = cost.mixed_transpose(x, params, v)
    z = ops.correlate(x, params.filters)
    for k in range(params.n_filters):
        column = params.strengths[k] * ops.correlate_adjoint(
            cost.penalty.derivative(z[:, k : k + 1]), params.filters[k : k + 1]
        )
        assert mixed.beta[k] == pytest.approx(np.sum(v * column), rel=1e-11)
    assert mixed.beta0 == pytest.approx(mixed.beta.sum(), rel=1e-13)


@pytest.mark.parametrize(
    "geometry, bank",
    [(g, "random") for g in GEOMS]
    + [(g, b) for g in GEOMS if g.startswith("2d") for b in ("dct-separable", "dct-direct", "dct-fft")],
)
def test_mixed_product_for_beta_only_equals_the_beta_part_of_the_whole_one(geometry, bank):
    """parts without "filters" skip the taps' products: β0 and β_k as with every part (each back end
    of the filter bank), the filter part zeros, as documented."""
    cost, params, x, rng = random_problem(geometry, "blur", n_images=3)
    if bank != "random":
        dct = filters.dct_filters(3)[:, : min(3, cost.signal_shape[0]), : min(3, cost.signal_shape[1])]
        params = bl.Hyperparameters(params.beta0, rng.uniform(-0.5, 0.5, dct.shape[0]), dct)
        method = {"dct-separable": "separable", "dct-direct": "direct", "dct-fft": "fft"}[bank]
        cost._cached_operator = ops.FilterBankOperator(params.filters, cost.signal_shape, method=method)
        cost._cached_filters = params.filters.copy()
        assert cost.operator(params).method == method
    v = rng.standard_normal(x.shape)
    whole = cost.mixed_transpose(x, params, v)
    for parts in (("beta",), ("beta0",), ("beta0", "beta")):
        partial = cost.mixed_transpose(x, params, v, parts=parts)
        np.testing.assert_allclose(partial.beta, whole.beta, rtol=1e-12, atol=1e-14 * np.abs(whole.beta).max())
        assert partial.beta0 == pytest.approx(whole.beta0, rel=1e-12, abs=1e-14)
        assert not np.any(partial.filters) and partial.filters.shape == params.filters.shape
    with_filters = cost.mixed_transpose(x, params, v, parts=("filters",))
    np.testing.assert_array_equal(with_filters.filters, whole.filters)
    with pytest.raises(ValueError, match="parts"):
        cost.mixed_transpose(x, params, v, parts=("gamma",))


# --------------------------------------------------------------------------- Lipschitz bound (4.19)
@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
def test_lipschitz_bound_dominates_the_hessian(geometry, model):
    cost, params, x, rng = random_problem(geometry, model, bl.CornerRounded1Norm(0.05))
    bound = cost.lipschitz(params)
    # power iteration on the Hessian at several points never exceeds the bound
    for _trial in range(3):
        point = 3.0 * rng.standard_normal(x.shape)
        v = rng.standard_normal(x.shape)
        for _ in range(200):
            v = cost.hessian_vector_product(point, params, v)
            v /= np.linalg.norm(v)
        rayleigh = np.sum(v * cost.hessian_vector_product(point, params, v))
        assert rayleigh <= bound * (1 + 1e-10)
    # and it is the formula of eq. (4.19)
    l1 = np.abs(params.filters.reshape(params.n_filters, -1)).sum(axis=1)
    expected = cost.forward_model.sigma1_squared + np.exp(params.beta0) / 0.05 * np.sum(np.exp(params.beta) * l1**2)
    assert bound == pytest.approx(expected, rel=1e-14)


# --------------------------------------------------------------------------- values and bad input
def test_value_is_the_formula_of_ex():
    cost, params, x, rng = random_problem("1d", "identity")
    z = ops.correlate(x, params.filters)
    expected = 0.5 * np.sum((x - cost.y) ** 2, axis=1) + np.einsum("k,jkn->j", params.strengths, np.sqrt(z**2 + 0.1**2))
    np.testing.assert_allclose(cost.value(x, params), expected, rtol=1e-13)


def test_bad_inputs_raise_value_errors_that_say_what_was_expected():
    cost, params, x, rng = random_problem("2d-4x2", "identity")
    with pytest.raises(ValueError, match=r"shape of y"):
        cost.gradient(x[:, :4], params)
    with pytest.raises(ValueError, match="finite"):
        bl.LowerLevelCost(np.full((1, 8), np.nan))
    with pytest.raises(ValueError, match="finite"):
        bl.LowerLevelCost(np.array([[1.0, np.inf, 0.0]]))
    with pytest.raises(ValueError, match="at least 2 dimension"):
        bl.LowerLevelCost(np.zeros(8))
    with pytest.raises(ValueError, match="fit inside"):
        cost.gradient(x, bl.Hyperparameters.from_filters(np.ones((1, 9, 2))))
    with pytest.raises(ValueError, match=r"act on 1-D signals.*\(8, 6\)"):
        cost.gradient(x, bl.Hyperparameters.from_filters(np.ones((1, 3))))
    with pytest.raises(ValueError, match="match the forward model"):
        bl.LowerLevelCost(np.zeros((2, 4, 4)), forward_model=bl.PixelMask(np.ones((5, 5))))
    with pytest.raises(TypeError, match="Hyperparameters"):
        cost.gradient(x, {"beta0": 0.0})


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_a_hessian_on_the_costs_scratch_array_equals_a_fresh_one(method):
    """_hessian_operator(scratch=True), as implicit_step uses it, gives the same products bitwise,
    and a second call reuses the work array (the first operator is then stale: callers drop it)."""
    rng = np.random.default_rng(5)
    y = rng.standard_normal((2, 9, 8))
    cost = bl.LowerLevelCost(y, bl.CornerRounded1Norm(0.05))
    bank = filters.dct_filters(3)
    params = bl.Hyperparameters(-1.0, rng.uniform(-0.5, 0.5, bank.shape[0]), bank)
    cost._cached_operator = ops.FilterBankOperator(bank, cost.signal_shape, method=method)
    cost._cached_filters = bank.copy()
    x, v = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    fresh = cost.hessian_operator(x, params, method="implicit")
    reused = cost._hessian_operator(x, params, "implicit", scratch=True)
    np.testing.assert_array_equal(reused.curvature, fresh.curvature)
    np.testing.assert_array_equal(reused(v), fresh(v))
    again = cost._hessian_operator(2.0 * x, params, "implicit", scratch=True)
    if method != "fft":
        assert np.shares_memory(again.curvature, reused.curvature)
    np.testing.assert_array_equal(again(v), cost.hessian_operator(2.0 * x, params, method="implicit")(v))
