"""The lower-level cost Φ(x; γ) of the running example (Ex) and its derivatives.

    Φ(x; γ) = ½‖A x − y‖² + e^{β0} Σ_k e^{β_k} 1'φ.(c_k ⊛ x; ε)                        (Ex)

For a batch of J training pairs Φ is the sum of J independent costs, one per image; every method
works on the whole batch at once (leading axis J) and never loops over images or pixels.

Derivatives (review eq. 4.9, 4.11 and App. C.1), with z_k = c_k ⊛ x and w_k = e^{β0+β_k}:

* gradient            ∇ₓΦ = A'(Ax − y) + Σ_k w_k c̃_k ⊛ φ̇.(z_k)
* Hessian-vector      ∇ₓₓΦ v = A'A v + Σ_k w_k C_k' (φ̈.(z_k) ⊙ C_k v)                   (4.11)
* mixed products      (∇ₓγΦ)' v, i.e. the gradient in γ of ⟨v, ∇ₓΦ(x; γ)⟩:
    β0:      Σ_k w_k ⟨C_k v, φ̇.(z_k)⟩
    β_k:     w_k ⟨C_k v, φ̇.(z_k)⟩
    c_{k,s}: w_k ( Σ_i φ̇(z_k)_i v_{i+s} + Σ_i (φ̈.(z_k) ⊙ C_k v)_i x_{i+s} )            (C.1)
* Lipschitz bound     L = σ₁(A)² + e^{β0} L_φ̇ Σ_k e^{β_k} ‖c_k‖₁²                       (4.19)

Introduced in the chapter "The running example"; the implicit-differentiation chapter uses the
Hessian-vector and mixed products.  :meth:`~bilevel_lib.problem.cost.LowerLevelCost.hessian_operator` returns the Hessian
at one point as a :class:`HessianOperator` for conjugate gradient on eq. 4.10; on small images it
assembles the Hessian once as a stencil, whose (compiled) products are many times cheaper.
"""

from __future__ import annotations

import math

import numpy as np

from ..util.validation import as_float_array, check_finite_result
from .forward_models import ForwardModel, Identity, PixelMask
from .ops import FilterBankOperator, _check_filters_fit
from .params import Hyperparameters, check_parts
from .penalties import CornerRounded1Norm, Penalty

__all__ = ["LowerLevelCost", "HessianOperator", "SPARSE_HESSIAN_MAX_WORK"]


