"""Per-layer explanations: words and numbers, every number read from the layer object.

``explain_layer(layer)`` and ``explain_model(model)`` return objects that print as
plain text and render as Markdown (``to_markdown``) and HTML (``to_html``). They also
keep the numbers as fields (``output_shape``, ``params``, ``macs``, ``shape_steps``,
``receptive_field``, ``contrast``...) for the CLI, the web page and the tests.

Output sizes are written with ``convlens.shapes`` (``conv_output_formula``...); the
receptive field comes from ``receptive_field.py`` and the costs from ``cost.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from convlens.explain import cost as cost_module
from convlens.explain.receptive_field import (
    ReceptiveField,
    _number,
    axis_names,
    layer_receptive_field,
    receptive_fields,
)
from convlens.explain.render import Block, Renderable, Section, Table
from convlens.shapes import (
    conv_output_formula,
    deconv_output_formula,
    deconv_padding_amounts,
    effective_kernel_size,
    format_shape,
    padding_amounts,
)


def _prod(values) -> str:
    return "*".join(str(v) for v in values)


def _box(values) -> str:
    return "x".join(str(v) for v in values)


def _count(number: int, word: str, plural: str | None = None) -> str:
    """``_count(1, 'unit')`` -> ``'1 unit'``; ``_count(10, 'unit')`` -> ``'10 units'``."""
    return f"{number:,} {word if number == 1 else plural or word + 's'}"


def _int_or_tuple(values) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else str(values)


# ----- weights and parameters --------------------------------------------------------------
def params_formula(weights) -> tuple[str, int, int]:
    """``('3*3*32*64 + 64 = 18,496', 18496, 18496)``: formula, total and trainable count."""
    total = sum(int(w.size) for w in weights)
    trainable = sum(int(w.size) for w in weights if w.trainable)
    if not weights:
        return "0 (no weights)", 0, 0
    shapes = [tuple(w.shape) for w in weights]
    if len(shapes) > 1 and len(set(shapes)) == 1 and len(shapes[0]) == 1:
        text = f"{len(shapes)}*{shapes[0][0]} = {total:,}"
    else:
        text = " + ".join(_prod(s) for s in shapes)
        text = f"{text} = {total:,}" if (len(shapes) > 1 or len(shapes[0]) > 1) else f"{total:,}"
    if trainable != total:
        text += f", of which {trainable:,} trainable"
    return text, total, trainable


# ----- the misconception, side by side ------------------------------------------------------
@dataclass
class Contrast:
    """A conv layer beside the layer that applies each 2D kernel slice to each map separately.

    Both sides are real layers built on the conv's input shape; ``max_abs_diff`` is the
    largest difference between the conv output (no bias, no activation) and the
    per-channel outputs of the separate-maps layer summed over each filter's channels.
    """

    conv_name: str
    conv_output_shape: tuple
    conv_kernel_shape: tuple
    conv_kernel_weights: int
    in_channels: int
    filters: int
    groups: int
    multiplier: int
    separate_layer: str  # e.g. "DepthwiseConv2D(kernel_size=3, depth_multiplier=64)"
    separate_class: str
    separate_output_shape: tuple
    separate_kernel_shape: tuple
    separate_kernel_weights: int
    separate_params: int
    check_input_shape: tuple
    max_abs_diff: float
    data_format: str = "channels_last"

    @property
    def same_weight_count(self) -> bool:
        return self.conv_kernel_weights == self.separate_kernel_weights

    @property
    def check_passed(self) -> bool:
        return self.max_abs_diff <= 1e-4

    def channel_product(self) -> str:
        return f"{self.in_channels}*{self.multiplier}"

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(same_weight_count=self.same_weight_count, check_passed=self.check_passed)
        return data

    def block(self) -> Block:
        sep_sample = format_shape(self.separate_output_shape[1:])
        if self.data_format == "channels_last":
            sizes = [*self.separate_output_shape[1:-1], self.channel_product()]
        else:
            sizes = [self.channel_product(), *self.separate_output_shape[2:]]
        product = "(" + ", ".join(str(v) for v in sizes) + ")"
        per_filter = self.in_channels // self.groups
        separate = self.in_channels * self.multiplier
        same = " -- the same count" if self.same_weight_count else ""
        if per_filter == 1:
            wiring = (f"{same}: each filter sees a single input channel, so there is nothing to "
                      f"sum across channels and both layers give {self.filters} maps. The "
                      "misconception only changes the answer when a filter spans several "
                      "channels.")
            check = "the separate-maps output equals this layer's output"
        else:
            wiring = (f"{same}{', wired differently' if same else ''}: each filter adds its "
                      f"{per_filter} per-channel results into one map, so there are "
                      f"{self.filters} maps, not {separate:,}.")
            check = (f"summing the {per_filter} per-channel maps of each filter reproduces this "
                     "layer's output")
        lines = [
            "Misconception: each single-channel kernel slice is applied to each input map "
            "separately and the results are kept apart.",
            f"That is exactly `{self.separate_layer}` on the same input: output "
            f"`{format_shape(self.separate_output_shape)}`, i.e. `{sep_sample} = {product}` "
            f"per sample; kernel `{self.separate_kernel_shape}`: "
            f"{self.separate_kernel_weights:,} kernel weights.",
            f"The real layer '{self.conv_name}': output `{format_shape(self.conv_output_shape)}`;"
            f" kernel `{self.conv_kernel_shape}`: {self.conv_kernel_weights:,} kernel weights"
            + wiring,
            f"Check: with the separate-maps kernel set to this layer's kernel, {check} "
            f"(before bias and activation) on a random input of shape "
            f"`{format_shape(self.check_input_shape)}`: max |difference| = "
            f"{self.max_abs_diff:.2e}.",
        ]
        return Block("Contrast: one filter per input map, results kept apart", lines)


def _check_size(n, span: int) -> int:
    if n is not None and n <= 32:
        return int(n)
    return max(span, 8)


def build_contrast(layer) -> Contrast:
    """Build the separate-maps layer for a conv layer and run the summation check."""
    from convlens.layers import Conv, Conv1D, Conv3D, DepthwiseConv2D

    if not isinstance(layer, Conv):
        raise ValueError(
            f"The contrast applies to convolution layers (Conv1D/2D/3D); layer '{layer.name}' "
            f"is a {type(layer).__name__}."
        )
    in_channels = layer.geometry.channels(layer.input_shape)
    groups, filters = layer.groups, layer.filters
    multiplier = filters // groups
    common = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate)
    rank = layer.rank
    if rank == 2:
        def make_separate(data_format, name):
            return DepthwiseConv2D(layer.kernel_size, depth_multiplier=multiplier,
                                   data_format=data_format, use_bias=False, name=name, **common)
        extra = "".join(
            f", {key}={_int_or_tuple(value)!s}" if key != "padding" else f", padding={value!r}"
            for key, value in common.items()
            if (key == "padding" and value != "valid")
            or (key != "padding" and max(value) > 1)
        )
        description = (f"DepthwiseConv2D(kernel_size={_int_or_tuple(layer.kernel_size)}, "
                       f"depth_multiplier={multiplier}{extra})")
    else:
        cls = {1: Conv1D, 3: Conv3D}[rank]

        def make_separate(data_format, name):
            return cls(in_channels * multiplier, layer.kernel_size, groups=in_channels,
                       data_format=data_format, use_bias=False, name=name, **common)
        description = (f"{cls.__name__}(filters={in_channels * multiplier}, kernel_size="
                       f"{_int_or_tuple(layer.kernel_size)}, groups={in_channels})")

    shown = make_separate(layer.data_format, f"{layer.name}_contrast_separate")
    shown.build_from_shape(layer.input_shape)
    separate_kernel = shown.kernel

    # Numerical check, channels_last: separate maps summed per filter == the conv.
    spatial = layer.geometry.spatial(layer.input_shape)
    sizes = tuple(
        _check_size(n, effective_kernel_size(k, d))
        for n, k, d in zip(spatial, layer.kernel_size, layer.dilation_rate)
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *sizes, in_channels)).astype(np.float32)
    reference = type(layer)(filters, layer.kernel_size, groups=groups, use_bias=False,
                            name=f"{layer.name}_contrast_reference", **common)
    reference.build_from_shape((None, *sizes, in_channels))
    reference.set_weights([layer.kernel.value])
    separate = make_separate("channels_last", f"{layer.name}_contrast_check")
    separate.build_from_shape((None, *sizes, in_channels))
    kernel = layer.kernel.value  # (*k, C_in/groups, filters)
    per_group = in_channels // groups
    # rearranged[..., c, j] = kernel[..., c within its group, group*multiplier + j]
    by_group = kernel.reshape(*layer.kernel_size, per_group, groups, multiplier)
    rearranged = np.moveaxis(by_group, -2, -3).reshape(*layer.kernel_size, in_channels,
                                                      multiplier)
    separate.set_weights([rearranged.reshape(separate.kernel.shape)])
    conv_out = reference.call(x)  # (1, *out, filters)
    maps = separate.call(x)  # (1, *out, C_in*multiplier): channel c*multiplier + j
    out_spatial = maps.shape[1:-1]
    summed = maps.reshape(1, *out_spatial, groups, per_group, multiplier).sum(axis=-2)
    diff = float(np.max(np.abs(summed.reshape(conv_out.shape) - conv_out)))
    return Contrast(
        conv_name=layer.name,
        conv_output_shape=tuple(layer.output_shape),
        conv_kernel_shape=tuple(layer.kernel.shape),
        conv_kernel_weights=int(layer.kernel.size),
        in_channels=int(in_channels), filters=filters, groups=groups, multiplier=multiplier,
        separate_layer=description, separate_class=type(shown).__name__,
        separate_output_shape=tuple(shown.output_shape),
        separate_kernel_shape=tuple(separate_kernel.shape),
        separate_kernel_weights=int(separate_kernel.size),
        separate_params=int(shown.count_params()),
        check_input_shape=tuple(x.shape), max_abs_diff=diff, data_format=layer.data_format,
    )


# ----- one layer ----------------------------------------------------------------------------
@dataclass
class LayerExplanation(Renderable):
    """How one layer turns its input into its output, with this layer's numbers."""

    name: str
    class_name: str
    input_shape: tuple
    output_shape: tuple
    shape_steps: list[dict] = field(default_factory=list)  # axis, input, output, formula
    mechanism: list[str] = field(default_factory=list)
    weights: list[dict] = field(default_factory=list)  # name, shape, size, trainable, meaning
    params: int = 0
    trainable_params: int = 0
    params_formula: str = ""
    macs: int | None = 0
    macs_formula: str = ""
    output_values: int | None = None
    memory_bytes: int | None = None
    receptive_field: ReceptiveField | None = None
    contrast: Contrast | None = None
    index: int | None = None

    @property
    def heading(self) -> str:
        where = f"{self.index}. " if self.index is not None else ""
        return (f"{where}{self.name} ({self.class_name}): {format_shape(self.input_shape)} -> "
                f"{format_shape(self.output_shape)}")

    def blocks(self) -> list[Block]:
        # The heading already says input -> output; the block says how each size arises.
        shape_lines = [f"{step['axis']}: `{step['formula']}`" for step in self.shape_steps]
        if not shape_lines:
            same = tuple(self.input_shape) == tuple(self.output_shape)
            shape_lines.append(
                f"unchanged: `{format_shape(self.output_shape)}`" if same else
                f"`{format_shape(self.input_shape)} -> {format_shape(self.output_shape)}`"
            )
        blocks = [Block("Shape", shape_lines), Block("What it computes", list(self.mechanism))]
        weight_lines = [
            f"{w['name']} `{tuple(w['shape'])}`"
            + ("" if w["trainable"] else " (not trainable)")
            + (f": {w['meaning']}" if w.get("meaning") else "")
            for w in self.weights
        ]
        weight_lines.append(f"parameters: `{self.params_formula}`")
        blocks.append(Block("Weights", weight_lines))
        memory = (
            f"activation memory: {_count(self.output_values, 'value')} * 4 bytes = "
            f"{self.memory_bytes:,} bytes ({cost_module.format_bytes(self.memory_bytes)}) "
            "per sample"
            if self.memory_bytes is not None else "activation memory: unknown"
        )
        blocks.append(Block("Cost", [f"multiply-adds: `{self.macs_formula}`", memory]))
        if self.receptive_field is not None:
            blocks.append(Block("Receptive field", _field_lines(self.receptive_field)))
        if self.contrast is not None:
            blocks.append(self.contrast.block())
        return blocks

    def sections(self) -> list[Section]:
        return [Section(self.heading, self.blocks())]

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["receptive_field"] = (
            None if self.receptive_field is None else self.receptive_field.to_dict()
        )
        data["contrast"] = None if self.contrast is None else self.contrast.to_dict()
        data["weights"] = [dict(w, shape=list(w["shape"])) for w in self.weights]
        return data


