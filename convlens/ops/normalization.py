"""Normalization by a sample's own statistics, and by fixed ones: forward and backward.

* :func:`layer_norm_forward` (Keras ``LayerNormalization``): each sample is standardised over
  ``axes`` with its own mean and (population) variance, then scaled by ``gamma`` and shifted by
  ``beta``, both shaped like those axes.
* :func:`group_norm_forward` (Keras ``GroupNormalization``): the channel axis is split into
  ``groups`` groups; each sample's group is standardised over its channels and every other
  non-batch axis. ``groups == channels`` is instance normalization, ``groups == 1`` layer
  normalization over all axes. ``gamma`` and ``beta`` are per channel.
* :func:`rescale_forward` (Keras ``Rescaling``): ``x * scale + offset``.
* :func:`standardize_forward` (Keras ``Normalization``): ``(x - mean) / max(sqrt(variance),
  1e-7)`` with fixed statistics, or its inverse; :func:`moments` computes them (``adapt``).

The standardising pair is one function of the statistics axes, shared by layer and group
normalization: with ``x_hat = (x - mean) * r`` and ``r = 1 / sqrt(var + epsilon)``, the input
gradient is ``r * (d - mean(d) - x_hat * mean(d * x_hat))`` where ``d = grad_y * gamma`` and the
means run over the statistics axes. float32 stays float32 and float64 stays float64.

>>> import numpy as np
>>> x = np.array([[1.0, 2.0, 3.0]], np.float32)
>>> y, cache = layer_norm_forward(x, (-1,), np.ones(3, np.float32), None, epsilon=0.0)
>>> np.round(y, 4)
array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convlens.ops.merge import unbroadcast
from convlens.ops.workers import VALUE_WORK, batch_parts, run_parts

__all__ = [
    "KERAS_EPSILON", "batch_norm_forward", "batch_norm_backward", "moving_average",
    "layer_norm_forward", "layer_norm_backward", "group_norm_forward",
    "group_norm_backward", "rescale_forward", "rescale_backward", "standardize_forward",
    "standardize_backward", "moments",
]  # fmt: skip

#: ``keras.backend.epsilon()``: the floor on the standard deviation in ``Normalization``.
KERAS_EPSILON = 1e-7


def _float(x) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _axes(axes: Sequence[int] | int, ndim: int, name: str) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if not axes or any(not -ndim <= int(a) < ndim for a in axes):
        raise ValueError(
            f"{name}: `axis` must name axes of the {ndim}-d input (from {-ndim} to {ndim - 1}); "
            f"received {axes}."
        )
    normalized = tuple(sorted(int(a) % ndim for a in axes))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}: `axis` names an axis twice; received {axes}.")
    return normalized


# --------------------------------------------------------------------------------------------
# the shared standardising pair
# --------------------------------------------------------------------------------------------


def _centred_moments(x, axes):
    """``(mean, x - mean, population variance)`` over ``axes``, kept as broadcast shapes."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    return mean, centred, np.mean(centred * centred, axis=axes, keepdims=True)


