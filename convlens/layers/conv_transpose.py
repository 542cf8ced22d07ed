"""``Conv2DTranspose``: the gradient of a ``Conv2D`` with respect to its input, as a layer.

Each input pixel scatters one ``(kh, kw, filters)`` block, the kernel weighted by its ``C_in``
values, into the output at ``stride`` steps; overlapping blocks add up. The maths is
``convlens.ops.conv.conv_transpose_forward``.
"""

from __future__ import annotations

from convlens import activations, initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.layers.conv import (
    KERNEL_RULES,
    add_kernel_and_bias,
    conv_arguments,
    conv_window,
    positive_int,
)
from convlens.ops import conv as conv_ops
from convlens.shapes import (
    deconv_output_formula,
    normalize_tuple,
    transpose_macs,
)


class Conv2DTranspose(Layer):
    """Transposed 2D convolution: the gradient of a Conv2D wrt its input, as a layer.

    Kernel ``(kh, kw, filters, C_in)``. Output size per axis is
    ``convlens.shapes.deconv_output_length`` (``in * stride`` for ``same``).
    """

    rank = 2

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
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        conv_arguments(self, self.rank, kernel_size, strides, padding, data_format,
                       dilation_rate)
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = normalize_tuple(
                output_padding, self.rank, "output_padding", True, where=where
            )
            for pad, stride in zip(self.output_padding, self.strides):
                if pad >= stride:
                    raise ValueError(
                        f"{where}: each `output_padding` must be smaller than the stride; "
                        f"received output_padding={output_padding}, strides={self.strides}."
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

    def build(self, input_shape):
        add_kernel_and_bias(self, input_shape, self.kernel_initializer, self.kernel_regularizer,
                            self.kernel_constraint)
        self._fixed_axes = {self.geometry.channel_axis: self.geometry.channels(input_shape)}
        self.window = conv_window(self, input_shape, True, self.output_padding)

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        shapes = {"kernel": (*self.kernel_size, self.filters, self.geometry.channels(input_shape))}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def multiply_adds(self, input_shape) -> int | None:
        self.compute_output_shape(input_shape)
        spatial = self.geometry.spatial(input_shape)
        if None in spatial:
            return None
        channels = self.geometry.channels(input_shape)
        return transpose_macs(spatial, self.kernel_size, channels, self.filters)

    def _output_padding(self, axis):
        return None if self.output_padding is None else self.output_padding[axis]

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        window = conv_window(self, input_shape, True, self.output_padding)
        for axis, (n, k, s, d) in enumerate(zip(window.input_spatial, self.kernel_size,
                                                self.strides, self.dilation_rate)):
            args = (n, k, self.padding, s, d, self._output_padding(axis))
            size = window.output_spatial[axis]
            if size is not None and size < 1:
                # Only 'same' with an explicit output_padding crops this much (e.g. 1 -> 0).
                raise ValueError(
                    f"Layer '{self.name}': along spatial axis {axis} the output would be empty: "
                    f"output size = {deconv_output_formula(*args)}, which must be >= 1. Use "
                    "a larger input, a larger output_padding or stride, or padding='valid'."
                )
        return self.geometry.shape(input_shape[0], window.output_spatial, self.filters)

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        crop = self.window.pads_for(x.shape[1:-1])
        bias = self.bias.value if self.use_bias else None
        z, cache = conv_ops.conv_transpose_forward(
            x, self.kernel.value, bias, self.strides, crop, self.dilation_rate
        )
        # Activate in the output layout: softmax runs over the last axis, as in Keras, which
        # for channels_first is a spatial axis, not the channels.
        y = self.activate(self.geometry.from_last(z), training)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad = self.geometry.to_last(self.activation_grad(grad_output))
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
            **weight_rules_config(self, *KERNEL_RULES),
        }


class Conv1DTranspose(Conv2DTranspose):
    """Transposed 1D convolution: ``(N, steps, C_in)`` -> ``(N, steps_out, filters)``; kernel
    ``(k, filters, C_in)``."""

    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, **kwargs)


class Conv3DTranspose(Conv2DTranspose):
    """Transposed 3D convolution over depth, rows and columns; kernel ``(kd, kh, kw, filters,
    C_in)``."""

    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1, 1), **kwargs):
        super().__init__(filters, kernel_size, strides, padding, output_padding, data_format,
                         dilation_rate, **kwargs)


register(Conv2DTranspose, Kind(
    words="transpose", cost="transpose", field="transpose", trace="transpose",
    picture="transpose", onnx="transpose", torch="transpose", builds_from_shape=True,
))
# torch export takes the 2D one only so far.
for _cls in (Conv1DTranspose, Conv3DTranspose):
    register(_cls, Kind(
        words="transpose", cost="transpose", field="transpose", trace="transpose",
        picture="transpose", onnx="transpose", builds_from_shape=True,
    ))
