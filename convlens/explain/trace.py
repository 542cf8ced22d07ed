"""Trace one output value back to the input values and weights it is made of.

``trace(model, layer, index, x)`` runs the model on ``x`` (one sample, as a batch of
one) up to ``layer``, cuts out the window of the layer's input that output position
``index`` reads, and recomputes the value from its terms: per input channel the sum of
window * kernel slice, then the bias, then the activation. ``Trace.matches`` says
whether that equals the real forward pass (``|diff| <= 1e-5 * max(1, |value|)``).

Supported: Conv1D/2D/3D (strides, padding, dilation, groups), DepthwiseConv2D, Dense,
MaxPooling and AveragePooling (1D/2D/3D); and, one input value at a time, Flatten, Reshape,
ZeroPadding2D, Dropout (inference), Activation, ReLU, BatchNormalization (inference) and
global pooling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convlens.explain.receptive_field import axis_names
from convlens.explain.render import Block, Renderable, Section, Table
from convlens.shapes import format_shape, padding_amounts

SUPPORTED = ("Conv1D, Conv2D, Conv3D, DepthwiseConv2D, Dense, MaxPooling*, AveragePooling*, "
             "Flatten, Reshape, ZeroPadding2D, Dropout, Activation, ReLU, BatchNormalization, "
             "Global*Pooling*")
SIMPLE_KINDS = ("copy", "elementwise", "batchnorm", "global_pool")
MAX_GRID_CHANNELS = 4
MAX_TABLE_ROWS = 32


@dataclass
class Trace(Renderable):
    """One output value, its input window, the weights it used and how it was summed."""

    layer_index: int
    layer_name: str
    layer_class: str
    kind: str  # "conv", "depthwise", "dense", "max_pool", "average_pool", or SIMPLE_KINDS
    index: tuple
    axis_names: tuple
    output_shape: tuple
    input_shape: tuple
    input_from: str
    value: float
    forward_value: float
    window: np.ndarray  # conv: (*kernel, channels); pool: (*pool,); dense: (inputs,)
    positions: list = field(default_factory=list)  # per spatial axis: input coordinates
    padding_mask: np.ndarray | None = None  # (*kernel,) True where the tap is padding
    input_channels: list = field(default_factory=list)
    kernel: np.ndarray | None = None  # same shape as window
    partial_sums: np.ndarray | None = None  # per input channel (dense: per input)
    bias: float | None = None
    pre_activation: float | None = None
    activation: str = "linear"
    winner: dict | None = None  # max pooling: {"tap": ..., "position": ...}
    count: int | None = None  # average pooling: real cells averaged
    source: tuple | None = None  # SIMPLE_KINDS: the input position read (None: zero padding)
    formula: str = ""  # SIMPLE_KINDS: the computation written out with its numbers

    @property
    def abs_diff(self) -> float:
        return abs(self.value - self.forward_value)

    @property
    def matches(self) -> bool:
        return self.abs_diff <= 1e-5 * max(1.0, abs(self.forward_value))

    # ----- rendering -------------------------------------------------------------------------
    def _where(self) -> str:
        named = ", ".join(f"{n} {i}" for n, i in zip(self.axis_names, self.index))
        return (f"{named} of the output `{format_shape(self.output_shape)}` of layer "
                f"{self.layer_index} '{self.layer_name}' ({self.layer_class})")

    def _window_lines(self) -> list[str]:
        if self.kind == "global_pool":
            return [f"all {self.window.size:,} positions of input channel "
                    f"{self.input_channels[0]}"]
        if self.kind in SIMPLE_KINDS:
            if self.source is None:
                return ["none: this output position is zero padding"]
            what = "values along the last axis at" if self.window.size > 1 else "value at"
            return [f"the input {what} position {self.source} (no batch axis): "
                    + ", ".join(f"{v:.7g}" for v in self.window[:MAX_TABLE_ROWS])
                    + (" ..." if self.window.size > MAX_TABLE_ROWS else "")]
        if self.kind == "dense":
            return [f"the whole input vector: {self.window.size:,} values"]
        lines = []
        names = axis_names(len(self.positions))
        for name, coords in zip(names, self.positions):
            size = self.input_spatial[names.index(name)]
            marked = ", ".join(str(c) if 0 <= c < size else f"{c} (padding)" for c in coords)
            lines.append(f"input {name}s: {marked}")
        channels = self.input_channels
        if len(channels) > 1:
            lines.append(f"input channels {channels[0]} to {channels[-1]} ({len(channels)} "
                         "channels; the filter spans all of them)")
        else:
            lines.append(f"input channel {channels[0]}")
        if self.padding_mask is not None and self.padding_mask.any():
            lines.append(f"{int(self.padding_mask.sum())} tap(s) fall on padding (zeros"
                         + (", never the maximum)" if self.kind == "max_pool" else ")"))
        return lines

    @property
    def input_spatial(self) -> tuple:
        shape = self.input_shape
        if self._channels_first:
            return tuple(shape[2:])
        return tuple(shape[1:-1])

    @property
    def _channels_first(self) -> bool:
        return bool(self.axis_names) and self.axis_names[0] == "channel" and len(
            self.axis_names) > 1

    def _grids(self, array: np.ndarray, label: str) -> list[str]:
        """Number grids of a window or kernel, one per channel (first few channels)."""
        if array.ndim == 1:
            array = array[:, None] if self.kind != "dense" else array[None, :]
        lines = []
        is_conv = self.kind in ("conv", "depthwise")
        channels = array.shape[-1] if is_conv else 1
        for k in range(min(channels, MAX_GRID_CHANNELS)):
            part = array[..., k] if is_conv else array
            if part.ndim == 1:
                part = part[:, None]
            part = part.reshape(part.shape[0], -1) if part.ndim > 2 else part
            if is_conv:
                lines.append(f"{label}, input channel {self.input_channels[k]}:")
            mask = None
            if self.padding_mask is not None and label == "window":
                mask = self.padding_mask.reshape(part.shape)
            for r, row in enumerate(part):
                cells = [
                    "pad" if mask is not None and mask[r, c] else f"{v: .4g}"
                    for c, v in enumerate(row)
                ]
                lines.append("  " + "  ".join(cell.rjust(10) for cell in cells))
        if channels > MAX_GRID_CHANNELS:
            lines.append(f"... {channels - MAX_GRID_CHANNELS} more channel(s) (see .{label})")
        return lines

    def _partial_table(self) -> Table:
        sums = self.partial_sums
        if self.kind == "dense":
            order = np.argsort(-np.abs(sums))[:MAX_TABLE_ROWS]
            rows = [[str(int(i)), f"{self.window[i]:.6g}", f"{self.kernel[i]:.6g}",
                     f"{sums[i]:.6g}"] for i in order]
            return Table(["input", "value", "weight", "value*weight"], rows)
        rows = [[str(ch), f"{s:.6g}"] for ch, s in zip(self.input_channels, sums)]
        if len(rows) > MAX_TABLE_ROWS:
            rows = rows[:MAX_TABLE_ROWS] + [["...", f"{len(sums) - MAX_TABLE_ROWS} more"]]
        return Table(["input channel", "sum of window * kernel"], rows)

    def _result_lines(self) -> list[str]:
        lines = []
        if self.kind in SIMPLE_KINDS:
            lines.append(self.formula)
        elif self.kind in ("conv", "depthwise", "dense"):
            total = float(np.sum(self.partial_sums, dtype=np.float64))
            what = "products" if self.kind == "dense" else "per-channel sums"
            lines.append(f"sum of the {len(self.partial_sums):,} {what} = {total:.7g}")
            if self.bias is not None:
                lines.append(f"+ bias {self.bias:.7g} = pre-activation {self.pre_activation:.7g}")
            else:
                lines.append(f"no bias: pre-activation = {self.pre_activation:.7g}")
            if self.activation in ("softmax", "log_softmax"):
                lines.append(f"{self.activation} over the pre-activations of all "
                             f"{self.output_shape[-1]} entries of the last axis; this entry: "
                             f"{self.value:.7g}")
            elif self.activation == "linear":
                lines.append(f"no activation (linear): value = {self.value:.7g}")
            else:
                lines.append(f"`{self.activation}({self.pre_activation:.7g}) = "
                             f"{self.value:.7g}`")
        elif self.kind == "max_pool":
            lines.append(f"maximum of the window = {self.value:.7g}, at input position "
                         f"{self.winner['position']} (tap {self.winner['tap']})")
        else:
            lines.append(f"mean of {self.count} real cell(s) = {self.value:.7g}")
        lines.append(f"forward pass: {self.forward_value:.7g}; |difference| = "
                     f"{self.abs_diff:.2e}; matches: {'yes' if self.matches else 'NO'}")
        return lines

    def sections(self) -> list[Section]:
        simple = self.kind in SIMPLE_KINDS
        blocks = [Block("Where", [self._where(), f"input of this layer: {self.input_from}"]),
                  Block("Input" if simple else "Input window", self._window_lines(),
                        pre=[] if self.kind == "dense" or simple
                        else self._grids(self.window, "window"))]
        if self.kernel is not None:
            if self.kind == "dense":
                blocks.append(Block("Kernel slice", [
                    f"kernel column {self.index[-1]}: `({self.kernel.size},)`"]))
            else:
                blocks.append(Block("Kernel slice", [
                    f"filter {self.index[self.axis_names.index('channel')]}: "
                    f"`{self.kernel.shape}`"], pre=self._grids(self.kernel, "kernel")))
            title = "Largest products" if self.kind == "dense" else "Partial sums"
            blocks.append(Block(title, [], table=self._partial_table()))
        blocks.append(Block("Result", self._result_lines()))
        return [Section(f"Trace of {self.layer_name}{list(self.index)} = {self.value:.7g}",
                        blocks, css_class="convlens-trace")]

    def to_dict(self) -> dict:
        data = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            data[key] = value.tolist() if isinstance(value, np.ndarray) else value
        data.update(matches=self.matches, abs_diff=self.abs_diff)
        return data


# ----- checks ---------------------------------------------------------------------------------
def _check_x(model, x) -> np.ndarray:
    from convlens.layers.base import as_float32

    x = as_float32(x, "trace")
    expected = model.input_shape
    sample = format_shape(expected[1:])
    if x.ndim != len(expected):
        hint = " Add a batch axis: x[None]." if x.ndim == len(expected) - 1 else ""
        raise ValueError(f"trace expects one input sample as a batch of one, shape "
                         f"(1, {sample[1:]}; received shape {format_shape(x.shape)}.{hint}")
    if x.shape[0] != 1:
        raise ValueError(f"trace expects a batch of exactly one sample; received "
                         f"{x.shape[0]} samples (shape {format_shape(x.shape)}). Pass x[:1].")
    if any(e is not None and e != r for e, r in zip(expected[1:], x.shape[1:])):
        raise ValueError(f"trace: the sample has shape {format_shape(x.shape[1:])}, but model "
                         f"'{model.name}' expects {sample}.")
    return x


def _output_axis_names(layer) -> tuple:
    geometry = getattr(layer, "geometry", None)
    rank = len(layer.output_shape) - 1
    if geometry is not None:
        names = axis_names(rank - 1)
        return (*names, "channel") if geometry.channels_last else ("channel", *names)
    from convlens.layers import Dense

    if isinstance(layer, Dense):
        return (*(f"axis {i + 1}" for i in range(rank - 1)), "unit")
    if rank == 1:
        return ("position",)
    names = axis_names(rank - 1)
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return ("channel", *names)
    return (*names, "channel")


def _check_index(layer, index, names) -> tuple:
    if isinstance(index, (int, np.integer)):
        index = (index,)
    if not isinstance(index, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index
    ):
        raise ValueError(f"trace: `index` must be a tuple of ints ({', '.join(names)}); "
                         f"received {index!r}.")
    sizes = layer.output_shape[1:]
    ranges = ", ".join(f"{n} must be in [0, {s - 1}]" for n, s in zip(names, sizes))
    if len(index) != len(sizes):
        raise ValueError(f"trace: `index` needs {len(sizes)} numbers ({', '.join(names)}) for "
                         f"the output {format_shape(layer.output_shape)} of layer "
                         f"'{layer.name}' (no batch axis); received {tuple(index)}.")
    bad = [n for n, i, s in zip(names, index, sizes) if not 0 <= i < s]
    if bad:
        raise ValueError(f"trace: index {tuple(int(i) for i in index)} is out of range for "
                         f"the output {format_shape(layer.output_shape)} of layer "
                         f"'{layer.name}' ({', '.join(bad)} out of range): {ranges}.")
    return tuple(int(i) for i in index)


# ----- windows --------------------------------------------------------------------------------
def _window(sample, out_position, kernel, strides, dilation, padding, channels):
    """Values at the taps of one output position; padding taps are 0 and marked."""
    spatial = sample.shape[:-1]
    coords, masks = [], []
    for axis, o in enumerate(out_position):
        before = padding_amounts(spatial[axis], kernel[axis], padding, strides[axis],
                                 dilation[axis])[0]
        c = o * strides[axis] + np.arange(kernel[axis]) * dilation[axis] - before
        coords.append(c)
        masks.append((c < 0) | (c >= spatial[axis]))
    clipped = [np.clip(c, 0, n - 1) for c, n in zip(coords, spatial)]
    values = sample[np.ix_(*clipped, np.asarray(channels))]
    pad = np.zeros([len(c) for c in coords], dtype=bool)
    for axis, mask in enumerate(masks):
        shape = [1] * len(coords)
        shape[axis] = -1
        pad = pad | mask.reshape(shape)
    values = np.where(pad[..., None], np.float32(0), values)
    return values, [c.tolist() for c in coords], pad


def _activation_value(layer, vector: np.ndarray, position: int) -> float:
    """The layer's activation on the pre-activations of one position (all channels)."""
    z = vector.astype(np.float32)[None, :]
    return float(np.asarray(layer.activation(z))[0, position])


