"""The layer-kind registry and the window record: every reader finds what it needs in one place."""

import inspect

import numpy as np
import pytest

import convlens.layers as L
from convlens.explain.cost import COST_RULES
from convlens.explain.derivation import EXPLAINERS
from convlens.explain.receptive_field import FIELD_STEPS
from convlens.explain.trace_values import SIMPLE_RULES
from convlens.explain.trace_window import WINDOW_KINDS
from convlens.io.onnx_export import EXPORTERS
from convlens.kinds import UNKNOWN, kind_of, registered_class, registered_names
from convlens.shapes import deconv_padding_amounts, padding_amounts, sliding_window

# Every layer class convlens exports under its own name (aliases such as MaxPool2D excluded),
# but the bases that only share code.
LAYER_CLASSES = sorted(
    {getattr(L, name) for name in L.__all__
     if inspect.isclass(getattr(L, name)) and issubclass(getattr(L, name), L.Layer)
     and getattr(L, name).__name__ == name} - {L.Layer, L.InputLayer, L.Conv},
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", LAYER_CLASSES, ids=lambda c: c.__name__)
def test_every_layer_class_is_registered_under_its_own_name(cls):
    kind = kind_of(cls)
    assert kind is not UNKNOWN
    assert kind.keras_class == cls.__name__
    assert registered_class(cls.__name__) is cls


@pytest.mark.parametrize("name", registered_names())
def test_every_rule_a_kind_names_has_a_handler_in_its_reader(name):
    kind = kind_of(registered_class(name))
    assert kind.words in EXPLAINERS
    assert kind.cost == "none" or kind.cost in COST_RULES
    assert kind.field in ("mix", "merge") or kind.field in FIELD_STEPS
    traced = {*SIMPLE_RULES, *WINDOW_KINDS, "pool", "transpose", "model"}
    assert kind.trace is None or kind.trace in traced
    assert kind.onnx is None or kind.onnx in EXPORTERS


def test_a_subclass_inherits_its_base_kind_but_is_not_a_file_class():
    class Wide(L.Conv2D):
        pass

    assert kind_of(Wide) is kind_of(L.Conv2D)
    assert registered_class("Wide") is None


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_window_record_of_a_conv_layer(padding, data_format):
    layer = L.Conv2D(4, (3, 2), strides=(2, 1), padding=padding, data_format=data_format)
    shape = (None, 9, 8, 3) if data_format == "channels_last" else (None, 3, 9, 8)
    layer.build(shape)
    w = layer.window
    assert (w.kernel, w.strides, w.dilation) == ((3, 2), (2, 1), (1, 1))
    assert w.padding == (padding_amounts(9, 3, padding, 2), padding_amounts(8, 2, padding, 1))
    assert w.spatial_axes == ((1, 2) if data_format == "channels_last" else (2, 3))
    assert w.channel_axis == (3 if data_format == "channels_last" else 1)
    spatial = layer.output_shape[1:3] if data_format == "channels_last" else layer.output_shape[2:]
    assert w.output_spatial == tuple(spatial)
    with pytest.raises(AttributeError):
        w.padding = ()  # frozen


def test_window_record_with_free_sizes_pads_each_input_it_meets():
    layer = L.Conv2D(2, 3, padding="same", strides=2)
    layer.build((None, None, None, 1))
    assert layer.window.padding == (None, None)
    assert layer.window.pads_for((7, 8)) == (padding_amounts(7, 3, "same", 2),
                                             padding_amounts(8, 3, "same", 2))
    x = np.random.default_rng(0).random((1, 7, 8, 1), dtype=np.float32)
    assert layer(x).shape == (1, 4, 4, 2)


def test_window_record_of_a_transposed_conv_is_its_crop():
    layer = L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)
    layer.build((None, 5, 5, 1))
    assert layer.window.transposed
    assert layer.window.padding == (deconv_padding_amounts(5, 3, "same", 2, 1, 1),) * 2
    assert layer.window.output_spatial == layer.output_shape[1:3]


def test_pooling_and_separable_layers_carry_window_records():
    pool = L.MaxPooling2D(3, strides=2, padding="same")
    pool.build((None, 10, 10, 4))
    assert pool.window.kernel == (3, 3) and pool.window.padding == ((0, 1), (0, 1))
    separable = L.SeparableConv2D(3, 3, padding="same")
    separable.build((None, 6, 6, 2))
    assert separable.window is separable.depthwise.window
    assert sliding_window((None, 6, 6, 2), (3, 3), (1, 1), (1, 1), "same") == separable.window
