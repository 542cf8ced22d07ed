"""convlens -> ONNX: ``export_onnx(model, filepath)`` writes a Sequential as an ONNX graph.

The graph takes and returns exactly what ``model.predict`` does (same layout, float32, any
batch size: the batch axis is the symbolic dimension ``batch``). ONNX convolution and pooling
operators work channels first (``(N, C, H, W)``); for a ``channels_last`` layer the exporter
transposes NHWC -> NCHW before the operator and does not transpose back until a layer needs the
channels-last order again (``Dense``, ``Flatten``, ``Reshape``, the graph output), so a stack
of convolutions, activations and pooling costs one ``Transpose`` at each end. Layers that work
per value (activations, ``Dropout``) run in whichever layout the tensor is in; ``softmax`` and
``BatchNormalization`` pick the axis that holds the channels.

How each layer is written:

* ``Conv1D/2D/3D``, ``DepthwiseConv2D`` (``group = C_in``), ``SeparableConv2D`` (depthwise then
  1x1): ``Conv`` with kernel ``(*k, in // g, out)`` -> ``(out, in // g, *k)`` and explicit
  ``pads`` from the layer's window record (:class:`convlens.shapes.Window`; ``same`` puts the
  odd zero at the end, ``causal`` pads ``span - 1`` at the start);
* ``Conv2DTranspose``: ``ConvTranspose``, kernel ``(kh, kw, out, in)`` -> ``(in, out, kh, kw)``,
  the crop in its window record as ``pads`` (appended zeros as
  ``output_padding``);
* ``Dense``: ``Gemm`` (2-D input) or ``MatMul`` + ``Add``;
* pooling: ``MaxPool`` / ``AveragePool`` (``count_include_pad=0``: Keras divides by the real
  cells) / ``GlobalAveragePool`` / ``GlobalMaxPool``;
* ``BatchNormalization``: the ``BatchNormalization`` operator on its moving statistics;
* ``Flatten``, ``Reshape``, ``ZeroPadding2D`` (``Pad``), ``ReLU`` and every named activation
  (``gelu`` as ``0.5 x (1 + erf(x / sqrt 2))``, ``silu`` as ``x sigmoid(x)``, ...);
  ``Dropout`` is the identity at inference.

Anything else -- a layer type or a custom activation function -- is a ``ValueError`` naming the
layer. ``onnx`` is an optional dependency (``pip install convlens[onnx]``), imported only here;
the file is checked with ``onnx.checker`` and written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from convlens.fileio import atomic_write
from convlens.kinds import kind_of, registered_class, registered_names
from convlens.ops.activations import SELU_ALPHA, SELU_SCALE
from convlens.ops.normalization import KERAS_EPSILON

__all__ = ["export_onnx", "export", "DEFAULT_OPSET"]

#: The opset written by default: recent enough for every operator here, read by all current
#: runtimes. Any opset from 13 (single-axis Softmax, Pad/Clip with tensor inputs) works.
DEFAULT_OPSET = 17
MIN_OPSET = 13


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "Exporting to ONNX needs the `onnx` package: pip install 'convlens[onnx]' "
            "(or pip install onnx)."
        ) from None
    return onnx


class _Value:
    """A graph tensor and how its axes relate to the convlens tensor it stands for.

    ``moved`` is True when the graph holds ``moveaxis(tensor, -1, 1)``: a channels_last tensor
    kept in the channels-first order ONNX's convolutions produce.
    """

    def __init__(self, name: str, ndim: int, moved: bool = False):
        self.name, self.ndim, self.moved = name, ndim, moved


class _GraphBuilder:
    def __init__(self, onnx, opset: int):
        self.onnx = onnx
        self.opset = opset
        self.helper = onnx.helper
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, array, stem: str) -> str:
        name = self.fresh(stem)
        array = np.asarray(array)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attributes) -> str:
        output = self.fresh(stem or op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    # ----- layouts -----------------------------------------------------------------------
    def logical(self, value: _Value) -> _Value:
        """The tensor in convlens's own axis order."""
        if not value.moved:
            return value
        perm = [0, *range(2, value.ndim), 1]  # (N, C, *spatial) -> (N, *spatial, C)
        return _Value(self.node("Transpose", [value.name], perm=perm), value.ndim)

    def channels_first(self, value: _Value, data_format: str) -> str:
        """The tensor as (N, C, *spatial) for a layer with ``data_format``."""
        if data_format == "channels_first":
            return self.logical(value).name
        if value.moved:
            return value.name
        perm = [0, value.ndim - 1, *range(1, value.ndim - 1)]  # (N, *spatial, C) -> (N, C, ...)
        return self.node("Transpose", [value.name], perm=perm)

    def physical_axis(self, value: _Value, axis: int) -> int:
        axis %= value.ndim
        if not value.moved:
            return axis
        return 1 if axis == value.ndim - 1 else (axis + 1 if axis >= 1 else 0)


