"""What a layer costs: multiply-adds (MACs) and activation memory, per sample.

The number is the layer's own ``multiply_adds`` (the budget counts with it too), computed by
the counting functions of ``convlens.shapes``; this module writes the product that gives it.
The counting rules, compared in the tests with a loop that counts every product:

* convolution: every output position of every filter multiplies a whole
  ``kernel x C_in/groups`` window (padded taps included, as the matrix
  multiplication does): ``prod(out) * filters * prod(kernel) * C_in/groups``;
* depthwise: ``prod(out) * C_in * depth_multiplier * prod(kernel)``;
* transposed convolution: every input position scatters ``prod(kernel) * filters``
  products for each of its ``C_in`` channels;
* dense: ``positions * in * units``; batch normalization (at inference) one
  multiply-add per value; pooling, reshaping and activations no multiply-adds.

Bias additions are not counted. Activation memory is the number of output values of
one sample times 4 bytes (float32).

>>> conv_macs((24, 24), (3, 3), 32, 64)
10616832
>>> activation_bytes((None, 24, 24, 64))
147456
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from convlens.kinds import kind_of
from convlens.shapes import conv_macs, dense_macs, depthwise_macs, transpose_macs

__all__ = ["conv_macs", "dense_macs", "depthwise_macs", "transpose_macs", "layer_cost",
           "LayerCost", "activation_bytes", "output_values", "format_bytes"]

BYTES_PER_VALUE = 4  # float32


def output_values(shape: Sequence[int | None]) -> int | None:
    """Values in one sample of ``shape`` (batch axis first); None when a size is unknown."""
    rest = tuple(shape[1:])
    if any(d is None for d in rest):
        return None
    return math.prod(rest)


def activation_bytes(shape: Sequence[int | None]) -> int | None:
    """Bytes of one sample's output values in float32."""
    values = output_values(shape)
    return None if values is None else values * BYTES_PER_VALUE


def format_bytes(size: int | None) -> str:
    """``147456`` -> ``'144.0 KiB'``.

    >>> format_bytes(512), format_bytes(147456), format_bytes(3 * 2**20)
    ('512 B', '144.0 KiB', '3.0 MiB')
    """
    if size is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass
class LayerCost:
    """MACs with the product that gives them, and the activation memory of one sample."""

    macs: int | None
    macs_formula: str
    output_values: int | None
    memory_bytes: int | None


def _spatial(layer, shape):
    geometry = getattr(layer, "geometry", None)
    if geometry is not None:
        return geometry.spatial(shape), geometry.channels(shape)
    return tuple(shape[1:-1]), shape[-1]


def _product(factors) -> str:
    return "*".join(str(f) for f in factors)


def _conv_words(layer, macs, in_spatial, in_channels):
    out_spatial, _ = _spatial(layer, layer.output_shape)
    per_group = in_channels // layer.groups
    return (f"{_product(out_spatial)} positions * {layer.filters} filters * "
            f"({_product((*layer.kernel_size, per_group))}) = {macs:,}")


def _depthwise_words(layer, macs, in_spatial, in_channels):
    out_spatial, _ = _spatial(layer, layer.output_shape)
    return (f"{_product(out_spatial)} positions * {in_channels}*{layer.depth_multiplier} "
            f"maps * ({_product(layer.kernel_size)}) = {macs:,}")


def _separable_words(layer, macs, in_spatial, in_channels):
    middle = layer.depthwise.output_shape
    out_spatial, mid_channels = _spatial(layer.depthwise, middle)
    first = layer.depthwise.multiply_adds(layer.input_shape)
    second = layer.pointwise.multiply_adds(middle)
    return (
        f"depthwise {_product(out_spatial)}*{in_channels}*{layer.depth_multiplier}*"
        f"({_product(layer.kernel_size)}) + pointwise {_product(out_spatial)}*"
        f"{layer.filters}*{mid_channels} = {first:,} + {second:,} = {macs:,}"
    )


def _transpose_words(layer, macs, in_spatial, in_channels):
    return (f"{_product(in_spatial)} input positions * {in_channels} channels * "
            f"({_product((*layer.kernel_size, layer.filters))}) = {macs:,}")


def _dense_words(layer, macs, in_spatial, in_channels):
    positions = math.prod(layer.input_shape[1:-1])
    where = f"{positions} positions * " if positions != 1 else ""
    units = f"{layer.units} unit{'s' if layer.units != 1 else ''}"
    return f"{where}{layer.input_shape[-1]} inputs * {units} = {macs:,}"


def _per_value_words(layer, macs, in_spatial, in_channels):
    return f"one multiply-add per value (folded scale and shift) = {macs:,}"


def _model_words(layer, macs, in_spatial, in_channels):
    return f"the sum over its {len(layer.layers)} layers = {macs:,}"


# The ``cost`` rule of a layer kind (``convlens.kinds``) -> the product that gives its MACs in
# words. The number itself is the layer's own ``multiply_adds`` (what the budget counts too).
COST_RULES = {
    "conv": _conv_words, "depthwise": _depthwise_words, "separable": _separable_words,
    "transpose": _transpose_words, "dense": _dense_words, "per_value": _per_value_words,
    "model": _model_words,
}


def layer_cost(layer) -> LayerCost:
    """MACs and activation memory of one built layer, per sample."""
    if not layer.built or layer.output_shape is None:
        raise ValueError(f"Layer '{layer.name}' is not built; build the model first.")
    values = output_values(layer.output_shape)
    memory = activation_bytes(layer.output_shape)
    in_spatial, in_channels = _spatial(layer, layer.input_shape)
    macs, formula = 0, "no multiply-adds"
    unknown = any(d is None for d in layer.input_shape[1:])
    if unknown:
        return LayerCost(None, "unknown (input size not fixed)", values, memory)
    macs = layer.multiply_adds(tuple(layer.input_shape))
    rule = COST_RULES.get(kind_of(layer).cost)
    if rule is not None:
        formula = rule(layer, macs, in_spatial, in_channels)
    elif macs:
        formula = f"{macs:,}"
    return LayerCost(macs, formula, values, memory)
