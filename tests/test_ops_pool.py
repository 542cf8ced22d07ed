"""Pooling kernels against PyTorch, finite differences and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlens.ops import pool
from convlens.shapes import padding_amounts

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, GRAD_RTOL = 1e-5, 1e-4


@st.composite
def pool_cases(draw, allow_ties=False):
    """(x, pool_size, strides, pads) with 1 to 3 spatial axes and Keras-like padding."""
    rank = draw(st.integers(1, 3))
    max_size = {1: 12, 2: 8, 3: 6}[rank]
    pool_size, strides, sizes, pads = [], [], [], []
    mode = draw(st.sampled_from(["valid", "same", "any"]))
    for _ in range(rank):
        k = draw(st.integers(1, 3))
        s = draw(st.integers(1, 3))
        n = draw(st.integers(k, max_size))
        if mode == "any":
            pad = (draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1)))
        else:
            pad = padding_amounts(n, k, mode, s)
        pool_size.append(k), strides.append(s), sizes.append(n), pads.append(pad)
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shape = (batch, *sizes, channels)
    if allow_ties and draw(st.booleans()):
        x = rng.integers(-2, 3, shape).astype(np.float32)  # many equal values per window
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    return x, tuple(pool_size), tuple(strides), tuple(pads)


def _to_torch(x: np.ndarray, requires_grad=False):
    """channels_last numpy -> channels_first torch leaf."""
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    return t.requires_grad_(requires_grad)


def _from_torch(t) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _torch_pad(t, pads, value):
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last axis first
    return F.pad(t, flat, value=value)


def _torch_max_pool(t, pool_size, strides, pads):
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(pool_size) - 1]
    return fn(_torch_pad(t, pads, float("-inf")), pool_size, strides)


def _torch_avg_pool(t, pool_size, strides, pads):
    """Average over the real cells only: zero-padded sum divided by a pooled mask of ones."""
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(pool_size) - 1]
    ones = torch.ones((1, 1, *t.shape[2:]), dtype=t.dtype)
    sums = fn(_torch_pad(t, pads, 0.0), pool_size, strides)
    counts = fn(_torch_pad(ones, pads, 0.0), pool_size, strides)
    return sums / counts


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # kernel_path is fixed
@given(case=pool_cases(allow_ties=True))
def test_max_pool_matches_torch(kernel_path, case):
    """Compiled loops (1-d, 2-d) and NumPy's strided slices, ties included."""
    x, k, s, pads = case
    y, cache = pool.max_pool_forward(x, k, s, pads)
    assert cache.compiled == (kernel_path == "compiled" and x.ndim <= 4)
    t = _to_torch(x, requires_grad=True)
    yt = _torch_max_pool(t, k, s, pads)
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL)
    assert y.dtype == np.float32

    grad_y = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    yt.backward(_to_torch(grad_y))
    grad_x = pool.max_pool_backward(grad_y, cache)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    np.testing.assert_allclose(grad_x, _from_torch(t.grad), rtol=GRAD_RTOL, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(pool_cases())
def test_avg_pool_matches_torch(case):
    x, k, s, pads = case
    y, cache = pool.avg_pool_forward(x, k, s, pads)
    t = _to_torch(x, requires_grad=True)
    yt = _torch_avg_pool(t, k, s, pads)
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=1e-6)

    grad_y = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    yt.backward(_to_torch(grad_y))
    grad_x = pool.avg_pool_backward(grad_y, cache)
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    np.testing.assert_allclose(grad_x, _from_torch(t.grad), rtol=GRAD_RTOL, atol=1e-6)