def _field_lines(rf: ReceptiveField) -> list[str]:
    if rf.whole_input:
        return [f"whole input: {rf.note}."]
    if not rf.size:
        return ["no spatial axes"]
    lines = [f"in pixels of the {rf.reference}, per axis (Araujo et al., Distill 2019): size = "
             "how many pixels one output value sees, jump = pixels between neighbouring "
             "outputs, start = centre of output 0's field (negative: over the padding)"]
    fractional = False
    for axis, name in enumerate(rf.axes):
        size, jump, start = rf.size[axis], rf.jump[axis], rf.start[axis]
        first = start - (size - 1) / 2
        last = start + (size - 1) / 2
        lines.append(
            f"{name}: size {_number(size)}, jump {_number(jump)}, start {_number(start)} -- "
            f"output {name} i sees input {name}s {_number(first)} + {_number(jump)}*i to "
            f"{_number(last)} + {_number(jump)}*i"
        )
        fractional = fractional or any(
            math.isfinite(v) and not float(v).is_integer() for v in (first, jump)
        )
    if fractional:
        lines.append("Fractional bounds (after a transposed convolution): the field is the whole "
                     "pixels between them.")
    return lines


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
        shape = f"{kernel[0]}-tap" if len(kernel) == 1 else _box(kernel)
        lines.append(f"dilation_rate={_int_or_tuple(dilation)}: neighbouring taps are "
                     f"{_int_or_tuple(dilation)} input {unit} apart, so the {shape} {what} "
                     f"spans {_box(spans)} input {unit}, with gaps between its taps.")
    if layer.padding != "valid" and all(n is not None for n in spatial):
        pads = [padding_amounts(n, k, layer.padding, s, d)
                for n, k, s, d in zip(spatial, kernel, layer.strides, dilation)]
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


