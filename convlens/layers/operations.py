"""The operations tensor arithmetic records: ``x + 3.0``, ``x * y``, ``3 - x``, ``x / 6``, ``-x``.

Keras 3 records arithmetic on symbolic tensors as operations of ``keras.src.ops.numpy``
(``Add``, ``Subtract``, ``Multiply``, ``Divide``, ``TrueDivide``, ``Negative``), not as merge
layers: each has only a name, and the call's arguments hold its constants (MobileNetV3's
hard-sigmoid ``ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`` is an ``Add`` called on ``[x, 3.0]`` and a
``Multiply`` called on ``[y, 0.16666666666666666]``). These classes are those operations:
``arguments`` is the call's argument list with ``None`` where a tensor goes, and a layer
is called on the list of its tensors. Their names (``add``, ``true_divide``...) are counted
with the layers', as Keras counts them. The maths is in ``convlens.ops.arithmetic``.

They are not exported by ``convlens.layers`` (``Add`` there is the merge layer): they are
made by the arithmetic operators of ``KerasTensor`` and by a ``.keras`` file that holds them.

Example:
    >>> import numpy as np
    >>> Add(arguments=(None, 3.0))([np.array([[1.0, -5.0]], np.float32)])
    array([[ 4., -2.]], dtype=float32)
"""

from __future__ import annotations

import numbers

import numpy as np

from convlens.kinds import Kind, register
from convlens.layers.base import Layer
from convlens.ops import arithmetic as arithmetic_ops
from convlens.shapes import format_shape


def is_constant(value) -> bool:
    """A number an operation can hold as a constant argument (bools are refused, as flags)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class Operation(Layer):
    """Shared body of the arithmetic operations; subclasses name their maths."""

    takes_list = True
    built_at_init = True
    operation: str = "add"  # the convlens.ops.arithmetic name
    symbol: str = "+"
    arity = 2

    def __init__(self, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self.arguments: tuple = (None,) * self.arity
        if arguments is not None:
            self.set_arguments(arguments)

    def set_arguments(self, arguments) -> None:
        """The call's arguments: ``None`` where a tensor goes, else a number (a constant)."""
        arguments = tuple(arguments) if isinstance(arguments, (list, tuple)) else arguments
        if (not isinstance(arguments, tuple) or len(arguments) != self.arity
                or not all(a is None or is_constant(a) for a in arguments)
                or all(a is not None for a in arguments)):
            raise ValueError(
                f"{self.where} takes {self.arity} argument(s), each a tensor or a number, at "
                f"least one a tensor; received {arguments!r}."
            )
        if self.inbound_nodes and arguments != self.arguments:
            raise ValueError(f"{self.where} was already called with the arguments "
                             f"{self.arguments!r}; received {arguments!r}.")
        self.arguments = tuple(float(a) if isinstance(a, np.floating) else
                               int(a) if isinstance(a, np.integer) else a for a in arguments)

    @property
    def tensor_count(self) -> int:
        return sum(a is None for a in self.arguments)

    def _shapes(self, input_shape) -> list:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != self.tensor_count:
            raise ValueError(f"{self.where} takes {self.tensor_count} tensor(s) (arguments "
                             f"{self.expression()}); received {len(shapes)}.")
        return shapes

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        output = list(shapes[0])
        for shape in shapes[1:]:
            output = _broadcast(output, list(shape), self.where, shapes)
        return tuple(output)

    def call(self, inputs, training=False):
        tensors = iter(inputs if isinstance(inputs, list) else [inputs])
        operands = [next(tensors) if a is None else a for a in self.arguments]
        if self.arity == 1:
            y, cache = arithmetic_ops.negative_forward(operands[0])
        else:
            y, cache = arithmetic_ops.binary_forward(self.operation, *operands)
        self._cache = (cache, isinstance(inputs, list)) if training else None
        return y

    def backward(self, grad_output):
        cache, listed = self.require_cache()
        if self.arity == 1:
            grads = [arithmetic_ops.negative_backward(grad_output, cache)]
        else:
            grads = [g for g in arithmetic_ops.binary_backward(grad_output, cache)
                     if g is not None]
        return grads if listed else grads[0]

    def expression(self, names=None) -> str:
        """The computation as a formula, e.g. ``x + 3`` (tensors named by ``names``)."""
        names = iter(names or ["x", "y"])
        parts = [next(names) if a is None else f"{a:g}" for a in self.arguments]
        if self.arity == 1:
            return f"{self.symbol}{parts[0]}"
        return f"{parts[0]} {self.symbol} {parts[1]}"


def _broadcast(a: list, b: list, where: str, shapes) -> list:
    """Keras's broadcast of two batch shapes (None, an unknown size, stays unknown)."""
    rank = max(len(a), len(b))
    a, b = [1] * (rank - len(a)) + a, [1] * (rank - len(b)) + b
    output = []
    for x, y in zip(a, b):
        if x == 1:
            output.append(y)
        elif y == 1 or x == y:
            output.append(x)
        elif x is None or y is None:
            output.append(x if y is None else y)
        else:
            shown = " and ".join(format_shape(s) for s in shapes)
            raise ValueError(f"{where} needs operands whose shapes broadcast (equal, or 1 on "
                             f"every axis where they differ); received {shown}.")
    return output


class Add(Operation):
    """``x + y``, ``x + 3``."""


class Subtract(Operation):
    """``x - y``, ``3 - x``."""

    operation, symbol = "subtract", "-"


class Multiply(Operation):
    """``x * y``, ``x * (1 / 6)``."""

    operation, symbol = "multiply", "*"


class Divide(Operation):
    """``x / y`` as Keras's ``ops.divide``."""

    operation, symbol = "divide", "/"


class TrueDivide(Operation):
    """``x / y`` (Python's ``/`` on a Keras tensor)."""

    operation, symbol = "divide", "/"


class Negative(Operation):
    """``-x``."""

    symbol = "-"
    arity = 1


OPERATION_KIND = Kind(words="operation", field="merge", trace="merge", onnx="operation",
                      torch="operation",
                      keras_module="keras.src.ops.numpy", operation=True)
for _cls in (Add, Subtract, Multiply, Divide, TrueDivide, Negative):
    register(_cls, OPERATION_KIND)
