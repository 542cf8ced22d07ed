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


def _keras_reference(name: str, x: np.ndarray, grad_y: np.ndarray):
    """Keras's value and torch autograd's gradient of ``sum(y * grad_y)``."""
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = keras.activations.get(name)(xt)
    yt.backward(torch.from_numpy(grad_y))
    return yt.detach().numpy(), xt.grad.numpy()


def _check_against_keras(name: str, x: np.ndarray, grad_y: np.ndarray):
    y = act.activation_forward(name, x)
    grad_x = act.activation_backward(name, x, y, grad_y)
    y_ref, grad_ref = _keras_reference(name, x, grad_y)
    assert y.dtype == np.float32 and grad_x.dtype == np.float32
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
    x = np.array([-6.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6.0, 7.0], np.float32)
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
                 "silu", "swish", "exponential", "mish"):  # fmt: skip
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
    x[np.abs(np.abs(x) - 3) < 0.05] += 0.1  # and at +-3
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