def _activation_line(layer) -> list[str]:
    activation = getattr(layer, "activation", None)
    if activation is None or activation.is_linear:
        return []
    if activation.name in ("softmax", "log_softmax"):
        return [f"Then {activation.name} is taken over the last axis (each value depends on "
                "every pre-activation along it)."]
    return [f"Then the activation {activation.name} is applied to each value."]


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
    kernel_axes = " x ".join(f"kernel {name}s" for name in axis_names(len(kernel)))
    channel_axis = "input channels" if groups == 1 else "input channels per group"
    meanings = {
        "kernel": f"{filters} filters of {block} (axes: {kernel_axes} x {channel_axis} x "
                  "filters)",
        "bias": "one number per filter, added to every value of its map",
    }
    exp.weights = _weights(layer, meanings)


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
        f"{_prod(kernel)} = {math.prod(kernel)} products"
        + (" plus a bias." if layer.use_bias else "."),
    ] + _movement_lines(layer, kernel, layer.dilation_rate, "filter") + _activation_line(layer)
    exp.weights = _weights(layer, {
        "kernel": f"(kh, kw, channels, depth_multiplier): one {_box(kernel)} filter per "
                  f"(channel, j)",
        "bias": "one number per output map",
    })


def _own_filters(multiplier: int, kernel) -> str:
    if multiplier == 1:
        return f"its own {_box(kernel)} filter"
    return f"its own {multiplier} filters of {_box(kernel)}"


