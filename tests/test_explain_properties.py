"""Property tests: explanation numbers against the model, over random architectures.

* output shapes, parameter counts: equal to the layers';
* MACs: equal to a naive loop that computes the layer's output product by product;
* receptive fields: equal to a brute-force measurement (one-hot inputs, all-ones kernels);
* traces: equal to the forward pass.
"""

import itertools
import math
import re

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convlens.explain import explain_model, layer_cost, receptive_fields, trace
from convlens.layers import (
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Cropping2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Input,
    MaxPooling2D,
    ReLU,
    Reshape,
    SeparableConv2D,
    UpSampling2D,
    ZeroPadding2D,
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
def other_spatial_layer(draw, channels, traceable=False):
    """Layers that trace() does not take apart but receptive fields and formulas cover
    (``traceable``: only those a trace can pass, so no UpSampling2D, which may be bilinear)."""
    kinds = ["transpose", "separable", "zeropad", "batchnorm", "crop"]
    kind = draw(st.sampled_from(kinds if traceable else [*kinds, "upsample"]))
    if kind == "crop":
        return Cropping2D(((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                           (draw(st.integers(0, 2)), draw(st.integers(0, 2)))))
    if kind == "upsample":
        return UpSampling2D((draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                            interpolation=draw(st.sampled_from(["nearest", "bilinear"])))
    if kind == "zeropad":
        return ZeroPadding2D(((draw(st.integers(0, 2)), draw(st.integers(0, 2))),
                              (draw(st.integers(0, 2)), draw(st.integers(0, 2)))))
    if kind == "batchnorm":
        return BatchNormalization()
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    strides = draw(st.integers(1, 2))
    dilation = 1 if strides > 1 else draw(st.integers(1, 2))
    common = dict(strides=strides, padding=padding, dilation_rate=dilation,
                  activation=draw(st.sampled_from([None, "relu", "tanh"])),
                  use_bias=draw(st.booleans()))
    if kind == "separable":
        return SeparableConv2D(draw(st.integers(1, 3)), kernel,
                               depth_multiplier=draw(st.integers(1, 2)), **common)
    output_padding = None
    if strides > 1 and draw(st.booleans()):
        output_padding = draw(st.integers(0, strides - 1))
    return Conv2DTranspose(draw(st.integers(1, 3)), kernel, output_padding=output_padding,
                           **common)


@st.composite
def random_model(draw, dense=True, others=False, traceable=False):
    height, width = draw(st.integers(5, 10)), draw(st.integers(5, 10))
    channels = draw(st.integers(1, 4))
    layers = [Input((height, width, channels))]
    shape = (None, height, width, channels)
    for _ in range(draw(st.integers(1, 3))):
        if others and draw(st.booleans()):
            layer = draw(other_spatial_layer(shape[-1], traceable))
        else:
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
@given(random_model(others=True))
def test_shapes_params_and_macs_equal_the_model(model):
    exp = explain_model(model)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    for layer, section in zip(model.layers, exp.layers):
        assert section.output_shape == layer.output_shape
        assert section.params == layer.count_params()
        assert f"{layer.count_params():,}" in str(section)
        # The parameter count as a product of the weight shapes, evaluated.
        if layer.weights:
            left, right = section.params_formula.split(", of which")[0].rsplit(" = ", 1)
            assert eval(left, {"__builtins__": {}}) == int(right.replace(",", ""))  # noqa: S307
            assert int(right.replace(",", "")) == layer.count_params()
        assert section.memory_bytes == 4 * math.prod(layer.output_shape[1:])
        if isinstance(layer, BatchNormalization):
            assert section.macs == math.prod(layer.output_shape[1:])  # one per value
        elif section.macs:
            left, right = section.macs_formula.rsplit(" = ", 1)
            assert right == f"{section.macs:,}"
            # The product before "=" with its words removed gives the same number.
            factors = re.sub(r"[a-z]+", "", left.split(" = ")[0])
            assert eval(factors, {"__builtins__": {}}) == section.macs  # noqa: S307
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


ONES = ("kernel", "depthwise_kernel", "pointwise_kernel", "gamma", "moving_variance")


def _ones_model(model):
    """Kernels of ones, no bias, batch normalization as the identity (up to epsilon)."""
    for layer in model.layers:
        weights = [np.ones(w.shape, np.float32) if w.name in ONES else
                   np.zeros(w.shape, np.float32) for w in layer.weights]
        layer.set_weights(weights)


@SETTINGS
@given(random_model(dense=False, others=True))
def test_receptive_field_equals_brute_force(model):
    _ones_model(model)
    _, height, width, channels = model.input_shape
    # Sample p has a one at pixel p on every channel; all kernels are ones, biases zero.
    x = np.zeros((height * width, height, width, channels), np.float32)
    for p, (r, c) in enumerate(itertools.product(range(height), range(width))):
        x[p, r, c, :] = 1
    fields = receptive_fields(model)
    jump_before = (1, 1)
    transposed = False  # after a transposed conv the bounds are a hull (the field has holes)
    for layer, rf in zip(model.layers, fields):
        x = layer.call(x)
        # A transposed conv or an upsampling: its field is a hull of fractional bounds. After a
        # crop, a later layer's padding lies over cropped-away pixels, inside the image: the
        # field stays a bound but need not be tight there.
        is_transpose = isinstance(layer, (Conv2DTranspose, UpSampling2D, Cropping2D))
        exact = not transposed and (not is_transpose or jump_before == (1, 1))
        transposed = transposed or is_transpose
        jump_before = rf.jump
        seen = (x > 0).any(axis=-1)  # (pixels, out_h, out_w)
        assert seen.any()
        for o in itertools.product(range(x.shape[1]), range(x.shape[2])):
            pixels = np.flatnonzero(seen[(slice(None), *o)])
            if pixels.size == 0:
                continue  # zero padding, or a transposed conv's stride gap: sees no pixel
            rows, cols = pixels // width, pixels % width
            for axis, coords, n in ((0, rows, height), (1, cols, width)):
                lo, hi = rf.bounds(o[axis], axis)
                assert lo - 1e-9 <= coords.min() and coords.max() <= hi + 1e-9
                if exact and lo >= 0 and hi <= n - 1:
                    # Inside the image the field is exactly the whole pixels between the bounds.
                    bounds = (math.ceil(lo - 1e-9), math.floor(hi + 1e-9))  # 1/3 + 2/3 < 1
                    assert (coords.min(), coords.max()) == bounds


@st.composite
def traceable_model(draw):
    """A random conv stack (transposed and separable too), value-by-value layers between it
    and a random head."""
    model = draw(random_model(dense=False, others=True, traceable=True))
    layers = [Input(model.input_shape[1:])]
    for layer in model.layers:
        layers.append(layer)
        extra = draw(st.sampled_from([None, None, "batchnorm", "relu", "tanh", "zeropad",
                                      "dropout"]))
        if extra == "batchnorm":
            norm = BatchNormalization(center=draw(st.booleans()), scale=draw(st.booleans()))
            layers.append(norm)
        elif extra in ("relu", "tanh"):
            layers.append(ReLU(negative_slope=0.1, max_value=2.0) if extra == "relu"
                          else Activation("tanh"))
        elif extra == "zeropad":
            layers.append(ZeroPadding2D(draw(st.integers(0, 1))))
        elif extra == "dropout":
            layers.append(Dropout(0.5))
    head = draw(st.sampled_from(["flatten", "global", "reshape", "none"]))
    if head == "global":
        layers.append(draw(st.sampled_from([GlobalAveragePooling2D, GlobalMaxPooling2D]))(
            keepdims=draw(st.booleans())))
    elif head == "reshape":
        layers.append(Reshape((-1,)))
    if head != "none":
        layers += [Flatten(), Dense(draw(st.integers(1, 5))),
                   Activation(draw(st.sampled_from(["softmax", "sigmoid", "linear"])))]
    built = Sequential(layers)
    for layer in built.layers:
        if isinstance(layer, BatchNormalization):  # statistics other than the initial 0 and 1
            rng = np.random.default_rng(draw(st.integers(0, 100)))
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32)
                               if "variance" in w.name or w.name == "gamma"
                               else rng.standard_normal(w.shape).astype(np.float32)
                               for w in layer.weights])
    return built


