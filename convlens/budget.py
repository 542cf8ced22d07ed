"""What a model will cost, computed from its configuration before any weight exists.

A model described by untrusted text (a spec, a ``.keras`` config, a web request) could ask
for ``Dense(10**12)`` or a ``100000x100000x3`` input; building it would exhaust the machine
long before any check on the built model could refuse it. :func:`check_budget` walks the
layers' configurations with the size arithmetic of :mod:`convlens.shapes` (each layer's
``compute_output_shape``, ``weight_shapes`` and ``multiply_adds``, which create nothing)
and raises :class:`BudgetError` at the first layer that takes a figure over its limit.

The figures, all for one sample (no batch axis):

- ``input values``: the values of one input sample;
- ``layers``: the number of layers;
- ``params``: the weights of every layer, as ``model.count_params()`` will count them;
- ``activation values``: the output values of every layer, added up (what a training step
  keeps for the backward pass);
- ``multiply-adds``: as :mod:`convlens.explain.cost` counts them.

The library's default limits (:data:`DEFAULT_LIMITS`, the defaults of :class:`Budget`) are
generous: they refuse only what would not fit in a laptop's memory (1.2 GB of float32
weights, 2 GB of activations or 400 MB of input per sample) or would take many minutes per
sample; a server passes tighter ones.

Example:
    >>> from convlens.layers import Conv2D, Dense, Flatten
    >>> figures = check_budget([Conv2D(32, 3), Flatten(), Dense(10)], (None, 28, 28, 1))
    >>> figures.params, figures.activation_values
    (216650, 43274)
    >>> check_budget([Dense(600_000, name="wide")], (None, 784), max_params=20_000_000)
    Traceback (most recent call last):
    ...
    convlens.budget.BudgetError: layer 1 'wide' (Dense) brings the model's parameters to \
471,000,000 (this layer: 471,000,000 = (784, 600000) + (600000,)); the budget allows \
20,000,000 (max_params). Make the layer smaller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from convlens.shapes import format_shape

__all__ = ["BudgetError", "Budget", "DEFAULT_LIMITS", "ModelFigures", "LayerFigures",
           "check_budget", "check_graph_budget"]


@dataclass(frozen=True)
class Budget:
    """Limits on a model's figures (see the module docstring); pass to :func:`check_budget`."""

    max_params: int = 300_000_000  # 1.2 GB of float32 weights (VGG16 has 138M)
    max_activation_values: int = 500_000_000  # 2 GB per sample
    max_multiply_adds: int = 10**12  # minutes per sample in NumPy (VGG16: 1.5e10)
    max_layers: int = 100_000
    max_input_values: int = 100_000_000  # 400 MB per sample (a 4K RGB image is 25M)

    def check(self, layers: Sequence, input_shape) -> ModelFigures:
        """``check_budget(layers, input_shape)`` with these limits."""
        return check_budget(layers, input_shape, **self.limits())

    def limits(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


DEFAULT_LIMITS = Budget()


class BudgetError(ValueError):
    """A model over its budget. ``index`` is the 0-based position of the layer at fault in
    the list given (None for the input or the layer count); ``figure`` names the limit."""

    def __init__(self, message: str, figure: str, value: int, limit: int,
                 index: int | None = None):
        super().__init__(message)
        self.figure = figure
        self.value = value
        self.limit = limit
        self.index = index


@dataclass
class LayerFigures:
    name: str
    class_name: str
    output_shape: tuple
    params: int
    activation_values: int | None
    multiply_adds: int | None


@dataclass
class ModelFigures:
    input_values: int | None
    layers: list[LayerFigures] = field(default_factory=list)
    params: int = 0
    activation_values: int = 0
    multiply_adds: int = 0


def _values(shape) -> int | None:
    rest = tuple(shape[1:])
    return None if None in rest else math.prod(rest)


def _label(index: int, layer) -> str:
    return f"layer {index + 1} '{layer.name}' ({type(layer).__name__})"


def check_budget(
    layers: Sequence,
    input_shape,
    *,
    max_params: int = DEFAULT_LIMITS.max_params,
    max_activation_values: int = DEFAULT_LIMITS.max_activation_values,
    max_multiply_adds: int = DEFAULT_LIMITS.max_multiply_adds,
    max_layers: int = DEFAULT_LIMITS.max_layers,
    max_input_values: int = DEFAULT_LIMITS.max_input_values,
) -> ModelFigures:
    """The figures of ``layers`` (unbuilt layer objects, in order) on ``input_shape`` (batch
    axis first, e.g. ``(None, 28, 28, 1)``), or a :class:`BudgetError` naming the layer and
    the figure over its limit. Nothing is allocated: each layer reports its output and weight
    shapes from its configuration. A layer that cannot take its input raises its own
    ``ValueError`` (or ``TypeError``), as building it would, with the layer's position in
    ``layers`` as the exception's ``layer_index`` attribute.
    """
    if len(layers) > max_layers:
        raise BudgetError(
            f"the model has {len(layers):,} layers; the budget allows {max_layers:,} "
            "(max_layers).", "max_layers", len(layers), max_layers)
    shape = tuple(None if d is None else int(d) for d in input_shape)
    figures = ModelFigures(input_values=_values(shape))
    if figures.input_values is not None and figures.input_values > max_input_values:
        raise BudgetError(
            f"the input {format_shape(shape)} has {figures.input_values:,} values per sample; "
            f"the budget allows {max_input_values:,} (max_input_values). Use a smaller input.",
            "max_input_values", figures.input_values, max_input_values)
    for index, layer in enumerate(layers):
        shape = _add_layer(figures, index, layer, shape, max_params, max_activation_values,
                           max_multiply_adds)
    return figures


def _add_layer(figures: ModelFigures, index: int, layer, shape, max_params: int,
               max_activation_values: int, max_multiply_adds: int, new_weights: bool = True):
    """Add one layer's figures for its input ``shape``; return its output shape.

    ``new_weights=False``: a shared layer's later call, whose weights are already counted."""
    try:
        output_shape = tuple(layer.compute_output_shape(shape))
        weights = layer.weight_shapes(shape)
    except (ValueError, TypeError) as error:
        error.layer_index = index
        raise
    params = sum(math.prod(s) for s in weights.values()) if new_weights else 0
    figures.params += params
    if figures.params > max_params:
        product = " + ".join(str(s) for s in weights.values())
        raise BudgetError(
            f"{_label(index, layer)} brings the model's parameters to {figures.params:,} "
            f"(this layer: {params:,} = {product}); the budget allows {max_params:,} "
            "(max_params). Make the layer smaller.",
            "max_params", figures.params, max_params, index)
    values = _values(output_shape)
    if values is not None:
        figures.activation_values += values
        if figures.activation_values > max_activation_values:
            raise BudgetError(
                f"{_label(index, layer)} outputs {format_shape(output_shape)} = {values:,} "
                f"values per sample, bringing the model's activations to "
                f"{figures.activation_values:,}; the budget allows "
                f"{max_activation_values:,} (max_activation_values). Use a smaller input, "
                "fewer filters or more stride.",
                "max_activation_values", figures.activation_values, max_activation_values,
                index)
    macs = layer.multiply_adds(shape)
    if macs is not None:
        figures.multiply_adds += macs
        if figures.multiply_adds > max_multiply_adds:
            raise BudgetError(
                f"{_label(index, layer)} takes {macs:,} multiply-adds per sample, bringing "
                f"the model to {figures.multiply_adds:,}; the budget allows "
                f"{max_multiply_adds:,} (max_multiply_adds). Use a smaller input or layer.",
                "max_multiply_adds", figures.multiply_adds, max_multiply_adds, index)
    figures.layers.append(LayerFigures(layer.name, type(layer).__name__, output_shape,
                                       params, values, macs))
    return output_shape


def check_graph_budget(calls: Sequence, input_shapes: Sequence, *,
                       max_params: int = DEFAULT_LIMITS.max_params,
                       max_activation_values: int = DEFAULT_LIMITS.max_activation_values,
                       max_multiply_adds: int = DEFAULT_LIMITS.max_multiply_adds,
                       max_layers: int = DEFAULT_LIMITS.max_layers,
                       max_input_values: int = DEFAULT_LIMITS.max_input_values) -> ModelFigures:
    """:func:`check_budget` for a graph: ``calls`` are ``(layer, input_shape)`` pairs in run
    order (a layer called twice counts its weights once), ``input_shapes`` the model's inputs.
    Nothing is allocated."""
    if len(calls) > max_layers:
        raise BudgetError(
            f"the model has {len(calls):,} layer calls; the budget allows {max_layers:,} "
            "(max_layers).", "max_layers", len(calls), max_layers)
    values = [_values(tuple(shape)) for shape in input_shapes]
    figures = ModelFigures(input_values=None if None in values else sum(values))
    if figures.input_values is not None and figures.input_values > max_input_values:
        raise BudgetError(
            f"the inputs have {figures.input_values:,} values per sample; the budget allows "
            f"{max_input_values:,} (max_input_values). Use a smaller input.",
            "max_input_values", figures.input_values, max_input_values)
    seen: set[int] = set()
    for index, (layer, shape) in enumerate(calls):
        _add_layer(figures, index, layer, shape, max_params, max_activation_values,
                   max_multiply_adds, new_weights=id(layer) not in seen)
        seen.add(id(layer))
    return figures
