"""convlens -> PyTorch: ``to_torch(model)`` returns a ``torch.nn.Sequential`` computing ``predict``.

The module takes and returns exactly what ``model.predict`` does (same layout, float32), holds
copies of the weights as ``torch.nn.Parameter``s (a frozen layer's with ``requires_grad=False``)
and comes back in eval mode; ``module.train()`` and any torch optimizer train it, and
``from_torch(module, model.input_shape[1:])`` reads it back into convlens.

Torch's convolutions and pooling work channels first; for a ``channels_last`` layer the module
permutes ``(N, *spatial, C)`` -> ``(N, C, *spatial)`` (a :class:`convlens.io.torch_modules.Permute`)
and does not permute back until a layer needs the channels-last order again (``Dense``,
``Flatten``, ``Reshape``, the output), as the ONNX exporter does. How each layer is written:

* ``Conv1D/2D/3D``: ``Conv1d/2d/3d``, kernel ``(*k, in // groups, out)`` ->
  ``(out, in // groups, *k)``; the zeros of ``same``/``causal`` come from
  :func:`convlens.shapes.padding_amounts`: torch's ``padding=p`` when they are ``p`` on both
  sides, else a ``ConstantPad{1,2,3}d`` before an unpadded convolution;
* ``DepthwiseConv2D``: ``Conv2d(groups=C)``; ``SeparableConv2D``: that, then a 1x1 ``Conv2d``;
* ``Conv2DTranspose``: ``ConvTranspose2d``; Keras's crop of the full output
  (:func:`convlens.shapes.deconv_padding_amounts`) is torch's ``padding``/``output_padding``
  when it can be, else a ``ZeroPad2d`` with negative amounts (a crop) after it;
* ``Dense``: ``Linear`` (kernel transposed); ``Flatten``/``Reshape``: ``Flatten``/``Unflatten``;
* pooling: ``MaxPool``/``AvgPool`` (``count_include_pad=False``, Keras divides by the real
  cells); uneven ``same`` zeros for max pooling are a ``-inf`` ``ConstantPad`` first;
  global pooling is ``AdaptiveAvg/MaxPool(1)``;
* ``BatchNormalization``: ``BatchNorm1d/2d/3d`` (momentum ``1 - momentum``); ``ZeroPadding2D``:
  ``ZeroPad2d``; ``ReLU`` and activations: their ``torch.nn`` modules; ``Dropout``: ``Dropout``
  (``Dropout1d/2d/3d`` for a per-channel ``noise_shape``).

What torch has no module for (uneven ``same`` average pooling, ``exponential``, a ``ReLU`` with a
threshold, a custom activation) is a ``ValueError`` naming the layer.

Example:
    >>> import numpy as np, torch
    >>> from convlens import Sequential, layers
    >>> model = Sequential([layers.Input((8, 8, 1)), layers.Conv2D(2, 3, activation="relu"),
    ...                     layers.Flatten(), layers.Dense(3)])
    >>> net = to_torch(model)
    >>> x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    >>> bool(np.allclose(net(torch.from_numpy(x)).detach().numpy(), model.predict(x, verbose=0),
    ...                  atol=1e-5))
    True
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from convlens.io.torch_import import import_torch, to_channels_first, to_channels_last
from convlens.kinds import kind_of, registered_class, registered_names
from convlens.ops.activations import ALIASES
from convlens.shapes import deconv_padding_amounts, padding_amounts

__all__ = ["load_torch_weights", "to_torch"]


class _Builder:
    """Collects torch modules and tracks the layout of the tensor between them.

    ``moved`` is True when torch holds ``moveaxis(tensor, -1, 1)``: a channels_last tensor kept
    channels first between torch's convolutions.
    """

    def __init__(self, torch, ndim: int):
        from convlens.io import torch_modules

        self.torch, self.nn, self.modules = torch, torch.nn, torch_modules
        self.ndim, self.moved = ndim, False
        self.items: list[tuple[str, object]] = []
        # (convlens variable, torch module, attribute, torch array -> convlens array)
        self.bindings: list[tuple] = []

    def add(self, name: str, module) -> None:
        name = stem = name.replace("/", "_")  # a sub-layer's path
        taken = {existing for existing, _ in self.items}
        count = 0
        while name in taken:
            count += 1
            name = f"{stem}_{count}"
        self.items.append((name, module))

    def logical(self, name: str) -> None:
        if self.moved:
            self.add(f"{name}_to_channels_last",
                     self.modules.Permute(to_channels_last(self.ndim)))
            self.moved = False

    def channels_first(self, name: str, data_format: str) -> None:
        """Bring the tensor to (N, C, *spatial) for a layer with ``data_format``."""
        if data_format == "channels_first":
            self.logical(name)
        elif not self.moved:
            self.add(f"{name}_to_channels_first",
                     self.modules.Permute(to_channels_first(self.ndim)))
            self.moved = True

    def physical_axis(self, axis: int) -> int:
        axis %= self.ndim
        if not self.moved:
            return axis
        return 1 if axis == self.ndim - 1 else axis + 1

    def bind(self, module, attribute: str, variable, layout=None, trainable=True) -> None:
        """Set ``module.attribute`` to ``variable``'s value moved to torch's layout.

        ``layout`` is a pair of functions, convlens array -> torch array and back (default:
        the same array); ``variable`` may be a plain array (a constant with no convlens twin).
        """
        to_torch, from_torch = layout or (_same, _same)
        array = getattr(variable, "value", variable)
        value = self.torch.tensor(np.ascontiguousarray(to_torch(array), dtype=np.float32))
        if attribute.startswith("running_"):  # a buffer, not a parameter
            getattr(module, attribute).copy_(value)
        else:
            setattr(module, attribute, self.nn.Parameter(value, requires_grad=trainable))
        if not isinstance(variable, np.ndarray):
            self.bindings.append((variable, module, attribute, from_torch))


def _same(array):
    return array


def _permutation(*axes):
    """The layout pair of ``np.transpose(array, axes)``."""
    return (lambda array: np.transpose(array, axes),
            lambda array: np.transpose(array, np.argsort(axes)))


def _depthwise_layout(kh, kw, channels, multiplier):
    """(kh, kw, C, m) <-> (C*m, 1, kh, kw): output channel c*m + j, as torch's groups order them."""
    return (lambda array: np.transpose(array.reshape(kh, kw, channels * multiplier),
                                       (2, 0, 1))[:, None],
            lambda array: np.transpose(array[:, 0], (1, 2, 0)).reshape(
                kh, kw, channels, multiplier))


