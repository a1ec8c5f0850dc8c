"""Julia 1.7's default random stream, redrawn in Python: ``Random.seed!(n)`` then ``randn(dims...)``.

Why this exists
---------------
Case study (a) of the review (Crockett & Fessler, App. D.1: 32×32 vertical bars, four learned
4×2 filters) was run by the authors' Julia script ``scripts/vertbars.jl`` of
``cecroc/BilevelFilterLearningForImageRecon`` under Julia 1.7.1 (its Manifest.toml).  The script
draws its noise and its initial filters from Julia's default generator::

    seed!(0); 𝚽 = init𝚽(xtrue; reg)     # no draws (denoising: A = LinearMap)
    y = xtrue + σ*randn(size(xtrue))     # randn(32, 32)
    seed!(0); h = [normalize(randn(4,2)) for _=1:4]

:class:`JuliaXoshiro` draws the same numbers, so that the book can start from the authors' exact
noisy image and initial filters: ``JuliaXoshiro(0).randn(32, 32)`` is the noise before scaling by
σ, and four successive ``randn(4, 2)`` from ``JuliaXoshiro(0)`` are the four initial filters before
``normalize``.

What Julia 1.7 does (read in its stdlib ``Random``: ``Xoshiro.jl``, ``XoshiroSimd.jl``,
``RNGs.jl``, ``normal.jl``), and what this module repeats:

* ``seed!(n)`` seeds the task-local xoshiro256++ state: ``n`` (an integer ≥ 0) is split into
  little-endian 32-bit words (at least one word, so 0 gives four zero bytes), the words' bytes are
  hashed with SHA-256, and the 32-byte digest read as four little-endian 64-bit words is the state
  (s0, s1, s2, s3).  (Later Julia versions changed the seeding rules, e.g. negative seeds from
  1.11; only the 1.7 rule for non-negative integers is implemented.)
* ``rand(UInt64)`` is one xoshiro256++ step; ``rand(Float64)`` is ``(u >> 11) · 2⁻⁵³``.
* ``randn()`` is the Marsaglia–Tsang ziggurat with 256 layers on the top 52 bits ``u >> 12`` of a
  word: bit 0 is the sign, the next 8 bits the layer, the rest the abscissa.  The rare paths draw
  more numbers: the base layer's tail uses ``log(rand())`` twice per try (later versions use
  ``log1p(-rand())``), the wedge test one ``rand()``, and a rejected wedge starts a fresh ``randn()``.
* ``randn(dims...)`` with **fewer than 7** elements calls ``randn()`` element by element (column
  major).  With **7 or more** elements Julia 1.7 takes a bulk path: it first fills the array with raw
  64-bit words and then maps each word to a normal (a rare path draws its extra numbers from the
  generator afterwards).  The raw words come from Julia's SIMD generator once the request is at
  least 64 bytes (≥ 8 words): eight virtual xoshiro256++ streams are forked from the generator (32
  draws: each stream's s0, then each s1, s2, s3, multiplied by fixed odd constants), and word
  ``8k + j`` is output ``k`` of stream ``j``; a remainder of fewer than 8 words comes from the
  generator itself.  So ``randn(4, 2)`` and ``randn(32, 32)`` are *not* the same numbers as eight or
  1024 calls of ``randn()``; :meth:`JuliaXoshiro.randn` follows Julia here, and
  :meth:`JuliaXoshiro.randn_scalar` gives the element-by-element stream.
* ``randexp`` is the same with the exponential ziggurat (kept because Julia's ``randexp`` doctests
  check the bulk path independently of ``randn``).

The ziggurat tables (``ki, wi, fi`` and ``ke, we, fe``) are not copied: :func:`ziggurat_tables`
builds them from the Marsaglia–Tsang recursion x₂₅₅ = r, xᵢ = f⁻¹(v/xᵢ₊₁ + f(xᵢ₊₁)) in 100-digit
decimal arithmetic (the layer area v = r f(r) + ∫ᵣ^∞ f, with r = 3.6541528853610087963519472518 for
the normal density f(x) = e^{-x²/2} and r = 7.6971174701310497140446280481 for f(x) = e^{-x}), then
rounds to float64 (w, f) and truncates to integers (k), with 2⁵¹ (normal) and 2⁵² (exponential) as
the fixed-point scales.  Computed this way, all 6 × 256 entries equal Julia's tables bit for bit;
in plain float64 arithmetic the recursion drifts in the last bits (49 of the 256 ``ki`` differ).

Verified (``tests/test_julia_random.py``): xoshiro256++ against the reference outputs for the state
(1, 2, 3, 4); the seed states against SHA-256 computed independently; ``rand`` against Julia's
doctests for ``Xoshiro(1234)`` / ``seed!(1234)`` and a Julia 1.7 session (``seed!(123)``);
``randn`` element by element against Julia's ``randn!(Xoshiro(123), zeros(5))`` doctest and
published ``seed!(1234); randn(4)`` output; the bulk path against published ``seed!(1234);
randn(1000)`` output (19 of its values) and Julia's ``randexp(Xoshiro(123), 3, 3)`` doctest (one
SIMD block plus one parent word).  Those outputs come from Julia 1.7 to 1.12, whose code for these
paths is the same as 1.7's (the bulk ``randn!`` and the SIMD fork date from the pull request that
introduced Xoshiro, JuliaLang/julia#40546; the 64-byte SIMD threshold has not changed since).

Not bit-exact by construction: the rare tail and wedge paths call ``math.log``/``math.exp`` (the C
library) where Julia uses its own ``log``/``exp``; both are within an ulp, so a tail value may
differ in its last bit, and a wedge decision could flip only if it were decided within an ulp.  For
the draws of App. D.1 (seed 0: the 32×32 noise and the four 4×2 filters) no tail is reached and the
19 wedge tests are decided by relative margins of at least 9·10⁻⁶, so those numbers do not depend on
the C library.  They do assume that ``seed!(0)`` and the draws ran in one Julia task (a script or
the REPL): in Julia 1.7 every task spawned in between takes four words from the stream, and
front ends that run each cell in a new task (Pluto) do not carry the seeded state over.

Speed is irrelevant here (a few thousand numbers), so everything is plain Python integers.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from decimal import Decimal, localcontext
from functools import cache
from typing import NamedTuple

import numpy as np

__all__ = ["JuliaXoshiro", "ZigguratTables", "ziggurat_tables"]

_MASK64 = (1 << 64) - 1

# Julia's documented ziggurat constants (stdlib Random, normal.jl, "## Constants").
ZIGGURAT_NOR_R = Decimal("3.6541528853610087963519472518")
ZIGGURAT_EXP_R = Decimal("7.6971174701310497140446280481")
_NOR_R = float(ZIGGURAT_NOR_R)
_NOR_INV_R = 1.0 / _NOR_R
_EXP_R = float(ZIGGURAT_EXP_R)

# Julia's randn!/randexp! bulk path is taken from this many elements on (normal.jl, Julia 1.7) …
_BULK_MIN_LENGTH = 7
# … and its raw words come from SIMD lanes once the request has this many bytes (XoshiroSimd.jl).
_SIMD_MIN_BYTES = 64
_SIMD_LANES = 8
# Odd multipliers applied to the parent's outputs when forking the SIMD lanes (XoshiroSimd.jl,
# forkRand: hash(UInt(1))|1 … hash(UInt(4))|1, one per state word).
_FORK_MULTIPLIERS = (0x02011CE34BCE797F, 0x5A94851FB48A6E05, 0x3688CF5D48899FA7, 0x867B4BB4C42E5661)

_DIGITS = 100  # decimal digits for building the tables; 256-bit (≈ 77-digit) precision suffices


class ZigguratTables(NamedTuple):
    """One ziggurat: ``k`` integer thresholds, ``w`` float64 widths (scaled by 2⁻ᵐ), ``f`` f(xᵢ)."""

    k: tuple[int, ...]
    w: tuple[float, ...]
    f: tuple[float, ...]


def _pi() -> Decimal:
    """π in the current decimal context (Gauss–Legendre iteration)."""
    a, b, t, p = Decimal(1), 1 / Decimal(2).sqrt(), Decimal(1) / 4, Decimal(1)
    for _ in range(10):  # the number of correct digits doubles each time: 10 steps give > 1000
        a_next = (a + b) / 2
        b = (a * b).sqrt()
        t -= p * (a - a_next) ** 2
        a = a_next
        p *= 2
    return (a + b) ** 2 / (4 * t)


def _normal_tail_area(r: Decimal) -> Decimal:
    """∫ᵣ^∞ e^{-t²/2} dt = √(π/2) − e^{-r²/2} Σₙ r^{2n+1}/(2n+1)!!  (a series of positive terms)."""
    r2 = r * r
    term = total = r
    n = 0
    eps = Decimal(10) ** -(_DIGITS + 5)
    while term > eps * total:
        n += 1
        term = term * r2 / (2 * n + 1)
        total += term
    return (_pi() / 2).sqrt() - (-r2 / 2).exp() * total


def _build(r: Decimal, area: Decimal, f, f_inv, bits: int) -> ZigguratTables:
    """Marsaglia–Tsang layers x₂₅₅ = r > x₂₅₄ > … > x₁ of equal area, in the decimal context.

    Index 0 is the base strip (rectangle plus tail): k₀ = ⌊2ᵐ r f(r)/v⌋, w₀ = v/f(r)/2ᵐ, f₀ = 1.
    For i ≥ 1: wᵢ = xᵢ/2ᵐ, fᵢ = f(xᵢ), and kᵢ₊₁ = ⌊2ᵐ xᵢ/xᵢ₊₁⌋ (with k₁ = 0).
    """
    n = 256
    scale = Decimal(2) ** bits
    k = [0] * n
    x = [Decimal(0)] * n
    fx = [Decimal(0)] * n
    x[n - 1], fx[n - 1] = r, f(r)
    k[0] = int(r * fx[n - 1] / area * scale)
    base_width = area / fx[n - 1]
    for i in range(n - 2, 0, -1):
        x[i] = f_inv(area / x[i + 1] + fx[i + 1])
        fx[i] = f(x[i])
        k[i + 1] = int(x[i] / x[i + 1] * scale)
    k[1] = 0
    # float(Decimal) rounds correctly; scaling a float64 by a power of two is exact here
    w = [float(base_width) * 2.0**-bits] + [float(x[i]) * 2.0**-bits for i in range(1, n)]
    fvals = [1.0] + [float(fx[i]) for i in range(1, n)]
    return ZigguratTables(tuple(k), tuple(w), tuple(fvals))


@cache
def ziggurat_tables(kind: str = "normal") -> ZigguratTables:
    """The 256-layer ziggurat tables Julia uses for ``randn`` (``"normal"``) or ``randexp``
    (``"exponential"``), computed once (≈ 0.05 s) and cached."""
    if kind not in ("normal", "exponential"):
        raise ValueError(f"kind must be 'normal' or 'exponential', got {kind!r}")
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        if kind == "normal":
            r = ZIGGURAT_NOR_R
            area = r * (-r * r / 2).exp() + _normal_tail_area(r)
            return _build(r, area, lambda t: (-t * t / 2).exp(), lambda y: (-2 * y.ln()).sqrt(), 51)
        r = ZIGGURAT_EXP_R
        area = (r + 1) * (-r).exp()  # r f(r) + ∫ᵣ^∞ e^{-t} dt
        return _build(r, area, lambda t: (-t).exp(), lambda y: -y.ln(), 52)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _MASK64


def _xoshiro_next(s: list[int]) -> int:
    """One xoshiro256++ step on the 4-word state ``s`` (modified in place); returns the output."""
    s0, s1, s2, s3 = s
    out = (_rotl((s0 + s3) & _MASK64, 23) + s0) & _MASK64
    t = (s1 << 17) & _MASK64
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s[:] = s0, s1, s2, _rotl(s3, 45)
    return out


def _check_seed(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"seed must be a non-negative integer, got {n!r} of type {type(n).__name__}")
    n = int(n)
    if n < 0:
        raise ValueError(f"seed must be non-negative (Julia 1.7 rejects negative seeds), got {n}")
    return n


def _shape(dims) -> tuple[int, ...]:
    if len(dims) == 1 and isinstance(dims[0], tuple):
        dims = dims[0]
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"array dimensions must be non-negative integers, got {dims!r}")
        out.append(int(d))
    return tuple(out)


class JuliaXoshiro:
    """Julia 1.7's task-local xoshiro256++ after ``Random.seed!(seed)``.

    ``JuliaXoshiro(0).randn(4, 2)`` is Julia 1.7's ``Random.seed!(0); randn(4, 2)``; further calls
    continue the same stream, as successive calls do in Julia.
    """

    def __init__(self, seed: int):
        self._s = [0, 0, 0, 0]
        self.seed(seed)

    # ------------------------------------------------------------------ state
    def seed(self, n: int) -> JuliaXoshiro:
        """Reseed like ``Random.seed!(n)`` in Julia 1.7 (see the module docstring)."""
        n = _check_seed(n)
        words = bytearray()
        while True:
            words += (n & 0xFFFFFFFF).to_bytes(4, "little")
            n >>= 32
            if n == 0:
                break
        digest = hashlib.sha256(bytes(words)).digest()
        self._s = [int.from_bytes(digest[8 * i : 8 * i + 8], "little") for i in range(4)]
        return self

    @property
    def state(self) -> tuple[int, int, int, int]:
        """The four state words (s0, s1, s2, s3)."""
        return tuple(self._s)

    @classmethod
    def from_state(cls, s0: int, s1: int, s2: int, s3: int) -> JuliaXoshiro:
        """A generator with the given state words (not all zero)."""
        words = [int(w) for w in (s0, s1, s2, s3)]
        if any(w < 0 or w > _MASK64 for w in words) or not any(words):
            raise ValueError(f"state words must be 64-bit unsigned integers, not all zero; got {words}")
        rng = cls.__new__(cls)
        rng._s = words
        return rng

    # ------------------------------------------------------------------ uniform
    def next_uint64(self) -> int:
        """``rand(rng, UInt64)``: the next xoshiro256++ output."""
        return _xoshiro_next(self._s)

    def rand_float64(self) -> float:
        """``rand(rng)``: a float64 in [0, 1) from the top 53 bits of one word."""
        return (self.next_uint64() >> 11) * 2.0**-53

    def fill_uint64(self, n: int) -> list[int]:
        """``rand!(rng, Vector{UInt64}(undef, n))`` as Julia 1.7 does it for Xoshiro: eight forked
        SIMD lanes for whole blocks of 8 words once n ≥ 8, then the rest from the generator."""
        n = _shape((n,))[0]
        out: list[int] = []
        if 8 * n >= _SIMD_MIN_BYTES:
            draws = [self.next_uint64() for _ in range(4 * _SIMD_LANES)]
            lanes = [
                [(_FORK_MULTIPLIERS[w] * draws[w * _SIMD_LANES + j]) & _MASK64 for w in range(4)]
                for j in range(_SIMD_LANES)
            ]
            for _ in range(n // _SIMD_LANES):
                out.extend(_xoshiro_next(lane) for lane in lanes)
        while len(out) < n:
            out.append(self.next_uint64())
        return out

    # ------------------------------------------------------------------ normal
    def _normal_from_bits(self, r: int) -> float:
        """Julia's ziggurat step on 52 random bits ``r`` (``_randn``), drawing more if needed."""
        k, w, _ = ziggurat_tables("normal")
        rabs = r >> 1
        idx = rabs & 0xFF
        x = float(-rabs if r & 1 else rabs) * w[idx]
        if rabs < k[idx]:
            return x  # ≈ 99.3 % of draws
        return self._normal_unlikely(idx, rabs, x)

    def _normal_unlikely(self, idx: int, rabs: int, x: float) -> float:
        _, _, f = ziggurat_tables("normal")
        if idx == 0:  # the tail beyond r (Marsaglia's method), sign from bit 8 of rabs
            while True:
                xx = -_NOR_INV_R * math.log(self.rand_float64())
                yy = -math.log(self.rand_float64())
                if yy + yy > xx * xx:
                    return -_NOR_R - xx if (rabs >> 8) & 1 else _NOR_R + xx
        if (f[idx - 1] - f[idx]) * self.rand_float64() + f[idx] < math.exp(-0.5 * x * x):
            return x  # inside the wedge under the density
        return self.randn_scalar()

    def randn_scalar(self, *shape) -> float | np.ndarray:
        """``randn()`` called once per element (column-major); with no shape, one float.

        This is Julia's stream for arrays of fewer than 7 elements and for comprehensions
        ``[randn() for …]``; for larger arrays Julia's ``randn(dims...)`` differs, see :meth:`randn`.
        """
        if not shape:
            return self._normal_from_bits(self.next_uint64() >> 12)
        dims = _shape(shape)
        vals = [self._normal_from_bits(self.next_uint64() >> 12) for _ in range(math.prod(dims))]
        return np.array(vals, dtype=float).reshape(dims, order="F")

    def randn(self, *shape) -> float | np.ndarray:
        """Julia 1.7's ``randn(rng, dims...)`` (``randn!`` on a new ``Array{Float64}``), filled in
        column-major order; with no shape, ``randn(rng)`` (one float)."""
        if not shape:
            return self.randn_scalar()
        dims = _shape(shape)
        return self._bulk(dims, self._normal_from_bits, self.randn_scalar)

    # ------------------------------------------------------------------ exponential
    def _exponential_from_bits(self, r: int) -> float:
        k, w, f = ziggurat_tables("exponential")
        idx = r & 0xFF
        x = r * w[idx]
        if r < k[idx]:
            return x  # ≈ 98.9 % of draws
        if idx == 0:
            return _EXP_R - math.log(self.rand_float64())
        if (f[idx - 1] - f[idx]) * self.rand_float64() + f[idx] < math.exp(-x):
            return x
        return self._exponential_from_bits(self.next_uint64() >> 12)

    def randexp(self, *shape) -> float | np.ndarray:
        """Julia 1.7's ``randexp(rng, dims...)`` (exponential, scale 1); with no shape, one float."""
        if not shape:
            return self._exponential_from_bits(self.next_uint64() >> 12)
        dims = _shape(shape)
        return self._bulk(dims, self._exponential_from_bits, self.randexp)

    # ------------------------------------------------------------------ arrays
    def _bulk(self, dims: tuple[int, ...], from_bits, scalar) -> np.ndarray:
        """``randn!``/``randexp!`` on an ``Array{Float64}`` for Xoshiro in Julia 1.7."""
        n = math.prod(dims)
        if n < _BULK_MIN_LENGTH:
            vals = [scalar() for _ in range(n)]
        else:
            words = self.fill_uint64(n)  # all raw words first …
            vals = [from_bits(u >> 12) for u in words]  # … then the map; rare paths draw after
        return np.array(vals, dtype=float).reshape(dims, order="F")

    def __repr__(self) -> str:
        return "JuliaXoshiro.from_state({})".format(", ".join(f"0x{w:016x}" for w in self._s))
