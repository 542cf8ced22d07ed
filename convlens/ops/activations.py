"""Activation functions by Keras name, each forward beside its backward.

Every function is elementwise except ``softmax`` and ``log_softmax`` (over the last axis).
Definitions and constants follow Keras 3 (``keras.activations``) with their default
arguments: ``leaky_relu`` has ``negative_slope=0.2``, ``gelu`` is the exact erf form
(``approximate=False``), ``hard_sigmoid`` is ``relu6(x + 3) / 6``. At the kinks the gradient is
the one PyTorch uses (``relu'(0) = 0``, ``leaky_relu'(0) = 0.2``, ``relu6'(6) = 0``).

A backward function receives ``(x, y, grad_y)`` where ``y`` is the forward output, and uses
whichever is cheaper. float32 stays float32 and float64 stays float64; any other input is
computed in float32.

>>> import numpy as np
>>> x = np.array([-1.0, 0.0, 2.0], np.float32)
>>> activation_forward("relu", x)
array([0., 0., 2.], dtype=float32)
>>> activation_backward("relu", x, activation_forward("relu", x), np.ones_like(x))
array([0., 0., 1.], dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["FORWARD", "BACKWARD", "NAMES", "ALIASES", "activation_forward", "activation_backward"]

# Keras's selu constants (Klambauer et al., 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.2
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _c(x: np.ndarray, value: float):
    """A scalar in ``x``'s dtype, so float32 arithmetic stays float32."""
    return x.dtype.type(value)


# ---------------------------------------------------------------- linear, relu family


def linear(x):
    return x


def linear_grad(x, y, g):
    return g


def relu(x):
    return np.maximum(x, _c(x, 0.0), out=np.empty_like(x))


def relu_grad(x, y, g):
    return np.multiply(g, y > 0, dtype=g.dtype)


def relu6(x):
    y = np.maximum(x, _c(x, 0.0), out=np.empty_like(x))
    return np.minimum(y, _c(x, 6.0), out=y)


def relu6_grad(x, y, g):
    return np.multiply(g, (y > 0) & (y < 6), dtype=g.dtype)


def leaky_relu(x):
    return np.where(x >= 0, x, x * _c(x, LEAKY_RELU_SLOPE))


def leaky_relu_grad(x, y, g):
    return np.where(x > 0, g, g * _c(g, LEAKY_RELU_SLOPE))


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def elu_grad(x, y, g):
    # for x <= 0: d/dx (e^x - 1) = e^x = y + 1
    return np.where(x > 0, g, g * (y + _c(y, 1.0)))


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


def gelu(x):
    return x * _normal_cdf(x)


def gelu_grad(x, y, g):
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


# ---------------------------------------------------------------- softmax (last axis)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def softmax_grad(x, y, g):
    # J^T g = y * (g - <g, y>) per row
    return y * (g - np.sum(g * y, axis=-1, keepdims=True))


def log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_grad(x, y, g):
    return g - np.exp(y) * np.sum(g, axis=-1, keepdims=True)


# ---------------------------------------------------------------- registry

_PAIRS: dict[str, tuple[Callable, Callable]] = {
    "linear": (linear, linear_grad),
    "relu": (relu, relu_grad),
    "relu6": (relu6, relu6_grad),
    "leaky_relu": (leaky_relu, leaky_relu_grad),
    "elu": (elu, elu_grad),
    "selu": (selu, selu_grad),
    "gelu": (gelu, gelu_grad),
    "sigmoid": (sigmoid, sigmoid_grad),
    "hard_sigmoid": (hard_sigmoid, hard_sigmoid_grad),
    "hard_silu": (hard_silu, hard_silu_grad),
    "silu": (silu, silu_grad),
    "log_sigmoid": (log_sigmoid, log_sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "softmax": (softmax, softmax_grad),
    "log_softmax": (log_softmax, log_softmax_grad),
    "softplus": (softplus, softplus_grad),
    "softsign": (softsign, softsign_grad),
    "exponential": (exponential, exponential_grad),
    "mish": (mish, mish_grad),
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


def _lookup(name: str) -> str:
    if name not in FORWARD:
        raise ValueError(f"Unknown activation: {name!r}. Allowed names: {', '.join(NAMES)}.")
    return name


def _as_float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def activation_forward(name: str, x: np.ndarray) -> np.ndarray:
    """``y = name(x)``, same shape and float dtype as ``x``."""
    return np.asarray(FORWARD[_lookup(name)](_as_float(x)))


def activation_backward(name: str, x: np.ndarray, y: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
    """``grad_x = grad_y * dy/dx`` (softmax/log_softmax: the vector-Jacobian product)."""
    grad_y = _as_float(grad_y)
    x = _as_float(x).astype(grad_y.dtype, copy=False)
    y = _as_float(y).astype(grad_y.dtype, copy=False)
    return np.asarray(BACKWARD[_lookup(name)](x, y, grad_y), dtype=grad_y.dtype)