class LowerLevelCost:
    """Φ(x; γ) for a batch of J measurements ``y`` of shape ``(J, *signal_shape)``.

    Parameters
    ----------
    y : array, shape ``(J, *signal_shape)``
        Measurements, one per training pair (use ``y[None]`` for a single signal).
    penalty : Penalty, default CornerRounded1Norm(eps=0.01)
        The sparsifying function φ with its ε.
    forward_model : ForwardModel, default Identity()
        The system matrix A; its measurements have the signal's shape.

    Notes
    -----
    The FFTs of the filters are cached for the last γ seen, so repeated calls at one γ (as in a
    lower-level solve) cost only the transforms of x.
    """

    def __init__(self, y, penalty: Penalty | None = None, forward_model: ForwardModel | None = None):
        y = as_float_array(y, "y", min_ndim=2)
        if y.size == 0:
            raise ValueError(f"y must hold at least one signal with at least one sample; got shape {y.shape}")
        penalty = CornerRounded1Norm() if penalty is None else penalty
        forward_model = Identity() if forward_model is None else forward_model
        if not isinstance(penalty, Penalty):
            raise TypeError(f"penalty must be a bilevel_lib.problem.penalties.Penalty; got {type(penalty).__name__}")
        if not isinstance(forward_model, ForwardModel):
            raise TypeError(f"forward_model must be a ForwardModel; got {type(forward_model).__name__}")
        signal_shape = y.shape[1:]
        model_shape = getattr(forward_model, "signal_shape", None)
        if model_shape is not None and tuple(model_shape) != signal_shape:
            raise ValueError(f"y must have shape (J, *{tuple(model_shape)}) to match the forward model; got {y.shape}")
        self.y = y
        self.penalty = penalty
        self.forward_model = forward_model
        self.signal_shape = signal_shape
        self._cached_filters: np.ndarray | None = None
        self._cached_operator: FilterBankOperator | None = None
        self._curvature_scratch: np.ndarray | None = None  # see _hessian_operator(scratch=True)

    # ----------------------------------------------------------------- helpers
    @property
    def n_images(self) -> int:
        """J, the number of training pairs in the batch."""
        return self.y.shape[0]

    @property
    def n_pixels(self) -> int:
        """N, the number of unknowns per image."""
        return math.prod(self.signal_shape)

    def operator(self, params: Hyperparameters) -> FilterBankOperator:
        """The filter bank C for ``params.filters`` (cached for the last filters used)."""
        if not isinstance(params, Hyperparameters):
            raise TypeError(f"params must be a Hyperparameters instance; got {type(params).__name__}")
        filters = params.filters
        if (
            self._cached_filters is None
            or self._cached_filters.shape != filters.shape
            or not np.array_equal(self._cached_filters, filters)
        ):
            self._cached_operator = FilterBankOperator(filters, self.signal_shape)
            self._cached_filters = filters.copy()
        return self._cached_operator

    def check_x(self, x, name="x") -> np.ndarray:
        """Return ``x`` as a float array after checking it has the shape of the data ``y``.

        Parameters
        ----------
        x : array_like, shape ``(J, *signal_shape)``
            A batch of J signals, one per training pair.
        name : str, optional
            The name used for ``x`` in the error message.

        Returns
        -------
        numpy.ndarray, shape ``(J, *signal_shape)``
            ``x`` as a ``float64`` array.

        Raises
        ------
        ValueError
            If the shape of ``x`` is not ``y.shape`` or ``x`` has a NaN or infinite entry.
        TypeError
            If ``x`` is not real (complex, bool, object or string data).
        """
        x = as_float_array(x, name)
        if x.shape != self.y.shape:
            raise ValueError(f"{name} must have the shape of y, (J, *signal_shape) = {self.y.shape}; got {x.shape}")
        return x

    def _filter_responses(self, x, params):
        op = self.operator(params)
        return op, op.forward(x)

    # ------------------------------------------------------------- the cost
    def value(self, x, params: Hyperparameters) -> np.ndarray:
        """Φ(x_j; γ) for each image, shape (J,)."""
        x = self.check_x(x)
        strengths = params.strengths if isinstance(params, Hyperparameters) else None
        _, z = self._filter_responses(x, params)
        axes = tuple(range(1, x.ndim))
        with np.errstate(over="ignore", invalid="ignore"):
            data_fit = 0.5 * np.sum(np.square(self.forward_model._forward(x) - self.y), axis=axes)
            penalty_sums = np.sum(self.penalty.value(z), axis=tuple(range(2, z.ndim)))  # (J, K)
            value = data_fit + penalty_sums @ strengths
        check_finite_result(value, "LowerLevelCost.value", "Φ(x; γ)", "it overflows float64 (huge x, y or strengths)")
        return value

    def gradient(self, x, params: Hyperparameters) -> np.ndarray:
        """∇ₓΦ(x; γ), shape ``(J, *signal_shape)`` (review eq. 4.9, first line)."""
        with np.errstate(over="ignore", invalid="ignore"):
            gradient = self._gradient(self.check_x(x), params)
        check_finite_result(
            gradient, "LowerLevelCost.gradient", "∇ₓΦ(x; γ)", "it overflows float64 (huge x, y or strengths)"
        )
        return gradient

    def _gradient(self, x: np.ndarray, params: Hyperparameters) -> np.ndarray:
        """:meth:`gradient` without the checks of x, for solvers that validated their start once."""
        op = self.operator(params)
        data_grad = self.forward_model._adjoint(self.forward_model._forward(x) - self.y)
        data_grad += self.penalty._gradient_term(op, x, params.strengths)
        return data_grad

    def gradient_norm(self, x, params: Hyperparameters) -> np.ndarray:
        """‖∇ₓΦ(x_j; γ)‖₂ / √N for each image, shape (J,): the review's convergence measure."""
        g = self.gradient(x, params)
        return np.sqrt(np.sum(np.square(g), axis=tuple(range(1, g.ndim))) / self.n_pixels)

    def hessian_vector_product(self, x, params: Hyperparameters, v) -> np.ndarray:
        """∇ₓₓΦ(x; γ) v for a batch of vectors v of x's shape (review eq. 4.11)."""
        return self.hessian_operator(x, params, method="implicit")(v)

    def hessian_operator(self, x, params: Hyperparameters, *, method: str = "auto") -> HessianOperator:
        """The Hessian ∇ₓₓΦ(x; γ) of review eq. 4.10 as a callable v -> ∇ₓₓΦ v, for conjugate gradient.

        φ̈.(C x) is computed once and reused by every product.  ``method`` picks how products are
        formed: "implicit" (through the filter bank, eq. 4.11), "stencil" (the Hessian assembled
        once as a stencil, compiled products), "sparse" (assembled as a scipy sparse matrix) or
        "auto"; see :class:`HessianOperator`.
        """
        return self._hessian_operator(self.check_x(x), params, method)

    def _hessian_operator(
        self, x: np.ndarray, params: Hyperparameters, method: str = "auto", scratch: bool = False
    ) -> HessianOperator:
        """:meth:`hessian_operator` at an x this library checked or computed (no second check of x).

        ``scratch=True`` is for callers that drop the operator before they call this again, as
        :func:`~bilevel_lib.hypergrad.implicit.implicit_step` does: φ̈.(C x) then goes into one work
        array kept by this cost, not a new one each time (48 filters on 3 × 50×50: 2.9 MB, whose
        fresh pages cost about as much as computing φ̈; measured 1.0 against 2.1 ms per set-up).
        """
        op = self.operator(params)
        if not scratch or op.method == "fft":
            return HessianOperator(self, op, self.penalty.second_derivative(op.forward(x)), params.strengths, method)
        z = op._responses(x)  # (K, J·N), a work array of the filter bank
        if self._curvature_scratch is None or self._curvature_scratch.shape != z.shape:
            self._curvature_scratch = np.empty(z.shape)
        curvature = self.penalty.second_derivative(z, out=self._curvature_scratch)
        return HessianOperator(self, op, op._to_public(curvature, x.shape[:1]), params.strengths, method)

    def mixed_transpose(self, x, params: Hyperparameters, v, parts=None) -> Hyperparameters:
        """(∇ₓγΦ(x; γ))' v summed over the batch: the γ-gradient of
        ⟨v, ∇ₓΦ(x; γ)⟩.

        Returns a :class:`~bilevel_lib.problem.params.Hyperparameters`
        holding the derivative for β0, every β_k and every filter tap
        c_{k,s} (review eq. 4.9 and App. C.1).  ``parts`` (default: all)
        names the parts wanted: without "filters" the filter part is not
        computed (it costs about twice the β part) and is returned as zeros.
        """
        parts = None if parts is None else check_parts(parts)
        return self._mixed_transpose(self.check_x(x), params, self.check_x(v, "v"), parts)

    def _mixed_transpose(
        self,
        x: np.ndarray,
        params: Hyperparameters,
        v: np.ndarray,
        parts=None,
    ) -> Hyperparameters:
        """:meth:`mixed_transpose` for an x and v the library has checked
        or computed (no second check): the pieces of review eq. 4.9."""
        op = self.operator(params)
        weights = params.strengths
        dphi, ddphi = self.penalty.derivative, self.penalty.second_derivative
        factors = self.penalty._mixed_factors
        with_taps = parts is None or "filters" in parts  # else zeros below
        per_filter, taps = op.mixed_terms(x, v, dphi, ddphi, factors, with_taps)
        d_beta = weights * per_filter
        if with_taps:
            d_filters = taps * weights.reshape((-1,) + (1,) * (taps.ndim - 1))
        else:  # not asked for (parts), so not computed
            d_filters = np.zeros_like(params.filters)
        check_finite_result(
            np.append(d_beta, d_filters.ravel()),
            "LowerLevelCost.mixed_transpose",
            "the mixed product (∇ₓγΦ)'v",
            "v or x has entries too large for float64",
        )
        d_beta0 = float(d_beta.sum())
        return Hyperparameters(beta0=d_beta0, beta=d_beta, filters=d_filters)

    def lipschitz(self, params: Hyperparameters) -> float:
        """L = σ₁(A)² + e^{β0} L_φ̇ Σ_k e^{β_k} ‖c_k‖₁², a Lipschitz constant of ∇ₓΦ (review eq. 4.19)."""
        if not isinstance(params, Hyperparameters):
            raise TypeError(f"params must be a Hyperparameters instance; got {type(params).__name__}")
        try:
            _check_filters_fit(params.filters, self.signal_shape)
        except ValueError as error:
            raise ValueError(f"params must have filters for the signals of this cost: {error}") from None
        l1 = np.sum(np.abs(params.filters.reshape(params.n_filters, -1)), axis=1)
        with np.errstate(over="ignore"):
            lipschitz = float(
                self.forward_model.sigma1_squared + self.penalty.lipschitz * np.sum(params.strengths * l1**2)
            )
        check_finite_result(
            lipschitz, "LowerLevelCost.lipschitz", "L = σ₁² + e^{β0} L_φ̇ Σ_k e^{β_k} ‖c_k‖₁²", "overflow"
        )
        return lipschitz