def _standardize(x, axes, gamma, beta, epsilon, param_shape, statistics=None):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta``; gamma and beta are ``param_shape``,
    which broadcasts against ``x``. ``statistics``: ``_centred_moments(x, axes)`` if the caller
    already has them."""
    _, centred, variance = statistics or _centred_moments(x, axes)
    inv_std = 1 / np.sqrt(variance + x.dtype.type(epsilon))
    x_hat = centred * inv_std
    y = x_hat if gamma is None else x_hat * gamma
    if beta is not None:
        y = y + beta
    return y, (axes, x_hat, inv_std, gamma, beta is not None, tuple(param_shape))


def _standardize_backward(grad_y, cache):
    """``(grad_x, grad_gamma or None, grad_beta or None)``, the last two in ``param_shape``."""
    axes, x_hat, inv_std, gamma, has_beta, param_shape = cache
    grad_y = np.asarray(grad_y, x_hat.dtype)
    d = grad_y if gamma is None else grad_y * gamma
    grad_x = inv_std * (
        d - d.mean(axis=axes, keepdims=True)
        - x_hat * np.mean(d * x_hat, axis=axes, keepdims=True)
    )
    grad_gamma = None if gamma is None else unbroadcast(grad_y * x_hat, param_shape)
    grad_beta = unbroadcast(grad_y, param_shape) if has_beta else None
    return grad_x, grad_gamma, grad_beta


# --------------------------------------------------------------------------------------------
# batch normalization
# --------------------------------------------------------------------------------------------


def batch_norm_forward(x, axis: int = -1, gamma=None, beta=None, epsilon: float = 1e-3,
                       mean=None, variance=None):
    """Keras ``BatchNormalization`` on the channels of ``axis``; ``gamma``/``beta`` are ``(C,)``.

    Without ``mean``/``variance`` (training) each channel is standardised with the batch's
    mean and population variance over every other axis; with them (inference, or a frozen
    layer) with those fixed ``(C,)`` statistics, a per-channel affine map. Returns
    ``(y, cache, mean, variance)``, the last two ``(C,)``: the statistics used, the batch's
    when training (what the moving averages take in).
    """
    x = _float(x)
    (axis,) = _axes(axis, x.ndim, "batch_norm")
    if axis == 0:
        raise ValueError("batch_norm: `axis` must be a feature axis, not the batch axis 0.")
    broadcast = [1] * x.ndim  # (1, ..., C, ..., 1)
    broadcast[axis] = x.shape[axis]
    gamma = _param(gamma, broadcast, x.dtype, "gamma", "batch_norm")
    beta = _param(beta, broadcast, x.dtype, "beta", "batch_norm")
    axes = tuple(a for a in range(x.ndim) if a != axis)
    if (mean is None) != (variance is None):
        raise ValueError("batch_norm: pass both `mean` and `variance`, or neither.")
    if mean is None and axis == x.ndim - 1 and x.flags.c_contiguous and x.size:
        y, cache, batch_mean, batch_variance = _last_axis_forward(x, gamma, beta, epsilon)
        return y, (cache, "last axis"), batch_mean, batch_variance
    if mean is None:
        statistics = _centred_moments(x, axes)
        y, cache = _standardize(x, axes, gamma, beta, epsilon, broadcast, statistics)
        batch_mean, _, batch_variance = statistics
        return y, (cache, False), batch_mean.reshape(-1), batch_variance.reshape(-1)
    mean = _param(mean, broadcast, x.dtype, "mean", "batch_norm")
    variance = _param(variance, broadcast, x.dtype, "variance", "batch_norm")
    inv_std = 1 / np.sqrt(variance + x.dtype.type(epsilon))
    x_hat = (x - mean) * inv_std
    y = x_hat if gamma is None else x_hat * gamma
    if beta is not None:
        y = y + beta
    cache = (axes, x_hat, inv_std, gamma, beta is not None, tuple(broadcast))
    return y, (cache, True), mean.reshape(-1), variance.reshape(-1)


def batch_norm_backward(grad_y, cache):
    """``(grad_x, grad_gamma or None, grad_beta or None)``; the last two are ``(C,)``.

    With the batch's statistics the mean and variance depend on every value of the channel
    (the standardising pair's gradient); with fixed ones only ``gamma * inv_std`` remains.
    """
    inner, fixed = cache
    if fixed == "last axis":
        grad_x, grad_gamma, grad_beta = _last_axis_backward(grad_y, inner)
    elif fixed:
        _, x_hat, inv_std, gamma, has_beta, param_shape = inner
        grad_y = np.asarray(grad_y, x_hat.dtype)
        d = grad_y if gamma is None else grad_y * gamma
        grad_gamma = None if gamma is None else unbroadcast(grad_y * x_hat, param_shape)
        grad_beta = unbroadcast(grad_y, param_shape) if has_beta else None
        grad_x = d * inv_std
    else:
        grad_x, grad_gamma, grad_beta = _standardize_backward(grad_y, inner)
    return grad_x, _reshape(grad_gamma, (-1,)), _reshape(grad_beta, (-1,))


# The batch's statistics over every axis but the last (channels last, the default): the same
# formulas as the standardising pair, arranged for NumPy. Values are seen as rows of the last
# two axes, ``(R, L)`` with ``L = W * C``, and per-channel numbers are repeated to ``L`` values,
# so every elementwise pass runs long inner loops (against a broadcast ``(C,)`` one of C
# values); sums over rows are matrix-vector products (BLAS), folded onto the channels. The rows
# are split into one part per core (:mod:`convlens.ops.workers`); a part's sums are added in
# row order, so only their float rounding depends on the thread count.


def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` as ``(R, L)``: rows of its last two axes (of the last one for a 2-d input)."""
    return x.reshape(-1, x.shape[-1] * (x.shape[-2] if x.ndim > 2 else 1))


def _column_sums(rows: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """Sums over the rows of ``rows`` ``(R, L)``, or of ``rows * other``: ``(L,)``."""
    if other is None:
        return np.ones(rows.shape[0], rows.dtype) @ rows
    return np.einsum("rl,rl->l", rows, other)


def _in_parts(function, rows: np.ndarray) -> list:
    """``function(part)`` for one slice of the rows per core; the results in row order."""
    return run_parts(function, batch_parts(rows.shape[0], rows.size * VALUE_WORK))


def _channel_sums(per_part: list, channels: int) -> list[np.ndarray]:
    """Each of a part's ``(L,)`` column sums added over the parts, folded to ``(C,)``."""
    totals = [column.copy() for column in per_part[0]]
    for sums in per_part[1:]:
        for total, column in zip(totals, sums, strict=True):
            total += column
    return [total.reshape(-1, channels).sum(axis=0) for total in totals]


def _repeat(values: np.ndarray, length: int) -> np.ndarray:
    """``(C,)`` repeated to ``length`` values, the layout of one row."""
    return np.tile(values, length // values.size)


def _last_axis_forward(x, gamma, beta, epsilon):
    channels = x.shape[-1]
    count = x.dtype.type(x.size // channels)
    rows = _rows(x)  # (R, L)
    length = rows.shape[1]
    (mean,) = _channel_sums(_in_parts(lambda p: [_column_sums(rows[p])], rows), channels)
    mean /= count
    x_hat = np.empty_like(rows)  # centred first, (R, L)
    mean_row = _repeat(mean, length)

    def centre(p: slice) -> list[np.ndarray]:
        np.subtract(rows[p], mean_row, out=x_hat[p])
        return [_column_sums(x_hat[p], x_hat[p])]

    (variance,) = _channel_sums(_in_parts(centre, rows), channels)
    variance /= count  # population variance, (C,)
    inv_std = 1 / np.sqrt(variance + x.dtype.type(epsilon))
    inv_row = _repeat(inv_std, length)
    gamma_row = None if gamma is None else _repeat(gamma.reshape(-1), length)
    beta_row = None if beta is None else _repeat(beta.reshape(-1), length)
    y = np.empty_like(rows)

    def scale(p: slice) -> None:
        x_hat[p] *= inv_row
        if gamma_row is None:
            np.copyto(y[p], x_hat[p])
        else:
            np.multiply(x_hat[p], gamma_row, out=y[p])
        if beta_row is not None:
            y[p] += beta_row

    _in_parts(scale, rows)
    cache = (x_hat, inv_std, gamma, beta is not None, x.shape)
    return y.reshape(x.shape), cache, mean, variance


def _last_axis_backward(grad_y, cache):
    x_hat, inv_std, gamma, has_beta, shape = cache
    channels, length = inv_std.size, x_hat.shape[1]
    count = x_hat.dtype.type(x_hat.size // channels)
    g = _rows(np.ascontiguousarray(grad_y, x_hat.dtype))  # (R, L)
    sum_g, sum_g_x_hat = _channel_sums(
        _in_parts(lambda p: [_column_sums(g[p]), _column_sums(g[p], x_hat[p])], g), channels
    )
    # inv_std * (d - mean(d) - x_hat * mean(d * x_hat)) with d = gamma * g, per channel:
    # a * g + b * x_hat + c
    a = inv_std if gamma is None else inv_std * gamma.reshape(-1)
    b, c = -a * sum_g_x_hat / count, -a * sum_g / count
    a_row, b_row, c_row = (_repeat(v, length) for v in (a, b, c))
    grad_x = np.empty_like(g)

    def combine(p: slice) -> None:
        out = grad_x[p]
        np.multiply(g[p], a_row, out=out)
        out += x_hat[p] * b_row
        out += c_row

    _in_parts(combine, g)
    grad_gamma = None if gamma is None else sum_g_x_hat
    return grad_x.reshape(shape), grad_gamma, sum_g if has_beta else None


def moving_average(moving, value, momentum: float):
    """``moving * momentum + value * (1 - momentum)``, Keras's update of the moving statistics."""
    moving = np.asarray(moving)
    return moving * moving.dtype.type(momentum) + moving.dtype.type(1.0 - momentum) * value


# --------------------------------------------------------------------------------------------
# layer normalization
# --------------------------------------------------------------------------------------------


def _param(value, shape, dtype, what: str, name: str):
    if value is None:
        return None
    value = np.asarray(value, dtype)
    if value.size != int(np.prod(shape)):
        raise ValueError(
            f"{name}: `{what}` must have {int(np.prod(shape))} values (shape "
            f"{tuple(shape)}); received shape {value.shape}."
        )
    return value.reshape(shape)


def layer_norm_forward(x, axes, gamma=None, beta=None, epsilon: float = 1e-3):
    """Standardise each sample over ``axes``; ``gamma``/``beta`` have those axes' sizes.

    Returns ``(y, cache)``. ``epsilon`` defaults to Keras's ``LayerNormalization`` (1e-3).
    """
    x = _float(x)
    axes = _axes(axes, x.ndim, "layer_norm")
    broadcast = [1] * x.ndim  # gamma as (1, ..., size of each axis, ..., 1)
    for a in axes:
        broadcast[a] = x.shape[a]
    gamma = _param(gamma, broadcast, x.dtype, "gamma", "layer_norm")
    beta = _param(beta, broadcast, x.dtype, "beta", "layer_norm")
    y, cache = _standardize(x, axes, gamma, beta, epsilon, broadcast)
    return y, (cache, tuple(x.shape[a] for a in axes))


def layer_norm_backward(grad_y, cache):
    """``(grad_x, grad_gamma or None, grad_beta or None)``, the last two like gamma and beta."""
    inner, param_shape = cache
    grad_x, grad_gamma, grad_beta = _standardize_backward(grad_y, inner)
    return grad_x, _reshape(grad_gamma, param_shape), _reshape(grad_beta, param_shape)


def _reshape(a, shape):
    return None if a is None else a.reshape(shape)


# --------------------------------------------------------------------------------------------
# group normalization
# --------------------------------------------------------------------------------------------


def group_norm_forward(x, groups: int, axis: int = -1, gamma=None, beta=None,
                       epsilon: float = 1e-3):
    """Standardise each (sample, channel group) over its channels and the other axes.

    ``x`` is ``(N, ..., C, ...)`` with the channels on ``axis``; ``gamma``/``beta`` are ``(C,)``.
    Returns ``(y, cache)``.
    """
    x = _float(x)
    (axis,) = _axes(axis, x.ndim, "group_norm")
    channels = x.shape[axis]
    if axis == 0 or not isinstance(groups, (int, np.integer)) or groups < 1 or channels % groups:
        raise ValueError(
            f"group_norm: `groups` must divide the {channels} channels on axis {axis} (not the "
            f"batch axis); received groups={groups!r}."
        )
    # (N, ..., C, ...) -> (N, ..., G, C/G, ...)
    grouped_shape = (*x.shape[:axis], groups, channels // groups, *x.shape[axis + 1 :])
    grouped = x.reshape(grouped_shape)
    broadcast = [1] * grouped.ndim
    broadcast[axis], broadcast[axis + 1] = groups, channels // groups
    gamma = _param(gamma, broadcast, x.dtype, "gamma", "group_norm")
    beta = _param(beta, broadcast, x.dtype, "beta", "group_norm")
    statistics_axes = tuple(a for a in range(1, grouped.ndim) if a != axis)
    y, cache = _standardize(grouped, statistics_axes, gamma, beta, epsilon, broadcast)
    return y.reshape(x.shape), (cache, x.shape)


def group_norm_backward(grad_y, cache):
    """``(grad_x, grad_gamma or None, grad_beta or None)``; the last two are ``(C,)``."""
    inner, x_shape = cache
    x_hat = inner[1]
    grad_x, grad_gamma, grad_beta = _standardize_backward(
        np.asarray(grad_y).reshape(x_hat.shape), inner
    )
    return grad_x.reshape(x_shape), _reshape(grad_gamma, (-1,)), _reshape(grad_beta, (-1,))


# --------------------------------------------------------------------------------------------
# fixed affine maps: rescaling, and standardising by given statistics
# --------------------------------------------------------------------------------------------


def rescale_forward(x, scale=1.0, offset=0.0):
    """``y = x * scale + offset``; ``scale``/``offset`` are numbers or broadcast arrays."""
    x = _float(x)
    scale = np.asarray(scale, x.dtype)
    return x * scale + np.asarray(offset, x.dtype), scale


def rescale_backward(grad_y, cache):
    return grad_y * cache


def moments(x, axes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over ``axes`` (what ``Normalization.adapt`` computes)."""
    x = _float(x)
    axes = _axes(axes, x.ndim, "moments")
    return x.mean(axis=axes), x.var(axis=axes)


def standardize_forward(x, mean, variance, invert: bool = False):
    """``(x - mean) / s``, or ``mean + x * s`` when ``invert``; ``s = max(sqrt(var), 1e-7)``.

    ``mean`` and ``variance`` broadcast against ``x``. Returns ``(y, cache)``.
    """
    x = _float(x)
    mean, variance = np.asarray(mean, x.dtype), np.asarray(variance, x.dtype)
    if np.any(variance < 0):
        raise ValueError(
            f"standardize: `variance` must be >= 0; received a minimum of {variance.min()}."
        )
    std = np.maximum(np.sqrt(variance), x.dtype.type(KERAS_EPSILON))
    factor = std if invert else 1 / std
    y = mean + x * std if invert else (x - mean) / std
    return y, factor


def standardize_backward(grad_y, cache):
    return grad_y * cache
