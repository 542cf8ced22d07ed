"""Convolution layers: Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose.

Each filter of a ``Conv2D`` is a 3D block ``(kh, kw, C_in // groups)``: it spans
every input channel of its group and sums over them, so ``filters`` filters give
``filters`` output maps -- ``(26, 26, 32)`` through ``Conv2D(64, 3)`` is
``(24, 24, 64)``, with ``3*3*32*64 + 64 = 18,496`` parameters.

The maths is in ``convlens.ops.conv`` (channels_last); these classes validate
arguments, hold the weights and move the channel axis for ``channels_first``.
"""

from __future__ import annotations

import numpy as np

from convlens import activations, initializers
from convlens.layers.base import Layer, resolve
from convlens.ops import conv as conv_ops
from convlens.shapes import (
    check_conv_fits,
    conv_output_shape,
    deconv_output_formula,
    deconv_output_length,
    deconv_padding_amounts,
    format_shape,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    padding_amounts,
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


def check_no_regularizers(layer: str, **arguments) -> None:
    for key, value in arguments.items():
        if value is not None:
            raise ValueError(
                f"{layer}: `{key}` is not supported by convlens yet; received {key}={value!r}. "
                "Pass None."
            )


def check_strides_and_dilation(strides: tuple, dilation_rate: tuple, where: str) -> None:
    """Keras rejects a stride and a dilation both above 1 (the same holds here)."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError(
            f"{where}: `strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={strides} and dilation_rate={dilation_rate}."
        )


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
        super().__init__(**kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        self.groups = positive_int(groups, "groups", where)
        if self.filters % self.groups:
            raise ValueError(
                f"{where}: the number of filters must be evenly divisible by the number of "
                f"groups. Received: groups={self.groups}, filters={self.filters}."
            )
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", where=where)
        self.strides = normalize_tuple(strides, self.rank, "strides", where=where)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", where=where)
        self.padding = normalize_padding(padding, allow_causal=self.rank == 1, where=where)
        self.data_format = normalize_data_format(data_format, where)
        check_strides_and_dilation(self.strides, self.dilation_rate, where)
        if self.padding == "causal" and self.data_format != "channels_last":
            raise ValueError(
                f"{where}: padding='causal' needs data_format='channels_last'; received "
                f"data_format={self.data_format!r}."
            )
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = resolve(initializers.get, kernel_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        check_no_regularizers(
            where,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.geometry = ConvGeometry(self.rank, self.data_format)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape) -> None:
        self.compute_output_shape(input_shape)
        in_channels = self.geometry.channels(input_shape)
        if in_channels % self.groups:
            raise ValueError(
                f"Layer '{self.name}': the number of input channels must be evenly divisible "
                f"by the number of groups. Received groups={self.groups}, but the input has "
                f"{in_channels} channels (full input shape is {format_shape(input_shape)})."
            )
        kernel_shape = (*self.kernel_size, in_channels // self.groups, self.filters)
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer)
        self._fixed_axes = {self.geometry.channel_axis: in_channels}

    def compute_output_shape(self, input_shape) -> tuple:
        self.geometry.check_rank(self, input_shape)
        spatial = self.geometry.spatial(input_shape)
        args = (self.kernel_size, self.padding, self.strides, self.dilation_rate)
        check_conv_fits(self.name, spatial, *args)
        return self.geometry.shape(input_shape[0], conv_output_shape(spatial, *args), self.filters)

    def padding_pairs(self, spatial) -> tuple:
        return tuple(
            padding_amounts(n, k, self.padding, s, d)
            for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        )

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        bias = self.bias.value if self.use_bias else None
        pads = self.padding_pairs(x.shape[1:-1])
        z, cache = conv_ops.conv_forward(
            x, self.kernel.value, bias, self.strides, pads, self.dilation_rate, self.groups
        )
        y = self.activate(z, training)
        self._cache = cache if training else None
        return self.geometry.from_last(y)

    def backward(self, grad_output):
        grad = self.activation_grad(self.geometry.to_last(grad_output))
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
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
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


class DepthwiseConv2D(Layer):
    """Each input channel convolved with its own ``depth_multiplier`` 2D filters, no sum.

    Kernel ``(kh, kw, C_in, depth_multiplier)``; output channel ``c * depth_multiplier + m``
    is input channel ``c`` through filter ``m``. Output: ``C_in * depth_multiplier`` maps.
    """

    rank = 2

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        depth_multiplier=1,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        where = self.where
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", where)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", where=where)
        self.strides = normalize_tuple(strides, 2, "strides", where=where)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", where=where)
        self.padding = normalize_padding(padding, where=where)
        self.data_format = normalize_data_format(data_format, where)
        check_strides_and_dilation(self.strides, self.dilation_rate, where)
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = resolve(initializers.get, depthwise_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        check_no_regularizers(
            where,
            depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            bias_constraint=bias_constraint,
        )
        self.geometry = ConvGeometry(2, self.data_format)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = self.geometry.channels(input_shape)
        shape = (*self.kernel_size, channels, self.depth_multiplier)
        self.kernel = self.add_weight("kernel", shape, self.depthwise_initializer)
        if self.use_bias:
            self.bias = self.add_weight(
                "bias", (channels * self.depth_multiplier,), self.bias_initializer
            )
        self._fixed_axes = {self.geometry.channel_axis: channels}

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        spatial = self.geometry.spatial(input_shape)
        args = (self.kernel_size, self.padding, self.strides, self.dilation_rate)
        check_conv_fits(self.name, spatial, *args)
        channels = self.geometry.channels(input_shape) * self.depth_multiplier
        return self.geometry.shape(input_shape[0], conv_output_shape(spatial, *args), channels)

    def grouped_kernel(self) -> np.ndarray:
        kh, kw, channels, multiplier = self.kernel.shape
        # (kh, kw, C_in, m) -> (kh, kw, 1, C_in*m): output channel c*m + j, one group per channel
        return self.kernel.value.reshape(kh, kw, 1, channels * multiplier)

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        pads = tuple(
            padding_amounts(n, k, self.padding, s, d)
            for n, k, s, d in zip(x.shape[1:-1], self.kernel_size, self.strides,
                                  self.dilation_rate)
        )
        bias = self.bias.value if self.use_bias else None
        z, cache = conv_ops.conv_forward(
            x, self.grouped_kernel(), bias, self.strides, pads, self.dilation_rate,
            groups=x.shape[-1],
        )
        y = self.activate(z, training)
        self._cache = cache if training else None
        return self.geometry.from_last(y)

    def backward(self, grad_output):
        grad = self.activation_grad(self.geometry.to_last(grad_output))
        grad_x, grad_kernel, grad_bias = conv_ops.conv_backward(
            grad, self.require_cache(), need_input_grad=self.needs_input_grad
        )
        self.kernel.grad = grad_kernel.reshape(self.kernel.shape)
        if self.use_bias:
            self.bias.grad = grad_bias
        return None if grad_x is None else self.geometry.from_last(grad_x)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "depth_multiplier": self.depth_multiplier,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "depthwise_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "depthwise_constraint": None,
            "bias_constraint": None,
        }


class SeparableConv2D(Layer):
    """A depthwise 2D convolution followed by a 1x1 pointwise convolution (one layer).

    Weights: ``depthwise_kernel (kh, kw, C_in, m)``, ``pointwise_kernel (1, 1, C_in*m, filters)``
    and ``bias (filters,)``.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        depth_multiplier=1,
        activation=None,
        use_bias=True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        check_no_regularizers(
            where,
            depthwise_regularizer=depthwise_regularizer,
            pointwise_regularizer=pointwise_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint,
            bias_constraint=bias_constraint,
        )
        # The two stages are real layers, named after this one and never auto-numbered.
        stages = {"DepthwiseConv2D": f"{self.name}/depthwise", "Conv2D": f"{self.name}/pointwise"}
        try:
            self.depthwise = DepthwiseConv2D(
                kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                use_bias=False, depthwise_initializer=depthwise_initializer,
                name=stages["DepthwiseConv2D"],
            )
            self.pointwise = Conv2D(
                filters, 1, data_format=data_format, activation=activation, use_bias=use_bias,
                kernel_initializer=pointwise_initializer, bias_initializer=bias_initializer,
                name=stages["Conv2D"],
            )
        except (ValueError, TypeError) as error:
            message = str(error)
            for cls_name, stage in stages.items():  # name this layer, not an inner stage
                message = message.replace(f"{cls_name} '{stage}'", where)
            raise type(error)(message) from None
        self.kernel_size = self.depthwise.kernel_size
        self.strides = self.depthwise.strides
        self.padding = self.depthwise.padding
        self.dilation_rate = self.depthwise.dilation_rate
        self.depth_multiplier = self.depthwise.depth_multiplier
        self.data_format = self.depthwise.data_format
        self.activation = self.pointwise.activation
        self.use_bias = self.pointwise.use_bias

    @property
    def needs_input_grad(self) -> bool:
        return self.depthwise.needs_input_grad

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self.depthwise.needs_input_grad = value

    def build(self, input_shape):
        middle = self.depthwise.build_from_shape(input_shape)
        self.pointwise.build_from_shape(middle)
        self.depthwise.kernel.name = "depthwise_kernel"
        self.pointwise.kernel.name = "pointwise_kernel"
        self._variables = [self.depthwise.kernel, self.pointwise.kernel]
        if self.use_bias:
            self._variables.append(self.pointwise.bias)
        for variable in self._variables:
            variable.path = f"{self.name}/{variable.name}"
        self._fixed_axes = dict(self.depthwise._fixed_axes)

    def compute_output_shape(self, input_shape):
        middle = self.depthwise.compute_output_shape(input_shape)
        return self.pointwise.compute_output_shape(middle)

    def call(self, x, training=False):
        return self.pointwise.call(self.depthwise.call(x, training), training)

    def backward(self, grad_output):
        return self.depthwise.backward(self.pointwise.backward(grad_output))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "depth_multiplier": self.depth_multiplier,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise.depthwise_initializer),
            "pointwise_initializer": initializers.serialize(self.pointwise.kernel_initializer),
            "bias_initializer": initializers.serialize(self.pointwise.bias_initializer),
        }


