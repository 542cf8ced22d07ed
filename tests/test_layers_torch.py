"""Layers, in channels_last and channels_first, against torch.nn.functional on random arguments.

The reference pads as Keras does, worked out here independently of ``convlens.shapes``:
``same`` pads ``max((ceil(n/s) - 1)*s + span - n, 0)`` with the odd pixel at the end,
``causal`` pads ``span - 1`` at the start. Values must agree within 1e-5 relative (plus
1e-5 of the largest reference value, the float32 rounding of a long sum).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlens.layers as cl

torch = pytest.importorskip("torch")
F = torch.nn.functional
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONV = {1: (cl.Conv1D, F.conv1d), 2: (cl.Conv2D, F.conv2d), 3: (cl.Conv3D, F.conv3d)}
POOL = {("max", 1): (cl.MaxPooling1D, F.max_pool1d), ("max", 2): (cl.MaxPooling2D, F.max_pool2d),
        ("average", 1): (cl.AveragePooling1D, F.avg_pool1d),
        ("average", 2): (cl.AveragePooling2D, F.avg_pool2d)}


def keras_padding(length: int, kernel: int, stride: int, dilation: int, padding: str):
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        return (0, 0)
    if padding == "causal":
        return (span - 1, 0)
    total = max((math.ceil(length / stride) - 1) * stride + span - length, 0)
    return (total // 2, total - total // 2)


def torch_pad(t, pairs, value=0.0):
    """Pad the spatial axes of a channels_first tensor; F.pad lists the last axis first."""
    return F.pad(t, [v for pair in reversed(pairs) for v in pair], value=value)


def to_torch(x: np.ndarray, data_format: str):
    """A layer's input as a channels_first torch tensor."""
    return torch.from_numpy(x if data_format == "channels_first" else np.moveaxis(x, -1, 1).copy())


def from_torch(t, data_format: str) -> np.ndarray:
    y = t.numpy()
    return y if data_format == "channels_first" else np.moveaxis(y, 1, -1)


def random_input(draw, spatial, channels, data_format):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    shape = (draw(st.integers(1, 3)), *spatial, channels)
    if data_format == "channels_first":
        shape = (shape[0], channels, *spatial)
    return rng.standard_normal(shape).astype(np.float32)


def assert_close(ours: np.ndarray, reference: np.ndarray):
    assert ours.shape == reference.shape and ours.dtype == np.float32
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5 * scale)


@st.composite
def conv_cases(draw):
    rank = draw(st.integers(1, 3))
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    paddings = ["valid", "same"] + (["causal"] if rank == 1 and data_format == "channels_last"
                                    else [])
    padding = draw(st.sampled_from(paddings))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if draw(st.booleans()):
        strides, dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank)), (1,) * rank
    else:
        strides, dilation = (1,) * rank, tuple(draw(st.integers(1, 3)) for _ in range(rank))
    groups = draw(st.sampled_from([1, 1, 2]))
    channels, filters = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 6 - rank))
                    for k, d in zip(kernel, dilation))
    layer = CONV[rank][0](filters, kernel, strides=strides, padding=padding,
                          data_format=data_format, dilation_rate=dilation, groups=groups,
                          activation=draw(st.sampled_from([None, "relu"])),
                          bias_initializer="random_normal")
    return layer, random_input(draw, spatial, channels, data_format)


@SETTINGS
@given(conv_cases())
def test_conv_layers_equal_torch(case):
    layer, x = case
    y = layer(x)
    rank, fmt = layer.rank, layer.data_format
    t = to_torch(x, fmt)
    pads = [keras_padding(n, k, s, d, layer.padding) for n, k, s, d in
            zip(t.shape[2:], layer.kernel_size, layer.strides, layer.dilation_rate)]
    # Keras kernel (*k, in // groups, filters) -> torch weight (filters, in // groups, *k)
    weight = torch.from_numpy(np.ascontiguousarray(
        layer.kernel.numpy().transpose(rank + 1, rank, *range(rank))))
    reference = CONV[rank][1](torch_pad(t, pads), weight, torch.from_numpy(layer.bias.numpy()),
                              stride=layer.strides, dilation=layer.dilation_rate,
                              groups=layer.groups)
    if not layer.activation.is_linear:
        reference = torch.relu(reference)
    assert_close(y, from_torch(reference, fmt))


@st.composite
def transpose_cases(draw):
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    layer = cl.Conv2DTranspose(draw(st.integers(1, 3)), kernel, strides=strides,
                               padding=draw(st.sampled_from(["valid", "same"])),
                               output_padding=output_padding, data_format=data_format)
    spatial = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return layer, random_input(draw, spatial, draw(st.integers(1, 3)), data_format)


@SETTINGS
@given(transpose_cases())
def test_conv2d_transpose_equals_torch(case):
    from keras.src.backend.common.backend_utils import (
        compute_conv_transpose_output_crops_for_torch,
    )

    layer, x = case
    t = to_torch(x, layer.data_format)
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((t.shape[1], layer.filters, *layer.kernel_size), np.float32)
    bias = rng.standard_normal(layer.filters, np.float32)
    full = F.conv_transpose2d(t, torch.from_numpy(weight), stride=layer.strides)
    # Keras's own window of the full result (JAX's padding; a negative crop adds zeros).
    crops = compute_conv_transpose_output_crops_for_torch(
        t.shape, (*layer.kernel_size, layer.filters, t.shape[1]), layer.strides, layer.padding,
        layer.output_padding, (1, 1))
    if any(full.shape[2 + axis] - before - after < 1 for axis, (before, after) in
           enumerate(crops)):  # 'same' + output_padding can crop everything away
        with pytest.raises(ValueError, match=r"output would be empty: output size = .* = 0"):
            layer(x)
        return
    reference = torch_pad(full, [(-before, -after) for before, after in crops])
    reference = reference + torch.from_numpy(bias).reshape(1, -1, 1, 1)
    layer.build_from_shape((None, *x.shape[1:]))
    # torch (in, filters, kh, kw) -> Keras kernel (kh, kw, filters, in)
    layer.set_weights([weight.transpose(2, 3, 1, 0), bias])
    assert_close(layer(x), from_torch(reference, layer.data_format))


@st.composite
def pool_cases(draw):
    mode, rank = draw(st.sampled_from(["max", "average"])), draw(st.integers(1, 2))
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    pool = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * rank)))
    layer = POOL[mode, rank][0](pool, strides=strides, data_format=data_format,
                                padding=draw(st.sampled_from(["valid", "same"])))
    spatial = tuple(draw(st.integers(k, k + 5)) for k in pool)
    return layer, random_input(draw, spatial, draw(st.integers(1, 4)), data_format)


@SETTINGS
@given(pool_cases())
def test_pooling_layers_equal_torch(case):
    layer, x = case
    y = layer(x)
    t = to_torch(x, layer.data_format)
    pads = [keras_padding(n, k, s, 1, layer.padding)
            for n, k, s in zip(t.shape[2:], layer.pool_size, layer.strides)]
    torch_pool = POOL[layer.mode, layer.rank][1]
    if layer.mode == "max":
        reference = torch_pool(torch_pad(t, pads, float("-inf")), layer.pool_size, layer.strides)
    else:  # Keras averages over the cells inside the input only
        ones = torch.ones((1, 1, *t.shape[2:]))
        reference = (torch_pool(torch_pad(t, pads), layer.pool_size, layer.strides)
                     / torch_pool(torch_pad(ones, pads), layer.pool_size, layer.strides))
    assert_close(y, from_torch(reference, layer.data_format))
