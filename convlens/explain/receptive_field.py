"""Receptive fields: which input pixels one output value can see, layer after layer.

Per spatial axis three numbers are carried through the model with the recurrence
of Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019 (one step is ``convlens.shapes.receptive_field_step``):

* ``size``: how many input pixels the field spans;
* ``jump``: how many input pixels apart two neighbouring outputs are;
* ``start``: the input coordinate of the centre of output 0 (pixel centres are
  0, 1, 2, ...; a negative value means the field hangs over the padding).

Output ``i`` then sees input pixels ``start + i*jump - (size-1)/2`` to
``start + i*jump + (size-1)/2`` (clipped to the image; with strides or dilation the
field may have holes). Dense (on a flat vector), Flatten, Reshape and global
pooling make every output depend on the whole input.

>>> from convlens.layers import Conv2D, Input
>>> from convlens.models import Sequential
>>> model = Sequential([Input((28, 28, 1)), Conv2D(32, 3, name="a"), Conv2D(64, 3, name="b")])
>>> receptive_fields(model)[-1].size
(5, 5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from convlens.kinds import kind_of
from convlens.shapes import receptive_field_step

AXIS_NAMES = {1: ("step",), 2: ("row", "col"), 3: ("depth", "row", "col")}


def axis_names(rank: int) -> tuple[str, ...]:
    return AXIS_NAMES.get(rank, tuple(f"axis{i}" for i in range(rank)))


@dataclass
class ReceptiveField:
    """Field of one layer's outputs, in pixels of the reference input, per spatial axis."""

    size: tuple = ()
    jump: tuple = ()
    start: tuple = ()
    whole_input: bool = False
    reference: str = "model input"
    axes: tuple = ()
    note: str = ""
    input_spatial: tuple = field(default_factory=tuple)

    def bounds(self, index: int, axis: int) -> tuple[float, float]:
        """First and last input coordinate seen by output ``index`` along ``axis`` (unclipped)."""
        centre = self.start[axis] + index * self.jump[axis]
        half = (self.size[axis] - 1) / 2
        return centre - half, centre + half

    def describe(self) -> str:
        if self.whole_input:
            return "whole input"
        if not self.size:
            return "-"
        return "x".join(_number(s) for s in self.size)

    def to_dict(self) -> dict:
        return {
            "size": list(self.size), "jump": list(self.jump), "start": list(self.start),
            "whole_input": self.whole_input, "reference": self.reference,
            "axes": list(self.axes), "note": self.note,
        }


def _number(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "?"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _spatial_of(layer, shape) -> tuple:
    geometry = getattr(layer, "geometry", None)
    if geometry is not None:
        return tuple(geometry.spatial(shape))
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[2:])
    return tuple(shape[1:-1])


def _window_step(state, layer):
    """A sliding window (conv, depthwise, separable, pooling), read from its window record."""
    size, jump, start = state
    window = layer.window
    new = ([], [], [])
    for axis in range(len(size)):
        pads = window.padding[axis]
        pad_before = math.nan if pads is None else pads[0]  # 'same' on a size not fixed
        r, j, u = receptive_field_step(size[axis], jump[axis], start[axis], window.kernel[axis],
                                       window.strides[axis], window.dilation[axis], pad_before)
        for target, value in zip(new, (r, j, u)):
            target.append(value)
    return tuple(tuple(v) for v in new)


def _transpose_step(state, layer):
    """Transposed conv: output ``j`` reads inputs ``p = (j + crop - t*dilation) / stride``.

    Araujo et al. cover gathering layers only. For a transposed conv the inputs output ``j``
    reads are the whole numbers ``p`` between ``(j + crop - span + 1) / stride`` and
    ``(j + crop) / stride``, an interval of ``(span - 1) / stride`` input positions centred
    on ``(j + crop - (span - 1)/2) / stride``. Its hull in pixels therefore has
    ``size + jump*(span - 1)/stride`` (possibly fractional: the field is every whole pixel
    between the bounds), jump ``jump/stride`` and that centre.
    """
    size, jump, start = state
    window = layer.window
    new = ([], [], [])
    for axis in range(len(size)):
        s, span, crop = window.strides[axis], window.span[axis], window.padding[axis][0]
        new[0].append(size[axis] + jump[axis] * (span - 1) / s)
        new[1].append(jump[axis] / s)
        new[2].append(start[axis] + (crop - (span - 1) / 2) / s * jump[axis])
    return tuple(tuple(v) for v in new)


def _shift_step(state, layer):
    """Zero padding moves every output ``before`` pixels away from the input's origin."""
    size, jump, start = state
    shifted = tuple(u - pad[0] * j for u, j, pad in zip(start, jump, layer.padding))
    return size, jump, shifted


def _crop_step(state, layer):
    """Cropping moves every output ``before`` pixels further from the input's origin."""
    size, jump, start = state
    shifted = tuple(u + crop[0] * j for u, j, crop in zip(start, jump, layer.cropping))
    return size, jump, shifted


def _upsample_step(state, layer):
    """Upsampling by ``f``: output ``o`` is centred on input position ``c = (o + 1/2)/f - 1/2``.

    Nearest reads input ``floor(o/f)``, within ``(f - 1)/(2f)`` of ``c``; bilinear reads the two
    inputs around ``c``, within ``1 - 1/(2f)`` of it. As for a transposed conv (a kernel of
    ``f`` ones, or a triangle of ``2f``, with stride ``f``) the field is the hull of those
    positions: ``size + jump*(span - 1)/f``, ``jump/f`` apart.
    """
    size, jump, start = state
    bilinear = getattr(layer, "interpolation", "nearest") == "bilinear"
    new = ([], [], [])
    for r, j, u, f in zip(size, jump, start, layer.size):
        span = 2 * f if bilinear else f
        new[0].append(r + j * (span - 1) / f)
        new[1].append(j / f)
        new[2].append(u + (0.5 / f - 0.5) * j)
    return tuple(tuple(v) for v in new)


