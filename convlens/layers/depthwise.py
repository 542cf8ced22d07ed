"""Depthwise convolution layers: ``DepthwiseConv2D`` and ``SeparableConv2D``.

A depthwise convolution keeps the input channels apart: each one goes through its own
``depth_multiplier`` filters and nothing is summed across channels (``groups == C_in`` in
``convlens.ops.conv``). ``SeparableConv2D`` follows it with a 1x1 ``Conv2D`` that mixes them.
"""

from __future__ import annotations

import numpy as np

from convlens import activations, initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.layers.conv import (
    Conv1D,
    Conv2D,
    add_kernel_and_bias,
    conv_arguments,
    conv_window,
    positive_int,
)
from convlens.ops import conv as conv_ops
from convlens.shapes import check_conv_fits, conv_output_shape, depthwise_macs


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
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = self.where
        self.depth_multiplier = positive_int(depth_multiplier, "depth_multiplier", where)
        conv_arguments(self, self.rank, kernel_size, strides, padding, data_format,
                       dilation_rate)
        self.activation = resolve(activations.get, activation, where)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = resolve(initializers.get, depthwise_initializer, where)
        self.bias_initializer = resolve(initializers.get, bias_initializer, where)
        set_weight_rules(self, depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer,
                         depthwise_constraint=depthwise_constraint,
                         bias_constraint=bias_constraint)
        self.kernel = None
        self.bias = None
        self.needs_input_grad = True

    def build(self, input_shape):
        add_kernel_and_bias(self, input_shape, self.depthwise_initializer,
                            self.depthwise_regularizer, self.depthwise_constraint)
        self._fixed_axes = {self.geometry.channel_axis: self.geometry.channels(input_shape)}
        self.window = conv_window(self, input_shape)

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        channels = self.geometry.channels(input_shape)
        shapes = {"kernel": (*self.kernel_size, channels, self.depth_multiplier)}
        if self.use_bias:
            shapes["bias"] = (channels * self.depth_multiplier,)
        return shapes

    def multiply_adds(self, input_shape) -> int | None:
        spatial = self.geometry.spatial(self.compute_output_shape(input_shape))
        if None in spatial:
            return None
        channels = self.geometry.channels(input_shape)
        return depthwise_macs(spatial, self.kernel_size, channels, self.depth_multiplier)

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        spatial = self.geometry.spatial(input_shape)
        args = (self.kernel_size, self.padding, self.strides, self.dilation_rate)
        check_conv_fits(self.name, spatial, *args)
        channels = self.geometry.channels(input_shape) * self.depth_multiplier
        return self.geometry.shape(input_shape[0], conv_output_shape(spatial, *args), channels)

    def grouped_kernel(self) -> np.ndarray:
        *taps, channels, multiplier = self.kernel.shape
        # (*k, C_in, m) -> (*k, 1, C_in*m): output channel c*m + j, one group per channel
        return self.kernel.value.reshape(*taps, 1, channels * multiplier)

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        pads = self.window.pads_for(x.shape[1:-1])
        bias = self.bias.value if self.use_bias else None
        z, cache = conv_ops.conv_forward(
            x, self.grouped_kernel(), bias, self.strides, pads, self.dilation_rate,
            groups=x.shape[-1],
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
            **weight_rules_config(self, "depthwise_regularizer", "bias_regularizer",
                                  "activity_regularizer", "depthwise_constraint",
                                  "bias_constraint"),
        }