# ----- activations -----------------------------------------------------------------------
def _activation(graph: _GraphBuilder, activation, value: _Value, where: str) -> _Value:
    if getattr(activation, "_fn", None) is not None:
        raise ValueError(
            f"{where}: the custom activation {activation.name!r} has no ONNX form; use a named "
            "activation (relu, gelu, softmax, ...)."
        )
    name = {"swish": "silu", "hard_swish": "hard_silu"}.get(activation.name, activation.name)
    x = value.name

    def scalar(number):
        return graph.constant(np.float32(number), "c")

    if name == "linear":
        return value
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
              "softsign": "Softsign", "exponential": "Exp"}
    if name in simple:
        y = graph.node(simple[name], [x])
    elif name in ("softmax", "log_softmax"):
        op = "Softmax" if name == "softmax" else "LogSoftmax"
        y = graph.node(op, [x], axis=graph.physical_axis(value, -1))
    elif name == "relu6":
        y = graph.node("Clip", [x, scalar(0.0), scalar(6.0)])
    elif name == "leaky_relu":
        y = graph.node("LeakyRelu", [x], alpha=0.2)
    elif name == "elu":
        y = graph.node("Elu", [x], alpha=1.0)
    elif name == "selu":
        y = graph.node("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    elif name == "gelu":  # exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
        erf = graph.node("Erf", [graph.node("Mul", [x, scalar(math.sqrt(0.5))])])
        half_x = graph.node("Mul", [x, scalar(0.5)])
        y = graph.node("Mul", [half_x, graph.node("Add", [erf, scalar(1.0)])])
    elif name == "hard_sigmoid":  # relu6(x + 3) / 6
        y = graph.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    elif name == "hard_silu":
        y = graph.node("Mul", [x, graph.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])
    elif name == "silu":
        y = graph.node("Mul", [x, graph.node("Sigmoid", [x])])
    elif name == "log_sigmoid":  # -softplus(-x)
        y = graph.node("Neg", [graph.node("Softplus", [graph.node("Neg", [x])])])
    elif name == "mish":
        y = graph.node("Mul", [x, graph.node("Tanh", [graph.node("Softplus", [x])])])
    else:
        raise ValueError(f"{where}: the activation {name!r} has no ONNX form in convlens yet.")
    return _Value(y, value.ndim, value.moved)


# ----- layers ------------------------------------------------------------------------------
def _conv_pads(layer) -> tuple[list[int], dict]:
    """ONNX ``pads`` (all begins, then all ends) for a conv/pool layer, or auto_pad."""
    pairs = layer.window.padding
    if None in pairs:  # 'same' on a size that is not fixed
        return [], {"auto_pad": "SAME_UPPER"}  # Keras's 'same': the odd zero at the end
    return [p[0] for p in pairs] + [p[1] for p in pairs], {}


def _conv(graph, layer, value, kernel, bias, groups, activation=True) -> _Value:
    """``kernel`` in ONNX layout (out, in // groups, *k)."""
    x = graph.channels_first(value, layer.data_format)
    pads, auto = _conv_pads(layer)
    inputs = [x, graph.constant(kernel, f"{layer.name}/kernel")]
    if bias is not None:
        inputs.append(graph.constant(bias, f"{layer.name}/bias"))
    attributes = {"pads": pads} if pads else auto
    y = graph.node("Conv", inputs, stem=layer.name, kernel_shape=list(layer.kernel_size),
                   strides=list(layer.strides), dilations=list(layer.dilation_rate),
                   group=groups, **attributes)
    out = _Value(y, value.ndim, moved=layer.data_format == "channels_last")
    return _activation(graph, layer.activation, out, layer.where) if activation else out


def _export_conv(graph, layer, value):
    rank = len(layer.kernel_size)
    kernel = layer.kernel.value  # (*k, in // groups, out) -> (out, in // groups, *k)
    kernel = np.transpose(kernel, (rank + 1, rank, *range(rank)))
    bias = layer.bias.value if layer.use_bias else None
    return _conv(graph, layer, value, kernel, bias, layer.groups)


def _export_depthwise(graph, layer, value, activation=True):
    *taps, channels, multiplier = layer.kernel.shape
    # (*k, C, m) -> (*k, C*m): output channel c*m + j -> (C*m, 1, *k)
    kernel = layer.kernel.value.reshape(*taps, channels * multiplier)
    kernel = np.moveaxis(kernel, -1, 0)[:, None]
    bias = layer.bias.value if layer.use_bias else None
    return _conv(graph, layer, value, kernel, bias, channels, activation)


def _export_separable(graph, layer, value):
    middle = _export_depthwise(graph, layer.depthwise, value)
    return _export_conv(graph, layer.pointwise, middle)


def _export_conv_transpose(graph, layer, value):
    x = graph.channels_first(value, layer.data_format)
    begins, ends, extra = [], [], []
    for before, after in layer.window.padding:  # the crop of the full output
        begins.append(before)
        ends.append(max(after, 0))
        extra.append(max(-after, 0))  # a negative crop appends zeros: ONNX's output_padding
    rank = len(layer.kernel_size)  # (*k, out, in) -> (in, out, *k)
    kernel = np.transpose(layer.kernel.value, (rank + 1, rank, *range(rank)))
    inputs = [x, graph.constant(kernel, f"{layer.name}/kernel")]
    if layer.use_bias:
        inputs.append(graph.constant(layer.bias.value, f"{layer.name}/bias"))
    y = graph.node("ConvTranspose", inputs, stem=layer.name,
                   kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                   dilations=list(layer.dilation_rate), pads=begins + ends,
                   output_padding=extra)
    out = _Value(y, value.ndim, moved=layer.data_format == "channels_last")
    return _activation(graph, layer.activation, out, layer.where)


def _export_dense(graph, layer, value):
    x = graph.logical(value)
    kernel = graph.constant(layer.kernel.value, f"{layer.name}/kernel")
    bias = graph.constant(layer.bias.value, f"{layer.name}/bias") if layer.use_bias else None
    if x.ndim == 2:
        y = graph.node("Gemm", [x.name, kernel] + ([bias] if bias else []), stem=layer.name)
    else:
        y = graph.node("MatMul", [x.name, kernel], stem=layer.name)
        if bias:
            y = graph.node("Add", [y, bias])
    return _activation(graph, layer.activation, _Value(y, x.ndim), layer.where)


def _export_pool(graph, layer, value):
    x = graph.channels_first(value, layer.data_format)
    pads, auto = _conv_pads(layer)
    attributes = {"pads": pads} if pads else auto
    if layer.mode == "max":
        half = len(pads) // 2
        if any(pads):
            # 'same' padding as an explicit Pad with -inf (a padded cell never wins): the same
            # maths, and onnx's reference evaluator (1.23) ignores the pads of stride-1 MaxPool.
            width = [0, 0, *pads[:half], 0, 0, *pads[half:]]
            x = graph.node("Pad", [x, graph.constant(np.array(width), f"{layer.name}/pads"),
                                   graph.constant(np.float32(-np.inf), "minus_inf")],
                           mode="constant")
            attributes = {}
        y = graph.node("MaxPool", [x], stem=layer.name, kernel_shape=list(layer.pool_size),
                       strides=list(layer.strides), **attributes)
    else:
        y = graph.node("AveragePool", [x], stem=layer.name, kernel_shape=list(layer.pool_size),
                       strides=list(layer.strides), count_include_pad=0, **attributes)
    return _Value(y, value.ndim, moved=layer.data_format == "channels_last")


def _export_global_pool(graph, layer, value):
    x = graph.channels_first(value, layer.data_format)
    if layer.mode == "avg":
        y = graph.node("GlobalAveragePool", [x], stem=layer.name)  # (N, C, 1, ..., 1)
    else:
        # ReduceMax, not GlobalMaxPool: the same maths, and onnx's reference evaluator
        # (1.23) reduces the wrong axes of GlobalMaxPool unless there are two spatial axes.
        axes = list(range(2, value.ndim))
        if graph.opset >= 18:  # axes became an input in opset 18
            y = graph.node("ReduceMax", [x, graph.constant(np.array(axes), "axes")],
                           stem=layer.name, keepdims=1)
        else:
            y = graph.node("ReduceMax", [x], stem=layer.name, axes=axes, keepdims=1)
    if layer.keepdims:
        return _Value(y, value.ndim, moved=layer.data_format == "channels_last")
    return _Value(graph.node("Flatten", [y], axis=1), 2)


def _export_flatten(graph, layer, value):
    x = graph.logical(value)
    name = x.name
    if layer.data_format == "channels_first" and x.ndim > 2:
        name = graph.node("Transpose", [name], perm=[0, *range(2, x.ndim), 1])
    return _Value(graph.node("Flatten", [name], stem=layer.name, axis=1), 2)


def _export_reshape(graph, layer, value):
    x = graph.logical(value)
    shape = graph.constant(np.array([0, *layer.target_shape], np.int64), f"{layer.name}/shape")
    y = graph.node("Reshape", [x.name, shape], stem=layer.name)  # 0: keep the batch size
    return _Value(y, len(layer.target_shape) + 1)


def _export_batchnorm(graph, layer, value):
    channels = layer.moving_mean.shape[0]
    gamma = layer.gamma.value if layer.scale else np.ones(channels, np.float32)
    beta = layer.beta.value if layer.center else np.zeros(channels, np.float32)
    mean, variance = layer.moving_mean.value, layer.moving_variance.value
    axis = graph.physical_axis(value, layer.axis)
    # Before opset 14 the operator has a momentum attribute (default 0.9) that onnx's
    # reference evaluator takes as "training": those opsets get the affine map below.
    if axis == 1 and graph.opset >= 14:
        inputs = [value.name] + [graph.constant(a, f"{layer.name}/{n}") for a, n in (
            (gamma, "gamma"), (beta, "beta"), (mean, "moving_mean"),
            (variance, "moving_variance"))]
        y = graph.node("BatchNormalization", inputs, stem=layer.name, epsilon=layer.epsilon)
        return _Value(y, value.ndim, value.moved)
    # the same per-channel affine map, y = x * scale + shift, on any feature axis
    scale = gamma / np.sqrt(variance + np.float32(layer.epsilon))
    shift = beta - mean * scale
    shape = [1] * value.ndim
    shape[axis] = channels
    y = graph.node("Mul", [value.name, graph.constant(scale.reshape(shape), f"{layer.name}/s")])
    y = graph.node("Add", [y, graph.constant(shift.reshape(shape), f"{layer.name}/b")])
    return _Value(y, value.ndim, value.moved)


def _export_crop(graph, layer, value):
    x = graph.logical(value)
    widths = layer.crop_width()  # per convlens axis
    axes = [axis for axis, pair in enumerate(widths) if any(pair)]
    starts = [widths[a][0] for a in axes]
    ends = [layer.input_shape[a] - widths[a][1] for a in axes]
    inputs = [x.name] + [graph.constant(np.array(v, np.int64), f"{layer.name}/{n}")
                         for v, n in ((starts, "starts"), (ends, "ends"), (axes, "axes"))]
    return _Value(graph.node("Slice", inputs, stem=layer.name), x.ndim)


def _export_upsampling(graph, layer, value):
    x = graph.logical(value)
    scales = [1.0] * x.ndim
    for axis, factor in zip(layer.spatial_axes, layer.size):
        scales[axis] = float(factor)
    if getattr(layer, "interpolation", "nearest") == "nearest":  # output o reads floor(o / f)
        modes = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    else:  # bilinear with half-pixel centres, clamped at the edges
        modes = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    scales = graph.constant(np.array(scales, np.float32), f"{layer.name}/scales")
    y = graph.node("Resize", [x.name, "", scales], stem=layer.name, **modes)
    return _Value(y, x.ndim)


def _export_permute(graph, layer, value):
    x = graph.logical(value)
    return _Value(graph.node("Transpose", [x.name], stem=layer.name, perm=[0, *layer.dims]),
                  x.ndim)


def _export_rescaling(graph, layer, value):
    x = graph.logical(value)
    y = graph.node("Mul", [x.name, graph.constant(np.asarray(layer.scale, np.float32), "scale")])
    y = graph.node("Add", [y, graph.constant(np.asarray(layer.offset, np.float32), "offset")],
                   stem=layer.name)
    return _Value(y, x.ndim)


def _export_normalization(graph, layer, value):
    x = graph.logical(value)
    mean, variance = layer.statistics((1, *layer.input_shape[1:]))
    std = np.maximum(np.sqrt(variance), np.float32(KERAS_EPSILON))
    if layer.invert:
        y = graph.node("Mul", [x.name, graph.constant(std, f"{layer.name}/std")])
        y = graph.node("Add", [y, graph.constant(mean, f"{layer.name}/mean")], stem=layer.name)
    else:
        y = graph.node("Sub", [x.name, graph.constant(mean, f"{layer.name}/mean")])
        y = graph.node("Div", [y, graph.constant(std, f"{layer.name}/std")], stem=layer.name)
    return _Value(y, x.ndim)


def _export_leaky_relu(graph, layer, value):
    y = graph.node("LeakyRelu", [value.name], stem=layer.name, alpha=layer.negative_slope)
    return _Value(y, value.ndim, value.moved)


def _export_elu(graph, layer, value):
    return _Value(graph.node("Elu", [value.name], stem=layer.name, alpha=layer.alpha),
                  value.ndim, value.moved)


def _export_prelu(graph, layer, value):
    x = graph.logical(value)
    slope = graph.constant(layer.alpha.value[None], f"{layer.name}/alpha")  # (1, *sample)
    return _Value(graph.node("PRelu", [x.name, slope], stem=layer.name), x.ndim)


def _export_softmax(graph, layer, value):
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if len(axes) != 1:
        raise ValueError(f"{layer.where}: a softmax over several axes ({layer.axis}) has no "
                         "ONNX form in convlens yet.")
    y = graph.node("Softmax", [value.name], stem=layer.name,
                   axis=graph.physical_axis(value, axes[0]))
    return _Value(y, value.ndim, value.moved)


def _reduce_mean(graph, x: str, axes: list[int]) -> str:
    if graph.opset >= 18:  # axes became an input in opset 18
        return graph.node("ReduceMean", [x, graph.constant(np.array(axes), "axes")], keepdims=1)
    return graph.node("ReduceMean", [x], axes=axes, keepdims=1)


def _standardized(graph, x: str, axes: list[int], epsilon: float) -> str:
    """``(x - mean) / sqrt(variance + epsilon)`` over ``axes`` (biased variance)."""
    centred = graph.node("Sub", [x, _reduce_mean(graph, x, axes)])
    variance = _reduce_mean(graph, graph.node("Mul", [centred, centred]), axes)
    spread = graph.node("Add", [variance, graph.constant(np.float32(epsilon), "epsilon")])
    return graph.node("Div", [centred, graph.node("Sqrt", [spread])])


def _scaled(graph, layer, y: str, shape: list[int]) -> str:
    """``y * gamma + beta``, each broadcast as ``shape`` (the layers without one skip it)."""
    if layer.gamma is not None:
        y = graph.node("Mul", [y, graph.constant(layer.gamma.value.reshape(shape),
                                                 f"{layer.name}/gamma")])
    if layer.beta is not None:
        y = graph.node("Add", [y, graph.constant(layer.beta.value.reshape(shape),
                                                 f"{layer.name}/beta")])
    return y


def _export_layer_norm(graph, layer, value):
    x = graph.logical(value)
    axes = sorted(a % x.ndim for a in layer.axes)
    shape = [layer.input_shape[a] if a in axes else 1 for a in range(x.ndim)]
    y = _scaled(graph, layer, _standardized(graph, x.name, axes, layer.epsilon), shape)
    return _Value(y, x.ndim)


def _export_group_norm(graph, layer, value):
    x = graph.logical(value)
    axis = layer.axis % x.ndim
    sizes = [0] + [-1 if d is None else d for d in layer.input_shape[1:]]  # 0: the batch size
    channels = sizes[axis]
    # (N, ..., C, ...) -> (N, ..., G, C/G, ...): statistics over all but N and G
    grouped = [*sizes[:axis], layer.groups, channels // layer.groups, *sizes[axis + 1:]]
    split = graph.node("Reshape", [x.name, graph.constant(np.array(grouped), "shape")])
    axes = [a for a in range(1, len(grouped)) if a != axis]
    y = graph.node("Reshape", [_standardized(graph, split, axes, layer.epsilon),
                               graph.constant(np.array(sizes), "shape")])
    shape = [channels if a == axis else 1 for a in range(x.ndim)]
    return _Value(_scaled(graph, layer, y, shape), x.ndim)


def _export_zero_padding(graph, layer, value):
    pairs = layer.pad_width()  # per convlens axis
    if value.moved:
        pairs = [pairs[0], pairs[-1], *pairs[1:-1]]
    pads = graph.constant(np.array([p[0] for p in pairs] + [p[1] for p in pairs], np.int64),
                          f"{layer.name}/pads")
    y = graph.node("Pad", [value.name, pads], stem=layer.name, mode="constant")
    return _Value(y, value.ndim, value.moved)


def _export_relu(graph, layer, value):
    x = value.name
    if layer.threshold == 0 and layer.negative_slope == 0:
        y = graph.node("Relu", [x], stem=layer.name)
    elif layer.threshold == 0:
        y = graph.node("LeakyRelu", [x], stem=layer.name, alpha=layer.negative_slope)
    else:  # x > threshold: x, else negative_slope * (x - threshold) (0 at the threshold)
        threshold = graph.constant(np.float32(layer.threshold), "threshold")
        above = graph.node("Greater", [x, threshold])
        shifted = graph.node("Sub", [x, threshold])
        sloped = graph.node("Mul", [shifted, graph.constant(np.float32(layer.negative_slope),
                                                            "slope")])
        y = graph.node("Where", [above, x, sloped], stem=layer.name)
    if layer.max_value is not None:
        y = graph.node("Min", [y, graph.constant(np.float32(layer.max_value), "max_value")])
    return _Value(y, value.ndim, value.moved)


def _export_activation(graph, layer, value):
    return _activation(graph, layer.activation, value, layer.where)


def _export_pass_through(graph, layer, value):
    return value  # Dropout at inference, Identity


# Elementwise merges: ONNX's variadic Sum/Max/Min/Mean, binary Sub, and Mul folded left.
_MERGE_OPS = {"Add": "Sum", "Maximum": "Max", "Minimum": "Min", "Average": "Mean"}


def _export_merge(graph, layer, values):
    names = [graph.logical(v).name for v in values]  # every input in convlens's axis order
    kind = type(layer).__name__
    if kind in _MERGE_OPS:
        y = graph.node(_MERGE_OPS[kind], names, stem=layer.name)
    elif kind == "Subtract":
        y = graph.node("Sub", names, stem=layer.name)
    else:  # Multiply
        y = names[0]
        for name in names[1:]:
            y = graph.node("Mul", [y, name], stem=layer.name)
    return _Value(y, values[0].ndim)


# Tensor arithmetic (x + 3, x * y, -x): the constants become scalar initializers.
_ARITHMETIC_OPS = {"add": "Add", "subtract": "Sub", "multiply": "Mul", "divide": "Div"}


def _export_operation(graph, layer, values):
    values = values if isinstance(values, list) else [values]
    tensors = iter(graph.logical(v).name for v in values)
    names = [next(tensors) if a is None else graph.constant(np.float32(a), "c")
             for a in layer.arguments]
    op = "Neg" if layer.arity == 1 else _ARITHMETIC_OPS[layer.operation]
    return _Value(graph.node(op, names, stem=layer.name), max(v.ndim for v in values))


def _export_layer_scale(graph, layer, value):
    gamma = graph.constant(layer.gamma.value, "gamma")  # (C,) broadcasts on the last axis
    return _Value(graph.node("Mul", [graph.logical(value).name, gamma], stem=layer.name),
                  value.ndim)


def _export_concatenate(graph, layer, values):
    names = [graph.logical(v).name for v in values]
    axis = layer.axis % values[0].ndim
    return _Value(graph.node("Concat", names, stem=layer.name, axis=axis), values[0].ndim)


# The ``onnx`` rule of a layer kind (``convlens.kinds``) -> the function that writes its nodes.
def _emit(graph: _GraphBuilder, model, inputs: list[_Value]) -> list[_Value]:
    """Add the nodes of ``model``'s layers reading ``inputs``; return its output values. A
    model nested as a layer is inlined: its layers' nodes, once per call."""
    values = {id(t): v for t, v in zip(model.inputs, inputs)}
    for node in model.graph.nodes:  # a graph: each node reads the values of its tensors
        index = model.layers.index(node.layer)
        given = [values[id(t)] for t in node.inputs]
        exporter = _exporter(node.layer, index)
        values[id(node.outputs[0])] = exporter(graph, node.layer,
                                               given if node.list_input else given[0])
    return [values[id(t)] for t in model.outputs]


def _export_model(graph, layer, value):
    return _emit(graph, layer, value if isinstance(value, list) else [value])[0]


EXPORTERS = {
    "conv": _export_conv, "depthwise": _export_depthwise, "separable": _export_separable,
    "transpose": _export_conv_transpose, "dense": _export_dense, "pool": _export_pool,
    "global_pool": _export_global_pool, "flatten": _export_flatten, "reshape": _export_reshape,
    "batchnorm": _export_batchnorm, "zero_padding": _export_zero_padding, "relu": _export_relu,
    "activation": _export_activation, "dropout": _export_pass_through,
    "identity": _export_pass_through, "merge": _export_merge, "concatenate": _export_concatenate,
    "crop": _export_crop, "upsampling": _export_upsampling, "permute": _export_permute,
    "rescaling": _export_rescaling, "normalization": _export_normalization,
    "leaky_relu": _export_leaky_relu, "elu": _export_elu, "prelu": _export_prelu,
    "softmax": _export_softmax, "layer_norm": _export_layer_norm, "group_norm": _export_group_norm,
    "model": _export_model, "operation": _export_operation, "layer_scale": _export_layer_scale,
}


def _tensor_info(helper, onnx, name: str, shape) -> object:
    dims = ["batch" if axis == 0 else (f"dim_{axis}" if d is None else int(d))
            for axis, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)


def _exporter(layer, index: int):
    exporter = EXPORTERS.get(kind_of(layer).onnx)
    if exporter is None:
        exportable = sorted(name for name in registered_names()
                            if kind_of(registered_class(name)).onnx in EXPORTERS)
        raise ValueError(
            f"Cannot export layer {index} '{layer.name}' ({type(layer).__name__}) to ONNX: "
            f"convlens has no ONNX form for it. Exportable layers: {', '.join(exportable)}."
        )
    return exporter


def to_onnx(model, opset_version: int | None = None):
    """The ``onnx.ModelProto`` for ``model`` (a built ``Sequential`` or functional ``Model``),
    checked."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset_version is None else opset_version
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"`opset_version` must be an int from {MIN_OPSET} to {newest} (the newest this onnx "
            f"package knows); received opset_version={opset_version!r}."
        )
    if not getattr(model, "built", False) or model.input_shape is None:
        raise ValueError(
            f"Model '{getattr(model, 'name', model)}' isn't built, so its input shape is unknown. "
            "Build it first: model.build((None, ...)) or start it with Input(...)."
        )
    graph = _GraphBuilder(onnx, opset)
    input_names = [t.name for t in model.inputs]
    input_shapes = [t.shape for t in model.inputs]
    output_shapes = [t.shape for t in model.outputs]
    outputs = _emit(graph, model, [_Value(n, len(s)) for n, s in zip(input_names, input_shapes)])
    output_names = [f"output_{i}" for i in range(len(outputs))]
    for value, output_name in zip(outputs, output_names):
        graph.nodes.append(graph.helper.make_node("Identity", [graph.logical(value).name],
                                                  [output_name], name=output_name))
    proto_graph = graph.helper.make_graph(
        graph.nodes, model.name,
        [_tensor_info(graph.helper, onnx, n, s) for n, s in zip(input_names, input_shapes)],
        [_tensor_info(graph.helper, onnx, n, s) for n, s in zip(output_names, output_shapes)],
        initializer=graph.initializers,
    )
    from convlens import __version__

    opset_id = graph.helper.make_opsetid("", opset)
    proto = graph.helper.make_model(proto_graph, opset_imports=[opset_id],
                                    producer_name="convlens", producer_version=__version__)
    proto.ir_version = graph.helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model, filepath, verbose=None, input_signature=None, opset_version=None,
                **kwargs) -> None:
    """Write ``model`` to ``filepath`` as an ONNX file (signature of Keras's ``export_onnx``).

    Args:
        model: a built convlens ``Sequential``.
        filepath: where to write (conventionally ``.onnx``); written atomically.
        verbose: print where the file went when True.
        input_signature: must be None: the model's own input shape is used, with a
            symbolic batch axis.
        opset_version: the ONNX opset (default ``DEFAULT_OPSET`` = 17; 13 or newer).

    Raises:
        ValueError: a layer or activation without an ONNX form, naming it.
        ImportError: the ``onnx`` package is not installed.

    Example:
        >>> import tempfile, os
        >>> from convlens import Sequential, layers
        >>> model = Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3), layers.Flatten()])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        >>> export_onnx(model, path)
        >>> import onnx; [n.op_type for n in onnx.load(path).graph.node]
        ['Transpose', 'Conv', 'Transpose', 'Flatten', 'Identity']
    """
    if kwargs:
        raise TypeError(f"export_onnx got unexpected keyword arguments: {sorted(kwargs)}.")
    if input_signature is not None:
        raise ValueError(
            "convlens exports with the model's own input shape (batch axis symbolic); "
            f"pass input_signature=None. Received input_signature={input_signature!r}."
        )
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"`filepath` must be a str or path; received {type(filepath).__name__}.")
    proto = to_onnx(model, opset_version)
    atomic_write(filepath, proto.SerializeToString())
    if verbose:
        print(f"Saved ONNX model to {Path(filepath)}")


def export(model, filepath, format="tf_saved_model", verbose=None, input_signature=None,
           **kwargs) -> None:
    """``model.export(filepath, format="onnx")`` as in Keras 3; convlens writes ONNX only."""
    if format != "onnx":
        raise ValueError(
            f"convlens can export format='onnx' only; received format={format!r}"
            + (" (Keras's default, a TensorFlow SavedModel)" if format == "tf_saved_model"
               else "") + ". Call model.export(filepath, format='onnx')."
        )
    export_onnx(model, filepath, verbose=verbose, input_signature=input_signature, **kwargs)
