"""Traces of layers whose output value is computed from a window of their input.

Conv1D/2D/3D and DepthwiseConv2D: per input channel the sum of window * kernel slice,
then the bias. SeparableConv2D: per input channel a depthwise value (its own single-channel
window * its own filter), then the pointwise sum of those values * weights, then the bias.
Max and average pooling: one channel's window. Dense: the whole input vector is the window.

Each ``trace_*`` returns the terms of a ``Trace`` (a dict); ``window_blocks(trace)`` renders
the window, the weights and the partial sums of one.
"""

from __future__ import annotations

import numpy as np

from convlens.explain.receptive_field import axis_names
from convlens.explain.render import Block, Table
from convlens.explain.trace_values import activation_value
from convlens.kinds import kind_of

MAX_GRID_CHANNELS = 4
MAX_TABLE_ROWS = 32
WINDOW_KINDS = ("conv", "depthwise", "separable", "max_pool", "average_pool", "dense")


# ----- computing ------------------------------------------------------------------------------
def window(sample, out_position, record, channels):
    """Values at the taps of one output position; padding taps are 0 and marked.

    ``record`` is the layer's window record (``convlens.shapes.Window``).
    """
    spatial = sample.shape[:-1]
    pads = record.pads_for(spatial)
    coords, masks = [], []
    for axis, o in enumerate(out_position):
        stride, dilation = record.strides[axis], record.dilation[axis]
        c = o * stride + np.arange(record.kernel[axis]) * dilation - pads[axis][0]
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


def trace_conv(layer, sample, spatial_index, channel) -> dict:
    kernel_all = layer.kernel.value
    in_channels = sample.shape[-1]
    if kind_of(layer).trace == "depthwise":
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
        values, positions, pad = window(sample, spatial_index, layer.window, channels)
        filters = slice(group * per_filter_group, (group + 1) * per_filter_group)
        block = kernel_all[..., filters].astype(np.float64)  # (*k, per_group, filters)
        axes = tuple(range(values.ndim))
        zs[filters] = np.tensordot(values.astype(np.float64), block, axes=(axes, axes))
        if bias is not None:
            zs[filters] += bias[filters]
        if group == channel // per_filter_group:
            kernel = kernel_all[..., channel]  # (*k, per_group)
            partial = (values.astype(np.float64) * kernel).sum(axis=axes[:-1])
            result = (values, positions, pad, channels, kernel, partial)
    values, positions, pad, channels, kernel, partial = result
    b = None if bias is None else float(bias[channel])
    pre = float(partial.sum() + (b or 0.0))
    zs[channel] = pre
    return dict(window=values, positions=positions, padding_mask=pad, input_channels=channels,
                kernel=kernel, partial_sums=partial, bias=b, pre_activation=pre,
                value=activation_value(layer, zs, channel))


def trace_separable(layer, sample, spatial_index, channel) -> dict:
    """Depthwise stage per input channel, then the pointwise sum for output ``channel``."""
    in_channels, m = sample.shape[-1], layer.depth_multiplier
    channels = list(range(in_channels))
    values, positions, pad = window(sample, spatial_index, layer.window, channels)
    depthwise = layer.depthwise.kernel.value  # (*kernel, C_in, m)
    # depthwise_values[c, j]: input channel c's window through its own filter j
    taps = tuple(range(values.ndim - 1))
    depthwise_values = (values.astype(np.float64)[..., None] * depthwise).sum(axis=taps)
    pointwise = layer.pointwise.kernel.value  # (1, [1,] C_in*m, filters)
    pointwise = pointwise.reshape(pointwise.shape[-2:]).astype(np.float64)
    maps = depthwise_values.reshape(-1)  # depthwise map c*m + j
    zs = maps @ pointwise
    bias = None
    if layer.use_bias:
        bias = float(layer.pointwise.bias.value[channel])
        zs = zs + layer.pointwise.bias.value
    products = maps * pointwise[:, channel]
    pre = float(products.sum() + (bias or 0.0))
    zs[channel] = pre
    return dict(window=values, positions=positions, padding_mask=pad, input_channels=channels,
                kernel=depthwise, depthwise_values=depthwise_values,
                pointwise_weights=pointwise[:, channel].reshape(in_channels, m),
                partial_sums=products, bias=bias, pre_activation=pre,
                value=activation_value(layer, zs, channel))


def trace_pool(layer, sample, spatial_index, channel) -> dict:
    values, positions, pad = window(sample, spatial_index, layer.window, [channel])
    values = values[..., 0]
    real = values[~pad].astype(np.float64)
    result = dict(window=values, positions=positions, padding_mask=pad,
                  input_channels=[channel])
    if layer.mode == "max":
        masked = np.where(pad, -np.inf, values.astype(np.float64))
        tap = tuple(int(t) for t in np.unravel_index(int(np.argmax(masked)), masked.shape))
        position = tuple(p[t] for p, t in zip(positions, tap))
        result.update(value=float(masked[tap]), winner={"tap": tap, "position": position})
    else:
        result.update(value=float(real.mean()), count=int(real.size))
    return result


def trace_dense(layer, vector, unit) -> dict:
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
                bias=bias, pre_activation=pre, value=activation_value(layer, zs, unit))


