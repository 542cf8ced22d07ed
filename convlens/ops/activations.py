"""Activation functions by Keras name, each forward beside its backward.

Every function is elementwise except ``softmax`` and ``log_softmax`` (over ``axis``, the last
by default). Definitions and constants follow Keras 3 (``keras.activations``), and so do the
options some of them take as keyword arguments, with Keras's defaults: ``relu(negative_slope=0,
max_value=None, threshold=0)``, ``leaky_relu(negative_slope=0.2)``, ``elu(alpha=1)``,
``celu(alpha=1)``, ``gelu(approximate=False)`` (the exact erf form; ``True`` is the tanh form),
``softmax(axis=-1)``, ``log_softmax(axis=-1)``, ``hard_shrink(threshold=0.5)``,
``soft_shrink(threshold=0.5)``, ``squareplus(b=4)``. ``hard_sigmoid`` is ``relu6(x + 3) / 6``.
At the kinks the gradient is the one PyTorch uses (``relu'(0) = 0``, ``leaky_relu'(0) = 0.2``,
``relu6'(6) = 0``), so Keras on its torch backend agrees exactly.

A backward function receives ``(x, y, grad_y)`` where ``y`` is the forward output, plus the
same options as the forward, and uses whichever of ``x`` and ``y`` is cheaper. float32 stays
float32 and float64 stays float64; any other input is computed in float32.

>>> import numpy as np
>>> x = np.array([-1.0, 0.0, 2.0], np.float32)
>>> activation_forward("relu", x)
array([0., 0., 2.], dtype=float32)
>>> activation_backward("relu", x, activation_forward("relu", x), np.ones_like(x))
array([0., 0., 1.], dtype=float32)
>>> activation_forward("relu", x, negative_slope=0.5, max_value=1.0)
array([-0.5,  0. ,  1. ], dtype=float32)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np

from convlens.ops.workers import run_elementwise

__all__ = [
    "FORWARD", "BACKWARD", "NAMES", "ALIASES", "OPTIONS", "activation_forward",
    "activation_backward", "prelu_forward", "prelu_backward",
]  # fmt: skip

# Keras's selu constants (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.2
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def _c(x: np.ndarray, value: float):
    """A scalar in ``x``'s dtype, so float32 arithmetic stays float32."""
    return x.dtype.type(value)


# ---------------------------------------------------------------- linear, relu family


def linear(x):
    return x


def linear_grad(x, y, g):
    return g


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0 and max_value is None and threshold == 0:
        zero = _c(x, 0.0)
        return run_elementwise(lambda a, out: np.maximum(a, zero, out=out), np.empty_like(x), x)
    if max_value is None and threshold == 0:
        return leaky_relu(x, negative_slope)
    # Keras's composition: clip(positive part, 0, max_value) - slope * relu(threshold - x)
    positive = np.where(x > threshold, x, _c(x, 0.0)) if threshold != 0 else np.maximum(x, 0)
    if max_value is not None:
        positive = np.clip(positive, _c(x, 0.0), _c(x, max_value))
    if negative_slope == 0:
        return positive
    return positive - _c(x, negative_slope) * np.maximum(_c(x, threshold) - x, _c(x, 0.0))


def relu_grad(x, y, g, negative_slope=0.0, max_value=None, threshold=0.0):
    if negative_slope == 0 and max_value is None and threshold == 0:
        return run_elementwise(
            lambda g, y, out: np.multiply(g, y > 0, out=out), np.empty_like(g), g, y
        )
    if max_value is None and threshold == 0:
        return leaky_relu_grad(x, y, g, negative_slope)
    if threshold != 0:
        positive, slope = np.where(x > threshold, x, 0), x > threshold
    elif max_value == 6:  # Keras calls relu6 here, whose gradient is 0 at 0 and at 6
        positive, slope = np.maximum(x, 0), (x > 0) & (x < 6)
    else:
        positive, slope = np.maximum(x, 0), x > 0
    if max_value is not None and not (threshold == 0 and max_value == 6):
        slope = slope & (positive >= 0) & (positive <= max_value)  # clip passes its ends
    slope = slope.astype(g.dtype)
    if negative_slope != 0:
        slope += _c(g, negative_slope) * (x < threshold)
    return g * slope


def relu6(x):
    y = np.maximum(x, _c(x, 0.0), out=np.empty_like(x))
    return np.minimum(y, _c(x, 6.0), out=y)


def relu6_grad(x, y, g):
    return np.multiply(g, (y > 0) & (y < 6), dtype=g.dtype)


def leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE):
    return np.where(x >= 0, x, x * _c(x, negative_slope))


def leaky_relu_grad(x, y, g, negative_slope=LEAKY_RELU_SLOPE):
    return np.where(x > 0, g, g * _c(g, negative_slope))


def elu(x, alpha=1.0):
    return np.where(x > 0, x, _c(x, alpha) * np.expm1(np.minimum(x, 0)))


def elu_grad(x, y, g, alpha=1.0):
    # for x <= 0: d/dx alpha*(e^x - 1) = alpha*e^x = y + alpha
    return np.where(x > 0, g, g * (y + _c(y, alpha)))


def celu(x, alpha=1.0):
    return np.where(x > 0, x, _c(x, alpha) * np.expm1(np.minimum(x, 0) / _c(x, alpha)))


def celu_grad(x, y, g, alpha=1.0):
    # for x <= 0: d/dx alpha*(e^(x/alpha) - 1) = e^(x/alpha) = y/alpha + 1
    return np.where(x > 0, g, g * (y / _c(y, alpha) + _c(y, 1.0)))


def selu(x):
    negative = _c(x, SELU_SCALE * SELU_ALPHA) * np.expm1(np.minimum(x, 0))
    return np.where(x > 0, x * _c(x, SELU_SCALE), negative)


def selu_grad(x, y, g):
    # for x <= 0: d/dx scale*alpha*(e^x - 1) = y + scale*alpha
    return np.where(x > 0, g * _c(g, SELU_SCALE), g * (y + _c(y, SELU_SCALE * SELU_ALPHA)))


# ---------------------------------------------------------------- gelu (exact, erf form)


_ERFC_COEFFICIENTS = (
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
    0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
)  # fmt: skip


def _erfc(z: np.ndarray) -> np.ndarray:
    """Complementary error function, relative error < 1.2e-7 everywhere.

    Chebyshev fit of Press et al., *Numerical Recipes* (2nd ed.), section 6.2; NumPy has no
    vectorised erf. Relative (not absolute) accuracy keeps gelu's tiny negative tail exact.
    """
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERFC_COEFFICIENTS[1:]):  # Horner: c1 + t*(c2 + t*(...))
        poly = (poly + coefficient) * t
    poly += _ERFC_COEFFICIENTS[0]
    tail = t * np.exp(-a * a + poly)
    return np.where(z >= 0, tail, 2.0 - tail)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = erfc(-x / sqrt 2) / 2, computed in float64 and returned in x's dtype."""
    return (0.5 * _erfc(-x.astype(np.float64) * _SQRT_HALF)).astype(x.dtype)


def gelu(x, approximate=False):
    if approximate:
        inner = _c(x, _SQRT_2_OVER_PI) * (x + _c(x, _GELU_CUBIC) * x * x * x)
        return _c(x, 0.5) * x * (1 + np.tanh(inner))
    return x * _normal_cdf(x)


def gelu_grad(x, y, g, approximate=False):
    if approximate:
        inner = _c(x, _SQRT_2_OVER_PI) * (x + _c(x, _GELU_CUBIC) * x * x * x)
        t = np.tanh(inner)
        d_inner = _c(x, _SQRT_2_OVER_PI) * (1 + _c(x, 3 * _GELU_CUBIC) * x * x)
        return g * (_c(x, 0.5) * (1 + t) + _c(x, 0.5) * x * (1 - t * t) * d_inner)
    # d/dx x*Phi(x) = Phi(x) + x*phi(x)
    density = np.exp(-0.5 * np.square(x)) * _c(x, _INV_SQRT_2PI)
    return g * (_normal_cdf(x) + x * density)


# ---------------------------------------------------------------- sigmoid family


def sigmoid(x):
    # exp of -|x| only, so nothing overflows and tiny outputs keep their relative precision
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_grad(x, y, g):
    return g * y * (1 - y)


def hard_sigmoid(x):
    return relu6(x + _c(x, 3.0)) * _c(x, 1.0 / 6.0)


def hard_sigmoid_grad(x, y, g):
    return np.where((x > -3) & (x < 3), g * _c(g, 1.0 / 6.0), _c(g, 0.0))


def hard_silu(x):
    return x * hard_sigmoid(x)


def hard_silu_grad(x, y, g):
    # x/3 + 1/2 strictly inside (-3, 3); 0 at and below -3; 1 at and above 3 (as Keras on torch)
    inside = x * _c(x, 1.0 / 3.0) + _c(x, 0.5)
    slope = np.where(x <= -3, _c(x, 0.0), np.where(x >= 3, _c(x, 1.0), inside))
    return g * slope


def sparse_sigmoid(x):
    return np.clip(_c(x, 0.5) * (x + 1), _c(x, 0.0), _c(x, 1.0))


def sparse_sigmoid_grad(x, y, g):
    return np.where((x > -1) & (x < 1), g * _c(g, 0.5), _c(g, 0.0))


def hard_tanh(x):
    return np.clip(x, _c(x, -1.0), _c(x, 1.0))


def hard_tanh_grad(x, y, g):
    return np.where((x > -1) & (x < 1), g, _c(g, 0.0))


def hard_shrink(x, threshold=0.5):
    return np.where(np.abs(x) > threshold, x, _c(x, 0.0))


def hard_shrink_grad(x, y, g, threshold=0.5):
    return np.where(np.abs(x) > threshold, g, _c(g, 0.0))


def soft_shrink(x, threshold=0.5):
    shrunk = x - np.sign(x) * _c(x, threshold)
    return np.where(np.abs(x) > threshold, shrunk, _c(x, 0.0))


def soft_shrink_grad(x, y, g, threshold=0.5):
    return np.where(np.abs(x) > threshold, g, _c(g, 0.0))


def sparse_plus(x):
    middle = _c(x, 0.25) * np.square(x + 1)
    return np.where(x <= -1, _c(x, 0.0), np.where(x < 1, middle, x))


def sparse_plus_grad(x, y, g):
    return np.where(x <= -1, _c(g, 0.0), np.where(x < 1, g * _c(g, 0.5) * (x + 1), g))


def silu(x):
    return x * sigmoid(x)


def silu_grad(x, y, g):
    s = sigmoid(x)
    return g * s * (1 + x * (1 - s))


def log_sigmoid(x):
    return -softplus(-x)


def log_sigmoid_grad(x, y, g):
    return g * sigmoid(-x)


# ---------------------------------------------------------------- tanh, softplus, softsign


def tanh(x):
    return np.tanh(x)


def tanh_grad(x, y, g):
    return g * (1 - y * y)


def softplus(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), without overflow
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def softplus_grad(x, y, g):
    return g * sigmoid(x)


def softsign(x):
    return x / (1 + np.abs(x))


def softsign_grad(x, y, g):
    return g / np.square(1 + np.abs(x))


def tanh_shrink(x):
    return x - np.tanh(x)


def tanh_shrink_grad(x, y, g):
    t = np.tanh(x)
    return g * t * t


def squareplus(x, b=4):
    return _c(x, 0.5) * (x + np.sqrt(x * x + _c(x, b)))


def squareplus_grad(x, y, g, b=4):
    return g * _c(g, 0.5) * (1 + x / np.sqrt(x * x + _c(x, b)))


def exponential(x):
    return np.exp(x)


def exponential_grad(x, y, g):
    return g * y


def mish(x):
    return x * np.tanh(softplus(x))


def mish_grad(x, y, g):
    t = np.tanh(softplus(x))
    # d/dx x*tanh(sp(x)) = tanh(sp) + x * (1 - tanh(sp)^2) * sigmoid(x)
    return g * (t + x * (1 - t * t) * sigmoid(x))


# ---------------------------------------------------------------- softmax (over an axis)


def _axis(axis):
    """Keras takes one axis or a tuple of them; NumPy reductions take both as they are."""
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def softmax(x, axis=-1):
    axis = _axis(axis)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_grad(x, y, g, axis=-1):
    # J^T g = y * (g - <g, y>) along the axis
    return y * (g - np.sum(g * y, axis=_axis(axis), keepdims=True))


def log_softmax(x, axis=-1):
    axis = _axis(axis)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_grad(x, y, g, axis=-1):
    return g - np.exp(y) * np.sum(g, axis=_axis(axis), keepdims=True)


# ---------------------------------------------------------------- prelu (a learned slope)