#: ``hessian_operator(method="auto")`` assembles the Hessian (as a stencil, or a sparse matrix for
#: signals of more than two dimensions) when that takes at most this many multiply-adds, i.e. when
#: it pays for itself within a few products (measured, one core, with the sparse matrix: 32×32 with
#: four 3×3 filters, 0.9M: assembled in 0.1–0.2 ms, the time of 1–2 implicit products, then each
#: product is 6–8× faster; 64×64 with eight 3×3 filters, 7M: break-even after ~5 products; 128×128
#: with eight 3×3, 28M, or 32×32 with 24 5×5 filters, 48M: after 15–20).  The compiled stencil
#: products are 2–3× cheaper again, so the bound is on the safe side; it also caps the memory of
#: the stencil, (2f − 1)^d weights per pixel.
SPARSE_HESSIAN_MAX_WORK = 2**23


def _diagonal_gram(forward_model: ForwardModel):
    """A'A as a scalar or an array when it is diagonal (denoising, inpainting), else None."""
    if isinstance(forward_model, Identity):
        return 1.0
    if isinstance(forward_model, PixelMask):
        return forward_model.mask  # A'A = diag(mask) for a 0/1 mask
    return None


class HessianOperator:
    """∇ₓₓΦ(x; γ) at fixed x and γ, the matrix of the system ∇ₓₓΦ q = ∇ₓℓ (review eq. 4.10):

        ∇ₓₓΦ = A'A + Σ_k w_k C_k' diag(φ̈.(C_k x)) C_k,      w_k = e^{β0+β_k},

    as a callable ``v -> ∇ₓₓΦ v`` on batches of x's shape ``(J, *signal)``, block diagonal over the
    J images.  Build it with :meth:`~bilevel_lib.problem.cost.LowerLevelCost.hessian_operator`.  Three ways to multiply:

    * ``"implicit"``: through the filter bank every time (eq. 4.11): two passes over the K
      filters, about 2KSN multiply-adds for S-tap filters, nothing stored;
    * ``"stencil"``: the filter term (and A'A when it is diagonal: denoising, inpainting) is
      assembled once as a (2f − 1)^d-point stencil with one weight per offset and pixel, whatever
      K is (:meth:`~bilevel_lib.problem.ops.FilterBankOperator.scaled_gram_stencil`), and each product is one compiled pass
      (:mod:`bilevel_lib.problem.stencil`, 1-D and 2-D signals); :func:`~bilevel_lib.solvers.cg.conjugate_gradient`
      then also runs its whole loop compiled (:attr:`compiled_cg`);
    * ``"sparse"``: the same stencil as a scipy sparse matrix (:attr:`matrix`), one sparse
      matrix-vector product each (plus A'A v for other models).

    Assembling costs about (2f − 1)^d·K·S·N multiply-adds, paid once.  ``"auto"`` assembles when
    that work is at most :data:`SPARSE_HESSIAN_MAX_WORK`: small images and small filters, where
    each implicit product is dominated by Python overhead (32×32 with four 3×3 filters: ~0.12 ms
    implicit, ~0.015 ms sparse, ~0.008 ms stencil) and a conjugate-gradient solve needs tens of
    products; it picks "stencil" for 1-D and 2-D signals, "sparse" otherwise.  Large problems
    (e.g. 256×256 with 48 7×7 filters) stay implicit: there assembly would cost as much as tens
    of products, and hundreds of MB.  The three methods agree to rounding error (about 1e-15
    relative).

    Attributes
    ----------
    method : str
        "implicit", "stencil" or "sparse" (after resolving "auto")
    shape : tuple
        ``(J, *signal)``, the shape of the vectors it acts on
    filter_bank : FilterBankOperator
        the filters c_k
    weights : array (K,)
        w_k = e^{β0+β_k}
    curvature : array ``(J, K, *signal)``
        φ̈.(C_k x)
    forward_model : ForwardModel
        A
    """

    def __init__(
        self,
        cost: LowerLevelCost,
        filter_bank: FilterBankOperator,
        curvature: np.ndarray,
        weights: np.ndarray,
        method: str = "auto",
    ):
        if method not in ("auto", "implicit", "stencil", "sparse"):
            raise ValueError(f"method must be 'auto', 'implicit', 'stencil' or 'sparse'; got {method!r}")
        if not isinstance(cost, LowerLevelCost):
            raise TypeError(f"cost must be a LowerLevelCost; got {type(cost).__name__}")
        if not isinstance(filter_bank, FilterBankOperator):
            raise TypeError(f"filter_bank must be a FilterBankOperator; got {type(filter_bank).__name__}")
        if tuple(filter_bank.signal_shape) != tuple(cost.signal_shape):
            raise ValueError(
                f"filter_bank must act on the signals of cost, {tuple(cost.signal_shape)}; "
                f"got one for {tuple(filter_bank.signal_shape)}"
            )
        k = filter_bank.n_filters
        curvature = as_float_array(curvature, "curvature", shape=(cost.y.shape[0], k, *cost.signal_shape))
        weights = as_float_array(weights, "weights", shape=(k,))
        self._check = cost.check_x
        self.shape = cost.y.shape
        self.filter_bank, self.curvature, self.weights = filter_bank, curvature, weights
        self.forward_model = cost.forward_model
        compilable = filter_bank.ndim <= 2
        if method == "stencil" and not compilable:
            raise ValueError(f"method 'stencil' needs 1-D or 2-D signals; got {filter_bank.ndim}-D ones (use 'sparse')")
        if method == "auto":
            if self.assembly_work > SPARSE_HESSIAN_MAX_WORK:
                method = "implicit"
            else:
                method = "stencil" if compilable else "sparse"
        self.method = method
        self._diagonal_gram = _diagonal_gram(self.forward_model)
        self._matrix = self._stencil = self._row_padded = None

    @property
    def assembly_work(self) -> int:
        """Multiply-adds to assemble :attr:`stencil`: (2f − 1)^d · K · S per pixel of the batch."""
        bank = self.filter_bank
        return math.prod(bank.stencil_shape) * bank.n_filters * math.prod(bank.filter_shape) * math.prod(self.shape)

    @property
    def matrix_is_hessian(self) -> bool:
        """Whether :attr:`stencil` and :attr:`matrix` hold the whole Hessian (A'A diagonal) or only its filter term."""
        return self._diagonal_gram is not None

    @property
    def stencil(self) -> np.ndarray:
        """The Hessian's stencil weights, shape ``(J, *stencil_shape, *signal)``
        (:meth:`~bilevel_lib.problem.ops.FilterBankOperator.scaled_gram_stencil`): the filter term, plus A'A when A'A is
        diagonal (see :attr:`matrix_is_hessian`).  Assembled on first use, whatever ``method`` is."""
        if self._stencil is None:
            self._stencil = self.filter_bank.scaled_gram_stencil(
                self.curvature, weights=self.weights, diagonal=self._diagonal_gram
            )
        return self._stencil

    @property
    def matrix(self):
        """The Hessian assembled as a sparse (J·N)×(J·N) matrix, block diagonal over the images, rows in
        C order: the filter term, plus A'A when A'A is diagonal (see :attr:`matrix_is_hessian`).
        Assembled on first use, whatever ``method`` is."""
        if self._matrix is None:
            self._matrix = self.filter_bank.scaled_gram_matrix(
                self.curvature, weights=self.weights, diagonal=self._diagonal_gram
            )
        return self._matrix

    def _compiled_weights(self) -> np.ndarray:
        """:attr:`stencil` in the layout of the compiled kernels (:func:`bilevel_lib.problem.stencil.row_padded`)."""
        if self._row_padded is None:
            from .stencil import row_padded

            self._row_padded = row_padded(self.stencil, self.filter_bank.ndim)
        return self._row_padded

    @staticmethod
    def _compiled_view(v: np.ndarray) -> np.ndarray:
        """v of shape ``(J, *signal)`` as the (J, n0, n1) array the compiled kernels take (a view)."""
        return v.reshape(v.shape[:1] + (1,) * (3 - v.ndim) + v.shape[1:])

    @property
    def compiled_cg(self):
        """With method "stencil" and a diagonal A'A, ``loop(x, r, limit, max_iter) -> (iterations,
        squared residual norms)``, conjugate gradient's iteration loop compiled
        (:func:`bilevel_lib.problem.stencil.cg_loop`; x and r of shape ``(J, *signal)``, updated in place);
        otherwise None.  Used by :func:`~bilevel_lib.solvers.cg.conjugate_gradient`."""
        if self.method != "stencil" or not self.matrix_is_hessian:
            return None
        from .stencil import cg_loop

        weights = self._compiled_weights()

        def loop(x, r, limit, max_iter):
            for name, array in (("x", x), ("r", r)):  # the kernel trusts its shapes: check them here
                if array.shape != self.shape or array.dtype != np.float64 or not array.flags.c_contiguous:
                    raise ValueError(
                        f"{name} must be a C-contiguous float64 array of the Hessian's shape "
                        f"{self.shape}; got {array.dtype} {array.shape}"
                    )
            return cg_loop(
                weights,
                self._compiled_view(x),
                self._compiled_view(r),
                np.asarray(limit, dtype=np.float64),
                int(max_iter),
            )

        return loop

    def __call__(self, v) -> np.ndarray:
        v = self._check(v, "v")
        if self.method == "stencil":
            from .stencil import stencil_product

            result = np.empty(v.shape)
            stencil_product(
                self._compiled_weights(), self._compiled_view(np.ascontiguousarray(v)), self._compiled_view(result)
            )
        elif self.method == "sparse":
            result = (self.matrix @ v.reshape(-1)).reshape(v.shape)
        else:
            return self.forward_model._gram(v) + self.filter_bank.adjoint_of_scaled(
                v, self.curvature, weights=self.weights
            )
        if self._diagonal_gram is None:
            result += self.forward_model._gram(v)
        return result
