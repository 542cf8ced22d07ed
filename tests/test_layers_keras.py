"""Layers against real Keras 3 (torch backend): same weights in, same outputs and shapes out."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convlens.layers as cl

keras = pytest.importorskip("keras")

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def run_both(ours, theirs, x):
    """Build both layers on ``x``, copy our weights into Keras's, return both outputs."""
    ours_out = ours(x)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    theirs_out = keras.ops.convert_to_numpy(theirs(x))
    return ours_out, theirs_out


def assert_close(a, b, rtol=1e-5, atol=1e-5):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1.0, float(np.abs(b).max())))


@st.composite
def conv_case(draw, rank):
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilated = draw(st.booleans())
    strides = (1,) * rank if dilated else tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if dilated else (1,) * rank
    groups = draw(st.sampled_from([1, 1, 2]))
    in_channels = groups * draw(st.integers(1, 3))
    filters = groups * draw(st.integers(1, 3))
    paddings = ["valid", "same"] + (["causal"] if rank == 1 else [])
    padding = draw(st.sampled_from(paddings))
    data_format = "channels_last" if padding == "causal" else draw(
        st.sampled_from(["channels_last", "channels_first"]))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(draw(st.integers(s, s + 5)) for s in span)
    return dict(filters=filters, kernel_size=kernel, strides=strides, padding=padding,
                dilation_rate=dilation, groups=groups, data_format=data_format,
                activation=draw(st.sampled_from([None, "relu", "tanh"])),
                use_bias=draw(st.booleans())), spatial, in_channels


def make_input(spatial, channels, data_format, batch=2, seed=0):
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (
        batch, channels, *spatial)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("rank,ours_cls,keras_name", [
    (1, cl.Conv1D, "Conv1D"), (2, cl.Conv2D, "Conv2D"), (3, cl.Conv3D, "Conv3D")])
def test_conv_matches_keras(rank, ours_cls, keras_name):
    @SETTINGS
    @given(conv_case(rank))
    def check(case):
        args, spatial, channels = case
        x = make_input(spatial, channels, args["data_format"])
        ours, theirs = run_both(ours_cls(**args), getattr(keras.layers, keras_name)(**args), x)
        assert ours.shape == keras.layers.__dict__[keras_name](**args).compute_output_shape(
            x.shape)
        assert_close(ours, theirs)

    check()


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.integers(1, 2), st.sampled_from(["channels_last", "channels_first"]))
def test_depthwise_and_separable_match_keras(kernel, strides, multiplier, padding, channels,
                                             data_format):
    x = make_input((kernel + 4, kernel + 3), channels, data_format)
    args = dict(kernel_size=kernel, strides=strides, padding=padding,
                depth_multiplier=multiplier, data_format=data_format)
    assert_close(*run_both(cl.DepthwiseConv2D(**args), keras.layers.DepthwiseConv2D(**args), x))
    args["filters"] = 3
    ours = cl.SeparableConv2D(**args)
    assert_close(*run_both(ours, keras.layers.SeparableConv2D(**args), x))
    assert [w.shape for w in ours.weights] == [
        (kernel, kernel, channels, multiplier), (1, 1, channels * multiplier, 3), (3,)]


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.integers(3, 6), st.sampled_from(["channels_last", "channels_first"]))
def test_conv_transpose_matches_keras(kernel, strides, padding, size, data_format):
    x = make_input((size, size + 1), 2, data_format)
    args = dict(filters=3, kernel_size=kernel, strides=strides, padding=padding,
                data_format=data_format)
    ours, theirs = run_both(cl.Conv2DTranspose(**args), keras.layers.Conv2DTranspose(**args), x)
    assert_close(ours, theirs)


@SETTINGS
@given(st.sampled_from(["max", "average"]), st.integers(1, 2), st.integers(1, 3),
       st.one_of(st.none(), st.integers(1, 3)), st.sampled_from(["valid", "same"]),
       st.sampled_from(["channels_last", "channels_first"]))
def test_pooling_matches_keras(mode, rank, pool, strides, padding, data_format):
    # Keras's torch backend pads 'same' average pooling by replicating edge values, unlike its
    # TensorFlow/JAX backends (which average over the valid cells only); convlens follows the
    # latter, checked against torch's count_include_pad=False in tests/test_ops_pool.py.
    assume(not (mode == "average" and padding == "same"))
    name = {"max": "MaxPooling", "average": "AveragePooling"}[mode] + f"{rank}D"
    x = make_input((pool + 3,) * rank, 3, data_format)
    args = dict(pool_size=pool, strides=strides, padding=padding, data_format=data_format)
    assert_close(*run_both(getattr(cl, name)(**args), getattr(keras.layers, name)(**args), x))