def prelu_forward(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Keras's PReLU: ``relu(x) - alpha * relu(-x)``; ``alpha`` broadcasts against one sample.

    ``x`` is ``(N, *dims)``; ``alpha`` is ``dims`` with 1 on each shared axis.
    """
    zero = _c(x, 0.0)
    return np.maximum(x, zero) - alpha * np.maximum(-x, zero)


def prelu_backward(x: np.ndarray, alpha: np.ndarray, grad_y: np.ndarray):
    """``(grad_x, grad_alpha)``; ``grad_alpha`` is summed over the batch and the shared axes.

    Both relus have gradient 0 at 0, so (as in Keras on torch) ``grad_x`` is 0 where ``x == 0``.
    """
    grad_x = grad_y * ((x > 0) + alpha * (x < 0))
    per_value = grad_y * np.minimum(x, _c(x, 0.0))  # d y / d alpha = -relu(-x) = min(x, 0)
    # (N, *dims) -> alpha's shape: sum the batch, then every axis where alpha has size 1
    shared = tuple(i + 1 for i, size in enumerate(alpha.shape) if size == 1 and x.shape[i + 1] != 1)
    grad_alpha = per_value.sum(axis=(0, *shared), keepdims=True)[0]
    return grad_x.astype(grad_y.dtype, copy=False), grad_alpha.astype(alpha.dtype, copy=False)


# ---------------------------------------------------------------- registry

_PAIRS: dict[str, tuple[Callable, Callable]] = {
    "linear": (linear, linear_grad),
    "relu": (relu, relu_grad),
    "relu6": (relu6, relu6_grad),
    "leaky_relu": (leaky_relu, leaky_relu_grad),
    "elu": (elu, elu_grad),
    "celu": (celu, celu_grad),
    "selu": (selu, selu_grad),
    "gelu": (gelu, gelu_grad),
    "sigmoid": (sigmoid, sigmoid_grad),
    "hard_sigmoid": (hard_sigmoid, hard_sigmoid_grad),
    "hard_silu": (hard_silu, hard_silu_grad),
    "sparse_sigmoid": (sparse_sigmoid, sparse_sigmoid_grad),
    "hard_tanh": (hard_tanh, hard_tanh_grad),
    "hard_shrink": (hard_shrink, hard_shrink_grad),
    "soft_shrink": (soft_shrink, soft_shrink_grad),
    "sparse_plus": (sparse_plus, sparse_plus_grad),
    "silu": (silu, silu_grad),
    "log_sigmoid": (log_sigmoid, log_sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "softmax": (softmax, softmax_grad),
    "log_softmax": (log_softmax, log_softmax_grad),
    "softplus": (softplus, softplus_grad),
    "softsign": (softsign, softsign_grad),
    "exponential": (exponential, exponential_grad),
    "mish": (mish, mish_grad),
    "tanh_shrink": (tanh_shrink, tanh_shrink_grad),
    "squareplus": (squareplus, squareplus_grad),
}

#: Other Keras names for the same function.
ALIASES: dict[str, str] = {"swish": "silu", "hard_swish": "hard_silu"}

FORWARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    name: pair[0] for name, pair in _PAIRS.items()
}
BACKWARD: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    name: pair[1] for name, pair in _PAIRS.items()
}
for _alias, _target in ALIASES.items():
    FORWARD[_alias] = FORWARD[_target]
    BACKWARD[_alias] = BACKWARD[_target]

NAMES: tuple[str, ...] = tuple(FORWARD)

#: The keyword options each activation takes, with Keras's defaults.
OPTIONS: dict[str, dict[str, object]] = {
    name: {
        p.name: p.default
        for p in list(inspect.signature(forward).parameters.values())[1:]
    }
    for name, forward in FORWARD.items()
}


def _lookup(name: str, options: dict) -> str:
    if name not in FORWARD:
        raise ValueError(f"Unknown activation: {name!r}. Allowed names: {', '.join(NAMES)}.")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        allowed = ", ".join(OPTIONS[name]) or "none"
        raise ValueError(
            f"The activation {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are: {allowed}."
        )
    return name


def _as_float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def activation_forward(name: str, x: np.ndarray, **options) -> np.ndarray:
    """``y = name(x, **options)``, same shape and float dtype as ``x``."""
    x = _as_float(x)
    return np.asarray(FORWARD[_lookup(name, options)](x, **options), dtype=x.dtype)


def activation_backward(
    name: str, x: np.ndarray, y: np.ndarray, grad_y: np.ndarray, **options
) -> np.ndarray:
    """``grad_x = grad_y * dy/dx`` (softmax/log_softmax: the vector-Jacobian product)."""
    grad_y = _as_float(grad_y)
    x = _as_float(x).astype(grad_y.dtype, copy=False)
    y = _as_float(y).astype(grad_y.dtype, copy=False)
    backward = BACKWARD[_lookup(name, options)]
    return np.asarray(backward(x, y, grad_y, **options), dtype=grad_y.dtype)
