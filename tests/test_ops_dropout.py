"""Dropout masks: Keras's noise shapes and scaling, spatial masks per channel and sample."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.ops import dropout

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")


@pytest.mark.parametrize(
    "layer,shape,channel_axis",
    [
        ("SpatialDropout1D", (2, 5, 3), -1),
        ("SpatialDropout2D", (2, 4, 5, 3), -1),
        ("SpatialDropout2D", (2, 3, 4, 5), 1),
        ("SpatialDropout3D", (2, 3, 4, 5, 3), -1),
        ("SpatialDropout3D", (2, 3, 4, 5, 3), 1),
    ],
)
def test_spatial_noise_shape_is_keras(layer, shape, channel_axis):
    kwargs = {}
    if layer != "SpatialDropout1D":
        kwargs["data_format"] = "channels_first" if channel_axis == 1 else "channels_last"
    keras_layer = getattr(keras.layers, layer)(0.5, **kwargs)
    expected = tuple(int(s) for s in keras_layer._get_noise_shape(np.zeros(shape, "float32")))
    assert dropout.spatial_noise_shape(shape, channel_axis) == expected


def test_keras_spatial_dropout_output_has_the_same_structure():
    """Keras's output: each (sample, channel) map is all dropped or all scaled by 1/(1-rate)."""
    x = np.random.default_rng(0).uniform(1, 2, (64, 3, 4, 8)).astype(np.float32)
    keras_y = np.asarray(keras.layers.SpatialDropout2D(0.25, seed=1)(x, training=True))
    mask = dropout.dropout_mask(np.random.default_rng(1),
                                dropout.spatial_noise_shape(x.shape), 0.25)
    ours = dropout.dropout_forward(x, mask)
    for y in (keras_y, ours):
        ratio = y / x  # (N, H, W, C): constant over H and W, 0 or 1/(1 - 0.25)
        per_map = ratio.reshape(64, 12, 8)
        np.testing.assert_allclose(per_map, per_map[:, :1, :].repeat(12, axis=1), rtol=1e-6)
        values = np.unique(ratio)
        assert values[0] == 0 and np.allclose(values[1:], 1 / 0.75, rtol=1e-6)
        kept = (per_map[:, 0] > 0).mean()
        assert 0.6 < kept < 0.9  # 512 draws of keep probability 0.75


def test_mask_draws_and_scaling():
    rng = np.random.default_rng(2)
    mask = dropout.dropout_mask(rng, (200, 100), 0.3, np.float64)
    assert mask.dtype == np.float64
    assert set(np.unique(mask)) == {0.0, 1 / 0.7}
    assert abs((mask > 0).mean() - 0.7) < 0.02  # 20,000 draws: sd 0.0032
    # the same draw as Dropout's: generator.random(shape, float32) >= rate
    expected = np.random.default_rng(5).random((3, 4), dtype=np.float32) >= 0.4
    np.testing.assert_array_equal(
        dropout.dropout_mask(np.random.default_rng(5), (3, 4), 0.4) > 0, expected)
    assert not dropout.dropout_mask(rng, (3, 3), 1.0).any()
    assert (dropout.dropout_mask(rng, (3, 3), 0.0) == 1).all()


def test_forward_backward_match_torch_with_the_same_mask():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    mask = dropout.dropout_mask(rng, dropout.spatial_noise_shape(x.shape), 0.5)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = xt * torch.from_numpy(mask)
    yt.backward(torch.from_numpy(grad_y))
    np.testing.assert_array_equal(dropout.dropout_forward(x, mask), yt.detach().numpy())
    np.testing.assert_array_equal(dropout.dropout_backward(grad_y, mask), xt.grad.numpy())


def test_noise_shape_and_errors():
    assert dropout.resolve_noise_shape((4, 5, 6), (None, 1, None)) == (4, 1, 6)
    assert dropout.resolve_noise_shape((4, 5), None) == (4, 5)
    with pytest.raises(ValueError, match=r"received noise_shape=\(None, 2\) for input shape "
                                         r"\(4, 5\)"):
        dropout.resolve_noise_shape((4, 5), (None, 2))
    with pytest.raises(ValueError, match="at least one spatial axis"):
        dropout.spatial_noise_shape((4, 5))
    with pytest.raises(ValueError, match=r"received rate=1.5"):
        dropout.dropout_mask(np.random.default_rng(0), (2,), 1.5)
