"""Explanations: every number a model produces, with the arithmetic that gives it.

* ``explain_model(model, contrast=False, layers=None)`` -> ``ModelExplanation``
* ``explain_layer(layer, contrast=False)`` -> ``LayerExplanation``
* ``trace(model, layer, index, x)`` -> ``Trace``: one output value from its input window
* ``summary_columns(model, names)``: extra columns for ``model.summary(columns=[...])``

Each object prints as plain text and has ``to_markdown()``, ``to_html()`` (a fragment)
and ``to_dict()``.
"""

from convlens.explain.columns import COLUMN_NAMES, summary_columns
from convlens.explain.cost import LayerCost, layer_cost
from convlens.explain.derivation import (
    Contrast,
    LayerExplanation,
    ModelExplanation,
    build_contrast,
    explain_layer,
    explain_model,
)
from convlens.explain.receptive_field import (
    ReceptiveField,
    layer_receptive_field,
    receptive_fields,
)
from convlens.explain.trace import Trace, trace

__all__ = [
    "COLUMN_NAMES", "Contrast", "LayerCost", "LayerExplanation", "ModelExplanation",
    "ReceptiveField", "Trace", "build_contrast", "explain_layer", "explain_model",
    "layer_cost", "layer_receptive_field", "receptive_fields", "summary_columns", "trace",
]