@SETTINGS
@given(traceable_model(), st.data())
def test_traces_equal_the_forward_pass(model, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    x = rng.standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    for position, layer in enumerate(model.layers):  # every layer kind the models contain
        index = tuple(data.draw(st.integers(0, n - 1)) for n in layer.output_shape[1:])
        result = trace(model, position, index, x)
        assert result.matches, (layer.name, result.value, result.forward_value)
        assert f"{result.forward_value:.7g}" in str(result)
        if result.kind in ("conv", "depthwise", "separable", "transpose"):
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


@st.composite
def separable_or_transpose(draw):
    """One SeparableConv2D or Conv2DTranspose with random arguments, data format and input."""
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if max(strides) > 1 else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    common = dict(strides=strides, padding=draw(st.sampled_from(["valid", "same"])),
                  dilation_rate=dilation, data_format=data_format,
                  activation=draw(st.sampled_from([None, "relu", "softmax"])),
                  use_bias=draw(st.booleans()))
    if draw(st.booleans()):
        layer = SeparableConv2D(draw(st.integers(1, 4)), kernel,
                                depth_multiplier=draw(st.integers(1, 3)), **common)
    else:
        output_padding = None
        if draw(st.booleans()):
            output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
        layer = Conv2DTranspose(draw(st.integers(1, 4)), kernel, output_padding=output_padding,
                                **common)
    spatial = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    channels = draw(st.integers(1, 3))
    shape = (channels, *spatial) if data_format == "channels_first" else (*spatial, channels)
    try:
        layer.build_from_shape((None, *shape))
    except ValueError:
        assume(False)
    model = Sequential([Input(shape), layer])
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])
    return model, rng.standard_normal((1, *shape)).astype(np.float32)


