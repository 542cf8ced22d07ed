"""The reshaping, normalization, preprocessing, spatial-dropout and activation layers against
real Keras 3 (torch backend): the same weights in, the same outputs, gradients (torch autograd
through the Keras layer), configs, built state and summary rows out."""

from __future__ import annotations

import numpy as np
import pytest

import convlens
import convlens.layers as cl
from convlens.kinds import kind_of
from tests.test_keras_differential import reset_names, summary_text

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

# (class name, arguments, shape of one sample)
CASES = [
    ("UpSampling1D", dict(size=3), (5, 2)),
    ("UpSampling2D", dict(size=(2, 3), interpolation="bilinear"), (3, 4, 2)),
    ("UpSampling2D", dict(data_format="channels_first"), (2, 3, 4)),
    ("UpSampling3D", dict(size=(1, 2, 2)), (2, 3, 2, 2)),
    ("Cropping1D", dict(cropping=(1, 2)), (6, 2)),
    ("Cropping2D", dict(cropping=((1, 0), (2, 1))), (5, 6, 2)),
    ("Cropping2D", dict(cropping=1, data_format="channels_first"), (2, 5, 6)),
    ("Cropping3D", dict(cropping=(1, 0, 1)), (4, 3, 5, 2)),
    ("ZeroPadding1D", dict(padding=(2, 1)), (4, 3)),
    ("ZeroPadding3D", dict(padding=((1, 0), (0, 2), (1, 1))), (2, 3, 2, 2)),
    ("ZeroPadding3D", dict(padding=1, data_format="channels_first"), (2, 2, 3, 2)),
    ("Permute", dict(dims=(3, 1, 2)), (3, 4, 5)),
    ("Identity", {}, (3, 4)),
    ("LayerNormalization", {}, (4, 6)),
    ("LayerNormalization", dict(axis=[1, 2], epsilon=1e-5, center=False), (4, 6)),
    ("LayerNormalization", dict(axis=[1, 3], scale=False), (4, 6, 3)),
    ("GroupNormalization", dict(groups=2), (4, 4, 6)),
    ("GroupNormalization", dict(groups=-1, axis=1, scale=False), (6, 4, 4)),
    ("Rescaling", dict(scale=1 / 255.0, offset=-1.0), (4, 3)),
    ("Normalization", dict(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0]), (4, 3)),
    ("Normalization", dict(axis=None, mean=2.0, variance=4.0, invert=True), (4, 3)),
    ("Normalization", dict(axis=(1, 2)), (4, 3)),
    ("SpatialDropout1D", dict(rate=0.5), (4, 3)),
    ("SpatialDropout2D", dict(rate=0.3, data_format="channels_first"), (3, 4, 4)),
    ("SpatialDropout3D", dict(rate=0.3), (2, 3, 2, 2)),
    ("LeakyReLU", {}, (4, 3)),
    ("LeakyReLU", dict(negative_slope=0.05), (4, 3)),
    ("PReLU", dict(shared_axes=[1, 2]), (4, 5, 3)),
    ("PReLU", {}, (4, 3)),
    ("ELU", dict(alpha=0.7), (4, 3)),
    ("Softmax", dict(axis=1), (4, 3)),
    ("Softmax", dict(axis=[1, 2]), (4, 3)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"), (5, 2)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=2, dilation_rate=2, activation="relu"),
     (5, 3)),
    ("Conv3DTranspose", dict(filters=2, kernel_size=(2, 3, 2), strides=(1, 2, 2),
                             data_format="channels_first"), (2, 3, 4, 3)),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2, padding="same"), (7, 3)),
    ("SeparableConv1D", dict(filters=4, kernel_size=3, strides=2, depth_multiplier=2), (9, 3)),
    ("GlobalMaxPooling3D", {}, (3, 4, 3, 2)),
    ("GlobalAveragePooling3D", dict(data_format="channels_first", keepdims=True), (3, 4, 3, 2)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


def _pair(name, kwargs):
    reset_names()  # both auto-names count from 0
    return getattr(cl, name)(**kwargs), getattr(keras.layers, name)(**kwargs)


def _random_weights(layer, rng):
    arrays = []
    for w in layer.get_weights():
        arrays.append(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))  # variances stay > 0
    layer.set_weights(arrays)
    return arrays


