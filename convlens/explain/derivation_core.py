"""Derivations of the layers that do not slide a window: Dense, Flatten, Reshape,
Activation, ReLU, Dropout and BatchNormalization.

Each ``_explain_*(layer, exp)`` fills a ``LayerExplanation``'s ``shape_steps``, ``mechanism``
and ``weights`` from the layer's own numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convlens.explain import cost as cost_module
from convlens.explain.wording import _activation_line, _count, _prod, _weights
from convlens.shapes import format_shape

if TYPE_CHECKING:
    from convlens.explain.layer_explanation import LayerExplanation


def _explain_dense(layer, exp: LayerExplanation) -> None:
    in_features, units = layer.input_shape[-1], layer.units
    exp.shape_steps = [{"axis": "last axis", "input": in_features, "output": units,
                        "formula": f"{in_features} inputs -> {_count(units, 'unit')}"}]
    each = "The unit" if units == 1 else f"Each of the {units} units"
    lines = [
        f"{each} computes the sum over all {in_features:,} inputs of input * weight"
        + (", plus its bias" if layer.use_bias else "")
        + f": its weights are one kernel column `({in_features},)`."
    ]
    if len(layer.input_shape) > 2:
        lines.append(f"The input has rank {len(layer.input_shape)}: the same kernel is applied "
                     f"at each of the {_prod(layer.input_shape[1:-1])} positions separately "
                     "(like a 1x1 convolution).")
    else:
        lines.append("Every output depends on every input value: the receptive field becomes "
                     "the whole input.")
    exp.mechanism = lines + _activation_line(layer)
    exp.weights = _weights(layer, {"kernel": f"{_count(in_features, 'input')} x "
                                             f"{_count(units, 'unit')}: column u holds unit "
                                             "u's weights",
                                   "bias": "one number per unit"})


def _explain_flatten(layer, exp: LayerExplanation) -> None:
    rest = layer.input_shape[1:]
    values = layer.output_shape[-1]
    formula = f"{_prod(rest)} = {values:,}" if values is not None else "unknown"
    exp.shape_steps = [{"axis": "all", "input": tuple(rest), "output": values,
                        "formula": formula}]
    exp.mechanism = [
        f"Lays the {formula} values of one sample out in one row; nothing is computed "
        "(last axis fastest, channels_last order).",
        "The spatial arrangement is gone: a following Dense layer sees every value, so the "
        "receptive field becomes the whole input.",
    ]


def _explain_reshape(layer, exp: LayerExplanation) -> None:
    exp.shape_steps = [{"axis": "all", "input": tuple(layer.input_shape[1:]),
                        "output": tuple(layer.output_shape[1:]),
                        "formula": f"{_prod(layer.input_shape[1:])} = "
                                   f"{_prod(layer.output_shape[1:])}"}]
    exp.mechanism = [
        f"The same {cost_module.output_values(layer.output_shape) or '?'} values, rearranged "
        f"into `{format_shape(layer.output_shape[1:])}` (row-major order); nothing is "
        "computed. The receptive field is treated as the whole input afterwards."
    ]


def _elementwise_lines(what: str) -> list[str]:
    return [f"Applies {what} to each value separately; the shape does not change. No weights."]


def _explain_relu(layer, exp: LayerExplanation) -> None:
    parts = [f"x if x > {layer.threshold:g}"]
    parts.append(f"else {layer.negative_slope:g}*(x - {layer.threshold:g})")
    cap = "" if layer.max_value is None else f", capped at {layer.max_value:g}"
    exp.mechanism = _elementwise_lines(f"ReLU: {' '.join(parts)}{cap}")


def _explain_elementwise(layer, exp: LayerExplanation) -> None:
    exp.mechanism = _elementwise_lines(f"the activation {layer.activation.name}")
    if layer.activation.name in ("softmax", "log_softmax"):
        exp.mechanism.append("Softmax is taken over the last axis: each value depends on every "
                             "value along that axis.")


def _explain_dropout(layer, exp: LayerExplanation) -> None:
    rate = layer.rate
    scale = 1 / (1 - rate) if rate < 1 else float("inf")
    exp.mechanism = [
        f"Training: each value is set to 0 with probability {rate:g} and the others are "
        f"multiplied by 1/(1 - {rate:g}) = {scale:.4g}, so the expected sum is unchanged.",
        "Inference (predict, evaluate): values pass through unchanged. No weights.",
    ]


def _explain_batchnorm(layer, exp: LayerExplanation) -> None:
    axis = layer.axis
    channels = layer.input_shape[axis]
    gamma = "gamma[c] * " if layer.scale else ""
    beta = " + beta[c]" if layer.center else ""
    exp.mechanism = [
        f"Per channel c of the {channels} channels (axis {axis}), at inference: "
        f"`y = {gamma}(x - moving_mean[c]) / sqrt(moving_variance[c] + {layer.epsilon:g})"
        f"{beta}`.",
        "In training the batch's own mean and (biased) variance are used instead, and the "
        f"stored statistics move: `moving = moving*{layer.momentum:g} + batch*"
        f"{1 - layer.momentum:.4g}`.",
        "gamma and beta are learned by gradient descent; moving_mean and moving_variance are "
        "not trainable (they are averages, not gradients).",
    ]
    exp.weights = _weights(layer, {
        "gamma": "scale per channel", "beta": "shift per channel",
        "moving_mean": "running mean per channel", "moving_variance": "running variance",
    })


MERGE_WORDS = {  # class name -> (what one output value is, written with the inputs a, b, ...)
    "Add": ("sum", "a + b + ..."), "Subtract": ("difference", "a - b"),
    "Multiply": ("product", "a * b * ..."), "Average": ("mean", "(a + b + ...) / n"),
    "Maximum": ("largest", "max(a, b, ...)"), "Minimum": ("smallest", "min(a, b, ...)"),
}


def inbound_names(layer) -> list[str]:
    """The layers whose outputs this layer's first call reads, in order."""
    nodes = getattr(layer, "inbound_nodes", None) or []
    return [t.layer.name for t in nodes[0].inputs] if nodes else []


