"""Traces of layers that compute one output value from one input value (or one channel).

Flatten, Reshape, Permute, cropping, zero padding, nearest upsampling and Dropout (inference)
copy a value (bilinear upsampling weighs its 2, 4 or 8 neighbours); Activation and ReLU apply a
function to it (PReLU, Rescaling, Normalization,
Softmax and the layer and group normalizations: ``trace_norms.py``); BatchNormalization
(inference) scales and shifts it by its channel's statistics; global pooling takes the maximum
or mean of one channel's map.
Each trace names the input position read and writes the computation with its numbers.
"""

from __future__ import annotations

import itertools

import numpy as np

from convlens.explain.trace_norms import NORM_TRACES
from convlens.kinds import kind_of
from convlens.ops import activations as activation_ops

SIMPLE_KINDS = ("copy", "elementwise", "batchnorm", "global_pool", "merge", "concatenate",
                "statistics")
# The ``trace`` rules of layer kinds (``convlens.kinds``) traced here; ReLU's and the
# ``NORM_TRACES`` are written as elementwise or statistics traces, upsampling as a copy.
SIMPLE_RULES = (*SIMPLE_KINDS, "relu", "upsampling", *NORM_TRACES)
MAX_VALUES_SHOWN = 32


def activation_value(layer, vector: np.ndarray, position: int) -> float:
    """The layer's activation on the pre-activations of one position (all channels)."""
    z = vector.astype(np.float32)[None, :]
    return float(np.asarray(layer.activation(z))[0, position])


def simple_kind(layer) -> str | None:
    """The layer's trace rule when this module traces it, else None."""
    rule = kind_of(layer).trace
    return rule if rule in SIMPLE_RULES else None


def input_lines(t) -> list[str]:
    """What a value-by-value trace read from its input."""
    if t.kind == "global_pool":
        return [f"all {t.window.size:,} positions of input channel {t.input_channels[0]}"]
    if t.kind == "statistics":
        return [f"the input value at position {t.source} (no batch axis) and the "
                f"{t.window.size:,} values of its group: "
                + ", ".join(f"{v:.7g}" for v in t.window[:MAX_VALUES_SHOWN])
                + (" ..." if t.window.size > MAX_VALUES_SHOWN else "")]
    if t.source is None:
        return ["none: this output position is zero padding"]
    if t.kind == "merge":
        return [f"each branch's value at position {t.source} (no batch axis): "
                + ", ".join(f"{v:.7g}" for v in t.window)]
    what = "values along the last axis at" if t.window.size > 1 else "value at"
    return [f"the input {what} position {t.source} (no batch axis): "
            + ", ".join(f"{v:.7g}" for v in t.window[:MAX_VALUES_SHOWN])
            + (" ..." if t.window.size > MAX_VALUES_SHOWN else "")]


def _copied_from(layer, h, index):
    """Input position (no batch axis) that a rearranging layer copies to ``index``, or None."""
    sample_shape = h.shape[1:]
    size = int(np.prod(sample_shape))
    if size >= 2**24:  # float32 counts exactly up to 2**24
        raise ValueError(f"trace: layer '{layer.name}' has {size:,} input values per sample; "
                         "tracing a copy through it supports fewer than 16,777,216.")
    # Number every input value 1..size, run the layer on the numbers: 0 means padding.
    numbers = np.arange(1, size + 1, dtype=np.float32).reshape(h.shape)
    where = int(layer.call(numbers)[(0, *index)])
    return None if where == 0 else tuple(int(i) for i in np.unravel_index(where - 1,
                                                                          sample_shape))


def _branch_names(layer) -> list[str]:
    return [t.layer.name for t in layer.inbound_nodes[0].inputs] if layer.inbound_nodes else []


def _trace_merge(layer, kind, h, index) -> dict:
    """A merge's value from its branches: each branch's value at ``index`` (broadcast axes of
    size 1 read position 0), combined as the layer does; Concatenate copies from one branch."""
    names = _branch_names(layer) or [f"input {i}" for i in range(len(h))]
    if kind == "concatenate":
        axis = layer.axis % (len(index) + 1) - 1  # index has no batch axis
        offset = index[axis]
        for name, branch in zip(names, h):
            size = branch.shape[axis + 1]
            if offset < size:
                source = (*index[:axis], offset, *index[axis + 1:])
                value = float(branch[(0, *source)])
                return dict(kind=kind, window=np.array([value]), source=source, value=value,
                            formula=f"copied from branch '{name}' at position {source} (axis "
                                    f"{axis + 1} offset {index[axis] - offset}): value = "
                                    f"{value:.7g}")
            offset -= size
    values = []
    for branch in h:
        position = tuple(min(i, n - 1) for i, n in zip(index, branch.shape[1:]))
        values.append(float(branch[(0, *position)]))
    value = float(layer.call([np.array([v], np.float32) for v in values])[0])
    what = type(layer).__name__.lower()
    parts = ", ".join(f"'{n}' = {v:.7g}" for n, v in zip(names, values))
    return dict(kind=kind, window=np.array(values), source=index, value=value,
                formula=f"{what} of the branches at this position: {parts} -> {value:.7g}")


