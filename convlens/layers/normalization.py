"""BatchNormalization with Keras semantics (biased batch variance, momentum 0.99, eps 1e-3)."""

from __future__ import annotations

import math

import numpy as np

from convlens import initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve
from convlens.layers.conv import check_no_regularizers
from convlens.shapes import format_shape


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
        check_no_regularizers(
            self.where,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
        )
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
            self.gamma = self.add_weight("gamma", shapes["gamma"], self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", shapes["beta"], self.beta_initializer)
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

    def _broadcast(self, vector, ndim):
        shape = [1] * ndim
        shape[self.axis] = -1
        return vector.reshape(shape)

    def call(self, x, training=False):
        axes = tuple(a for a in range(x.ndim) if a != self.axis % x.ndim)
        # As Keras: a frozen layer (trainable=False) normalises with its moving statistics
        # even inside fit, the usual fine-tuning setup, and leaves them unchanged.
        batch_statistics = training and self.trainable
        if batch_statistics:
            mean = x.mean(axis=axes)
            variance = x.var(axis=axes)
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                moving.value *= self.momentum
                moving.value += (1.0 - self.momentum) * batch
        else:
            mean, variance = self.moving_mean.value, self.moving_variance.value
        inv_std = (1.0 / np.sqrt(variance + self.epsilon)).astype(np.float32)
        x_hat = (x - self._broadcast(mean, x.ndim)) * self._broadcast(inv_std, x.ndim)
        y = x_hat * self._broadcast(self.gamma.value, x.ndim) if self.scale else x_hat
        if self.center:
            y = y + self._broadcast(self.beta.value, x.ndim)
        self._cache = (x_hat, inv_std, axes, batch_statistics) if training else None
        return y.astype(np.float32, copy=False)

    def backward(self, grad_output):
        x_hat, inv_std, axes, batch_statistics = self.require_cache()
        ndim = grad_output.ndim
        if self.center:
            self.beta.grad = grad_output.sum(axis=axes)
        if self.scale:
            self.gamma.grad = (grad_output * x_hat).sum(axis=axes)
            grad_x_hat = grad_output * self._broadcast(self.gamma.value, ndim)
        else:
            grad_x_hat = grad_output
        if not batch_statistics:  # fixed mean and variance: a per-channel affine map
            return (grad_x_hat * self._broadcast(inv_std, ndim)).astype(np.float32, copy=False)
        count = grad_output.size // grad_output.shape[self.axis]
        mean_grad = self._broadcast(grad_x_hat.sum(axis=axes) / count, ndim)
        mean_grad_xhat = self._broadcast((grad_x_hat * x_hat).sum(axis=axes) / count, ndim)
        grad_x = (grad_x_hat - mean_grad - x_hat * mean_grad_xhat) * self._broadcast(inv_std, ndim)
        return grad_x.astype(np.float32, copy=False)

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
        }


register(BatchNormalization, Kind(
    words="batchnorm", cost="per_value", field="pointwise", trace="batchnorm", onnx="batchnorm",
    torch="batchnorm", builds_from_shape=True,
    keras_only_keys={
        "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
        "gamma_constraint": None, "synchronized": False, "renorm": False,
        "renorm_clipping": None, "renorm_momentum": 0.99,
    },
))