class SeparableConv2D(Layer):
    """A depthwise 2D convolution followed by a 1x1 pointwise convolution (one layer).

    Weights: ``depthwise_kernel (kh, kw, C_in, m)``, ``pointwise_kernel (1, 1, C_in*m, filters)``
    and ``bias (filters,)``.
    """

    @staticmethod
    def stage_classes():
        """The two layers this one is made of: the depthwise stage, then the pointwise one."""
        return DepthwiseConv2D, Conv2D

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
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        where = self.where
        self.filters = positive_int(filters, "filters", where)
        set_weight_rules(self, depthwise_regularizer=depthwise_regularizer,
                         pointwise_regularizer=pointwise_regularizer,
                         bias_regularizer=bias_regularizer,
                         depthwise_constraint=depthwise_constraint,
                         pointwise_constraint=pointwise_constraint,
                         bias_constraint=bias_constraint)
        # The two stages are real layers, named after this one and never auto-numbered.
        depthwise_cls, pointwise_cls = self.stage_classes()
        stages = {depthwise_cls.__name__: f"{self.name}_depthwise",
                  pointwise_cls.__name__: f"{self.name}_pointwise"}
        try:
            self.depthwise = depthwise_cls(
                kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
                use_bias=False, depthwise_initializer=depthwise_initializer,
                depthwise_regularizer=self.depthwise_regularizer,
                depthwise_constraint=self.depthwise_constraint,
                name=stages[depthwise_cls.__name__],
            )
            self.pointwise = pointwise_cls(
                filters, 1, data_format=data_format, activation=activation, use_bias=use_bias,
                kernel_initializer=pointwise_initializer, bias_initializer=bias_initializer,
                kernel_regularizer=self.pointwise_regularizer,
                kernel_constraint=self.pointwise_constraint,
                bias_regularizer=self.bias_regularizer, bias_constraint=self.bias_constraint,
                name=stages[pointwise_cls.__name__],
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
    def window(self):
        """The depthwise stage's window record: the pointwise stage is 1x1."""
        return self.depthwise.window

    @property
    def geometry(self):
        return self.depthwise.geometry

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

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        middle = self.depthwise.compute_output_shape(input_shape)
        depthwise = self.depthwise.weight_shapes(input_shape)
        pointwise = self.pointwise.weight_shapes(middle)
        shapes = {"depthwise_kernel": depthwise["kernel"], "pointwise_kernel": pointwise["kernel"]}
        if self.use_bias:
            shapes["bias"] = pointwise["bias"]
        return shapes

    def multiply_adds(self, input_shape) -> int | None:
        first = self.depthwise.multiply_adds(input_shape)
        second = self.pointwise.multiply_adds(self.depthwise.compute_output_shape(input_shape))
        return None if first is None or second is None else first + second

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
            **weight_rules_config(self, "depthwise_regularizer", "pointwise_regularizer",
                                  "bias_regularizer", "activity_regularizer",
                                  "depthwise_constraint", "pointwise_constraint",
                                  "bias_constraint"),
        }


class DepthwiseConv1D(DepthwiseConv2D):
    """Depthwise 1D convolution: each input channel of ``(N, steps, C)`` gets its own
    ``depth_multiplier`` filters; kernel ``(k, C, depth_multiplier)``."""

    rank = 1

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, **kwargs):
        super().__init__(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate, **kwargs)


class SeparableConv1D(SeparableConv2D):
    """A depthwise 1D convolution, then a pointwise (kernel size 1) Conv1D to ``filters``."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate,
                         depth_multiplier, **kwargs)

    @staticmethod
    def stage_classes():
        return DepthwiseConv1D, Conv1D


register(DepthwiseConv2D, Kind(
    words="depthwise", cost="depthwise", field="window", trace="depthwise", picture="depthwise",
    onnx="depthwise", torch="depthwise", builds_from_shape=True,
))
register(SeparableConv2D, Kind(
    words="separable", cost="separable", field="window", trace="separable", picture="separable",
    onnx="separable", torch="separable", builds_from_shape=True,
))
# torch export takes the 2D layers only so far.
register(DepthwiseConv1D, Kind(words="depthwise", cost="depthwise", field="window",
                               trace="depthwise", picture="depthwise", onnx="depthwise",
                               builds_from_shape=True))
register(SeparableConv1D, Kind(words="separable", cost="separable", field="window",
                               trace="separable", picture="separable", onnx="separable",
                               builds_from_shape=True))
