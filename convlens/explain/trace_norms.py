"""Traces of layers that change a value by numbers of their own or by statistics of a group of
values: PReLU, LayerScale, Rescaling, Normalization (one value each), Softmax,
LayerNormalization and GroupNormalization (the group of values the statistics are taken over).

Each ``trace_*(layer, sample, index)`` gets one sample without its batch axis (float64) and
the output position ``index``, and returns the terms of a ``Trace``: ``kind`` ("elementwise"
for one value, "statistics" for a group), ``window`` (the values read), ``source``, ``value``
and ``formula`` (the computation with its numbers).
"""

from __future__ import annotations

import numpy as np

from convlens.ops.normalization import KERAS_EPSILON


def _at(array, sample_shape, index) -> float:
    """``array`` broadcast against one sample (as the layer broadcasts it), at ``index``."""
    return float(np.broadcast_to(np.asarray(array, np.float64), (1, *sample_shape))[(0, *index)])


def trace_prelu(layer, sample, index) -> dict:
    x = float(sample[index])
    alpha = _at(layer.alpha.value, sample.shape, index)
    value = x if x > 0 else alpha * x
    formula = (f"{x:.7g} > 0: value = x = {value:.7g}" if x > 0 else
               f"{x:.7g} <= 0: alpha * x = {alpha:.7g} * {x:.7g} = {value:.7g}")
    return dict(kind="elementwise", window=np.array([x]), source=index, value=value,
                formula=formula)


def trace_layer_scale(layer, sample, index) -> dict:
    x = float(sample[index])
    factor = float(layer.gamma.value[index[-1]])
    value = x * factor
    return dict(kind="elementwise", window=np.array([x]), source=index, value=value,
                formula=f"x * gamma[{index[-1]}] = {x:.7g} * {factor:.7g} = {value:.7g}")


def trace_rescaling(layer, sample, index) -> dict:
    x = float(sample[index])
    scale = _at(layer.scale, sample.shape, index)
    offset = _at(layer.offset, sample.shape, index)
    value = x * scale + offset
    return dict(kind="elementwise", window=np.array([x]), source=index, value=value,
                formula=f"x * scale + offset = {x:.7g} * {scale:.7g} + {offset:.7g} = "
                        f"{value:.7g}")


def trace_normalization(layer, sample, index) -> dict:
    x = float(sample[index])
    mean, variance = layer.statistics((1, *sample.shape))
    mean = float(np.broadcast_to(mean, (1, *sample.shape))[(0, *index)])
    variance = float(np.broadcast_to(variance, (1, *sample.shape))[(0, *index)])
    std = max(float(np.sqrt(variance)), KERAS_EPSILON)
    where = f"std = max(sqrt({variance:.7g}), {KERAS_EPSILON:g}) = {std:.7g}"
    if layer.invert:
        value = mean + x * std
        formula = f"mean + x * std = {mean:.7g} + {x:.7g} * {std:.7g} = {value:.7g} ({where})"
    else:
        value = (x - mean) / std
        formula = f"(x - mean) / std = ({x:.7g} - {mean:.7g}) / {std:.7g} = {value:.7g} ({where})"
    return dict(kind="elementwise", window=np.array([x]), source=index, value=value,
                formula=formula)


def _group(sample, index, axes):
    """The values of ``sample`` that share ``index`` on every axis but ``axes`` (sample axes)."""
    selector = tuple(slice(None) if a in axes else i for a, i in enumerate(index))
    return sample[selector]


def _sample_axes(axes, rank) -> tuple[int, ...]:
    """Model axes (batch first, negative allowed) -> axes of one sample."""
    return tuple(sorted(a % (rank + 1) - 1 for a in axes))


def trace_softmax(layer, sample, index) -> dict:
    axes = _sample_axes(layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis],
                        sample.ndim)
    group = _group(sample, index, axes)
    x = float(sample[index])
    top = float(group.max())
    total = float(np.exp(group - top).sum())
    value = float(np.exp(x - top)) / total
    return dict(kind="statistics", window=group.reshape(-1), source=index, value=value,
                formula=f"exp(x - max) / sum(exp(values - max)) = exp({x:.7g} - {top:.7g}) / "
                        f"{total:.7g} = {value:.7g}, over the {group.size} values of axes "
                        f"{tuple(a + 1 for a in axes)}")


def _standardized(layer, x, group, gamma, beta) -> tuple[float, str]:
    mean, variance = float(group.mean()), float(group.var())
    value = (x - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
    formula = (f"(x - mean) / sqrt(variance + {layer.epsilon:g}) * gamma + beta = "
               f"({x:.7g} - {mean:.7g}) / sqrt({variance:.7g} + {layer.epsilon:g}) * "
               f"{gamma:.7g} + {beta:.7g} = {float(value):.7g}, over the {group.size} values "
               "of its group")
    return float(value), formula


def _gamma_beta(layer, at) -> tuple[float, float]:
    gamma = 1.0 if layer.gamma is None else float(layer.gamma.value[at])
    beta = 0.0 if layer.beta is None else float(layer.beta.value[at])
    return gamma, beta


def trace_layer_norm(layer, sample, index) -> dict:
    axes = _sample_axes(layer.axes, sample.ndim)
    group = _group(sample, index, axes)
    gamma, beta = _gamma_beta(layer, tuple(index[a] for a in axes))
    x = float(sample[index])
    value, formula = _standardized(layer, x, group, gamma, beta)
    return dict(kind="statistics", window=group.reshape(-1), source=index, value=value,
                formula=formula)


def trace_group_norm(layer, sample, index) -> dict:
    axis = _sample_axes([layer.axis], sample.ndim)[0]
    channels = sample.shape[axis]
    groups = channels if layer.groups == -1 else layer.groups
    per_group = channels // groups
    channel = index[axis]
    first = channel // per_group * per_group
    group = np.take(sample, range(first, first + per_group), axis=axis)
    gamma, beta = _gamma_beta(layer, channel)
    x = float(sample[index])
    value, formula = _standardized(layer, x, group, gamma, beta)
    return dict(kind="statistics", window=group.reshape(-1), source=index, value=value,
                input_channels=list(range(first, first + per_group)),
                formula=f"channel {channel} is in the group of channels {first} to "
                        f"{first + per_group - 1}: {formula}")


NORM_TRACES = {
    "prelu": trace_prelu, "layer_scale": trace_layer_scale, "rescaling": trace_rescaling,
    "normalization": trace_normalization,
    "softmax": trace_softmax, "layer_norm": trace_layer_norm, "group_norm": trace_group_norm,
}
