"""Circular correlation: exact agreement with explicit circulant matrices, adjointness, batching."""

import numpy as np
import pytest

from bilevel_lib.problem import ops

CASES = [((12,), (3,)), ((12,), (12,)), ((7, 5), (4, 2)), ((6, 6), (3, 3)), ((5, 4), (5, 4)), ((4, 3, 5), (2, 2, 3))]


METHODS = ["direct", "fft"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("signal_shape,filter_shape", CASES)
def test_correlate_matches_explicit_matrix(signal_shape, filter_shape, method):
    rng = np.random.default_rng(1)
    filters = rng.standard_normal((3,) + filter_shape)
    x = rng.standard_normal((2,) + signal_shape)
    z = ops.correlate(x, filters, method)
    assert z.shape == (2, 3) + signal_shape
    for k in range(3):
        matrix = ops.correlation_matrix(filters[k], signal_shape)
        for j in range(2):
            np.testing.assert_allclose(z[j, k].ravel(), matrix @ x[j].ravel(), atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("signal_shape,filter_shape", CASES)
def test_adjoint_matches_transposed_matrix_and_dot_product(signal_shape, filter_shape, method):
    rng = np.random.default_rng(2)
    filters = rng.standard_normal((3,) + filter_shape)
    v = rng.standard_normal((2, 3) + signal_shape)
    x = rng.standard_normal((2,) + signal_shape)
    back = ops.correlate_adjoint(v, filters, method)
    expected = sum(ops.correlation_matrix(filters[k], signal_shape).T @ v[1, k].ravel() for k in range(3))
    np.testing.assert_allclose(back[1].ravel(), expected, atol=1e-12)
    lhs = np.sum(ops.correlate(x, filters, method) * v)
    rhs = np.sum(x * back)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_correlation_convention_reads_taps_forwards():
    # z_i = Σ_a c_a x_{i+a}: with c = [−1, 1], z_i = x_{i+1} − x_i (circularly)
    x = np.array([0.0, 1.0, 4.0, 9.0])
    z = ops.correlate(x, np.array([[-1.0, 1.0]]))[0]
    np.testing.assert_allclose(z, [1.0, 3.0, 5.0, -9.0], atol=1e-12)


def test_adjoint_is_convolution_with_the_filter():
    # (C' v)_i = Σ_a c_a v_{i−a}
    v = np.array([[1.0, 0.0, 0.0, 0.0]])
    back = ops.correlate_adjoint(v, np.array([[2.0, 3.0]]))
    np.testing.assert_allclose(back, [2.0, 3.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_lag_correlation_is_the_derivative_in_the_taps(method):
    rng = np.random.default_rng(3)
    filters = rng.standard_normal((2, 3, 2))
    x = rng.standard_normal((4, 6, 5))
    g = rng.standard_normal((4, 2, 6, 5))
    op = ops.FilterBankOperator(filters, (6, 5), method)
    grad = op.lag_correlation(g, x)
    # ⟨g, C x⟩ is linear in the taps, so the derivative is exact: compare with unit perturbations
    for k, s in [(0, (0, 0)), (1, (2, 1)), (0, (1, 1))]:
        bump = np.zeros_like(filters)
        bump[(k,) + s] = 1.0
        expected = np.sum(g * ops.correlate(x, bump))
        assert grad[(k,) + s] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_operator_works_on_any_batch_shape():
    rng = np.random.default_rng(4)
    filters = rng.standard_normal((2, 3))
    x = rng.standard_normal((3, 4, 10))
    z = ops.correlate(x, filters)
    assert z.shape == (3, 4, 2, 10)
    np.testing.assert_allclose(z[2, 1], ops.correlate(x[2, 1], filters), atol=1e-13)


@pytest.mark.parametrize(
    "x_shape,filter_shape,match",
    [((8,), (9,), "fit inside"), ((8,), (3, 3), "at least 2 axes"), ((4, 4), (5, 2), "fit inside")],
)
def test_bad_shapes_raise_clear_errors(x_shape, filter_shape, match):
    with pytest.raises(ValueError, match=match):
        ops.correlate(np.zeros(x_shape), np.ones((1,) + filter_shape))


def test_non_finite_filters_raise():
    with pytest.raises(ValueError, match="finite"):
        ops.correlate(np.zeros(8), np.array([[1.0, np.nan]]))


@pytest.mark.parametrize("signal_shape,filter_shape", CASES)
def test_direct_and_fft_back_ends_agree(signal_shape, filter_shape):
    rng = np.random.default_rng(5)
    filters = rng.standard_normal((4,) + filter_shape)
    x = rng.standard_normal((3,) + signal_shape)
    g = rng.standard_normal((3, 4) + signal_shape)
    direct = ops.FilterBankOperator(filters, signal_shape, "direct")
    fft = ops.FilterBankOperator(filters, signal_shape, "fft")
    np.testing.assert_allclose(direct.forward(x), fft.forward(x), atol=1e-12)
    np.testing.assert_allclose(
        direct.adjoint(g, weights=[1, 2, 3, 4]), fft.adjoint(g, weights=[1, 2, 3, 4]), atol=1e-12
    )
    np.testing.assert_allclose(direct.lag_correlation(g, x), fft.lag_correlation(g, x), atol=1e-11)


def test_auto_picks_direct_for_small_filters_and_fft_for_large():
    learned = np.random.default_rng(0).standard_normal((2, 7, 7))  # not separable
    assert ops.FilterBankOperator(learned, (50, 50)).method == "direct"
    assert ops.FilterBankOperator(np.ones((2, 15, 15)), (50, 50)).method == "fft"
    with pytest.raises(ValueError, match="method must be"):
        ops.FilterBankOperator(np.ones((2, 3)), (8,), "winograd")


@pytest.mark.parametrize("method", METHODS)
def test_fused_products_equal_their_compositions(method):
    rng = np.random.default_rng(6)
    filters = rng.standard_normal((3, 4, 2))
    op = ops.FilterBankOperator(filters, (7, 6), method)
    x = rng.standard_normal((2, 7, 6))
    v = rng.standard_normal((2, 7, 6))
    scale = rng.standard_normal((2, 3, 7, 6))
    weights = np.array([0.5, 2.0, 1.5])
    expected = op.adjoint(np.tanh(op.forward(x)), weights)
    np.testing.assert_allclose(
        op.adjoint_of_pointwise(x, lambda z, out: np.tanh(z, out=out), weights), expected, atol=1e-12
    )
    np.testing.assert_allclose(
        op.adjoint_of_scaled(v, scale, weights), op.adjoint(scale * op.forward(v), weights), atol=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
def test_reused_work_arrays_never_change_returned_results(method):
    rng = np.random.default_rng(7)
    op = ops.FilterBankOperator(rng.standard_normal((2, 3, 3)), (6, 6), method)
    x1, x2 = rng.standard_normal((2, 1, 6, 6))
    z1 = op.forward(x1)
    a1 = op.adjoint(z1)
    g1 = op.adjoint_of_pointwise(x1, lambda z, out: np.multiply(z, 1.0, out=out))
    keep = [z1.copy(), a1.copy(), g1.copy()]
    op.forward(x2), op.adjoint(op.forward(x2)), op.adjoint_of_pointwise(x2, lambda z, out: np.sin(z, out=out))
    op.adjoint_of_scaled(x2, np.ones((1, 2, 6, 6)))
    for before, after in zip(keep, [z1, a1, g1]):
        np.testing.assert_array_equal(before, after)


def test_mixed_terms_agree_across_back_ends_and_with_their_definition():
    rng = np.random.default_rng(8)
    filters = rng.standard_normal((3, 3, 2))
    x, v = rng.standard_normal((2, 2, 7, 6))
    f1 = lambda z, out: np.tanh(z, out=out)  # noqa: E731
    f2 = lambda z, out: np.multiply(1.0 - np.tanh(z) ** 2, 1.0, out=out)  # noqa: E731
    results = {}
    for method in METHODS:
        op = ops.FilterBankOperator(filters, (7, 6), method)
        results[method] = op.mixed_terms(x, v, f1, f2)
        z, cv = op.forward(x), op.forward(v)
        np.testing.assert_allclose(results[method][0], np.einsum("jkab,jkab->k", cv, np.tanh(z)), atol=1e-12)
        expected = op.lag_correlation(np.tanh(z), v) + op.lag_correlation((1 - np.tanh(z) ** 2) * cv, x)
        np.testing.assert_allclose(results[method][1], expected, atol=1e-12)
    for a, b in zip(results["direct"], results["fft"]):
        np.testing.assert_allclose(a, b, atol=1e-11)


def test_operators_of_the_same_shapes_share_their_index_arrays_read_only():
    """A training step makes a new operator for its new filters; the index arrays of the Hessian
    stencil depend only on the shapes, so they are built once and shared (and cannot be written)."""
    rng = np.random.default_rng(4)
    first = ops.FilterBankOperator(rng.standard_normal((3, 2, 2)), (6, 5))
    second = ops.FilterBankOperator(rng.standard_normal((3, 2, 2)), (6, 5))
    other = ops.FilterBankOperator(rng.standard_normal((4, 2, 2)), (6, 5))
    scale = rng.random((1, 3, 6, 5))
    first.scaled_gram_stencil(scale)
    assert second._shift_gather() is first._shift_gather() and second._mirror_gather() is first._mirror_gather()
    assert other._shift_gather() is not first._shift_gather()  # another number of filters
    with pytest.raises(ValueError, match="read-only"):
        first._shift_gather()[0, 0] = 1
    # the shared arrays give the same stencil as arrays built afresh for the same operator
    ops._SHAPE_INDICES.clear()
    fresh = ops.FilterBankOperator(second.filters, (6, 5)).scaled_gram_stencil(scale)
    np.testing.assert_array_equal(second.scaled_gram_stencil(scale), fresh)


# ------------------------------------------------------------------ separable banks (rows, then columns)
def _separable_bank(rng, n_filters, filter_shape, n_rows):
    """K outer products a_k ⊗ b_{q_k} of random column factors and n_rows random row factors."""
    columns = rng.standard_normal((n_filters, filter_shape[0]))
    row_factors = rng.standard_normal((n_rows, filter_shape[1]))
    rows = np.arange(n_filters) % n_rows
    return np.einsum("ka,kb->kab", columns, row_factors[rows])


def test_separable_factors_rebuild_the_bank_and_refuse_learned_filters():
    from bilevel_lib.problem.filters import dct_filters

    for size in (3, 5, 7):
        bank = dct_filters(size)
        columns, row_factors, rows = ops.separable_factors(bank)
        assert row_factors.shape == (size, size)  # the DCT atoms, found despite ties in |entries|
        np.testing.assert_allclose(np.einsum("ka,kb->kab", columns, row_factors[rows]), bank, rtol=0, atol=1e-15)
    rng = np.random.default_rng(3)
    bank = _separable_bank(rng, 6, (4, 5), 2)
    columns, row_factors, rows = ops.separable_factors(bank)
    assert row_factors.shape == (2, 5) and rows.tolist() == [0, 1, 0, 1, 0, 1]
    learned = bank + 1e-9 * rng.standard_normal(bank.shape)  # one Adam step away: not rank one
    assert ops.separable_factors(learned) is None
    assert ops.separable_factors(np.zeros((2, 3, 3))) is None
    assert ops.separable_factors(rng.standard_normal((2, 5))) is None  # 1-D filters


def test_auto_filters_a_separable_bank_by_rows_and_columns_when_it_pays():
    from bilevel_lib.problem.filters import dct_filters

    assert ops.FilterBankOperator(dct_filters(7), (50, 50)).method == "separable"
    assert ops.FilterBankOperator(dct_filters(5), (20, 20)).method == "separable"
    assert ops.FilterBankOperator(dct_filters(3), (20, 20)).method == "direct"  # 8-term passes: no gain
    assert ops.FilterBankOperator(dct_filters(7), (50, 50), "direct").method == "direct"
    with pytest.raises(ValueError, match="method='separable' needs 2-D filters"):
        ops.FilterBankOperator(np.random.default_rng(0).standard_normal((2, 3, 3)), (8, 8), "separable")
    with pytest.raises(ValueError, match="method='separable' needs 2-D filters"):
        ops.FilterBankOperator(np.ones((2, 3)), (8,), "separable")


SEPARABLE_CASES = [
    # (signal shape, filter shape, K, Q, batch shape)
    ((50, 50), (7, 7), 48, 7, (3,)),
    ((9, 13), (3, 5), 5, 2, (2,)),
    ((7, 7), (7, 7), 4, 3, ()),  # filters as large as the signal
    ((12, 10), (5, 1), 3, 1, (2, 2)),  # one tap along the rows
    ((10, 12), (1, 4), 3, 2, (1,)),  # one tap along the columns
    ((6, 9), (6, 2), 9, 2, (2,)),
]


@pytest.mark.parametrize("signal_shape, filter_shape, n_filters, n_rows, batch", SEPARABLE_CASES)
def test_separable_products_equal_the_direct_ones(signal_shape, filter_shape, n_filters, n_rows, batch):
    rng = np.random.default_rng(sum(signal_shape) + n_filters)
    bank = _separable_bank(rng, n_filters, filter_shape, n_rows)
    fast = ops.FilterBankOperator(bank, signal_shape, "separable")
    direct = ops.FilterBankOperator(bank, signal_shape, "direct")
    x = rng.standard_normal(batch + signal_shape)
    v = rng.standard_normal(batch + signal_shape)
    g = rng.standard_normal(batch + (n_filters,) + signal_shape)
    scale = rng.random(batch + (n_filters,) + signal_shape)
    weights = rng.random(n_filters) + 0.5

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * max(1.0, np.max(np.abs(b))))

    close(fast.forward(x), direct.forward(x))
    close(fast.adjoint(g), direct.adjoint(g))
    close(fast.adjoint(g, weights=weights), direct.adjoint(g, weights=weights))
    close(fast.adjoint_of_pointwise(x, np.tanh, weights), direct.adjoint_of_pointwise(x, np.tanh, weights))
    close(fast.adjoint_of_scaled(v, scale, weights), direct.adjoint_of_scaled(v, scale, weights))
    for got, want in zip(
        fast.mixed_terms(x, v, np.tanh, np.cosh), direct.mixed_terms(x, v, np.tanh, np.cosh), strict=True
    ):
        close(got, want)
    close(fast.lag_correlation(g, x), direct.lag_correlation(g, x))
    # the adjoint is the adjoint: <C x, g> = <x, C' g>
    np.testing.assert_allclose(np.vdot(fast.forward(x), g), np.vdot(x, fast.adjoint(g)), rtol=1e-12)
    # repeated calls reuse the work arrays without carrying anything over
    close(fast.forward(v), direct.forward(v))
    close(fast.adjoint(g[..., ::-1, :].copy()), direct.adjoint(g[..., ::-1, :].copy()))


def test_separable_scaled_product_refuses_a_scale_of_another_shape():
    from bilevel_lib.problem.filters import dct_filters

    op = ops.FilterBankOperator(dct_filters(5), (12, 12))
    assert op.method == "separable"
    v = np.ones((2, 12, 12))
    with pytest.raises(ValueError, match="scale must have shape"):
        op.adjoint_of_scaled(v, np.ones((3, 24, 12, 12)), None)  # three images' curvatures for two


def test_separable_products_refuse_weights_of_another_length():
    """The compiled kernels read w_k for every filter: a shorter weights array must be refused
    (as the direct back end's broadcasting refuses it), not read past its end."""
    from bilevel_lib.problem.filters import dct_filters

    fast = ops.FilterBankOperator(dct_filters(5), (12, 12))
    direct = ops.FilterBankOperator(dct_filters(5), (12, 12), "direct")
    x, g = np.ones((2, 12, 12)), np.ones((2, 24, 12, 12))
    for call in (
        lambda op, w: op.adjoint(g, weights=w),
        lambda op, w: op.adjoint_of_pointwise(x, np.tanh, w),
        lambda op, w: op.adjoint_of_scaled(x, g, w),
    ):
        for op in (fast, direct):
            with pytest.raises(ValueError):
                call(op, np.ones(3))
        np.testing.assert_allclose(call(fast, 2.0), call(direct, 2.0), rtol=1e-13, atol=1e-13)


def test_power_spectra_are_the_filters_spectra_kept_per_operator_and_read_only():
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((3, 4, 2))
    op = ops.FilterBankOperator(bank, (9, 8))
    spectra = op.power_spectra()
    np.testing.assert_allclose(spectra, np.abs(np.fft.rfft2(bank, s=(9, 8))) ** 2, rtol=1e-12, atol=1e-14)
    assert spectra.shape == (3, 9, 5) and op.power_spectra() is spectra
    with pytest.raises(ValueError, match="read-only"):
        spectra[0, 0, 0] = 1.0
    other = ops.FilterBankOperator(2.0 * bank, (9, 8))  # same shapes, other values: not shared
    np.testing.assert_allclose(other.power_spectra(), 4.0 * spectra, rtol=1e-12)


# ------------------------------------------------------------------ the fused CR1N gradient term
def _unfused_cr1n_term(op, x, eps, weights):
    from bilevel_lib.problem.penalties import CornerRounded1Norm

    return op.adjoint_of_pointwise(x, CornerRounded1Norm(eps).derivative, weights=weights)


@pytest.mark.parametrize("signal_shape, filter_shape, n_filters, n_rows, batch", SEPARABLE_CASES)
def test_fused_cr1n_gradient_equals_the_three_passes(signal_shape, filter_shape, n_filters, n_rows, batch):
    """Σ_k w_k C_k' φ̇.(C_k x) in one compiled call: the same operations in the same order as the
    row/column passes, φ̇ and the adjoint passes, so the same numbers to the bit where the unfused
    path uses the compiled φ̇ (K·n0·n1 ≥ 64 entries per image), to rounding where numpy's hypot."""
    from bilevel_lib.problem.penalties import _COMPILED_MIN_SIZE

    rng = np.random.default_rng(sum(signal_shape) + 7 * n_filters)
    op = ops.FilterBankOperator(_separable_bank(rng, n_filters, filter_shape, n_rows), signal_shape, "separable")
    x = rng.standard_normal(batch + signal_shape)
    bitwise = n_filters * np.prod(signal_shape) >= _COMPILED_MIN_SIZE
    for eps in (0.01, 1.0):
        for weights in (None, 0.3, rng.random(n_filters) + 0.5):
            fused = op._separable_cr1n_gradient(x, eps, weights)
            want = _unfused_cr1n_term(op, x, eps, weights)
            assert fused.shape == x.shape
            if bitwise:
                np.testing.assert_array_equal(fused, want)
            else:
                np.testing.assert_allclose(fused, want, rtol=0, atol=1e-14 * np.max(np.abs(want)))
    # again, with other images: nothing carried over in the work arrays
    x2 = rng.standard_normal(batch + signal_shape)
    np.testing.assert_allclose(
        op._separable_cr1n_gradient(x2, 0.1, None), _unfused_cr1n_term(op, x2, 0.1, None), rtol=0, atol=1e-14
    )


def test_fused_cr1n_gradient_sets_an_unused_row_factor_to_zero():
    """A row factor no filter uses contributes nothing (its accumulator is cleared, not left over)."""
    from bilevel_lib.problem import stencil

    rng = np.random.default_rng(5)
    col_taps, row_taps = rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    rows = np.array([0, 2, 0])  # row factor 1 unused
    x, weights = rng.standard_normal((2, 9, 11)), rng.random(3)
    work = stencil.separable_work(3, 9, 11, 4, 5)
    compact = np.full(work[1].shape, np.nan)  # garbage that must not reach the result
    work[1][:] = np.nan
    out = np.empty(x.shape)
    assert stencil.separable_cr1n_gradient(x, col_taps, row_taps, rows, weights, 0.05, work, compact, out) == 0
    bank = np.einsum("ka,kb->kab", col_taps, row_taps[rows])
    direct = ops.FilterBankOperator(bank, (9, 11), "direct")
    np.testing.assert_allclose(out, _unfused_cr1n_term(direct, x, 0.05, weights), rtol=0, atol=1e-13)


def test_fused_cr1n_gradient_declines_where_it_does_not_apply():
    """None (the caller then takes numpy's path) off the separable back end, for ε outside the
    kernel's safe range, and when some response is beyond it; the cost's gradient is then still right."""
    import bilevel_lib as bl
    from bilevel_lib.problem.filters import dct_filters
    from bilevel_lib.problem.stencil import CR1N_SAFE

    bank = dct_filters(5)
    x = np.random.default_rng(2).standard_normal((2, 12, 12))
    fast = ops.FilterBankOperator(bank, (12, 12), "separable")
    direct = ops.FilterBankOperator(bank, (12, 12), "direct")
    assert direct._separable_cr1n_gradient(x, 0.01, None) is None
    assert fast._separable_cr1n_gradient(x, 1e-160, None) is None
    assert fast._separable_cr1n_gradient(x, 1e160, None) is None
    assert fast._separable_cr1n_gradient(x * 1e151, 0.01, None) is None
    assert fast._separable_cr1n_gradient(x * (CR1N_SAFE / 1e3), 0.01, None) is not None
    params = bl.Hyperparameters.from_filters(bank, beta0=-2.0)
    for scale, eps in ((1.0, 0.01), (1e151, 0.01), (1.0, 1e-160)):
        cost = bl.LowerLevelCost(x, bl.CornerRounded1Norm(eps))
        assert cost.operator(params).method == "separable"
        point = scale * x[::-1].copy()
        got = cost.gradient(point, params)
        regulariser = _unfused_cr1n_term(direct, point, eps, params.strengths)
        want = (point - x) + regulariser
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.max(np.abs(want)))
