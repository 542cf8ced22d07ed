"""Upsampling against torch (F.interpolate, repeat_interleave) and Keras's UpSampling layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.ops.upsampling import upsample_backward, upsample_forward

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
F = torch.nn.functional

LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _torch_upsample(xt, size, interpolation):
    """``xt`` is (N, *spatial, C); torch works channels first."""
    rank = len(size)
    if interpolation == "nearest":
        y = xt
        for axis, factor in enumerate(size, start=1):
            y = torch.repeat_interleave(y, factor, dim=axis)
        return y
    channels_first = xt.movedim(-1, 1)
    out = [n * s for n, s in zip(xt.shape[1:-1], size)]
    y = F.interpolate(channels_first, size=out, mode=LINEAR_MODE[rank], align_corners=False)
    return y.movedim(1, -1)


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    size = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    shape = (draw(st.integers(1, 2)), *spatial, draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    interpolation = draw(st.sampled_from(["nearest", "bilinear"]))
    return shape, size, dtype, interpolation, draw(st.integers(0, 2**31))


@settings(max_examples=120, deadline=None)
@given(cases())
def test_upsampling_matches_torch(case):
    shape, size, dtype, interpolation, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    axes = tuple(range(1, len(size) + 1))
    y, cache = upsample_forward(x, size, axes, interpolation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = upsample_backward(grad_y, cache)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    y_ref = _torch_upsample(xt, size, interpolation)
    y_ref.backward(torch.from_numpy(grad_y))
    assert y.dtype == grad_x.dtype == dtype
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras_upsampling2d(interpolation, data_format):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    layer = keras.layers.UpSampling2D((2, 3), data_format=data_format,
                                      interpolation=interpolation)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    y, _ = upsample_forward(x, (2, 3), axes, interpolation)
    np.testing.assert_allclose(y, np.asarray(layer(x)), rtol=1e-6, atol=1e-6)


def test_keras_upsampling1d_and_3d_repeat():
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((2, 4, 3)).astype(np.float32)
    y1, _ = upsample_forward(x1, (3,), (1,))
    np.testing.assert_array_equal(y1, np.asarray(keras.layers.UpSampling1D(3)(x1)))
    x3 = rng.standard_normal((1, 2, 3, 2, 2)).astype(np.float32)
    y3, _ = upsample_forward(x3, (2, 1, 3), (1, 2, 3))
    np.testing.assert_array_equal(y3, np.asarray(keras.layers.UpSampling3D((2, 1, 3))(x3)))


def test_bad_arguments():
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"one positive int per axis in \(1, 2\); "
                                         r"received \(2, 0\)"):
        upsample_forward(x, (2, 0), (1, 2))
    with pytest.raises(ValueError, match="received 'bicubic'"):
        upsample_forward(x, (2, 2), (1, 2), "bicubic")
    with pytest.raises(ValueError, match=r"distinct axes .* received \(1, 1\)"):
        upsample_forward(x, (2, 2), (1, 1))