def _trace_conv(layer, sample, spatial_index, channel):
    from convlens.layers import DepthwiseConv2D

    kernel_all = layer.kernel.value
    in_channels = sample.shape[-1]
    if isinstance(layer, DepthwiseConv2D):
        m = layer.depth_multiplier
        groups, per_group, n_out = in_channels, 1, in_channels * m
        kernel_all = kernel_all.reshape(*layer.kernel_size, 1, in_channels * m)
    else:
        groups, n_out = layer.groups, layer.filters
        per_group = in_channels // groups
    per_filter_group = n_out // groups
    zs = np.zeros(n_out)
    bias = layer.bias.value if layer.use_bias else None
    result = None
    for group in range(groups):
        channels = list(range(group * per_group, (group + 1) * per_group))
        window, positions, pad = _window(sample, spatial_index, layer.kernel_size, layer.strides,
                                         layer.dilation_rate, layer.padding, channels)
        filters = slice(group * per_filter_group, (group + 1) * per_filter_group)
        block = kernel_all[..., filters].astype(np.float64)  # (*k, per_group, filters)
        axes = tuple(range(window.ndim))
        zs[filters] = np.tensordot(window.astype(np.float64), block, axes=(axes, axes))
        if bias is not None:
            zs[filters] += bias[filters]
        if group == channel // per_filter_group:
            kernel = kernel_all[..., channel]  # (*k, per_group)
            partial = (window.astype(np.float64) * kernel).sum(axis=axes[:-1])
            result = (window, positions, pad, channels, kernel, partial)
    window, positions, pad, channels, kernel, partial = result
    b = None if bias is None else float(bias[channel])
    pre = float(partial.sum() + (b or 0.0))
    zs[channel] = pre
    return dict(window=window, positions=positions, padding_mask=pad, input_channels=channels,
                kernel=kernel, partial_sums=partial, bias=b, pre_activation=pre,
                value=_activation_value(layer, zs, channel))


