"""Explanations of the seed's model, the contrast, rendering, summary columns and bad input.

Texts are checked for the numbers computed from the layers, never against written prose.
"""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from convlens.explain import (
    explain_layer,
    explain_model,
    layer_cost,
    receptive_fields,
    summary_columns,
    trace,
)
from convlens.layers import (
    BatchNormalization,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    Layer,
    MaxPooling2D,
    ReLU,
    Reshape,
    SeparableConv2D,
    ZeroPadding2D,
)
from convlens.models import Sequential
from convlens.shapes import conv_output_formula


def seed_model():
    return Sequential([
        Input((28, 28, 1)),
        Conv2D(32, 3, activation="relu"),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(10, activation="softmax"),
    ])


def test_seed_second_layer_numbers_computed_from_the_layer():
    model = seed_model()
    layer = model.layers[1]
    exp = model.explain(contrast=True)[1]
    text = str(exp)
    kh, kw, c_in, filters = layer.kernel.shape
    assert exp.output_shape == layer.output_shape
    assert conv_output_formula(layer.input_shape[1], kh, "valid", 1) in text
    assert "26 - 3 + 1 = 24" in text
    assert f"{kh}*{kw}*{c_in}*{filters} + {filters} = {layer.count_params():,}" in text
    assert "3*3*32*64 + 64 = 18,496" in text
    assert exp.params == layer.count_params()
    contrast = exp.contrast
    assert contrast.separate_output_shape == (None, 24, 24, c_in * filters)
    assert "(24, 24, 2048)" in text and "32*64" in text
    assert "DepthwiseConv2D(kernel_size=3, depth_multiplier=64)" in text
    assert contrast.separate_kernel_weights == layer.kernel.size == 18432
    assert "18,432" in text
    assert contrast.max_abs_diff < 1e-4


