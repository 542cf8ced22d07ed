"""Bad input gets a clear ValueError/TypeError early, naming the layer and the values."""

import numpy as np
import pytest

import convlens as keras_like
from convlens.layers import (
    Conv1D,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Input,
    MaxPooling2D,
)
from convlens.models import Sequential


def x_of(*shape):
    return np.zeros(shape, np.float32)


def test_wrong_rank_for_built_layer_names_layer_and_shapes():
    layer = Conv2D(4, 3, name="first")
    layer(x_of(1, 8, 8, 3))
    pattern = r"'first'.*ndim=4.*found ndim=3 \(shape \(8, 8, 3\)\).*x\[None\]"
    with pytest.raises(ValueError, match=pattern):
        layer(x_of(8, 8, 3))


def test_wrong_channel_count_for_built_layer():
    layer = Conv2D(4, 3, name="c")
    layer(x_of(1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"'c'.*axis 3 must have size 3.*\(1, 8, 8, 5\)"):
        layer(x_of(1, 8, 8, 5))


def test_kernel_larger_than_input_shows_formula():
    with pytest.raises(ValueError, match=r"output size = 2 - 3 \+ 1 = 0"):
        Conv2D(4, 3)(x_of(1, 2, 5, 1))
    with pytest.raises(ValueError, match=r"floor\(\(4 \+ 2\*0 - 2\*\(3-1\) - 1\) / 1\) \+ 1 = 0"):
        Conv2D(4, 3, dilation_rate=2)(x_of(1, 4, 9, 1))
    with pytest.raises(ValueError, match="pool window"):
        Sequential([Input((1, 1, 3)), MaxPooling2D(2)])


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"padding": "full"}, ValueError, r"'valid', 'same'.*padding='full'"),
    ({"padding": "causal"}, ValueError, r"'valid', 'same'.*causal"),
    ({"data_format": "NHWC"}, ValueError, r"channels_last.*channels_first.*NHWC"),
    ({"activation": "rellu"}, ValueError, r"Unknown activation: 'rellu'. Allowed names:.*relu"),
    ({"kernel_initializer": "glorot"}, ValueError, r"Unknown initializer.*glorot_uniform"),
    ({"filters": 0}, ValueError, r"filters=0"),
    ({"filters": -2}, ValueError, r"filters=-2"),
    ({"filters": 2.5}, TypeError, r"filters=2.5"),
    ({"kernel_size": 0}, ValueError, r"kernel_size.*> 0"),
    ({"kernel_size": (3,)}, ValueError, r"kernel_size.*tuple of 2"),
    ({"kernel_size": 2.0}, TypeError, r"kernel_size"),
    ({"strides": 0}, ValueError, r"strides"),
    ({"strides": "2"}, TypeError, r"strides"),
    ({"strides": 2, "dilation_rate": 2}, ValueError, r"strides > 1.*dilation_rate > 1"),
    ({"groups": 3}, ValueError, r"groups=3, filters=4"),
    ({"foo": 1}, TypeError, r"Unrecognized keyword arguments.*foo"),
])
def test_conv2d_argument_validation(kwargs, error, pattern):
    args = {"filters": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=pattern):
        Conv2D(**args)


def test_causal_is_allowed_for_conv1d_and_padding_is_case_insensitive():
    assert Conv1D(2, 3, padding="CAUSAL").padding == "causal"
    assert Conv2D(2, 3, padding="Same").padding == "same"


def test_groups_not_dividing_input_channels():
    with pytest.raises(ValueError, match=r"groups=2, but the input has 3 channels"):
        Conv2D(4, 3, groups=2)(x_of(1, 5, 5, 3))


def test_set_weights_count_and_shapes():
    layer = Conv2D(4, 3, name="cw")
    layer(x_of(1, 5, 5, 2))
    with pytest.raises(ValueError, match=r"'cw' expects 2 weight array\(s\).*received 1"):
        layer.set_weights([np.zeros((3, 3, 2, 4))])
    with pytest.raises(ValueError, match=r"'bias' has shape \(4,\); received .* \(5,\)"):
        layer.set_weights([np.zeros((3, 3, 2, 4)), np.zeros(5)])
    model = Sequential([Input((5, 5, 2)), Conv2D(4, 3, name="m1")])
    with pytest.raises(ValueError, match=r"'m1/kernel' has shape \(3, 3, 2, 4\).*\(3, 3, 4, 2\)"):
        model.set_weights([np.zeros((3, 3, 4, 2)), np.zeros(4)])
    with pytest.raises(ValueError, match=r"has 2 weight arrays; received 3"):
        model.set_weights([np.zeros((3, 3, 2, 4)), np.zeros(4), np.zeros(1)])


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        Dense(2)(np.array([["a", "b"]]))


def test_model_input_shape_mismatch_names_both_shapes():
    model = Sequential([Input((28, 28, 1)), Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"expected shape=\(None, 28, 28, 1\), found shape="
                                         r"\(2, 28, 28\).*channel axis"):
        model.predict(x_of(2, 28, 28), verbose=0)


def test_count_params_unbuilt_layer():
    with pytest.raises(ValueError, match="isn't built"):
        Conv2D(2, 3).count_params()


def test_depthwise_validation():
    with pytest.raises(ValueError, match="depth_multiplier=0"):
        DepthwiseConv2D(3, depth_multiplier=0)


def test_auto_names_count_per_process():
    first, second = Conv2D(1, 1), Conv2D(1, 1)
    stem = first.name.rsplit("_", 1)[0] if "_" in first.name else first.name
    assert stem == "conv2d"
    number = int(first.name.split("_")[1]) if "_" in first.name else 0
    assert second.name == f"conv2d_{number + 1}"
    assert MaxPooling2D().name.startswith("max_pooling2d")
    a, b = Sequential(), Sequential()
    assert a.name.startswith("sequential") and b.name != a.name


def test_import_convlens_as_keras():
    model = keras_like.Sequential([keras_like.Input((4,)), keras_like.layers.Dense(3)])
    assert model.output_shape == (None, 3)
    assert keras_like.models.Sequential is keras_like.Sequential


def test_duplicate_layer_names_rejected():
    with pytest.raises(ValueError, match="unique names"):
        Sequential([Dense(2, name="d"), Dense(2, name="d")])


def test_layer_called_on_array_builds_on_first_call():
    layer = Conv2D(8, 3)
    assert not layer.built
    y = layer(np.ones((2, 10, 10, 3)))
    assert layer.built and y.shape == (2, 8, 8, 8) and y.dtype == np.float32
    assert layer.kernel.shape == (3, 3, 3, 8)
