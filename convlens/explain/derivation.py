"""Per-layer explanations: words and numbers, every number read from the layer object.

``explain_layer(layer)`` and ``explain_model(model)`` return objects that print as
plain text and render as Markdown (``to_markdown``) and HTML (``to_html``). They also
keep the numbers as fields (``output_shape``, ``params``, ``macs``, ``shape_steps``,
``receptive_field``, ``contrast``...) for the CLI, the web page and the tests.

Output sizes are written with ``convlens.shapes`` (``conv_output_formula``...); the
receptive field comes from ``receptive_field.py`` and the costs from ``cost.py``. The
words per layer are in ``derivation_conv.py`` (sliding windows) and ``derivation_core.py``
(the rest); the misconception side by side in ``contrast.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convlens.explain import cost as cost_module
from convlens.explain.contrast import Contrast, build_contrast
from convlens.explain.derivation_conv import (
    _explain_conv,
    _explain_depthwise,
    _explain_global,
    _explain_pooling,
    _explain_separable,
    _explain_transpose,
)
from convlens.explain.derivation_core import (
    _explain_batchnorm,
    _explain_concatenate,
    _explain_dense,
    _explain_dropout,
    _explain_elementwise,
    _explain_flatten,
    _explain_input,
    _explain_layer_scale,
    _explain_merge,
    _explain_operation,
    _explain_relu,
    _explain_reshape,
    _explain_stochastic_depth,
)
from convlens.explain.derivation_reshaping import (
    _explain_cropping,
    _explain_upsampling,
    _explain_zero_padding,
)
from convlens.explain.derivation_values import (
    _explain_group_norm,
    _explain_identity,
    _explain_layer_norm,
    _explain_model,
    _explain_normalization,
    _explain_permute,
    _explain_prelu,
    _explain_rescaling,
    _explain_softmax,
)
from convlens.explain.layer_explanation import LayerExplanation, field_legend, inputs_text
from convlens.explain.penalties import training_rule_lines
from convlens.explain.receptive_field import (
    ReceptiveField,
    layer_receptive_field,
    receptive_fields,
)
from convlens.explain.render import Block, Renderable, Section, Table
from convlens.explain.wording import _weights, params_formula
from convlens.kinds import kind_of
from convlens.shapes import format_shape

__all__ = ["Contrast", "LayerExplanation", "ModelExplanation", "build_contrast",
           "explain_layer", "explain_model", "params_formula", "resolve_layer_index"]


# The ``words`` rule of a layer kind (``convlens.kinds``) -> the function that writes them.
EXPLAINERS = {
    "conv": _explain_conv, "depthwise": _explain_depthwise, "separable": _explain_separable,
    "transpose": _explain_transpose, "pool": _explain_pooling, "global_pool": _explain_global,
    "dense": _explain_dense, "flatten": _explain_flatten, "reshape": _explain_reshape,
    "elementwise": _explain_elementwise, "relu": _explain_relu, "dropout": _explain_dropout,
    "batchnorm": _explain_batchnorm, "zero_padding": _explain_zero_padding,
    "merge": _explain_merge, "concatenate": _explain_concatenate, "input": _explain_input,
    "cropping": _explain_cropping, "upsampling": _explain_upsampling,
    "layer_norm": _explain_layer_norm, "group_norm": _explain_group_norm,
    "rescaling": _explain_rescaling, "normalization": _explain_normalization,
    "prelu": _explain_prelu, "softmax": _explain_softmax, "permute": _explain_permute,
    "identity": _explain_identity, "model": _explain_model, "operation": _explain_operation,
    "layer_scale": _explain_layer_scale, "stochastic_depth": _explain_stochastic_depth,
}


def _build(layer, contrast: bool, rf: ReceptiveField | None, index: int | None):
    if not getattr(layer, "built", False) or layer.output_shape is None:
        raise ValueError(
            f"Layer '{getattr(layer, 'name', layer)}' is not built, so it has no shapes to "
            "explain. Build it first: put it in a Sequential that starts with Input(...), or "
            "call layer.build_from_shape((None, ...))."
        )
    formula, total, trainable = params_formula(layer.weights)
    layer_cost = cost_module.layer_cost(layer)
    exp = LayerExplanation(
        name=layer.name, class_name=type(layer).__name__,
        input_shape=tuple(layer.input_shape), output_shape=tuple(layer.output_shape),
        params=total, trainable_params=trainable, params_formula=formula,
        macs=layer_cost.macs, macs_formula=layer_cost.macs_formula,
        output_values=layer_cost.output_values, memory_bytes=layer_cost.memory_bytes,
        receptive_field=rf, index=index,
    )
    # A layer called in a graph: the layers each call reads (a model narrows it to its calls).
    exp.inputs_from = [[t.layer.name for t in node.inputs]
                       for node in getattr(layer, "inbound_nodes", None) or [] if node.inputs]
    kind = kind_of(layer)
    explainer = EXPLAINERS.get(kind.words)
    if explainer is None:
        exp.mechanism = [f"convlens has no worded account of {type(layer).__name__} yet; the "
                         "shapes, weights and costs below are read from the layer."]
        exp.weights = _weights(layer, {})
    else:
        explainer(layer, exp)
    exp.training_rules = training_rule_lines(layer)
    if contrast and kind.words == "conv":
        exp.contrast = build_contrast(layer)
    return exp


def explain_layer(layer, contrast: bool = False) -> LayerExplanation:
    """Explain one built layer; its receptive field is given in pixels of its own input."""
    if not getattr(layer, "built", False):
        return _build(layer, contrast, None, None)  # raises the not-built error
    return _build(layer, contrast, layer_receptive_field(layer), None)



# ----- a whole model --------------------------------------------------------------------------
@dataclass
class ModelExplanation(Renderable):
    """One ``LayerExplanation`` per layer (``.layers``) plus the model's totals."""

    name: str
    input_shape: tuple
    output_shape: tuple
    layers: list[LayerExplanation]
    total_params: int
    trainable_params: int
    total_macs: int | None
    total_memory_bytes: int | None

    def overview(self) -> Section:
        graph = any(e.inputs_from for e in self.layers)
        rows = [
            [str(e.index), e.name, e.class_name,
             *([inputs_text(e.inputs_from) if e.inputs_from else "-"] if graph else []),
             format_shape(e.output_shape), f"{e.params:,}",
             "?" if e.macs is None else f"{e.macs:,}",
             "-" if e.receptive_field is None else e.receptive_field.describe()]
            for e in self.layers
        ]
        table = Table(["#", "layer", "type", *(["input from"] if graph else []), "output shape",
                       "params", "MACs", "receptive field"], rows)
        macs = "?" if self.total_macs is None else f"{self.total_macs:,}"
        memory = ("?" if self.total_memory_bytes is None else
                  f"{self.total_memory_bytes:,} bytes "
                  f"({cost_module.format_bytes(self.total_memory_bytes)})")
        lines = [
            f"input `{format_shape(self.input_shape)}` -> output "
            f"`{format_shape(self.output_shape)}`",
            f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable)",
            f"multiply-adds per sample: {macs}",
            f"activation memory per sample (all layer outputs): {memory}",
        ]
        fields = [e.receptive_field for e in self.layers if e.receptive_field is not None
                  and e.receptive_field.size and not e.receptive_field.whole_input]
        if fields:
            lines.append(field_legend(fields[0].reference))
        return Section(f"Model '{self.name}'", [Block("", lines, table=table)],
                       css_class="convlens-model")

    def sections(self) -> list[Section]:
        return [self.overview()] + [section for e in self.layers for section in e.sections()]

    def __getitem__(self, key) -> LayerExplanation:
        if isinstance(key, str):
            for e in self.layers:
                if e.name == key:
                    return e
            raise KeyError(key)
        return self.layers[key]

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "input_shape": self.input_shape, "output_shape": self.output_shape,
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "total_macs": self.total_macs, "total_memory_bytes": self.total_memory_bytes,
            "layers": [e.to_dict() for e in self.layers],
        }


