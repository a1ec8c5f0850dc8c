"""The running example (Ex) written in JAX, as a researcher fluent in JAX would write it: the peer of
``bilevel_lib`` in ``bench_peers.py``.

Everything is float64 and ``jit``-compiled; the derivatives come from autodiff, not from formulas:

* Φ(x; γ) = ½‖x − y‖² + Σ_k e^{β0+β_k} Σ_i φ((c_k ⊛ x)_i),  φ(z) = √(z² + ε²)  (the library's
  ``CornerRounded1Norm``, the same constant included), with circular correlation
  (c ⊛ x)_i = Σ_a c_a x_{i+a}, by real FFTs, by ``lax.conv_general_dilated`` on a wrap-padded x, or
  as taps × patches of the wrap-padded x (``lax.conv_general_dilated_patches`` and ``einsum``);
* ∇ₓΦ by ``jax.grad``, the Hessian-vector product by ``jax.jvp`` of the gradient, the mixed product
  (∇ₓγΦ)'v by ``jax.vjp`` of γ ↦ ∇ₓΦ(x; γ);
* T iterations of OGM with gradient-based adaptive restart (per image, step 1/L of review eq. 4.19)
  in ``lax.fori_loop``;
* the adjoint system ∇ₓₓΦ q = ∇ₓℓ by ``jax.scipy.sparse.linalg.cg``, ``vmap``-ed over the J images
  (the Hessian is block diagonal, so each image stops on its own residual, as in the library);
* one upper-level step: T warm-started OGM iterations, CG warm-started from the previous q with the
  tolerance relative to the initial residual, −(∇ₓγΦ)'q, and Adam — one ``jit``-ted function with
  its state buffers donated.

The settings and update rules are the library's (``solve_lower_level``, ``conjugate_gradient`` with
``relative_to="initial"``, ``Adam``), so both sides run the same iterations; ``bench_peers.py`` and
``tests/lib/test_peers.py`` check that they compute the same numbers.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from jax.scipy.sparse.linalg import cg  # noqa: E402

__all__ = ["CORRELATIONS", "JaxPeer", "correlate_fft", "correlate_conv"]


def correlate_fft(x, filters):
    """c_k ⊛ x for every filter by real 2-D FFTs: (J, n0, n1), (K, f0, f1) -> (J, K, n0, n1)."""
    shape = x.shape[-2:]
    spectra = jnp.conj(jnp.fft.rfft2(filters, s=shape))
    return jnp.fft.irfft2(spectra[None] * jnp.fft.rfft2(x)[:, None], s=shape)


def correlate_conv(x, filters):
    """c_k ⊛ x for every filter by one ``lax`` convolution (a correlation) of the wrap-padded x."""
    f0, f1 = filters.shape[-2:]
    padded = jnp.pad(x, ((0, 0), (0, f0 - 1), (0, f1 - 1)), mode="wrap")
    return lax.conv_general_dilated(
        padded[:, None], filters[:, None], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )


def correlate_patches(x, filters):
    """c_k ⊛ x for every filter as one matrix product of the taps with the wrap-padded x's 7×7 (or
    f0×f1) patches (``lax.conv_general_dilated_patches``, then ``einsum``): im2col, which is how the
    library's direct back end filters."""
    f0, f1 = filters.shape[-2:]
    padded = jnp.pad(x, ((0, 0), (0, f0 - 1), (0, f1 - 1)), mode="wrap")
    patches = lax.conv_general_dilated_patches(padded[:, None], (f0, f1), (1, 1), "VALID")  # (J, f0·f1, n0, n1)
    return jnp.einsum("ks,jsmn->jkmn", filters.reshape(filters.shape[0], -1), patches)


#: the ways of filtering, by name
CORRELATIONS = {"fft": correlate_fft, "conv": correlate_conv, "patches": correlate_patches}


def _check_method(method):
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {sorted(CORRELATIONS)}; got {method!r}")
    return CORRELATIONS[method]


