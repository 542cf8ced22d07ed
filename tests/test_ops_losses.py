"""Losses against keras.losses (torch backend, default reduction) and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.ops import losses as L

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

RTOL, GRAD_RTOL = 1e-5, 1e-4

# Keras warns about a single class; hypothesis draws that edge case on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:In loss categorical_crossentropy")


@st.composite
def predictions(draw, min_classes=1):
    """A seeded generator and a prediction shape ``(N, ..., C)``."""
    lead = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    classes = draw(st.integers(min_classes, 6))
    return np.random.default_rng(draw(st.integers(0, 2**31))), (*lead, classes)


def _probabilities(rng, shape, normalised=True):
    p = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    p[rng.uniform(size=shape) < 0.15] = 1e-9  # some entries fall under the 1e-7 clip
    if normalised:
        p /= p.sum(axis=-1, keepdims=True)
    return p


def _keras(loss, y_true, y_pred):
    """Keras's loss value and torch autograd's gradient wrt ``y_pred``."""
    pred = torch.from_numpy(np.ascontiguousarray(y_pred)).requires_grad_()
    value = loss(torch.from_numpy(np.ascontiguousarray(y_true)), pred)
    value.backward()
    return value.item(), pred.grad.numpy()


def _keras_rows(loss, labels, y_pred):
    """:func:`_keras` on ``(M, C)`` rows: torch's nll_loss backward rejects the non-contiguous
    gradient Keras makes for rank >= 4 outputs. The mean over rows is the same number.
    """
    rows = y_pred.reshape(-1, y_pred.shape[-1])  # (M, C)
    keep_axis = labels.ndim == y_pred.ndim  # (N, ..., 1) labels
    flat = labels.reshape(-1, 1) if keep_axis else labels.reshape(-1)  # (M, 1) or (M,)
    value, grad = _keras(loss, flat, rows)
    return value, grad.reshape(y_pred.shape)


def _check(ours, reference, y_pred):
    (loss, grad), (ref_loss, ref_grad) = ours, reference
    assert isinstance(loss, float)
    assert grad.shape == y_pred.shape and grad.dtype == y_pred.dtype
    # atol: torch computes BCE-with-logits as log(1 + tiny) in float32, off by ~1 ulp of 1
    np.testing.assert_allclose(loss, ref_loss, rtol=RTOL, atol=3e-7)
    scale = np.abs(ref_grad).max() + 1e-12
    # p - 1 for a confident true class cancels in float32 on both sides: a few ulps of 1,
    # divided by the number of rows the mean runs over
    rows = y_pred.size // y_pred.shape[-1]
    cancellation = 4 * np.finfo(np.float32).eps / rows
    np.testing.assert_allclose(grad, ref_grad, rtol=GRAD_RTOL, atol=max(1e-6 * scale, cancellation))


@settings(max_examples=30, deadline=None)
@given(predictions(min_classes=2), st.booleans(), st.booleans(), st.booleans())
def test_sparse_categorical_crossentropy_matches_keras(case, from_logits, normalised, keep_axis):
    rng, shape = case
    if from_logits:
        y_pred = (rng.standard_normal(shape) * 5).astype(np.float32)
    else:
        y_pred = _probabilities(rng, shape, normalised)
    labels = rng.integers(0, shape[-1], shape[:-1])
    if keep_axis:
        labels = labels[..., None]  # (N, ..., 1) is accepted too
    ours = L.sparse_categorical_crossentropy(labels, y_pred, from_logits)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits)
    reference = _keras_rows(loss, labels, y_pred)
    _check(ours, reference, y_pred)


@settings(max_examples=30, deadline=None)
@given(predictions(), st.booleans(), st.sampled_from([0.0, 0.1, 0.4]), st.booleans())
def test_categorical_crossentropy_matches_keras(case, from_logits, smoothing, soft_targets):
    rng, shape = case
    if from_logits:
        y_pred = (rng.standard_normal(shape) * 5).astype(np.float32)
    else:
        y_pred = _probabilities(rng, shape, normalised=bool(rng.integers(2)))
    if soft_targets:
        y_true = rng.uniform(0, 1, shape).astype(np.float32)
    else:
        y_true = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
    ours = L.categorical_crossentropy(y_true, y_pred, from_logits, smoothing)
    loss = keras.losses.CategoricalCrossentropy(from_logits, label_smoothing=smoothing)
    _check(ours, _keras(loss, y_true, y_pred), y_pred)


@settings(max_examples=30, deadline=None)
@given(predictions(), st.booleans(), st.sampled_from([0.0, 0.2]), st.booleans())
def test_binary_crossentropy_matches_keras(case, from_logits, smoothing, squeeze_target):
    rng, shape = case
    if from_logits:
        y_pred = (rng.standard_normal(shape) * 5).astype(np.float32)
    else:
        y_pred = rng.uniform(0, 1, shape).astype(np.float32)
        y_pred[rng.uniform(size=shape) < 0.1] = 0.0  # clipped on both sides
        y_pred[rng.uniform(size=shape) < 0.1] = 1.0
    y_true = rng.integers(0, 2, shape).astype(np.float32)
    if squeeze_target and shape[-1] == 1:
        y_true = y_true[..., 0]  # (N, ...) targets for (N, ..., 1) outputs
    ours = L.binary_crossentropy(y_true, y_pred, from_logits, smoothing)
    loss = keras.losses.BinaryCrossentropy(from_logits, label_smoothing=smoothing)
    _check(ours, _keras(loss, y_true, y_pred), y_pred)


@settings(max_examples=30, deadline=None)
@given(predictions(), st.sampled_from(["mse", "mae"]))
def test_regression_losses_match_keras(case, name):
    rng, shape = case
    y_pred = rng.standard_normal(shape).astype(np.float32)
    y_true = rng.standard_normal(shape).astype(np.float32)
    y_true.flat[0] = y_pred.flat[0]  # |0| has gradient 0 in both
    ours_fn = L.mean_squared_error if name == "mse" else L.mean_absolute_error
    loss = keras.losses.MeanSquaredError() if name == "mse" else keras.losses.MeanAbsoluteError()
    _check(ours_fn(y_true, y_pred), _keras(loss, y_true, y_pred), y_pred)


@settings(max_examples=30, deadline=None)
@given(predictions(min_classes=2), st.booleans())
def test_fused_softmax_crossentropy_matches_keras_softmax_then_loss(case, sparse):
    """Same loss and logits-gradient as Keras's softmax followed by the probability loss."""
    rng, shape = case
    logits = rng.uniform(-4, 4, shape).astype(np.float32)  # every probability above 1e-7
    labels = rng.integers(0, shape[-1], shape[:-1])
    y_true = labels if sparse else np.eye(shape[-1], dtype=np.float32)[labels]
    ours = L.softmax_crossentropy_from_logits(y_true, logits, sparse)

    rows = logits.reshape(-1, shape[-1])  # (M, C); see _keras_rows
    z = torch.from_numpy(rows).requires_grad_()
    loss = (keras.losses.SparseCategoricalCrossentropy if sparse else
            keras.losses.CategoricalCrossentropy)()  # fmt: skip
    targets = y_true.reshape(rows.shape[0], *y_true.shape[logits.ndim - 1 :])  # (M,) or (M, C)
    value = loss(torch.from_numpy(targets), keras.activations.softmax(z))
    value.backward()
    _check(ours, (value.item(), z.grad.numpy().reshape(shape)), logits)