def _config_without_dtype(layer):
    config = dict(layer.get_config())
    config.pop("dtype", None)
    for key, value in config.items():
        if key.endswith("_initializer"):  # keys this Keras adds to GlorotUniform's config
            value = {**value, "config": dict(value["config"])}
            for axis_key in ("input_axes", "output_axes"):
                value["config"].pop(axis_key, None)
            config[key] = value
    return config


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_predict_gradients_and_config_match_keras(name, kwargs, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    ours, theirs = _pair(name, kwargs)
    assert ours.built == theirs.built, "built at construction"
    ours.build_from_shape((None, *shape))
    theirs.build((None, *shape))
    weights = _random_weights(ours, rng)
    if weights:
        theirs.set_weights(weights)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    expected = theirs(xt)
    grad_y = rng.standard_normal(tuple(expected.shape)).astype(np.float32)
    expected.backward(torch.from_numpy(grad_y))

    y = ours(x, training=not name.startswith("SpatialDropout"))
    assert y.shape == tuple(expected.shape) == ours.compute_output_shape((2, *shape))
    np.testing.assert_allclose(y, expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    if not name.startswith("SpatialDropout"):
        np.testing.assert_allclose(ours.backward(grad_y), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
        for ours_w, theirs_w in zip(ours.trainable_weights, theirs.trainable_weights):
            np.testing.assert_allclose(ours_w.grad, theirs_w.value.grad.numpy(), rtol=1e-4,
                                       atol=1e-5, err_msg=ours_w.name)

    # keys Keras writes that convlens leaves to the file format (always None in convlens)
    keras_only = dict(kind_of(type(ours)).keras_only_keys)
    theirs_config = {k: v for k, v in _config_without_dtype(theirs).items()
                     if k not in keras_only or v != keras_only[k]}
    assert _config_without_dtype(ours) == theirs_config
    again = type(ours).from_config(ours.get_config())
    again.build_from_shape((None, *shape))
    if weights:
        again.set_weights(weights)
    np.testing.assert_array_equal(again(x), ours(x))


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_summary_rows_match_keras(name, kwargs, shape):
    reset_names()
    theirs = keras.Sequential([keras.Input(shape), getattr(keras.layers, name)(**kwargs)])
    reset_names()
    ours = convlens.Sequential([cl.Input(shape), getattr(cl, name)(**kwargs)])
    assert summary_text(ours, 100) == summary_text(theirs, 100)


@pytest.mark.parametrize("axis", [-1, None, (1, 2)])
def test_normalization_adapt_matches_keras(axis):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((40, 4, 3)) * [1.0, 3.0, 0.5] + [0.0, 5.0, -2.0]).astype("f4")
    batches = [data[:7], data[7:30], data[30:]]
    for source in (data, batches):
        ours, theirs = cl.Normalization(axis=axis), keras.layers.Normalization(axis=axis)
        ours.adapt(source)
        theirs.adapt(data)  # Keras on torch adapts to batches only through tf.data
        for ours_w, theirs_w in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(ours_w, theirs_w, rtol=1e-4, atol=1e-5)
        x = rng.standard_normal((2, 4, 3)).astype(np.float32)
        np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("name,data_format,shape", [
    ("SpatialDropout1D", None, (6, 5)),
    ("SpatialDropout2D", "channels_last", (4, 5, 6)),
    ("SpatialDropout2D", "channels_first", (6, 4, 5)),
    ("SpatialDropout3D", "channels_first", (6, 2, 3, 4)),
])
def test_spatial_dropout_training_drops_whole_maps(name, data_format, shape):
    kwargs = {} if data_format is None else {"data_format": data_format}
    layer = getattr(cl, name)(0.5, seed=3, **kwargs)
    x = np.random.default_rng(2).uniform(1, 2, (16, *shape)).astype(np.float32)
    y = layer(x, training=True)
    ratio = np.moveaxis(y / x, 1 if data_format == "channels_first" else -1, 1)  # (N, C, ...)
    per_map = ratio.reshape(16, ratio.shape[1], -1)
    assert np.all(per_map == per_map[..., :1])  # one decision per (sample, channel)
    assert set(np.unique(per_map)) == {0.0, 2.0}
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad, y / x)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity


@pytest.mark.parametrize("factory,message", [
    (lambda: cl.UpSampling2D(interpolation="bicubic"), "received interpolation='bicubic'"),
    (lambda: cl.UpSampling2D(size=0), r"`size` values must be > 0; received: 0"),
    (lambda: cl.Cropping2D(cropping=((1, 2, 3), 0)), r"received cropping=\(\(1, 2, 3\), 0\)"),
    (lambda: cl.ZeroPadding3D(padding=(1, -1, 0)), r"received padding=\(1, -1, 0\)"),
    (lambda: cl.Permute((1, 3)), r"permutation of 1..2 .* received dims=\(1, 3\)"),
    (lambda: cl.LeakyReLU(negative_slope=-0.1), "received negative_slope=-0.1"),
    (lambda: cl.GroupNormalization(groups=0), "received groups=0"),
    (lambda: cl.Normalization(mean=[1.0]), "pass both `mean` and `variance`"),
    (lambda: cl.Rescaling("big"), "received scale='big'"),
    (lambda: cl.PReLU(shared_axes=[0]), r"received shared_axes=\[0\]"),
    (lambda: cl.PReLU(alpha_regularizer="l3"), r"PReLU '.*': invalid `alpha_regularizer`"),
])
def test_bad_arguments_are_refused_with_the_value(factory, message):
    with pytest.raises((ValueError, TypeError), match=message):
        factory()


def test_bad_input_shapes_name_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"'cropping2d.*' \(Cropping2D\) can't crop 3 \+ 3 from "
                                         r"an axis of size 5"):
        cl.Cropping2D(3)(np.zeros((1, 5, 8, 2)))
    with pytest.raises(ValueError, match=r"groups=4 must divide the 6 channels"):
        cl.GroupNormalization(groups=4)(np.zeros((1, 3, 6)))
    with pytest.raises(ValueError, match=r"needs a rank-4 input .* received shape \(None, 3, 6\)"):
        cl.UpSampling2D()(np.zeros((1, 3, 6)))