def _named_inputs(layer) -> str:
    names = inbound_names(layer) or [f"input {i}" for i in range(len(layer.input_shape))]
    return " and ".join(f"'{name}' `{format_shape(shape)}`"
                        for name, shape in zip(names, layer.input_shape))


def _explain_merge(layer, exp: LayerExplanation) -> None:
    word, formula = MERGE_WORDS.get(type(layer).__name__, ("combination", "f(a, b, ...)"))
    rule = "so the inputs must have the same shape"
    if len({tuple(shape) for shape in layer.input_shape}) > 1:
        rule += (" but for axes of size 1, which are repeated along the other inputs' "
                 "(broadcast);")
    exp.mechanism = [
        f"Combines {len(layer.input_shape)} inputs, {_named_inputs(layer)}, value by value: "
        f"each output value is the {word} of the values at the same position of every input "
        f"(`{formula}`), {rule} the output is `{format_shape(layer.output_shape)}`. No weights.",
    ]


def _explain_operation(layer, exp: LayerExplanation) -> None:
    shapes = layer.input_shape if isinstance(layer.input_shape, list) else [layer.input_shape]
    names = [t.layer.name for t in layer.inbound_nodes[0].inputs] if layer.inbound_nodes else []
    formula = layer.expression([f"'{n}'" for n in names] or None)
    inputs = " and ".join(format_shape(s) for s in shapes)
    exp.mechanism = [
        f"Computes `{formula}` value by value (tensor arithmetic in the program, recorded as "
        f"the operation {type(layer).__name__}): each output value comes from the value at the "
        f"same position of {inputs}, a number applies to every value, and an axis of size 1 "
        f"is repeated along the other's, so the output is `{format_shape(layer.output_shape)}`."
        " No weights.",
    ]


def _explain_layer_scale(layer, exp: LayerExplanation) -> None:
    channels = layer.projection_dim
    exp.mechanism = [
        f"Multiplies each of the {channels} channels by its own learned factor: "
        f"`y[..., c] = x[..., c] * gamma[c]`; the shape `{format_shape(layer.output_shape)}` "
        f"does not change. The factors start at {layer.init_values:g}, so a residual branch "
        "scaled by this layer starts close to nothing and the block close to the identity "
        "(ConvNeXt, CaiT).",
    ]
    exp.weights = _weights(layer, {"variable": "gamma: one factor per channel"})


def _explain_stochastic_depth(layer, exp: LayerExplanation) -> None:
    rate = layer.drop_path_rate
    scale = 1 / (1 - rate) if rate < 1 else float("inf")
    exp.mechanism = [
        f"Training: a whole sample's values are set to 0 with probability {rate:g} (the "
        "residual branch this layer ends is skipped for that sample), otherwise multiplied by "
        f"1/(1 - {rate:g}) = {scale:.4g}, so the expected value is unchanged.",
        "Inference (predict, evaluate): values pass through unchanged. No weights.",
    ]


def _explain_concatenate(layer, exp: LayerExplanation) -> None:
    rank = len(layer.output_shape)
    axis = layer.axis % rank
    sizes = " + ".join(str(s[axis]) for s in layer.input_shape)
    exp.mechanism = [
        f"Stacks its inputs, {_named_inputs(layer)}, along axis {axis}: {sizes} = "
        f"{layer.output_shape[axis]}, so the channels of the branches add up while every other "
        "axis must match. Nothing is computed. No weights.",
    ]


def _explain_input(layer, exp: LayerExplanation) -> None:
    exp.mechanism = [f"The model's input: one sample is `{format_shape(layer.batch_shape[1:])}` "
                     "(the batch axis comes first); nothing is computed. No weights."]
