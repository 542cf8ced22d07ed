"""ONNX -> convlens: ``from_onnx(path)`` reads an ONNX graph into a ``Sequential`` or ``Model``.

The model takes the graph's own inputs (channels first, as ONNX's convolutions are) and returns
its outputs; a chain of operators gives a ``Sequential``, a graph with branches a Functional
``Model`` (``Add``/``Sum``/``Sub``/``Mul``/``Mean``/``Max``/``Min`` of computed tensors become
merge layers, ``Concat`` a ``Concatenate``). The nodes are read in order through the same
converter as ``from_torch``
(:class:`convlens.io.torch_import.ChainConverter`), each node standing in for the torch module
that computes the same thing, so the same padding, pooling and transposed-convolution rules
apply. Read:

* ``Conv`` (1-D/2-D/3-D, groups, dilation, explicit or ``SAME_UPPER`` pads; uneven pads become a
  ``ZeroPadding`` first), ``ConvTranspose`` (2-D; pads and ``output_padding`` that Keras's
  ``valid``/``same`` crop expresses), ``Gemm`` and ``MatMul`` (+ ``Add`` of a bias): ``Dense``;
* ``x.view(x.size(0), -1)``'s ``Shape``/``Gather``/``Unsqueeze``/``Concat`` feeding a
  ``Reshape``: the batch size is followed through them;
* ``MaxPool``/``AveragePool`` where Keras's windows and divisors agree, ``GlobalAveragePool``/
  ``GlobalMaxPool``/``ReduceMax`` over the spatial axes, ``BatchNormalization`` (inference),
  ``Pad`` (zeros; ``-inf`` right before a ``MaxPool``), ``Flatten``, ``Reshape`` to a constant
  shape, ``Transpose`` to channels last and back (what ``export_onnx`` writes around
  channels_last layers), ``Dropout`` and ``Identity`` (nothing at inference);
* ``Relu``, ``LeakyRelu``, ``Clip`` (0 to max), ``Sigmoid``, ``HardSigmoid``, ``HardSwish``,
  ``Tanh``, ``Softplus``, ``Softsign``, ``Elu``, ``Selu``, ``Gelu``, ``Mish``, ``Exp``,
  ``Softmax``/``LogSoftmax`` (last axis).

Anything else -- another operator, a custom domain or function -- is a ``ValueError`` naming
the node and its op type. Reading never runs code: the file is parsed by the ``onnx`` package
as protobuf data, external tensor data (files the model points at) is refused, and every
initializer's size is checked against its bytes and a limit before it becomes an array.
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from convlens import layers as cl
from convlens.models import Model, Sequential
from convlens.shapes import format_shape, padding_amounts

__all__ = ["from_onnx"]

MAX_FILE_BYTES = 2**31  # protobuf's own limit
MAX_TENSOR_VALUES = 2**28  # one initializer larger than this is not a CNN weight
_ITEM_BYTES = {1: 4, 6: 4, 7: 8, 10: 2, 11: 8}  # FLOAT, INT32, INT64, FLOAT16, DOUBLE
_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
                "Softsign": "softsign", "Exp": "exponential", "Mish": "mish",
                "HardSwish": "hard_silu"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "Reading ONNX needs the `onnx` package: pip install 'convlens[onnx]' "
            "(or pip install onnx)."
        ) from None
    return onnx


class _Refused(ValueError):
    """Why one node can't be read; ``from_onnx`` adds the node's index, name and op type."""


class _Graph:
    """The graph's constants (initializers and Constant nodes), converted on first use."""

    def __init__(self, onnx, graph):
        self.onnx = onnx
        self.tensors = {tensor.name: tensor for tensor in graph.initializer}
        self.arrays: dict[str, np.ndarray] = {}

    def is_constant(self, name: str) -> bool:
        return name in self.tensors or name in self.arrays

    def array(self, name: str, what: str) -> np.ndarray:
        if name in self.arrays:
            return self.arrays[name]
        if name not in self.tensors:
            raise _Refused(f"its {what} ({name!r}) is computed, not a constant of the graph.")
        array = _to_array(self.onnx, self.tensors[name])
        self.arrays[name] = array
        return array

    def optional(self, node, index: int, what: str):
        if len(node.input) > index and node.input[index]:
            return self.array(node.input[index], what)
        return None


