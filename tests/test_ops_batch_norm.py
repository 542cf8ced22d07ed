"""Batch normalization against PyTorch (``F.batch_norm``, autograd) and Keras's moving averages.

Training standardises with the batch's statistics; inference (and a frozen layer) with fixed
ones. torch wants the channels on axis 1, so channels-last inputs are moved there for it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlens.ops.normalization import batch_norm_backward, batch_norm_forward, moving_average

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
F = torch.nn.functional

TOL = {np.float32: (1e-4, 1e-4), np.float64: (1e-10, 1e-10)}


@st.composite
def batch_norm_cases(draw):
    rank = draw(st.integers(2, 5))  # (N, C) up to (N, D, H, W, C)
    shape = [draw(st.integers(2, 4))] + [draw(st.integers(1, 4)) for _ in range(rank - 1)]
    axis = draw(st.sampled_from([1, -1])) if rank > 2 else 1
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    channels = shape[axis]
    gamma = rng.standard_normal(channels).astype(dtype) if draw(st.booleans()) else None
    beta = rng.standard_normal(channels).astype(dtype) if draw(st.booleans()) else None
    return x, axis, gamma, beta, draw(st.sampled_from([1e-3, 1e-5])), rng


def _torch(a, requires_grad=False):
    return None if a is None else torch.from_numpy(a.copy()).requires_grad_(requires_grad)


def _channels_first(x, axis):
    return np.moveaxis(x, axis, 1)


def _check(x, axis, gamma, beta, epsilon, rng, fixed):
    dtype = x.dtype.type
    channels = x.shape[axis]
    statistics = {}
    if fixed:
        statistics = {"mean": rng.standard_normal(channels).astype(dtype),
                      "variance": rng.uniform(0.2, 3.0, channels).astype(dtype)}
    xt = _torch(_channels_first(x, axis), True)
    gt, bt = _torch(gamma, True), _torch(beta, True)
    yt = F.batch_norm(xt, _torch(statistics.get("mean")), _torch(statistics.get("variance")),
                      gt, bt, training=not fixed, eps=epsilon)
    grad_y = rng.standard_normal(x.shape).astype(dtype)
    yt.backward(_torch(_channels_first(grad_y, axis)))

    y, cache, mean, variance = batch_norm_forward(x, axis, gamma, beta, epsilon, **statistics)
    grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_y, cache)
    assert y.dtype == grad_x.dtype == x.dtype  # float64 stays float64
    rtol, atol = TOL[dtype]
    back = lambda t: np.moveaxis(t.detach().numpy(), 1, axis)  # noqa: E731
    np.testing.assert_allclose(y, back(yt), rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_x, back(xt.grad), rtol=rtol * 10, atol=atol * 10)
    for ours, reference in ((grad_gamma, gt), (grad_beta, bt)):
        if reference is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, reference.grad.numpy(), rtol=rtol * 10,
                                       atol=atol * 10)
    if fixed:
        np.testing.assert_array_equal(mean, statistics["mean"])
        np.testing.assert_array_equal(variance, statistics["variance"])
    else:  # the batch's mean and population (biased) variance, per channel
        axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=axes), rtol=rtol,
                                   atol=atol)
        np.testing.assert_allclose(variance, x.astype(np.float64).var(axis=axes), rtol=rtol,
                                   atol=atol)


@settings(max_examples=50, deadline=None)
@given(batch_norm_cases())
def test_training_matches_torch(case):
    _check(*case, fixed=False)


@settings(max_examples=30, deadline=None)
@given(batch_norm_cases())
def test_fixed_statistics_match_torch(case):
    _check(*case, fixed=True)


def test_moving_averages_are_keras():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 3, 3, 4)).astype(np.float32)
    layer = keras.layers.BatchNormalization(momentum=0.9)
    layer.build(x.shape)
    layer.moving_mean.assign(rng.standard_normal(4).astype(np.float32))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, 4).astype(np.float32))
    before = (layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
    layer(x, training=True)
    _, _, mean, variance = batch_norm_forward(x, -1, epsilon=1e-3)
    np.testing.assert_allclose(moving_average(before[0], mean, 0.9), layer.moving_mean.numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moving_average(before[1], variance, 0.9),
                               layer.moving_variance.numpy(), rtol=1e-5, atol=1e-6)


def test_errors_name_what_was_wrong():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="not the batch axis"):
        batch_norm_forward(x, 0)
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        batch_norm_forward(x, 1, mean=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"`gamma` must have 3 values"):
        batch_norm_forward(x, 1, gamma=np.ones(2, np.float32))
