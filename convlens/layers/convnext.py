"""The two layers ConvNeXt defines for itself (Keras's ``keras.src.applications.convnext``):
``LayerScale``, a learned factor per channel on a residual branch, and ``StochasticDepth``,
which drops a residual branch for whole samples while training.

In a ConvNeXt block the branch is ``x + StochasticDepth(LayerScale(f(x)))``: LayerScale starts
its factors tiny (``init_values=1e-6``) so each block starts close to the identity (Touvron
et al., 2021, arXiv:2103.17239), and StochasticDepth (Huang et al., 2016) keeps a sample's
branch with probability ``1 - drop_path_rate``, scaled by ``1 / (1 - drop_path_rate)``, and
passes everything through at inference. Their files name them by that module, as Keras
does, so Keras opens convlens's files. The maths is in ``convlens.ops``.

Example:
    >>> import numpy as np
    >>> LayerScale(0.5, 2)(np.ones((1, 2), "float32"))
    array([[0.5, 0.5]], dtype=float32)
    >>> StochasticDepth(0.25)(np.ones((1, 2), "float32"))  # inference: unchanged
    array([[1., 1.]], dtype=float32)
"""

from __future__ import annotations

import math
import numbers

from convlens import initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer
from convlens.layers.conv import positive_int
from convlens.ops import arithmetic as arithmetic_ops
from convlens.ops import dropout as dropout_ops
from convlens.shapes import format_shape
from convlens.utils import rng

MODULE = "keras.src.applications.convnext"


def _fraction(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{where}: `{what}` must be a number in [0, 1]; received "
                         f"{what}={value!r}.")
    return float(value)


class LayerScale(Layer):
    """``y = x * gamma``: ``gamma`` holds one learned factor per channel (the last axis),
    ``projection_dim`` of them, all starting at ``init_values``.

    Input shape: ``(batch, ..., projection_dim)``. Output shape: the same.
    """

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        if isinstance(init_values, bool) or not isinstance(init_values, numbers.Real):
            raise ValueError(f"{self.where}: `init_values` must be a number; received "
                             f"init_values={init_values!r}.")
        self.init_values = float(init_values)
        self.projection_dim = positive_int(projection_dim, "projection_dim", self.where)
        self.gamma = None

    def build(self, input_shape):
        if input_shape[-1] not in (None, self.projection_dim):
            raise ValueError(
                f"{self.where} scales {self.projection_dim} channels (projection_dim) but its "
                f"input {format_shape(input_shape)} has {input_shape[-1]} on the last axis. "
                f"Pass projection_dim={input_shape[-1]}."
            )
        # Keras names this weight "variable" (its add_weight has no name)
        self.gamma = self.add_weight("variable", (self.projection_dim,),
                                     initializers.Constant(self.init_values))
        self._fixed_axes = {-1: self.projection_dim}

    def weight_shapes(self, input_shape):
        return {"variable": (self.projection_dim,)}

    def call(self, x, training=False):
        y, cache = arithmetic_ops.channel_scale_forward(x, self.gamma.value)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad_x, grad_gamma = arithmetic_ops.channel_scale_backward(
            grad_output, self.require_cache(), self.gamma.value)
        self.gamma.grad = grad_gamma
        return grad_x

    def multiply_adds(self, input_shape):
        return None if None in input_shape[1:] else math.prod(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values,
                "projection_dim": self.projection_dim}


class StochasticDepth(Layer):
    """Training: each sample's values are all dropped (with probability ``drop_path_rate``)
    or all kept and scaled by ``1 / (1 - drop_path_rate)``; inference: unchanged.

    The draws come from the session's random stream (``convlens.utils.set_random_seed``).
    """

    built_at_init = True

    def __init__(self, drop_path_rate, **kwargs):
        super().__init__(**kwargs)
        self.drop_path_rate = _fraction(drop_path_rate, "drop_path_rate", self.where)

    def call(self, x, training=False):
        if not training or self.drop_path_rate == 0:
            self._cache = None if not training else 1.0
            return x
        per_sample = (x.shape[0],) + (1,) * (x.ndim - 1)  # (N, 1, ..., 1): one draw a sample
        mask = dropout_ops.dropout_mask(rng(), per_sample, self.drop_path_rate, x.dtype)
        self._cache = mask
        return dropout_ops.dropout_forward(x, mask)

    def backward(self, grad_output):
        return dropout_ops.dropout_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "drop_path_rate": self.drop_path_rate}


register(LayerScale, Kind(words="layer_scale", cost="per_value", field="pointwise",
                          trace="layer_scale", onnx="layer_scale", torch="layer_scale",
                          keras_module=MODULE, builds_from_shape=True))
register(StochasticDepth, Kind(words="stochastic_depth", field="pointwise", trace="copy",
                               onnx="dropout", torch="identity",
                               keras_module=MODULE, builds_from_shape=True))