# ----- activations -----------------------------------------------------------------------
_ELEMENTWISE = {
    "relu": "ReLU", "relu6": "ReLU6", "sigmoid": "Sigmoid", "tanh": "Tanh", "elu": "ELU",
    "selu": "SELU", "gelu": "GELU", "silu": "SiLU", "softplus": "Softplus",
    "softsign": "Softsign", "hard_sigmoid": "Hardsigmoid", "hard_silu": "Hardswish",
    "log_sigmoid": "LogSigmoid", "mish": "Mish",
}


def _activation(builder: _Builder, activation, name: str, where: str) -> None:
    """Append ``activation``'s module as ``name`` (nothing for linear)."""
    if activation.is_custom:
        raise ValueError(
            f"{where}: the custom activation {activation.name!r} has no torch module; use a "
            "named activation (relu, gelu, softmax, ...)."
        )
    kind = ALIASES.get(activation.name, activation.name)
    nn = builder.nn
    if kind == "linear":
        return
    if kind in _ELEMENTWISE:
        module = getattr(nn, _ELEMENTWISE[kind])()
    elif kind == "leaky_relu":
        module = nn.LeakyReLU(0.2)  # Keras's default negative_slope
    elif kind in ("softmax", "log_softmax"):
        module = (nn.Softmax if kind == "softmax" else nn.LogSoftmax)(
            dim=builder.physical_axis(-1))
    else:
        raise ValueError(
            f"{where}: the activation {kind!r} has no torch.nn module; to_torch writes "
            f"linear, leaky_relu, softmax, log_softmax, {', '.join(sorted(_ELEMENTWISE))}."
        )
    builder.add(name, module)


# ----- layers ------------------------------------------------------------------------------
def _spatial(layer) -> tuple:
    shape = layer.input_shape
    return tuple(shape[1:-1]) if layer.data_format == "channels_last" else tuple(shape[2:])


