"""The compiled Hessian stencil (bilevel_lib.stencil, HessianOperator method "stencil"): the stencil
weights are the matrix of review eq. 4.10 built from dense correlation matrices; the compiled
product equals that matrix, the sparse matrix and the filter-bank products; the compiled CG loop
gives the iterates of the Python loop (same iterations, same solution, same warnings and errors).
(Speed is measured in benchmarks/bench_single_level.py, not here.)"""

import warnings

import numpy as np
import pytest
from problems import GEOMETRIES, explicit_gram, random_problem, relative_error

import bilevel_lib as bl
from bilevel_lib.problem import ops, penalties, stencil
from bilevel_lib.solvers.cg import conjugate_gradient
from bilevel_lib.solvers.lower import ConvergenceWarning

GEOMS = list(GEOMETRIES)
MODELS = ["identity", "blur", "mask"]

# (signal shape, filter shape): 1-D, 2-D, filters as large as the signal, so that the stencil
# (2f − 1 wide) is wider than the signal and offsets e and e ± n meet at the same pixel
SHAPES = [
    ((7,), (3,)),
    ((2,), (2,)),
    ((6, 5), (3, 3)),
    ((4, 5), (3, 4)),
    ((3, 3), (3, 2)),
    ((4, 2), (2, 2)),
    ((1, 6), (1, 3)),
]


@pytest.mark.parametrize("signal_shape, filter_shape", SHAPES)
def test_compiled_stencil_product_is_the_explicit_matrix(signal_shape, filter_shape):
    rng = np.random.default_rng(11)
    bank = rng.standard_normal((3,) + filter_shape)
    op = ops.FilterBankOperator(bank, signal_shape)
    scale = rng.random((2, 3) + signal_shape)
    weights, diagonal = rng.random(3), rng.random((2,) + signal_shape)
    expected = explicit_gram(bank, signal_shape, scale, weights, diagonal)
    weights_5d = op.scaled_gram_stencil(scale, weights=weights, diagonal=diagonal)
    assert weights_5d.shape == (2,) + op.stencil_shape + signal_shape
    compiled = stencil.row_padded(weights_5d, len(signal_shape))
    v = rng.standard_normal((2,) + signal_shape)
    out = np.empty_like(v)
    view = (2,) + (1,) * (2 - len(signal_shape)) + signal_shape
    stencil.stencil_product(compiled, v.reshape(view), out.reshape(view))
    for b in range(2):
        np.testing.assert_allclose(out[b].ravel(), expected[b] @ v[b].ravel(), rtol=1e-12, atol=1e-13)
    # every column of the explicit matrix, through the compiled product (the whole matrix, not a sample)
    n = int(np.prod(signal_shape))
    basis = np.eye(n).reshape((n,) + signal_shape)
    columns = np.empty_like(basis)
    stencil.stencil_product(compiled[[0] * n], basis.reshape((n,) + view[1:]), columns.reshape((n,) + view[1:]))
    np.testing.assert_allclose(columns.reshape(n, n).T, expected[0], rtol=1e-12, atol=1e-13)


