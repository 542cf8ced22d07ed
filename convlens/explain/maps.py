"""What a network makes of one input, as arrays: every layer's output maps, and one filter's
per-channel maps -- the seed question's answer as numbers.

``layer_outputs(model, x)`` runs the model once (inference) and keeps each layer's output.
``filter_maps(model, layer, filter, x)`` splits one conv filter's output map into the maps
its kernel slices make, one per input channel: the partial map of channel ``c`` is input
channel ``c`` convolved with ``kernel[..., c, filter]`` alone. Summed over the channels,
plus the bias, they are the layer's pre-activation map (checked against the layer's own
convolution); keeping them apart instead is what ``DepthwiseConv2D(depth_multiplier=filters)``
does, which is why the layer has ``filters`` maps, not ``channels * filters``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FilterMaps", "filter_maps", "layer_outputs"]


def layer_outputs(model, x) -> list[np.ndarray]:
    """Each layer's output for the batch ``x`` (inference mode), in ``model.layers`` order.

    A chain runs layer after layer; a graph (``model.graph``) runs node after node in its run
    order, and a layer called several times gives its first call's output. An ``InputLayer``
    of a graph outputs the model input it stands for. A model with several inputs takes a
    list (or dict) of arrays, as ``predict`` does.
    """
    graph = getattr(model, "graph", None)
    if graph is None:
        values = model.check_input(x)
        outputs = []
        for layer in model.layers:
            values = layer.call(values, training=False)
            outputs.append(values)
        return outputs
    arrays = model.check_input(x)
    arrays = arrays if isinstance(arrays, list) else [arrays]
    tensors = {id(t): a for t, a in zip(model.inputs, arrays)}  # symbolic tensor -> its array
    first = {id(t.layer): a for t, a in zip(model.inputs, arrays)}  # layer -> first output
    for node in graph.nodes:
        given = [tensors[id(t)] for t in node.inputs]
        output = node.layer.call(given if node.list_input else given[0], training=False)
        tensors[id(node.outputs[0])] = output
        first.setdefault(id(node.layer), output)
    return [first[id(layer)] for layer in model.layers]


@dataclass
class FilterMaps:
    """One conv filter's output for one sample, split by the input channel it came from.

    Arrays are channels_last without the batch axis: ``channel_maps`` is
    ``(*output_spatial, channels)`` (channel ``k`` is input channel ``input_channels[k]``),
    ``pre_activation`` and ``output`` are ``(*output_spatial)``.
    """

    layer_index: int
    layer_name: str
    filter: int
    input_channels: list
    kernel: np.ndarray  # (*kernel_size, channels): this filter's slices
    channel_maps: np.ndarray
    bias: float | None
    pre_activation: np.ndarray
    output: np.ndarray
    activation: str
    max_abs_diff: float  # |sum of channel maps + bias - the layer's own pre-activation|
    # per spatial axis, per output coordinate: the input coordinates its window reads
    # (outside [0, n) where the window lies on zero padding)
    positions: list

    @property
    def matches(self) -> bool:
        scale = max(1.0, float(np.max(np.abs(self.pre_activation), initial=0.0)))
        return self.max_abs_diff <= 1e-5 * scale


def filter_maps(model, layer, filter: int, x) -> FilterMaps:
    """Split output channel ``filter`` of conv ``layer`` (index or name) for the sample ``x``
    (a batch of one) into its per-input-channel maps; see the module docstring."""
    from convlens.explain.derivation import resolve_layer_index
    from convlens.layers import Conv
    from convlens.ops.conv import conv_forward

    position = resolve_layer_index(model, layer)
    target = model.layers[position]
    if not isinstance(target, Conv):
        raise ValueError(f"filter maps are made by Conv1D/2D/3D layers; layer {position} "
                         f"'{target.name}' is a {type(target).__name__}.")
    if isinstance(filter, bool) or not isinstance(filter, (int, np.integer)) or not (
            0 <= filter < target.filters):
        raise ValueError(f"`filter` must be an integer in [0, {target.filters - 1}] for layer "
                         f"'{target.name}' ({target.filters} filters); received {filter!r}.")
    values = model.layer_input(target, x)  # what the layer reads, in a chain or a graph
    if values.shape[0] != 1:
        raise ValueError(f"filter_maps takes one sample (a batch of one); received a batch of "
                         f"{values.shape[0]}.")
    output = target.geometry.to_last(target.call(values, training=False))[0, ..., filter]
    h = target.geometry.to_last(values)  # (1, *spatial, C_in)
    per_group = target.kernel.value.shape[-2]
    first = (filter // (target.filters // target.groups)) * per_group
    channels = list(range(first, first + per_group))
    kernel = target.kernel.value[..., filter]  # (*k, per_group)
    pads = target.window.pads_for(h.shape[1:-1])
    # One group per channel, one filter per group: group c convolves channel c with slice c.
    maps, _ = conv_forward(np.ascontiguousarray(h[..., first:first + per_group]),
                           kernel[..., None, :], None, target.strides, pads,
                           target.dilation_rate, per_group)  # (1, *out, per_group)
    bias = float(target.bias.value[filter]) if target.use_bias else None
    pre = maps[0].sum(axis=-1, dtype=np.float64).astype(np.float32) + np.float32(bias or 0.0)
    whole, _ = conv_forward(h, target.kernel.value, None if bias is None else target.bias.value,
                            target.strides, pads, target.dilation_rate, target.groups)
    diff = float(np.max(np.abs(pre - whole[0, ..., filter]), initial=0.0))
    positions = [
        [[o * stride - before + tap * dilation for tap in range(size)] for o in range(count)]
        for count, size, stride, dilation, (before, _) in zip(
            maps.shape[1:-1], target.kernel_size, target.strides, target.dilation_rate, pads)
    ]
    return FilterMaps(
        layer_index=position, layer_name=target.name, filter=int(filter),
        input_channels=channels, kernel=kernel, channel_maps=maps[0], bias=bias,
        pre_activation=pre, output=output, activation=target.activation.name,
        max_abs_diff=diff, positions=positions,
    )
