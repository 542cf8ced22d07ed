"""The dense kernel against PyTorch: ``F.linear`` forward, autograd backward, any leading axes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.ops.dense import dense_backward, dense_forward

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, GRAD_RTOL = 1e-5, 1e-4


@st.composite
def dense_cases(draw):
    leading = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    features, units = draw(st.integers(1, 9)), draw(st.integers(1, 7))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal((*leading, features)).astype(dtype)
    kernel = rng.standard_normal((features, units)).astype(dtype)
    bias = rng.standard_normal(units).astype(dtype) if draw(st.booleans()) else None
    return x, kernel, bias


@settings(max_examples=60, deadline=None)
@given(dense_cases())
def test_forward_and_backward_match_torch(case):
    x, kernel, bias = case
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(kernel.T.copy()).requires_grad_()  # torch keeps (units, in)
    bt = None if bias is None else torch.from_numpy(bias.copy()).requires_grad_()
    yt = F.linear(xt, wt, bt)
    grad_z = np.random.default_rng(1).standard_normal(yt.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(grad_z))

    z, cache = dense_forward(x, kernel, bias)
    grad_x, grad_kernel, grad_bias = dense_backward(grad_z, cache)
    assert z.dtype == grad_x.dtype == grad_kernel.dtype == x.dtype  # float64 stays float64
    np.testing.assert_allclose(z, yt.detach().numpy(), rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=GRAD_RTOL, atol=1e-4)
    np.testing.assert_allclose(grad_kernel, wt.grad.numpy().T, rtol=GRAD_RTOL, atol=1e-4)
    if bias is None:
        assert grad_bias is None
    else:
        np.testing.assert_allclose(grad_bias, bt.grad.numpy(), rtol=GRAD_RTOL, atol=1e-4)


def test_no_input_gradient_when_not_needed():
    x = np.ones((2, 3), np.float32)
    _, cache = dense_forward(x, np.ones((3, 4), np.float32))
    grad_x, grad_kernel, grad_bias = dense_backward(np.ones((2, 4), np.float32), cache,
                                                    need_input_grad=False)
    assert grad_x is None and grad_bias is None
    np.testing.assert_array_equal(grad_kernel, np.full((3, 4), 2.0, np.float32))


def test_integer_input_computes_in_float32():
    z, _ = dense_forward(np.array([[1, 2]]), np.array([[1.0], [1.0]], np.float32))
    assert z.dtype == np.float32 and z.tolist() == [[3.0]]


@pytest.mark.parametrize(
    ("x_shape", "kernel_shape", "bias_shape", "message"),
    [
        ((2, 3), (4, 5), None, r"input shape \(2, 3\) and kernel shape \(4, 5\)"),
        ((2, 3), (3,), None, "kernel must be"),
        ((2, 3), (3, 5), (4,), r"`bias` must have shape \(5,\); received \(4,\)"),
    ],
)
def test_bad_shapes_are_named(x_shape, kernel_shape, bias_shape, message):
    bias = None if bias_shape is None else np.zeros(bias_shape, np.float32)
    with pytest.raises(ValueError, match=message):
        dense_forward(np.zeros(x_shape, np.float32), np.zeros(kernel_shape, np.float32), bias)