class JaxPeer:
    """Φ, its derivatives, OGM, CG and the upper-level step of (Ex) for denoising (A = I) in JAX.

    Parameters
    ----------
    y : array (J, n0, n1)
        The measurements.
    eps : float
        The ε of φ(z) = √(z² + ε²).
    method : {"fft", "conv", "patches"}
        How the K correlations are computed (:data:`CORRELATIONS`).

    γ is a dict ``{"beta0": (), "beta": (K,), "filters": (K, f0, f1)}`` of float64 arrays.
    """

    def __init__(self, y, eps: float = 0.01, method: str = "fft"):
        y = jnp.asarray(y, dtype=jnp.float64)
        if y.ndim != 3:
            raise ValueError(f"y must have shape (J, n0, n1); got {y.shape}")
        if not eps > 0:
            raise ValueError(f"eps must be positive; got {eps!r}")
        self.y, self.eps, self.method = y, float(eps), method
        self.correlate = _check_method(method)
        self.value = jax.jit(self._value)
        self.gradient = jax.jit(jax.grad(self._value))
        self.hvp = jax.jit(self._hvp)
        self.mixed = jax.jit(self._mixed)
        self.lipschitz = jax.jit(self._lipschitz)
        self.ogm = jax.jit(self._ogm, static_argnames="n_iter")
        self.cg = jax.jit(self._cg, static_argnames="max_iter")

    # ------------------------------------------------------------------ Φ and its derivatives
    def _value(self, x, params, y=None):
        """Φ summed over the batch (the J costs are independent, so its x-gradient is theirs)."""
        y = self.y if y is None else y
        z = self.correlate(x, params["filters"])
        penalty = jnp.sum(jnp.sqrt(z * z + self.eps**2), axis=(0, 2, 3))  # (K,)
        return 0.5 * jnp.sum((x - y) ** 2) + jnp.dot(jnp.exp(params["beta0"] + params["beta"]), penalty)

    def _grad(self, x, params, y=None):
        return jax.grad(self._value)(x, params, y)

    def _hvp(self, x, params, v, y=None):
        """∇ₓₓΦ v: forward mode over reverse mode."""
        return jax.jvp(lambda u: self._grad(u, params, y), (x,), (v,))[1]

    def _hessian_at(self, xj, params, yj):
        """v -> ∇ₓₓΦ_j v for one image at x_j, linearised once (``jax.linearize``: the forward pass at
        x_j is done once and reused by every product, as CG wants)."""
        return jax.linearize(lambda u: self._grad(u[None], params, yj[None])[0], xj)[1]

    def gradient_operator(self, params):
        """x -> ∇ₓΦ(x; γ) at a fixed γ, jitted, with the work that depends on γ alone done once (the
        filters' spectra for FFTs, the weights e^{β0+β_k}), as a lower-level solver at fixed γ would;
        the library caches its filter bank per γ the same way."""
        return jax.jit(self._fixed_gradient(params))

    def _fixed_gradient(self, params):
        """The function behind :meth:`gradient_operator` (traceable: OGM uses it inside its loop)."""
        weights = jnp.exp(params["beta0"] + params["beta"])
        if self.method == "fft":
            shape = self.y.shape[-2:]
            spectra = jnp.conj(jnp.fft.rfft2(params["filters"], s=shape))

            def correlate(x):
                return jnp.fft.irfft2(spectra[None] * jnp.fft.rfft2(x)[:, None], s=shape)
        else:
            filters = params["filters"]

            def correlate(x):
                return self.correlate(x, filters)

        def value(x):
            z = correlate(x)
            return 0.5 * jnp.sum((x - self.y) ** 2) + jnp.dot(
                weights, jnp.sum(jnp.sqrt(z * z + self.eps**2), axis=(0, 2, 3))
            )

        return jax.grad(value)

    def hessian_operator(self, x, params):
        """The batch Hessian at x as a jitted v -> ∇ₓₓΦ v, linearised once (for timing one CG product)."""
        return jax.jit(jax.linearize(lambda u: self._grad(u, params), jnp.asarray(x))[1])

    def _mixed(self, x, params, v):
        """(∇ₓγΦ)'v, the γ-gradient of ⟨v, ∇ₓΦ(x; γ)⟩, as a dict like ``params``."""
        _, pullback = jax.vjp(lambda p: self._grad(x, p), params)
        return pullback(v)[0]

    def _lipschitz(self, params):
        """L = 1 + (1/ε) Σ_k e^{β0+β_k} ‖c_k‖₁² (review eq. 4.19 with A = I)."""
        l1 = jnp.sum(jnp.abs(params["filters"]), axis=(1, 2))
        return 1.0 + jnp.sum(jnp.exp(params["beta0"] + params["beta"]) * l1**2) / self.eps

    # ------------------------------------------------------------------ solvers
    def _ogm(self, x0, params, n_iter: int):
        """``n_iter`` OGM iterations with adaptive restart from x0 (momentum starts afresh, θ = 1).

        Returns (x, ∇ₓΦ(x)).
        """
        step = 1.0 / self._lipschitz(params)
        gradient = self._fixed_gradient(params)  # the filters' spectra once, outside the loop

        def body(_, carry):
            x, y_prev, g, theta = carry
            y_next = x - step * g
            theta_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * theta**2))
            a = ((theta - 1.0) / theta_next)[:, None, None]
            b = (theta / theta_next)[:, None, None]
            x_next = y_next + a * (y_next - y_prev) + b * (y_next - x)
            restart = jnp.sum(-g * (y_next - y_prev), axis=(1, 2)) < 0
            x_next = jnp.where(restart[:, None, None], y_next, x_next)
            theta_next = jnp.where(restart, 1.0, theta_next)
            return x_next, y_next, gradient(x_next), theta_next

        start = (x0, x0, gradient(x0), jnp.ones(x0.shape[0]))
        x, _, g, _ = lax.fori_loop(0, n_iter, body, start)
        return x, g

    def _cg(self, x, params, b, q0, tol, max_iter: int):
        """∇ₓₓΦ(x) q = b for each image by ``jax.scipy.sparse.linalg.cg``, warm-started at q0, each
        image stopping when ‖r_j‖ ≤ tol·‖r_j⁽⁰⁾‖ (its initial residual)."""

        def solve_one(xj, yj, bj, qj):
            hessian = self._hessian_at(xj, params, yj)
            initial = jnp.linalg.norm(bj - hessian(qj))
            atol = tol * jnp.where(initial > 0, initial, 1.0)
            return cg(hessian, bj, x0=qj, tol=0.0, atol=atol, maxiter=max_iter)[0]

        return jax.vmap(solve_one)(x, self.y, b, q0)

    def cg_iterations(self, x, params, b, q0, tol, max_iter: int):
        """The iterations CG needs per image under the rule of :meth:`cg` (a diagnostic, not timed).

        ``jax.scipy.sparse.linalg.cg`` does not report its count; this runs the same recursion in a
        counting loop.  Returns (solution, iterations), for checking against :meth:`cg`.
        """

        def solve_one(xj, yj, bj, qj):
            hessian = self._hessian_at(xj, params, yj)
            r = bj - hessian(qj)
            limit = tol * jnp.where(jnp.linalg.norm(r) > 0, jnp.linalg.norm(r), 1.0)

            def cond(carry):
                _, r, _, rr, k = carry
                return (rr > limit**2) & (k < max_iter)

            def body(carry):
                q, r, p, rr, k = carry
                hp = hessian(p)
                alpha = rr / jnp.vdot(p, hp)
                q, r = q + alpha * p, r - alpha * hp
                rr_new = jnp.vdot(r, r)
                return q, r, r + (rr_new / rr) * p, rr_new, k + 1

            q, *_, k = lax.while_loop(cond, body, (qj, r, r, jnp.vdot(r, r), 0))
            return q, k

        return jax.jit(jax.vmap(solve_one))(x, self.y, b, q0)

    # ------------------------------------------------------------------ the upper level
    def make_step(self, truth, parts=("beta", "filters"), *, n_iter=10, cg_tol=1e-3, cg_max_iter=500, lr=1e-3):
        """One upper-level step ``state -> state`` (jitted, state donated): T = ``n_iter`` OGM
        iterations from the previous x, ∇ₓℓ = (x − x_true)/J, CG from the previous q, the
        hypergradient −(∇ₓγΦ)'q over ``parts`` and one Adam step (Kingma & Ba's defaults).

        ``state = (params, x, q, adam_m, adam_v, t)``; start it with :meth:`initial_state`.
        Returns (step, the hypergradient of a state: for checks).
        """
        parts = tuple(parts)
        unknown = [p for p in parts if p not in ("beta0", "beta", "filters")]
        if unknown or not parts:
            raise ValueError(f"parts must be a non-empty subset of ('beta0', 'beta', 'filters'); got {parts}")
        truth = jnp.asarray(truth, dtype=jnp.float64)
        b1, b2, adam_eps = 0.9, 0.999, 1e-8

        def hypergradient(params, x, q):
            x, _ = self._ogm(x, params, n_iter)
            q = self._cg(x, params, (x - truth) / truth.shape[0], q, cg_tol, cg_max_iter)
            frozen = {k: v for k, v in params.items() if k not in parts}

            def gradient_in(learned):
                return self._grad(x, {**frozen, **learned})

            _, pullback = jax.vjp(gradient_in, {k: params[k] for k in parts})
            return jax.tree.map(jnp.negative, pullback(q)[0]), x, q

        def step(state):
            params, x, q, m, v, t = state
            grad, x, q = hypergradient(params, x, q)
            t = t + 1
            m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grad)
            v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grad)
            learned = jax.tree.map(
                lambda p, m, v: p - lr * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + adam_eps),
                {k: params[k] for k in parts},
                m,
                v,
            )
            return {**params, **learned}, x, q, m, v, t

        return jax.jit(step, donate_argnums=0), jax.jit(hypergradient)

    @staticmethod
    def initial_state(params, x, parts=("beta", "filters"), q=None):
        """The step's state at γ = ``params``, lower-level iterate x, CG start q (default 0): fresh
        buffers, since the step donates them."""
        params = {k: jnp.array(v, dtype=jnp.float64, copy=True) for k, v in params.items()}
        x = jnp.array(x, dtype=jnp.float64, copy=True)
        q = jnp.zeros_like(x) if q is None else jnp.array(q, dtype=jnp.float64, copy=True)
        m = {k: jnp.zeros_like(params[k]) for k in parts}
        v = {k: jnp.zeros_like(params[k]) for k in parts}
        return params, x, q, m, v, jnp.asarray(0.0)
