"""Trace one output value back to the input values and weights it is made of.

``trace(model, layer, index, x)`` runs the model on ``x`` (one sample, as a batch of
one) up to ``layer``, finds the input values that output position ``index`` is made of,
and recomputes the value from its terms: per input channel the sum of window * kernel
slice, then the bias, then the activation. ``Trace.matches`` says whether that equals the
real forward pass (``|diff| <= 1e-5 * max(1, |value|)``).

Supported: every layer kind with a ``trace`` rule (``convlens.kinds``; all but InputLayer).
Conv1D/2D/3D (strides, padding, dilation, groups), DepthwiseConv1D/2D, SeparableConv1D/2D
(depthwise values per input channel, then the pointwise sum), Conv1D/2D/3DTranspose (the input
positions whose kernel patch covers the output position), Dense, MaxPooling and AveragePooling
(1D/2D/3D): see ``trace_window.py`` and ``trace_transpose.py``; value by value (copies,
activations, normalizations, merges, global pooling, upsampling): ``trace_values.py`` and
``trace_norms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convlens.explain.receptive_field import axis_names
from convlens.explain.render import Block, Renderable, Section
from convlens.explain.trace_transpose import trace_transpose, transpose_blocks
from convlens.explain.trace_values import (
    SIMPLE_KINDS,
    activation_value,
    input_lines,
    simple_kind,
    trace_simple,
)
from convlens.explain.trace_window import (
    trace_conv,
    trace_dense,
    trace_pool,
    trace_separable,
    window_blocks,
)
from convlens.kinds import kind_of, registered_class, registered_names
from convlens.shapes import format_shape

WEIGHTED_KINDS = ("conv", "depthwise", "separable", "transpose", "dense")


def traceable_layers() -> str:
    """The layer classes a trace goes through, from the registry."""
    return ", ".join(name for name in registered_names()
                     if kind_of(registered_class(name)).trace is not None)


@dataclass
class Trace(Renderable):
    """One output value, the input values and weights it is made of, and how it was summed."""

    layer_index: int
    layer_name: str
    layer_class: str
    kind: str  # WEIGHTED_KINDS, "max_pool", "average_pool", or SIMPLE_KINDS
    index: tuple
    axis_names: tuple
    output_shape: tuple
    input_shape: tuple
    input_from: str
    value: float
    forward_value: float
    # conv, separable: (*kernel, channels); pool: (*pool,); dense: (inputs,);
    # transpose: (contributing positions, channels)
    window: np.ndarray
    positions: list = field(default_factory=list)  # per spatial axis: input coordinates
    padding_mask: np.ndarray | None = None  # (*kernel,) True where the tap is padding
    input_channels: list = field(default_factory=list)
    # same shape as window; separable: the depthwise kernel (kh, kw, channels, multiplier)
    kernel: np.ndarray | None = None
    # per input channel (dense: per input; separable: per depthwise map c*multiplier + j)
    partial_sums: np.ndarray | None = None
    bias: float | None = None
    pre_activation: float | None = None
    activation: str = "linear"
    winner: dict | None = None  # max pooling: {"tap": ..., "position": ...}
    count: int | None = None  # average pooling: real cells averaged
    source: tuple | None = None  # SIMPLE_KINDS: the input position read (None: zero padding)
    formula: str = ""  # SIMPLE_KINDS: the computation written out with its numbers
    depthwise_values: np.ndarray | None = None  # separable: (channels, multiplier)
    pointwise_weights: np.ndarray | None = None  # separable: (channels, multiplier)
    contributors: list = field(default_factory=list)  # transpose: {"position", "tap"} dicts
    scatter: list = field(default_factory=list)  # transpose: per spatial axis, the (i, t) pairs

    @property
    def abs_diff(self) -> float:
        return abs(self.value - self.forward_value)

    @property
    def matches(self) -> bool:
        return self.abs_diff <= 1e-5 * max(1.0, abs(self.forward_value))

    @property
    def input_spatial(self) -> tuple:
        channels_first = len(self.axis_names) > 1 and self.axis_names[0] == "channel"
        return tuple(self.input_shape[2:] if channels_first else self.input_shape[1:-1])

    # ----- rendering -------------------------------------------------------------------------
    def _where(self) -> str:
        named = ", ".join(f"{n} {i}" for n, i in zip(self.axis_names, self.index))
        return (f"{named} of the output `{format_shape(self.output_shape)}` of layer "
                f"{self.layer_index} '{self.layer_name}' ({self.layer_class})")

    def _result_lines(self) -> list[str]:
        lines = []
        if self.kind in SIMPLE_KINDS:
            lines.append(self.formula)
        elif self.kind in WEIGHTED_KINDS:
            total = float(np.sum(self.partial_sums, dtype=np.float64))
            what = {"dense": "products", "separable": "pointwise products"}.get(
                self.kind, "per-channel sums")
            lines.append(f"sum of the {len(self.partial_sums):,} {what} = {total:.7g}")
            if self.bias is not None:
                lines.append(f"+ bias {self.bias:.7g} = pre-activation {self.pre_activation:.7g}")
            else:
                lines.append(f"no bias: pre-activation = {self.pre_activation:.7g}")
            if self.activation in ("softmax", "log_softmax"):
                lines.append(f"{self.activation} over the pre-activations of all "
                             f"{self.output_shape[-1]} entries of the last axis; this entry: "
                             f"{self.value:.7g}")
            elif self.activation == "linear":
                lines.append(f"no activation (linear): value = {self.value:.7g}")
            else:
                lines.append(f"`{self.activation}({self.pre_activation:.7g}) = "
                             f"{self.value:.7g}`")
        elif self.kind == "max_pool":
            lines.append(f"maximum of the window = {self.value:.7g}, at input position "
                         f"{self.winner['position']} (tap {self.winner['tap']})")
        else:
            lines.append(f"mean of {self.count} real cell(s) = {self.value:.7g}")
        lines.append(f"forward pass: {self.forward_value:.7g}; |difference| = "
                     f"{self.abs_diff:.2e}; matches: {'yes' if self.matches else 'NO'}")
        return lines

    def sections(self) -> list[Section]:
        blocks = [Block("Where", [self._where(), f"input of this layer: {self.input_from}"])]
        if self.kind in SIMPLE_KINDS:
            blocks.append(Block("Input", input_lines(self)))
        elif self.kind == "transpose":
            blocks += transpose_blocks(self)
        else:
            blocks += window_blocks(self)
        blocks.append(Block("Result", self._result_lines()))
        return [Section(f"Trace of {self.layer_name}{list(self.index)} = {self.value:.7g}",
                        blocks, css_class="convlens-trace")]

    def to_dict(self) -> dict:
        data = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            data[key] = value.tolist() if isinstance(value, np.ndarray) else value
        data.update(matches=self.matches, abs_diff=self.abs_diff)
        return data


# ----- checks ---------------------------------------------------------------------------------
def _check_x(model, x):
    """``x`` as float32, checked: one sample as a batch of one (a list of them, one per input,
    for a model of several inputs)."""
    if isinstance(model.input_shape, list):
        if not isinstance(x, (list, tuple)) or len(x) != len(model.input_shape):
            raise ValueError(f"trace: model '{model.name}' has {len(model.input_shape)} inputs; "
                             "pass x as a list with one batch of one sample for each, in the "
                             "order of model.inputs.")
        return [_check_one(model.name, shape, each)
                for shape, each in zip(model.input_shape, x)]
    return _check_one(model.name, model.input_shape, x)


def _check_one(model_name: str, expected, x) -> np.ndarray:
    from convlens.layers.base import as_float32

    x = as_float32(x, "trace")
    sample = format_shape(expected[1:])
    if x.ndim != len(expected):
        hint = " Add a batch axis: x[None]." if x.ndim == len(expected) - 1 else ""
        raise ValueError(f"trace expects one input sample as a batch of one, shape "
                         f"(1, {sample[1:]}; received shape {format_shape(x.shape)}.{hint}")
    if x.shape[0] != 1:
        raise ValueError(f"trace expects a batch of exactly one sample; received "
                         f"{x.shape[0]} samples (shape {format_shape(x.shape)}). Pass x[:1].")
    if any(e is not None and e != r for e, r in zip(expected[1:], x.shape[1:])):
        raise ValueError(f"trace: the sample has shape {format_shape(x.shape[1:])}, but model "
                         f"'{model_name}' expects {sample}.")
    return x


def _output_axis_names(layer) -> tuple:
    geometry = getattr(layer, "geometry", None)
    rank = len(layer.output_shape) - 1
    if geometry is not None:
        names = axis_names(rank - 1)
        return (*names, "channel") if geometry.channels_last else ("channel", *names)
    from convlens.layers import Dense

    if isinstance(layer, Dense):
        return (*(f"axis {i + 1}" for i in range(rank - 1)), "unit")
    if rank == 1:
        return ("position",)
    names = axis_names(rank - 1)
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return ("channel", *names)
    return (*names, "channel")


def _check_index(layer, index, names) -> tuple:
    if isinstance(index, (int, np.integer)):
        index = (index,)
    if not isinstance(index, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index
    ):
        raise ValueError(f"trace: `index` must be a tuple of ints ({', '.join(names)}); "
                         f"received {index!r}.")
    sizes = layer.output_shape[1:]
    ranges = ", ".join(f"{n} must be in [0, {s - 1}]" for n, s in zip(names, sizes))
    if len(index) != len(sizes):
        raise ValueError(f"trace: `index` needs {len(sizes)} numbers ({', '.join(names)}) for "
                         f"the output {format_shape(layer.output_shape)} of layer "
                         f"'{layer.name}' (no batch axis); received {tuple(index)}.")
    bad = [n for n, i, s in zip(names, index, sizes) if not 0 <= i < s]
    if bad:
        raise ValueError(f"trace: index {tuple(int(i) for i in index)} is out of range for "
                         f"the output {format_shape(layer.output_shape)} of layer "
                         f"'{layer.name}' ({', '.join(bad)} out of range): {ranges}.")
    return tuple(int(i) for i in index)


def trace(model, layer, index, x) -> Trace:
    """Trace output ``index`` of ``layer`` (an index into ``model.layers`` or a name) for ``x``.

    ``index`` has no batch axis: ``(row, col, channel)`` for channels_last 2D layers,
    ``(channel, row, col)`` for channels_first, ``(unit,)`` for Dense. ``x`` is one sample
    as a batch of one, shape ``(1, *model.input_shape[1:])`` (a list of them, one per input,
    for a model of several inputs).
    """
    from convlens.explain.derivation import resolve_layer_index

    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built; start it with Input(...) or call "
                         "model.build(...) before tracing.")
    position = resolve_layer_index(model, layer)
    target = model.layers[position]
    kind = kind_of(target).trace
    if kind == "model":  # a nested model's value is its output layer's: traced in there
        inner = target.outputs[0].layer.name
        return trace(target, inner, index, model.layer_input(target, _check_x(model, x)))
    if kind == "pool":
        kind = "max_pool" if target.mode == "max" else "average_pool"
    elif simple_kind(target) is not None:
        kind = "simple"
    if kind is None:
        raise ValueError(f"trace supports {traceable_layers()}; layer {position} "
                         f"'{target.name}' is a {type(target).__name__}. Trace a neighbouring "
                         "layer instead.")
    names = _output_axis_names(target)
    index = _check_index(target, index, names)
    x = _check_x(model, x)
    h = model.layer_input(target, x)
    forward = target.call(h)
    forward_value = float(forward[(0, *index)])
    if kind == "simple":
        terms = trace_simple(target, h, index)
        kind = terms.pop("kind")
    elif kind == "dense":
        terms = trace_dense(target, h[0][index[:-1]], index[-1])
    else:
        # SeparableConv2D keeps its geometry in its depthwise stage.
        geometry = getattr(target, "geometry", None) or target.depthwise.geometry
        sample = geometry.to_last(h)[0]  # (*spatial, C)
        if geometry.channels_last:
            spatial_index, channel = index[:-1], index[-1]
        else:
            spatial_index, channel = index[1:], index[0]
        compute = {"separable": trace_separable, "transpose": trace_transpose,
                   "max_pool": trace_pool, "average_pool": trace_pool}.get(kind, trace_conv)
        terms = compute(target, sample, spatial_index, channel)
        activation = getattr(getattr(target, "activation", None), "name", "linear")
        if not geometry.channels_last and activation in ("softmax", "log_softmax"):
            # As in Keras, softmax runs over the output's last axis, for channels_first the
            # last spatial axis: the pre-activations of this channel's row, each traced alike.
            row = [compute(target, sample, (*spatial_index[:-1], j), channel)["pre_activation"]
                   for j in range(target.output_shape[-1])]
            terms["value"] = activation_value(target, np.array(row), spatial_index[-1])
    if not model.sequential_like:
        source = f"the output of {model.connections(target)}"
    else:
        source = ("the model input" if position == 0 else
                  f"the output of layer {position - 1} '{model.layers[position - 1].name}'")
    terms.setdefault("activation",
                     getattr(getattr(target, "activation", None), "name", "linear"))
    return Trace(
        layer_index=position, layer_name=target.name, layer_class=type(target).__name__,
        kind=kind, index=index, axis_names=names, output_shape=tuple(target.output_shape),
        input_shape=tuple(target.input_shape), input_from=f"{source}, shape "
        f"{' and '.join(format_shape(a.shape) for a in (h if isinstance(h, list) else [h]))}",
        forward_value=forward_value, **terms,
    )
