"""Derivations of the layers that keep the shape and change values by their own statistics,
fixed numbers or learned slopes: LayerNormalization, GroupNormalization, Rescaling,
Normalization, PReLU, Softmax; and the layers that only move or pass values: Permute,
Identity.

Each ``_explain_*(layer, exp)`` fills a ``LayerExplanation``'s ``shape_steps``, ``mechanism``
and ``weights`` from the layer's own numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convlens.explain.wording import _prod, _weights
from convlens.kinds import kind_of

if TYPE_CHECKING:
    from convlens.explain.layer_explanation import LayerExplanation


def _axes_text(axes, shape) -> str:
    axes = [a % len(shape) for a in axes]
    sizes = _prod(shape[a] for a in axes)
    return f"axis {axes[0]}" if len(axes) == 1 else f"axes {tuple(axes)}", sizes


def _explain_layer_norm(layer, exp: LayerExplanation) -> None:
    where, sizes = _axes_text(layer.axis, layer.input_shape)
    exp.mechanism = [
        f"Standardises each sample on its own over {where} ({sizes} values): subtract their "
        f"mean, divide by sqrt(variance + {layer.epsilon:g}); no batch statistics, so training "
        "and inference compute the same thing.",
    ]
    if layer.scale or layer.center:
        parts = [p for p, on in (("multiply by gamma", layer.scale), ("add beta", layer.center))
                 if on]
        exp.mechanism.append("Then " + " and ".join(parts) + f", one number per position of "
                             f"{where}.")
    exp.weights = _weights(layer, {"gamma": "scale per normalized position",
                                   "beta": "shift per normalized position"})


def _explain_group_norm(layer, exp: LayerExplanation) -> None:
    channels = layer.input_shape[layer.axis]
    per_group = channels // layer.groups
    spatial = [d for i, d in enumerate(layer.input_shape[1:], start=1)
               if i != layer.axis % len(layer.input_shape)]
    exp.mechanism = [
        f"Splits the {channels} channels into {layer.groups} groups of {per_group}; each "
        f"sample's group is standardised over its {per_group} channels and all "
        f"{_prod(spatial) if spatial else 1} positions (mean, variance + {layer.epsilon:g}).",
    ]
    if layer.scale or layer.center:
        exp.mechanism.append("Then a scale (gamma) and shift (beta) per channel.")
    exp.weights = _weights(layer, {"gamma": "scale per channel", "beta": "shift per channel"})


def _explain_rescaling(layer, exp: LayerExplanation) -> None:
    exp.mechanism = [f"Each value becomes x * {layer.scale} + {layer.offset}; the shape does "
                     "not change. No weights."]


def _explain_normalization(layer, exp: LayerExplanation) -> None:
    keep = [a % len(layer.input_shape) for a in layer.axis]
    per = f"per position of axes {tuple(keep)}" if keep else "one for all values"
    if layer.invert:
        formula = "mean + x * max(sqrt(variance), 1e-7)"
    else:
        formula = "(x - mean) / max(sqrt(variance), 1e-7)"
    exp.mechanism = [f"Each value becomes {formula}, with a fixed mean and variance {per} "
                     "(given, or measured by adapt()); nothing is learned."]
    exp.weights = _weights(layer, {"mean": "measured by adapt()",
                                   "variance": "measured by adapt()",
                                   "count": "kept for Keras's files"})


def _explain_prelu(layer, exp: LayerExplanation) -> None:
    shared = "" if not layer.shared_axes else f", shared along axes {tuple(layer.shared_axes)}"
    exp.mechanism = [f"Each value x becomes x if x > 0, else alpha * x, with alpha learned "
                     f"per position{shared}: alpha has shape {tuple(layer.alpha.shape)}."]
    exp.weights = _weights(layer, {"alpha": "slope for negative inputs"})


def _explain_softmax(layer, exp: LayerExplanation) -> None:
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    where, sizes = _axes_text(axes, layer.input_shape)
    exp.mechanism = [f"exp(x) / sum(exp(x)) over {where}: each group of {sizes} values becomes "
                     "positive and sums to 1, so each value depends on all values of its "
                     "group. No weights."]


def _explain_permute(layer, exp: LayerExplanation) -> None:
    exp.shape_steps = [{"axis": f"axis {i}", "input": layer.input_shape[d],
                        "output": layer.output_shape[i], "formula": f"input axis {d}"}
                       for i, d in enumerate(layer.dims, start=1)]
    exp.mechanism = [f"Reorders the axes of each sample: output axis i is input axis "
                     f"dims[i-1], dims = {layer.dims}; nothing is computed. No weights."]


def _explain_identity(layer, exp: LayerExplanation) -> None:
    exp.mechanism = ["Passes its input through unchanged. No weights."]


def _explain_model(layer, exp: LayerExplanation) -> None:
    """A model nested as a layer: what it holds, and where its own explanation is."""
    inner = [item for item in layer.layers if kind_of(item).words != "input"]
    names = ", ".join(f"{item.name} ({type(item).__name__})" for item in inner[:8])
    more = f" and {len(inner) - 8} more" if len(inner) > 8 else ""
    exp.mechanism = [
        f"A {type(layer).__name__} model used as one layer: it runs its {len(inner)} layers "
        f"({names}{more}) on its input and gives their output; its weights are theirs, shared "
        "by every call of it.",
        f"Its own layer-by-layer account: model.get_layer('{layer.name}').explain().",
    ]
    exp.weights = _weights(layer, {})