def _trace_pool(layer, sample, spatial_index, channel):
    ones = (1,) * len(layer.pool_size)
    window, positions, pad = _window(sample, spatial_index, layer.pool_size, layer.strides,
                                     ones, layer.padding, [channel])
    window = window[..., 0]
    real = window[~pad].astype(np.float64)
    result = dict(window=window, positions=positions, padding_mask=pad,
                  input_channels=[channel])
    if layer.mode == "max":
        masked = np.where(pad, -np.inf, window.astype(np.float64))
        tap = tuple(int(t) for t in np.unravel_index(int(np.argmax(masked)), masked.shape))
        position = tuple(p[t] for p, t in zip(positions, tap))
        result.update(value=float(masked[tap]), winner={"tap": tap, "position": position})
    else:
        result.update(value=float(real.mean()), count=int(real.size))
    return result


def _trace_dense(layer, vector, unit):
    kernel_all = layer.kernel.value.astype(np.float64)
    products = vector.astype(np.float64) * kernel_all[:, unit]
    zs = vector.astype(np.float64) @ kernel_all
    bias = None
    if layer.use_bias:
        bias = float(layer.bias.value[unit])
        zs = zs + layer.bias.value
    pre = float(products.sum() + (bias or 0.0))
    zs[unit] = pre
    return dict(window=vector, kernel=layer.kernel.value[:, unit], partial_sums=products,
                bias=bias, pre_activation=pre, value=_activation_value(layer, zs, unit))


