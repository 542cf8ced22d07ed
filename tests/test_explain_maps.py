"""Every layer's maps and one filter's per-channel maps, against a naive loop and predict."""

from __future__ import annotations

import numpy as np
import pytest

from convlens.explain import trace
from convlens.explain.maps import filter_maps, layer_outputs
from convlens.spec import parse_spec
from convlens.utils import set_random_seed


def model_from(spec: str, seed: int = 0):
    set_random_seed(seed)
    return parse_spec(spec)


def naive_channel_maps(h, kernel, strides, dilation, pads):
    """(out_h, out_w, C): per channel, the window times its kernel slice, summed (a loop)."""
    h = np.pad(h, (pads[0], pads[1], (0, 0)))
    kh, kw, channels = kernel.shape
    span_h, span_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    out_h = (h.shape[0] - span_h) // strides[0] + 1
    out_w = (h.shape[1] - span_w) // strides[1] + 1
    out = np.zeros((out_h, out_w, channels))
    for i in range(out_h):
        for j in range(out_w):
            for c in range(channels):
                for a in range(kh):
                    for b in range(kw):
                        out[i, j, c] += (h[i * strides[0] + a * dilation[0],
                                           j * strides[1] + b * dilation[1], c]
                                         * kernel[a, b, c])
    return out


def test_layer_outputs_are_the_forward_pass():
    model = model_from("input 12x12x2 | conv2d 4 3 relu | maxpool 2 | flatten | dense 3 softmax")
    x = np.random.default_rng(1).random((1, 12, 12, 2), dtype=np.float32)
    outputs = layer_outputs(model, x)
    assert [o.shape[1:] for o in outputs] == [tuple(layer.output_shape[1:])
                                              for layer in model.layers]
    np.testing.assert_allclose(outputs[-1], model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("spec, pads", [
    ("input 9x9x3 | conv2d 5 3 relu", ((0, 0), (0, 0))),
    ("input 9x9x3 | conv2d 5 3 strides=2 padding=same dilation=1", ((1, 1), (1, 1))),
    ("input 11x11x4 | conv2d 6 3 dilation=2", ((0, 0), (0, 0))),
])
def test_filter_maps_are_each_channels_window_times_its_slice(spec, pads):
    model = model_from(spec, seed=3)
    layer = model.layers[0]
    x = np.random.default_rng(2).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    for f in (0, layer.filters - 1):
        result = filter_maps(model, 0, f, x)
        kernel = layer.kernel.value[..., f]
        expected = naive_channel_maps(x[0].astype(np.float64), kernel, layer.strides,
                                      layer.dilation_rate, pads)
        np.testing.assert_allclose(result.channel_maps, expected, rtol=1e-4, atol=1e-5)
        bias = float(layer.bias.value[f])
        assert result.bias == bias and result.input_channels == list(range(x.shape[-1]))
        np.testing.assert_allclose(result.pre_activation, expected.sum(-1) + bias, rtol=1e-4,
                                   atol=1e-5)
        forward = model.predict(x, verbose=0)[0, ..., f]
        np.testing.assert_array_equal(result.output, forward)
        activated = np.maximum(result.pre_activation, 0) if layer.activation.name == "relu" \
            else result.pre_activation
        np.testing.assert_allclose(activated, forward, rtol=1e-5, atol=1e-5)
        assert result.matches
        # The window of the corner positions: where trace finds it.
        for i, j in ((0, 0), (result.output.shape[0] - 1, result.output.shape[1] - 1)):
            traced = trace(model, 0, (i, j, f), x)
            assert [result.positions[0][i], result.positions[1][j]] == \
                [list(p) for p in traced.positions]
            np.testing.assert_allclose(result.channel_maps[i, j], traced.partial_sums,
                                       rtol=1e-4, atol=1e-5)


def test_filter_maps_of_a_grouped_conv_use_its_groups_channels_and_a_later_layer():
    model = model_from("input 8x8x4 | conv2d 6 3 groups=2 | conv2d 3 3", seed=5)
    x = np.random.default_rng(0).random((1, 8, 8, 4), dtype=np.float32)
    result = filter_maps(model, 0, 4, x)  # filters 3..5 read channels 2..3
    assert result.input_channels == [2, 3]
    kernel = model.layers[0].kernel.value[..., 4]
    expected = naive_channel_maps(x[0, ..., 2:], kernel, (1, 1), (1, 1), ((0, 0), (0, 0)))
    np.testing.assert_allclose(result.channel_maps, expected, rtol=1e-4, atol=1e-5)
    second = filter_maps(model, model.layers[1].name, 2, x)
    assert second.channel_maps.shape == (4, 4, 6) and second.matches


def test_filter_maps_refuse_what_they_cannot_split():
    model = model_from("input 8x8x2 | conv2d 3 3 | maxpool 2")
    x = np.zeros((1, 8, 8, 2), np.float32)
    with pytest.raises(ValueError, match="MaxPooling2D"):
        filter_maps(model, 1, 0, x)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        filter_maps(model, 0, 3, x)
    with pytest.raises(ValueError, match="batch of one"):
        filter_maps(model, 0, 0, np.zeros((2, 8, 8, 2), np.float32))


@pytest.mark.parametrize("name", ["residual_block", "small_unet"])
def test_a_graphs_layer_outputs_and_filter_maps_equal_keras(name):
    keras = pytest.importorskip("keras")
    from tests import graphs

    reference, model = graphs.pair(getattr(graphs, name), keras)
    x = np.random.default_rng(4).random((1, *model.input_shape[1:]), dtype=np.float32)
    every = keras.Model(reference.inputs, [layer.output for layer in reference.layers])
    expected = every.predict(x, verbose=0)
    outputs = layer_outputs(model, x)
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    for layer, ours, theirs in zip(model.layers, outputs, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5, err_msg=layer.name)
    # The conv after the merge reads the merge's output: its per-channel maps, by a loop.
    position = [layer.name for layer in model.layers].index(
        "branch_b" if name == "residual_block" else "merge_conv")
    target = model.layers[position]
    source = expected[[layer.name for layer in reference.layers].index(
        "branch_a" if name == "residual_block" else "skip")][0]
    result = filter_maps(model, position, 1, x)
    naive = naive_channel_maps(source, target.kernel.value[..., 1], (1, 1), (1, 1),
                               ((1, 1), (1, 1)))
    np.testing.assert_allclose(result.channel_maps, naive, rtol=1e-4, atol=1e-5)
    assert result.matches and result.input_channels == list(range(source.shape[-1]))
    traced = trace(model, position, (3, 5, 1), x)
    np.testing.assert_allclose(result.channel_maps[3, 5], traced.partial_sums, rtol=1e-5,
                               atol=1e-6)
