"""Tensor arithmetic (``x + 3.0``, ``x * y``, ``3 - x``, ``-x``): forward and backward side by side.

The operations Keras records when a program does arithmetic on symbolic tensors (its
``keras.src.ops.numpy`` ``Add``, ``Subtract``, ``Multiply``, ``Divide``/``TrueDivide`` and
``Negative``). An operand is an array or a number (a constant of the program, as in
MobileNetV3's hard-sigmoid ``relu6(x + 3.0) * (1/6)``); numbers are cast to the arrays' float
dtype, as Keras does for a float32 tensor, and arrays broadcast as NumPy allows.

ConvNeXt's LayerScale (a learned factor per channel) is here too: ``channel_scale_*``.

``binary_forward(name, a, b)`` returns ``(y, cache)``; ``binary_backward(grad_y, cache)``
returns one gradient per operand, shaped like it (None for a number, which has none).

>>> import numpy as np
>>> x = np.array([1.0, -2.0], np.float32)
>>> y, cache = binary_forward("divide", 3.0, x)
>>> y
array([ 3. , -1.5], dtype=float32)
>>> binary_backward(np.ones(2, np.float32), cache)
[None, array([-3.  , -0.75], dtype=float32)]
"""

from __future__ import annotations

import numpy as np

from convlens.ops.merge import unbroadcast

__all__ = ["BINARY", "binary_forward", "binary_backward", "negative_forward",
           "negative_backward", "channel_scale_forward", "channel_scale_backward"]

BINARY = ("add", "subtract", "multiply", "divide")


def _operands(a, b, name: str):
    arrays = [x for x in (a, b) if isinstance(x, np.ndarray)]
    if not arrays:
        raise TypeError(f"{name}: expects at least one array operand; received "
                        f"{type(a).__name__} and {type(b).__name__}.")
    dtype = np.float64 if any(x.dtype == np.float64 for x in arrays) else np.float32
    return [x.astype(dtype, copy=False) if isinstance(x, np.ndarray) else dtype(x)
            for x in (a, b)]


def binary_forward(name: str, a, b):
    """``y = a <name> b`` for ``name`` in ``BINARY``; ``a`` or ``b`` may be a number."""
    if name not in BINARY:
        raise ValueError(f"Unknown arithmetic operation {name!r}; expected one of {BINARY}.")
    a, b = _operands(a, b, name)
    try:
        shape = np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        raise ValueError(f"{name}: the operands' shapes {np.shape(a)} and {np.shape(b)} do not "
                         "broadcast; they must be equal or 1 on every axis they differ.") from None
    if name == "add":
        y = a + b
    elif name == "subtract":
        y = a - b
    elif name == "multiply":
        y = a * b
    else:
        y = a / b
    y = np.broadcast_to(y, shape) if np.shape(y) != shape else y
    return y, (name, a, b, [isinstance(x, np.ndarray) for x in (a, b)])


def binary_backward(grad_y, cache) -> list:
    name, a, b, is_array = cache
    if name == "add":
        grads = [grad_y, grad_y]
    elif name == "subtract":
        grads = [grad_y, -grad_y]
    elif name == "multiply":
        grads = [grad_y * b, grad_y * a]
    else:  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        grads = [grad_y / b, -grad_y * a / (b * b)]
    return [unbroadcast(np.asarray(grad, grad_y.dtype), np.shape(x)) if array else None
            for grad, x, array in zip(grads, (a, b), is_array)]


def negative_forward(x: np.ndarray):
    """``y = -x``."""
    return -x, None


def negative_backward(grad_y: np.ndarray, cache=None) -> np.ndarray:
    return -grad_y


def channel_scale_forward(x: np.ndarray, gamma: np.ndarray):
    """``y = x * gamma``, one factor per channel (the last axis): ConvNeXt's LayerScale."""
    return x * gamma, x


def channel_scale_backward(grad_y: np.ndarray, cache, gamma: np.ndarray):
    """``(grad_x, grad_gamma)``: ``grad_y * gamma``, and ``grad_y * x`` summed over every axis
    but the channels."""
    x = cache
    return grad_y * gamma, (grad_y * x).reshape(-1, x.shape[-1]).sum(axis=0)