def _reaching_inputs(layer, output_position) -> set:
    """Brute force: input positions whose one-hot input reaches ``output_position`` through a
    copy of ``layer`` with a kernel of ones and no bias (channels_last, spatial only)."""
    config = {**layer.get_config(), "name": "ones_copy", "use_bias": False, "activation": None,
              "data_format": "channels_last"}
    ones = Conv2DTranspose.from_config(config)
    *spatial, channels = layer.geometry.to_last(np.zeros((1, *layer.input_shape[1:]))).shape[1:]
    ones.build_from_shape((None, *spatial, channels))
    ones.set_weights([np.ones(ones.kernel.shape, np.float32)])
    positions = list(itertools.product(*(range(n) for n in spatial)))
    x = np.zeros((len(positions), *spatial, channels), np.float32)
    for p, position in enumerate(positions):
        x[(p, *position)] = 1
    reached = ones.call(x)[(slice(None), *output_position, 0)] > 0
    return {position for position, hit in zip(positions, reached) if hit}


@SETTINGS
@given(separable_or_transpose(), st.data())
def test_traces_of_separable_and_transpose_equal_the_forward_pass(model_and_x, data):
    model, x = model_and_x
    layer = model.layers[0]
    index = tuple(data.draw(st.integers(0, n - 1)) for n in layer.output_shape[1:])
    result = trace(model, 0, index, x)
    assert result.matches, (layer.get_config(), index, result.value, result.forward_value)
    assert np.isclose(result.partial_sums.sum() + (result.bias or 0), result.pre_activation)
    text = str(result)
    assert f"{result.forward_value:.7g}" in text and "matches: yes" in text
    first = layer.data_format == "channels_first"
    spatial_index, channel = (index[1:], index[0]) if first else (index[:-1], index[-1])
    if isinstance(layer, SeparableConv2D):
        # The depthwise stage, per input channel, is the layer's own depthwise output there.
        middle = layer.depthwise.geometry.to_last(layer.depthwise.call(x))[(0, *spatial_index)]
        np.testing.assert_allclose(result.depthwise_values.reshape(-1), middle, rtol=1e-4,
                                   atol=1e-4)
        assert result.pointwise_weights.reshape(-1).tolist() == (
            layer.pointwise.kernel.value[0, 0, :, channel].tolist())
    else:
        found = {c["position"] for c in result.contributors}
        assert len(found) == len(result.contributors)  # each position once, with its one tap
        assert found == _reaching_inputs(layer, spatial_index)
        for contributor in result.contributors:
            assert f"{contributor['position']}" in text or len(result.contributors) * len(
                result.input_channels) > 32  # the table shows the first 32 products