def _explain_separable(layer, exp: LayerExplanation) -> None:
    _, in_channels = _geometry_parts(layer, layer.input_shape)
    kernel, m, filters = tuple(layer.kernel_size), layer.depth_multiplier, layer.filters
    middle = layer.depthwise.output_shape
    exp.shape_steps = _conv_steps(layer, kernel, layer.dilation_rate)
    exp.shape_steps.append({"axis": "channels", "input": in_channels, "output": filters,
                            "formula": f"{in_channels}*{m} depthwise maps -> {filters} filters"})
    exp.mechanism = [
        "Two convolutions in one layer.",
        f"1. Depthwise: each of the {in_channels} input channels goes through "
        f"{_own_filters(m, kernel)}, no sum across channels -> "
        f"`{format_shape(middle)}`.",
        f"2. Pointwise: a 1x1 convolution; each of the {filters} filters is a "
        f"1x1x{in_channels * m} block that sums over all {in_channels * m} depthwise maps"
        + (" plus its bias" if layer.use_bias else "") + f" -> {filters} output maps.",
    ] + _movement_lines(layer, kernel, layer.dilation_rate, "depthwise filter")
    exp.mechanism += _activation_line(layer)
    exp.weights = _weights(layer, {
        "depthwise_kernel": f"one {_box(kernel)} filter per (channel, j)",
        "pointwise_kernel": f"{filters} filters of 1x1x{in_channels * m}",
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
    crops = [deconv_padding_amounts(n, k, layer.padding, s, d,
                                    None if layer.output_padding is None
                                    else layer.output_padding[axis])
             for axis, (n, k, s, d) in enumerate(zip(spatial, kernel, layer.strides,
                                                     layer.dilation_rate))
             if n is not None]
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
        "kernel": f"(kh, kw, filters, input channels): {filters} filters of "
                  f"{_box((*kernel, in_channels))}",
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


def _explain_dense(layer, exp: LayerExplanation) -> None:
    in_features, units = layer.input_shape[-1], layer.units
    exp.shape_steps = [{"axis": "last axis", "input": in_features, "output": units,
                        "formula": f"{in_features} inputs -> {_count(units, 'unit')}"}]
    each = "The unit" if units == 1 else f"Each of the {units} units"
    lines = [
        f"{each} computes the sum over all {in_features:,} inputs of input * weight"
        + (", plus its bias" if layer.use_bias else "")
        + f": its weights are one kernel column `({in_features},)`."
    ]
    if len(layer.input_shape) > 2:
        lines.append(f"The input has rank {len(layer.input_shape)}: the same kernel is applied "
                     f"at each of the {_prod(layer.input_shape[1:-1])} positions separately "
                     "(like a 1x1 convolution).")
    else:
        lines.append("Every output depends on every input value: the receptive field becomes "
                     "the whole input.")
    exp.mechanism = lines + _activation_line(layer)
    exp.weights = _weights(layer, {"kernel": f"{_count(in_features, 'input')} x "
                                             f"{_count(units, 'unit')}: column u holds unit "
                                             "u's weights",
                                   "bias": "one number per unit"})


def _explain_flatten(layer, exp: LayerExplanation) -> None:
    rest = layer.input_shape[1:]
    values = layer.output_shape[-1]
    formula = f"{_prod(rest)} = {values:,}" if values is not None else "unknown"
    exp.shape_steps = [{"axis": "all", "input": tuple(rest), "output": values,
                        "formula": formula}]
    exp.mechanism = [
        f"Lays the {formula} values of one sample out in one row; nothing is computed "
        "(last axis fastest, channels_last order).",
        "The spatial arrangement is gone: a following Dense layer sees every value, so the "
        "receptive field becomes the whole input.",
    ]


def _explain_reshape(layer, exp: LayerExplanation) -> None:
    exp.shape_steps = [{"axis": "all", "input": tuple(layer.input_shape[1:]),
                        "output": tuple(layer.output_shape[1:]),
                        "formula": f"{_prod(layer.input_shape[1:])} = "
                                   f"{_prod(layer.output_shape[1:])}"}]
    exp.mechanism = [
        f"The same {cost_module.output_values(layer.output_shape) or '?'} values, rearranged "
        f"into `{format_shape(layer.output_shape[1:])}` (row-major order); nothing is "
        "computed. The receptive field is treated as the whole input afterwards."
    ]


def _explain_elementwise(layer, exp: LayerExplanation) -> None:
    from convlens.layers import ReLU

    if isinstance(layer, ReLU):
        parts = [f"x if x >= {layer.threshold:g}"]
        parts.append(f"else {layer.negative_slope:g}*(x - {layer.threshold:g})")
        cap = "" if layer.max_value is None else f", capped at {layer.max_value:g}"
        what = f"ReLU: {' '.join(parts)}{cap}"
    else:
        what = f"the activation {layer.activation.name}"
    exp.mechanism = [f"Applies {what} to each value separately; the shape does not change. "
                     "No weights."]
    if getattr(getattr(layer, "activation", None), "name", "") in ("softmax", "log_softmax"):
        exp.mechanism.append("Softmax is taken over the last axis: each value depends on every "
                             "value along that axis.")


def _explain_dropout(layer, exp: LayerExplanation) -> None:
    rate = layer.rate
    scale = 1 / (1 - rate) if rate < 1 else float("inf")
    exp.mechanism = [
        f"Training: each value is set to 0 with probability {rate:g} and the others are "
        f"multiplied by 1/(1 - {rate:g}) = {scale:.4g}, so the expected sum is unchanged.",
        "Inference (predict, evaluate): values pass through unchanged. No weights.",
    ]


def _explain_batchnorm(layer, exp: LayerExplanation) -> None:
    axis = layer.axis
    channels = layer.input_shape[axis]
    gamma = "gamma[c] * " if layer.scale else ""
    beta = " + beta[c]" if layer.center else ""
    exp.mechanism = [
        f"Per channel c of the {channels} channels (axis {axis}), at inference: "
        f"`y = {gamma}(x - moving_mean[c]) / sqrt(moving_variance[c] + {layer.epsilon:g})"
        f"{beta}`.",
        "In training the batch's own mean and (biased) variance are used instead, and the "
        f"stored statistics move: `moving = moving*{layer.momentum:g} + batch*"
        f"{1 - layer.momentum:.4g}`.",
        "gamma and beta are learned by gradient descent; moving_mean and moving_variance are "
        "not trainable (they are averages, not gradients).",
    ]
    exp.weights = _weights(layer, {
        "gamma": "scale per channel", "beta": "shift per channel",
        "moving_mean": "running mean per channel", "moving_variance": "running variance",
    })


def _explain_zero_padding(layer, exp: LayerExplanation) -> None:
    channels_last = layer.data_format == "channels_last"
    axes = (1, 2) if channels_last else (2, 3)
    for name, axis, (before, after) in zip(("row", "col"), axes, layer.padding):
        n, out = layer.input_shape[axis], layer.output_shape[axis]
        exp.shape_steps.append({"axis": name, "input": n, "output": out,
                                "formula": f"{n} + {before} + {after} = {out}"})
    exp.mechanism = [
        f"Adds zeros around each map: rows {layer.padding[0]} and cols {layer.padding[1]} "
        "(before, after); the input values are unchanged. No weights."
    ]


def _weights(layer, meanings: dict) -> list[dict]:
    return [
        {"name": w.name, "shape": tuple(w.shape), "size": int(w.size),
         "trainable": bool(w.trainable), "meaning": meanings.get(w.name, "")}
        for w in layer.weights
    ]


def _explainer(layer):
    from convlens.layers import (
        Activation,
        BatchNormalization,
        Conv,
        Conv2DTranspose,
        Dense,
        DepthwiseConv2D,
        Dropout,
        Flatten,
        ReLU,
        Reshape,
        SeparableConv2D,
        ZeroPadding2D,
    )
    from convlens.layers.pooling import GlobalPooling, Pooling

    table = [
        (Conv, _explain_conv), (DepthwiseConv2D, _explain_depthwise),
        (SeparableConv2D, _explain_separable), (Conv2DTranspose, _explain_transpose),
        (Pooling, _explain_pooling), (GlobalPooling, _explain_global), (Dense, _explain_dense),
        (Flatten, _explain_flatten), (Reshape, _explain_reshape),
        ((Activation, ReLU), _explain_elementwise), (Dropout, _explain_dropout),
        (BatchNormalization, _explain_batchnorm), (ZeroPadding2D, _explain_zero_padding),
    ]
    for cls, function in table:
        if isinstance(layer, cls):
            return function
    return None


def _build(layer, contrast: bool, rf: ReceptiveField | None, index: int | None):
    from convlens.layers import Conv

    if not getattr(layer, "built", False) or layer.output_shape is None:
        raise ValueError(
            f"Layer '{getattr(layer, 'name', layer)}' is not built, so it has no shapes to "
            "explain. Build it first: put it in a Sequential that starts with Input(...), or "
            "call layer.build_from_shape((None, ...))."
        )
    formula, total, trainable = params_formula(layer.weights)
    layer_cost = cost_module.layer_cost(layer)
    exp = LayerExplanation(
        name=layer.name, class_name=type(layer).__name__,
        input_shape=tuple(layer.input_shape), output_shape=tuple(layer.output_shape),
        params=total, trainable_params=trainable, params_formula=formula,
        macs=layer_cost.macs, macs_formula=layer_cost.macs_formula,
        output_values=layer_cost.output_values, memory_bytes=layer_cost.memory_bytes,
        receptive_field=rf, index=index,
    )
    explainer = _explainer(layer)
    if explainer is None:
        exp.mechanism = [f"convlens has no worded account of {type(layer).__name__} yet; the "
                         "shapes, weights and costs below are read from the layer."]
        exp.weights = _weights(layer, {})
    else:
        explainer(layer, exp)
    if contrast and isinstance(layer, Conv):
        exp.contrast = build_contrast(layer)
    return exp


def explain_layer(layer, contrast: bool = False) -> LayerExplanation:
    """Explain one built layer; its receptive field is given in pixels of its own input."""
    if not getattr(layer, "built", False):
        return _build(layer, contrast, None, None)  # raises the not-built error
    return _build(layer, contrast, layer_receptive_field(layer), None)


# ----- a whole model --------------------------------------------------------------------------
@dataclass
class ModelExplanation(Renderable):
    """One ``LayerExplanation`` per layer (``.layers``) plus the model's totals."""

    name: str
    input_shape: tuple
    output_shape: tuple
    layers: list[LayerExplanation]
    total_params: int
    trainable_params: int
    total_macs: int | None
    total_memory_bytes: int | None

    def overview(self) -> Section:
        rows = [
            [str(e.index), e.name, e.class_name, format_shape(e.output_shape), f"{e.params:,}",
             "?" if e.macs is None else f"{e.macs:,}",
             "-" if e.receptive_field is None else e.receptive_field.describe()]
            for e in self.layers
        ]
        table = Table(["#", "layer", "type", "output shape", "params", "MACs",
                       "receptive field"], rows)
        macs = "?" if self.total_macs is None else f"{self.total_macs:,}"
        memory = ("?" if self.total_memory_bytes is None else
                  f"{self.total_memory_bytes:,} bytes "
                  f"({cost_module.format_bytes(self.total_memory_bytes)})")
        lines = [
            f"input `{format_shape(self.input_shape)}` -> output "
            f"`{format_shape(self.output_shape)}`",
            f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable)",
            f"multiply-adds per sample: {macs}",
            f"activation memory per sample (all layer outputs): {memory}",
        ]
        return Section(f"Model '{self.name}'", [Block("", lines, table=table)],
                       css_class="convlens-model")

    def sections(self) -> list[Section]:
        return [self.overview()] + [section for e in self.layers for section in e.sections()]

    def __getitem__(self, key) -> LayerExplanation:
        if isinstance(key, str):
            for e in self.layers:
                if e.name == key:
                    return e
            raise KeyError(key)
        return self.layers[key]

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "input_shape": self.input_shape, "output_shape": self.output_shape,
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "total_macs": self.total_macs, "total_memory_bytes": self.total_memory_bytes,
            "layers": [e.to_dict() for e in self.layers],
        }


