"""Convolution layers: the shared ``Conv`` body and ``Conv1D``/``Conv2D``/``Conv3D``.

Each filter of a ``Conv2D`` is a 3D block ``(kh, kw, C_in // groups)``: it spans
every input channel of its group and sums over them, so ``filters`` filters give
``filters`` output maps -- ``(26, 26, 32)`` through ``Conv2D(64, 3)`` is
``(24, 24, 64)``, with ``3*3*32*64 + 64 = 18,496`` parameters.

The maths is in ``convlens.ops.conv`` (channels_last); these classes validate
arguments, hold the weights and move the channel axis for ``channels_first``.
The argument checks and :class:`ConvGeometry` here are shared with the other
convolution and pooling layers (``depthwise.py``, ``conv_transpose.py``, ``pooling.py``).
"""

from __future__ import annotations

import numpy as np

from convlens import activations, initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.ops import conv as conv_ops
from convlens.shapes import (
    check_conv_fits,
    conv_macs,
    conv_output_shape,
    format_shape,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    sliding_window,
)


def positive_int(value, name: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: `{name}` must be a positive int; received {name}={value!r}.")
    if value <= 0:
        raise ValueError(
            f"{layer}: invalid value for argument `{name}`. Expected a strictly positive "
            f"value. Received {name}={value}."
        )
    return int(value)


# The weight rules of a layer with a kernel and a bias, in the order Keras writes them.
KERNEL_RULES = ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint")


def check_strides_and_dilation(strides: tuple, dilation_rate: tuple, where: str) -> None:
    """Keras rejects a stride and a dilation both above 1 (the same holds here)."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            f"{where}: `strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation_rate}."
        )


def conv_arguments(layer: Layer, rank: int, kernel_size, strides, padding, data_format,
                   dilation_rate) -> None:
    """Check and set the arguments every convolution layer shares, and its ``geometry``.

    The layer's ``window`` record (``convlens.shapes.Window``) is set at build.
    """
    where = layer.where
    layer.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size", where=where)
    layer.strides = normalize_tuple(strides, rank, "strides", where=where)
    layer.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", where=where)
    layer.padding = normalize_padding(padding, allow_causal=rank == 1, where=where)
    layer.data_format = normalize_data_format(data_format, where)
    check_strides_and_dilation(layer.strides, layer.dilation_rate, where)
    layer.geometry = ConvGeometry(rank, layer.data_format)
    layer.window = None


def add_kernel_and_bias(layer: Layer, input_shape, kernel_initializer, kernel_regularizer,
                        kernel_constraint) -> None:
    """Create ``layer.kernel`` (and ``layer.bias``) in the shapes ``layer.weight_shapes`` gives,
    with their regularizers and constraints."""
    shapes = layer.weight_shapes(input_shape)
    layer.kernel = layer.add_weight("kernel", shapes["kernel"], kernel_initializer,
                                    regularizer=kernel_regularizer, constraint=kernel_constraint)
    if layer.use_bias:
        layer.bias = layer.add_weight("bias", shapes["bias"], layer.bias_initializer,
                                      regularizer=layer.bias_regularizer,
                                      constraint=layer.bias_constraint)


def conv_window(layer: Layer, input_shape, transposed: bool = False, output_padding=None):
    """The frozen window record of a convolution layer for ``input_shape``."""
    return sliding_window(input_shape, layer.kernel_size, layer.strides, layer.dilation_rate,
                          layer.padding, layer.data_format, transposed, output_padding)


class ConvGeometry:
    """Where the channels are, and the spatial axes, for a rank and a data format."""

    def __init__(self, rank: int, data_format: str):
        self.rank = rank
        self.data_format = data_format
        self.channels_last = data_format == "channels_last"
        self.channel_axis = -1 if self.channels_last else 1

    def spatial(self, shape) -> tuple:
        return tuple(shape[1:-1]) if self.channels_last else tuple(shape[2:])

    def channels(self, shape):
        return shape[self.channel_axis]

    def shape(self, batch, spatial, channels) -> tuple:
        if self.channels_last:
            return (batch, *spatial, channels)
        return (batch, channels, *spatial)

    def to_last(self, x: np.ndarray) -> np.ndarray:
        return x if self.channels_last else np.moveaxis(x, 1, -1)

    def from_last(self, x: np.ndarray) -> np.ndarray:
        return x if self.channels_last else np.ascontiguousarray(np.moveaxis(x, -1, 1))

    def check_rank(self, layer: Layer, input_shape) -> None:
        expected = self.rank + 2
        if len(input_shape) != expected:
            layout = "(batch, *spatial, channels)" if self.channels_last else (
                "(batch, channels, *spatial)"
            )
            raise ValueError(
                f"Input of layer '{layer.name}' ({type(layer).__name__}) must have rank "
                f"{expected} {layout}; received shape {format_shape(input_shape)}."
            )
        if self.channels(input_shape) is None:
            raise ValueError(
                f"Layer '{layer.name}': the channel axis of the input must be known; received "
                f"shape {format_shape(input_shape)}."
            )
        if any(size is not None and size < 1 for size in input_shape[1:]):
            raise ValueError(
                f"Input of layer '{layer.name}' ({type(layer).__name__}) has an empty axis: "
                f"received shape {format_shape(input_shape)}; every axis but the batch axis "
                "must have size >= 1."
            )


class Conv(Layer):
    """N-D convolution; the shared body of ``Conv1D``, ``Conv2D`` and ``Conv3D``.

    Input shape: ``(batch, *spatial, channels)`` (channels_last) or
    ``(batch, channels, *spatial)``. Output shape: same layout with ``filters``
    channels and each spatial size given by ``convlens.shapes.conv_output_length``.
    """

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        self.groups = positive_int(groups, "groups", where)
        if self.filters % self.groups:
            raise ValueError(
                f"{where}: the number of filters must be evenly divisible by the number of "
                f"groups. Received: groups={self.groups}, filters={self.filters}."
            )
        conv_arguments(self, self.rank, kernel_size, strides, padding, data_format, dilation_rate)
        if self.padding == "causal" and self.data_format != "channels_last":
            raise ValueError(
                f"{where}: padding='causal' needs data_format='channels_last'; received "
                f"data_format={self.data_format!r}."
            )
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = resolve(initializers.get, kernel_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        set_weight_rules(self, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape) -> None:
        add_kernel_and_bias(self, input_shape, self.kernel_initializer, self.kernel_regularizer,
                            self.kernel_constraint)
        self._fixed_axes = {self.geometry.channel_axis: self.geometry.channels(input_shape)}
        self.window = conv_window(self, input_shape)

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        in_channels = self.geometry.channels(input_shape)
        if in_channels % self.groups:
            raise ValueError(
                f"Layer '{self.name}': the number of input channels must be evenly divisible "
                f"by the number of groups. Received groups={self.groups}, but the input has "
                f"{in_channels} channels (full input shape is {format_shape(input_shape)})."
            )
        shapes = {"kernel": (*self.kernel_size, in_channels // self.groups, self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def multiply_adds(self, input_shape) -> int | None:
        spatial = self.geometry.spatial(self.compute_output_shape(input_shape))
        if None in spatial:
            return None
        per_group = self.geometry.channels(input_shape) // self.groups
        return conv_macs(spatial, self.kernel_size, per_group, self.filters)

    def compute_output_shape(self, input_shape) -> tuple:
        self.geometry.check_rank(self, input_shape)
        spatial = self.geometry.spatial(input_shape)
        args = (self.kernel_size, self.padding, self.strides, self.dilation_rate)
        check_conv_fits(self.name, spatial, *args)
        return self.geometry.shape(input_shape[0], conv_output_shape(spatial, *args), self.filters)

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        bias = self.bias.value if self.use_bias else None
        pads = self.window.pads_for(x.shape[1:-1])
        z, cache = conv_ops.conv_forward(
            x, self.kernel.value, bias, self.strides, pads, self.dilation_rate, self.groups
        )
        # Activate in the output layout: softmax runs over the last axis, as in Keras, which
        # for channels_first is a spatial axis, not the channels.
        y = self.activate(self.geometry.from_last(z), training)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad = self.geometry.to_last(self.activation_grad(grad_output))
        grad_x, grad_kernel, grad_bias = conv_ops.conv_backward(
            grad, self.require_cache(), need_input_grad=self.needs_input_grad
        )
        self.kernel.grad = grad_kernel
        if self.use_bias:
            self.bias.grad = grad_bias
        return None if grad_x is None else self.geometry.from_last(grad_x)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            **weight_rules_config(self, *KERNEL_RULES),
        }


class Conv1D(Conv):
    """1D convolution over ``(batch, steps, channels)``; ``padding='causal'`` pads on the left."""

    rank = 1


class Conv2D(Conv):
    """2D convolution over ``(batch, height, width, channels)``.

    Example:
        >>> import numpy as np
        >>> Conv2D(64, 3)(np.zeros((1, 26, 26, 32), "float32")).shape
        (1, 24, 24, 64)
    """

    rank = 2


class Conv3D(Conv):
    """3D convolution over ``(batch, depth, height, width, channels)``."""

    rank = 3


Convolution1D = Conv1D
Convolution2D = Conv2D
Convolution3D = Conv3D


CONV_KIND = Kind(words="conv", cost="conv", field="window", trace="conv", picture="conv",
                 onnx="conv", torch="conv", builds_from_shape=True)
for _cls in (Conv1D, Conv2D, Conv3D):
    register(_cls, CONV_KIND)
