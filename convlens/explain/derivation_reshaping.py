"""Derivations of the layers that move values along the spatial axes without weights:
zero padding and cropping (1D, 2D, 3D) and upsampling.

Each ``_explain_*(layer, exp)`` fills a ``LayerExplanation``'s ``shape_steps`` and
``mechanism`` from the layer's own numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convlens.explain.receptive_field import axis_names

if TYPE_CHECKING:
    from convlens.explain.layer_explanation import LayerExplanation

_PLURAL = {"step": "steps", "row": "rows", "col": "cols", "depth": "depth planes"}


def _spatial(layer, per_axis):
    """``(name, input size, output size, value)`` per spatial axis, ``value`` from per_axis."""
    rank = len(per_axis)
    first = 1 if layer.data_format == "channels_last" else 2
    names = axis_names(rank)
    return [(names[i], layer.input_shape[first + i], layer.output_shape[first + i], value)
            for i, value in enumerate(per_axis)]


def _listing(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _edge_steps(layer, exp: LayerExplanation, amounts, sign: str) -> str:
    """The shape step of each axis zero padding adds (``sign`` "+") or cropping removes ("-")
    at the edges; returns the amounts per axis in words."""
    axes = _spatial(layer, amounts)
    for name, n, out, (before, after) in axes:
        exp.shape_steps.append({"axis": name, "input": n, "output": out,
                                "formula": f"{n} {sign} {before} {sign} {after} = {out}"})
    return _listing([f"{_PLURAL[name]} {pair}" for name, _, _, pair in axes])


def _explain_zero_padding(layer, exp: LayerExplanation) -> None:
    pads = _edge_steps(layer, exp, layer.padding, "+")
    exp.mechanism = [
        f"Adds zeros around each map: {pads} (before, after); the input values are unchanged. "
        "No weights."
    ]


def _explain_cropping(layer, exp: LayerExplanation) -> None:
    crops = _edge_steps(layer, exp, layer.cropping, "-")
    exp.mechanism = [
        f"Removes {crops} (before, after) from the edges of each map; the values kept are "
        "copied unchanged. No weights."
    ]


def _explain_upsampling(layer, exp: LayerExplanation) -> None:
    axes = _spatial(layer, layer.size)
    for name, n, out, factor in axes:
        exp.shape_steps.append({"axis": name, "input": n, "output": out,
                                "formula": f"{n} * {factor} = {out}"})
    factors = " x ".join(str(f) for f in layer.size)
    if layer.interpolation == "bilinear":
        how = ("each output value mixes the two nearest input values along each axis, weighted "
               "by distance (bilinear, half-pixel centres; edges repeat the last value)")
    else:
        how = "each input value is repeated in a block of " + factors + " outputs"
    exp.mechanism = [f"Grows each map by {factors}: {how}. No weights."]
