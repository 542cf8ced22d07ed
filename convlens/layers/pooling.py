"""Pooling layers: Max/Average Pooling 1D/2D/3D and global pooling.

A pooling window works on each channel separately (unlike a conv filter, it
never mixes channels) and has no weights.
"""

from __future__ import annotations

from convlens.kinds import Kind, register
from convlens.layers.base import Layer
from convlens.layers.conv import ConvGeometry
from convlens.ops import pool as pool_ops
from convlens.shapes import (
    check_conv_fits,
    conv_output_shape,
    normalize_data_format,
    normalize_padding,
    normalize_tuple,
    sliding_window,
)


class Pooling(Layer):
    """Shared body of the Max/Average pooling layers; ``mode`` is ``"max"`` or ``"average"``."""

    built_at_init = True

    rank = 2
    mode = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        where = self.where
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", where=where)
        self.strides = normalize_tuple(
            self.pool_size if strides is None else strides, self.rank, "strides", where=where
        )
        self.padding = normalize_padding(padding, where=where)
        self.data_format = normalize_data_format(data_format, where)
        self.geometry = ConvGeometry(self.rank, self.data_format)
        self.window = None

    def build(self, input_shape):
        ones = (1,) * self.rank
        self.window = sliding_window(input_shape, self.pool_size, self.strides, ones,
                                     self.padding, self.data_format)

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        spatial = self.geometry.spatial(input_shape)
        ones = (1,) * self.rank
        check_conv_fits(self.name, spatial, self.pool_size, self.padding, self.strides, ones,
                        what="pool window")
        out = conv_output_shape(spatial, self.pool_size, self.padding, self.strides, ones)
        return self.geometry.shape(input_shape[0], out, self.geometry.channels(input_shape))

    def call(self, x, training=False):
        x = self.geometry.to_last(x)
        pads = self.window.pads_for(x.shape[1:-1])
        forward = pool_ops.max_pool_forward if self.mode == "max" else pool_ops.avg_pool_forward
        y, cache = forward(x, self.pool_size, self.strides, pads)
        self._cache = cache if training else None
        return self.geometry.from_last(y)

    def backward(self, grad_output):
        backward = (
            pool_ops.max_pool_backward if self.mode == "max" else pool_ops.avg_pool_backward
        )
        grad = backward(self.geometry.to_last(grad_output), self.require_cache())
        return self.geometry.from_last(grad)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


class MaxPooling1D(Pooling):
    rank, mode = 1, "max"


class MaxPooling2D(Pooling):
    """Maximum over each ``pool_size`` window, per channel: ``(24, 24, 64)`` -> ``(12, 12, 64)``."""

    rank, mode = 2, "max"


class MaxPooling3D(Pooling):
    rank, mode = 3, "max"


class AveragePooling1D(Pooling):
    rank, mode = 1, "average"


class AveragePooling2D(Pooling):
    rank, mode = 2, "average"


class AveragePooling3D(Pooling):
    rank, mode = 3, "average"


MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D


class GlobalPooling(Layer):
    """Mean or max over all spatial axes: ``(batch, *spatial, C)`` -> ``(batch, C)``."""

    built_at_init = True

    rank = 2
    mode = "avg"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = normalize_data_format(data_format, self.where)
        self.keepdims = bool(keepdims)
        self.geometry = ConvGeometry(self.rank, self.data_format)

    def compute_output_shape(self, input_shape):
        self.geometry.check_rank(self, input_shape)
        channels = self.geometry.channels(input_shape)
        if self.keepdims:
            return self.geometry.shape(input_shape[0], (1,) * self.rank, channels)
        return (input_shape[0], channels)

    def call(self, x, training=False):
        y, cache = pool_ops.global_pool_forward(self.geometry.to_last(x), self.mode, True)
        self._cache = cache if training else None
        y = self.geometry.from_last(y)
        return y if self.keepdims else y.reshape(y.shape[0], -1)

    def backward(self, grad_output):
        channels = grad_output.shape[1] if not self.keepdims else None
        if not self.keepdims:
            grad_output = grad_output.reshape(
                (grad_output.shape[0],) + (1,) * self.rank + (channels,)
            )
        else:
            grad_output = self.geometry.to_last(grad_output)
        grad = pool_ops.global_pool_backward(grad_output, self.require_cache())
        return self.geometry.from_last(grad)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling1D(GlobalPooling):
    rank, mode = 1, "avg"


class GlobalAveragePooling2D(GlobalPooling):
    rank, mode = 2, "avg"


class GlobalMaxPooling1D(GlobalPooling):
    rank, mode = 1, "max"


class GlobalMaxPooling2D(GlobalPooling):
    rank, mode = 2, "max"


class GlobalAveragePooling3D(GlobalPooling):
    rank, mode = 3, "avg"


class GlobalMaxPooling3D(GlobalPooling):
    rank, mode = 3, "max"


GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D)
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = (
    GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D)


POOL_KIND = Kind(words="pool", field="window", trace="pool", onnx="pool", torch="pool")
GLOBAL_POOL_KIND = Kind(words="global_pool", field="mix", trace="global_pool", onnx="global_pool",
                        torch="global_pool")
for _cls in (MaxPooling1D, MaxPooling2D, MaxPooling3D,
             AveragePooling1D, AveragePooling2D, AveragePooling3D):
    register(_cls, POOL_KIND)
for _cls in (GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D,
             GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D):
    register(_cls, GLOBAL_POOL_KIND)
