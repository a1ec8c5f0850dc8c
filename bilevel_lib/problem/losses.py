"""Upper-level losses ℓ(γ) = ℓ(x̂(γ)) and their gradients in x (Ch. "Tuning β", "Other losses and inpainting").

A loss is any object with ``value(x)`` (a float) and ``gradient(x)`` (an array of x's shape); the
hypergradient estimators accept any such object.  Three are defined here: the squared error of (Ex),
and two of the alternatives the review's Sec. 3.1 discusses, the Huber loss and 1 − SSIM.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..util.validation import as_float_array, check_choice, check_finite_result, check_flag, positive_scalar

__all__ = ["UpperLoss", "SquaredErrorLoss", "HuberLoss", "SSIMLoss"]


class UpperLoss:
    """Interface of an upper-level loss: ``value(x)`` and ``gradient(x)`` for a batch x (J, …)."""

    def value(self, x) -> float:  # pragma: no cover - interface
        """ℓ(x) for a batch x of shape (J, …) of lower-level solutions, a float."""
        raise TypeError(f"{type(self).__name__} does not define value()")

    def gradient(self, x) -> np.ndarray:  # pragma: no cover - interface
        """∇ₓℓ(x), of x's shape (J, …): the right-hand side of the Hessian system (review eq. 4.10)."""
        raise TypeError(f"{type(self).__name__} does not define gradient()")


class _TruthLoss(UpperLoss):
    """Shared part of the losses against a batch of training images: the checked truth and x."""

    def __init__(self, truth):
        truth = as_float_array(truth, "truth", min_ndim=2)
        if truth.size == 0:
            raise ValueError(f"truth must hold at least one image with at least one sample; got shape {truth.shape}")
        self.truth = truth

    def _check(self, x):
        x = as_float_array(x, "x")
        if x.shape != self.truth.shape:
            raise ValueError(
                f"x must have the shape of the loss's truth (the training images), {self.truth.shape}; got {x.shape}"
            )
        return x


