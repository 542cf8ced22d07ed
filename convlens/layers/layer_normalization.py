"""Per-sample normalization layers: ``LayerNormalization`` and ``GroupNormalization``.

Unlike ``BatchNormalization`` they use no batch statistics and keep no moving averages, so
training and inference compute the same thing. The maths is in
:mod:`convlens.ops.normalization`.

>>> import numpy as np
>>> layer = LayerNormalization(epsilon=0.0)
>>> np.round(layer(np.array([[1.0, 2.0, 3.0]])), 4)
array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
"""

from __future__ import annotations

import numbers

import numpy as np

from convlens import initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.layers.normalization import GAMMA_BETA_RULES
from convlens.ops import normalization as ops
from convlens.shapes import format_shape

__all__ = ["LayerNormalization", "GroupNormalization"]


class _AffineNormalization(Layer):
    """What both layers share: epsilon, center/scale and the gamma/beta weights."""

    def _common(self, epsilon, center, scale, beta_initializer, gamma_initializer, **rules):
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or epsilon < 0:
            raise ValueError(
                f"{self.where}: `epsilon` must be a number >= 0; received epsilon={epsilon!r}."
            )
        set_weight_rules(self, **rules)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = resolve(initializers.get, beta_initializer, self.where)
        self.gamma_initializer = resolve(initializers.get, gamma_initializer, self.where)
        self.gamma = self.beta = None

    def _add_gamma_beta(self, shape):
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer,
                                         regularizer=self.gamma_regularizer,
                                         constraint=self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer,
                                        regularizer=self.beta_regularizer,
                                        constraint=self.beta_constraint)

    def _params(self):
        return (None if self.gamma is None else self.gamma.value,
                None if self.beta is None else self.beta.value)

    def _set_grads(self, grad_gamma, grad_beta):
        if self.gamma is not None:
            self.gamma.grad = grad_gamma
        if self.beta is not None:
            self.beta.grad = grad_beta

    def get_config(self):
        return {
            **super().get_config(), "epsilon": self.epsilon, "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            **weight_rules_config(self, *GAMMA_BETA_RULES),
        }


def _check_axes(layer, axes, input_shape):
    rank = len(input_shape)
    if any(not -rank <= a < rank for a in axes) or any(a % rank == 0 for a in axes):
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}): axis={axes!r} must name axes of "
            f"one sample of the input of shape {format_shape(input_shape)} (1 to {rank - 1}, "
            f"or negative)."
        )
    unknown = [a for a in axes if input_shape[a] is None]
    if unknown:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) needs a known size on axis "
            f"{unknown[0]} of its input; received shape {format_shape(input_shape)}."
        )


def _axis_argument(axis, where):
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not axes or not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
    ):
        raise TypeError(
            f"{where}: `axis` must be an int or a list/tuple of ints; received axis={axis!r}."
        )
    return axis if isinstance(axis, (int, np.integer)) else list(axis)


class LayerNormalization(_AffineNormalization):
    """Standardise each sample over ``axis`` (by default the last), then scale and shift.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, with the mean and variance of one
    sample over ``axis``; ``gamma`` and ``beta`` have the sizes of those axes.
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        if kwargs.pop("rms_scaling", False):
            raise ValueError(
                "LayerNormalization: `rms_scaling=True` is deprecated in Keras and not supported "
                "by convlens; received rms_scaling=True."
            )
        super().__init__(**kwargs)
        self.axis = _axis_argument(axis, self.where)
        self._common(epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                     beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)

    @property
    def axes(self) -> list[int]:
        return sorted(self.axis) if isinstance(self.axis, list) else [self.axis]

    def weight_shapes(self, input_shape):
        _check_axes(self, self.axes, input_shape)
        shape = tuple(input_shape[a] for a in self.axes)
        return {name: shape for name, on in (("gamma", self.scale), ("beta", self.center)) if on}

    def build(self, input_shape):
        self.weight_shapes(input_shape)
        self.axis = self.axes  # as Keras: a list from now on, so the config says [-1]
        self._add_gamma_beta(tuple(input_shape[a] for a in self.axes))
        self._fixed_axes = {a: input_shape[a] for a in self.axes}

    def call(self, x, training=False):
        gamma, beta = self._params()
        y, cache = ops.layer_norm_forward(x, self.axes, gamma, beta, self.epsilon)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad_x, grad_gamma, grad_beta = ops.layer_norm_backward(grad_output, self.require_cache())
        self._set_grads(grad_gamma, grad_beta)
        return grad_x

    def get_config(self):
        config = super().get_config()
        head = {k: config.pop(k) for k in ("name", "trainable", "dtype")}
        return {**head, "axis": self.axis, **config, "rms_scaling": False}


class GroupNormalization(_AffineNormalization):
    """Split the channels into ``groups`` and standardise each sample's group on its own.

    ``groups=-1`` gives one group per channel (instance normalization), ``groups=1`` one group
    for all channels. ``gamma`` and ``beta`` are per channel.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or (
            groups <= 0 and groups != -1
        ):
            raise ValueError(
                f"{self.where}: `groups` must be a positive int (or -1 for instance "
                f"normalization); received groups={groups!r}."
            )
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self.where}: `axis` must be an int; received axis={axis!r}.")
        self.groups = int(groups)
        self.axis = int(axis)
        self._common(epsilon, center, scale, beta_initializer, gamma_initializer,
                     beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                     beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)

    def weight_shapes(self, input_shape):
        _check_axes(self, [self.axis], input_shape)
        channels = input_shape[self.axis]
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise ValueError(
                f"{self.where}: groups={groups} must divide the {channels} channels on axis "
                f"{self.axis} of the input of shape {format_shape(input_shape)}."
            )
        return {name: (channels,) for name, on in (("gamma", self.scale), ("beta", self.center))
                if on}

    def build(self, input_shape):
        self.weight_shapes(input_shape)
        channels = input_shape[self.axis]
        if self.groups == -1:
            self.groups = channels  # as Keras does: the config then says the count
        self._add_gamma_beta((channels,))
        self._fixed_axes = {self.axis: channels}

    def call(self, x, training=False):
        gamma, beta = self._params()
        y, cache = ops.group_norm_forward(x, self.groups, self.axis, gamma, beta, self.epsilon)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        grad_x, grad_gamma, grad_beta = ops.group_norm_backward(grad_output, self.require_cache())
        self._set_grads(grad_gamma, grad_beta)
        return grad_x

    def get_config(self):
        config = super().get_config()
        head = {k: config.pop(k) for k in ("name", "trainable", "dtype")}
        return {**head, "groups": self.groups, "axis": self.axis, **config}


# Statistics over whole samples (or groups of channels) make every output depend on the rest.
register(LayerNormalization, Kind(words="layer_norm", field="last_axis", trace="layer_norm",
                                  onnx="layer_norm", builds_from_shape=True))
register(GroupNormalization, Kind(words="group_norm", field="mix", trace="group_norm",
                                  onnx="group_norm", builds_from_shape=True))
