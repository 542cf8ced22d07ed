"""Merge operations against PyTorch autograd and Keras's merge layers (torch backend)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from convlens.ops import merge

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

# Keras folds left to right; torch.maximum/minimum split a tie's gradient half and half.
TORCH_FOLD = {
    "add": torch.add,
    "multiply": torch.mul,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}
OURS = {
    "add": (merge.add_forward, merge.add_backward),
    "subtract": (merge.subtract_forward, merge.subtract_backward),
    "multiply": (merge.multiply_forward, merge.multiply_backward),
    "average": (merge.average_forward, merge.average_backward),
    "maximum": (merge.maximum_forward, merge.maximum_backward),
    "minimum": (merge.minimum_forward, merge.minimum_backward),
}


def _torch_merge(kind, tensors):
    if kind == "subtract":
        return tensors[0] - tensors[1]
    if kind == "average":
        total = tensors[0]
        for t in tensors[1:]:
            total = total + t
        return total / len(tensors)
    y = tensors[0]
    for t in tensors[1:]:
        y = TORCH_FOLD[kind](y, t)
    return y


@st.composite
def merge_cases(draw):
    kind = draw(st.sampled_from(sorted(OURS)))
    count = 2 if kind == "subtract" else draw(st.integers(1, 4))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    shapes = []
    for _ in range(count):
        # some inputs broadcast: a size-1 axis, or fewer leading axes
        s = [n if draw(st.booleans()) or n == 1 else (1 if draw(st.booleans()) else n)
             for n in shape]
        drop = draw(st.integers(0, len(s) - 1)) if draw(st.booleans()) else 0
        shapes.append(tuple(s[drop:]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    # small integers make ties common, which is what the max/min rule is about
    values = st.integers(-2, 2).map(float) if draw(st.booleans()) else st.floats(-3, 3, width=32)
    arrays = [draw(hnp.arrays(dtype, s, elements=values)) for s in shapes]
    return kind, arrays


@settings(max_examples=150, deadline=None)
@given(merge_cases(), st.integers(0, 2**31))
def test_merges_match_torch(case, seed):
    kind, arrays = case
    forward, backward = OURS[kind]
    y, cache = forward(arrays)
    grad_y = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    grads = backward(grad_y, cache)

    tensors = [torch.from_numpy(a.copy()).requires_grad_() for a in arrays]
    y_ref = _torch_merge(kind, tensors)
    y_ref.backward(torch.from_numpy(grad_y))
    assert y.dtype == arrays[0].dtype
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert len(grads) == len(arrays)
    for a, g, t in zip(arrays, grads, tensors):
        assert g.shape == a.shape and g.dtype == a.dtype
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["Maximum", "Minimum", "Multiply", "Average", "Add"])
def test_three_way_ties_match_keras_layers(name):
    """All three inputs equal: the folds give the last input 1/2 and the first two 1/4."""
    rng = np.random.default_rng(0)
    a = rng.integers(-1, 2, (2, 3, 4)).astype(np.float32)
    arrays = [a, a.copy(), np.where(rng.random(a.shape) < 0.5, a, a + 1).astype(np.float32)]
    tensors = [torch.from_numpy(x.copy()).requires_grad_() for x in arrays]
    y_ref = getattr(keras.layers, name)()(tensors)
    grad_y = rng.standard_normal(a.shape).astype(np.float32)
    y_ref.backward(torch.from_numpy(grad_y))
    forward, backward = OURS[name.lower()]
    y, cache = forward(arrays)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-6)
    for g, t in zip(backward(grad_y, cache), tensors):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_concatenate_matches_torch(data):
    rank = data.draw(st.integers(1, 4))
    axis = data.draw(st.integers(-rank, rank - 1))
    base = list(data.draw(hnp.array_shapes(min_dims=rank, max_dims=rank, max_side=4)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    arrays = []
    for _ in range(data.draw(st.integers(1, 4))):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 3))
        arrays.append(np.random.default_rng(len(arrays)).standard_normal(shape).astype(dtype))
    y, cache = merge.concatenate_forward(arrays, axis)
    grad_y = np.random.default_rng(9).standard_normal(y.shape).astype(dtype)
    grads = merge.concatenate_backward(grad_y, cache)
    tensors = [torch.from_numpy(a).requires_grad_() for a in arrays]
    y_ref = torch.cat(tensors, dim=axis)
    y_ref.backward(torch.from_numpy(grad_y))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref.detach().numpy())
    for a, g, t in zip(arrays, grads, tensors):
        assert g.shape == a.shape
        np.testing.assert_array_equal(g, t.grad.numpy())


def test_mixed_dtypes_compute_in_float64_and_ints_in_float32():
    y, _ = merge.add_forward([np.ones(2, np.float32), np.ones(2, np.float64)])
    assert y.dtype == np.float64
    y, _ = merge.multiply_forward([np.ones(2, np.int64), np.ones(2, np.int32)])
    assert y.dtype == np.float32


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match=r"equal shapes .* received shapes \(2, 3\), \(2, 4\)"):
        merge.add_forward([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="exactly 2 inputs; received 3"):
        merge.subtract_forward([np.ones(2)] * 3)
    with pytest.raises(TypeError, match="list of arrays; received ndarray"):
        merge.maximum_forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"except the concatenation axis \(1\) must match; "
                                         r"received shapes \(2, 3\), \(3, 3\)"):
        merge.concatenate_forward([np.ones((2, 3)), np.ones((3, 3))], axis=1)
    with pytest.raises(ValueError, match="axis=2"):
        merge.concatenate_forward([np.ones((2, 3)), np.ones((2, 3))], axis=2)
    with pytest.raises(ValueError, match="at least 1 inputs; received 0"):
        merge.average_forward([])