def _evaluate(formula: str) -> tuple[int, int]:
    """``'floor((26 + 2*0 - 2*(3-1) - 1) / 2) + 1 = 11'`` -> (computed left side, 11)."""
    left, right = formula.rsplit(" = ", 1)
    names = {"floor": math.floor, "ceil": math.ceil, "max": max, "__builtins__": {}}
    return eval(left, names), int(right)  # noqa: S307 - our own arithmetic, digits only


SPATIAL_AXES = ("row", "col")


@SETTINGS
@given(random_model(dense=False, others=True))
def test_size_arithmetic_evaluates_to_the_output_size_in_the_issue_forms(model):
    for layer, section in zip(model.layers, explain_model(model).layers):
        steps = [s for s in section.shape_steps if s["axis"] in SPATIAL_AXES]
        if isinstance(layer, (BatchNormalization,)):
            assert steps == []
            continue
        assert [s["output"] for s in steps] == list(layer.output_shape[1:3])
        for axis, step in enumerate(steps):
            computed, stated = _evaluate(step["formula"])
            assert computed == stated == layer.output_shape[1 + axis]
            n = layer.input_shape[1 + axis]
            if isinstance(layer, (ZeroPadding2D, Conv2DTranspose, Cropping2D, UpSampling2D)):
                continue
            if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
                k, s, d = layer.pool_size[axis], layer.strides[axis], 1
            else:
                k, s, d = layer.kernel_size[axis], layer.strides[axis], layer.dilation_rate[axis]
            # The three forms of the issue, with this layer's numbers.
            if layer.padding == "same":
                expected = rf"ceil\({n} / {s}\)"
            elif s == 1 and d == 1:
                expected = rf"{n} - {k} \+ 1"
            else:
                expected = rf"floor\(\({n} \+ 2\*0 - {d}\*\({k}-1\) - 1\) / {s}\) \+ 1"
            assert re.fullmatch(rf"{expected} = \d+", step["formula"]), step["formula"]


@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_causal_conv1d_size_arithmetic(length, kernel, stride, dilation):
    dilation = 1 if stride > 1 else dilation  # Keras refuses both > 1
    span = (kernel - 1) * dilation + 1
    layer = Conv1D(2, kernel, strides=stride, dilation_rate=dilation, padding="causal")
    layer.build_from_shape((None, length, 3))
    (step, _) = explain_model(Sequential([Input((length, 3)), layer])).layers[0].shape_steps
    computed, stated = _evaluate(step["formula"])
    assert computed == stated == layer.output_shape[1]
    assert f"{length} + {span - 1} + 0" in step["formula"] or span == 1


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.sampled_from(["valid", "same"]), st.integers(1, 2), st.integers(6, 12))
def test_contrast_is_computed_from_real_layers(groups, per_group, per_filter_group, stride,
                                                padding, dilation, size):
    dilation = 1 if stride > 1 else dilation
    channels, filters = groups * per_group, groups * per_filter_group
    conv = Conv2D(filters, 3, strides=stride, padding=padding, dilation_rate=dilation,
                  groups=groups)
    conv.build_from_shape((None, size, size, channels))
    exp = explain_model(Sequential([Input((size, size, channels)), conv]), contrast=True)
    contrast, text = exp.layers[0].contrast, str(exp)
    depthwise = DepthwiseConv2D(3, strides=stride, padding=padding, dilation_rate=dilation,
                                depth_multiplier=per_filter_group)
    depthwise.build_from_shape((None, size, size, channels))
    assert contrast.separate_output_shape == depthwise.output_shape
    assert contrast.separate_kernel_weights == depthwise.kernel.size == conv.kernel.size
    assert contrast.max_abs_diff < 1e-4
    for number in (contrast.separate_output_shape, conv.output_shape):
        assert str(number) in text
    assert f"{conv.kernel.size:,} kernel weights" in text
    separate = channels * per_filter_group
    # "not N maps" only when the misconception really gives a different count.
    assert (f"not {separate:,}" in text) == (per_group > 1)
