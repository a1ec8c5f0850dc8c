"""Compiled circular-stencil products, the conjugate-gradient loop on them, and the elementwise
kernels of the filter-bank products (numba).

On small images the Hessian of (Ex) (review eq. 4.10),

    ∇ₓₓΦ = A'A + Σ_k w_k C_k' diag(φ̈.(C_k x)) C_k,

is a (2f − 1)^d-point stencil with a different weight at every pixel
(:meth:`~bilevel_lib.problem.ops.FilterBankOperator.scaled_gram_stencil`):

    (H v)_i = Σ_e s_e[i] · v_{i+e}      (indices modulo the image size).

A conjugate-gradient solve needs tens of such products, each only ~25 multiply-adds per pixel, so
in Python its time goes to per-call overhead rather than arithmetic (32×32 image, 3×3 filters:
about 14 µs per scipy sparse product, and as much again for CG's own updates).  This module
compiles the product — one pass per stencil offset over the whole (row-padded) image, which the
compiler turns into SIMD code — and CG's whole iteration loop with numba, so a solve costs a few
µs per iteration.  The kernels do not check shapes or bounds: their callers do
(:class:`~bilevel_lib.problem.cost.HessianOperator`), and a test runs them compiled with bounds checking.

It is used through :class:`~bilevel_lib.problem.cost.HessianOperator` (method ``"stencil"``, chosen by
``"auto"`` on small 1-D and 2-D problems) and :func:`~bilevel_lib.solvers.cg.conjugate_gradient`, which
runs :func:`cg_loop` instead of its Python loop when it is given such an operator and no
preconditioner; both give the same iterates as the Python versions up to rounding.  The kernels
are compiled on first use, once per environment (about 6 s for the CG loop and 2 s for the
product, measured on 2 cores), and cached on disk next to this file; later processes load them in
about 0.3 s.

The same compiled loops serve the filter-bank products of larger problems, where the matrix
products of :class:`~bilevel_lib.problem.ops.FilterBankOperator` run in BLAS and the elementwise
rest dominated: the corner-rounded 1-norm's φ, φ̇, φ̈ and the fused pointwise part of the mixed
product (:func:`cr1n_derivative` and its siblings, used by
:class:`~bilevel_lib.problem.penalties.CornerRounded1Norm`), and the fold of the direct back end
(:func:`fold_columns`).  They are compiled on first use too (together about 2.5 s, once per
environment, measured on 2 cores under load) and give numpy's values up to rounding (tests in
``tests/lib/test_stencil.py``).

Last, OGM's whole loop for small denoising problems (A = I, corner-rounded 1-norm, 1-D and 2-D):
:func:`ogm_denoising_loop`, which :func:`~bilevel_lib.solvers.lower.solve_lower_level` runs instead of
its Python loop below :data:`~bilevel_lib.solvers.lower.COMPILED_MAX_WORK`; the same iterates and
restarts up to rounding (``tests/lib/test_lower.py``).  On a 32×32 image with four 3×3 filters an
iteration of the Python loop costs about 0.1 ms, nearly all of it per-call overhead.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "row_padded",
    "stencil_product",
    "cg_loop",
    "NOT_POSITIVE_DEFINITE",
    "CR1N_SAFE",
    "cr1n_value",
    "cr1n_derivative",
    "cr1n_second_derivative",
    "cr1n_mixed_factors",
    "fold_columns",
    "separable_correlate",
    "separable_correlate_adjoint",
    "separable_work",
    "ogm_denoising_loop",
]

#: returned by :func:`cg_loop` when a direction of non-positive curvature p'Hp ≤ 0 is met
NOT_POSITIVE_DEFINITE = -1

# reductions may be reordered (vectorised); no assumption about NaN or infinity, so a NaN
# curvature still fails the p'Hp > 0 test
_jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
# elementwise kernels: numpy's float semantics (x / 0 is inf or NaN, no ZeroDivisionError check in
# the loop), which lets the compiler vectorise the square roots and divisions
_elementwise = numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})

#: the range of the CR1N kernels, which square z and ε (abs(z) ≤ CR1N_SAFE and CR1N_SAFE⁻¹ ≤ ε ≤ CR1N_SAFE,
#: where z² + ε² neither overflows nor loses ε² to underflow); their callers leave the rest to ``np.hypot``
CR1N_SAFE = 1e150


def row_padded(stencil: np.ndarray, signal_ndim: int) -> np.ndarray:
    """The kernels' layout of a stencil array ``(J, *stencil_shape, *signal)`` of a 1-D or 2-D signal.

    Returns weights of shape (J, E0, E1, n0·m1), m1 = n1 + E1 − 1: every image row is followed by
    E1 − 1 zero weights, so that each stencil offset becomes one long contiguous pass over the
    circularly padded image (a 1-D signal is one row: E0 = n0 = 1).
    """
    if signal_ndim == 1:
        stencil = stencil[:, None, :, None, :]
    elif signal_ndim != 2:
        raise ValueError(f"compiled stencils exist for 1-D and 2-D signals; got a {signal_ndim}-D signal")
    J, E0, E1, n0, n1 = stencil.shape
    weights = np.zeros((J, E0, E1, n0, n1 + E1 - 1))
    weights[..., :n1] = stencil
    return weights.reshape(J, E0, E1, -1)


@_jit
def _pad_circular(image, h0, h1, padded):
    """padded[p, q] = image[(p − h0) mod n0, (q − h1) mod n1] for p < n0 + 2 h0, every q < n1 + 2 h1
    (h1 < n1: a filter never exceeds the signal, so the stencil's half-width f − 1 does not either).
    Rows below those (see :func:`_padded_work_array`) are left alone."""
    n0, n1 = image.shape
    for p in range(n0 + 2 * h0):
        source = image[(p - h0) % n0]
        row = padded[p]
        row[:h1] = source[n1 - h1 :]
        row[h1 : h1 + n1] = source
        row[h1 + n1 :] = source[: padded.shape[1] - h1 - n1]


@_jit
def _padded_work_array(n0, n1, E0, E1):
    """Work array for the circularly padded image: n0 + E0 − 1 rows of n1 + E1 − 1, plus one zero row,
    because the pass of the last offset runs E1 − 1 entries past the padded image (onto zero weights)."""
    return np.zeros((n0 + E0, n1 + E1 - 1))


@_jit
def _image_product(weights, image, out, padded):
    """out = H v for one image v = ``image`` (n0, n1), in the row-padded layout of :func:`row_padded`:
    weights (E0, E1, n0·m1), out (n0·m1,), whose padding entries come out zero; ``padded`` from
    :func:`_padded_work_array`."""
    E0, E1, length = weights.shape
    _pad_circular(image, (E0 - 1) // 2, (E1 - 1) // 2, padded)
    m1 = padded.shape[1]
    source = padded.ravel()
    out[:] = 0.0
    for a in range(E0):
        for b in range(E1):
            shifted = source[a * m1 + b : a * m1 + b + length]  # v_{i+e} for e = (a − h0, b − h1)
            weight = weights[a, b]
            for i in range(length):
                out[i] += weight[i] * shifted[i]


@_jit
def stencil_product(weights, v, out):
    """out_j = H_j v_j for a batch v, out of shape (J, n0, n1); weights from :func:`row_padded`.

    Offsets run over −(E0 − 1)/2 … (E0 − 1)/2 (and likewise for the second axis), in C order, the
    layout of :meth:`~bilevel_lib.problem.ops.FilterBankOperator.scaled_gram_stencil`."""
    J, n0, n1 = v.shape
    E0, E1 = weights.shape[1], weights.shape[2]
    m1 = n1 + E1 - 1
    padded = _padded_work_array(n0, n1, E0, E1)
    product = np.empty(n0 * m1)
    for j in range(J):
        _image_product(weights[j], v[j], product, padded)
        out[j] = product.reshape(n0, m1)[:, :n1]


@_jit
def _dot(a, b):
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@_jit
def cg_loop(weights, x, r, limit, max_iter):
    """Conjugate gradient on H_j x_j = b_j for every image j, from x (updated in place) whose
    residual r = b − H x (updated in place) is given; image j stops once ‖r_j‖ ≤ limit[j].

    The recurrences of :func:`~bilevel_lib.solvers.cg.conjugate_gradient` without a preconditioner; x and
    r have shape (J, n0, n1), weights come from :func:`row_padded`.  The vectors are kept in the
    row-padded layout (zero padding entries), so every update is one contiguous pass.
    Returns (iterations, squared residual norms (J,)), or iterations = :data:`NOT_POSITIVE_DEFINITE`
    when some p'Hp ≤ 0 (the Hessian is not positive definite)."""
    J, n0, n1 = x.shape
    E0, E1, length = weights.shape[1], weights.shape[2], weights.shape[3]
    m1 = n1 + E1 - 1
    padded = _padded_work_array(n0, n1, E0, E1)
    xs = np.zeros((J, n0, m1))
    rs = np.zeros((J, n0, m1))
    xs[:, :, :n1] = x
    rs[:, :, :n1] = r
    ps = rs.copy()
    x_flat, r_flat, p_flat = xs.reshape(J, length), rs.reshape(J, length), ps.reshape(J, length)
    hp = np.empty(length)
    rr = np.empty(J)
    active = False
    for j in range(J):
        rr[j] = _dot(r_flat[j], r_flat[j])
        active = active or np.sqrt(rr[j]) > limit[j]
    iterations = 0
    while iterations < max_iter and active:
        active = False
        for j in range(J):
            if np.sqrt(rr[j]) <= limit[j]:
                continue  # converged images stop moving
            xj, rj, pj = x_flat[j], r_flat[j], p_flat[j]
            _image_product(weights[j], ps[j, :, :n1], hp, padded)
            curvature = _dot(pj, hp)
            if not curvature > 0:
                return NOT_POSITIVE_DEFINITE, rr
            alpha = rr[j] / curvature
            for i in range(length):
                xj[i] += alpha * pj[i]
                rj[i] -= alpha * hp[i]
            rr_new = _dot(rj, rj)
            ratio = rr_new / rr[j]
            for i in range(length):
                pj[i] = rj[i] + ratio * pj[i]
            rr[j] = rr_new
            active = active or np.sqrt(rr_new) > limit[j]
        iterations += 1
    x[:] = xs[:, :, :n1]
    r[:] = rs[:, :, :n1]
    return iterations, rr


# ---------------------------------------------------------------------------------------------
# Elementwise corner-rounded 1-norm φ(z) = √(z² + ε²) and its derivatives, used by
# :class:`~bilevel_lib.problem.penalties.CornerRounded1Norm` on float64 arrays (flat views of z and
# of the output).  numpy's ``np.hypot`` is exact for any z but slow (about 15–35 ns per entry on this
# machine, most of a gradient of the running example); √(z² + ε²) compiled is about 1 ns.  Each
# kernel returns how many |z| exceed :data:`CR1N_SAFE` (a NaN is not counted: it gives NaN either
# way); when that is not zero the caller recomputes with ``np.hypot``.


@_elementwise
def cr1n_value(z, eps, out):
    """out = √(z² + ε²); returns the count of abs(z) > :data:`CR1N_SAFE`."""
    e2 = eps * eps
    big = 0
    for i in range(z.shape[0]):
        zi = z[i]
        big += abs(zi) > CR1N_SAFE
        out[i] = np.sqrt(zi * zi + e2)
    return big


@_elementwise
def cr1n_derivative(z, eps, out):
    """out = φ̇(z) = z / √(z² + ε²); returns the count of abs(z) > :data:`CR1N_SAFE`."""
    e2 = eps * eps
    big = 0
    for i in range(z.shape[0]):
        zi = z[i]
        big += abs(zi) > CR1N_SAFE
        out[i] = zi / np.sqrt(zi * zi + e2)
    return big


@_elementwise
def cr1n_second_derivative(z, eps, out):
    """out = φ̈(z) = ε² / (z² + ε²)^{3/2}, as (ε/h)²/h with h = √(z² + ε²) (no overflow of h³) and
    one division, for 1/h; returns the count of abs(z) > :data:`CR1N_SAFE`."""
    e2 = eps * eps
    big = 0
    for i in range(z.shape[0]):
        zi = z[i]
        big += abs(zi) > CR1N_SAFE
        inverse = 1.0 / np.sqrt(zi * zi + e2)
        ratio = eps * inverse
        out[i] = ratio * ratio * inverse
    return big


@_elementwise
def cr1n_mixed_factors(z, cv, eps, slope, curvature, per_row):
    """The pointwise part of the mixed product (∇ₓγΦ)'v in one pass over (K, M) arrays z = C x and
    cv = C v: slope = φ̇(z), curvature = φ̈(z) ⊙ cv and per_row[k] = Σ_m cv[k, m] φ̇(z[k, m]) (each
    h = √(z² + ε²) and its reciprocal computed once: one division per entry, not three); returns
    the count of abs(z) > :data:`CR1N_SAFE`."""
    e2 = eps * eps
    big = 0
    for k in range(z.shape[0]):
        zk, cvk, slope_k, curvature_k = z[k], cv[k], slope[k], curvature[k]
        total = 0.0
        for m in range(z.shape[1]):
            zi = zk[m]
            big += abs(zi) > CR1N_SAFE
            inverse = 1.0 / np.sqrt(zi * zi + e2)
            ratio = eps * inverse
            s = zi * inverse
            slope_k[m] = s
            total += s * cvk[m]
            curvature_k[m] = ratio * ratio * inverse * cvk[m]
        per_row[k] = total
    return big


# ---------------------------------------------------------------------------------------------
# The fold of the direct filter back end (:class:`~bilevel_lib.problem.ops.FilterBankOperator`): the
# adjoint of gathering signal patches, Σ_a columns[a] shifted back by the tap a, circularly.


@_jit
def fold_columns(columns, f1, out):
    """out[b, (r + a0) mod n0, (c + a1) mod n1] = Σ_a columns[a, b, r, c] over taps a = (a0, a1).

    ``columns`` has shape (S, B, n0, n1) with S = f0·f1 taps in C order, ``out`` (B, n0, n1) is
    overwritten; a 1-D signal is one row (n0 = f0 = 1).  Each tap adds one shifted row in two
    contiguous pieces (before and after the wrap), which the compiler vectorises."""
    n_taps, n_batch, n0, n1 = columns.shape
    out[:] = 0.0
    for a in range(n_taps):
        a0, a1 = a // f1, a % f1
        for b in range(n_batch):
            for r in range(n0):
                source = columns[a, b, r]
                target = out[b, (r + a0) % n0]
                split = n1 - a1
                for c in range(split):
                    target[c + a1] += source[c]
                for c in range(split, n1):
                    target[c - split] += source[c]


# ---------------------------------------------------------------------------------------------
# A bank of separable 2-D filters, c_k = a_k ⊗ b_{q_k} (a column factor per filter, Q distinct row
# factors; e.g. the DCT bank, Q = 7 for 7×7): correlating each image with the Q row factors first
# and those results with the column factors costs Q·f1 + K·f0 multiply-adds per pixel instead of
# K·f0·f1 (385 instead of 2352 for the 48 DCT 7×7 filters).  Used by
# :class:`~bilevel_lib.problem.ops.FilterBankOperator` (method ``"separable"``, which ``"auto"``
# picks for such banks).  Every pass sums up to eight shifted copies of a contiguous run of pixels
# into its target with the weights in registers, which the compiler vectorises; the column passes
# run over the whole image at once, because a shift by whole rows is a flat offset.

_TERMS = 8  # shifted copies summed per pass


@_jit
def _weighted_sum(target, source, offsets, weights, first, count, length, accumulate):
    """target[j] (+)= Σ_m weights[first + m] · source[offsets[first + m] + j] for j < length, m < count ≤ 8."""
    o0 = offsets[first]
    w0 = weights[first]
    o1, w1 = (offsets[first + 1], weights[first + 1]) if count > 1 else (o0, 0.0)
    o2, w2 = (offsets[first + 2], weights[first + 2]) if count > 2 else (o0, 0.0)
    o3, w3 = (offsets[first + 3], weights[first + 3]) if count > 3 else (o0, 0.0)
    o4, w4 = (offsets[first + 4], weights[first + 4]) if count > 4 else (o0, 0.0)
    o5, w5 = (offsets[first + 5], weights[first + 5]) if count > 5 else (o0, 0.0)
    o6, w6 = (offsets[first + 6], weights[first + 6]) if count > 6 else (o0, 0.0)
    o7, w7 = (offsets[first + 7], weights[first + 7]) if count > 7 else (o0, 0.0)
    s0, s1, s2, s3 = (
        source[o0 : o0 + length],
        source[o1 : o1 + length],
        source[o2 : o2 + length],
        source[o3 : o3 + length],
    )
    s4, s5, s6, s7 = (
        source[o4 : o4 + length],
        source[o5 : o5 + length],
        source[o6 : o6 + length],
        source[o7 : o7 + length],
    )
    if accumulate:
        for j in range(length):
            target[j] += ((w0 * s0[j] + w1 * s1[j]) + (w2 * s2[j] + w3 * s3[j])) + (
                (w4 * s4[j] + w5 * s5[j]) + (w6 * s6[j] + w7 * s7[j])
            )
    else:
        for j in range(length):
            target[j] = ((w0 * s0[j] + w1 * s1[j]) + (w2 * s2[j] + w3 * s3[j])) + (
                (w4 * s4[j] + w5 * s5[j]) + (w6 * s6[j] + w7 * s7[j])
            )


@_jit
def _sum_terms(target, source, offsets, weights, length, accumulate):
    """target (+)= Σ_m weights[m] · source[offsets[m] : offsets[m] + length], eight terms per pass."""
    n_terms = weights.shape[0]
    for first in range(0, n_terms, _TERMS):
        count = min(_TERMS, n_terms - first)
        _weighted_sum(target, source, offsets, weights, first, count, length, accumulate or first > 0)


@_jit
def separable_work(n_rows, n0, n1, f0, f1):
    """The work arrays of :func:`separable_correlate` and its adjoint: an image in rows of
    m1 = n1 + f1 − 1 (n0 + 1, m1), the Q row-factor responses with f0 − 1 rows repeated
    (Q, n0 + f0 − 1, n1), the same in rows of m1 (Q, n0 + 1, m1), and small index and weight arrays
    (one spare row in the row-padded arrays lets a pass over all n0·m1 entries read past the last row)."""
    m1 = n1 + f1 - 1
    return (
        np.zeros((n0 + 1, m1)),
        np.zeros((n_rows, n0 + f0 - 1, n1)),
        np.zeros((n_rows, n0 + 1, m1)),
        np.zeros(max(f0, f1, n_rows * f1), dtype=np.int64),
        np.zeros(max(f0, n_rows * f1)),
    )


@_jit
def _row_responses(image, row_taps, f0, work, responses):
    """responses[q] = row_taps[q] ⊛ image along the rows (circularly), for one image (n0, n1), with
    the first f0 − 1 rows repeated after the last (a column pass then shifts by flat offsets)."""
    padded, _, spread, offsets, _ = work
    n0, n1 = image.shape
    n_rows, f1 = row_taps.shape
    m1 = n1 + f1 - 1
    for r in range(n0):
        padded[r, :n1] = image[r]
        padded[r, n1:] = image[r, : f1 - 1]
    for t in range(f1):
        offsets[t] = t
    flat_padded = padded.reshape(-1)
    for q in range(n_rows):
        _sum_terms(spread[q].reshape(-1), flat_padded, offsets[:f1], row_taps[q], n0 * m1, False)
        for r in range(n0):
            responses[q, r] = spread[q, r, :n1]
        for r in range(f0 - 1):
            responses[q, n0 + r] = responses[q, r]


@_jit
def _column_adjoint(source, scaled, n0, n1, offsets, target, accumulate):
    """target[:n0·n1] (+)= Σ_a scaled[a] · source shifted down by a rows (rows modulo n0): the
    adjoint of one filter's column pass, for one image."""
    f0 = scaled.shape[0]
    wrap = (f0 - 1) * n1  # the first f0 − 1 rows read rows from the end of the source
    for r in range(f0 - 1):
        for a in range(f0):
            offsets[a] = ((r - a) % n0) * n1
        _sum_terms(target[r * n1 : (r + 1) * n1], source, offsets[:f0], scaled, n1, accumulate)
    for a in range(f0):
        offsets[a] = (f0 - 1 - a) * n1
    _sum_terms(target[wrap : n0 * n1], source, offsets[:f0], scaled, n0 * n1 - wrap, accumulate)


@_jit
def _row_adjoint(compact, row_taps, work, out_image):
    """out_image[r, c] = Σ_q Σ_t b_{q,t} compact[q, r, c − t] (columns modulo n1), the adjoint of
    :func:`_row_responses` for one image: passes over all rows at once in rows of m1 = n1 + f1 − 1,
    the first f1 − 1 columns wrapping the end of the row."""
    padded, _, back, offsets, _ = work
    n0, n1 = out_image.shape
    n_rows, f1 = row_taps.shape
    m1 = n1 + f1 - 1
    for q in range(n_rows):
        for r in range(n0):
            back[q, r, f1 - 1 :] = compact[q, r, :n1]
            back[q, r, : f1 - 1] = compact[q, r, n1 - f1 + 1 : n1]
    block = (n0 + 1) * m1
    for q in range(n_rows):
        for t in range(f1):
            offsets[q * f1 + t] = q * block + (f1 - 1 - t)
    _sum_terms(padded.reshape(-1), back.reshape(-1), offsets[: n_rows * f1], row_taps.reshape(-1), n0 * m1, False)
    for r in range(n0):
        out_image[r] = padded[r, :n1]


@_jit
def separable_correlate(x, col_taps, row_taps, rows, work, z):
    """z[k, b] = (col_taps[k] ⊗ row_taps[rows[k]]) ⊛ x[b] (circular correlation, z_i = Σ_a c_a x_{i+a}).

    ``x`` has shape (B, n0, n1), ``z`` (K, B, n0, n1) is overwritten; ``work`` from
    :func:`separable_work`.  First y_q = row_taps[q] ⊛ x along the rows (one pass per row factor over
    the image extended circularly to rows of n1 + f1 − 1), then, one pass per filter,
    z_k = col_taps[k] ⊛ y_{q_k} along the columns (y's first f0 − 1 rows repeated after its last, so
    that a shift by a rows is the flat offset a·n1)."""
    responses, offsets = work[1], work[3]
    n_batch, n0, n1 = x.shape
    n_filters, f0 = col_taps.shape
    for b in range(n_batch):
        _row_responses(x[b], row_taps, f0, work, responses)
        for a in range(f0):
            offsets[a] = a * n1
        for k in range(n_filters):
            source = responses[rows[k]].reshape(-1)
            _sum_terms(z[k, b].reshape(-1), source, offsets[:f0], col_taps[k], n0 * n1, False)


@_jit
def separable_correlate_adjoint(v, weights, col_taps, row_taps, rows, work, out):
    """out[b] = Σ_k weights[k] · C_k' v[k, b], the adjoint of :func:`separable_correlate`:
    (C_k' v)_i = Σ_a c_{k,a} v_{i−a}.  ``v`` has shape (K, B, n0, n1), ``out`` (B, n0, n1) is overwritten."""
    compact, offsets, scaled = work[1], work[3], work[4]
    n_filters, n_batch, n0, n1 = v.shape
    n_rows = row_taps.shape[0]
    f0 = col_taps.shape[1]
    for b in range(n_batch):
        # the column passes' adjoint: u_q[r] = Σ_{k: q_k = q} Σ_a w_k a_{k,a} v_k[r − a] (rows modulo n0)
        for q in range(n_rows):
            started = False
            for k in range(n_filters):
                if rows[k] != q:
                    continue
                for a in range(f0):
                    scaled[a] = weights[k] * col_taps[k, a]
                _column_adjoint(v[k, b].reshape(-1), scaled[:f0], n0, n1, offsets, compact[q].reshape(-1), started)
                started = True
            if not started:
                compact[q] = 0.0
        _row_adjoint(compact, row_taps, work, out[b])


@_jit
def separable_cr1n_gradient(x, col_taps, row_taps, rows, weights, eps, work, compact, out):
    """out[b] = Σ_k weights[k] · C_k' φ̇.(C_k x[b]) for the CR1N φ̇(z) = z / √(z² + ε²), the
    regulariser's part of ∇ₓΦ (review eq. 4.9, first line), on a separable bank, fused: per image
    the row passes, then per filter its column pass, φ̇ and the column pass's adjoint on one image's
    worth of responses (which stays in the L1 cache; no K responses are stored), then the row
    passes' adjoint.  The same operations in the same order as :func:`separable_correlate`,
    :func:`cr1n_derivative` and :func:`separable_correlate_adjoint`, so the same result to the bit
    (measured on one core, three 50×50 images, 48 DCT filters 7×7: 0.66 against 0.71 ms).

    ``work`` from :func:`separable_work`, ``compact`` of the shape of its second array; returns the
    count of |z| > :data:`CR1N_SAFE` (then ``out`` is not φ̇'s and the caller takes numpy's path)."""
    responses, offsets, scaled = work[1], work[3], work[4]
    n_batch, n0, n1 = x.shape
    n_rows = row_taps.shape[0]
    n_filters, f0 = col_taps.shape
    column = np.empty(n0 * n1)
    values = np.empty(n0 * n1)  # not φ̇ in place: the aliasing would keep the loop from vectorising (8× slower)
    column_offsets = np.empty(f0, dtype=np.int64)
    for a in range(f0):
        column_offsets[a] = a * n1
    big = 0
    for b in range(n_batch):
        _row_responses(x[b], row_taps, f0, work, responses)
        for q in range(n_rows):
            source = responses[q].reshape(-1)
            started = False
            for k in range(n_filters):
                if rows[k] != q:
                    continue
                _sum_terms(column, source, column_offsets, col_taps[k], n0 * n1, False)
                big += cr1n_derivative(column, eps, values)
                for a in range(f0):
                    scaled[a] = weights[k] * col_taps[k, a]
                _column_adjoint(values, scaled[:f0], n0, n1, offsets, compact[q].reshape(-1), started)
                started = True
            if not started:
                compact[q] = 0.0
        _row_adjoint(compact, row_taps, work, out[b])
    return big


# ---------------------------------------------------------------------------------------------
# OGM's whole loop for denoising (A = I) with the corner-rounded 1-norm on small images.  In Python
# an OGM iteration on a 32×32 image with four 3×3 filters costs about 0.1 ms, almost all of it
# per-call overhead; compiled, the gradient x − y + Σ_k w_k C_k' φ̇.(C_k x) and the updates are a
# few µs.  Used by :func:`~bilevel_lib.solvers.lower.solve_lower_level` (see its ``COMPILED_MAX_WORK``).


@_elementwise  # numpy's float semantics: the division by √(z² + ε²) ≥ ε > 0 needs no zero check, so it vectorises
def _cr1n_denoising_gradient(x, y, taps, weights, eps, work, g):
    """g = x − y + Σ_k w_k C_k' φ̇.(C_k x) for x, y, g of shape (J, n0, n1), taps (K, f0, f1) with
    f ≤ n (circular correlation: (C_k x)_i = Σ_a c_{k,a} x_{i+a}); ``work`` comes from
    :func:`_gradient_work`.  The image is extended circularly and laid out in rows of
    m1 = n1 + f1 − 1, so that each tap is one contiguous pass over it (vectorised by the compiler);
    the responses keep that layout, with zeros in the f1 − 1 extra columns.  Returns how many
    |C_k x| exceed :data:`CR1N_SAFE` (those use ``math.hypot``)."""
    padded, z, spread = work
    J, n0, n1 = x.shape
    K, f0, f1 = taps.shape
    m1 = n1 + f1 - 1
    length = n0 * m1
    eps2 = eps * eps
    big = 0
    for j in range(J):
        for i0 in range(n0 + f0 - 1):  # x_j extended circularly by f − 1 rows and columns
            r = i0 if i0 < n0 else i0 - n0
            for i1 in range(m1):
                padded[i0 * m1 + i1] = x[j, r, i1 if i1 < n1 else i1 - n1]
        spread[:] = 0.0
        for k in range(K):
            z[:] = 0.0
            for a0 in range(f0):
                a1 = 0
                while a1 + 1 < f1:  # taps a1 and a1 + 1 in one pass (the same sums, in the same order)
                    c, d = taps[k, a0, a1], taps[k, a0, a1 + 1]
                    shifted = padded[a0 * m1 + a1 : a0 * m1 + a1 + length + 1]  # x_{i+a}, one entry more
                    for i in range(length):
                        z[i] = (z[i] + c * shifted[i]) + d * shifted[i + 1]
                    a1 += 2
                if a1 < f1:  # the last tap of an odd f1
                    c = taps[k, a0, a1]
                    shifted = padded[a0 * m1 + a1 : a0 * m1 + a1 + length]
                    for i in range(length):
                        z[i] += c * shifted[i]
            w = weights[k]
            beyond = 0  # a branch-free pass (vectorised square roots); the rare |z| > CR1N_SAFE again below
            for i in range(length):
                s = z[i]
                beyond += abs(s) > CR1N_SAFE
                z[i] = w * (s / np.sqrt(s * s + eps2))
            if beyond:
                big += beyond
                for i in range(length):  # z is w·φ̇ now, |φ̇| ≤ 1: recompute those entries from the sums
                    if not np.isfinite(z[i]) or z[i] == 0.0:
                        s = 0.0
                        for a0 in range(f0):
                            for a1 in range(f1):
                                s += taps[k, a0, a1] * padded[i + a0 * m1 + a1]
                        if abs(s) > CR1N_SAFE:
                            z[i] = w * (s / math.hypot(s, eps))
            for i0 in range(n0):  # the extra columns are not responses
                for i1 in range(n1, m1):
                    z[i0 * m1 + i1] = 0.0
            for a0 in range(f0):
                a1 = 0
                # taps a1 and a1 + 1 in one pass; each entry adds tap a1's term first, as two passes would
                while a1 + 1 < f1:
                    c, d = taps[k, a0, a1], taps[k, a0, a1 + 1]
                    target = spread[a0 * m1 + a1 : a0 * m1 + a1 + length + 1]
                    target[0] += c * z[0]
                    for i in range(1, length):
                        target[i] = (target[i] + c * z[i]) + d * z[i - 1]
                    target[length] += d * z[length - 1]
                    a1 += 2
                if a1 < f1:
                    c = taps[k, a0, a1]
                    target = spread[a0 * m1 + a1 : a0 * m1 + a1 + length]
                    for i in range(length):
                        target[i] += c * z[i]
        for i0 in range(n0):
            for i1 in range(n1):
                g[j, i0, i1] = x[j, i0, i1] - y[j, i0, i1] + spread[i0 * m1 + i1]
        for i0 in range(n0 + f0 - 1):  # fold the overhang back onto the start (circularly)
            r = i0 if i0 < n0 else i0 - n0
            for i1 in range(m1):
                if i0 >= n0 or i1 >= n1:
                    g[j, r, i1 if i1 < n1 else i1 - n1] += spread[i0 * m1 + i1]
    return big


@_jit
def _gradient_work(n0, n1, f0, f1):
    """The work arrays of :func:`_cr1n_denoising_gradient` (flat, rows of n1 + f1 − 1): the padded
    image, one filter's responses and the adjoint before folding."""
    m1 = n1 + f1 - 1
    return np.zeros((n0 + f0) * m1), np.zeros(n0 * m1), np.zeros((n0 + f0) * m1)


@_jit
def _image_norms(g, n_pixels, norms):
    """norms[j] = ‖g_j‖₂/√N; returns whether all are finite."""
    finite = True
    for j in range(g.shape[0]):
        total = 0.0
        for i0 in range(g.shape[1]):
            for i1 in range(g.shape[2]):
                total += g[j, i0, i1] * g[j, i0, i1]
        norms[j] = np.sqrt(total / n_pixels)
        finite = finite and np.isfinite(norms[j])
    return finite


@_jit
def ogm_denoising_loop(y, x, taps, weights, eps, step, tol, max_iter, gd, restart, history):
    """OGM with gradient-based adaptive restart (or gradient descent if ``gd``) on Φ(x) = ½‖x − y‖²
    + Σ_k w_k Σ_i φ((C_k x)_i), φ the corner-rounded 1-norm, for every image of x (J, n0, n1),
    updated in place; the loop of :func:`~bilevel_lib.solvers.lower.solve_lower_level` compiled.

    Stops when max_j ‖∇Φ(x_j)‖/√N < tol (tol ≤ 0: never) or after ``max_iter`` iterations;
    ``history`` (length max_iter + 1, or 0 to skip) receives that maximum at every iterate.
    Returns (iterations, restarts, norms (J,), finite): ``finite`` is False when a gradient norm
    became NaN or infinite, at iteration ``iterations`` (x is then that iterate)."""
    J, n0, n1 = x.shape
    n_pixels = n0 * n1
    g = np.empty_like(x)
    work = _gradient_work(n0, n1, taps.shape[1], taps.shape[2])
    norms = np.empty(J)
    _cr1n_denoising_gradient(x, y, taps, weights, eps, work, g)
    if not _image_norms(g, n_pixels, norms):
        return 0, 0, norms, False
    if history.shape[0] > 0:
        history[0] = norms.max()
    y_prev = x.copy()
    y_next = np.empty_like(x)
    theta = np.ones(J)
    iterations = 0
    restarts = 0
    while iterations < max_iter and not (tol > 0 and norms.max() < tol):
        for j in range(J):
            if gd:
                for i0 in range(n0):
                    for i1 in range(n1):
                        x[j, i0, i1] = x[j, i0, i1] - step * g[j, i0, i1]
                continue
            th = theta[j]
            th_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * th * th))
            a = (th - 1.0) / th_next
            b = th / th_next
            agreement = 0.0  # −∇Φ(x)'(y_{t+1} − y_t), as the Python loop tests it
            for i0 in range(n0):
                for i1 in range(n1):
                    yn = x[j, i0, i1] - step * g[j, i0, i1]
                    y_next[j, i0, i1] = yn
                    agreement += -g[j, i0, i1] * (yn - y_prev[j, i0, i1])
            disagree = restart and agreement < 0
            if disagree:
                restarts += 1
                th_next = 1.0
            for i0 in range(n0):
                for i1 in range(n1):
                    yn = y_next[j, i0, i1]
                    if disagree:
                        x[j, i0, i1] = yn
                    else:
                        x[j, i0, i1] = yn + a * (yn - y_prev[j, i0, i1]) + b * (yn - x[j, i0, i1])
                    y_prev[j, i0, i1] = yn
            theta[j] = th_next
        _cr1n_denoising_gradient(x, y, taps, weights, eps, work, g)
        iterations += 1
        if not _image_norms(g, n_pixels, norms):
            return iterations, restarts, norms, False
        if history.shape[0] > 0:
            history[iterations] = norms.max()
    return iterations, restarts, norms, True