class SquaredErrorLoss(_TruthLoss):
    """ℓ(x̂) = (1/J) Σ_j ½‖x̂_j − x_j^true‖², the loss of (Ex) averaged over J training pairs.

    Its gradient is ∇ₓℓ = (x̂ − x^true)/J (review eq. 4.9, last line, with the 1/J of (1.5)).
    """

    def value(self, x) -> float:
        x = self._check(x)
        with np.errstate(over="ignore"):
            value = float(0.5 * np.sum(np.square(x - self.truth)) / self.truth.shape[0])
        check_finite_result(
            value, "SquaredErrorLoss.value", "½‖x − x^true‖²/J", "it overflows float64 (huge x or truth)"
        )
        return value

    def gradient(self, x) -> np.ndarray:
        x = self._check(x)
        with np.errstate(over="ignore"):
            gradient = (x - self.truth) / self.truth.shape[0]
        check_finite_result(gradient, "SquaredErrorLoss.gradient", "(x − x^true)/J", "it overflows float64")
        return gradient

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant 1/J of ∇ₓℓ (used by error bounds)."""
        return 1.0 / self.truth.shape[0]


class HuberLoss(_TruthLoss):
    """ℓ(x̂) = (1/J) Σ_j Σ_i ρ_δ(x̂_ji − x_ji^true), the pixelwise Huber loss averaged over J pairs.

    ρ_δ(r) = r²/2 for −δ ≤ r ≤ δ and δ(abs(r) − δ/2) beyond: quadratic for small errors (so it equals
    :class:`SquaredErrorLoss` when no error exceeds δ), linear for large ones, which then weigh less.
    One of the upper-level losses of the review's Sec. 3.1; introduced in Ch. "Other losses and
    inpainting".  Its gradient is clip(x̂ − x^true, −δ, δ)/J, Lipschitz with constant 1/J.

    Parameters
    ----------
    truth : array (J, *signal_shape)
        The training images x^true.
    delta : float > 0
        δ, where the loss turns from quadratic to linear (in the images' units).
    """

    def __init__(self, truth, delta):
        super().__init__(truth)
        self.delta = positive_scalar(delta, "delta (δ)")

    def value(self, x) -> float:
        x = self._check(x)
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.abs(x - self.truth)
            rho = np.where(r <= self.delta, 0.5 * r * r, self.delta * (r - 0.5 * self.delta))
            value = float(np.sum(rho) / self.truth.shape[0])
        check_finite_result(value, "HuberLoss.value", "Σ ρ_δ(x − x^true)/J", "it overflows float64 (huge x or truth)")
        return value

    def gradient(self, x) -> np.ndarray:
        x = self._check(x)
        with np.errstate(over="ignore", invalid="ignore"):
            gradient = np.clip(x - self.truth, -self.delta, self.delta) / self.truth.shape[0]
        check_finite_result(gradient, "HuberLoss.gradient", "clip(x − x^true, ±δ)/J", "it overflows float64")
        return gradient

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant 1/J of ∇ₓℓ (used by error bounds)."""
        return 1.0 / self.truth.shape[0]


#: the Gaussian window's radius is int(SSIM_TRUNCATE σ + 0.5) (scikit-image's and scipy's convention)
SSIM_TRUNCATE = 3.5


class SSIMLoss(_TruthLoss):
    """ℓ(x̂) = 1 − (1/J) Σ_j SSIM(x̂_j, x_j^true), one minus the mean structural similarity.

    SSIM at pixel p compares local means μ, variances σ² and the covariance σ_xy, all weighted by a
    window w centred at p: S(p) = (2μ_x μ_y + C1)(2σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)),
    C1 = (k1 R)², C2 = (k2 R)² with R the data range.  SSIM(x, y) is the mean of S over the pixels
    whose window lies inside the image (the border of the window's radius is left out, as
    scikit-image's ``structural_similarity`` does).  One of the upper-level losses of the review's
    Sec. 3.1; introduced in Ch. "Other losses and inpainting".

    The gradient is analytic: with the windowed moments μ_x = w ⋆ x, E_xx = w ⋆ x², E_xy = w ⋆ (x y),
    ∇ₓ mean S = w ⋆ (g ∂S/∂μ_x) + 2x ⊙ (w ⋆ (g ∂S/∂E_xx)) + y ⊙ (w ⋆ (g ∂S/∂E_xy)), g the averaging
    weights (w is symmetric and g vanishes on the border, so the adjoint of the windowing is the
    windowing itself with zero padding).

    Parameters
    ----------
    truth : array (J, *signal_shape)
        The training images x^true (each signal axis at least the window's width).
    data_range : float > 0
        R, the range of the images' values (1 for images in [0, 1]); explicit, never guessed from x.
    window : "gaussian" or "uniform"
        Gaussian weights of standard deviation ``sigma`` (radius int(3.5σ + 0.5)), or a flat window of
        ``win_size`` samples per axis.
    sigma : float > 0
        The Gaussian window's standard deviation (default 1.5, Wang et al.'s choice).
    win_size : odd int ≥ 3
        The uniform window's width (default 7).
    k1, k2 : float > 0
        The constants of C1 and C2 (0.01, 0.03).
    sample_covariance : bool
        Scale the variances and covariance by N/(N − 1), N the window's number of samples (scikit-image's
        ``use_sample_covariance``; default False, as in Wang et al.).
    """

    def __init__(
        self,
        truth,
        data_range,
        *,
        window="gaussian",
        sigma=1.5,
        win_size=7,
        k1=0.01,
        k2=0.03,
        sample_covariance=False,
    ):
        super().__init__(truth)
        self.data_range = positive_scalar(data_range, "data_range")
        self.window = check_choice(window, "window", ("gaussian", "uniform"))
        self.k1 = positive_scalar(k1, "k1")
        self.k2 = positive_scalar(k2, "k2")
        self.sample_covariance = check_flag(sample_covariance, "sample_covariance")
        if self.window == "gaussian":
            self.sigma = positive_scalar(sigma, "sigma (σ)")
            radius = int(SSIM_TRUNCATE * self.sigma + 0.5)
            if radius < 1:
                raise ValueError(f"sigma (σ) must give a window of radius ≥ 1 (σ ≥ 1/7); got {self.sigma:g}")
            t = np.arange(-radius, radius + 1, dtype=np.float64)
            kernel = np.exp(-0.5 * (t / self.sigma) ** 2)
        else:
            if isinstance(win_size, (bool, np.bool_)) or not isinstance(win_size, (int, np.integer)):
                raise TypeError(f"win_size must be an odd integer ≥ 3; got {type(win_size).__name__} {win_size!r}")
            if win_size < 3 or win_size % 2 == 0:
                raise ValueError(f"win_size must be an odd integer ≥ 3; got {win_size}")
            self.win_size = int(win_size)
            radius = self.win_size // 2
            kernel = np.ones(self.win_size)
        self.radius = radius
        self.kernel = kernel / kernel.sum()
        width = 2 * radius + 1
        if any(n < width for n in self.truth.shape[1:]):
            raise ValueError(
                f"truth must have signals at least as wide as the SSIM window ({width} samples) on every axis; "
                f"got shape {self.truth.shape}"
            )
        n_samples = width ** (self.truth.ndim - 1)
        self._cov_norm = n_samples / (n_samples - 1.0) if self.sample_covariance else 1.0
        self._c1 = (self.k1 * self.data_range) ** 2
        self._c2 = (self.k2 * self.data_range) ** 2
        inner = tuple(slice(radius, n - radius) for n in self.truth.shape[1:])
        self._mask = np.zeros(self.truth.shape[1:])
        self._mask[inner] = 1.0
        self._mask /= self._mask.sum()
        self._mu_y = self._window(self.truth)
        self._var_y = self._cov_norm * (self._window(self.truth * self.truth) - self._mu_y**2)

    def _window(self, u):
        """w ⋆ u along every signal axis (zero padding: only the inner pixels are used)."""
        for axis in range(1, u.ndim):
            u = ndimage.correlate1d(u, self.kernel, axis=axis, mode="constant")
        return u

    def _parts(self, x):
        y, mu_y, var_y, cn = self.truth, self._mu_y, self._var_y, self._cov_norm
        mu_x = self._window(x)
        var_x = cn * (self._window(x * x) - mu_x**2)
        cov = cn * (self._window(x * y) - mu_x * mu_y)
        a1, a2 = 2 * mu_x * mu_y + self._c1, 2 * cov + self._c2
        b1, b2 = mu_x**2 + mu_y**2 + self._c1, var_x + var_y + self._c2
        return mu_x, a1, a2, b1, b2

    def ssim(self, x) -> np.ndarray:
        """SSIM(x_j, x_j^true) of each image of the batch x (J, …), an array of J values in [−1, 1]."""
        x = self._check(x)
        with np.errstate(over="ignore", invalid="ignore"):
            _, a1, a2, b1, b2 = self._parts(x)
            s_map = (a1 * a2) / (b1 * b2)
            values = np.sum(s_map * self._mask, axis=tuple(range(1, x.ndim)))
        check_finite_result(values, "SSIMLoss.ssim", "mean SSIM", "it overflows float64 (huge x)")
        return values

    def value(self, x) -> float:
        return float(1.0 - np.mean(self.ssim(x)))

    def gradient(self, x) -> np.ndarray:
        x = self._check(x)
        y, mu_y, cn = self.truth, self._mu_y, self._cov_norm
        with np.errstate(over="ignore", invalid="ignore"):
            mu_x, a1, a2, b1, b2 = self._parts(x)
            s_map = (a1 * a2) / (b1 * b2)
            g = self._mask / x.shape[0]  # d(mean over J and the inner pixels)/dS(p)
            d_mu = (2 * mu_y * a2 - 2 * cn * mu_y * a1) / (b1 * b2) - s_map * (2 * mu_x / b1 - 2 * cn * mu_x / b2)
            d_exx = -s_map * cn / b2
            d_exy = 2 * cn * a1 / (b1 * b2)
            gradient = -(self._window(g * d_mu) + 2 * x * self._window(g * d_exx) + y * self._window(g * d_exy))
        check_finite_result(gradient, "SSIMLoss.gradient", "∇ₓ(1 − mean SSIM)", "it overflows float64 (huge x)")
        return gradient
