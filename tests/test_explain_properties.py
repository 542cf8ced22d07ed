"""Property tests: explanation numbers against the model, over random architectures.

* output shapes, parameter counts: equal to the layers';
* MACs: equal to a naive loop that computes the layer's output product by product;
* receptive fields: equal to a brute-force measurement (one-hot inputs, all-ones kernels);
* traces: equal to the forward pass.
"""

import itertools

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convlens.explain import explain_model, layer_cost, receptive_fields, trace
from convlens.layers import (
    AveragePooling2D,
    Conv1D,
    Conv2D,
    Conv3D,
    Dense,
    DepthwiseConv2D,
    Flatten,
    Input,
    MaxPooling2D,
)
from convlens.models import Sequential
from convlens.shapes import padding_amounts

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def spatial_layer(draw, channels):
    kind = draw(st.sampled_from(["conv", "conv", "depthwise", "maxpool", "avgpool"]))
    padding = draw(st.sampled_from(["valid", "same"]))
    if kind in ("maxpool", "avgpool"):
        cls = MaxPooling2D if kind == "maxpool" else AveragePooling2D
        return cls(draw(st.integers(1, 3)), strides=draw(st.integers(1, 2)), padding=padding)
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = draw(st.integers(1, 2))
    dilation = 1 if strides > 1 else draw(st.integers(1, 2))
    activation = draw(st.sampled_from([None, "relu", "tanh"]))
    if kind == "depthwise":
        return DepthwiseConv2D(kernel, strides=strides, padding=padding, dilation_rate=dilation,
                               depth_multiplier=draw(st.integers(1, 2)), activation=activation)
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if channels % g == 0]))
    filters = groups * draw(st.integers(1, 3))
    return Conv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation,
                  groups=groups, activation=activation)


@st.composite
def random_model(draw, dense=True):
    height, width = draw(st.integers(5, 10)), draw(st.integers(5, 10))
    channels = draw(st.integers(1, 4))
    layers = [Input((height, width, channels))]
    shape = (None, height, width, channels)
    for _ in range(draw(st.integers(1, 3))):
        layer = draw(spatial_layer(shape[-1]))
        try:
            shape = layer.build_from_shape(shape)
        except ValueError:
            assume(False)
        layers.append(layer)
    if dense and draw(st.booleans()):
        layers += [Flatten(), Dense(draw(st.integers(1, 5)),
                                    activation=draw(st.sampled_from([None, "softmax"])))]
    return Sequential(layers)


def naive_conv(x, kernel, strides, pads, dilation, groups):
    """Product-by-product convolution of one channels_last sample; returns (output, count)."""
    xp = np.pad(x, (*pads, (0, 0)))
    k_spatial, per_group, filters = kernel.shape[:-2], kernel.shape[-2], kernel.shape[-1]
    per_filter_group = filters // groups
    out_spatial = [
        (n - (k - 1) * d - 1) // s + 1
        for n, k, s, d in zip(xp.shape[:-1], k_spatial, strides, dilation)
    ]
    y = np.zeros((*out_spatial, filters))
    count = 0
    for o in itertools.product(*(range(n) for n in out_spatial)):
        for f in range(filters):
            group = f // per_filter_group
            for tap in itertools.product(*(range(k) for k in k_spatial)):
                at = tuple(oi * s + t * d for oi, s, t, d in zip(o, strides, tap, dilation))
                for c in range(per_group):
                    y[(*o, f)] += xp[(*at, group * per_group + c)] * kernel[(*tap, c, f)]
                    count += 1
    return y, count


def naive_macs_and_output(layer, x):
    spatial = x.shape[:-1]
    pads = [padding_amounts(n, k, layer.padding, s, d) for n, k, s, d in
            zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]
    if isinstance(layer, DepthwiseConv2D):
        kh, kw, c, m = layer.kernel.shape
        kernel, groups = layer.kernel.value.reshape(kh, kw, 1, c * m), c
    else:
        kernel, groups = layer.kernel.value, layer.groups
    return naive_conv(x, kernel, layer.strides, pads, layer.dilation_rate, groups)