def resolve_layer_index(model, layer) -> int:
    """Index into ``model.layers`` from an int (negative allowed) or a layer name."""
    layers = model.layers
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(f"Layer index {layer} is out of range: model '{model.name}' has "
                             f"{len(layers)} layers (indices 0 to {len(layers) - 1}).")
        return int(layer) % len(layers)
    if isinstance(layer, str):
        for i, candidate in enumerate(layers):
            if candidate.name == layer:
                return i
        names = ", ".join(c.name for c in layers)
        raise ValueError(f"No layer named {layer!r} in model '{model.name}'; layers: {names}.")
    raise TypeError(f"A layer is given by its index (int) or its name (str); received "
                    f"{layer!r} of type {type(layer).__name__}.")


def explain_model(model, contrast: bool = False, layers=None) -> ModelExplanation:
    """Explain every layer of a built model (or only ``layers``: indices and/or names)."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it has no shapes to explain. Start it with "
            "Input((28, 28, 1)) or call model.build((None, 28, 28, 1))."
        )
    fields = receptive_fields(model)
    if layers is None:
        chosen = range(len(model.layers))
    else:
        items = layers if isinstance(layers, (list, tuple, range)) else [layers]
        chosen = sorted({resolve_layer_index(model, item) for item in items})
    explained = [_build(model.layers[i], contrast, fields[i], i) for i in chosen]
    for explanation in explained:
        explanation.field_legend = False  # the overview states it once
        if model.graph is not None:
            layer = model.layers[explanation.index]
            explanation.inputs_from = [[t.layer.name for t in node.inputs]
                                       for node in model.graph.nodes_of(layer) if node.inputs]
    all_costs = [cost_module.layer_cost(layer) for layer in model.layers]
    macs = None if any(c.macs is None for c in all_costs) else sum(c.macs for c in all_costs)
    memory = (None if any(c.memory_bytes is None for c in all_costs)
              else sum(c.memory_bytes for c in all_costs))
    trainable = sum(int(w.size) for w in model.trainable_weights)
    return ModelExplanation(
        name=model.name, input_shape=tuple(model.input_shape),
        output_shape=tuple(model.output_shape), layers=explained,
        total_params=model.count_params(), trainable_params=trainable, total_macs=macs,
        total_memory_bytes=memory,
    )