def _file_cases() -> list:
    """One Sequential per case, with a Dense so the file has trainable weights around it."""
    return [pytest.param(name, kwargs, shape, id=f"{name}-{len(shape)}-{sorted(kwargs)}")
            for name, kwargs, shape in CASES]


@pytest.mark.parametrize("name,kwargs,shape", _file_cases())
def test_keras_files_round_trip_both_ways(name, kwargs, shape, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    reset_names()
    ours = convlens.Sequential([cl.Input(shape), getattr(cl, name)(**kwargs), cl.Dense(3)])
    _random_weights(ours.layers[0], rng)
    path = str(tmp_path / "ours.keras")
    ours.save(path)
    theirs = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs(x)), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    back = str(tmp_path / "theirs.keras")
    theirs.save(back)
    again = convlens.load_model(back)
    np.testing.assert_allclose(again.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    assert summary_text(again, 100) == summary_text(theirs, 100)
    ours.explain()  # every reader takes the layer


@pytest.mark.parametrize("kwargs", [
    dict(threshold=0.5), dict(threshold=0.25, max_value=1.0), dict(max_value=6.0),
    dict(threshold=0.5, negative_slope=0.2), dict(negative_slope=0.3, max_value=2.0, threshold=1.0),
])
def test_relu_options_at_their_kinks_match_keras_and_trace(kwargs):
    """Exactly at the threshold, 0 and max_value: value, gradient and the traced value."""
    from convlens.explain import trace

    x = np.array([[-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 6.0, 7.0]], np.float32)
    ours, theirs = cl.ReLU(**kwargs), keras.layers.ReLU(**kwargs)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    expected = theirs(xt)
    expected.backward(torch.ones_like(expected))
    np.testing.assert_array_equal(ours(x, training=True), expected.detach().numpy())
    np.testing.assert_array_equal(ours.backward(np.ones_like(x)), xt.grad.numpy())
    model = convlens.Sequential([cl.Input((x.shape[1],)), cl.ReLU(**kwargs)])
    for i in range(x.shape[1]):
        assert trace(model, model.layers[0].name, (i,), x).value == pytest.approx(
            float(expected[0, i]), abs=1e-7)