# ----- rendering ------------------------------------------------------------------------------
def _window_lines(t) -> list[str]:
    if t.kind == "dense":
        return [f"the whole input vector: {t.window.size:,} values"]
    lines = []
    names = axis_names(len(t.positions))
    for name, coords, size in zip(names, t.positions, t.input_spatial):
        marked = ", ".join(str(c) if 0 <= c < size else f"{c} (padding)" for c in coords)
        lines.append(f"input {name}s: {marked}")
    channels = t.input_channels
    if len(channels) > 1:
        spans = ("each depthwise filter sees only its own channel" if t.kind == "separable"
                 else "the filter spans all of them")
        lines.append(f"input channels {channels[0]} to {channels[-1]} ({len(channels)} "
                     f"channels; {spans})")
    else:
        lines.append(f"input channel {channels[0]}")
    if t.padding_mask is not None and t.padding_mask.any():
        lines.append(f"{int(t.padding_mask.sum())} tap(s) fall on padding (zeros"
                     + (", never the maximum)" if t.kind == "max_pool" else ")"))
    return lines


def _grid(part: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
    """Rows of numbers of a 1D/2D/3D array (more than 2 axes: trailing axes flattened)."""
    part = part[:, None] if part.ndim == 1 else part.reshape(part.shape[0], -1)
    mask = None if mask is None else mask.reshape(part.shape)
    return ["  " + "  ".join(("pad" if mask is not None and mask[r, c] else f"{v: .4g}")
                             .rjust(10) for c, v in enumerate(row))
            for r, row in enumerate(part)]


def _grids(t, array: np.ndarray, label: str) -> list[str]:
    """Number grids of a window or kernel, one per input channel (first few channels)."""
    mask = t.padding_mask if label == "window" else None
    if t.kind in ("max_pool", "average_pool"):
        return _grid(array, mask)
    lines = []
    channels = array.shape[-1]
    for k in range(min(channels, MAX_GRID_CHANNELS)):
        lines.append(f"{label}, input channel {t.input_channels[k]}:")
        lines += _grid(array[..., k], mask)
    if channels > MAX_GRID_CHANNELS:
        lines.append(f"... {channels - MAX_GRID_CHANNELS} more channel(s), not printed; the "
                     "partial sums below count every channel")
    return lines


def capped_rows(rows: list[list[str]], total: int, what: str) -> list[list[str]]:
    """The first MAX_TABLE_ROWS rows, then one row saying how many more there are."""
    if total <= MAX_TABLE_ROWS:
        return rows
    return rows[:MAX_TABLE_ROWS] + [["...", f"{total - MAX_TABLE_ROWS} more {what}"]
                                    + [""] * (len(rows[0]) - 2)]


def _partial_table(t) -> Table:
    sums = t.partial_sums
    if t.kind == "dense":
        order = np.argsort(-np.abs(sums))[:MAX_TABLE_ROWS]
        rows = [[str(int(i)), f"{t.window[i]:.6g}", f"{t.kernel[i]:.6g}", f"{sums[i]:.6g}"]
                for i in order]
        return Table(["input", "value", "weight", "value*weight"], rows)
    rows = [[str(ch), f"{s:.6g}"] for ch, s in zip(t.input_channels, sums)]
    return Table(["input channel", "sum of window * kernel"],
                 capped_rows(rows[:MAX_TABLE_ROWS + 1], len(rows), "channel(s)"))


def _separable_blocks(t) -> list[Block]:
    m = t.kernel.shape[-1]
    stage = []
    for c in range(min(len(t.input_channels), MAX_GRID_CHANNELS)):
        for j in range(m):
            stage.append(f"depthwise filter {j} of input channel {c}:")
            stage += _grid(t.kernel[..., c, j])
            stage.append(f"  sum of window channel {c} * this filter = "
                         f"{t.depthwise_values[c, j]:.6g}")
    if len(t.input_channels) > MAX_GRID_CHANNELS:
        stage.append(f"... {len(t.input_channels) - MAX_GRID_CHANNELS} more channel(s), not "
                     "printed; the table below counts every channel")
    filter_index = t.index[t.axis_names.index("channel")]
    rows = [[str(c * m + j), str(c), str(j), f"{t.depthwise_values[c, j]:.6g}",
             f"{t.pointwise_weights[c, j]:.6g}", f"{t.partial_sums[c * m + j]:.6g}"]
            for c in range(len(t.input_channels)) for j in range(m)][:MAX_TABLE_ROWS + 1]
    table = Table(["depthwise map", "input channel", "filter j", "depthwise value",
                   "pointwise weight", "product"], capped_rows(rows, t.partial_sums.size, "maps"))
    several = f"{m} filters" if m > 1 else "filter"
    return [
        Block("Depthwise stage", [
            f"Each input channel goes through its own {several} of "
            f"{'x'.join(map(str, t.kernel.shape[:-2]))} (depthwise kernel "
            f"`{t.kernel.shape}`), alone: nothing "
            f"is summed across channels here. {len(t.input_channels)}*{m} = "
            f"{t.partial_sums.size} depthwise values at this position."], pre=stage),
        Block("Pointwise sum", [
            f"Pointwise filter {filter_index} (1x1x{t.partial_sums.size}) weighs every "
            "depthwise value at this position; the products are summed."], table=table),
    ]


def window_blocks(t) -> list[Block]:
    """Input window, kernel slice and partial sums of a window trace."""
    blocks = [Block("Input window", _window_lines(t),
                    pre=[] if t.kind == "dense" else _grids(t, t.window, "window"))]
    if t.kind == "separable":
        return blocks + _separable_blocks(t)
    if t.kernel is None:
        return blocks
    if t.kind == "dense":
        blocks.append(Block("Kernel slice", [
            f"kernel column {t.index[-1]}: `({t.kernel.size},)`"]))
    else:
        blocks.append(Block("Kernel slice", [
            f"filter {t.index[t.axis_names.index('channel')]}: `{t.kernel.shape}`"],
            pre=_grids(t, t.kernel, "kernel")))
    title = "Largest products" if t.kind == "dense" else "Partial sums"
    blocks.append(Block(title, [], table=_partial_table(t)))
    return blocks