def test_avg_pool_same_matches_torch_count_include_pad_false():
    """Symmetric padding: torch's own count_include_pad=False agrees."""
    x = np.random.default_rng(2).standard_normal((2, 7, 7, 3)).astype(np.float32)
    y, _ = pool.avg_pool_forward(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    yt = F.avg_pool2d(_to_torch(x), 3, 1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(y, _from_torch(yt), rtol=RTOL, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(pool_cases(allow_ties=True), st.sampled_from(["avg", "max"]), st.booleans())
def test_global_pool_matches_torch(case, kind, keepdims):
    x = case[0]
    if kind == "max":  # distinct values: torch's amax splits tied gradients, we pick one
        x = x + np.random.default_rng(3).uniform(0, 1e-2, x.shape).astype(np.float32)
    y, cache = pool.global_pool_forward(x, kind, keepdims)
    t = _to_torch(x, requires_grad=True)
    dims = tuple(range(2, t.ndim))
    yt = t.mean(dim=dims) if kind == "avg" else t.amax(dim=dims)  # (N, C)
    expected_shape = (x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1]) if keepdims else yt.shape
    assert y.shape == tuple(expected_shape)
    np.testing.assert_allclose(y.reshape(yt.shape), yt.detach().numpy(), rtol=RTOL, atol=1e-6)

    grad_y = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(grad_y.reshape(yt.shape)))
    grad_x = pool.global_pool_backward(grad_y, cache)
    np.testing.assert_allclose(grad_x, _from_torch(t.grad), rtol=GRAD_RTOL, atol=1e-6)


# ----------------------------------------------------------------------- hand-made cases


def test_max_pool_ties_go_to_first_cell_in_window_order(kernel_path):
    x = np.zeros((1, 2, 2, 1), np.float32)
    y, cache = pool.max_pool_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    grad = pool.max_pool_backward(np.ones_like(y), cache)
    assert grad[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_global_max_ties_go_to_one_cell():
    x = np.ones((1, 3, 3, 2), np.float32)
    y, cache = pool.global_pool_forward(x, "max")
    grad = pool.global_pool_backward(np.ones_like(y), cache)
    assert grad.sum() == 2.0 and grad[0, 0, 0].tolist() == [1.0, 1.0]


def test_padded_cells_never_win_a_max(kernel_path):
    x = -np.ones((1, 3, 3, 1), np.float32)  # all negative: a zero pad would win
    y, _ = pool.max_pool_forward(x, (2, 2), (2, 2), ((0, 1), (0, 1)))
    assert y.shape == (1, 2, 2, 1) and np.all(y == -1)


def test_avg_pool_same_divides_by_real_cells():
    x = np.ones((1, 3, 3, 1), np.float32)
    y, _ = pool.avg_pool_forward(x, (2, 2), (2, 2), ((0, 1), (0, 1)))
    assert np.all(y == 1.0)


def test_max_pool_propagates_nan_as_torch_does(kernel_path):
    x = np.arange(32, dtype=np.float32).reshape(1, 4, 4, 2)
    x[0, 1, 2, 1] = np.nan  # in window (0, 1) of channel 1
    y, _ = pool.max_pool_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    reference = _from_torch(F.max_pool2d(_to_torch(x), 2, 2))
    np.testing.assert_array_equal(y, reference)  # NaNs compare equal here
    assert np.isnan(y).sum() == 1


def test_mnist_shape_reshape_equivalence(kernel_path):
    """stride == pool: same numbers as the reshape-and-reduce formulation."""
    x = np.random.default_rng(5).standard_normal((8, 24, 24, 16)).astype(np.float32)
    y, _ = pool.max_pool_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    reference = x.reshape(8, 12, 2, 12, 2, 16).max(axis=(2, 4))  # (N, 12, 2, 12, 2, C)
    np.testing.assert_array_equal(y, reference)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pool_size": (2, 2), "strides": (2, 2), "padding": ((2, 0), (0, 0))}, "smaller"),
        ({"pool_size": (9, 2), "strides": (1, 1), "padding": ((0, 0), (0, 0))}, "does not fit"),
        ({"pool_size": (2,), "strides": (2, 2), "padding": ((0, 0), (0, 0))}, "pool_size"),
        ({"pool_size": (2, 2), "strides": (0, 2), "padding": ((0, 0), (0, 0))}, "strides"),
        ({"pool_size": (2, 2), "strides": (2, 2), "padding": "same"}, "padding"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=message):
        pool.max_pool_forward(x, **kwargs)


def test_bad_global_kind_and_rank():
    with pytest.raises(ValueError, match="kind"):
        pool.global_pool_forward(np.zeros((1, 2, 2, 1), np.float32), "sum")
    with pytest.raises(ValueError, match="spatial"):
        pool.max_pool_forward(np.zeros((2, 3), np.float32), 2, 2, ())


# ----------------------------------------------------------------------- finite differences


def _numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "shape, k, s, pads",
    [
        ((2, 5, 2), (3,), (2,), ((1, 1),)),
        ((1, 4, 5, 2), (2, 3), (1, 2), ((0, 1), (1, 1))),
        ((1, 3, 3, 3, 1), (2, 2, 2), (1, 1, 1), ((0, 1), (0, 0), (1, 0))),
    ],
)
def test_finite_differences_float64(kind, shape, k, s, pads, kernel_path):
    rng = np.random.default_rng(6)
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.1
    forward = pool.max_pool_forward if kind == "max" else pool.avg_pool_forward
    backward = pool.max_pool_backward if kind == "max" else pool.avg_pool_backward
    y, cache = forward(x, k, s, pads)
    assert y.dtype == np.float64
    weights = rng.standard_normal(y.shape)
    analytic = backward(weights, cache)
    numeric = _numeric_grad(lambda v: float((forward(v, k, s, pads)[0] * weights).sum()), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_finite_differences_float64(kind):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 3))
    y, cache = pool.global_pool_forward(x, kind, keepdims=True)
    weights = rng.standard_normal(y.shape)
    analytic = pool.global_pool_backward(weights, cache)
    numeric = _numeric_grad(
        lambda v: float((pool.global_pool_forward(v, kind)[0]).ravel() @ weights.ravel()), x
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
