"""The misconception, side by side: a conv layer beside the layer that keeps every map apart.

``build_contrast(conv)`` builds the real layer that applies each single-channel kernel slice
to each input map separately (``DepthwiseConv2D(kernel_size, depth_multiplier=filters)`` in
2D, a grouped Conv1D/Conv3D otherwise) on the conv's input shape, and checks on a random
input that summing its maps per filter reproduces the conv's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convlens.explain.render import Block
from convlens.explain.wording import _int_or_tuple
from convlens.kinds import kind_of
from convlens.shapes import effective_kernel_size, format_shape
from convlens.utils import session


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
    # The layers built here draw initial weights; in a session of their own they leave the
    # caller's random stream and layer names as they were.
    with session(seed=0):
        return _build_contrast(layer)


def _build_contrast(layer) -> Contrast:
    from convlens.layers import Conv1D, Conv3D, DepthwiseConv2D

    if kind_of(layer).words != "conv":
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