def _to_array(onnx, tensor) -> np.ndarray:
    """The tensor's values, after checking that its size is sane and matches its bytes."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        raise _Refused(f"tensor {tensor.name!r} keeps its data in an external file, which "
                       "from_onnx does not open; save the model with its data inside.")
    count = math.prod(tensor.dims)
    if count > MAX_TENSOR_VALUES:
        raise _Refused(f"tensor {tensor.name!r} claims {count:,} values (dims "
                       f"{list(tensor.dims)}), more than {MAX_TENSOR_VALUES:,}.")
    item = _ITEM_BYTES.get(tensor.data_type)
    if item is None:
        raise _Refused(f"tensor {tensor.name!r} has ONNX data type {tensor.data_type}; "
                       "convlens reads float, double, float16, int32 and int64 tensors.")
    if tensor.raw_data and len(tensor.raw_data) != count * item:
        raise _Refused(f"tensor {tensor.name!r} claims dims {list(tensor.dims)} "
                       f"({count * item} bytes) but holds {len(tensor.raw_data)} bytes.")
    return onnx.numpy_helper.to_array(tensor)


def _attributes(onnx, node) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute)
            for attribute in node.attribute}


def _window(attributes: dict, rank: int, default_stride: int = 1):
    """(kernel, strides, dilations, [(before, after) per axis]) of a Conv or pooling node."""
    kernel = tuple(attributes.get("kernel_shape", ()))
    strides = tuple(attributes.get("strides", (default_stride,) * rank))
    dilations = tuple(attributes.get("dilations", (1,) * rank))
    pads = tuple(attributes.get("pads", (0,) * (2 * rank)))
    return kernel, strides, dilations, list(zip(pads[:rank], pads[rank:]))


def _standin(op: str, **fields):
    """An object with torch's attribute names for the converter, its type named after ``op``
    (the converter's messages name the type)."""
    return type(op, (SimpleNamespace,), {})(**fields)


def _symmetric(pairs) -> bool:
    return all(before == after for before, after in pairs)


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


class _Reader:
    def __init__(self, onnx, graph, converter, consumers=None):
        self.onnx, self.graph, self.converter = onnx, graph, converter
        self.consumers = consumers or {}  # value name -> how many nodes read it

    def resize(self, node, attributes: dict) -> None:
        """Resize by whole factors: nearest (as torch exports it, or half-pixel) or linear with
        half-pixel centres in 2D, which are Keras's UpSampling layers."""
        names = list(node.input) + ["", "", ""]
        spatial = self.converter.spatial
        if names[2] and self.graph.is_constant(names[2]) and self.graph.array(
                names[2], "scales").size:
            factors = self.graph.array(names[2], "scales").reshape(-1)[2:]
        elif names[3] and self.graph.is_constant(names[3]):
            sizes = self.graph.array(names[3], "sizes").reshape(-1)[2:]
            factors = np.asarray(sizes, np.float64) / np.asarray(spatial, np.float64)
        else:
            raise _Refused("its scales or sizes are not constants.")
        mode = _text(attributes.get("mode"), "nearest")
        coordinates = _text(attributes.get("coordinate_transformation_mode"), "half_pixel")
        if mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel"):
            mode = "bilinear"
        elif mode != "nearest" or coordinates not in ("asymmetric", "half_pixel"):
            raise _Refused(f"mode={mode!r} with coordinate_transformation_mode={coordinates!r}: "
                           "Keras upsamples nearest, or linearly with half-pixel centres.")
        self.converter.upsample(_standin(
            "Resize", size=None, scale_factor=tuple(float(f) for f in factors), mode=mode,
            align_corners=False))

    @property
    def rank(self) -> int:
        return len(self.converter.shape) - 2

    def auto_pad(self, attributes: dict, pairs, kernel, strides, dilations):
        mode = attributes.get("auto_pad", b"NOTSET")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode in ("NOTSET", ""):
            return pairs
        if mode == "VALID":
            return [(0, 0)] * len(kernel)
        if mode == "SAME_UPPER":  # Keras's 'same': the odd zero at the end
            return [padding_amounts(n, k, "same", s, d)
                    for n, k, s, d in zip(self.converter.spatial, kernel, strides, dilations)]
        raise _Refused(f"auto_pad={mode!r}: Keras's 'same' puts the odd zero at the end "
                       "(SAME_UPPER); SAME_LOWER has no Keras form.")

    # ----- operators ---------------------------------------------------------------------
    def conv(self, node, attributes) -> None:
        weight = self.graph.array(node.input[1], "weight")
        bias = self.graph.optional(node, 2, "bias")
        rank = weight.ndim - 2
        kernel, strides, dilations, pairs = _window(
            {"kernel_shape": weight.shape[2:], **attributes}, rank)
        pairs = self.auto_pad(attributes, pairs, kernel, strides, dilations)
        if not _symmetric(pairs):
            self.converter.zero_pad(tuple(pairs))
            pairs = [(0, 0)] * rank
        self.converter.conv(_standin(node.op_type,
            kernel_size=kernel, stride=strides, dilation=dilations,
            padding=tuple(before for before, _ in pairs), groups=attributes.get("group", 1),
            padding_mode="zeros", out_channels=weight.shape[0], weight=weight, bias=bias,
        ))

    def conv_transpose(self, node, attributes) -> None:
        weight = self.graph.array(node.input[1], "weight")  # (in, out // groups, kh, kw)
        if "output_shape" in attributes:
            raise _Refused("output_shape is set; convlens reads pads and output_padding.")
        if weight.ndim != 4:
            raise _Refused(f"a {weight.ndim - 2}-D transposed convolution; convlens has 2-D only.")
        kernel, strides, dilations, pairs = _window(
            {"kernel_shape": weight.shape[2:], **attributes}, 2)
        extra = tuple(attributes.get("output_padding", (0, 0)))
        crop = tuple((before, after - e) for (before, after), e in zip(pairs, extra))
        self.converter.conv_transpose(_standin(node.op_type,
            kernel_size=kernel, stride=strides, dilation=dilations, padding=(0, 0),
            output_padding=(0, 0), groups=attributes.get("group", 1), padding_mode="zeros",
            out_channels=weight.shape[1], weight=weight,
            bias=self.graph.optional(node, 2, "bias"),
        ), crop)

    def dense(self, weight, bias, op: str) -> None:
        """``weight`` as torch's Linear holds it, (out, in)."""
        self.converter.linear(_standin(op, in_features=weight.shape[1],
                                              out_features=weight.shape[0], weight=weight,
                                              bias=None if bias is None else bias.reshape(-1)))

    def gemm(self, node, attributes) -> None:
        if attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 or attributes.get(
                "beta", 1.0) != 1.0:
            raise _Refused("only Gemm(transA=0, alpha=1, beta=1) is a Dense layer.")
        weight = self.graph.array(node.input[1], "weight")
        self.dense(weight if attributes.get("transB", 0) else weight.T,
                   self.graph.optional(node, 2, "bias"), node.op_type)

    def pool(self, node, attributes, mode: str, minus_inf_pads=None) -> None:
        rank = self.rank
        kernel, strides, dilations, pairs = _window(attributes, rank)
        pairs = self.auto_pad(attributes, pairs, kernel, strides, dilations)
        module = _standin(
            node.op_type, kernel_size=kernel, stride=strides, dilation=dilations,
            return_indices=False, ceil_mode=bool(attributes.get("ceil_mode", 0)),
            divisor_override=None,
            count_include_pad=bool(attributes.get("count_include_pad", 0)),
            padding=tuple(before for before, _ in pairs) if _symmetric(pairs) else (0,) * rank,
        )
        if _symmetric(pairs) or minus_inf_pads is not None:
            self.converter.pool(module, mode, rank, minus_inf_pads=minus_inf_pads)
        elif mode == "max":
            self.converter.pool(module, mode, rank, minus_inf_pads=pairs)
        else:
            same = [padding_amounts(n, k, "same", s)
                    for n, k, s in zip(self.converter.spatial, kernel, strides)]
            if pairs != same or module.count_include_pad or module.ceil_mode:
                raise _Refused(
                    f"pads {pairs} (before, after) on input {format_shape(self.converter.shape)}"
                    f": Keras's average pooling pads nothing or its 'same' amounts {same}, "
                    "dividing by the real cells (count_include_pad=0)."
                )
            self.converter.add(getattr(cl, f"AveragePooling{rank}D")(
                kernel, strides=strides, padding="same", data_format=self.converter.data_format))

    def pad(self, node, attributes):
        """((before, after) per spatial axis, value) of a constant-mode Pad."""
        mode = attributes.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise _Refused(f"mode={mode!r}: only constant padding converts.")
        pads = attributes.get("pads")
        if pads is None:
            pads = self.graph.array(node.input[1], "pads").tolist()
        value = self.graph.optional(node, 2, "value")
        value = float(attributes.get("value", 0.0) if value is None else value.reshape(-1)[0])
        ndim = len(pads) // 2
        pairs = list(zip(pads[:ndim], pads[ndim:]))
        if any(pairs[0]) or any(pairs[1]) or any(a < 0 for pair in pairs for a in pair):
            raise _Refused(f"pads={list(pads)}: only non-negative padding of the spatial axes "
                           "converts.")
        return tuple(pairs[2:]), value

    def clip(self, node, attributes) -> None:
        low = self.graph.optional(node, 1, "min")
        high = self.graph.optional(node, 2, "max")
        low = attributes.get("min", -np.inf) if low is None else float(low)
        high = attributes.get("max", np.inf) if high is None else float(high)
        if low != 0.0 or not np.isfinite(high):
            raise _Refused(f"Clip({low}, {high}): only Clip(0, max) converts (a ReLU with "
                           "max_value).")
        self.converter.add(cl.Activation("relu6") if high == 6.0 else cl.ReLU(max_value=high))

    def reshape(self, node) -> None:
        shape = [int(d) for d in self.graph.array(node.input[1], "shape")]
        rest = shape[1:]
        if shape[0] not in (0, -1) or rest.count(-1) > 1 or (shape[0] == -1 and -1 in rest) or (
                0 in rest):
            raise _Refused(f"shape={shape}: only a constant shape that keeps the batch axis "
                           "(0 or -1 first) converts.")
        self.converter.expect_torch_order(_standin(node.op_type))
        if len(rest) == 1 and len(self.converter.shape) > 2:
            self.converter.flatten(_standin(node.op_type, start_dim=1, end_dim=-1))
        else:
            self.converter.add(cl.Reshape(tuple(rest)))


class _Value(NamedTuple):
    """A computed tensor, and what the converter knew about it when it was made."""

    tensor: object  # a KerasTensor
    channels_last: bool  # ONNX holds it channels first while convlens holds it channels last
    non_negative: bool


# ONNX operators that combine computed tensors -> convlens merge layers
_MERGES = {"Add": cl.Add, "Sum": cl.Add, "Sub": cl.Subtract, "Mul": cl.Multiply,
           "Mean": cl.Average, "Max": cl.Maximum, "Min": cl.Minimum}


def _merge(node, values: list, attributes: dict) -> _Value:
    modes = {value.channels_last for value in values}
    if len(modes) > 1:
        raise _Refused("its inputs are in different layouts (one after a Transpose to channels "
                       "first, one not).")
    channels_last = modes.pop()
    tensors = [value.tensor for value in values]
    if node.op_type == "Concat":
        ndim = len(tensors[0].shape)
        axis = attributes.get("axis", 1) % ndim
        if axis == 0:
            raise _Refused("it concatenates along the batch axis.")
        if channels_last:  # ONNX's axis of the channels-first view -> convlens's axis
            axis = -1 if axis == 1 else axis - 1
        return _Value(cl.Concatenate(axis=axis)(tensors), channels_last, False)
    if node.op_type not in _MERGES:
        raise _Refused(
            "it combines computed tensors in a way convlens has no merge layer for; "
            "convlens reads Add, Sum, Sub, Mul, Mean, Max, Min and Concat."
        )
    non_negative = node.op_type in ("Add", "Sum", "Mul", "Mean", "Max") and all(
        value.non_negative for value in values)
    return _Value(_MERGES[node.op_type]()(tensors), channels_last, non_negative)


def _size_arithmetic(onnx, node, sizes: dict, values: dict, constants: _Graph) -> bool:
    """Follow ``Shape`` -> ``Gather`` -> ``Unsqueeze`` -> ``Concat`` (what ``x.view(x.size(0),
    -1)`` exports as): the sizes they compute, the batch size as ``"batch"``. A ``Concat`` of
    them becomes a constant shape with 0 (ONNX's "keep this axis") for the batch; False when
    ``node`` is not such a step."""
    op, out = node.op_type, node.output[0]
    attributes = _attributes(onnx, node)
    if op == "Shape" and node.input[0] in values and not attributes:
        value = values[node.input[0]]
        shape = list(value.tensor.shape)
        if value.channels_last:  # ONNX sees the channels-first view
            shape = [shape[0], shape[-1], *shape[1:-1]]
        sizes[out] = ["batch", *shape[1:]]
        return True
    if op in ("Gather", "Unsqueeze") and node.input[0] in sizes:
        items = sizes[node.input[0]]
        if op == "Gather":
            if attributes.get("axis", 0) != 0:
                raise _Refused("a Gather of sizes along another axis than 0.")
            indices = constants.array(node.input[1], "indices")
            items = [items[int(index)] for index in np.atleast_1d(indices)]
        sizes[out] = items
        return True
    if op == "Concat" and attributes.get("axis", 0) == 0 and any(
            name in sizes for name in node.input) and all(
            name in sizes or constants.is_constant(name) for name in node.input):
        items = []
        for name in node.input:
            items += sizes[name] if name in sizes else [
                int(v) for v in constants.array(name, "sizes").reshape(-1)]
        sizes[out] = items
        constants.arrays[out] = np.array([0 if d == "batch" else d for d in items], np.int64)
        return True
    return False


def _node_reads(node, graph: _Graph) -> list[str]:
    return [name for name in node.input if name and not graph.is_constant(name)]


def _read_node(reader: _Reader, nodes, position: int) -> int:
    """Convert ``nodes[position]``; return how many following nodes it absorbed."""
    onnx, graph, converter = reader.onnx, reader.graph, reader.converter
    node = nodes[position]
    attributes = _attributes(onnx, node)
    after = nodes[position + 1] if position + 1 < len(nodes) else None
    # a node folds into the next one only when nothing else reads its result
    feeds_next = (after is not None and node.output[0] in after.input
                  and reader.consumers.get(node.output[0], 1) == 1)
    op = node.op_type
    if op == "Conv":
        reader.conv(node, attributes)
    elif op == "ConvTranspose":
        reader.conv_transpose(node, attributes)
    elif op == "Gemm":
        reader.gemm(node, attributes)
    elif op == "MatMul":
        weight = graph.array(node.input[1], "weight").T
        if feeds_next and after.op_type == "Add" and any(graph.is_constant(n) for n in after.input):
            bias = graph.array(next(n for n in after.input if graph.is_constant(n)), "bias")
            reader.dense(weight, bias, op)
            return 1
        reader.dense(weight, None, op)
    elif op in ("MaxPool", "AveragePool"):
        if len(node.output) > 1 and node.output[1]:
            raise _Refused("it also returns indices.")
        reader.pool(node, attributes, "max" if op == "MaxPool" else "average")
    elif op == "Pad":
        pairs, value = reader.pad(node, attributes)
        if value == -np.inf and feeds_next and after.op_type == "MaxPool":
            reader.pool(after, _attributes(onnx, after), "max", minus_inf_pads=pairs)
            return 1
        if value != 0.0:
            raise _Refused(f"value={value}: only zero padding converts (and -inf right before "
                           "a MaxPool with Keras's 'same' amounts).")
        converter.expect_rank(node, len(pairs))
        converter.zero_pad(pairs)
    elif op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMax"):
        if op == "ReduceMax":
            axes = attributes.get("axes")
            if axes is None and len(node.input) > 1:
                axes = graph.array(node.input[1], "axes").tolist()
            if sorted(a % len(converter.shape) for a in axes or ()) != list(
                    range(2, len(converter.shape))) or not attributes.get("keepdims", 1):
                raise _Refused("only a ReduceMax over every spatial axis with keepdims=1 "
                               "converts (a global max pooling).")
        flatten_next = feeds_next and after.op_type == "Flatten" and _attributes(
            onnx, after).get("axis", 1) == 1
        mode = "average" if op == "GlobalAveragePool" else "max"
        return int(converter.adaptive_pool(
            _standin(op, output_size=1), mode, reader.rank, flatten_next))
    elif op == "BatchNormalization":
        if len([name for name in node.output if name]) > 1:
            raise _Refused("it is in training mode (more than one output).")
        scale, bias, mean, variance = (graph.array(node.input[i], what) for i, what in (
            (1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        converter.batch_norm(_standin(
            op, track_running_stats=True, running_mean=mean, running_var=variance,
            momentum=1.0 - attributes.get("momentum", 0.9), eps=attributes.get("epsilon", 1e-5),
            affine=True, weight=scale, bias=bias,
        ), max(reader.rank, 1))
    elif op in ("Relu", "LeakyRelu") and feeds_next and after.op_type == "Min" and any(
            graph.is_constant(name) for name in after.input):
        # what export_onnx writes for ReLU(max_value=...)
        ceiling = graph.array(next(n for n in after.input if graph.is_constant(n)), "max")
        if ceiling.size != 1:
            raise _Refused("the Min after it is not by one number.")
        converter.add(cl.ReLU(max_value=float(ceiling.reshape(-1)[0]),
                              negative_slope=attributes.get("alpha", 0.01) if op == "LeakyRelu"
                              else 0.0))
        return 1
    elif op in _ACTIVATIONS:
        converter.add(cl.Activation(_ACTIVATIONS[op]))
    elif op == "LeakyRelu":
        converter.add(cl.ReLU(negative_slope=attributes.get("alpha", 0.01)))
    elif op == "Clip":
        reader.clip(node, attributes)
    elif op == "HardSigmoid":
        if not (np.isclose(attributes.get("alpha", 0.2), 1 / 6) and np.isclose(
                attributes.get("beta", 0.5), 0.5)):
            raise _Refused("only HardSigmoid(alpha=1/6, beta=0.5) is Keras's hard_sigmoid.")
        converter.add(cl.Activation("hard_sigmoid"))
    elif op == "Elu":
        if attributes.get("alpha", 1.0) != 1.0:
            raise _Refused(f"alpha={attributes['alpha']}: convlens's elu has alpha=1.")
        converter.add(cl.Activation("elu"))
    elif op == "Selu":
        converter.add(cl.Activation("selu"))
    elif op == "Gelu":
        approximate = attributes.get("approximate", b"none")
        if (approximate.decode() if isinstance(approximate, bytes) else approximate) != "none":
            raise _Refused("approximate='tanh': convlens's gelu is exact (erf).")
        converter.add(cl.Activation("gelu"))
    elif op in ("Softmax", "LogSoftmax"):
        converter.softmax(_standin(op, dim=attributes.get("axis", -1)),
                          "softmax" if op == "Softmax" else "log_softmax")
    elif op == "Flatten":
        if attributes.get("axis", 1) != 1:
            raise _Refused(f"axis={attributes['axis']}: only Flatten(axis=1) converts.")
        converter.flatten(_standin(op, start_dim=1, end_dim=-1))
    elif op == "Reshape":
        reader.reshape(node)
    elif op == "Transpose":
        permute = _standin(op, dims=tuple(attributes.get("perm", ())))
        if feeds_next and after.op_type == "Flatten" and converter.flattens_channels_last(
                permute):
            return 1
        converter.permute(permute)
    elif op == "Resize":
        reader.resize(node, attributes)
    elif op in ("Dropout", "Identity"):
        pass
    else:
        raise _Refused(
            "convlens has no layer for this operator. Read: Conv, ConvTranspose, Gemm, MatMul "
            "(+ Add), MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMax, "
            "BatchNormalization, Pad, Flatten, Reshape, Transpose, Dropout, Identity, Clip, "
            "LeakyRelu, HardSigmoid, Elu, Selu, Gelu, Softmax, LogSoftmax, Resize, "
            + ", ".join(sorted(_ACTIVATIONS)) + "."
        )
    return 0


def _inputs(graph, path: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, sample shape) of every graph input that is not an initializer."""
    initialized = {tensor.name for tensor in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initialized:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if len(shape) < 2 or any(d is None or d <= 0 for d in shape[1:]):
            raise ValueError(
                f"from_onnx: input {value.name!r} has shape {shape}; convlens needs every axis "
                "but the batch axis fixed (export with a fixed sample shape)."
            )
        found.append((value.name, shape[1:]))
    if not found or not graph.output:
        raise ValueError(f"from_onnx: {path!r} has no input or no output.")
    return found


def _is_chain(nodes, constants, first: str) -> bool:
    current = first
    for node in nodes:
        if node.op_type == "Constant":
            continue
        if _node_reads(node, constants) != [current]:
            return False
        current = node.output[0]
    return True


def from_onnx(filepath, name: str | None = None) -> Sequential:
    """A convlens model computing what the ONNX file's graph computes.

    Args:
        filepath: an ``.onnx`` file (the graph's data inside it, not in external files).
        name: the model's name (default: the graph's name).

    Returns:
        A built ``Sequential`` for a chain of operators, else a Functional ``Model``, taking
        the graph's inputs (channels first, as ONNX's convolutions are) and returning its
        outputs.

    Raises:
        ValueError: a node convlens can't read, naming its index, name and op type; a file
            that is not ONNX, or too large.
        ImportError: the ``onnx`` package is not installed.
    """
    from convlens.io.torch_import import ChainConverter

    onnx = _onnx()
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No ONNX file at {path!r}.")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise ValueError(f"from_onnx: {path!r} is larger than {MAX_FILE_BYTES:,} bytes.")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"from_onnx: {path!r} is not an ONNX model: {error}") from None
    if proto.functions:
        raise ValueError(f"from_onnx: {path!r} defines its own functions, which convlens does "
                         "not read.")
    graph = proto.graph
    inputs = _inputs(graph, path)
    constants = _Graph(onnx, graph)
    nodes = list(graph.node)
    for node in nodes:  # the constants first: a node may read one made later in the list
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constants.arrays[node.output[0]] = _to_array(onnx, _attributes(onnx, node).get(
                "value"))
    consumers: dict[str, int] = {}
    for node in nodes:
        for read in node.input:
            consumers[read] = consumers.get(read, 0) + 1
    for output in graph.output:
        consumers[output.name] = consumers.get(output.name, 0) + 1
    model_inputs = {input_name: cl.Input(shape) for input_name, shape in inputs}
    values = {input_name: _Value(tensor, False, False)
              for input_name, tensor in model_inputs.items()}
    sizes: dict[str, list] = {}  # x.size(...) computations: sizes, "batch" for the batch size
    chain = len(inputs) == 1 and len(graph.output) == 1 and _is_chain(nodes, constants,
                                                                      inputs[0][0])
    position = 0
    while position < len(nodes):
        node = nodes[position]
        try:
            if node.domain not in ("", "ai.onnx"):
                raise _Refused(f"its domain {node.domain!r} is not ONNX's own.")
            if node.op_type == "Constant" or _size_arithmetic(onnx, node, sizes, values,
                                                              constants):
                position += 1
                continue
            reads = _node_reads(node, constants)
            if not reads:
                raise _Refused("it reads no computed tensor.")
            missing = [read for read in reads if read not in values]
            if missing:
                raise _Refused(f"it reads {missing}, which no node before it computes.")
            if len(reads) > 1:
                values[node.output[0]] = _merge(node, [values[read] for read in reads],
                                                _attributes(onnx, node))
                position += 1
                continue
            value = values[reads[0]]
            converter = ChainConverter(value.tensor.shape[1:])
            converter.channels_last, converter.non_negative = value.channels_last, (
                value.non_negative)
            absorbed = _read_node(_Reader(onnx, constants, converter, consumers), nodes,
                                  position)
        except ValueError as error:
            text = " ".join(str(error).split())
            raise ValueError(
                f"from_onnx: cannot convert node {position} '{node.name}' ({node.op_type}): "
                f"{text[:400]}"
            ) from None
        tensor = value.tensor
        for layer in converter.layers:
            tensor = layer(tensor)
        values[nodes[position + absorbed].output[0]] = _Value(
            tensor, converter.channels_last, converter.non_negative)
        position += 1 + absorbed
    outputs = []
    for output in graph.output:
        value = values.get(output.name)
        if value is None:
            raise ValueError(f"from_onnx: the graph's output {output.name!r} is not computed "
                             "from its input by the nodes convlens read.")
        if value.channels_last:
            raise ValueError("from_onnx: the graph ends channels first after a Transpose to "
                             "channels first without the Transpose back.")
        outputs.append(value.tensor)
    if chain:  # one operator after another: a Sequential, as from_torch makes
        layers = []
        tensor = outputs[0]
        while tensor.node.inputs:
            layers.insert(0, tensor.layer)
            tensor = tensor.node.inputs[0]
        return Sequential([cl.Input(inputs[0][1])] + layers, name=name or graph.name or None)
    model_inputs = list(model_inputs.values())
    return Model(model_inputs[0] if len(model_inputs) == 1 else model_inputs,
                 outputs[0] if len(outputs) == 1 else outputs, name=name or graph.name or None)
