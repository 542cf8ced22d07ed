"""Every layer's backward pass against torch autograd run through the real Keras layer.

Keras 3 on the torch backend keeps its weights as torch parameters, so autograd gives the
reference gradients for the input and every weight of exactly the layer Keras defines.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlens.layers as cl
from tests.test_layers_keras import conv_case, make_input

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def reference_grads(theirs, x, grad_y):
    x_t = torch.tensor(x, requires_grad=True)
    y = theirs(x_t)
    (y * torch.tensor(grad_y)).sum().backward()
    weights = [w.value.grad.numpy() if w.value.grad is not None else np.zeros(w.shape)
               for w in theirs.trainable_weights]
    return x_t.grad.numpy(), weights


def check_layer(ours, theirs, x, rtol=1e-4):
    y = ours(x, training=True)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    grad_y = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    grad_x = ours.backward(grad_y)
    ref_x, ref_weights = reference_grads(theirs, x, grad_y)
    scale = max(1.0, float(np.abs(ref_x).max()))
    np.testing.assert_allclose(grad_x, ref_x, rtol=rtol, atol=rtol * scale)
    ours_weights = [w.grad for w in ours.trainable_weights]
    assert len(ours_weights) == len(ref_weights)
    for got, want in zip(ours_weights, ref_weights):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("rank,name", [(1, "Conv1D"), (2, "Conv2D"), (3, "Conv3D")])
def test_conv_backward(rank, name):
    @SETTINGS
    @given(conv_case(rank))
    def check(case):
        args, spatial, channels = case
        x = make_input(spatial, channels, args["data_format"])
        check_layer(getattr(cl, name)(**args), getattr(keras.layers, name)(**args), x)

    check()


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 3), st.sampled_from(["valid", "same"]),
       st.sampled_from(["channels_last", "channels_first"]), st.sampled_from([None, "relu"]))
def test_depthwise_separable_transpose_backward(kernel, strides, multiplier, padding, data_format,
                                                activation):
    x = make_input((kernel + 4, kernel + 3), 2, data_format)
    args = dict(kernel_size=kernel, strides=strides, padding=padding, data_format=data_format,
                activation=activation)
    check_layer(cl.DepthwiseConv2D(depth_multiplier=multiplier, **args),
                keras.layers.DepthwiseConv2D(depth_multiplier=multiplier, **args), x)
    check_layer(cl.SeparableConv2D(3, depth_multiplier=multiplier, **args),
                keras.layers.SeparableConv2D(3, depth_multiplier=multiplier, **args), x)
    check_layer(cl.Conv2DTranspose(3, **args), keras.layers.Conv2DTranspose(3, **args), x)


@SETTINGS
@given(st.sampled_from(["MaxPooling", "AveragePooling"]), st.integers(1, 2), st.integers(1, 3),
       st.one_of(st.none(), st.integers(1, 3)), st.sampled_from(["channels_last",
                                                                "channels_first"]))
def test_pooling_backward(kind, rank, pool, strides, data_format):
    name = f"{kind}{rank}D"
    x = make_input((pool + 4,) * rank, 3, data_format)
    args = dict(pool_size=pool, strides=strides, padding="valid", data_format=data_format)
    check_layer(getattr(cl, name)(**args), getattr(keras.layers, name)(**args), x)


@pytest.mark.parametrize("factory", [
    lambda m: m.Dense(7, activation="softmax"),
    lambda m: m.Dense(5, activation="tanh", use_bias=False),
    lambda m: m.Flatten(),
    lambda m: m.Flatten(data_format="channels_first"),
    lambda m: m.Reshape((-1, 6)),
    lambda m: m.Activation("sigmoid"),
    lambda m: m.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2),
    lambda m: m.ZeroPadding2D(((1, 2), (0, 3))),
    lambda m: m.BatchNormalization(),
    lambda m: m.BatchNormalization(axis=1, scale=False),
    lambda m: m.GlobalAveragePooling2D(),
    lambda m: m.GlobalMaxPooling2D(keepdims=True),
])
def test_core_backward(factory):
    x = make_input((4, 6), 3, "channels_last")
    ours, theirs = factory(cl), factory(keras.layers)
    if isinstance(ours, cl.BatchNormalization):
        # Keras uses batch statistics in training mode; call it that way too.
        ours.build_from_shape((None, *x.shape[1:]))
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        ours(x, training=True)
        x_t = torch.tensor(x, requires_grad=True)
        grad_y = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
        y = theirs(x_t, training=True)
        (y * torch.tensor(grad_y)).sum().backward()
        np.testing.assert_allclose(ours.backward(grad_y), x_t.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
        for got, want in zip(ours.trainable_weights, theirs.trainable_weights):
            np.testing.assert_allclose(got.grad, want.value.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours.moving_mean.value,
                                   keras.ops.convert_to_numpy(theirs.moving_mean), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(ours.moving_variance.value,
                                   keras.ops.convert_to_numpy(theirs.moving_variance), rtol=1e-5)
        return
    check_layer(ours, theirs, x)


def test_dropout_backward_uses_the_same_mask():
    layer = cl.Dropout(0.5, seed=1)
    x = np.ones((4, 100), np.float32)
    y = layer(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.3 < (y == 0).mean() < 0.7
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_finite_differences_small_model():
    """Whole-model gradient of a scalar against central differences (float32, loose)."""
    from convlens.models import Sequential
    from convlens.utils import set_random_seed

    set_random_seed(7)
    model = Sequential([cl.Input((6, 6, 2)), cl.Conv2D(3, 3, activation="tanh"),
                        cl.MaxPooling2D(2), cl.Flatten(), cl.Dense(2, activation="sigmoid")])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    weights = rng.standard_normal(2 * 2).reshape(2, 2).astype(np.float32)

    def objective():
        return float((model.forward(x) * weights).sum())

    model.forward(x, training=True)
    model.backward(weights)
    kernel = model.layers[0].kernel
    analytic = kernel.grad.copy()
    eps = 1e-3
    for index in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1)]:
        old = kernel.value[index]
        kernel.value[index] = old + eps
        plus = objective()
        kernel.value[index] = old - eps
        minus = objective()
        kernel.value[index] = old
        assert abs((plus - minus) / (2 * eps) - analytic[index]) < 2e-3
