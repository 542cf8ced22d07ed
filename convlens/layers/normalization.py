"""BatchNormalization with Keras semantics (biased batch variance, momentum 0.99, eps 1e-3)."""

from __future__ import annotations

import math

import numpy as np

from convlens import initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.ops.normalization import batch_norm_backward, batch_norm_forward, moving_average
from convlens.shapes import format_shape

# The weight rules of a layer with gamma and beta, in the order Keras writes them.
GAMMA_BETA_RULES = ("beta_regularizer", "gamma_regularizer", "beta_constraint",
                    "gamma_constraint")


class BatchNormalization(Layer):
    """Normalises each channel: ``gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    Training uses the batch's mean and (biased) variance and moves the stored
    statistics: ``moving = moving * momentum + batch * (1 - momentum)``; inference
    uses the stored ``moving_mean`` and ``moving_variance``. Weights, in Keras's
    order: gamma, beta (trainable), moving_mean, moving_variance (not trainable).
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self.where}: `axis` must be an int; received axis={axis!r}.")
        if not 0 <= momentum <= 1:
            raise ValueError(
                f"{self.where}: `momentum` must be in [0, 1]; received momentum={momentum!r}."
            )
        if epsilon <= 0:
            raise ValueError(
                f"{self.where}: `epsilon` must be > 0; received epsilon={epsilon!r}."
            )
        set_weight_rules(self, beta_regularizer=beta_regularizer,
                         gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
                         gamma_constraint=gamma_constraint)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        where = self.where
        self.beta_initializer = resolve(initializers.get, beta_initializer, where)
        self.gamma_initializer = resolve(initializers.get, gamma_initializer, where)
        self.moving_mean_initializer = resolve(initializers.get, moving_mean_initializer, where)
        self.moving_variance_initializer = resolve(
            initializers.get, moving_variance_initializer, where
        )
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape):
        shapes = self.weight_shapes(input_shape)
        if self.scale:
            self.gamma = self.add_weight("gamma", shapes["gamma"], self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shapes["beta"], self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)
        self.moving_mean = self.add_weight(
            "moving_mean", shapes["moving_mean"], self.moving_mean_initializer, trainable=False
        )
        self.moving_variance = self.add_weight(
            "moving_variance", shapes["moving_variance"], self.moving_variance_initializer,
            trainable=False,
        )
        self._fixed_axes = {self.axis: input_shape[self.axis]}

    def weight_shapes(self, input_shape) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        names = ("gamma",) * self.scale + ("beta",) * self.center
        return dict.fromkeys((*names, "moving_mean", "moving_variance"),
                             (input_shape[self.axis],))

    def multiply_adds(self, input_shape) -> int | None:
        # At inference the scale and shift fold into one multiply-add per value.
        rest = self.compute_output_shape(input_shape)[1:]
        return None if None in rest else math.prod(rest)

    def compute_output_shape(self, input_shape):
        if not -len(input_shape) <= self.axis < len(input_shape) or self.axis in (
            0, -len(input_shape)
        ):
            raise ValueError(
                f"Layer '{self.name}': axis={self.axis} is not a feature axis of an input of "
                f"shape {format_shape(input_shape)}."
            )
        if input_shape[self.axis] is None:
            raise ValueError(
                f"Layer '{self.name}': axis {self.axis} of the input must be known; received "
                f"shape {format_shape(input_shape)}."
            )
        return tuple(input_shape)

    def call(self, x, training=False):
        # As Keras: a frozen layer (trainable=False) normalises with its moving statistics
        # even inside fit, the usual fine-tuning setup, and leaves them unchanged.
        batch_statistics = training and self.trainable
        fixed = {} if batch_statistics else {"mean": self.moving_mean.value,
                                             "variance": self.moving_variance.value}
        y, cache, mean, variance = batch_norm_forward(
            x, self.axis, self.gamma.value if self.scale else None,
            self.beta.value if self.center else None, self.epsilon, **fixed,
        )
        if batch_statistics:
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.assign(moving_average(moving.value, batch, self.momentum))
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_output, self.require_cache())
        if self.scale:
            self.gamma.grad = grad_gamma
        if self.center:
            self.beta.grad = grad_beta
        return grad_x

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(
                self.moving_variance_initializer
            ),
            **weight_rules_config(self, *GAMMA_BETA_RULES),
        }


register(BatchNormalization, Kind(
    words="batchnorm", cost="per_value", field="pointwise", trace="batchnorm", onnx="batchnorm",
    torch="batchnorm", builds_from_shape=True,
    keras_only_keys={
        "synchronized": False, "renorm": False,
        "renorm_clipping": None, "renorm_momentum": 0.99,
    },
))