@pytest.mark.parametrize("name", ["GlobalAveragePooling2D", "GlobalMaxPooling2D"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_keras(name, data_format, keepdims):
    x = make_input((5, 4), 3, data_format)
    args = dict(data_format=data_format, keepdims=keepdims)
    assert_close(*run_both(getattr(cl, name)(**args), getattr(keras.layers, name)(**args), x))


@pytest.mark.parametrize("factory", [
    lambda m: m.Dense(7, activation="sigmoid"),
    lambda m: m.Flatten(),
    lambda m: m.Flatten(data_format="channels_first"),
    lambda m: m.Reshape((-1, 6)),
    lambda m: m.Activation("softmax"),
    lambda m: m.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2),
    lambda m: m.Dropout(0.5),
    lambda m: m.ZeroPadding2D(((1, 2), (0, 3))),
    lambda m: m.BatchNormalization(),
    lambda m: m.BatchNormalization(axis=1, center=False),
])
def test_core_layers_match_keras(factory):
    x = make_input((4, 6), 3, "channels_last")
    ours = factory(cl)
    if isinstance(ours, cl.BatchNormalization):
        ours.build_from_shape((None, *x.shape[1:]))
        rng = np.random.default_rng(1)
        ours.set_weights([rng.uniform(0.5, 2, w.shape) for w in ours.get_weights()])
    assert_close(*run_both(ours, factory(keras.layers), x))


@pytest.mark.parametrize("spec,input_shape", [
    ((cl.Conv2D, 32, 3), (None, 28, 28, 1)),
    ((cl.Conv2D, 64, 3), (None, 26, 26, 32)),
    ((cl.Conv2D, 8, 3, {"strides": 2, "padding": "same"}), (None, 28, 28, 1)),
    ((cl.Conv2D, 8, 5, {"padding": "same"}), (None, 7, 7, 3)),
    ((cl.Conv2D, 8, 3, {"dilation_rate": 2}), (None, 11, 11, 3)),
    ((cl.Conv2D, 8, (1, 3), {"strides": (3, 1)}), (None, 10, 10, 3)),
    ((cl.Conv1D, 4, 3, {"padding": "causal", "dilation_rate": 4}), (None, 20, 2)),
    ((cl.Conv3D, 4, 3, {"strides": 2}), (None, 9, 9, 9, 1)),
    ((cl.Conv2DTranspose, 4, 3, {"strides": 2, "padding": "same"}), (None, 7, 7, 2)),
    ((cl.Conv2DTranspose, 4, 2, {"strides": 3}), (None, 5, 5, 2)),
    ((cl.Conv2DTranspose, 4, 3, {"strides": 2, "output_padding": 1}), (None, 5, 5, 2)),
    ((cl.MaxPooling2D, 2), (None, 24, 24, 64)),
    ((cl.MaxPooling2D, 3, 2, "same"), (None, 7, 7, 1)),
    ((cl.AveragePooling1D, 2), (None, 9, 4)),
    ((cl.Dense, 10), (None, 9216)),
    ((cl.Conv2D, 6, 3, {"data_format": "channels_first"}), (None, 3, 10, 12)),
    ((cl.Conv1D, 4, 3, {"strides": 2, "padding": "same"}), (None, 9, 2)),
    ((cl.Conv3D, 4, (1, 2, 3), {"data_format": "channels_first"}), (None, 2, 5, 6, 7)),
    ((cl.DepthwiseConv2D, 3, {"depth_multiplier": 3, "strides": 2}), (None, 9, 8, 2)),
    ((cl.SeparableConv2D, 8, 3, {"padding": "same", "strides": 2}), (None, 9, 8, 2)),
    ((cl.Conv2DTranspose, 4, 3, {"strides": 3, "padding": "same", "output_padding": 2}),
     (None, 5, 4, 2)),
    ((cl.Conv2DTranspose, 4, 4, {"strides": 2, "data_format": "channels_first"}),
     (None, 2, 5, 4)),
    ((cl.MaxPooling2D, 2, None, "same", "channels_first"), (None, 3, 7, 5)),
    ((cl.AveragePooling2D, (3, 2), (1, 2)), (None, 7, 7, 3)),
    ((cl.MaxPooling1D, 3, 1, "same"), (None, 8, 2)),
    ((cl.GlobalAveragePooling2D, {"keepdims": True}), (None, 5, 5, 3)),
    ((cl.GlobalMaxPooling2D, {"data_format": "channels_first"}), (None, 3, 5, 4)),
    ((cl.ZeroPadding2D, ((1, 2), (3, 0))), (None, 5, 5, 3)),
    ((cl.Flatten,), (None, 24, 24, 64)),
    ((cl.Reshape, (-1, 4)), (None, 6, 2)),
    ((cl.BatchNormalization,), (None, 5, 5, 3)),
])
def test_output_shape_table_matches_keras(spec, input_shape):
    cls, *args = spec
    kwargs = args.pop() if args and isinstance(args[-1], dict) else {}
    ours = cls(*args, **kwargs).build_from_shape(input_shape)
    theirs = getattr(keras.layers, cls.__name__)(*args, **kwargs).compute_output_shape(input_shape)
    assert ours == tuple(theirs)


def test_seed_weight_shapes_and_counts():
    from convlens.models import Sequential

    model = Sequential([cl.Conv2D(32, kernel_size=(3, 3), activation="relu",
                                  input_shape=(28, 28, 1)), cl.Conv2D(64, (3, 3))])
    assert [w.shape for w in model.get_weights()] == [(3, 3, 1, 32), (32,), (3, 3, 32, 64),
                                                      (64,)]
    assert [layer.count_params() for layer in model.layers] == [320, 18496]
    second = Sequential([
        cl.Convolution2D(32, 5, activation="relu", use_bias=False, input_shape=(28, 28, 3)),
        cl.Convolution2D(64, 5, activation="relu", use_bias=False)])
    assert [w.shape for w in second.get_weights()] == [(5, 5, 3, 32), (5, 5, 32, 64)]
    assert [layer.count_params() for layer in second.layers] == [2400, 51200]
    assert second.count_params() == 53600
