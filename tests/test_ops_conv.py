"""N-d convolution kernels against torch.nn.functional and finite differences.

Tolerances (float32): values within ``rtol=1e-5`` plus ``atol=1e-5 * max|reference|``;
gradients within ``rtol=1e-4`` plus ``atol=1e-4 * max|reference|`` (sums over many products
make absolute, not relative, float32 error the honest measure near zero).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens import shapes
from convlens.ops import compiled, conv
from convlens.ops.conv_geometry import Geometry

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_SIDE = {1: 12, 2: 8, 3: 5}


def _close(ours, reference, rtol=1e-5, scale=1e-5):
    reference = np.asarray(reference)
    atol = scale * max(1.0, float(np.abs(reference).max(initial=0.0)))
    assert ours.shape == reference.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)


def _to_torch(a: np.ndarray):
    """(N, *spatial, C) NumPy -> (N, C, *spatial) torch leaf that records gradients."""
    return torch.from_numpy(np.moveaxis(a, -1, 1).copy()).requires_grad_()


def _from_torch(t) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _torch_pad(padding):
    """Per-axis (before, after) pairs -> F.pad's list, last axis first (negative crops)."""
    return [v for pair in reversed(padding) for v in pair]


def _kernel_to_torch(kernel: np.ndarray):
    """Keras (*k, a, b) -> torch (b, a, *k) for conv, or (*k, C_out, C_in) -> (C_in, C_out, *k)."""
    rank = kernel.ndim - 2
    return torch.from_numpy(kernel.transpose(rank + 1, rank, *range(rank)).copy()).requires_grad_()


def _kernel_from_torch(weight) -> np.ndarray:
    rank = weight.ndim - 2
    return weight.detach().numpy().transpose(*range(2, rank + 2), 1, 0)


@st.composite
def conv_cases(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if draw(st.booleans()):
        strides, dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank)), (1,) * rank
    else:
        strides, dilation = (1,) * rank, tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    spatial = []
    for axis in range(rank):
        span = dilation[axis] * (k[axis] - 1) + 1
        smallest = max(1, span - sum(padding[axis]))
        spatial.append(draw(st.integers(smallest, max(smallest, MAX_SIDE[rank]))))
    n = draw(st.integers(1, 3))
    chunk = draw(st.sampled_from([conv.SINGLE_CHANNEL_CHUNK_BYTES, 64, 1000]))
    seed = draw(st.integers(0, 2**31 - 1))
    on = draw(st.booleans())  # depthwise cases have a compiled path and a NumPy one
    return n, tuple(spatial), c_in, c_out, k, strides, dilation, padding, groups, chunk, seed, on


def _torch_conv(x, kernel, bias, strides, padding, dilation, groups, grad_y):
    rank = x.ndim - 2
    x_t, w_t = _to_torch(x), _kernel_to_torch(kernel)
    b_t = torch.from_numpy(bias.copy()).requires_grad_()
    y_t = TORCH_CONV[rank](
        F.pad(x_t, _torch_pad(padding)),
        w_t,
        b_t,
        stride=strides,
        dilation=dilation,
        groups=groups,
    )
    y_t.backward(_to_torch(grad_y).detach())
    return _from_torch(y_t), _from_torch(x_t.grad), _kernel_from_torch(w_t.grad), b_t.grad.numpy()


def _run_chunked(chunk, function, *args):
    """Run with small work chunks so the per-row chunking (one sample > a chunk) is exercised."""
    names = ("CHUNK_BYTES", "SINGLE_CHANNEL_CHUNK_BYTES", "DEPTHWISE_CHUNK_BYTES")
    saved = {name: getattr(conv, name) for name in names}
    for name in names:
        setattr(conv, name, min(chunk, saved[name]))
    try:
        return function(*args)
    finally:
        for name in names:
            setattr(conv, name, saved[name])


