"""Symbolic tensors and nodes: what calling a layer on ``Input(...)`` records (Keras 3 style).

``Input((28, 28, 1))`` returns a :class:`KerasTensor`: a batch shape with a history (the
layer that made it, which call of that layer, which of its outputs). Calling a layer on
symbolic tensors builds the layer for their shapes, records a :class:`Node` (the layer, its
input tensors, its output tensors) and returns the output tensors. ``convlens.Model(inputs,
outputs)`` walks these records from the outputs back to the inputs.

>>> from convlens.layers import Dense, Input
>>> x = Input((4,), name="features")
>>> y = Dense(2, name="scores")(x)
>>> y.shape, y.history.layer.name, [t.name for t in y.node.inputs]
((None, 2), 'scores', ['features'])
"""

from __future__ import annotations

from typing import NamedTuple

from convlens.shapes import format_shape


class History(NamedTuple):
    """Where a symbolic tensor comes from: ``layer``'s ``node_index``-th call, output
    ``tensor_index`` (Keras's ``keras_history``)."""

    layer: object
    node_index: int
    tensor_index: int


class KerasTensor:
    """A symbolic batch of data: its shape (batch axis first), dtype and history."""

    def __init__(self, shape, history: History, name: str):
        self.shape = tuple(shape)
        self.dtype = "float32"
        self.history = history
        self.name = name

    @property
    def layer(self):
        """The layer that produced this tensor (an ``InputLayer`` for ``Input(...)``)."""
        return self.history.layer

    @property
    def node(self) -> Node:
        return self.history.layer.inbound_nodes[self.history.node_index]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return (f"<KerasTensor shape={format_shape(self.shape)}, dtype=float32, "
                f"name={self.name}>")

    # Arithmetic records an operation node, as in Keras 3 (``x + 3`` is an ``Add`` operation
    # called on ``[x, 3]``; ``3 - x`` a ``Subtract`` on ``[3, x]``).
    def __add__(self, other):
        return _operate("Add", self, other)

    def __radd__(self, other):
        return _operate("Add", other, self)

    def __sub__(self, other):
        return _operate("Subtract", self, other)

    def __rsub__(self, other):
        return _operate("Subtract", other, self)

    def __mul__(self, other):
        return _operate("Multiply", self, other)

    def __rmul__(self, other):
        return _operate("Multiply", other, self)

    def __truediv__(self, other):
        return _operate("TrueDivide", self, other)

    def __rtruediv__(self, other):
        return _operate("TrueDivide", other, self)

    def __neg__(self):
        return _operate("Negative", self)


def _operate(class_name: str, *operands) -> KerasTensor:
    """Record ``class_name`` (an operation of ``convlens.layers.operations``) on ``operands``:
    the symbolic tensors it reads, and numbers it holds as constants."""
    from convlens.layers import operations  # doorway

    for operand in operands:
        if not (isinstance(operand, KerasTensor) or operations.is_constant(operand)):
            raise TypeError(
                f"Arithmetic on a KerasTensor ({class_name}) takes symbolic tensors and plain "
                f"numbers; received {type(operand).__name__}. Use a layer for arrays, e.g. "
                "Rescaling(scale, offset) for a constant scale and shift."
            )
    operation = getattr(operations, class_name)(
        arguments=[None if isinstance(o, KerasTensor) else o for o in operands])
    return operation([o for o in operands if isinstance(o, KerasTensor)])


class Node:
    """One call of a layer on symbolic tensors: the inputs it read and the outputs it made.

    ``list_input`` says whether the layer was called on a list (merge layers) or on one
    tensor, so the graph calls it the same way on arrays.
    """

    def __init__(self, layer, inputs: list[KerasTensor], output_shapes: list[tuple],
                 list_input: bool):
        self.layer = layer
        self.inputs = list(inputs)
        self.list_input = list_input
        index = len(layer.inbound_nodes)
        layer.inbound_nodes.append(self)
        name = layer.name if index == 0 else f"{layer.name}_{index}"
        self.outputs = [
            KerasTensor(shape, History(layer, index, position),
                        name if len(output_shapes) == 1 else f"{name}_{position}")
            for position, shape in enumerate(output_shapes)
        ]

    @property
    def is_input(self) -> bool:
        return not self.inputs

    @property
    def parents(self) -> list[Node]:
        return [tensor.node for tensor in self.inputs]


def symbolic_inputs(x, where: str) -> list[KerasTensor] | None:
    """The symbolic tensors in ``x`` (one tensor or a list), or None when ``x`` has none.

    A mix of symbolic tensors and arrays is refused: a layer runs either on data or on the
    graph being recorded.
    """
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    symbolic = [isinstance(item, KerasTensor) for item in items]
    if not any(symbolic):
        return None
    if not all(symbolic):
        kinds = ", ".join("KerasTensor" if s else type(item).__name__
                          for s, item in zip(symbolic, items))
        raise TypeError(
            f"{where} was called on a mix of symbolic tensors and concrete arrays ({kinds}). "
            "Call a layer either on Input(...) tensors, to build a model, or on arrays, to "
            "compute; to feed data to a model built from Input tensors, call model.predict."
        )
    return items