def _torch_pads(pairs) -> tuple[int, ...]:
    """torch's pad order: the last axis first, (before, after) each."""
    return tuple(amount for pair in reversed(pairs) for amount in pair)


def _window_pads(layer, kernel, dilation) -> list[tuple[int, int]]:
    return [padding_amounts(n, k, layer.padding, s, d)
            for n, k, s, d in zip(_spatial(layer), kernel, layer.strides, dilation)]


def _conv_module(builder, layer, layout, groups, name) -> None:
    """A Conv{r}d of ``layer``'s kernel (``layout`` makes it (out, in // groups, *k)) and bias
    with Keras's zeros."""
    nn = builder.nn
    weight = layout[0](layer.kernel.value)
    rank = weight.ndim - 2
    pads = _window_pads(layer, layer.kernel_size, layer.dilation_rate)
    symmetric = all(before == after for before, after in pads)
    if not symmetric:
        builder.add(f"{name}_pad", getattr(nn, f"ConstantPad{rank}d")(_torch_pads(pads), 0.0))
    padding = tuple(before for before, _ in pads) if symmetric else 0
    module = getattr(nn, f"Conv{rank}d")(
        weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
        stride=tuple(layer.strides), padding=padding, dilation=tuple(layer.dilation_rate),
        groups=groups, bias=layer.use_bias,
    )
    builder.bind(module, "weight", layer.kernel, layout, layer.trainable)
    if layer.use_bias:
        builder.bind(module, "bias", layer.bias, trainable=layer.trainable)
    builder.add(name, module)


def _conv(builder, layer) -> None:
    rank = len(layer.kernel_size)
    builder.channels_first(layer.name, layer.data_format)
    # (*k, in // groups, out) -> (out, in // groups, *k)
    _conv_module(builder, layer, _permutation(rank + 1, rank, *range(rank)), layer.groups,
                 layer.name)
    _activation(builder, layer.activation, f"{layer.name}_activation", layer.where)


def _depthwise_module(builder, layer) -> None:
    layout = _depthwise_layout(*layer.kernel.shape)
    _conv_module(builder, layer, layout, layer.kernel.shape[2], layer.name)