def test_fused_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 0.0]], np.float32)
    loss, grad = L.softmax_crossentropy_from_logits(np.array([1, 1]), logits, sparse=True)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, 1000.0, rtol=1e-6)  # (2000 + 0) / 2
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


def test_fused_soft_targets_gradient_uses_target_mass():
    logits = np.zeros((1, 2), np.float32)
    _, grad = L.softmax_crossentropy_from_logits(np.array([[2.0, 0.0]]), logits, sparse=False)
    np.testing.assert_allclose(grad, [[-1.0, 1.0]])  # softmax * 2 - t


# ----------------------------------------------------------------------- label validation


def test_sparse_labels_out_of_range_name_value_position_and_range():
    y_pred = np.full((4, 3), 1 / 3, np.float32)
    with pytest.raises(ValueError) as info:
        L.sparse_categorical_crossentropy(np.array([0, 3, 1, -1]), y_pred)
    message = str(info.value)
    assert "[0, 3)" in message
    assert "3 at position 1" in message and "-1 at position 3" in message


def test_sparse_labels_must_be_whole_numbers():
    with pytest.raises(ValueError, match=r"not whole numbers: 1\.5 at position 0"):
        L.check_sparse_labels(np.array([1.5, 2.0]), 3)
    with pytest.raises(ValueError, match="nan at position"):
        L.check_sparse_labels(np.array([np.nan]), 3)
    np.testing.assert_array_equal(L.check_sparse_labels(np.array([2.0, 0.0]), 3), [2, 0])
    with pytest.raises(TypeError, match="dtype"):
        L.check_sparse_labels(np.array(["a"]), 3)


def test_sparse_labels_report_multi_axis_positions_and_count():
    labels = np.full((2, 4), 7)
    with pytest.raises(ValueError, match=r"7 at position \(0, 0\).*\(and 3 more\)"):
        L.check_sparse_labels(labels, 5)


def test_fused_validates_labels_too():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        L.softmax_crossentropy_from_logits(np.array([2]), np.zeros((1, 2), np.float32), True)


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        L.mean_squared_error(np.zeros((4, 2)), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="one class index per prediction row"):
        L.sparse_categorical_crossentropy(np.zeros((4, 3), int), np.ones((4, 3), np.float32))


# ----------------------------------------------------------------------- finite differences


