"""Activation layers with arguments: ``LeakyReLU``, ``PReLU`` (a learned slope), ``ELU``,
``Softmax`` over any axis. (``ReLU`` and ``Activation`` live in ``core``.)

The maths is in :mod:`convlens.ops.activations`; a layer keeps ``(x, y)`` from a training call
for its backward pass.

>>> import numpy as np
>>> LeakyReLU(negative_slope=0.5)(np.array([[-2.0, 3.0]]))
array([[-1.,  3.]], dtype=float32)
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from convlens import activations, initializers
from convlens.kinds import Kind, register
from convlens.layers.base import Layer, resolve, set_weight_rules, weight_rules_config
from convlens.ops import activations as ops
from convlens.shapes import format_shape

__all__ = ["LeakyReLU", "PReLU", "ELU", "Softmax"]


class _OptionsActivation(Layer):
    """An activation from ``ops.activations`` by name, with this layer's options."""

    built_at_init = True
    function = "linear"

    @property
    def activation(self) -> activations.Activation:
        """What readers (explanations, traces) call: the function with this layer's options."""
        return activations.Activation(self.function, options=self.options())

    def options(self) -> dict:
        return {}

    def call(self, x, training=False):
        return self.activate(x, training)

    def backward(self, grad_output):
        return self.activation_grad(grad_output)


def _number(value, name: str, where: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
        minimum is not None and value < minimum
    ):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{where}: `{name}` must be a number{bound}; received {name}={value!r}.")
    return float(value)


class LeakyReLU(_OptionsActivation):
    """``x`` for ``x >= 0``, ``negative_slope * x`` below (Keras's default slope: 0.3)."""

    function = "leaky_relu"

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.",
                          stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _number(negative_slope, "negative_slope", self.where, 0.0)

    def options(self):
        return {"negative_slope": self.negative_slope}

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_OptionsActivation):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` below."""

    function = "elu"

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number(alpha, "alpha", self.where)

    def options(self):
        return {"alpha": self.alpha}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_OptionsActivation):
    """``exp(x) / sum(exp(x))`` over ``axis`` (an int, or a list of axes taken together)."""

    function = "softmax"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        if not axes or not all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
        ):
            raise ValueError(
                f"{self.where}: `axis` must be an int or a list of ints; received axis={axis!r}."
            )
        self.axis = axis

    def compute_output_shape(self, input_shape):
        axes = self.axis if isinstance(self.axis, (tuple, list)) else (self.axis,)
        if any(not -len(input_shape) <= a < len(input_shape) for a in axes):
            raise ValueError(
                f"Layer '{self.name}' (Softmax): axis={self.axis!r} is out of range for an "
                f"input of shape {format_shape(input_shape)}."
            )
        return tuple(input_shape)

    def options(self):
        return {"axis": self.axis}

    # Not through ``activate``: the trainer would fuse a last-axis softmax with the loss.
    def call(self, x, training=False):
        y = ops.activation_forward("softmax", x, axis=self.axis)
        self._cache = (x, y) if training else None
        return y

    def backward(self, grad_output):
        x, y = self.require_cache()
        return ops.activation_backward("softmax", x, y, grad_output, axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """``x`` for ``x >= 0``, ``alpha * x`` below, with ``alpha`` learned per value.

    ``alpha`` has the shape of one sample, with 1 on each axis in ``shared_axes`` (``[1, 2]``
    shares one slope per channel across rows and columns of an image).
    """

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = resolve(initializers.get, alpha_initializer, self.where)
        set_weight_rules(self, alpha_regularizer=alpha_regularizer,
                         alpha_constraint=alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1
                       for a in axes):
                raise ValueError(
                    f"{self.where}: `shared_axes` must be axes of one sample, counted from 1; "
                    f"received shared_axes={shared_axes!r}."
                )
            self.shared_axes = [int(a) for a in axes]
        self.alpha = None

    def weight_shapes(self, input_shape):
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            if axis >= len(input_shape):
                raise ValueError(
                    f"{self.where}: shared axis {axis} is not an axis of one sample of shape "
                    f"{format_shape(input_shape[1:])}."
                )
            shape[axis - 1] = 1
        if any(d is None for d in shape):
            raise ValueError(
                f"{self.where}: every unshared axis needs a known size to create `alpha`; "
                f"received input shape {format_shape(input_shape)}. Share the unknown axes."
            )
        return {"alpha": tuple(shape)}

    def build(self, input_shape):
        (name, shape), = self.weight_shapes(input_shape).items()
        self.alpha = self.add_weight(name, shape, self.alpha_initializer,
                                     regularizer=self.alpha_regularizer,
                                     constraint=self.alpha_constraint)
        self._fixed_axes = {
            axis: input_shape[axis] for axis in range(1, len(input_shape))
            if axis not in (self.shared_axes or ())
        }

    def call(self, x, training=False):
        self._cache = x if training else None
        return ops.prelu_forward(x, self.alpha.value)

    def backward(self, grad_output):
        grad_x, self.alpha.grad = ops.prelu_backward(self.require_cache(), self.alpha.value,
                                                     grad_output)
        return grad_x

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                **weight_rules_config(self, "alpha_regularizer", "alpha_constraint"),
                "shared_axes": self.shared_axes}


register(LeakyReLU, Kind(words="elementwise", field="pointwise", trace="elementwise",
                         onnx="leaky_relu"))
register(ELU, Kind(words="elementwise", field="pointwise", trace="elementwise", onnx="elu"))
register(PReLU, Kind(words="prelu", field="pointwise", trace="prelu", onnx="prelu",
                     builds_from_shape=True))
register(Softmax, Kind(words="softmax", field="last_axis", trace="softmax", onnx="softmax"))