def _depthwise(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    _depthwise_module(builder, layer)
    _activation(builder, layer.activation, f"{layer.name}_activation", layer.where)


def _separable(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    _depthwise_module(builder, layer.depthwise)
    _conv(builder, layer.pointwise)


def _conv_transpose(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    nn = builder.nn
    crops = []
    for axis, (n, k, s, d) in enumerate(zip(_spatial(layer), layer.kernel_size, layer.strides,
                                            layer.dilation_rate)):
        extra = None if layer.output_padding is None else layer.output_padding[axis]
        crops.append(deconv_padding_amounts(n, k, layer.padding, s, d, extra))
    # torch keeps full[p : full - p + output_padding], output_padding < max(stride, dilation)
    limits = [max(s, d) for s, d in zip(layer.strides, layer.dilation_rate)]
    direct = all(0 <= before - after < limit
                 for (before, after), limit in zip(crops, limits))
    if direct:
        padding = tuple(before for before, _ in crops)
        extra = tuple(before - after for before, after in crops)
        crop = None
    else:  # torch pads nothing; appended cells come from output_padding, the crop after
        padding = 0
        extra = tuple(max(-after, 0) for _, after in crops)
        crop = [(-before, -max(after, 0)) for before, after in crops]
    module = nn.ConvTranspose2d(
        layer.kernel.shape[3], layer.filters, tuple(layer.kernel_size),
        stride=tuple(layer.strides), padding=padding, output_padding=extra,
        dilation=tuple(layer.dilation_rate), bias=layer.use_bias,
    )
    # (kh, kw, out, in) -> (in, out, kh, kw)
    builder.bind(module, "weight", layer.kernel, _permutation(3, 2, 0, 1), layer.trainable)
    if layer.use_bias:
        builder.bind(module, "bias", layer.bias, trainable=layer.trainable)
    builder.add(layer.name, module)
    if crop is not None:
        builder.add(f"{layer.name}_crop", nn.ZeroPad2d(_torch_pads(crop)))
    _activation(builder, layer.activation, f"{layer.name}_activation", layer.where)


def _dense(builder, layer) -> None:
    builder.logical(layer.name)
    module = builder.nn.Linear(layer.kernel.shape[0], layer.units, bias=layer.use_bias)
    builder.bind(module, "weight", layer.kernel, _permutation(1, 0), layer.trainable)
    if layer.use_bias:
        builder.bind(module, "bias", layer.bias, trainable=layer.trainable)
    builder.add(layer.name, module)
    _activation(builder, layer.activation, f"{layer.name}_activation", layer.where)


def _pool(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    nn = builder.nn
    rank = len(layer.pool_size)
    pads = _window_pads(layer, layer.pool_size, (1,) * rank)
    # torch pads both sides alike, by at most half the window
    symmetric = all(before == after <= k // 2
                    for (before, after), k in zip(pads, layer.pool_size))
    padding = tuple(before for before, _ in pads) if symmetric else 0
    if layer.mode == "max":
        if not symmetric:  # a padded cell never wins against -inf
            builder.add(f"{layer.name}_pad", getattr(nn, f"ConstantPad{rank}d")(
                _torch_pads(pads), float("-inf")))
        module = getattr(nn, f"MaxPool{rank}d")(tuple(layer.pool_size),
                                                stride=tuple(layer.strides), padding=padding)
    else:
        if not symmetric:
            raise ValueError(
                f"{layer.where}: 'same' pads this input by {pads} (before, after) per axis; "
                "torch's AvgPool pads both sides alike (at most half the window), so it can't "
                "average the same cells. Use padding='valid' or an input size that pads evenly."
            )
        module = getattr(nn, f"AvgPool{rank}d")(tuple(layer.pool_size),
                                                stride=tuple(layer.strides), padding=padding,
                                                count_include_pad=False)
    builder.add(layer.name, module)


def _global_pool(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    kind = "AdaptiveAvgPool" if layer.mode == "avg" else "AdaptiveMaxPool"
    builder.add(layer.name, getattr(builder.nn, f"{kind}{layer.rank}d")(1))
    if not layer.keepdims:
        builder.add(f"{layer.name}_flatten", builder.nn.Flatten())
        builder.moved = False
        builder.ndim = 2


def _flatten(builder, layer) -> None:
    builder.logical(layer.name)
    if layer.data_format == "channels_first" and builder.ndim > 2:
        # Keras moves the channels last before flattening a channels_first tensor
        builder.add(f"{layer.name}_to_channels_last",
                    builder.modules.Permute(to_channels_last(builder.ndim)))
    builder.add(layer.name, builder.nn.Flatten())
    builder.ndim = 2


def _reshape(builder, layer) -> None:
    builder.logical(layer.name)
    if builder.ndim > 2:
        builder.add(f"{layer.name}_flatten", builder.nn.Flatten())
    if len(layer.target_shape) > 1:
        builder.add(layer.name, builder.nn.Unflatten(1, tuple(layer.target_shape)))
    builder.ndim = len(layer.target_shape) + 1


def _batchnorm(builder, layer) -> None:
    axis = layer.axis % builder.ndim
    if builder.ndim > 2 and axis == builder.ndim - 1:
        builder.channels_first(layer.name, "channels_last")
    elif axis == 1:
        builder.logical(layer.name)
    else:
        raise ValueError(
            f"{layer.where}: axis={layer.axis} on a {builder.ndim}-D input; torch's BatchNorm "
            "normalises axis 1, so to_torch writes axis=1 or the last axis only."
        )
    channels = layer.moving_mean.shape[0]
    rank = max(builder.ndim - 2, 1)
    module = getattr(builder.nn, f"BatchNorm{rank}d")(
        channels, eps=layer.epsilon, momentum=1.0 - layer.momentum)
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    # A missing gamma or beta is a constant 1 or 0 that never trains.
    builder.bind(module, "weight", layer.gamma if layer.scale else ones,
                 trainable=layer.trainable and layer.scale)
    builder.bind(module, "bias", layer.beta if layer.center else zeros,
                 trainable=layer.trainable and layer.center)
    builder.bind(module, "running_mean", layer.moving_mean)
    builder.bind(module, "running_var", layer.moving_variance)
    builder.add(layer.name, module)


def _zero_padding(builder, layer) -> None:
    builder.channels_first(layer.name, layer.data_format)
    builder.add(layer.name, builder.nn.ZeroPad2d(_torch_pads(layer.padding)))


def _relu(builder, layer) -> None:
    nn = builder.nn
    if layer.threshold != 0 or (layer.negative_slope and layer.max_value is not None):
        raise ValueError(
            f"{layer.where}: ReLU(max_value={layer.max_value}, negative_slope="
            f"{layer.negative_slope}, threshold={layer.threshold}) has no torch.nn module; "
            "to_torch writes a threshold of 0 with either a max_value or a negative_slope."
        )
    if layer.negative_slope:
        module = nn.LeakyReLU(layer.negative_slope)
    elif layer.max_value is None:
        module = nn.ReLU()
    elif layer.max_value == 6.0:
        module = nn.ReLU6()
    else:
        module = nn.Hardtanh(0.0, layer.max_value)
    builder.add(layer.name, module)


def _activation_layer(builder, layer) -> None:
    _activation(builder, layer.activation, layer.name, layer.where)


def _dropout(builder, layer) -> None:
    nn = builder.nn
    noise = layer.noise_shape
    if noise is None or all(d is None or d == n for d, n in zip(noise, layer.input_shape)):
        builder.add(layer.name, nn.Dropout(layer.rate))
        return
    ndim = len(noise)
    rank = ndim - 2
    if 1 <= rank <= 3 and all(d == 1 for d in noise[2:]):
        builder.logical(layer.name)  # one draw per (sample, channel) of a channels_first map
    elif 1 <= rank <= 3 and all(d == 1 for d in noise[1:-1]):
        builder.channels_first(layer.name, "channels_last")
    else:
        raise ValueError(
            f"{layer.where}: noise_shape={noise} has no torch module; to_torch writes None or "
            "one draw per channel (torch's Dropout1d/2d/3d)."
        )
    builder.add(layer.name, getattr(nn, f"Dropout{rank}d")(layer.rate))


def _layer_scale(builder, layer) -> None:
    builder.logical(layer.name)  # its factors run along the last axis
    module = builder.modules.ChannelScale(layer.projection_dim)
    builder.bind(module, "weight", layer.gamma, trainable=layer.trainable)
    builder.add(layer.name, module)


def _pass_through(builder, layer) -> None:
    builder.add(layer.name, builder.nn.Identity())  # StochasticDepth at inference


# Handlers by the ``torch`` rule name of each layer's registered kind (convlens.kinds).
WRITERS = {
    "conv": _conv, "depthwise": _depthwise, "separable": _separable,
    "transpose": _conv_transpose, "dense": _dense, "pool": _pool, "global_pool": _global_pool,
    "flatten": _flatten, "reshape": _reshape, "batchnorm": _batchnorm,
    "zero_padding": _zero_padding, "relu": _relu, "activation": _activation_layer,
    "dropout": _dropout, "layer_scale": _layer_scale, "identity": _pass_through,
}


def to_torch(model):
    """A torch module (eval mode) computing ``model.predict`` with copies of its weights.

    Args:
        model: a built convlens ``Sequential``, or a Functional ``Model``.

    Returns:
        For a Sequential, a ``torch.nn.Sequential``; for a Functional model, a
        :class:`convlens.io.torch_modules.Graph` taking the inputs in ``model.inputs`` order.
        Either takes what ``predict`` takes (same layout, float32 tensors, any batch size) and
        returns what it returns, within float32 rounding. Its modules are named after the
        layers; a frozen layer's parameters have ``requires_grad=False``.

    Raises:
        ValueError: a layer or setting that torch has no module for, naming the layer.
    """
    module, _ = _build(model)
    return module


def _build(model):
    """``(torch module, bindings)`` for ``model``; see :func:`to_torch`."""
    torch = import_torch("convlens.io.to_torch")
    if not getattr(model, "built", False) or getattr(model, "input_shape", None) is None:
        raise ValueError(
            f"Model '{getattr(model, 'name', model)}' isn't built, so its input shape is "
            "unknown. Build it first: model.build((None, ...)) or start it with Input(...)."
        )
    if hasattr(model, "add"):  # a Sequential: one chain of torch modules
        builder = _Builder(torch, len(model.input_shape))
        for index, layer in enumerate(model.layers):
            _writer(layer, index)(builder, layer)
        builder.logical("output")
        module, bindings = torch.nn.Sequential(OrderedDict(builder.items)), builder.bindings
    elif hasattr(model, "graph"):
        module, bindings = _build_graph(torch, model)
    else:
        raise TypeError(f"to_torch expects a convlens model; received {type(model).__name__}.")
    if not getattr(model, "trainable", True):
        module.requires_grad_(False)
    return module.eval(), bindings


def _writer(layer, index: int):
    writer = WRITERS.get(kind_of(layer).torch)
    if writer is None:
        convertible = [name for name in registered_names()
                       if kind_of(registered_class(name)).torch in (*WRITERS, *_MERGES)]
        raise ValueError(
            f"to_torch: layer {index} '{layer.name}' ({type(layer).__name__}) has no torch "
            f"form in convlens. Convertible layers: {', '.join(convertible)}."
        )
    return writer


_MERGES = ("merge", "concatenate", "operation")  # a torch_modules class of their own


def _build_graph(torch, model):
    """A :class:`convlens.io.torch_modules.Graph`: one submodule per layer (run in the
    layer's own layout, permuted in and out), called in the graph's order."""
    from convlens.io import torch_modules

    graph = model.graph
    slots = {id(tensor): index for index, tensor in enumerate(graph.inputs)}
    layers, steps, bindings = {}, [], []
    for node in graph.nodes:
        layer = node.layer
        kind = kind_of(layer).torch
        if layer.name not in layers:
            if kind == "operation":
                layers[layer.name] = torch_modules.Arithmetic(
                    "negative" if layer.arity == 1 else layer.operation, layer.arguments)
            elif kind in _MERGES:
                operation = "concatenate" if kind == "concatenate" else kind_of(
                    layer).keras_class.lower()
                layers[layer.name] = torch_modules.Merge(operation, getattr(layer, "axis", None))
            else:
                writer = _writer(layer, len(layers))
                builder = _Builder(torch, len(node.inputs[0].shape))
                writer(builder, layer)
                builder.logical(layer.name)
                layers[layer.name] = torch.nn.Sequential(OrderedDict(builder.items))
                bindings += builder.bindings
        elif kind not in _MERGES and len({len(n.inputs[0].shape) for n in graph.nodes_of(
                layer)}) > 1:
            raise ValueError(f"to_torch: layer '{layer.name}' is called on inputs of different "
                             "ranks; a shared layer converts when its calls look alike.")
        steps.append((layer.name, [slots[id(t)] for t in node.inputs], len(slots)))
        slots[id(node.outputs[0])] = len(slots)
    outputs = [slots[id(tensor)] for tensor in graph.outputs]
    return torch_modules.Graph(layers, steps, outputs, len(graph.inputs)), bindings


def load_torch_weights(model, module) -> None:
    """Copy the weights of ``module`` -- made by ``to_torch(model)`` and trained since, or
    wrapped in ``DistributedDataParallel`` -- back into ``model``.

    The keys and shapes of ``module.state_dict()`` are checked against what ``to_torch(model)``
    writes before any weight changes; BatchNorm's running statistics come back too.
    """
    torch = import_torch("convlens.io.load_torch_weights")
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        module = module.module
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"load_torch_weights expects the torch.nn.Module to_torch made; "
                        f"received {type(module).__name__}.")
    reference, bindings = _build(model)
    names = {id(child): name for name, child in reference.named_modules()}
    state = module.state_dict()
    arrays = []
    for variable, child, attribute, from_torch in bindings:
        key = f"{names[id(child)]}.{attribute}"
        if key not in state:
            raise ValueError(
                f"The torch module has no '{key}' for '{variable.path}': it is not what "
                f"to_torch(model) writes for model '{model.name}'."
            )
        array = from_torch(state[key].detach().cpu().numpy())
        if array.shape != variable.shape:
            raise ValueError(f"'{key}' holds shape {array.shape} for '{variable.path}' of "
                             f"shape {variable.shape}.")
        arrays.append((variable, array))
    for variable, array in arrays:
        variable.assign(array)
