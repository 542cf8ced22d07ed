"""Merge operations (several inputs, one output): forward and backward side by side.

Each ``*_forward(inputs)`` takes a list of arrays and returns ``(y, cache)``; each
``*_backward(grad_y, cache)`` returns one gradient per input, shaped like that input. Inputs may
broadcast against each other as NumPy (and Keras's ``ops.add``) allow; an input's gradient is
then summed over the axes it was broadcast along.

The elementwise merges fold left to right as Keras's merge layers do
(``maximum(maximum(a, b), c)``), and ties take PyTorch's rule at every fold: the two equal sides
share the gradient half and half. So when ``a == b == c``, ``c`` gets 1/2 and ``a`` and ``b``
1/4 each, exactly what Keras on its torch backend computes.

>>> import numpy as np
>>> a, b = np.array([1.0, 5.0], np.float32), np.array([3.0, 5.0], np.float32)
>>> y, cache = maximum_forward([a, b])
>>> y
array([3., 5.], dtype=float32)
>>> maximum_backward(np.ones(2, np.float32), cache)
[array([0. , 0.5], dtype=float32), array([1. , 0.5], dtype=float32)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "add_forward", "add_backward", "subtract_forward", "subtract_backward",
    "multiply_forward", "multiply_backward", "average_forward", "average_backward",
    "maximum_forward", "maximum_backward", "minimum_forward", "minimum_backward",
    "concatenate_forward", "concatenate_backward", "unbroadcast",
]  # fmt: skip


def _floats(inputs: Sequence, name: str, at_least: int = 1) -> list[np.ndarray]:
    """The inputs in one float dtype: float64 if any is float64, else float32."""
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
        raise TypeError(
            f"{name}: expects a list of arrays; received {type(inputs).__name__}. "
            "Pass the inputs as a list, e.g. [a, b]."
        )
    if len(inputs) < at_least:
        raise ValueError(
            f"{name}: expects at least {at_least} inputs; received {len(inputs)}."
        )
    arrays = [np.asarray(x) for x in inputs]
    dtype = np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32
    return [a.astype(dtype, copy=False) for a in arrays]


def _broadcast_shape(arrays: list[np.ndarray], name: str) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"{name}: the inputs must have equal shapes (or shapes that broadcast); "
            f"received shapes {shapes}."
        ) from None


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad  # leading axes added
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


# --------------------------------------------------------------------------------------------
# add, subtract, average: linear, the cache is the input shapes
# --------------------------------------------------------------------------------------------


def add_forward(inputs):
    """``y = x_0 + x_1 + ...``."""
    arrays = _floats(inputs, "add")
    _broadcast_shape(arrays, "add")
    y = arrays[0]
    for x in arrays[1:]:
        y = y + x
    return y, [a.shape for a in arrays]


def add_backward(grad_y, cache):
    return [unbroadcast(grad_y, shape) for shape in cache]


def subtract_forward(inputs):
    """``y = x_0 - x_1``; exactly two inputs, as Keras's ``Subtract``."""
    arrays = _floats(inputs, "subtract")
    if len(arrays) != 2:
        raise ValueError(
            f"subtract: expects exactly 2 inputs; received {len(arrays)}."
        )
    _broadcast_shape(arrays, "subtract")
    return arrays[0] - arrays[1], [a.shape for a in arrays]


def subtract_backward(grad_y, cache):
    return [unbroadcast(grad_y, cache[0]), unbroadcast(-grad_y, cache[1])]


def average_forward(inputs):
    """``y = (x_0 + x_1 + ...) / n``."""
    y, shapes = add_forward(inputs)
    return y / y.dtype.type(len(shapes)), shapes


def average_backward(grad_y, cache):
    share = grad_y / grad_y.dtype.type(len(cache))
    return [unbroadcast(share, shape) for shape in cache]


# --------------------------------------------------------------------------------------------
# multiply: the gradient of one input is the product of the others
# --------------------------------------------------------------------------------------------


def multiply_forward(inputs):
    """``y = x_0 * x_1 * ...``."""
    arrays = _floats(inputs, "multiply")
    _broadcast_shape(arrays, "multiply")
    y = arrays[0]
    for x in arrays[1:]:
        y = y * x
    return y, arrays


def multiply_backward(grad_y, cache):
    grads = []
    for i, x in enumerate(cache):
        # the product of the others, not y / x: an input may hold zeros
        others = grad_y
        for j, other in enumerate(cache):
            if j != i:
                others = others * other
        grads.append(unbroadcast(others, x.shape))
    return grads


# --------------------------------------------------------------------------------------------
# maximum, minimum: folded left to right, ties split half and half at each fold
# --------------------------------------------------------------------------------------------


def _extreme_forward(inputs, name: str, pick):
    arrays = _floats(inputs, name)
    _broadcast_shape(arrays, name)
    folds = [arrays[0]]  # folds[i] = the running result after input i
    for x in arrays[1:]:
        folds.append(pick(folds[-1], x))
    return folds[-1], (arrays, folds, pick)


def _extreme_backward(grad_y, cache):
    arrays, folds, pick = cache
    half = grad_y.dtype.type(0.5)
    grads = [None] * len(arrays)
    grad_running = grad_y  # gradient of folds[i]
    for i in range(len(arrays) - 1, 0, -1):
        left, right = folds[i - 1], arrays[i]
        # the side that wins gets all, a tie gives each side half (PyTorch's rule)
        tie = left == right
        right_wins = (pick(left, right) == right) & ~tie
        weight_right = np.where(tie, half, right_wins.astype(grad_y.dtype))
        grads[i] = unbroadcast(grad_running * weight_right, right.shape)
        weight_left = np.where(tie, half, (~right_wins).astype(grad_y.dtype))
        grad_running = unbroadcast(grad_running * weight_left, left.shape)
    grads[0] = unbroadcast(grad_running, arrays[0].shape)
    return grads


def maximum_forward(inputs):
    """``y = maximum(...maximum(maximum(x_0, x_1), x_2)...)``."""
    return _extreme_forward(inputs, "maximum", np.maximum)


def maximum_backward(grad_y, cache):
    return _extreme_backward(grad_y, cache)


def minimum_forward(inputs):
    """``y = minimum(...minimum(minimum(x_0, x_1), x_2)...)``."""
    return _extreme_forward(inputs, "minimum", np.minimum)


def minimum_backward(grad_y, cache):
    return _extreme_backward(grad_y, cache)


# --------------------------------------------------------------------------------------------
# concatenate
# --------------------------------------------------------------------------------------------


def concatenate_forward(inputs, axis: int = -1):
    """Join the inputs along ``axis``; every other axis must match.

    ``(N, H, W, C_0), (N, H, W, C_1), ...`` -> ``(N, H, W, C_0 + C_1 + ...)`` for ``axis=-1``.
    """
    arrays = _floats(inputs, "concatenate")
    rank = arrays[0].ndim
    if any(a.ndim != rank for a in arrays) or not -rank <= axis < rank:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"concatenate: the inputs must have the same rank and `axis` must be one of their "
            f"axes; received axis={axis} and shapes {shapes}."
        )
    axis %= rank
    others = {a.shape[:axis] + a.shape[axis + 1 :] for a in arrays}
    if len(others) > 1:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"concatenate: every axis except the concatenation axis ({axis}) must match; "
            f"received shapes {shapes}."
        )
    sizes = [a.shape[axis] for a in arrays]
    return np.concatenate(arrays, axis=axis), (axis, sizes)


def concatenate_backward(grad_y, cache):
    axis, sizes = cache
    return np.split(grad_y, np.cumsum(sizes)[:-1], axis=axis)