def _dense_step(state, layer):
    """Dense acts per position on a rank > 2 input; on a flat vector it mixes everything."""
    return None if len(layer.input_shape) == 2 else state


def _last_axis_step(state, layer):
    """Softmax or layer normalization: value by value in space when it mixes the last (channel)
    axis only; every output sees the whole input when it mixes a spatial axis too."""
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input_shape)
    return state if all(a % rank == rank - 1 for a in axes) else None


def _model_step(state, layer):
    """A nested model: its own output field (size R, jump J, start U in pixels of its input)
    seen through the field that reaches its input: ``r + (R - 1)*j``, ``j*J``, ``u + U*j``."""
    inner = receptive_fields(layer)[layer.layers.index(layer.outputs[0].layer)]
    if inner.whole_input or len(inner.size) != len(state[0]):
        return None
    size, jump, start = state
    return (tuple(r + (big - 1) * j for r, big, j in zip(size, inner.size, jump)),
            tuple(j * big for j, big in zip(jump, inner.jump)),
            tuple(u + big * j for u, big, j in zip(start, inner.start, jump)))


# The ``field`` rule of a layer kind (``convlens.kinds``) -> its step; "mix" (the default for
# a kind nobody registered) makes every output depend on the whole input.
FIELD_STEPS = {
    "window": _window_step, "transpose": _transpose_step, "shift": _shift_step,
    "crop": _crop_step, "upsample": _upsample_step,
    "dense": _dense_step, "pointwise": lambda state, layer: state, "last_axis": _last_axis_step,
    "model": _model_step,
}


def step(layer, state):
    """``(size, jump, start)`` per axis after ``layer``; None when every output sees all input."""
    rule = FIELD_STEPS.get(kind_of(layer).field)
    if state is None or rule is None:
        return None
    return rule(state, layer)


def _spatial_rank(model) -> int:
    shape = model.input_shape
    return max(len(shape) - 2, 0) if shape is not None else 0


def identity_state(rank: int):
    return ((1,) * rank, (1,) * rank, (0.0,) * rank)


def _field(state, rank, reference, layer, input_spatial) -> ReceptiveField:
    axes = axis_names(rank)
    if state is None or rank == 0:
        note = (
            f"after '{layer.name}' ({type(layer).__name__}) every output value depends on "
            f"every value of the {reference}"
        )
        return ReceptiveField(whole_input=True, reference=reference, axes=axes, note=note,
                              input_spatial=input_spatial)
    size, jump, start = state
    return ReceptiveField(size=tuple(size), jump=tuple(jump), start=tuple(start),
                          reference=reference, axes=axes, input_spatial=input_spatial)


def _largest(states: list, names: list[str]):
    """A merge sees what each branch sees: the largest field of its branches, and its name."""
    if any(state is None for state in states):
        return None, ""
    sizes = [math.prod(state[0]) for state in states]
    best = max(range(len(states)), key=lambda i: sizes[i])
    return states[best], names[best]


def _graph_fields(model, graph) -> list[ReceptiveField]:
    # Fields are in pixels of the first input; another input of that rank is taken to be on the
    # same grid (a siamese pair, an image and its mask), one of another rank mixes everything.
    first = graph.inputs[0].shape
    rank = max(len(first) - 2, 0)
    reader = graph.nodes[0].layer if graph.nodes else None  # reads the (first) input
    input_spatial = _spatial_of(reader, first) if rank and reader else ()
    states = {id(t): identity_state(rank) if rank and len(t.shape) == rank + 2
              else None for t in graph.inputs}
    fields: dict[int, ReceptiveField] = {}
    for tensor in graph.inputs:
        fields[id(tensor.layer)] = _field(states[id(tensor)], rank, "model input",
                                          tensor.layer, input_spatial)
    for node in graph.nodes:
        layer, given = node.layer, [states.get(id(t)) for t in node.inputs]
        note = ""
        if kind_of(layer).field == "merge":
            state, branch = _largest(given, [t.layer.name for t in node.inputs])
            if state is not None and len(given) > 1:
                note = f"the largest of its {len(given)} branches, through '{branch}'"
        else:
            state = step(layer, given[0])
        states[id(node.outputs[0])] = state
        if id(layer) not in fields:  # a shared layer: its first call's field
            fields[id(layer)] = _field(state, rank, "model input", layer, input_spatial)
            fields[id(layer)].note = fields[id(layer)].note or note
    return [fields[id(layer)] for layer in model.layers]


def receptive_fields(model) -> list[ReceptiveField]:
    """The field of every layer of ``model`` (same order as ``model.layers``), in input pixels.

    In a graph a merge sees the largest field among its branches (the branch is named in the
    field's ``note``); a layer called twice is given its first call's field.
    """
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built; build it or start it with Input().")
    return _graph_fields(model, model.graph)


def layer_receptive_field(layer) -> ReceptiveField:
    """The field of one layer alone, in pixels of its own input."""
    rank = max(len(layer.input_shape) - 2, 0)
    state = identity_state(rank) if rank else None
    return _field(step(layer, state), rank, "layer input", layer,
                  _spatial_of(layer, layer.input_shape))