def _conv_and_grads(x, kernel, bias, strides, padding, dilation, groups, grad_y):
    y, cache = conv.conv_forward(x, kernel, bias, strides, padding, dilation, groups)
    # the compiled loops serve exactly the depthwise convolutions in 1-d and 2-d, when on
    depthwise = groups == x.shape[-1] > 1 and x.ndim <= 4
    assert cache.compiled == (depthwise and compiled.ENABLED)
    return (y, *conv.conv_backward(grad_y, cache))


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_conv_matches_torch(case):
    n, spatial, c_in, c_out, k, strides, dilation, padding, groups, chunk, seed, on = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spatial, c_in), dtype=np.float32)
    kernel = rng.standard_normal((*k, c_in // groups, c_out), dtype=np.float32)
    bias = rng.standard_normal(c_out, dtype=np.float32)
    out = tuple(
        (s + a + b - d * (kk - 1) - 1) // st + 1
        for s, (a, b), kk, st, d in zip(spatial, padding, k, strides, dilation, strict=True)
    )
    grad_y = rng.standard_normal((n, *out, c_out), dtype=np.float32)
    saved, compiled.ENABLED = compiled.ENABLED, on
    try:
        ours = _run_chunked(
            chunk, _conv_and_grads, x, kernel, bias, strides, padding, dilation, groups, grad_y
        )
    finally:
        compiled.ENABLED = saved
    reference = _torch_conv(x, kernel, bias, strides, padding, dilation, groups, grad_y)
    _close(ours[0], reference[0])
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        _close(mine, theirs, rtol=1e-4, scale=1e-4)


DEPTHWISE_GEOMETRIES = {  # strides, dilation, padding (per axis), input side
    "strided": (2, 1, (1, 1), 7),  # shifted views
    "stride 1": (1, 1, (1, 1), 7),  # flat taps
    "stride 1, dilated, uneven padding": (1, 2, (2, 0), 6),
    "stride 1, valid": (1, 1, (0, 0), 5),
}


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("multiplier", [1, 2, 3])
@pytest.mark.parametrize("chunk", [conv.SINGLE_CHANNEL_CHUNK_BYTES, 100])
@pytest.mark.parametrize("geometry", list(DEPTHWISE_GEOMETRIES))
def test_depthwise_matches_torch(rank, multiplier, chunk, geometry, kernel_path):
    """groups == C_in with the Keras depthwise kernel (*k, C_in, m) -> (*k, 1, C_in*m).

    Compiled and NumPy (``kernel_path``); in 3-d only NumPy's runs.
    """
    stride, dilation, pad, side = DEPTHWISE_GEOMETRIES[geometry]
    rng = np.random.default_rng(rank * 10 + multiplier)
    c_in = 4
    x = rng.standard_normal((3, *(side,) * rank, c_in), dtype=np.float32)
    depthwise = rng.standard_normal((*(3,) * rank, c_in, multiplier), dtype=np.float32)
    kernel = depthwise.reshape(*(3,) * rank, 1, c_in * multiplier)
    bias = rng.standard_normal(c_in * multiplier, dtype=np.float32)
    strides, dilations, padding = (stride,) * rank, (dilation,) * rank, (pad,) * rank
    out = (side + sum(pad) - dilation * 2 - 1) // stride + 1
    grad_y = rng.standard_normal((3, *(out,) * rank, c_in * multiplier), dtype=np.float32)
    ours = _run_chunked(
        chunk, _conv_and_grads, x, kernel, bias, strides, padding, dilations, c_in, grad_y
    )
    reference = _torch_conv(x, kernel, bias, strides, padding, dilations, c_in, grad_y)
    _close(ours[0], reference[0])
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        _close(mine, theirs, rtol=1e-4, scale=1e-4)


@pytest.mark.parametrize(
    "c_in, groups, name",
    [(1, 1, "SINGLE_CHANNEL_CHUNK_BYTES"), (4, 4, "DEPTHWISE_CHUNK_BYTES"), (4, 2, "CHUNK_BYTES")],
)
def test_chunk_sizes_set_on_ops_conv_reach_every_path(monkeypatch, c_in, groups, name):
    """The paths live in their own modules: sizes set on ``convlens.ops.conv`` must reach them.

    (The compiled depthwise loops work row by row and take no chunk size: switched off here.)
    """
    monkeypatch.setattr(compiled, "ENABLED", False)
    budgets = []
    chunks = Geometry.chunks

    def recording_chunks(self, bytes_per_pixel, budget, samples=None):
        budgets.append(budget)
        return chunks(self, bytes_per_pixel, budget, samples)

    monkeypatch.setattr(Geometry, "chunks", recording_chunks)
    sizes = {"CHUNK_BYTES": 1001, "SINGLE_CHANNEL_CHUNK_BYTES": 1002, "DEPTHWISE_CHUNK_BYTES": 1003}
    for constant, size in sizes.items():
        monkeypatch.setattr(conv, constant, size)
    x = np.ones((2, 6, 6, c_in), np.float32)
    kernel = np.ones((3, 3, c_in // groups, 4), np.float32)
    y, cache = conv.conv_forward(
        x, kernel, np.zeros(4, np.float32), (1, 1), ((1, 1), (1, 1)), (1, 1), groups
    )
    conv.conv_backward(np.ones_like(y), cache)
    assert budgets == [sizes[name]] * 3  # forward, grad_kernel, grad_input


@st.composite
def transpose_cases(draw):
    rank = draw(st.integers(1, 3))
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if draw(st.booleans()):
        strides, dilation = tuple(draw(st.integers(1, 4)) for _ in range(rank)), (1,) * rank
    else:
        strides, dilation = (1,) * rank, tuple(draw(st.integers(1, 2)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, MAX_SIDE[rank] - 1)) for _ in range(rank))
    crop = []
    for axis in range(rank):
        full = (spatial[axis] - 1) * strides[axis] + dilation[axis] * (k[axis] - 1) + 1
        before = draw(st.integers(0, min(2, full - 1)))
        after = draw(st.integers(-2, min(2, full - before - 1)))
        crop.append((before, after))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, spatial, c_in, c_out, k, strides, dilation, tuple(crop), seed


def _torch_conv_transpose(x, kernel, bias, strides, crop, dilation, grad_y):
    rank = x.ndim - 2
    x_t, w_t = _to_torch(x), _kernel_to_torch(kernel)
    b_t = torch.from_numpy(bias.copy()).requires_grad_()
    full = TORCH_CONV_T[rank](x_t, w_t, None, stride=strides, dilation=dilation)
    y_t = F.pad(full, _torch_pad([(-a, -b) for a, b in crop]))
    y_t = y_t + b_t.reshape(1, -1, *(1,) * rank)
    y_t.backward(_to_torch(grad_y).detach())
    return _from_torch(y_t), _from_torch(x_t.grad), _kernel_from_torch(w_t.grad), b_t.grad.numpy()


def _transpose_and_grads(x, kernel, bias, strides, crop, dilation, grad_y):
    y, cache = conv.conv_transpose_forward(x, kernel, bias, strides, crop, dilation)
    return (y, *conv.conv_transpose_backward(grad_y, cache))


def _check_transpose(n, spatial, c_in, c_out, k, strides, dilation, crop, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spatial, c_in), dtype=np.float32)
    kernel = rng.standard_normal((*k, c_out, c_in), dtype=np.float32)
    bias = rng.standard_normal(c_out, dtype=np.float32)
    out = tuple(
        (s - 1) * st + d * (kk - 1) + 1 - a - b
        for s, kk, st, d, (a, b) in zip(spatial, k, strides, dilation, crop, strict=True)
    )
    grad_y = rng.standard_normal((n, *out, c_out), dtype=np.float32)
    ours = _transpose_and_grads(x, kernel, bias, strides, crop, dilation, grad_y)
    reference = _torch_conv_transpose(x, kernel, bias, strides, crop, dilation, grad_y)
    _close(ours[0], reference[0])
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        _close(mine, theirs, rtol=1e-4, scale=1e-4)


@settings(max_examples=40, deadline=None)
@given(transpose_cases())
def test_conv_transpose_matches_torch(case):
    _check_transpose(*case)


@pytest.mark.parametrize(
    "length, kernel, padding, stride",
    [(5, 2, "valid", 3), (5, 1, "valid", 2), (4, 2, "same", 3), (6, 3, "same", 4)],
)
def test_conv_transpose_negative_crop_from_keras_shapes(length, kernel, padding, stride):
    """Keras 'valid'/'same' with stride > kernel: the output is longer than the full result."""
    crop = shapes.deconv_padding_amounts(length, kernel, padding, stride)
    assert crop[1] < 0
    expected = shapes.deconv_output_length(length, kernel, padding, stride)
    x = np.ones((1, length, length, 2), np.float32)
    y, _ = conv.conv_transpose_forward(
        x, np.ones((kernel, kernel, 3, 2), np.float32), None, (stride,) * 2, (crop,) * 2, (1, 1)
    )
    assert y.shape == (1, expected, expected, 3)
    assert np.all(y[:, -1] == 0) and np.all(y[:, :, -1] == 0)
    _check_transpose(
        2,
        (length, length),
        2,
        3,
        (kernel, kernel),
        (stride,) * 2,
        (1, 1),
        (crop, crop),
        seed=length,
    )


def _numeric_gradient(loss, array, eps=1e-6):
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        up = loss()
        array[index] = saved - eps
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("groups, strides", [(1, (2, 1)), (2, (2, 1)), (2, (1, 1))])
def test_conv_gradients_by_finite_differences(groups, strides, kernel_path):
    """float64 in, float64 out: the kernels keep float64 so central differences are exact.

    ``groups == C_in == 2`` is depthwise: compiled loops, or NumPy's shifted views with
    strides and flat taps without.
    """
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((2, 5, 4, 2))
    kernel = rng.standard_normal((2, 3, 2 // groups, 4))
    bias = rng.standard_normal(4)
    args = (strides, ((1, 0), (1, 1)), (1, 1), groups)
    y, cache = conv.conv_forward(x, kernel, bias, *args)
    assert y.dtype == np.float64
    grad_y = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(conv.conv_forward(x, kernel, bias, *args)[0] * grad_y))

    grad_x, grad_kernel, grad_bias = conv.conv_backward(grad_y, cache)
    np.testing.assert_allclose(grad_x, _numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_kernel, _numeric_gradient(loss, kernel), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_bias, _numeric_gradient(loss, bias), rtol=1e-6, atol=1e-8)


def test_conv_transpose_gradients_by_finite_differences():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 2, 2))
    kernel = rng.standard_normal((2, 3, 3, 2))
    bias = rng.standard_normal(3)
    args = ((2, 3), ((1, 0), (0, -2)), (1, 1))
    y, cache = conv.conv_transpose_forward(x, kernel, bias, *args)
    grad_y = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(conv.conv_transpose_forward(x, kernel, bias, *args)[0] * grad_y))

    grad_x, grad_kernel, grad_bias = conv.conv_transpose_backward(grad_y, cache)
    np.testing.assert_allclose(grad_x, _numeric_gradient(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_kernel, _numeric_gradient(loss, kernel), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_bias, _numeric_gradient(loss, bias), rtol=1e-6, atol=1e-8)


def test_float32_stays_float32_and_integers_become_float32():
    x = np.arange(2 * 6 * 6 * 3).reshape(2, 6, 6, 3)
    kernel = np.ones((3, 3, 3, 4), np.float32)
    y, cache = conv.conv_forward(x, kernel, None, (1, 1), ((0, 0), (0, 0)), (1, 1))
    assert y.dtype == np.float32
    grad_x, grad_kernel, grad_bias = conv.conv_backward(np.ones_like(y), cache, False)
    assert grad_x is None and grad_bias is None and grad_kernel.dtype == np.float32


def test_bad_groups_and_too_small_input_raise_value_error():
    x = np.zeros((1, 5, 5, 4), np.float32)
    with pytest.raises(ValueError, match="groups=3"):
        conv.conv_forward(
            x, np.zeros((3, 3, 1, 6), np.float32), None, (1, 1), ((0, 0), (0, 0)), (1, 1), groups=3
        )
    with pytest.raises(ValueError, match="does not fit"):
        conv.conv_forward(
            x, np.zeros((7, 3, 4, 2), np.float32), None, (1, 1), ((0, 0), (0, 0)), (1, 1)
        )


@pytest.mark.parametrize("rank, kh", [(1, None), (2, 1), (2, 2), (2, 3), (2, 4)])
@pytest.mark.parametrize("kw", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_single_channel_forward_compiled_equals_numpy_in_float64(
    monkeypatch, rank, kh, kw, stride, dilation
):
    """One input channel: the compiled loops (one block of nine taps up to 3x3, rows of
    three taps beyond, zeros for the missing ones) compute what the NumPy GEMM does, in
    float64."""
    rng = np.random.default_rng(kw * 10 + stride)
    x = rng.standard_normal((3, *(13,) * rank, 1))
    kernel = rng.standard_normal((*(() if kh is None else (kh,)), kw, 1, 5))
    bias = rng.standard_normal(5)
    args = ((stride,) * rank, ((1, 2),) * rank, (dilation,) * rank)
    monkeypatch.setattr(compiled, "ENABLED", True)
    ours, _ = conv.conv_forward(x, kernel, bias, *args)
    monkeypatch.setattr(compiled, "ENABLED", False)
    numpy_path, _ = conv.conv_forward(x, kernel, bias, *args)
    assert ours.dtype == np.float64 and ours.shape == numpy_path.shape
    np.testing.assert_allclose(ours, numpy_path, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_without_input_gradient(kernel_path, multiplier):
    """A first layer wants no input gradient: the kernel's is the same either way."""
    rng = np.random.default_rng(multiplier)
    x = rng.standard_normal((3, 7, 6, 4), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 1, 4 * multiplier), dtype=np.float32)
    args = ((1, 2), ((1, 1), (0, 2)), (1, 1), 4)
    y, cache = conv.conv_forward(x, kernel, None, *args)
    grad_y = rng.standard_normal(y.shape, dtype=np.float32)
    grad_x, grad_kernel, _ = conv.conv_backward(grad_y, cache, need_input_grad=True)
    none, alone, _ = conv.conv_backward(grad_y, cache, need_input_grad=False)
    assert grad_x is not None and none is None
    np.testing.assert_array_equal(alone, grad_kernel)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("chunk", [conv.CHUNK_BYTES, 64])
def test_pointwise_conv_matches_torch(rank, padding, chunk):
    """1x1, stride 1, one group: the patches are the input rows and the input gradient is
    written in place, with no copy and no col2im."""
    rng = np.random.default_rng(rank + 3 * padding)
    x = rng.standard_normal((3, *(5,) * rank, 6), dtype=np.float32)
    kernel = rng.standard_normal((*(1,) * rank, 6, 4), dtype=np.float32)
    bias = rng.standard_normal(4, dtype=np.float32)
    pads = ((padding, padding),) * rank
    side = 5 + 2 * padding
    grad_y = rng.standard_normal((3, *(side,) * rank, 4), dtype=np.float32)
    args = (x, kernel, bias, (1,) * rank, pads, (1,) * rank, 1, grad_y)
    ours = _run_chunked(chunk, _conv_and_grads, *args)
    reference = _torch_conv(*args)
    _close(ours[0], reference[0])
    for mine, theirs in zip(ours[1:], reference[1:], strict=True):
        _close(mine, theirs, rtol=1e-4, scale=1e-4)