class Conv2DTranspose(Layer):
    """Transposed 2D convolution: the gradient of a Conv2D wrt its input, as a layer.

    Kernel ``(kh, kw, filters, C_in)``. Output size per axis is
    ``convlens.shapes.deconv_output_length`` (``in * stride`` for ``same``).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
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
        super().__init__(**kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", where=where)
        self.strides = normalize_tuple(strides, 2, "strides", where=where)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", where=where)
        self.padding = normalize_padding(padding, where=where)
        self.data_format = normalize_data_format(data_format, where)
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = normalize_tuple(
                output_padding, 2, "output_padding", True, where=where
            )
            for pad, stride in zip(self.output_padding, self.strides):
                if pad >= stride:
                    raise ValueError(
                        f"{where}: each `output_padding` must be smaller than the stride; "
                        f"received output_padding={output_padding}, strides={self.strides}."
                    )
        check_strides_and_dilation(self.strides, self.dilation_rate, where)
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = resolve(initializers.get, kernel_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        check_no_regularizers(
            where,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
        )
        self.geometry = ConvGeometry(2, self.data_format)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = self.geometry.channels(input_shape)
        shape = (*self.kernel_size, self.filters, channels)
        self.kernel = self.add_weight("kernel", shape, self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer)
        self._fixed_axes = {self.geometry.channel_axis: channels}

    def _output_padding(self, axis):
        return None if self.output_padding is None else self.output_padding[axis]

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        spatial = []
        for axis, (n, k, s, d) in enumerate(zip(self.geometry.spatial(input_shape),
                                                self.kernel_size, self.strides,
                                                self.dilation_rate)):
            args = (n, k, self.padding, s, d, self._output_padding(axis))
            size = deconv_output_length(*args)
            if size is not None and size < 1:
                # Only 'same' with an explicit output_padding crops this much (e.g. 1 -> 0).
                raise ValueError(
                    f"Layer '{self.name}': along spatial axis {axis} the output would be empty: "
                    f"output size = {deconv_output_formula(*args)}, which must be >= 1. Use "
                    "a larger input, a larger output_padding or stride, or padding='valid'."
                )
            spatial.append(size)
        return self.geometry.shape(input_shape[0], tuple(spatial), self.filters)

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        crop = tuple(
            deconv_padding_amounts(n, k, self.padding, s, d, self._output_padding(axis))
            for axis, (n, k, s, d) in enumerate(zip(x.shape[1:-1], self.kernel_size,
                                                    self.strides, self.dilation_rate))
        )
        bias = self.bias.value if self.use_bias else None
        z, cache = conv_ops.conv_transpose_forward(
            x, self.kernel.value, bias, self.strides, crop, self.dilation_rate
        )
        y = self.activate(z, training)
        self._cache = cache if training else None
        return self.geometry.from_last(y)

    def backward(self, grad_output):
        grad = self.activation_grad(self.geometry.to_last(grad_output))
        grad_x, grad_kernel, grad_bias = conv_ops.conv_transpose_backward(
            grad, self.require_cache(), need_input_grad=self.needs_input_grad
        )
        self.kernel.grad = grad_kernel
        if self.use_bias:
            self.bias.grad = grad_bias
        return None if grad_x is None else self.geometry.from_last(grad_x)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }
