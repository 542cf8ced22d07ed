"""``SpatialDropout1D/2D/3D``: dropout of whole feature maps.

Neighbouring values of one feature map are strongly correlated, so dropping single values
regularises little; these layers keep or drop each (sample, channel) map as a whole (Tompson et
al., 2015), scaling the kept ones by ``1 / (1 - rate)``. The mask is drawn by
:mod:`convlens.ops.dropout`, from the session's generator (or the layer's own, with ``seed``).

>>> import numpy as np
>>> y = SpatialDropout2D(0.5, seed=1)(np.ones((2, 3, 3, 4)), training=True)
>>> bool(np.all(y == y[:, :1, :1, :]))  # constant over each map
True
"""

from __future__ import annotations

from convlens.kinds import Kind, register
from convlens.layers.core import Dropout
from convlens.layers.reshaping import check_spatial_rank
from convlens.ops import dropout as ops
from convlens.shapes import normalize_data_format
from convlens.utils import rng

__all__ = ["SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"]


class _SpatialDropout(Dropout):
    rank = 1

    def __init__(self, rate, seed=None, name=None, dtype=None, data_format=None, **kwargs):
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)
        self.data_format = normalize_data_format(data_format, self.where)

    def compute_output_shape(self, input_shape):
        check_spatial_rank(self, self.rank, input_shape)
        return tuple(input_shape)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            self._cache = 1.0
            return x
        channel_axis = -1 if self.data_format == "channels_last" else 1
        shape = ops.spatial_noise_shape(x.shape, channel_axis)
        mask = ops.dropout_mask(self._generator or rng(), shape, self.rate)
        self._cache = mask
        return ops.dropout_forward(x, mask)

    def backward(self, grad_output):
        return ops.dropout_backward(grad_output, self.require_cache())

    def get_config(self):
        # Keras writes only these keys for spatial dropout (no noise_shape, no trainable)
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": "float32",
                **({"data_format": self.data_format} if self.rank > 1 else {})}


class SpatialDropout1D(_SpatialDropout):
    """Drop whole channels of ``(N, steps, C)``: one keep/drop draw per sample and channel."""

    def __init__(self, rate, seed=None, name=None, dtype=None, **kwargs):
        super().__init__(rate, seed=seed, name=name, dtype=dtype, **kwargs)


class SpatialDropout2D(_SpatialDropout):
    """Drop whole feature maps of ``(N, H, W, C)`` (or ``(N, C, H, W)``)."""

    rank = 2


class SpatialDropout3D(_SpatialDropout):
    """Drop whole feature volumes of ``(N, D, H, W, C)`` (or ``(N, C, D, H, W)``)."""

    rank = 3


for _cls in (SpatialDropout1D, SpatialDropout2D, SpatialDropout3D):
    register(_cls, Kind(words="dropout", field="pointwise", trace="copy", onnx="dropout"))