def test_contrast_matches_an_independently_built_depthwise_layer():
    conv = Conv2D(8, (3, 2), strides=2, padding="same", groups=2)
    conv.build_from_shape((None, 11, 9, 6))
    contrast = explain_layer(conv, contrast=True).contrast
    depthwise = DepthwiseConv2D((3, 2), strides=2, padding="same",
                                depth_multiplier=conv.filters // conv.groups)
    depthwise.build_from_shape((None, 11, 9, 6))
    assert contrast.separate_output_shape == depthwise.output_shape
    assert contrast.separate_kernel_shape == depthwise.kernel.shape
    assert contrast.separate_kernel_weights == depthwise.kernel.size == conv.kernel.size
    assert contrast.max_abs_diff < 1e-4


@pytest.mark.parametrize("cls, shape", [(Conv1D, (None, 12, 3)), (Conv3D, (None, 5, 6, 7, 2))])
def test_contrast_for_1d_and_3d_uses_a_grouped_conv(cls, shape):
    conv = cls(4, 3, padding="same")
    conv.build_from_shape(shape)
    contrast = explain_layer(conv, contrast=True).contrast
    assert contrast.separate_output_shape[-1] == shape[-1] * 4
    assert contrast.separate_kernel_weights == conv.kernel.size
    assert contrast.max_abs_diff < 1e-4


def test_contrast_channels_first():
    model = Sequential([Input((3, 10, 10)), Conv2D(5, 3, data_format="channels_first")])
    contrast = model.explain(contrast=True)[0].contrast
    assert contrast.separate_output_shape == (None, 15, 8, 8)
    assert f"({3}*{5}, 8, 8)" in str(model.explain(contrast=True))


def test_every_layer_kind_gets_numbers_from_the_layer():
    model = Sequential([
        Input((16, 16, 3)),
        ZeroPadding2D(1),
        Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        BatchNormalization(),
        DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
        SeparableConv2D(6, 3, padding="same"),
        Conv2DTranspose(4, 3, strides=2, padding="same"),
        ReLU(),
        Dropout(0.25),
        GlobalAveragePooling2D(),
        Reshape((2, 2)),
        Flatten(),
        Dense(3),
    ])
    exp = model.explain()
    assert len(exp.layers) == len(model.layers)
    for layer, section in zip(model.layers, exp.layers):
        assert section.output_shape == layer.output_shape
        assert section.params == layer.count_params()
        text = str(section)
        assert f"{layer.count_params():,}" in text
        for step in section.shape_steps:
            assert step["formula"] in text
    bn = exp[2]
    assert "4*8 = 32, of which 16 trainable" in str(bn) and bn.trainable_params == 16
    sep = model.layers[4]
    dw, pw = sep.depthwise.kernel.shape, sep.pointwise.kernel.shape
    assert "*".join(map(str, dw)) + " + " + "*".join(map(str, pw)) in exp[4].params_formula
    assert exp[5].output_shape == model.layers[5].output_shape
    assert exp.total_params == model.count_params()
    assert exp.total_macs == sum(layer_cost(layer).macs for layer in model.layers)
    for index in (8, 9, 10, 11):
        assert exp[index].receptive_field.whole_input
    assert "Receptive field" in str(exp)


def test_explain_layers_argument_and_unbuilt_layer():
    model = seed_model()
    exp = explain_model(model, layers=[model.layers[1].name, 0])
    assert [e.index for e in exp.layers] == [0, 1]
    with pytest.raises(ValueError, match="No layer named"):
        explain_model(model, layers="nope")
    with pytest.raises(ValueError, match="not built"):
        explain_layer(Conv2D(3, 3))


def test_html_fragment_parses_and_markdown_has_the_numbers():
    model = seed_model()
    exp = model.explain(contrast=True)
    root = ET.fromstring(exp.to_html())
    assert len(root.findall("section")) == 1 + len(model.layers)
    assert exp._repr_html_() == exp.to_html()
    markdown = exp.to_markdown()
    assert "18,496" in markdown and "`" in markdown
    x = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    for layer in range(len(model.layers)):
        if layer == 3:
            continue
        index = (1, 2, 3) if layer < 3 else (4,)
        t = trace(model, layer, index, x)
        ET.fromstring(t.to_html())
        assert f"{t.forward_value:.7g}" in str(t) and t.matches
        assert t.to_markdown().startswith("## ")
    data = exp.to_dict()
    assert data["layers"][1]["params"] == 18496


class Doubler(Layer):
    """A user's own layer: trace cannot know what it computes."""

    def call(self, x, training=False):
        return 2 * x


def test_trace_bad_input_messages_name_the_valid_ranges():
    model = seed_model()
    x = np.zeros((1, 28, 28, 1), np.float32)
    out = model.layers[1].output_shape
    with pytest.raises(ValueError, match=rf"row must be in \[0, {out[1] - 1}\]"):
        trace(model, 1, (out[1], 0, 0), x)
    with pytest.raises(ValueError, match=rf"channel must be in \[0, {out[3] - 1}\]"):
        trace(model, 1, (0, 0, -1), x)
    with pytest.raises(ValueError, match="needs 3 numbers"):
        trace(model, 1, (0, 0), x)
    with pytest.raises(ValueError, match="batch of exactly one"):
        trace(model, 1, (0, 0, 0), np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match="batch axis"):
        trace(model, 1, (0, 0, 0), np.zeros((28, 28, 1)))
    with pytest.raises(ValueError, match="expects"):
        trace(model, 1, (0, 0, 0), np.zeros((1, 27, 28, 1)))
    flat = trace(model, 3, (5,), x)  # Flatten: a copy of one input value
    assert flat.kind == "copy" and flat.matches and flat.source == (0, 0, 5)
    custom = Sequential([Input((4, 4, 2)), Doubler(name="twice")])
    with pytest.raises(ValueError, match="'twice' is a Doubler. Trace a neighbouring"):
        trace(custom, "twice", (0, 0, 0), np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="No layer named"):
        trace(model, "missing", (0, 0, 0), x)


def test_trace_by_name_pool_winner_and_padding():
    model = Sequential([Input((7, 7, 2)), Conv2D(3, 3, padding="same", name="c"),
                        MaxPooling2D(2, padding="same", name="p")])
    x = np.random.default_rng(3).standard_normal((1, 7, 7, 2)).astype(np.float32)
    corner = trace(model, "c", (0, 0, 1), x)
    assert corner.matches and corner.padding_mask.sum() == 5
    assert "(padding)" in str(corner)
    pooled = trace(model, "p", (3, 3, 2), x)
    assert pooled.matches and pooled.winner["position"] == (6, 6)


def test_summary_columns():
    model = seed_model()
    columns = summary_columns(model, ["kernel", "macs", "receptive_field", "memory"])
    assert len(columns) == 4
    (_, kernel), (_, macs), (_, field), (_, memory) = columns
    layer = model.layers[1]
    assert kernel(layer) == str(layer.kernel.shape)
    assert macs(layer) == f"{layer_cost(layer).macs:,}"
    assert field(layer) == "x".join(map(str, receptive_fields(model)[1].size))
    assert field(model.layers[-1]) == "whole input"
    assert memory(layer).endswith("KiB")
    with pytest.raises(ValueError, match="Allowed"):
        summary_columns(model, ["kernel", "flops"])


def test_costs_of_dense_and_memory():
    model = seed_model()
    dense = model.layers[-1]
    cost = layer_cost(dense)
    assert cost.macs == dense.kernel.size
    assert cost.memory_bytes == 4 * math.prod(dense.output_shape[1:])