def _bilinear_taps(output: int, factor: int, length: int) -> list[tuple[int, float]]:
    """Input positions and weights of one output position along one axis: half-pixel centres,
    ``c = (o + 1/2) / f - 1/2`` clamped at 0, between ``floor(c)`` and the next (or the last)."""
    centre = max((output + 0.5) / factor - 0.5, 0.0)
    low = min(int(np.floor(centre)), length - 1)
    high = min(low + 1, length - 1)
    weight = centre - low
    return [(low, 1.0 - weight), (high, weight)]


def _trace_bilinear(layer, sample, index) -> dict:
    axes = [a - 1 for a in layer.spatial_axes]  # axes of one sample
    per_axis = [_bilinear_taps(index[a], f, sample.shape[a]) for a, f in zip(axes, layer.size)]
    values, terms, value = [], [], 0.0
    for taps in itertools.product(*per_axis):
        position = list(index)
        weight = 1.0
        for a, (i, w) in zip(axes, taps):
            position[a] = i
            weight *= w
        values.append(float(sample[tuple(position)]))
        value += weight * values[-1]
        terms.append(f"{weight:.4g} * {values[-1]:.7g}")
    return dict(kind="statistics", window=np.array(values), source=index, value=value,
                formula=f"bilinear (half-pixel centres): {' + '.join(terms)} = {value:.7g}")


def trace_simple(layer, h, index) -> dict:
    """The terms of a value-by-value trace of output ``index`` given the layer's input ``h``."""
    kind = simple_kind(layer)
    if kind in ("merge", "concatenate"):
        return _trace_merge(layer, kind, h, index)
    sample = h[0].astype(np.float64)
    if kind in NORM_TRACES:
        return NORM_TRACES[kind](layer, sample, index)
    if kind == "upsampling":
        if layer.interpolation == "bilinear":
            return _trace_bilinear(layer, sample, index)
        kind = "copy"
    if kind == "copy":
        source = _copied_from(layer, h, index)
        value = 0.0 if source is None else float(sample[source])
        formula = ("zero padding: value = 0" if source is None else
                   f"copied unchanged from input position {source}: value = {value:.7g}")
        window = np.zeros(0) if source is None else np.array([value])
        return dict(kind=kind, window=window, source=source, value=value, formula=formula)
    if kind == "global_pool":
        channels_last = layer.geometry.channels_last
        channel = index[-1] if channels_last else index[0]
        plane = layer.geometry.to_last(h)[0][..., channel].astype(np.float64)
        value = float(plane.max() if layer.mode == "max" else plane.mean())
        word = "maximum" if layer.mode == "max" else "mean"
        return dict(kind=kind, window=plane, input_channels=[channel], value=value,
                    formula=f"{word} of the {plane.size:,} values of input channel {channel} "
                            f"= {value:.7g}")
    x = float(sample[index])
    if kind == "batchnorm":
        axis = layer.axis if layer.axis < 0 else layer.axis - 1  # index has no batch axis
        channel = index[axis]
        mean = float(layer.moving_mean.value[channel])
        variance = float(layer.moving_variance.value[channel])
        gamma = float(layer.gamma.value[channel]) if layer.scale else 1.0
        beta = float(layer.beta.value[channel]) if layer.center else 0.0
        value = gamma * (x - mean) / np.sqrt(variance + layer.epsilon) + beta
        formula = (f"channel {channel} at inference: {gamma:.7g} * ({x:.7g} - {mean:.7g}) / "
                   f"sqrt({variance:.7g} + {layer.epsilon:g}) + {beta:.7g} = {value:.7g}")
        return dict(kind=kind, window=np.array([x]), source=index, input_channels=[channel],
                    value=float(value), formula=formula)
    if kind == "relu":
        kind = "elementwise"
        # Keras's composition, from the layer's own op (a negative threshold with a max_value
        # clips (threshold, 0) to 0, and x == threshold gives 0)
        value = float(activation_ops.relu(
            np.array([x]), negative_slope=layer.negative_slope, max_value=layer.max_value,
            threshold=layer.threshold)[0])
        value += 0.0  # no "-0" when the negative slope is 0
        return dict(kind=kind, window=np.array([x]), source=index, value=float(value),
                    activation="relu", formula=f"relu({x:.7g}) = {value:.7g}")
    name = layer.activation.name
    if name in ("softmax", "log_softmax"):
        vector = sample[index[:-1]]
        value = activation_value(layer, vector, index[-1])
        return dict(kind=kind, window=vector, source=index[:-1], value=value, activation=name,
                    formula=f"{name} over the {vector.size} values of the last axis; entry "
                            f"{index[-1]} = {value:.7g}")
    value = activation_value(layer, np.array([x]), 0)
    return dict(kind=kind, window=np.array([x]), source=index, value=value, activation=name,
                formula=f"{name}({x:.7g}) = {value:.7g}")
