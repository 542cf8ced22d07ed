"""Activations against Keras 3 (torch backend) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convlens.ops import activations as act

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

RTOL, GRAD_RTOL = 1e-5, 1e-4

# Keras warns when softmax runs over an axis of size 1; hypothesis draws such shapes on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
values = st.floats(-20, 20, width=32, allow_nan=False, allow_infinity=False)
inputs = hnp.arrays(np.float32, shapes, elements=values)


def _keras_reference(name: str, x: np.ndarray, grad_y: np.ndarray, **options):
    """Keras's value and torch autograd's gradient of ``sum(y * grad_y)``."""
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = keras.activations.get(name)(xt, **options)
    yt.backward(torch.from_numpy(grad_y))
    return yt.detach().numpy(), xt.grad.numpy()


def _check_against_keras(name: str, x: np.ndarray, grad_y: np.ndarray, **options):
    y = act.activation_forward(name, x, **options)
    grad_x = act.activation_backward(name, x, y, grad_y, **options)
    y_ref, grad_ref = _keras_reference(name, x, grad_y, **options)
    assert y.dtype == x.dtype and grad_x.dtype == x.dtype
    assert y.shape == x.shape and grad_x.shape == x.shape
    np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(grad_x, grad_ref, rtol=GRAD_RTOL, atol=1e-5, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(inputs, st.integers(0, 2**31))
def test_every_activation_matches_keras(x, seed):
    grad_y = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    for name in act.NAMES:
        _check_against_keras(name, x, grad_y)


def test_kinks_use_torch_gradients():
    """Exactly at 0, +-3 and 6 the subgradient is the one PyTorch (and so Keras) picks."""
    x = np.array([-6.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 6.0, 7.0], np.float32)
    for name in act.NAMES:
        _check_against_keras(name, x, np.ones_like(x))


def test_extreme_inputs_stay_finite_without_warnings():
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name in act.NAMES:
            if name == "exponential":
                continue  # e^10000 is inf by definition
            y = act.activation_forward(name, x)
            grad = act.activation_backward(name, x, y, np.ones_like(x))
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad)), name
    sig = act.activation_forward("sigmoid", np.array([-100.0], np.float32))
    assert 0 < sig[0] < 1e-40  # keeps relative precision in the tail instead of rounding to 0


def test_softmax_is_over_the_last_axis():
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    y = act.activation_forward("softmax", x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.exp(act.activation_forward("log_softmax", x)), y, rtol=1e-6)


def test_defaults_match_keras_signatures():
    import inspect

    assert inspect.signature(keras.activations.gelu).parameters["approximate"].default is False
    slope = inspect.signature(keras.activations.leaky_relu).parameters["negative_slope"].default
    assert slope == act.LEAKY_RELU_SLOPE


def test_names_aliases_and_unknown():
    for name in ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid",
                 "hard_sigmoid", "tanh", "softmax", "log_softmax", "softplus", "softsign",
                 "silu", "swish", "exponential", "mish", "hard_swish", "hard_silu", "celu",
                 "hard_tanh", "hard_shrink", "soft_shrink", "tanh_shrink", "sparse_plus",
                 "squareplus", "sparse_sigmoid", "log_sigmoid"):  # fmt: skip
        assert name in act.NAMES and name in act.FORWARD
    assert act.FORWARD["swish"] is act.FORWARD["silu"]
    with pytest.raises(ValueError, match="Allowed names"):
        act.activation_forward("rleu", np.zeros(2, np.float32))


def test_dtypes():
    assert act.activation_forward("relu", np.array([1, -2])).dtype == np.float32
    assert act.activation_forward("gelu", np.array([1.0, -2.0])).dtype == np.float64
    x16 = np.array([1.0, -2.0], np.float16)
    assert act.activation_forward("tanh", x16).dtype == np.float32


@pytest.mark.parametrize("name", act.NAMES)
def test_finite_differences_float64(name):
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, (3, 4))
    x[np.abs(x) < 0.05] += 0.1  # stay off the kinks at 0
    for kink in (0.5, 1.0, 3.0):  # and at +-0.5, +-1 and +-3
        x[np.abs(np.abs(x) - kink) < 0.05] += 0.1
    weights = rng.standard_normal(x.shape)
    y = act.activation_forward(name, x)
    assert y.dtype == np.float64
    analytic = act.activation_backward(name, x, y, weights)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (
            (act.activation_forward(name, up) - act.activation_forward(name, down)) * weights
        ).sum() / (2 * eps)
    # gelu's erfc fit has relative error ~1e-7, so its own derivative is only that good
    rtol = 1e-5 if name == "gelu" else 1e-6
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-6)


def test_every_keras_activation_of_one_input_is_here():
    """Keras's whole list, less the ones that are not a function of x alone."""
    from keras.src.activations import ALL_OBJECTS

    not_elementwise = {"glu", "sparsemax", "threshold"}  # halves an axis; sorts; needs arguments
    keras_names = {fn.__name__ for fn in ALL_OBJECTS} - not_elementwise
    assert keras_names <= set(act.NAMES)