def resolve_layer_index(model, layer) -> int:
    """Index into ``model.layers`` from an int (negative allowed) or a layer name."""
    layers = model.layers
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"Layer index {layer} is out of range: model '{model.name}' has "
                             f"{len(layers)} layers (indices 0 to {len(layers) - 1}).")
        return int(layer) % len(layers)
    if isinstance(layer, str):
        for i, candidate in enumerate(layers):
            if candidate.name == layer:
                return i
        names = ", ".join(c.name for c in layers)
        raise ValueError(f"No layer named {layer!r} in model '{model.name}'; layers: {names}.")
    raise TypeError(f"A layer is given by its index (int) or its name (str); received "
                    f"{layer!r} of type {type(layer).__name__}.")


def explain_model(model, contrast: bool = False, layers=None) -> ModelExplanation:
    """Explain every layer of a built model (or only ``layers``: indices and/or names)."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it has no shapes to explain. Start it with "
            "Input((28, 28, 1)) or call model.build((None, 28, 28, 1))."
        )
    fields = receptive_fields(model)
    if layers is None:
        chosen = range(len(model.layers))
    else:
        items = layers if isinstance(layers, (list, tuple, range)) else [layers]
        chosen = sorted({resolve_layer_index(model, item) for item in items})
    explained = [_build(model.layers[i], contrast, fields[i], i) for i in chosen]
    all_costs = [cost_module.layer_cost(layer) for layer in model.layers]
    macs = None if any(c.macs is None for c in all_costs) else sum(c.macs for c in all_costs)
    memory = (None if any(c.memory_bytes is None for c in all_costs)
              else sum(c.memory_bytes for c in all_costs))
    trainable = sum(int(w.size) for w in model.trainable_weights)
    return ModelExplanation(
        name=model.name, input_shape=tuple(model.input_shape),
        output_shape=tuple(model.output_shape), layers=explained,
        total_params=model.count_params(), trainable_params=trainable, total_macs=macs,
        total_memory_bytes=memory,
    )
