"""Zero padding, cropping and permuting against torch autograd and Keras's layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convlens.ops import layout

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
F = torch.nn.functional


def _torch_pad(pairs):
    """Per-axis pairs -> F.pad's flat list, last axis first (negative values crop)."""
    return [v for pair in reversed(pairs) for v in pair]


@st.composite
def arrays_and_pairs(draw, crop: bool):
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=5, min_side=1, max_side=5))
    pairs = []
    for n in shape:
        before = draw(st.integers(0, n - 1 if crop else 3))
        after = draw(st.integers(0, n - 1 - before if crop else 3))
        pairs.append((before, after))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(draw(st.integers(0, 2**31))).standard_normal(shape).astype(dtype)
    return x, pairs


def _torch_check(x, pairs, sign, y, grad_fn):
    grad_y = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y_ref = F.pad(xt, _torch_pad([(sign * a, sign * b) for a, b in pairs]))
    y_ref.backward(torch.from_numpy(grad_y))
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, y_ref.detach().numpy())
    grad_x = grad_fn(grad_y)
    assert grad_x.shape == x.shape and grad_x.dtype == x.dtype
    np.testing.assert_array_equal(grad_x, xt.grad.numpy())


@settings(max_examples=60, deadline=None)
@given(arrays_and_pairs(crop=False))
def test_zero_pad_matches_torch(case):
    x, pairs = case
    y, cache = layout.zero_pad_forward(x, pairs)
    _torch_check(x, pairs, 1, y, lambda g: layout.zero_pad_backward(g, cache))


@settings(max_examples=60, deadline=None)
@given(arrays_and_pairs(crop=True))
def test_crop_matches_torch(case):
    x, pairs = case
    y, cache = layout.crop_forward(x, pairs)
    _torch_check(x, pairs, -1, y, lambda g: layout.crop_backward(g, cache))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_permute_matches_torch(data):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=5, max_side=4))
    dims = tuple(data.draw(st.permutations(range(1, len(shape)))))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y, cache = layout.permute_forward(x, dims)
    grad_y = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y_ref = xt.permute(0, *dims)
    y_ref.backward(torch.from_numpy(np.ascontiguousarray(grad_y)))
    np.testing.assert_array_equal(y, y_ref.detach().numpy())
    np.testing.assert_array_equal(layout.permute_backward(grad_y, cache), xt.grad.numpy())


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_keras_zero_padding_and_cropping_layers(data_format):
    rng = np.random.default_rng(3)
    first = data_format == "channels_first"
    for rank, pad, crop in [
        (1, (1, 2), (2, 1)),
        (2, ((1, 0), (2, 3)), ((0, 1), (2, 0))),
        (3, ((1, 2), (0, 1), (2, 2)), ((1, 0), (0, 2), (1, 1))),
    ]:
        x = rng.standard_normal((2, 5, 6, 4, 3)[: rank + 1] + (3,)).astype(np.float32)
        kwargs = {} if rank == 1 else {"data_format": data_format}
        if rank == 1 and first:
            continue  # the 1D layers have no data_format
        pairs = [pad] if rank == 1 else list(pad)
        crops = [crop] if rank == 1 else list(crop)
        spatial = (lambda p: [(0, 0), (0, 0), *p]) if first else (lambda p: [(0, 0), *p, (0, 0)])
        padded = getattr(keras.layers, f"ZeroPadding{rank}D")(pad, **kwargs)(x)
        np.testing.assert_array_equal(layout.zero_pad_forward(x, spatial(pairs))[0], padded)
        cropped = getattr(keras.layers, f"Cropping{rank}D")(crop, **kwargs)(x)
        np.testing.assert_array_equal(layout.crop_forward(x, spatial(crops))[0], cropped)


def test_keras_permute():
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5)).astype(np.float32)
    expected = keras.layers.Permute((3, 1, 2))(x)
    np.testing.assert_array_equal(layout.permute_forward(x, (3, 1, 2))[0], expected)


def test_bad_arguments():
    x = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"per axis of the input of shape \(1, 4, 3\); "
                                         r"received \(\(0, 0\), \(1, 1\)\)"):
        layout.zero_pad_forward(x, [(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="pair of ints >= 0"):
        layout.crop_forward(x, [(0, 0), (-1, 0), (0, 0)])
    with pytest.raises(ValueError, match=r"cropping .* leaves no values"):
        layout.crop_forward(x, [(0, 0), (2, 2), (0, 0)])
    with pytest.raises(ValueError, match=r"permutation of 1..2 .* received \(1, 1\)"):
        layout.permute_forward(x, (1, 1))
