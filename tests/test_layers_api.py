"""The Keras layer and model contract: build(), auto-names, set_weights, pop, `import as keras`,
and error messages that name the layer, what was received and what is allowed."""

import re

import numpy as np
import pytest

import convlens
import convlens.layers as cl
from convlens.models import Sequential

keras = pytest.importorskip("keras")

# Positional arguments a layer needs, in both libraries.
REQUIRED = {
    "Conv1D": (2, 3), "Conv2D": (2, 3), "Convolution2D": (2, 3), "Conv3D": (2, 3),
    "DepthwiseConv2D": (3,), "SeparableConv2D": (2, 3), "Conv2DTranspose": (2, 3),
    "Dense": (2,), "Reshape": ((4,),), "Activation": ("relu",), "Dropout": (0.5,),
    "AveragePooling1D": (2,), "AveragePooling2D": (2,),
}
LAYER_NAMES = [
    "Conv1D", "Conv2D", "Convolution2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D",
    "Conv2DTranspose", "Dense", "Flatten", "Reshape", "Activation", "ReLU", "Dropout",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "BatchNormalization",
]


def stem_and_number(name: str) -> tuple[str, int]:
    """``conv2d_7`` -> ``("conv2d", 7)``, ``conv2d`` -> ``("conv2d", 0)``."""
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_auto_name_stems_match_keras(name):
    args = REQUIRED.get(name, ())
    first, second = getattr(cl, name)(*args), getattr(cl, name)(*args)
    theirs = getattr(keras.layers, name)(*args)
    stem, number = stem_and_number(first.name)
    assert stem == stem_and_number(theirs.name)[0]
    assert second.name == f"{stem}_{number + 1}"


def test_build_makes_the_layer_built_once_as_in_keras():
    ours, theirs = cl.Conv2D(4, 3), keras.layers.Conv2D(4, 3)
    ours.build((None, 8, 8, 3))
    theirs.build((None, 8, 8, 3))
    assert ours.built and ours.count_params() == theirs.count_params() == 112
    assert ours.input_shape == (None, 8, 8, 3) and ours.output_shape == (None, 6, 6, 4)
    kernel = ours.kernel
    ours.build((None, 8, 8, 3))
    y = ours(np.ones((2, 8, 8, 3), np.float32))
    assert ours.kernel is kernel and len(ours.weights) == 2 and y.shape == (2, 6, 6, 4)
    with pytest.raises(ValueError, match=r"axis 3 must have size 3"):
        ours.build((None, 8, 8, 5))


def test_build_on_a_weightless_layer_records_shapes():
    layer = cl.Flatten()
    layer.build((None, 4, 5, 3))
    assert layer.built and layer.output_shape == (None, 60) and layer.count_params() == 0


def test_set_weights_on_unbuilt_layer_or_model_says_build_first():
    with pytest.raises(ValueError, match=r"'unbuilt_conv' isn't built.*received 2 array"):
        cl.Conv2D(4, 3, name="unbuilt_conv").set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])
    model = Sequential([cl.Conv2D(4, 3)], name="unbuilt_model")
    with pytest.raises(ValueError, match=r"'unbuilt_model' isn't built.*model.build"):
        model.set_weights([np.zeros((3, 3, 1, 4)), np.zeros(4)])


def test_set_weights_rejects_non_numbers_naming_the_weight():
    layer = cl.Dense(2, name="dense_text")
    layer.build((None, 3))
    with pytest.raises(TypeError, match=r"'dense_text' weight 'bias' expects a real numeric array"):
        layer.set_weights([np.zeros((3, 2)), np.array(["a", "b"])])
    model = Sequential([cl.Input((3,)), cl.Dense(2, name="dense_text_m")])
    with pytest.raises(TypeError, match=r"'dense_text_m/kernel' expects a real numeric array"):
        model.set_weights([[["x", "y"]] * 3, np.zeros(2)])
    np.testing.assert_array_equal(model.get_weights()[1], np.zeros(2))  # nothing changed


def test_set_weights_round_trip_with_keras_layouts():
    layers = [cl.Conv2DTranspose(5, 3), cl.DepthwiseConv2D(3, depth_multiplier=2),
              cl.SeparableConv2D(5, 3, depth_multiplier=2), cl.BatchNormalization()]
    expected = [
        [(3, 3, 5, 4), (5,)], [(3, 3, 4, 2), (8,)], [(3, 3, 4, 2), (1, 1, 8, 5), (5,)],
        [(4,), (4,), (4,), (4,)],
    ]
    rng = np.random.default_rng(0)
    for layer, shapes in zip(layers, expected):
        layer.build((None, 9, 9, 4))
        assert [w.shape for w in layer.get_weights()] == shapes
        values = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
        layer.set_weights(values)
        for got, want in zip(layer.get_weights(), values):
            np.testing.assert_array_equal(got, want)


def test_pop_rebuilds_unless_asked_not_to():
    model = Sequential([cl.Input((6, 6, 1)), cl.Conv2D(2, 3), cl.Flatten()])
    assert model.output_shape == (None, 32)
    assert isinstance(model.pop(), cl.Flatten)
    assert model.built and model.output_shape == (None, 4, 4, 2)
    model.add(cl.Flatten())
    model.pop(rebuild=False)
    assert not model.built
    model.build()
    assert model.output_shape == (None, 4, 4, 2)


