"""``LayerExplanation``: what one layer does, with its numbers (built by ``derivation.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from convlens.explain import cost as cost_module
from convlens.explain.contrast import Contrast
from convlens.explain.receptive_field import ReceptiveField, _number
from convlens.explain.render import Block, Renderable, Section
from convlens.explain.wording import _count
from convlens.shapes import format_shape


@dataclass
class LayerExplanation(Renderable):
    """How one layer turns its input into its output, with this layer's numbers."""

    name: str
    class_name: str
    input_shape: tuple
    output_shape: tuple
    shape_steps: list[dict] = field(default_factory=list)  # axis, input, output, formula
    mechanism: list[str] = field(default_factory=list)
    weights: list[dict] = field(default_factory=list)  # name, shape, size, trainable, meaning
    params: int = 0
    trainable_params: int = 0
    params_formula: str = ""
    macs: int | None = 0
    macs_formula: str = ""
    output_values: int | None = None
    memory_bytes: int | None = None
    receptive_field: ReceptiveField | None = None
    contrast: Contrast | None = None
    index: int | None = None
    # False in a model's explanation, whose overview states the legend once for every layer
    field_legend: bool = True
    # In a graph: per call of the layer, the names of the layers whose outputs it reads
    inputs_from: list[list[str]] = field(default_factory=list)
    # What the layer's regularizers and constraints do to training (explain/penalties.py)
    training_rules: list[str] = field(default_factory=list)

    @property
    def heading(self) -> str:
        where = f"{self.index}. " if self.index is not None else ""
        return (f"{where}{self.name} ({self.class_name}): {format_shape(self.input_shape)} -> "
                f"{format_shape(self.output_shape)}")

    def blocks(self) -> list[Block]:
        # The heading already says input -> output; the block says how each size arises.
        shape_lines = [f"{step['axis']}: `{step['formula']}`" for step in self.shape_steps]
        if not shape_lines:
            same = tuple(self.input_shape) == tuple(self.output_shape)
            shape_lines.append(
                f"unchanged: `{format_shape(self.output_shape)}`" if same else
                f"`{format_shape(self.input_shape)} -> {format_shape(self.output_shape)}`"
            )
        if self.inputs_from:
            shape_lines.insert(0, "input from: " + inputs_text(self.inputs_from))
        blocks = [Block("Shape", shape_lines), Block("What it computes", list(self.mechanism))]
        weight_lines = [
            f"{w['name']} `{tuple(w['shape'])}`"
            + ("" if w["trainable"] else " (not trainable)")
            + (f": {w['meaning']}" if w.get("meaning") else "")
            for w in self.weights
        ]
        weight_lines.append(f"parameters: `{self.params_formula}`")
        blocks.append(Block("Weights", weight_lines))
        if self.training_rules:
            blocks.append(Block("Regularizers and constraints", list(self.training_rules)))
        memory = (
            f"activation memory: {_count(self.output_values, 'value')} * 4 bytes = "
            f"{self.memory_bytes:,} bytes ({cost_module.format_bytes(self.memory_bytes)}) "
            "per sample"
            if self.memory_bytes is not None else "activation memory: unknown"
        )
        blocks.append(Block("Cost", [f"multiply-adds: `{self.macs_formula}`", memory]))
        if self.receptive_field is not None:
            blocks.append(Block("Receptive field",
                                _field_lines(self.receptive_field, self.field_legend)))
        if self.contrast is not None:
            blocks.append(self.contrast.block())
        return blocks

    def sections(self) -> list[Section]:
        return [Section(self.heading, self.blocks())]

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["receptive_field"] = (
            None if self.receptive_field is None else self.receptive_field.to_dict()
        )
        data["contrast"] = None if self.contrast is None else self.contrast.to_dict()
        data["weights"] = [dict(w, shape=list(w["shape"])) for w in self.weights]
        return data


def inputs_text(inputs_from: list[list[str]]) -> str:
    """``[['a', 'b']]`` -> ``"'a', 'b'"``; a layer called twice names each call."""
    calls = [", ".join(f"'{name}'" for name in names) for names in inputs_from]
    if len(calls) == 1:
        return calls[0]
    return "; ".join(f"call {i}: {call}" for i, call in enumerate(calls))


def field_legend(reference: str) -> str:
    """What the receptive-field figures mean, in pixels of ``reference``."""
    return (f"receptive fields are in pixels of the {reference}, per axis (Araujo et al., "
            "Distill 2019): size = how many pixels one output value sees, jump = pixels "
            "between neighbouring outputs, start = centre of output 0's field (negative: over "
            "the padding)")


def _field_lines(rf: ReceptiveField, legend: bool = True) -> list[str]:
    if rf.whole_input:
        return [f"whole input: {rf.note}."]
    if not rf.size:
        return ["no spatial axes"]
    lines = [field_legend(rf.reference)] if legend else []
    fractional = False
    for axis, name in enumerate(rf.axes):
        size, jump, start = rf.size[axis], rf.jump[axis], rf.start[axis]
        first = start - (size - 1) / 2
        last = start + (size - 1) / 2
        lines.append(
            f"{name}: size {_number(size)}, jump {_number(jump)}, start {_number(start)} -- "
            f"output {name} i sees input {name}s {_number(first)} + {_number(jump)}*i to "
            f"{_number(last)} + {_number(jump)}*i"
        )
        fractional = fractional or any(
            math.isfinite(v) and not float(v).is_integer() for v in (first, jump)
        )
    if fractional:
        lines.append("Fractional bounds (after a transposed convolution): the field is the whole "
                     "pixels between them.")
    return lines
