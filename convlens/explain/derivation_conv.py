"""Derivations of the layers that slide a window over their input: Conv1D/2D/3D,
DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, pooling and global pooling.

Each ``_explain_*(layer, exp)`` fills a ``LayerExplanation``'s ``shape_steps``, ``mechanism``
and ``weights`` from the layer's own numbers; sizes are written by ``convlens.shapes``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from convlens.explain.receptive_field import axis_names
from convlens.explain.wording import (
    _activation_line,
    _box,
    _count,
    _int_or_tuple,
    _prod,
    _weights,
)
from convlens.shapes import (
    conv_output_formula,
    deconv_output_formula,
    effective_kernel_size,
    format_shape,
)

if TYPE_CHECKING:
    from convlens.explain.layer_explanation import LayerExplanation


def _geometry_parts(layer, shape):
    geometry = getattr(layer, "geometry", None)
    if geometry is not None:
        return geometry.spatial(shape), geometry.channels(shape)
    return tuple(shape[1:-1]), shape[-1]


def _conv_steps(layer, kernel, dilation) -> list[dict]:
    spatial, _ = _geometry_parts(layer, layer.input_shape)
    out_spatial, _ = _geometry_parts(layer, layer.output_shape)
    steps = []
    for axis, name in enumerate(axis_names(len(spatial))):
        n = spatial[axis]
        formula = (
            "unknown (input size not fixed)" if n is None
            else conv_output_formula(n, kernel[axis], layer.padding, layer.strides[axis],
                                     dilation[axis])
        )
        steps.append({"axis": name, "input": n, "output": out_spatial[axis], "formula": formula})
    return steps


def _movement_lines(layer, kernel, dilation, what="window") -> list[str]:
    spatial, _ = _geometry_parts(layer, layer.input_shape)
    names = axis_names(len(spatial))
    lines = []
    unit = "steps" if len(spatial) == 1 else "pixels"
    pooling = what == "window"
    if max(layer.strides) > 1:
        lines.append(f"strides={_int_or_tuple(layer.strides)}: the {what} moves "
                     f"{_int_or_tuple(layer.strides)} input {unit} at a time, so neighbouring "
                     f"outputs read windows that far apart.")
    if max(dilation) > 1:
        spans = tuple(effective_kernel_size(k, d) for k, d in zip(kernel, dilation))
        shape = _filter_shape(kernel)
        lines.append(f"dilation_rate={_int_or_tuple(dilation)}: neighbouring taps are "
                     f"{_int_or_tuple(dilation)} input {unit} apart, so the {shape} {what} "
                     f"spans {_box(spans)} input {unit}, with gaps between its taps.")
    pads = layer.window.padding  # None on an axis whose size is not fixed
    if layer.padding != "valid" and None not in pads:
        listed = ", ".join(f"{name}s {pad}" for name, pad in zip(names, pads))
        if pooling:
            lines.append(f"padding='{layer.padding}': the window may hang over the edge by "
                         f"(before, after) {listed} cells; those cells are ignored.")
        else:
            lines.append(f"padding='{layer.padding}': zeros added (before, after): {listed}.")
        if layer.padding == "causal":
            lines.append("The zeros go before the sequence only, so output step t reads input "
                         "steps up to t and never a later one.")
    elif layer.padding == "valid":
        lines.append(f"padding='valid': nothing added; the {what} stays inside the input.")
    return lines


def _explain_conv(layer, exp: LayerExplanation) -> None:
    _, in_channels = _geometry_parts(layer, layer.input_shape)
    kernel, filters, groups = tuple(layer.kernel_size), layer.filters, layer.groups
    per_group = in_channels // groups
    block = _box((*kernel, per_group))
    taps = math.prod(kernel) * per_group
    exp.shape_steps = _conv_steps(layer, kernel, layer.dilation_rate)
    exp.shape_steps.append({"axis": "channels", "input": in_channels, "output": filters,
                            "formula": f"{filters} filters -> {filters} output maps"})
    if groups == 1:
        lines = [
            f"One filter is a {block} block: a window of {_box(kernel)} positions that spans "
            + ("the single input channel." if in_channels == 1
               else f"all {in_channels} input channels."),
            f"Each output value is one filter's sum over the {_prod((*kernel, per_group))} = "
            f"{taps:,} products of its window"
            + (", plus the filter's bias" if layer.use_bias else "")
            + (f"; the {in_channels} channels are summed together, not kept apart."
               if in_channels > 1 else "."),
        ]
    else:
        per_filter_group = filters // groups
        lines = [
            f"groups={groups}: the {in_channels} input channels are split into {groups} groups "
            f"of {per_group}; the {filters} filters into {groups} groups of "
            f"{per_filter_group}. Filter f sees only input group f // {per_filter_group}.",
            f"One filter is a {block} block spanning the {per_group} channels of its group; "
            f"each output value is its sum over {_prod((*kernel, per_group))} = {taps:,} "
            "products" + (" plus its bias." if layer.use_bias else "."),
        ]
    separate = in_channels * (filters // groups)
    lines.append(
        f"There are {filters} filters, so there are {filters} output maps: the channel count "
        f"becomes {filters}"
        + (f", not {in_channels}*{filters // groups} = {separate:,}." if separate != filters
           else ".")
    )
    exp.mechanism = lines + _movement_lines(layer, kernel, layer.dilation_rate, "filter")
    exp.mechanism += _activation_line(layer)
    kernel_axes = _kernel_axes(kernel)
    channel_axis = "input channels" if groups == 1 else "input channels per group"
    meanings = {
        "kernel": f"{filters} filters of {block} (axes: {kernel_axes} x {channel_axis} x "
                  "filters)",
        "bias": "one number per filter, added to every value of its map",
    }
    exp.weights = _weights(layer, meanings)


def _filter_shape(kernel) -> str:
    """``(3,)`` -> ``'3-tap'``, ``(3, 3)`` -> ``'3x3'``: how a filter's window is named."""
    return f"{kernel[0]}-tap" if len(kernel) == 1 else _box(kernel)