def _simple_kind(layer) -> str | None:
    from convlens.layers import (
        Activation,
        BatchNormalization,
        Dropout,
        Flatten,
        ReLU,
        Reshape,
        ZeroPadding2D,
    )
    from convlens.layers.pooling import GlobalPooling

    table = [((Flatten, Reshape, ZeroPadding2D, Dropout), "copy"),
             ((Activation, ReLU), "elementwise"), (BatchNormalization, "batchnorm"),
             (GlobalPooling, "global_pool")]
    return next((kind for cls, kind in table if isinstance(layer, cls)), None)


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


def _trace_simple(layer, h, index):
    from convlens.layers import ReLU

    kind, sample = _simple_kind(layer), h[0].astype(np.float64)
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
    if isinstance(layer, ReLU):
        value = x if x >= layer.threshold else layer.negative_slope * (x - layer.threshold)
        if layer.max_value is not None:
            value = min(value, layer.max_value)
        value += 0.0  # no "-0" when the negative slope is 0
        return dict(kind=kind, window=np.array([x]), source=index, value=float(value),
                    activation="relu", formula=f"relu({x:.7g}) = {value:.7g}")
    name = layer.activation.name
    if name in ("softmax", "log_softmax"):
        vector = sample[index[:-1]]
        value = _activation_value(layer, vector, index[-1])
        return dict(kind=kind, window=vector, source=index[:-1], value=value, activation=name,
                    formula=f"{name} over the {vector.size} values of the last axis; entry "
                            f"{index[-1]} = {value:.7g}")
    value = _activation_value(layer, np.array([x]), 0)
    return dict(kind=kind, window=np.array([x]), source=index, value=value, activation=name,
                formula=f"{name}({x:.7g}) = {value:.7g}")


