"""The exact ℓ1 lower level and BLORC's closed form: solver vs KKT, vs a long first-order solve and
vs the closed form; Lemma 1 vs central finite differences vs the sign-split KKT route; edge cases
(empty and rank-deficient zero sets); warm starts; bad input."""

import numpy as np
import pytest
from problems import relative_error

from bilevel_lib import l1 as sl
from bilevel_lib.l1 import exact
from bilevel_lib.problem import ops
from bilevel_lib.solvers.lower import ConvergenceWarning


def pairs(n, J, rng, sigma=0.3):
    truth = rng.standard_normal((J, n))
    return truth, truth + sigma * rng.standard_normal((J, n))


def random_transform(k, n, rng, scale=0.3):
    return scale * rng.standard_normal((k, n))


CASES = {  # (k, n, scale): under-complete, square, over-complete
    "k<n": (10, 16, 0.3),
    "k=n": (16, 16, 0.3),
    "k>n": (24, 12, 0.25),
}


def assert_kkt(result, y, W, tol=1e-9):
    """x = y − W'd, |d| ≤ 1, d_i = sign((Wx)_i) where (Wx)_i ≠ 0."""
    assert np.allclose(result.x, y - result.d @ W, atol=1e-12)
    assert np.all(np.abs(result.d) <= 1.0 + 1e-12)
    z = result.x @ W.T
    nonzero = np.abs(z) > tol
    assert np.all(result.d[nonzero] * np.sign(z[nonzero]) >= 1.0 - 1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_solver_is_exact_and_matches_the_closed_form(case):
    k, n, scale = CASES[case]
    rng = np.random.default_rng(1)
    W = random_transform(k, n, rng, scale)
    truth, y = pairs(n, 4, rng)
    result = sl.solve_l1_denoising(y, W)
    assert result.converged and result.polished.all()
    assert_kkt(result, y, W)
    assert np.all(result.gap <= 1e-12)
    assert np.any(result.signs == 0), "the test needs a non-empty zero set"
    closed = sl.closed_form_solution(y, W, result.signs)
    assert np.max(np.abs(closed - result.x)) <= 1e-10


def test_solver_agrees_with_plain_accelerated_projected_gradient():
    rng = np.random.default_rng(2)
    W = random_transform(12, 16, rng)
    _, y = pairs(16, 3, rng)
    exact = sl.solve_l1_denoising(y, W)
    first_order = sl.solve_l1_denoising(y, W, polish=False, tol=1e-7, max_iter=200_000)
    assert first_order.converged and not first_order.polished.any()
    assert np.all(first_order.error_bound <= 1e-7)
    assert np.max(np.abs(first_order.x - exact.x)) <= 1e-7


def test_identity_is_soft_thresholding():
    rng = np.random.default_rng(3)
    _, y = pairs(20, 2, rng)
    beta = 0.4
    result = sl.solve_l1_denoising(y, beta * np.eye(20))
    soft = np.sign(y) * np.maximum(np.abs(y) - beta, 0.0)  # ½(x − y)² + β|x|: threshold β
    assert np.max(np.abs(result.x - soft)) <= 1e-12
    assert result.iterations <= 1


def test_warm_start_from_a_nearby_W_needs_no_first_order_iterations():
    rng = np.random.default_rng(4)
    W = random_transform(12, 16, rng)
    _, y = pairs(16, 5, rng)
    cold = sl.solve_l1_denoising(y, W)
    assert cold.iterations > 10
    moved = W + 1e-7 * rng.standard_normal(W.shape)
    warm = sl.solve_l1_denoising(y, moved, d0=cold.d)
    assert warm.iterations == 0 and warm.active_set_iterations == 1
    assert np.max(np.abs(warm.x - sl.solve_l1_denoising(y, moved).x)) <= 1e-10


def test_convolutional_case_matches_the_dense_matrix():
    rng = np.random.default_rng(5)
    filters = 0.3 * rng.standard_normal((2, 2, 2))
    shape = (6, 5)
    operator = ops.FilterBankOperator(filters, shape)
    dense = np.concatenate([ops.correlation_matrix(f, shape) for f in filters])
    y = rng.standard_normal((2,) + shape)
    conv = sl.solve_l1_denoising(y, operator)
    flat = sl.solve_l1_denoising(y.reshape(2, -1), dense)
    assert conv.x.shape == y.shape and conv.d.shape == (2, 2) + shape
    assert np.max(np.abs(conv.x.reshape(2, -1) - flat.x)) <= 1e-10
    unpolished = sl.solve_l1_denoising(y, operator, polish=False, tol=1e-7, max_iter=100_000)
    assert np.max(np.abs(unpolished.x - conv.x)) <= 1e-7


@pytest.mark.parametrize("case", ["k<n", "k>n"])
def test_lemma1_gradient_matches_finite_differences(case):
    k, n, scale = CASES[case]
    rng = np.random.default_rng(6)
    W = random_transform(k, n, rng, scale)
    truth, y = pairs(n, 2, rng)
    gradient = sl.l1_hypergradient(y, truth, W)
    solve = gradient.state["solve"]
    assert np.any(solve.signs == 0)
    numeric = sl.finite_difference_l1_gradient(y, truth, W, step=1e-6, d0=solve.d)
    assert relative_error(gradient.gradient, numeric) <= 1e-7


def test_lemma1_gradient_at_the_identity():
    rng = np.random.default_rng(7)
    truth, y = pairs(12, 2, rng, sigma=0.2)
    W = 0.7 * np.eye(12)  # soft threshold 0.49: zeros and non-zeros
    gradient = sl.l1_hypergradient(y, truth, W)
    solve = gradient.state["solve"]
    assert 0 < np.sum(solve.signs == 0) < solve.signs.size
    numeric = sl.finite_difference_l1_gradient(y, truth, W, step=1e-6, d0=solve.d)
    assert relative_error(gradient.gradient, numeric) <= 1e-7


def test_empty_zero_set():
    rng = np.random.default_rng(8)
    truth, y = pairs(10, 2, rng)
    W = random_transform(6, 10, rng, 0.02)  # weak: W x* has no zeros
    gradient = sl.l1_hypergradient(y, truth, W)
    solve = gradient.state["solve"]
    assert np.all(solve.signs != 0)
    numeric = sl.finite_difference_l1_gradient(y, truth, W, step=1e-6, d0=solve.d)
    assert relative_error(gradient.gradient, numeric) <= 1e-7
    assert np.allclose(gradient.x, y - solve.signs @ W)  # P = I


def test_rank_deficient_zero_set_directional_derivative():
    """Two copies of one row both in W0: W0 is rank deficient, but perturbing both copies alike
    keeps the structure, and the pseudo-inverse form must give that directional derivative."""
    rng = np.random.default_rng(9)
    truth, y = pairs(8, 1, rng)
    base = random_transform(5, 8, rng, 0.4)
    W = np.vstack([base, base[:1]])  # row 5 duplicates row 0
    gradient = sl.l1_hypergradient(y, truth, W)
    solve = gradient.state["solve"]
    zero = solve.signs[0] == 0
    if not (zero[0] and zero[5]):
        W[0] *= 3.0  # make the duplicated row strong enough to vanish
        W[5] = W[0]
        gradient = sl.l1_hypergradient(y, truth, W)
        solve = gradient.state["solve"]
        zero = solve.signs[0] == 0
    assert zero[0] and zero[5] and gradient.diagnostics["rank"][0] < gradient.diagnostics["zero_set_size"][0]
    direction = rng.standard_normal(W.shape)
    direction[5] = direction[0]
    h = 1e-6
    plus, _ = sl.l1_loss(y, truth, W + h * direction, d0=solve.d)
    minus, _ = sl.l1_loss(y, truth, W - h * direction, d0=solve.d)
    numeric = (plus - minus) / (2 * h)
    assert abs(np.sum(gradient.gradient * direction) - numeric) <= 1e-7 * max(abs(numeric), 1e-3)
    with pytest.raises(ValueError, match="linearly independent"):
        sl.sign_split_gradient(y, truth, W, solve.signs)


def test_sign_split_form_agrees_with_lemma1():
    rng = np.random.default_rng(10)
    W = random_transform(10, 16, rng)
    truth, y = pairs(16, 3, rng)
    gradient = sl.l1_hypergradient(y, truth, W)
    solve = gradient.state["solve"]
    split = sl.sign_split_gradient(y, truth, W, solve.signs)
    assert relative_error(split.gradient, gradient.gradient) <= 1e-10
    assert np.max(np.abs(split.x - solve.x)) <= 1e-10
    assert split.loss == pytest.approx(gradient.loss, rel=1e-12)


def test_smoothed_hypergradient_matches_its_finite_differences():
    rng = np.random.default_rng(11)
    W = random_transform(6, 8, rng)
    truth, y = pairs(8, 2, rng)
    eps = 0.05
    result = sl.smoothed_hypergradient(y, truth, W, eps)
    assert result.converged and result.diagnostics["lower_residual"] < 1e-12

    def loss(M):
        return sl.smoothed_hypergradient(y, truth, M, eps, x0=result.x).loss

    h = 1e-6
    numeric = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        bump = np.zeros_like(W)
        bump[index] = h
        numeric[index] = (loss(W + bump) - loss(W - bump)) / (2 * h)
    assert relative_error(result.gradient, numeric) <= 1e-7


def test_filter_gradient_from_matrix_matches_finite_differences_in_the_taps():
    rng = np.random.default_rng(12)
    filters = 0.3 * rng.standard_normal((2, 2, 2))
    shape = (4, 5)
    truth = rng.standard_normal(shape)
    y = truth + 0.3 * rng.standard_normal(shape)

    def matrix(f):
        return np.concatenate([ops.correlation_matrix(c, shape) for c in f])

    gradient = sl.l1_hypergradient(y.ravel(), truth.ravel(), matrix(filters))
    solve = gradient.state["solve"]
    taps = sl.filter_gradient_from_matrix(gradient.gradient, (2, 2), shape)
    numeric = np.zeros_like(filters)
    h = 1e-6
    for index in np.ndindex(filters.shape):
        bump = np.zeros_like(filters)
        bump[index] = h
        values = [sl.l1_loss(y.ravel(), truth.ravel(), matrix(filters + s * bump), d0=solve.d)[0] for s in (1, -1)]
        numeric[index] = (values[0] - values[1]) / (2 * h)
    assert relative_error(taps, numeric) <= 1e-7


def test_sign_pattern_threshold():
    z = np.array([[-1.0, -1e-9, 0.0, 2e-9, 0.5]])
    assert sl.sign_pattern(z, 1e-8).tolist() == [[-1, 0, 0, 0, 1]]
    assert sl.sign_pattern(z, 1e-9).tolist() == [[-1, 0, 0, 1, 1]]
    assert sl.sign_pattern(z, 0.0).tolist() == [[-1, -1, 0, 1, 1]]


def test_non_convergence_is_reported():
    rng = np.random.default_rng(13)
    W = random_transform(12, 16, rng)
    _, y = pairs(16, 2, rng)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        result = sl.solve_l1_denoising(y, W, polish=False, tol=1e-12, max_iter=5)
    assert not result.converged
    quiet = sl.solve_l1_denoising(y, W, polish=False, tol=1e-12, max_iter=5, warn=False)
    assert not quiet.converged and "max_iter" in quiet.message


def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(14)
    W = random_transform(4, 6, rng)
    truth, y = pairs(6, 2, rng)
    bad = W.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="W must be finite"):
        sl.solve_l1_denoising(y, bad)
    with pytest.raises(ValueError, match="W must be finite"):
        sl.closed_form_gradient(y, truth, bad, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="one column per signal sample"):
        sl.solve_l1_denoising(y, W[:, :5])
    with pytest.raises(ValueError, match="x_true must have the shape of y"):
        sl.closed_form_gradient(y, truth[:, :5], W, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="signs must have shape"):
        sl.closed_form_gradient(y, truth, W, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="only −1, 0 and \\+1"):
        sl.closed_form_solution(y, W, np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="d0 must have the shape"):
        sl.solve_l1_denoising(y, W, d0=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="tol must be"):
        sl.solve_l1_denoising(y, W, tol=0.0)
    with pytest.raises(ValueError, match="y must have shape"):
        sl.solve_l1_denoising(np.zeros((2, 3, 3)), ops.FilterBankOperator(np.ones((1, 2, 2)), (4, 4)))