@SETTINGS
@given(random_model())
def test_shapes_params_and_macs_equal_the_model(model):
    exp = explain_model(model)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    for layer, section in zip(model.layers, exp.layers):
        assert section.output_shape == layer.output_shape
        assert section.params == layer.count_params()
        assert f"{layer.count_params():,}" in str(section)
        spatial_steps = [s for s in section.shape_steps if s["axis"] in ("row", "col")]
        if spatial_steps:
            assert [s["output"] for s in spatial_steps] == list(layer.output_shape[1:3])
        if isinstance(layer, (Conv2D, DepthwiseConv2D)):
            y, count = naive_macs_and_output(layer, x[0])
            assert section.macs == count
            z = layer.call(x)
            if layer.activation.is_linear:
                bias = layer.bias.value if layer.use_bias else 0
                np.testing.assert_allclose(y + bias, z[0], atol=1e-4)
        elif isinstance(layer, Dense):
            assert section.macs == layer.kernel.size
        x = layer.call(x)
    assert exp.total_params == model.count_params()


def _ones_model(model):
    for layer in model.layers:
        weights = [np.ones(w.shape, np.float32) if w.name in ("kernel",) else
                   np.zeros(w.shape, np.float32) for w in layer.weights]
        layer.set_weights(weights)


@SETTINGS
@given(random_model(dense=False))
def test_receptive_field_equals_brute_force(model):
    _ones_model(model)
    _, height, width, channels = model.input_shape
    # Sample p has a one at pixel p on every channel; all kernels are ones, biases zero.
    x = np.zeros((height * width, height, width, channels), np.float32)
    for p, (r, c) in enumerate(itertools.product(range(height), range(width))):
        x[p, r, c, :] = 1
    fields = receptive_fields(model)
    for layer, rf in zip(model.layers, fields):
        x = layer.call(x)
        seen = (x > 0).any(axis=-1)  # (pixels, out_h, out_w)
        for o in itertools.product(range(x.shape[1]), range(x.shape[2])):
            pixels = np.flatnonzero(seen[(slice(None), *o)])
            rows, cols = pixels // width, pixels % width
            assert pixels.size > 0
            for axis, coords, n in ((0, rows, height), (1, cols, width)):
                lo, hi = rf.bounds(o[axis], axis)
                assert lo - 1e-9 <= coords.min() and coords.max() <= hi + 1e-9
                if lo >= 0 and hi <= n - 1:
                    assert (coords.min(), coords.max()) == (lo, hi)


@SETTINGS
@given(random_model(), st.data())
def test_traces_equal_the_forward_pass(model, data):
    traceable = [i for i, layer in enumerate(model.layers) if not isinstance(layer, Flatten)]
    position = data.draw(st.sampled_from(traceable))
    layer = model.layers[position]
    index = tuple(data.draw(st.integers(0, n - 1)) for n in layer.output_shape[1:])
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    x = rng.standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    result = trace(model, position, index, x)
    assert result.matches, (result.value, result.forward_value)
    if result.kind in ("conv", "depthwise"):
        assert np.isclose(result.partial_sums.sum() + (result.bias or 0),
                          result.pre_activation)


@SETTINGS
@given(st.sampled_from([Conv1D, Conv3D]), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.integers(1, 2), st.integers(0, 1000))
def test_traces_of_1d_and_3d_and_channels_first(cls, kernel, padding, stride, seed):
    rank = 1 if cls is Conv1D else 3
    shape = (7,) * rank + (2,)
    model = Sequential([Input(shape), cls(4, kernel, strides=stride, padding=padding,
                                          groups=2, activation="relu")])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, *shape)).astype(np.float32)
    out = model.layers[0].output_shape[1:]
    index = tuple(int(rng.integers(0, n)) for n in out)
    assert trace(model, 0, index, x).matches
    first = Sequential([Input((3, 6, 6)), Conv2D(4, 3, padding=padding, strides=stride,
                                                  data_format="channels_first"),
                        MaxPooling2D(2, data_format="channels_first", padding="same")])
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    for position in (0, 1):
        out = first.layers[position].output_shape[1:]
        index = tuple(int(rng.integers(0, n)) for n in out)
        result = trace(first, position, index, x)
        assert result.matches and result.axis_names[0] == "channel"
    assert layer_cost(first.layers[0]).macs > 0