def _numeric_grad(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


def _cases():
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.05, 1.0, (3, 4))  # unnormalised, away from the clip
    logits = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    onehot = np.eye(4)[labels]
    soft = rng.uniform(0, 1, (3, 4))
    binary = rng.integers(0, 2, (3, 4)).astype(np.float64)
    targets = rng.standard_normal((3, 4))
    return [
        ("sparse probs", lambda p: L.sparse_categorical_crossentropy(labels, p), probs),
        ("sparse logits", lambda p: L.sparse_categorical_crossentropy(labels, p, True), logits),
        ("cce probs", lambda p: L.categorical_crossentropy(soft, p, False, 0.1), probs),
        ("cce logits", lambda p: L.categorical_crossentropy(onehot, p, True), logits),
        ("fused dense", lambda p: L.softmax_crossentropy_from_logits(soft, p, False), logits),
        ("bce probs", lambda p: L.binary_crossentropy(binary, p * 0.9), probs),
        ("bce logits", lambda p: L.binary_crossentropy(binary, p, True, 0.1), logits),
        ("mse", lambda p: L.mean_squared_error(targets, p), logits),
        ("mae", lambda p: L.mean_absolute_error(targets, p), logits),
    ]


@pytest.mark.parametrize("name, fn, x", _cases(), ids=[c[0] for c in _cases()])
def test_finite_differences_float64(name, fn, x):
    loss, grad = fn(x)
    assert grad.dtype == np.float64
    if name == "bce probs":
        grad = grad * 0.9  # the lambda scales its input
    numeric = _numeric_grad(lambda v: fn(v)[0], x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------- sample weights


def _weighted_cases():
    """(name, ours(sample_weight), keras loss, y_true, y_pred); N = 6 samples of 4 units."""
    rng = np.random.default_rng(5)
    probs = _probabilities(rng, (6, 4))
    logits = (rng.standard_normal((6, 4)) * 3).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4, dtype=np.float32)[labels]
    binary = rng.integers(0, 2, (6, 4)).astype(np.float32)
    targets = rng.standard_normal((6, 4)).astype(np.float32)
    k = keras.losses
    return [
        ("sparse probs", lambda w: L.sparse_categorical_crossentropy(labels, probs, False, w),
         k.SparseCategoricalCrossentropy(), labels, probs),
        ("sparse logits", lambda w: L.sparse_categorical_crossentropy(labels, logits, True, w),
         k.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        ("fused sparse", lambda w: L.softmax_crossentropy_from_logits(labels, logits, True,
                                                                      sample_weight=w),
         k.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        ("cce probs", lambda w: L.categorical_crossentropy(onehot, probs, False, 0.1, w),
         k.CategoricalCrossentropy(label_smoothing=0.1), onehot, probs),
        ("fused one-hot", lambda w: L.softmax_crossentropy_from_logits(onehot, logits, False,
                                                                       sample_weight=w),
         k.CategoricalCrossentropy(from_logits=True), onehot, logits),
        ("bce probs", lambda w: L.binary_crossentropy(binary, probs, False, 0.0, w),
         k.BinaryCrossentropy(), binary, probs),
        ("bce logits", lambda w: L.binary_crossentropy(binary, logits, True, 0.0, w),
         k.BinaryCrossentropy(from_logits=True), binary, logits),
        ("mse", lambda w: L.mean_squared_error(targets, logits, w), k.MeanSquaredError(),
         targets, logits),
        ("mae", lambda w: L.mean_absolute_error(targets, logits, w), k.MeanAbsoluteError(),
         targets, logits),
    ]


@pytest.mark.parametrize("name, ours, loss, y_true, y_pred", _weighted_cases(),
                         ids=[c[0] for c in _weighted_cases()])
def test_sample_weight_matches_keras(name, ours, loss, y_true, y_pred):
    """Keras's sum_over_batch_size with weights: sum(w * loss) / N (not / sum(w)); each
    sample's gradient scaled by its weight; reduction='none' gives the weighted losses."""
    weights = np.array([0.0, 1.0, 2.5, 0.5, 1.0, 4.0], np.float32)
    pred = torch.from_numpy(y_pred.copy()).requires_grad_()
    value = loss(torch.from_numpy(y_true), pred, sample_weight=torch.from_numpy(weights))
    value.backward()
    _check(ours(weights), (value.item(), pred.grad.numpy()), y_pred)
    assert not np.allclose(ours(weights)[0], ours(None)[0])  # the weights mattered
    per_sample_loss = type(loss)(**{**loss.get_config(), "reduction": "none"})
    per_sample = keras.ops.convert_to_numpy(per_sample_loss(y_true, y_pred))
    np.testing.assert_allclose(ours(weights)[0], float(np.sum(per_sample * weights) / 6),
                               rtol=1e-5)


def test_reduction_none_returns_weighted_per_sample_losses():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    values, grad = L.sparse_categorical_crossentropy(np.array([0, 0, 1]), logits, True,
                                                     np.array([1.0, 2.0, 0.0]), "none")
    want = -np.log(np.exp(logits[[0, 1, 2], [0, 0, 1]]) / np.exp(logits).sum(1))
    np.testing.assert_allclose(values, want * [1, 2, 0], rtol=1e-6)
    assert grad.shape == logits.shape and not grad[2].any()  # weight 0: no gradient
    with pytest.raises(ValueError, match=r"one weight per sample, shape \(3,\)"):
        L.mean_squared_error(logits, logits, np.ones(2))
    with pytest.raises(ValueError, match="reduction"):
        L.mean_squared_error(logits, logits, reduction="sum")
