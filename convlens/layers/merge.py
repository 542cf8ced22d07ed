"""Merge layers: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``
and ``Concatenate``, called on a list of tensors (Keras 3 names and checks).

The elementwise merges need inputs of one shape (an axis of size 1 or None broadcasts, as in
Keras); ``Concatenate`` joins along ``axis`` and needs every other axis equal, so two
``(26, 26, 32)`` maps become one ``(26, 26, 64)``. The maths is in ``convlens.ops.merge``.

Example:
    >>> import numpy as np
    >>> Add()([np.ones((1, 2), "float32"), np.ones((1, 2), "float32")])
    array([[2., 2.]], dtype=float32)
"""

from __future__ import annotations

from convlens.kinds import Kind, register
from convlens.layers.base import Layer
from convlens.ops import merge as merge_ops
from convlens.shapes import format_shape


class Merge(Layer):
    """Shared body of the elementwise merges; subclasses name their forward/backward ops."""

    takes_list = True
    built_at_init = True
    forward_op = staticmethod(merge_ops.add_forward)
    backward_op = staticmethod(merge_ops.add_backward)
    exact_inputs: int | None = None  # Subtract takes exactly two

    def _check_shapes(self, input_shapes) -> None:
        if not isinstance(input_shapes, list) or len(input_shapes) < 2:
            raise ValueError(
                f"{self.where} must be called on a list of at least 2 inputs; received "
                f"{input_shapes!r}."
            )
        if self.exact_inputs and len(input_shapes) != self.exact_inputs:
            raise ValueError(f"{self.where} must be called on exactly {self.exact_inputs} "
                             f"inputs; received {len(input_shapes)}.")

    def compute_output_shape(self, input_shapes):
        self._check_shapes(input_shapes)
        output = list(input_shapes[0])
        for shape in input_shapes[1:]:
            if len(shape) != len(output):
                raise ValueError(self._mismatch(input_shapes))
            for axis, (a, b) in enumerate(zip(output, shape)):
                if a is None or b is None:
                    output[axis] = a if b is None else b if a is None else None
                elif a != b and 1 not in (a, b):
                    raise ValueError(self._mismatch(input_shapes))
                else:
                    output[axis] = max(a, b)
        if input_shapes[0][0] is None or any(s[0] is None for s in input_shapes):
            output[0] = None
        return tuple(output)

    def _mismatch(self, input_shapes) -> str:
        shapes = " and ".join(format_shape(s) for s in input_shapes)
        return (f"{self.where} needs inputs of the same shape (an axis of size 1 may "
                f"broadcast); received {shapes}. Make the branches agree, e.g. with a 1x1 "
                "Conv2D to match channels or strides to match sizes.")

    def call(self, inputs, training=False):
        y, cache = self.forward_op(list(inputs))
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return self.backward_op(grad_output, self.require_cache())


class Add(Merge):
    """Sum of the inputs, value by value (the residual connection of ResNet)."""


class Subtract(Merge):
    forward_op = staticmethod(merge_ops.subtract_forward)
    backward_op = staticmethod(merge_ops.subtract_backward)
    exact_inputs = 2


class Multiply(Merge):
    forward_op = staticmethod(merge_ops.multiply_forward)
    backward_op = staticmethod(merge_ops.multiply_backward)


class Average(Merge):
    forward_op = staticmethod(merge_ops.average_forward)
    backward_op = staticmethod(merge_ops.average_backward)


class Maximum(Merge):
    forward_op = staticmethod(merge_ops.maximum_forward)
    backward_op = staticmethod(merge_ops.maximum_backward)


class Minimum(Merge):
    forward_op = staticmethod(merge_ops.minimum_forward)
    backward_op = staticmethod(merge_ops.minimum_backward)


class Concatenate(Layer):
    """The inputs joined along ``axis`` (default the channels, -1); other axes must match."""

    takes_list = True
    built_at_init = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"{self.where}: `axis` must be an int; received axis={axis!r}.")
        self.axis = axis

    def compute_output_shape(self, input_shapes):
        if not isinstance(input_shapes, list) or len(input_shapes) < 1:
            raise ValueError(f"{self.where} must be called on a list of inputs; received "
                             f"{input_shapes!r}.")
        rank = len(input_shapes[0])
        shapes = " and ".join(format_shape(s) for s in input_shapes)
        if any(len(s) != rank for s in input_shapes) or not -rank <= self.axis < rank:
            raise ValueError(f"{self.where}: the inputs must have one rank and axis={self.axis} "
                             f"must be one of their axes; received {shapes}.")
        axis = self.axis % rank
        output = list(input_shapes[0])
        for shape in input_shapes[1:]:
            for index, (a, b) in enumerate(zip(output, shape)):
                if index == axis:
                    output[index] = None if a is None or b is None else a + b
                elif a is not None and b is not None and a != b:
                    raise ValueError(
                        f"{self.where} needs every axis but the concatenation axis ({axis}) to "
                        f"match; received {shapes}."
                    )
                elif a is None:
                    output[index] = b
        return tuple(output)

    def call(self, inputs, training=False):
        y, cache = merge_ops.concatenate_forward(list(inputs), self.axis)
        self._cache = cache if training else None
        return y

    def backward(self, grad_output):
        return merge_ops.concatenate_backward(grad_output, self.require_cache())

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


MERGE_KIND = Kind(words="merge", field="merge", trace="merge", onnx="merge", torch="merge")
for _cls in (Add, Subtract, Multiply, Average, Maximum, Minimum):
    register(_cls, MERGE_KIND)
register(Concatenate, Kind(words="concatenate", field="merge", trace="concatenate",
                           onnx="concatenate", torch="concatenate"))