def _kernel_axes(kernel) -> str:
    return " x ".join(f"kernel {name}s" for name in axis_names(len(kernel)))


def _explain_depthwise(layer, exp: LayerExplanation) -> None:
    _, in_channels = _geometry_parts(layer, layer.input_shape)
    kernel, m = tuple(layer.kernel_size), layer.depth_multiplier
    exp.shape_steps = _conv_steps(layer, kernel, layer.dilation_rate)
    exp.shape_steps.append({"axis": "channels", "input": in_channels, "output": in_channels * m,
                            "formula": f"{in_channels}*{m} = {in_channels * m:,}"})
    exp.mechanism = [
        f"Each of the {in_channels} input channels is convolved on its own with "
        f"{_own_filters(m, kernel)} (depth_multiplier={m}); nothing is summed across "
        "channels.",
        f"Output channel c*{m} + j is input channel c through its filter j: "
        f"{in_channels}*{m} = {in_channels * m:,} output maps, each a sum of "
        + (f"{_prod(kernel)} = " if len(kernel) > 1 else "") + f"{math.prod(kernel)} products"
        + (" plus a bias." if layer.use_bias else "."),
    ] + _movement_lines(layer, kernel, layer.dilation_rate, "filter") + _activation_line(layer)
    exp.weights = _weights(layer, {
        "kernel": f"axes: {_kernel_axes(kernel)} x input channels x depth_multiplier; one "
                  f"{_filter_shape(kernel)} filter per (channel, j)",
        "bias": "one number per output map",
    })


def _own_filters(multiplier: int, kernel) -> str:
    if multiplier == 1:
        return f"its own {_filter_shape(kernel)} filter"
    return f"its own {multiplier} {_filter_shape(kernel)} filters"


def _explain_separable(layer, exp: LayerExplanation) -> None:
    _, in_channels = _geometry_parts(layer, layer.input_shape)
    kernel, m, filters = tuple(layer.kernel_size), layer.depth_multiplier, layer.filters
    middle = layer.depthwise.output_shape
    ones = _filter_shape((1,) * len(kernel))
    pointwise_block = _box((*(1,) * len(kernel), in_channels * m))
    exp.shape_steps = _conv_steps(layer, kernel, layer.dilation_rate)
    exp.shape_steps.append({"axis": "channels", "input": in_channels, "output": filters,
                            "formula": f"{in_channels}*{m} depthwise maps -> {filters} filters"})
    exp.mechanism = [
        "Two convolutions in one layer.",
        f"1. Depthwise: each of the {in_channels} input channels goes through "
        f"{_own_filters(m, kernel)}, no sum across channels -> "
        f"`{format_shape(middle)}`.",
        f"2. Pointwise: a {ones} convolution; each of the {filters} filters is a "
        f"{pointwise_block} block that sums over all {in_channels * m} depthwise maps"
        + (" plus its bias" if layer.use_bias else "") + f" -> {filters} output maps.",
    ] + _movement_lines(layer, kernel, layer.dilation_rate, "depthwise filter")
    exp.mechanism += _activation_line(layer)
    exp.weights = _weights(layer, {
        "depthwise_kernel": f"axes: {_kernel_axes(kernel)} x input channels x "
                            f"depth_multiplier; one {_filter_shape(kernel)} filter per "
                            "(channel, j)",
        "pointwise_kernel": f"{filters} filters of {pointwise_block}",
        "bias": "one number per filter",
    })