def test_import_convlens_as_keras_has_the_keras_namespaces():
    for namespace in ("layers", "models", "optimizers", "losses", "metrics", "callbacks",
                      "activations", "initializers", "utils", "datasets"):
        assert hasattr(keras, namespace)  # a namespace Keras programs use
        assert getattr(convlens, namespace).__name__ == f"convlens.{namespace}"
    assert callable(convlens.datasets.mnist.load_data)
    assert isinstance(convlens.optimizers.Adam(), convlens.optimizers.Optimizer)


# (layer factory taking a name, pattern the message must contain besides the layer's name)
BAD_ARGUMENTS = [
    (lambda n: cl.Conv2D(4, 3, padding="full", name=n), r"'valid', 'same'.*padding='full'"),
    (lambda n: cl.Conv1D(4, 3, padding="causal", data_format="channels_first", name=n),
     r"causal.*data_format='channels_first'"),
    (lambda n: cl.Conv2D(4, 3, data_format="NHWC", name=n), r"channels_first.*'NHWC'"),
    (lambda n: cl.Conv3D(4, (3, 0, 3), name=n), r"kernel_size.*> 0.*\(3, 0, 3\)"),
    (lambda n: cl.Conv2D(4, (3, 2.5), name=n), r"kernel_size.*integers.*2.5"),
    (lambda n: cl.Conv2D(4, 3, strides=(1, 2, 3), name=n), r"strides.*tuple of 2"),
    (lambda n: cl.Conv2D(4, 3, activation="rellu", name=n), r"'rellu'.*relu"),
    (lambda n: cl.Conv2D(4, 3, bias_initializer="one", name=n), r"'one'.*ones"),
    (lambda n: cl.DepthwiseConv2D(3, strides=0, name=n), r"strides.*> 0"),
    (lambda n: cl.DepthwiseConv2D(3, depthwise_initializer="x", name=n), r"'x'.*zeros"),
    (lambda n: cl.SeparableConv2D(4, 3, padding="full", name=n), r"padding='full'"),
    (lambda n: cl.SeparableConv2D(4, 3, strides=2, dilation_rate=2, name=n),
     r"strides > 1.*dilation_rate > 1"),
    (lambda n: cl.SeparableConv2D(4, 3, activation="nope", name=n), r"'nope'"),
    (lambda n: cl.Conv2DTranspose(4, 3, strides=2, dilation_rate=2, name=n),
     r"strides > 1.*dilation_rate > 1"),
    (lambda n: cl.Conv2DTranspose(4, 3, output_padding=-1, name=n), r"output_padding.*>= 0"),
    (lambda n: cl.Dense(4, activation="rellu", name=n), r"'rellu'.*softmax"),
    (lambda n: cl.Dense(4, kernel_initializer="glorot", name=n), r"'glorot'.*glorot_uniform"),
    (lambda n: cl.Activation("rellu", name=n), r"'rellu'.*relu"),
    (lambda n: cl.MaxPooling2D(0, name=n), r"pool_size.*> 0"),
    (lambda n: cl.AveragePooling1D(2, padding="full", name=n), r"padding='full'"),
    (lambda n: cl.MaxPooling1D(2, strides=1.5, name=n), r"strides.*1.5"),
    (lambda n: cl.GlobalMaxPooling2D(data_format="x", name=n), r"data_format='x'"),
    (lambda n: cl.Flatten(data_format="x", name=n), r"data_format='x'"),
    (lambda n: cl.ZeroPadding2D(-1, name=n), r"padding=-1"),
    (lambda n: cl.Reshape((0, 2), name=n), r"target_shape=\(0, 2\)"),
    (lambda n: cl.Dropout(1.5, name=n), r"rate=1.5"),
    (lambda n: cl.ReLU(max_value=-1, name=n), r"max_value=-1"),
    (lambda n: cl.BatchNormalization(momentum=2, name=n), r"momentum=2"),
    (lambda n: cl.BatchNormalization(beta_initializer="zero", name=n), r"'zero'.*zeros"),
]


@pytest.mark.parametrize("index", range(len(BAD_ARGUMENTS)))
def test_bad_arguments_name_the_layer_the_value_and_what_is_allowed(index):
    factory, pattern = BAD_ARGUMENTS[index]
    name = f"bad_layer_{index}"
    with pytest.raises((ValueError, TypeError)) as error:
        factory(name)
    message = str(error.value)
    assert f"'{name}'" in message and "/" not in message.split(":")[0], message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("layer", [
    cl.Conv2D(2, 1), cl.Conv2DTranspose(2, 1), cl.MaxPooling2D(1), cl.DepthwiseConv2D(1),
    cl.GlobalAveragePooling2D(),
])
def test_empty_axes_are_rejected_before_any_arithmetic(layer):
    with pytest.raises(ValueError, match=r"empty axis.*\(None, 0, 4, 3\)"):
        layer(np.zeros((1, 0, 4, 3), np.float32))


def test_complex_input_is_refused_not_silently_truncated():
    model = Sequential([cl.Input((3,)), cl.Dense(2)])
    with pytest.raises(TypeError, match="real numeric array; received dtype complex128"):
        model.predict(np.ones((1, 3), dtype=complex), verbose=0)
