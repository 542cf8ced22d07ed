"""The one torch module that ``to_torch`` needs beyond ``torch.nn``: a fixed axis permutation.

Imported only by ``convlens.io.to_torch`` / ``from_torch`` (it imports torch at the top).
"""

from __future__ import annotations

import torch

__all__ = ["Arithmetic", "ChannelScale", "Graph", "Merge", "Permute"]


def _ambiguous(tensor) -> bool:
    """Whether ``tensor``'s strides differ from those of a fresh tensor of its shape."""
    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.insert(0, step)
        step *= size
    return tuple(tensor.stride()) != tuple(expected)


class Permute(torch.nn.Module):
    """``x.permute(*dims)``: moves a channels_last tensor to channels first and back.

    Example:
        >>> Permute((0, 3, 1, 2))(torch.zeros(2, 5, 6, 3)).shape
        torch.Size([2, 3, 5, 6])
    """

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x):
        y = x.permute(*self.dims)
        # A permuted view keeps its source's strides, so torch would run the next convolution
        # channels_last and shape its weight gradients that way, which the gradient buckets
        # of DistributedDataParallel (made channels first) warn about: copy to plain strides.
        return y.clone(memory_format=torch.contiguous_format) if _ambiguous(y) else y

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Merge(torch.nn.Module):
    """Keras's merge layers on torch tensors: ``add``, ``subtract``, ``multiply``,
    ``average``, ``maximum``, ``minimum`` of its inputs, or ``concatenate`` along ``axis``."""

    def __init__(self, operation: str, axis: int | None = None):
        super().__init__()
        self.operation, self.axis = operation, axis

    def forward(self, *inputs):
        if self.operation == "concatenate":
            return torch.cat(inputs, dim=self.axis)
        if self.operation == "subtract":
            return inputs[0] - inputs[1]
        result = inputs[0]
        for tensor in inputs[1:]:
            if self.operation in ("add", "average"):
                result = result + tensor
            elif self.operation == "multiply":
                result = result * tensor
            elif self.operation == "maximum":
                result = torch.maximum(result, tensor)
            else:
                result = torch.minimum(result, tensor)
        return result / len(inputs) if self.operation == "average" else result

    def extra_repr(self) -> str:
        return self.operation + ("" if self.axis is None else f", axis={self.axis}")


class Arithmetic(torch.nn.Module):
    """Tensor arithmetic as a convlens operation records it: ``operation`` (add, subtract,
    multiply, divide or negative) on ``arguments``, where None takes the next input tensor.

    Example:
        >>> Arithmetic("subtract", (3.0, None))(torch.tensor([1.0, 5.0]))
        tensor([ 2., -2.])
    """

    def __init__(self, operation: str, arguments):
        super().__init__()
        self.operation, self.arguments = operation, tuple(arguments)

    def forward(self, *inputs):
        tensors = iter(inputs)
        operands = [next(tensors) if a is None else a for a in self.arguments]
        if self.operation == "negative":
            return -operands[0]
        a, b = operands
        if self.operation == "add":
            return a + b
        if self.operation == "subtract":
            return a - b
        return a * b if self.operation == "multiply" else a / b

    def extra_repr(self) -> str:
        return f"{self.operation}, arguments={self.arguments}"


class ChannelScale(torch.nn.Module):
    """``x * weight``: one learned factor per channel (the last axis), ConvNeXt's LayerScale."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.weight


class Graph(torch.nn.Module):
    """A convlens Functional model's graph: ``layers[name]`` runs one layer; ``steps`` say,
    in run order, which values each call reads and which value it writes (the inputs are the
    first values)."""

    def __init__(self, layers: dict, steps: list, outputs: list, input_count: int):
        super().__init__()
        self.layers = torch.nn.ModuleDict(layers)
        self.steps = [(name, tuple(reads), write) for name, reads, write in steps]
        self.outputs = tuple(outputs)
        self.input_count = input_count

    def forward(self, *inputs):
        if len(inputs) != self.input_count:
            raise ValueError(f"this model takes {self.input_count} input tensors; received "
                             f"{len(inputs)}.")
        values = dict(enumerate(inputs))
        for name, reads, write in self.steps:
            values[write] = self.layers[name](*(values[index] for index in reads))
        results = tuple(values[index] for index in self.outputs)
        return results[0] if len(results) == 1 else results