def _explain_transpose(layer, exp: LayerExplanation) -> None:
    spatial, in_channels = _geometry_parts(layer, layer.input_shape)
    out_spatial, _ = _geometry_parts(layer, layer.output_shape)
    kernel, filters = tuple(layer.kernel_size), layer.filters
    for axis, name in enumerate(axis_names(len(spatial))):
        n = spatial[axis]
        pad = None if layer.output_padding is None else layer.output_padding[axis]
        formula = ("unknown (input size not fixed)" if n is None else deconv_output_formula(
            n, kernel[axis], layer.padding, layer.strides[axis], layer.dilation_rate[axis], pad))
        exp.shape_steps.append({"axis": name, "input": n, "output": out_spatial[axis],
                                "formula": formula})
    exp.shape_steps.append({"axis": "channels", "input": in_channels, "output": filters,
                            "formula": f"{filters} filters -> {filters} output maps"})
    crops = layer.window.padding
    spans = tuple(effective_kernel_size(k, d) for k, d in zip(kernel, layer.dilation_rate))
    patch = (f"{_box(spans)} patch" if spans == kernel
             else f"{_box(kernel)} taps, spread over a {_box(spans)} patch,")
    exp.mechanism = [
        "A transposed convolution runs a convolution backwards: each input position scatters "
        "into a patch of the output instead of gathering a window.",
        f"One filter is a {_box((*kernel, in_channels))} block. Input position p multiplies its "
        f"{in_channels} channel values by the filter and adds the resulting {patch} "
        f"into the filter's output map at p*{_int_or_tuple(layer.strides)}; overlapping "
        "patches add up, so the input channels are summed, not kept apart.",
        f"{_count(filters, 'filter')}, so {_count(filters, 'output map')}"
        + (", each plus its filter's bias." if layer.use_bias else "."),
    ]
    if any(sum(c) for c in crops):
        listed = ", ".join(f"{name}s {c}" for name, c in zip(axis_names(len(spatial)), crops))
        exp.mechanism.append(f"padding='{layer.padding}': the full result is cropped by "
                             f"(before, after) {listed}.")
    exp.mechanism += _activation_line(layer)
    exp.weights = _weights(layer, {
        "kernel": f"axes: {_kernel_axes(kernel)} x filters x input channels; {filters} "
                  f"filters of {_box((*kernel, in_channels))}",
        "bias": "one number per filter",
    })


def _explain_pooling(layer, exp: LayerExplanation) -> None:
    _, channels = _geometry_parts(layer, layer.input_shape)
    pool = tuple(layer.pool_size)
    ones = (1,) * len(pool)
    exp.shape_steps = _conv_steps(layer, pool, ones)
    exp.shape_steps.append({"axis": "channels", "input": channels, "output": channels,
                            "formula": f"{channels} (each channel pooled on its own)"})
    what = ("keeps the largest value (a padded cell never wins)" if layer.mode == "max"
            else "takes the mean of the real cells (padded cells are not counted)")
    exp.mechanism = [
        f"A {_box(pool)} window slides over each of the {channels} channels separately and "
        f"{what}: {math.prod(pool)} values -> 1.",
        f"Channels never mix, so {channels} channels stay {channels}. No weights.",
    ] + _movement_lines(layer, pool, ones, "window")


def _explain_global(layer, exp: LayerExplanation) -> None:
    spatial, channels = _geometry_parts(layer, layer.input_shape)
    known = all(n is not None for n in spatial)
    count = "all"
    if known:
        count = (f"{_prod(spatial)} = {math.prod(spatial):,}" if len(spatial) > 1
                 else f"{spatial[0]:,}")
    exp.shape_steps = [{"axis": "spatial", "input": tuple(spatial), "output": None,
                        "formula": f"{_box(spatial)} -> removed"
                        + (" (kept as size 1)" if layer.keepdims else "")}]
    word = "mean" if layer.mode == "avg" else "maximum"
    exp.mechanism = [
        f"The {word} over all {count} positions of each of the {channels} channels: one number "
        "per channel. No weights.",
        "Every output value depends on its channel's whole map: the receptive field becomes "
        "the whole input.",
    ]