def test_options_and_their_defaults_match_keras_signatures():
    import inspect

    for name, options in act.OPTIONS.items():
        keras_parameters = inspect.signature(keras.activations.get(name)).parameters
        for option, default in options.items():
            if name == "gelu" and option == "approximate":
                # keras.activations.gelu is the exact form by default (the backend's is not)
                assert keras_parameters[option].default is False and default is False
            else:
                assert keras_parameters[option].default == default, (name, option)
    with pytest.raises(ValueError, match="takes no option 'alpha'; its options are: "
                                         "negative_slope, max_value, threshold"):
        act.activation_forward("relu", np.zeros(2, np.float32), alpha=1.0)
    with pytest.raises(ValueError, match="its options are: none"):
        act.activation_forward("tanh", np.zeros(2, np.float32), axis=0)


@st.composite
def options_cases(draw):
    """An activation with options, random option values, and an input that hits the kinks."""
    name = draw(st.sampled_from(["relu", "leaky_relu", "elu", "celu", "gelu", "softmax",
                                 "log_softmax", "hard_shrink", "soft_shrink", "squareplus"]))
    slope = st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])
    point = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.5, 6.0])
    if name == "relu":
        options = dict(negative_slope=draw(slope), threshold=draw(point),
                       max_value=draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, 6.0]))))
    elif name == "leaky_relu":
        options = dict(negative_slope=draw(slope))
    elif name in ("elu", "celu"):
        options = dict(alpha=draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])))
    elif name == "gelu":
        options = dict(approximate=draw(st.booleans()))
    elif name in ("softmax", "log_softmax"):
        options = dict(axis=draw(st.sampled_from([0, 1, -1, (0, 1), (1, 2)])))
    elif name == "squareplus":
        options = dict(b=draw(st.sampled_from([0.5, 1, 4, 10])))
    else:
        options = dict(threshold=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    # grid values are exactly the kinks (0, threshold, max_value); the rest is random
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(hnp.arrays(dtype, (2, 3, 4), elements=st.one_of(point, values)))
    return name, options, x


@settings(max_examples=80, deadline=None)
@given(options_cases(), st.integers(0, 2**31))
def test_activation_options_match_keras(case, seed):
    name, options, x = case
    grad_y = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)
    _check_against_keras(name, x, grad_y, **options)


@pytest.mark.parametrize("shared_axes", [None, [1], [1, 2], [3], [1, 2, 3]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu_matches_keras_layer(shared_axes, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    x[0, 0, 0] = 0.0  # relu'(0) = 0 on both sides
    layer = keras.layers.PReLU(shared_axes=shared_axes, dtype=np.dtype(dtype).name)
    layer.build((None, 3, 4, 5))
    alpha = rng.standard_normal(tuple(layer.alpha.shape)).astype(dtype)
    layer.alpha.assign(alpha)
    grad_y = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = layer(xt)
    yt.backward(torch.from_numpy(grad_y))

    y = act.prelu_forward(x, alpha)
    grad_x, grad_alpha = act.prelu_backward(x, alpha, grad_y)
    assert y.dtype == grad_x.dtype == grad_alpha.dtype == dtype
    assert grad_alpha.shape == alpha.shape
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_alpha, layer.alpha.value.grad.numpy(), rtol=1e-5, atol=1e-6)