def test_zero_set_factor_matches_dense_pseudo_inverses():
    """The per-signal LAPACK QR, triangular solves and scatter of _ZeroSetFactor against np.linalg.pinv:
    zero sets of different sizes (padding), a rank-deficient one and one with more rows than columns
    (SVD), an empty one, and the reuse of Q'v through ``coefficients``."""
    rng = np.random.default_rng(15)
    k, n = 12, 8
    W = rng.standard_normal((k, n))
    W[7] = 2.0 * W[3]  # rows 3 and 7 parallel
    zero = np.zeros((5, k), dtype=bool)
    zero[0, [1, 4, 9]] = True  # QR, padded to the largest zero set
    zero[1, [0, 2, 5, 6, 10, 11]] = True  # QR, the largest full-rank set
    zero[2, [3, 7, 8]] = True  # rank deficient: SVD
    zero[3, :10] = True  # 10 rows > n = 8 columns: SVD
    factor = exact.ZeroSetFactor(W, zero)  # signal 4: empty zero set
    assert factor.use_svd.tolist() == [False, False, True, True, False]
    v = rng.standard_normal((5, n))
    pair = rng.standard_normal((5, 2, n))
    for j in range(5):
        W0 = W[zero[j]]
        pinv = np.linalg.pinv(W0.T) if W0.size else np.zeros((0, n))
        P = np.eye(n) - (np.linalg.pinv(W0) @ W0 if W0.size else 0.0)
        assert factor.rank[j] == (np.linalg.matrix_rank(W0) if W0.size else 0)
        assert np.max(np.abs(factor.project(v)[j] - P @ v[j])) <= 1e-12
        expected = np.zeros(k)
        expected[zero[j]] = pinv @ v[j]
        assert np.max(np.abs(factor.pinv_transpose(v)[j] - expected)) <= 1e-12
        for c in range(2):
            expected = np.zeros(k)
            expected[zero[j]] = pinv @ pair[j, c]
            assert np.max(np.abs(factor.pinv_transpose(pair)[j, c] - expected)) <= 1e-12
    coefficients = factor.coefficients(v)
    assert np.array_equal(factor.project(v, coefficients), factor.project(v))
    via_coefficients = factor.pinv_transpose_of_coefficients(coefficients[:, :, None])[:, :, 0]
    assert np.max(np.abs(via_coefficients - factor.pinv_transpose(v))) <= 1e-14


def test_batched_qr_equals_numpy_qr():
    rng = np.random.default_rng(16)
    for shape in [(3, 9, 5), (2, 5, 7), (1, 6, 6)]:  # tall, wide (p = n), square
        A = rng.standard_normal(shape)
        Q, R = exact.batched_qr(A)
        Q_np, R_np = np.linalg.qr(A)
        assert Q.shape == Q_np.shape and R.shape == R_np.shape
        assert np.max(np.abs(Q - Q_np)) <= 1e-14 and np.max(np.abs(R - R_np)) <= 1e-14
