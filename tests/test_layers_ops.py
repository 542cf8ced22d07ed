"""Thin layers: ReLU, Dropout and BatchNormalization compute what Keras's layers compute,
through their ops, at the edges where a re-derivation would differ (x == threshold, a
clipped top, a frozen BatchNormalization inside fit)."""

from __future__ import annotations

import numpy as np
import pytest

from convlens import layers

keras = pytest.importorskip("keras")

EDGES = np.array([[-2, -1, -0.5, 0, 0.5, 1, 2, 3, 6, 7]], np.float32)


@pytest.mark.parametrize("options", [
    {}, {"threshold": 1.0}, {"max_value": 2.0, "threshold": 0.5}, {"max_value": 6.0},
    {"negative_slope": 0.1, "threshold": 0.5, "max_value": 6.0}, {"negative_slope": 0.3},
])
def test_relu_layer_equals_keras_at_the_edges(options):
    ours = layers.ReLU(**options)
    y = ours(EDGES, training=True)
    np.testing.assert_array_equal(y, keras.layers.ReLU(**options)(EDGES).detach().cpu().numpy())
    # the gradient: 1 on the identity part, the slope below the threshold, 0 where clipped
    import torch

    xt = torch.from_numpy(EDGES.copy()).requires_grad_()
    keras.layers.ReLU(**options)(xt).sum().backward()
    np.testing.assert_array_equal(ours.backward(np.ones_like(EDGES)), xt.grad.numpy())


def test_seeded_dropout_layer_draws_its_mask_from_its_own_seed():
    x = np.ones((4, 6), np.float32)
    y = layers.Dropout(0.5, seed=3)(x, training=True)
    keep = np.random.default_rng(3).random((4, 6), dtype=np.float32) >= 0.5
    np.testing.assert_array_equal(y, np.where(keep, 2.0, 0.0).astype(np.float32))
    with pytest.raises(ValueError, match="noise_shape"):
        layers.Dropout(0.5, noise_shape=(4, 5))(x, training=True)


def test_frozen_batch_normalization_uses_moving_statistics_as_keras():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 3, 2)).astype(np.float32)
    weights = [rng.standard_normal(2).astype(np.float32) for _ in range(3)]
    weights.append(rng.uniform(0.5, 2.0, 2).astype(np.float32))
    ours, theirs = layers.BatchNormalization(), keras.layers.BatchNormalization()
    ours.build(x.shape), theirs.build(x.shape)
    ours.set_weights(weights), theirs.set_weights(weights)
    ours.trainable = theirs.trainable = False
    y = ours(x, training=True)
    np.testing.assert_allclose(y, theirs(x, training=True).detach().cpu().numpy(), rtol=1e-5,
                               atol=1e-6)
    for a, b in zip(ours.get_weights(), weights):  # moving statistics unchanged
        np.testing.assert_array_equal(a, b)


def test_negative_relu_threshold_is_refused_as_keras_refuses_it():
    with pytest.raises(ValueError, match="cannot be None or a negative value"):
        keras.layers.ReLU(threshold=-0.2)
    with pytest.raises(ValueError, match=r"`threshold` must be a number >= 0.*threshold=-0.2"):
        layers.ReLU(threshold=-0.2)