def test_stencil_weights_follow_the_offset_formula_and_symmetry():
    """weight_e[i] = Σ_{k,a} w_k c_{k,a} c_{k,a+e} d_k[i − a] for every offset (the second half of the
    offsets is filled by symmetry, weight_{−e}[i] = weight_e[i − e]; check both halves directly)."""
    rng = np.random.default_rng(3)
    signal_shape, filter_shape = (9, 8), (3, 2)
    bank = rng.standard_normal((2,) + filter_shape)
    op = ops.FilterBankOperator(bank, signal_shape)
    scale, weights = rng.random((1, 2) + signal_shape), rng.random(2)
    result = op.scaled_gram_stencil(scale, weights=weights)[0]
    expected = np.zeros_like(result)
    for e0 in range(-(filter_shape[0] - 1), filter_shape[0]):
        for e1 in range(-(filter_shape[1] - 1), filter_shape[1]):
            for k in range(2):
                for a0 in range(filter_shape[0]):
                    for a1 in range(filter_shape[1]):
                        b0, b1 = a0 + e0, a1 + e1
                        if 0 <= b0 < filter_shape[0] and 0 <= b1 < filter_shape[1]:
                            shifted = np.roll(scale[0, k], (a0, a1), axis=(0, 1))  # d_k[i − a]
                            expected[e0 + filter_shape[0] - 1, e1 + filter_shape[1] - 1] += (
                                weights[k] * bank[k, a0, a1] * bank[k, b0, b1] * shifted
                            )
    np.testing.assert_allclose(result, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", MODELS)
def test_stencil_sparse_and_implicit_hessians_agree(geometry, model):
    cost, params, x, rng = random_problem(geometry, model, bl.LogSquare(0.5), n_images=3)
    products = {method: cost.hessian_operator(x, params, method=method) for method in ("implicit", "sparse", "stencil")}
    assert products["stencil"].method == "stencil"
    assert (products["stencil"].compiled_cg is None) == (model == "blur")  # compiled loop only for a diagonal A'A
    assert products["sparse"].compiled_cg is None and products["implicit"].compiled_cg is None
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        reference = products["implicit"](v)
        for method in ("sparse", "stencil"):
            np.testing.assert_allclose(products[method](v), reference, rtol=1e-12, atol=1e-12 * np.abs(reference).max())


def test_auto_picks_the_compiled_stencil_for_small_1d_and_2d_problems_only():
    for geometry in GEOMS:
        cost, params, x, _ = random_problem(geometry)
        assert cost.hessian_operator(x, params).method == "stencil"
    rng = np.random.default_rng(0)
    volume = bl.LowerLevelCost(rng.standard_normal((1, 4, 5, 6)))
    bank = bl.Hyperparameters.from_filters(rng.standard_normal((2, 2, 2, 2)))
    assert volume.hessian_operator(volume.y, bank).method == "sparse"
    with pytest.raises(ValueError, match="1-D or 2-D signals"):
        volume.hessian_operator(volume.y, bank, method="stencil")
    with pytest.raises(ValueError, match="1-D and 2-D signals"):
        stencil.row_padded(np.zeros((1, 3, 3, 3, 4, 5, 6)), 3)


# --------------------------------------------------------------------------- the compiled CG loop
def python_and_compiled(cost, params, x, b, **options):
    """CG on the same system by the Python loop (sparse products) and by the compiled loop."""
    python = conjugate_gradient(cost.hessian_operator(x, params, method="sparse"), b, **options)
    compiled = conjugate_gradient(cost.hessian_operator(x, params, method="stencil"), b, **options)
    return python, compiled


@pytest.mark.parametrize("geometry", GEOMS)
@pytest.mark.parametrize("model", ["identity", "mask"])
def test_compiled_cg_gives_the_python_iterates(geometry, model):
    cost, params, x, rng = random_problem(geometry, model, n_images=3)
    b = rng.standard_normal(x.shape) * np.array([1.0, 1e-3, 10.0]).reshape((3,) + (1,) * (x.ndim - 1))
    for tol in (1e-4, 1e-12):
        python, compiled = python_and_compiled(cost, params, x, b, tol=tol)
        assert python.converged and compiled.converged
        # the two loops round differently; near the rounding floor (1e-12) that can cost a few iterations
        slack = 1 if tol > 1e-8 else max(2, int(0.05 * python.iterations))
        assert abs(python.iterations - compiled.iterations) <= slack
        assert np.all(compiled.residual <= tol)
        assert relative_error(compiled.x, python.x) <= 100 * tol + 1e-12
    # the answer solves the system: residual recomputed from scratch with the implicit products
    residual = b - cost.hessian_operator(x, params, method="implicit")(compiled.x)
    for j in range(3):
        assert np.linalg.norm(residual[j]) <= 1.01e-12 * np.linalg.norm(b[j])


def test_compiled_cg_warm_start_relative_to_initial_and_zero_right_hand_side():
    cost, params, x, rng = random_problem("2d-4x2", "identity", n_images=3)
    b = rng.standard_normal(x.shape)
    b[1] = 0.0  # a zero right-hand side: q = 0 at once
    x0 = 0.9 * conjugate_gradient(cost.hessian_operator(x, params, method="sparse"), b, tol=1e-12).x
    iterations = {}
    for relative_to in ("rhs", "initial"):
        python, compiled = python_and_compiled(cost, params, x, b, x0=x0, tol=1e-8, relative_to=relative_to)
        assert abs(python.iterations - compiled.iterations) <= 1
        np.testing.assert_allclose(compiled.x, python.x, rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(compiled.x[1], 0.0)
        iterations[relative_to] = compiled.iterations
    cold = python_and_compiled(cost, params, x, b, tol=1e-8)[1]
    assert iterations["rhs"] < cold.iterations  # the warm start helps at a fixed accuracy


def test_compiled_cg_reports_max_iter_like_the_python_loop():
    cost, params, x, rng = random_problem("2d-full", "identity")
    b = rng.standard_normal(x.shape)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        compiled = conjugate_gradient(cost.hessian_operator(x, params, method="stencil"), b, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        python = conjugate_gradient(cost.hessian_operator(x, params, method="sparse"), b, max_iter=3)
    assert compiled.iterations == python.iterations == 3 and not compiled.converged
    np.testing.assert_allclose(compiled.x, python.x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(compiled.residual, python.residual, rtol=1e-8)


def test_compiled_cg_rejects_a_hessian_that_is_not_positive_definite():
    """log(1 + z²/ε²) is non-convex: with strong weights the Hessian has negative curvature."""
    cost, params, x, rng = random_problem("2d-4x2", "identity", bl.LogSquare(0.1))
    params = (
        params.replace(beta0=4.0)
        if hasattr(params, "replace")
        else bl.Hyperparameters(beta0=4.0, beta=params.beta, filters=params.filters)
    )
    x = 0.5 * rng.standard_normal(x.shape)
    hessian = cost.hessian_operator(x, params, method="stencil")
    assert np.linalg.eigvalsh(hessian.matrix.toarray()).min() < 0
    b = rng.standard_normal(x.shape)
    for method in ("sparse", "stencil"):
        with pytest.raises(ValueError, match="not positive definite"):
            conjugate_gradient(cost.hessian_operator(x, params, method=method), b, tol=1e-12)


def test_compiled_product_leaves_its_input_alone_and_accepts_non_contiguous_input():
    cost, params, x, rng = random_problem("2d-4x2", "mask", n_images=2)
    hessian = cost.hessian_operator(x, params, method="stencil")
    wide = rng.standard_normal(x.shape[:-1] + (2 * x.shape[-1],))
    v = wide[..., ::2]  # a strided view
    kept = v.copy()
    np.testing.assert_allclose(
        hessian(v), cost.hessian_operator(x, params, method="implicit")(kept), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(v, kept)


BOUNDS_SCRIPT = r"""
import numpy as np
import bilevel_lib as bl
from problems import random_problem
for geometry in ("1d", "2d-4x2", "2d-full"):
    cost, params, x, rng = random_problem(geometry, "mask", n_images=2)
    hessian = cost.hessian_operator(x, params, method="stencil")
    v = rng.standard_normal(x.shape)
    assert np.all(np.isfinite(hessian(v)))
    result = bl.conjugate_gradient(hessian, v, tol=1e-12)
    assert result.converged and np.all(np.isfinite(result.x))
    # the direct filter back end's compiled fold and the CR1N kernels
    assert np.all(np.isfinite(cost.gradient(x, params))) and np.all(np.isfinite(cost.value(x, params)))
    assert np.all(np.isfinite(cost.hessian_operator(x, params, method="implicit")(v)))
    assert np.isfinite(cost.mixed_transpose(x, params, v).beta0)
    # the separable back end's row and column passes, on filters as large as the image and of one tap
    for shape, (f0, f1) in (((9, 13), (3, 5)), ((7, 7), (7, 7)), ((12, 10), (5, 1)), ((10, 12), (1, 4))):
        columns, row_factors = rng.standard_normal((4, f0)), rng.standard_normal((3, f1))
        bank = np.einsum("ka,kb->kab", columns, row_factors[[0, 2, 1, 2]])
        op = bl.problem.ops.FilterBankOperator(bank, shape, "separable")
        z = op.forward(rng.standard_normal((2,) + shape))
        assert np.all(np.isfinite(z)) and np.all(np.isfinite(op.adjoint(z, weights=np.arange(1.0, 5.0))))
    # the compiled OGM loop (denoising: A = I), both methods
    denoising, params, x, rng = random_problem(geometry, "identity", n_images=2)
    for method in ("ogm", "gd"):
        assert np.all(np.isfinite(bl.solve_lower_level(denoising, params, x, method=method, tol=None, max_iter=5).x))
print("in bounds")
"""


def test_kernels_stay_inside_their_arrays(tmp_path):
    """The kernels, compiled afresh with bounds checking (NUMBA_BOUNDSCHECK=1), on every geometry:
    an index past an array raises IndexError there, instead of silently reading whatever memory
    follows (which once fed a NaN into CG now and then)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(
        os.environ,
        NUMBA_BOUNDSCHECK="1",
        NUMBA_CACHE_DIR=str(tmp_path),
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    run = subprocess.run([sys.executable, "-c", BOUNDS_SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and "in bounds" in run.stdout, run.stderr[-3000:]


def test_a_right_hand_side_of_another_shape_raises_instead_of_reaching_the_kernel():
    cost, params, x, rng = random_problem("2d-4x2", "identity", n_images=2)
    for method in ("sparse", "stencil"):
        hessian = cost.hessian_operator(x, params, method=method)
        for wrong in (rng.standard_normal((2, 4, 3)), rng.standard_normal((3,) + x.shape[1:])):
            with pytest.raises(ValueError, match="shape"):
                conjugate_gradient(hessian, wrong)
    loop = cost.hessian_operator(x, params, method="stencil").compiled_cg
    with pytest.raises(ValueError, match="C-contiguous float64"):
        loop(np.zeros(x.shape, dtype=np.float32), np.zeros(x.shape), np.ones(2), 10)


# ------------------------------------------------------------------ the compiled CR1N kernels and fold


def _cr1n_reference(z, eps):
    """φ, φ̇, φ̈ of the corner-rounded 1-norm through numpy's hypot (the path for inputs the kernels leave)."""
    h = np.hypot(z, eps)
    with np.errstate(under="ignore", invalid="ignore"):
        return {"value": h, "derivative": z / h, "second_derivative": (eps / h) ** 2 / h}


def _cr1n_samples(rng):
    """z of every magnitude the kernels take, in (3, 4, 5, 6): zero, tiny, around ε, large."""
    scale = 10.0 ** rng.integers(-200, 140, size=(3, 4, 5, 6))
    z = rng.standard_normal((3, 4, 5, 6)) * np.where(rng.random((3, 4, 5, 6)) < 0.5, 0.01, scale)
    z.flat[:3] = 0.0, 1e-320, -1e140
    return z


@pytest.mark.parametrize("eps", [1e-140, 1e-3, 0.01, 1.0, 1e120])
@pytest.mark.parametrize("layout", ["C", "filters first", "reversed axes"])
def test_compiled_cr1n_equals_numpy_hypot_on_every_layout(eps, layout):
    """The kernels (√(z² + ε²) compiled) give numpy's hypot values to 4 ulp, for C-ordered z, the
    direct back end's filter responses (a transposed view of a filters-first block) and any dense
    permutation; the kernel itself runs (counting no |z| beyond its safe range)."""
    rng = np.random.default_rng(1)
    z = _cr1n_samples(rng)
    if layout == "filters first":
        z = np.moveaxis(np.ascontiguousarray(np.moveaxis(z, 1, 0)), 0, 1)
    elif layout == "reversed axes":
        z = np.ascontiguousarray(z.T).T
    penalty = bl.CornerRounded1Norm(eps)
    expected = _cr1n_reference(z, eps)
    for name, reference in expected.items():
        result = getattr(penalty, name)(z)
        assert result.shape == z.shape and result.strides == z.strides
        np.testing.assert_allclose(result, reference, rtol=1e-15, atol=0)
        flat_out = np.empty(z.size)
        assert getattr(stencil, f"cr1n_{name}")(np.ravel(z, order="K"), eps, flat_out) == 0
        np.testing.assert_allclose(flat_out, np.ravel(reference, order="K"), rtol=1e-15, atol=0)


def test_cr1n_beyond_the_kernels_range_falls_back_to_hypot():
    """|z| > CR1N_SAFE (z² would overflow: a compiled φ̇ would be z/∞ = 0, not ±1), ε outside the
    safe range, float32 data, a strided slice and an ``out`` of another layout all give numpy's
    values; NaN stays NaN."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4, 100))
    z[1, 7], z[2, 3], z[3, 9] = 1e200, -3e160, np.nan
    out = np.empty(z.size)
    assert stencil.cr1n_derivative(z.reshape(-1), 0.01, out) == 2  # the kernel flags both, not the NaN
    for eps, sample in [
        (0.01, z),
        (1e-160, z),
        (1e160, z),
        (0.01, z[:, ::3]),
        (0.01, rng.standard_normal((4, 100)).astype(np.float32)),
    ]:
        penalty = bl.CornerRounded1Norm(eps)
        expected = _cr1n_reference(np.asarray(sample, dtype=np.float64), eps)
        for name, reference in expected.items():
            np.testing.assert_allclose(
                getattr(penalty, name)(sample), reference, rtol=1e-6 if sample.dtype == np.float32 else 1e-15
            )
    penalty = bl.CornerRounded1Norm(0.01)
    assert penalty.derivative(z)[1, 7] == 1.0 and penalty.derivative(z)[2, 3] == -1.0
    assert np.isnan(penalty.derivative(z)[3, 9])
    fortran_out = np.asfortranarray(np.zeros_like(z))
    assert penalty.derivative(z, out=fortran_out) is fortran_out
    np.testing.assert_allclose(fortran_out, _cr1n_reference(z, 0.01)["derivative"], rtol=1e-15)


@pytest.mark.parametrize(
    "signal_shape, filter_shape", [((7,), (3,)), ((6, 5), (3, 4)), ((4, 2), (4, 2)), ((1, 6), (1, 3))]
)
def test_compiled_fold_is_the_transpose_of_the_patch_gather(signal_shape, filter_shape):
    """⟨fold(columns), x⟩ = ⟨columns, patches(x)⟩ for random columns and x, and a batch of one-hot
    columns lands on the pixel i + a (circularly) of its tap a."""
    rng = np.random.default_rng(3)
    op = ops.FilterBankOperator(rng.standard_normal((2,) + filter_shape), signal_shape, method="direct")
    x = rng.standard_normal((3,) + signal_shape)
    patches = op._patches(x).copy()
    columns = rng.standard_normal(patches.shape)
    folded = op._fold(columns, (3,)).copy()
    assert folded.shape == x.shape
    assert np.vdot(folded, x) == pytest.approx(np.vdot(columns, patches), rel=1e-13)
    n_taps = patches.shape[0]
    for tap_index, tap in enumerate(np.ndindex(filter_shape)):
        one_hot = np.zeros((n_taps, 3 * int(np.prod(signal_shape))))
        one_hot[tap_index, 0] = 1.0  # image 0, pixel 0
        expected = np.zeros(x.shape)
        expected[(0,) + tuple(a % n for a, n in zip(tap, signal_shape))] = 1.0
        np.testing.assert_array_equal(op._fold(one_hot, (3,)), expected)


@pytest.mark.parametrize("huge", [False, True])
def test_fused_cr1n_mixed_factors_equal_the_separate_passes(huge):
    """CR1N's one-pass φ̇, φ̈ ⊙ cv and per-filter sums equal the generic composition of
    derivative, second_derivative and a sum (Penalty._mixed_factors), also when some |z| is
    beyond the kernel's range (then the generic path runs); the kernel itself runs otherwise."""
    rng = np.random.default_rng(4)
    z, cv = 0.05 * rng.standard_normal((6, 200)), rng.standard_normal((6, 200))
    if huge:
        z[2, 5] = 1e200
    penalty = bl.CornerRounded1Norm(0.01)
    fused_slope, fused_curvature = np.full_like(z, np.nan), np.full_like(z, np.nan)
    fused = penalty._mixed_factors(z, cv, fused_slope, fused_curvature)
    slope, curvature = np.empty_like(z), np.empty_like(z)
    separate = penalties.Penalty._mixed_factors(penalty, z, cv, slope, curvature)
    np.testing.assert_allclose(fused, separate, rtol=1e-13)
    np.testing.assert_allclose(fused_slope, slope, rtol=1e-15)
    np.testing.assert_allclose(fused_curvature, curvature, rtol=1e-15)
    np.testing.assert_allclose(slope, _cr1n_reference(z, 0.01)["derivative"], rtol=1e-15)
    assert fused_slope[2, 5] == (1.0 if huge else fused_slope[2, 5])
    count = stencil.cr1n_mixed_factors(z, cv, 0.01, np.empty_like(z), np.empty_like(z), np.empty(6))
    assert count == int(huge)