def trace(model, layer, index, x) -> Trace:
    """Trace output ``index`` of ``layer`` (an index into ``model.layers`` or a name) for ``x``.

    ``index`` has no batch axis: ``(row, col, channel)`` for channels_last 2D layers,
    ``(channel, row, col)`` for channels_first, ``(unit,)`` for Dense. ``x`` is one sample
    as a batch of one, shape ``(1, *model.input_shape[1:])``.
    """
    from convlens.explain.derivation import resolve_layer_index
    from convlens.layers import Conv, Dense, DepthwiseConv2D
    from convlens.layers.pooling import Pooling

    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built; start it with Input(...) or call "
                         "model.build(...) before tracing.")
    position = resolve_layer_index(model, layer)
    target = model.layers[position]
    kinds = {Conv: "conv", DepthwiseConv2D: "depthwise", Dense: "dense"}
    kind = next((k for cls, k in kinds.items() if isinstance(target, cls)), None)
    if isinstance(target, Pooling):
        kind = "max_pool" if target.mode == "max" else "average_pool"
    if kind is None and _simple_kind(target) is not None:
        kind = "simple"
    if kind is None:
        raise ValueError(f"trace supports {SUPPORTED}; layer {position} '{target.name}' is a "
                         f"{type(target).__name__}. Trace a neighbouring layer instead.")
    names = _output_axis_names(target)
    index = _check_index(target, index, names)
    x = _check_x(model, x)
    h = x
    for earlier in model.layers[:position]:
        h = earlier.call(h)
    forward = target.call(h)
    forward_value = float(forward[(0, *index)])
    if kind == "simple":
        terms = _trace_simple(target, h, index)
        kind = terms.pop("kind")
    elif kind == "dense":
        terms = _trace_dense(target, h[0][index[:-1]], index[-1])
    else:
        sample = target.geometry.to_last(h)[0]  # (*spatial, C)
        if target.geometry.channels_last:
            spatial_index, channel = index[:-1], index[-1]
        else:
            spatial_index, channel = index[1:], index[0]
        compute = _trace_conv if kind in ("conv", "depthwise") else _trace_pool
        terms = compute(target, sample, spatial_index, channel)
    source = ("the model input" if position == 0 else
              f"the output of layer {position - 1} '{model.layers[position - 1].name}'")
    terms.setdefault("activation",
                     getattr(getattr(target, "activation", None), "name", "linear"))
    return Trace(
        layer_index=position, layer_name=target.name, layer_class=type(target).__name__,
        kind=kind, index=index, axis_names=names, output_shape=tuple(target.output_shape),
        input_shape=tuple(target.input_shape), input_from=f"{source}, shape "
        f"{format_shape(h.shape)}", forward_value=forward_value, **terms,
    )
