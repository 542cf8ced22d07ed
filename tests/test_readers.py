"""Every registered layer kind goes through every reader: words, cost, receptive field, trace,
the HTML report, pictures and ONNX export.

``BUILDERS`` holds one small model per ``.keras`` class name in ``kinds.registered_names()``,
so a new layer kind without a builder (and without readers) fails here. The numbers are
checked against references that do not come from the readers: the forward pass (``predict``),
products counted by a direct loop, and the input positions found to change an output value.
"""

from __future__ import annotations

import html
import itertools
import math
from html.parser import HTMLParser

import numpy as np
import pytest

import convlens.layers as L
from convlens.explain import layer_cost, receptive_fields, trace
from convlens.explain.report import report_html
from convlens.kinds import kind_of, registered_class, registered_names
from convlens.models import Model, Sequential
from convlens.shapes import padding_amounts
from convlens.utils import session


def chain(shape, layers):
    return lambda: Sequential([L.Input(shape), *layers()])


def two_branches(merge, **kwargs):
    """A graph: two convolutions of one input (3x3 'same' and 1x1), merged."""
    def build():
        x = L.Input((6, 6, 3))
        left = L.Conv2D(4, 3, padding="same", name="left")(x)
        right = L.Conv2D(4, 1, name="right")(x)
        return Model(x, merge(**kwargs)([left, right]))
    return build


def arithmetic(make):
    """A graph: tensor arithmetic (``keras.src.ops.numpy`` operations) on two convolutions."""
    def build():
        x = L.Input((6, 6, 3))
        left = L.Conv2D(4, 3, padding="same", name="left")(x)
        right = L.Conv2D(4, 1, name="right")(x)
        return Model(x, make(left, right))
    return build


def convnext_layer(make):
    return chain((4, 4, 3), lambda: [L.Conv2D(3, 1), make()])


def layer_scale_model():
    """A LayerScale whose factors differ per channel (its initializer makes them equal)."""
    model = convnext_layer(lambda: L.convnext.LayerScale(0.5, 3))()
    model.layers[-1].set_weights([np.array([0.5, -2.0, 3.0], np.float32)])
    return model


# name -> a function that builds a small model whose last layer is of that kind.
BUILDERS = {
    "Conv1D": chain((9, 2), lambda: [L.Conv1D(3, 3, strides=2, padding="same")]),
    "Conv2D": chain((7, 7, 2), lambda: [L.Conv2D(3, 3, dilation_rate=2, activation="relu")]),
    "Conv3D": chain((5, 6, 5, 2), lambda: [L.Conv3D(3, (3, 2, 3), padding="same")]),
    "Conv1DTranspose": chain((5, 2), lambda: [L.Conv1DTranspose(3, 3, strides=2)]),
    "Conv2DTranspose": chain((4, 4, 2), lambda: [L.Conv2DTranspose(3, 3, strides=2,
                                                                   padding="same")]),
    "Conv3DTranspose": chain((3, 3, 2, 2), lambda: [L.Conv3DTranspose(2, 2, strides=2)]),
    "DepthwiseConv1D": chain((8, 2), lambda: [L.DepthwiseConv1D(3, depth_multiplier=2)]),
    "DepthwiseConv2D": chain((6, 6, 2), lambda: [L.DepthwiseConv2D(3, depth_multiplier=2,
                                                                   padding="same")]),
    "SeparableConv1D": chain((8, 2), lambda: [L.SeparableConv1D(3, 3, padding="same")]),
    "SeparableConv2D": chain((6, 6, 2), lambda: [L.SeparableConv2D(3, 3, depth_multiplier=2)]),
    "Dense": chain((5,), lambda: [L.Dense(3)]),
    "Flatten": chain((3, 3, 2), lambda: [L.Flatten()]),
    "Reshape": chain((3, 4, 2), lambda: [L.Reshape((4, 6))]),
    "Permute": chain((3, 4, 2), lambda: [L.Permute((2, 1, 3))]),
    "Identity": chain((4, 4, 2), lambda: [L.Identity()]),
    "InputLayer": lambda: Model(inputs := L.Input((4, 4, 2)), L.Identity()(inputs)),
    "Activation": chain((4, 4, 2), lambda: [L.Activation("tanh")]),
    "ReLU": chain((4, 4, 2), lambda: [L.ReLU(max_value=1.0, negative_slope=0.1)]),
    "LeakyReLU": chain((4, 4, 2), lambda: [L.LeakyReLU(0.2)]),
    "ELU": chain((4, 4, 2), lambda: [L.ELU(0.5)]),
    "PReLU": chain((4, 4, 2), lambda: [L.PReLU(alpha_initializer="random_uniform")]),
    "Softmax": chain((4, 4, 3), lambda: [L.Softmax()]),
    "Dropout": chain((4, 4, 2), lambda: [L.Dropout(0.5)]),
    "SpatialDropout1D": chain((4, 2), lambda: [L.SpatialDropout1D(0.5)]),
    "SpatialDropout2D": chain((4, 4, 2), lambda: [L.SpatialDropout2D(0.5)]),
    "SpatialDropout3D": chain((3, 3, 3, 2), lambda: [L.SpatialDropout3D(0.5)]),
    "BatchNormalization": chain((4, 4, 2), lambda: [L.BatchNormalization(
        moving_mean_initializer="random_uniform", gamma_initializer="random_uniform")]),
    "LayerNormalization": chain((4, 4, 3), lambda: [L.LayerNormalization(
        gamma_initializer="random_uniform", beta_initializer="random_uniform")]),
    "GroupNormalization": chain((4, 4, 4), lambda: [L.GroupNormalization(
        2, gamma_initializer="random_uniform", beta_initializer="random_uniform")]),
    "Rescaling": chain((4, 4, 2), lambda: [L.Rescaling(1 / 255.0, offset=-1.0)]),
    "Normalization": chain((4, 4, 2), lambda: [L.Normalization(mean=[0.5, 1.0],
                                                               variance=[2.0, 4.0])]),
    "MaxPooling1D": chain((8, 2), lambda: [L.MaxPooling1D(3, strides=2, padding="same")]),
    "MaxPooling2D": chain((6, 6, 2), lambda: [L.MaxPooling2D(2)]),
    "MaxPooling3D": chain((4, 4, 4, 2), lambda: [L.MaxPooling3D(2)]),
    "AveragePooling1D": chain((8, 2), lambda: [L.AveragePooling1D(2)]),
    "AveragePooling2D": chain((6, 6, 2), lambda: [L.AveragePooling2D(3, strides=2,
                                                                     padding="same")]),
    "AveragePooling3D": chain((4, 4, 4, 2), lambda: [L.AveragePooling3D(2)]),
    "GlobalAveragePooling1D": chain((8, 2), lambda: [L.GlobalAveragePooling1D()]),
    "GlobalAveragePooling2D": chain((6, 6, 2), lambda: [L.GlobalAveragePooling2D()]),
    "GlobalAveragePooling3D": chain((4, 4, 4, 2), lambda: [L.GlobalAveragePooling3D()]),
    "GlobalMaxPooling1D": chain((8, 2), lambda: [L.GlobalMaxPooling1D()]),
    "GlobalMaxPooling2D": chain((6, 6, 2), lambda: [L.GlobalMaxPooling2D()]),
    "GlobalMaxPooling3D": chain((4, 4, 4, 2), lambda: [L.GlobalMaxPooling3D()]),
    "UpSampling1D": chain((4, 2), lambda: [L.UpSampling1D(2)]),
    "UpSampling2D": chain((3, 3, 2), lambda: [L.UpSampling2D(2)]),
    "UpSampling3D": chain((2, 2, 2, 2), lambda: [L.UpSampling3D(2)]),
    "Cropping1D": chain((6, 2), lambda: [L.Cropping1D((1, 2))]),
    "Cropping2D": chain((6, 6, 2), lambda: [L.Cropping2D(((1, 2), (0, 1)))]),
    "Cropping3D": chain((5, 5, 5, 2), lambda: [L.Cropping3D(1)]),
    "ZeroPadding1D": chain((4, 2), lambda: [L.ZeroPadding1D(1)]),
    "ZeroPadding2D": chain((4, 4, 2), lambda: [L.ZeroPadding2D(((1, 0), (2, 1)))]),
    "ZeroPadding3D": chain((3, 3, 3, 2), lambda: [L.ZeroPadding3D(1)]),
    "Add": two_branches(L.Add),
    "Subtract": two_branches(L.Subtract),
    "Multiply": two_branches(L.Multiply),
    "Average": two_branches(L.Average),
    "Maximum": two_branches(L.Maximum),
    "Minimum": two_branches(L.Minimum),
    "Concatenate": two_branches(L.Concatenate),
    "Sequential": lambda: Model(x := L.Input((7, 7, 2)), Sequential(
        [L.Conv2D(3, 3, strides=2, name="inner_conv"), L.ReLU(name="inner_relu")])(
        L.Conv2D(2, 3, name="outer_conv")(x))),
    "Functional": lambda: Model(x := L.Input((7, 7, 2)), Model(
        y := L.Input((5, 5, 2)), L.Add()([y, L.Conv2D(2, 3, padding="same")(y)]))(
        L.Conv2D(2, 3, name="outer_conv")(x))),
    "keras.src.ops.numpy.Add": arithmetic(lambda a, b: a + b),
    "keras.src.ops.numpy.Subtract": arithmetic(lambda a, b: 2.0 - a),
    "keras.src.ops.numpy.Multiply": arithmetic(lambda a, b: a * b),
    "keras.src.ops.numpy.Divide": arithmetic(
        lambda a, b: L.operations.Divide(arguments=(None, None))([a, b * b + 1.0])),
    "keras.src.ops.numpy.TrueDivide": arithmetic(lambda a, b: a / 4.0),
    "keras.src.ops.numpy.Negative": arithmetic(lambda a, b: -a),
    "keras.src.applications.convnext.LayerScale": lambda: layer_scale_model(),
    "keras.src.applications.convnext.StochasticDepth": convnext_layer(
        lambda: L.convnext.StochasticDepth(0.5)),
}

# Kinds a value is not traced through, and why (a new kind must be traced or listed here).
NOT_TRACED = {
    "InputLayer": "nothing is computed: the model's input",
}


def built(name):
    with session(seed=1):
        model = BUILDERS[name]()
    cls = registered_class(name)
    layer = next(each for each in reversed(model.layers) if type(each) is cls)
    x = np.random.default_rng(2).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    return model, layer, x


@pytest.mark.parametrize("name", registered_names())
def test_every_kind_has_a_builder_here(name):
    assert name in BUILDERS, (f"layer kind {name} is registered but not audited: add a small "
                              "model to BUILDERS in tests/test_readers.py and give it readers")


# ----- words and cost -------------------------------------------------------------------------
def _counted_conv(in_spatial, kernel, strides, dilation, pads, per_group, filters):
    """Products of a (grouped) convolution counted one by one (padded taps included)."""
    padded = [n + before + after for n, (before, after) in zip(in_spatial, pads)]
    out = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(padded, kernel, strides,
                                                                dilation)]
    count = 0
    for _ in itertools.product(*(range(n) for n in out)):
        for _ in itertools.product(*(range(k) for k in kernel)):
            count += per_group * filters
    return count, out


def _counted_transpose(in_spatial, kernel, in_channels, filters):
    count = 0
    for _ in itertools.product(*(range(n) for n in in_spatial)):
        for _ in itertools.product(*(range(k) for k in kernel)):
            count += in_channels * filters
    return count


def direct_macs(layer) -> int:
    """Multiply-adds of one sample, counted from the layer's arguments (not its readers)."""
    kind = kind_of(layer).cost
    shape = layer.input_shape
    spatial, channels = tuple(shape[1:-1]), shape[-1]
    if kind in ("conv", "depthwise", "separable"):
        pads = [padding_amounts(n, k, layer.padding, s, d) for n, k, s, d in
                zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate)]
        if kind == "conv":
            per_group, filters = channels // layer.groups, layer.filters
        else:
            per_group, filters = 1, channels * layer.depth_multiplier
        count, out = _counted_conv(spatial, layer.kernel_size, layer.strides,
                                   layer.dilation_rate, pads, per_group, filters)
        if kind == "separable":
            pointwise, _ = _counted_conv(out, (1,) * len(out), (1,) * len(out),
                                         (1,) * len(out), [(0, 0)] * len(out),
                                         channels * layer.depth_multiplier, layer.filters)
            count += pointwise
        return count
    if kind == "transpose":
        return _counted_transpose(spatial, layer.kernel_size, channels, layer.filters)
    if kind == "dense":
        return math.prod(shape[1:-1]) * shape[-1] * layer.units
    if kind == "per_value":
        return math.prod(layer.output_shape[1:])
    if kind == "model":  # a nested model: its layers, each counted as above
        return sum(direct_macs(inner) for inner in layer.layers if inner.input_shape is not None)
    return 0


@pytest.mark.parametrize("name", registered_names())
def test_words_and_cost_come_from_the_layer(name):
    model, layer, _ = built(name)
    explanation = model.explain()
    section = explanation[layer.name]
    text = str(section)
    assert "no worded account" not in text
    assert section.output_shape == tuple(layer.output_shape)
    assert section.params == layer.count_params()
    assert f"{layer.count_params():,}" in text
    for step in section.shape_steps:
        assert step["formula"] in text
    assert layer_cost(layer).macs == direct_macs(layer)
    assert section.macs == direct_macs(layer)
    assert explanation.total_macs == sum(direct_macs(each) for each in model.layers)


# ----- receptive field ------------------------------------------------------------------------
def seen_positions(model, x, index):
    """Input positions (spatial, all channels at once) whose change moves output ``index``."""
    base = model.predict(x, verbose=0)[(0, *index)]
    spatial = x.shape[1:-1]
    seen = []
    # Up and down, so a maximum, a minimum or a ReLU that ignores one direction sees the other.
    steps = 50.0 * (1 + np.arange(x.shape[-1], dtype=np.float32))
    for position in itertools.product(*(range(n) for n in spatial)):
        for step in (steps, -steps):
            moved = x.copy()
            moved[(0, *position)] += step
            if abs(model.predict(moved, verbose=0)[(0, *index)] - base) > 1e-6:
                seen.append(position)
                break
    return seen


@pytest.mark.parametrize("name", registered_names())
def test_receptive_field_bounds_what_moves_the_output(name):
    model, layer, x = built(name)
    field = receptive_fields(model)[model.layers.index(layer)]
    if len(model.input_shape) < 3 or len(model.output_shape) != len(model.input_shape):
        assert field.whole_input or not field.size  # a vector, or spatial axes gone
        return
    # An output position in the middle: its field lies inside the input on every axis.
    index = (*(n // 2 for n in model.output_shape[1:-1]), 0)
    seen = seen_positions(model, x, index)
    assert seen, "no input position moves this output"
    if field.whole_input:
        return
    for axis, n in enumerate(model.input_shape[1:-1]):
        coords = [p[axis] for p in seen]
        lo, hi = field.bounds(index[axis], axis)
        assert lo - 1e-9 <= min(coords) and max(coords) <= hi + 1e-9
        # The field is tight: the whole pixels between its bounds, clipped to the input.
        assert (min(coords), max(coords)) == (max(math.ceil(lo - 1e-9), 0),
                                              min(math.floor(hi + 1e-9), n - 1))


# ----- trace ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", registered_names())
def test_traces_equal_the_forward_pass(name):
    model, layer, x = built(name)
    if kind_of(layer).trace is None:
        assert name in NOT_TRACED, f"{name} is neither traced nor listed in NOT_TRACED"
        return
    assert name not in NOT_TRACED
    position = model.layers.index(layer)
    assert position == len(model.layers) - 1  # so predict is the layer's forward pass
    expected = model.predict(x, verbose=0)[0]
    shape = expected.shape
    corners = [tuple(0 for _ in shape), tuple(n - 1 for n in shape),
               tuple(n // 2 for n in shape), tuple((n - 1) // 3 for n in shape)]
    for index in corners:
        result = trace(model, position, index, x)
        assert result.value == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-5)
        assert result.matches
        assert str(result) and result.to_html()


# ----- report, pictures, ONNX -----------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


@pytest.mark.parametrize("name", registered_names())
def test_report_and_pictures(name):
    model, layer, x = built(name)
    page = report_html(model, x=x)
    parser = _Tags()
    parser.feed(page)
    assert "html" in parser.tags and "section" in parser.tags
    for each in model.layers:
        assert each.name in page
    picture = kind_of(layer).picture
    if picture is None:
        return
    from convlens.viz import conv_layer_svg, kernel_grid_png

    if len(layer.kernel_size) == 3:
        with pytest.raises(ValueError, match="1D and 2D kernels"):
            kernel_grid_png(layer)
    else:
        assert kernel_grid_png(layer).startswith(b"\x89PNG")
        assert "<img" in page
    if len(layer.kernel_size) == 2:
        assert conv_layer_svg(layer).lstrip().startswith("<svg")


@pytest.mark.parametrize("name", registered_names())
def test_onnx_export_runs_as_predict(name):
    model, layer, x = built(name)
    if kind_of(layer).onnx is None:
        return
    from onnx.reference import ReferenceEvaluator

    from convlens.io.onnx_export import to_onnx

    proto = to_onnx(model)
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


# ----- graphs: the CLI and the report ----------------------------------------------------------
def residual_block():
    """A small ResNet block with a concatenated skip: two convs, Add, Concatenate, a head."""
    x = L.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="stem")(x)
    b = L.Conv2D(4, 3, padding="same", name="body")(a)
    added = L.Add(name="sum")([a, b])
    joined = L.Concatenate(name="joined")([added, a])
    pooled = L.GlobalAveragePooling2D(name="pool")(joined)
    return Model(x, L.Dense(2, name="head")(pooled))


def test_cli_explains_a_functional_keras_file(tmp_path, capsys):
    from convlens.cli import main

    with session(seed=3):
        model = residual_block()
    path = tmp_path / "block.keras"
    model.save(path)
    assert main(["explain", str(path), "--layer", "sum", "--trace", "3,4,1",
                 "--html", str(tmp_path / "block.html")]) == 0
    out = capsys.readouterr().out
    assert "input from: 'stem', 'body'" in out
    assert "the sum of the values at the same position" in out
    assert "matches: yes" in out
    x = sample_input_of(path)
    stem, body = (Model(model.inputs, model.get_layer(n).output).predict(x, verbose=0)
                  for n in ("stem", "body"))
    assert f"{float(stem[0, 3, 4, 1] + body[0, 3, 4, 1]):.7g}"[:6] in out
    page = (tmp_path / "block.html").read_text()
    assert "Connected to" in page and "Spec:" not in page
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    order = [out.index(f"{i}. {name} (") for i, name in
             enumerate(layer.name for layer in model.layers)]
    assert order == sorted(order)  # every layer, in the model's order
    assert main(["summary", str(path)]) == 0
    assert "Connected to" in capsys.readouterr().out


def sample_input_of(path):
    from convlens.explain.report import sample_input
    from convlens.models import load_model

    return sample_input(load_model(str(path), compile=False), seed=0)


def test_cli_takes_a_python_file_that_builds_a_graph(tmp_path, capsys):
    from convlens.cli import main

    source = tmp_path / "graph_model.py"
    source.write_text(
        "import convlens\n"
        "x = convlens.Input((6, 6, 2))\n"
        "a = convlens.layers.Conv2D(3, 3, padding='same', name='a')(x)\n"
        "b = convlens.layers.Conv2D(3, 1, name='b')(x)\n"
        "model = convlens.Model(x, convlens.layers.Maximum(name='top')([a, b]))\n"
    )
    assert main(["explain", str(source), "--layer", "top"]) == 0
    out = capsys.readouterr().out
    assert "'a' `(None, 6, 6, 3)` and 'b' `(None, 6, 6, 3)`" in out or "'a' (None, 6, 6, 3)" in out
    assert "the largest of the values" in out


def test_spec_words_refuse_a_graph_clearly():
    from convlens.spec import format_spec

    with pytest.raises(TypeError, match="expects a Sequential"):
        format_spec(residual_block())


@pytest.mark.parametrize("make", [lambda: L.Softmax(axis=1), lambda: L.LayerNormalization(
    axis=[1, 2, 3])], ids=["softmax_over_rows", "layer_norm_over_all"])
def test_a_norm_over_a_spatial_axis_sees_the_whole_input(make):
    model = Sequential([L.Input((3, 4, 2)), make()])
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 2)).astype(np.float32)
    assert receptive_fields(model)[0].whole_input
    assert len(seen_positions(model, x, (1, 1, 0))) > 1


@pytest.mark.parametrize("shape, make", [
    ((3, 4, 2), lambda: L.UpSampling2D((2, 3), interpolation="bilinear")),
    ((2, 3, 4), lambda: L.UpSampling2D(2, data_format="channels_first")),
    ((2, 5, 4), lambda: L.Cropping2D(((1, 0), (1, 2)), data_format="channels_first")),
    ((3, 4, 2), lambda: L.Normalization(mean=[0.5, 1.0], variance=[2.0, 4.0], invert=True)),
    ((3, 4, 2), lambda: L.Rescaling([2.0, -1.0], offset=[0.5, 0.0])),
    ((3, 4, 2), lambda: L.Softmax(axis=1)),
    ((3, 4, 2), lambda: L.PReLU(alpha_initializer="random_uniform", shared_axes=[1, 2])),
    ((3, 3, 2, 2), lambda: L.Conv3DTranspose(2, 3, strides=2, padding="same")),
    ((7, 3), lambda: L.SeparableConv1D(2, 3, depth_multiplier=2, padding="causal",
                                       dilation_rate=2)),
    ((3, 4, 2), lambda: L.LayerNormalization(axis=[1, 2, 3], center=False)),
    ((4, 3, 2), lambda: L.GroupNormalization(2, axis=1, scale=False)),
    ((5, 6), lambda: L.GroupNormalization(-1)),
], ids=["bilinear", "upsample_first", "crop_first", "invert", "per_channel_scale",
        "softmax_rows", "prelu_shared", "conv3d_transpose_same", "separable1d_causal",
        "layer_norm_all_axes", "group_norm_first", "instance_norm_1d"])
@pytest.mark.parametrize("opset", [None, 18])
def test_onnx_export_of_more_arguments(shape, make, opset):
    from onnx.reference import ReferenceEvaluator

    from convlens.io.onnx_export import to_onnx

    with session(seed=4):
        model = Sequential([L.Input(shape), make(), L.Conv1D(2, 1) if len(shape) == 2 else
                            L.Activation("linear")])
    x = np.random.default_rng(5).standard_normal((2, *shape)).astype(np.float32)
    proto = to_onnx(model, opset_version=opset)
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def small_unet():
    """Down, up twice (transposed conv, upsampling), skips cropped and concatenated."""
    x = L.Input((12, 12, 1))
    down = L.Conv2D(4, 3, activation="relu", name="down")(x)  # 10x10
    pooled = L.MaxPooling2D(2, name="pooled")(down)  # 5x5
    deep = L.Conv2D(6, 3, padding="same", name="deep")(pooled)
    up = L.Conv2DTranspose(4, 2, strides=2, name="up")(deep)  # 10x10
    skip = L.Cropping2D(1, name="skip")(down)  # 8x8
    up_cropped = L.Cropping2D(1, name="up_cropped")(up)
    joined = L.Concatenate(name="joined")([up_cropped, skip])
    again = L.UpSampling2D(2, name="again")(joined)  # 16x16
    return Model(x, L.Conv2D(2, 1, name="out")(again))


FED_BY = {"down": ["input_layer"], "pooled": ["down"], "deep": ["pooled"], "up": ["deep"],
          "skip": ["down"], "up_cropped": ["up"], "joined": ["up_cropped", "skip"],
          "again": ["joined"], "out": ["again"]}


def test_report_of_a_unet_lists_its_layers_in_order_with_what_feeds_them():
    with session(seed=6):
        model = small_unet()
    x = np.random.default_rng(7).standard_normal((1, 12, 12, 1)).astype(np.float32)
    page = html.unescape(report_html(model, x=x))
    headings = [page.index(f"{i}. {layer.name} (") for i, layer in enumerate(model.layers)]
    assert headings == sorted(headings)
    explanation = model.explain()
    for name, feeders in FED_BY.items():
        assert explanation[name].inputs_from == [feeders]
        assert "input from: " + ", ".join(f"'{f}'" for f in feeders) in page
    # A value of the concatenation, from each side, equals the forward pass.
    joined = Model(model.inputs, model.get_layer("joined").output).predict(x, verbose=0)[0]
    position = model.layers.index(model.get_layer("joined"))
    for index in ((2, 3, 1), (5, 0, 6)):  # channel 1 from 'up_cropped', 6 from 'skip'
        result = trace(model, position, index, x)
        assert result.value == pytest.approx(float(joined[index]), rel=1e-6, abs=1e-6)
        assert ("up_cropped" if index[-1] < 4 else "skip") in result.formula
    # Through the branches the field is the largest one's: the transposed conv's path.
    fields = receptive_fields(model)
    assert "'up_cropped'" in fields[position].note


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_a_bilinear_upsampling_trace_equals_the_forward_pass(data_format):
    shape = (3, 4, 2) if data_format == "channels_last" else (2, 3, 4)
    model = Sequential([L.Input(shape), L.UpSampling2D((2, 3), interpolation="bilinear",
                                                       data_format=data_format)])
    x = np.random.default_rng(8).standard_normal((1, *shape)).astype(np.float32)
    expected = model.predict(x, verbose=0)[0]
    for index in itertools.product(*(range(n) for n in expected.shape)):
        result = trace(model, 0, index, x)
        assert result.value == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-6)
    assert "bilinear" in str(result)


def test_a_softmax_over_several_axes_is_refused_by_onnx_export_naming_the_layer():
    from convlens.io.onnx_export import to_onnx

    model = Sequential([L.Input((3, 4, 2)), L.Softmax(axis=[1, 2], name="wide")])
    with pytest.raises(ValueError, match="'wide'.*several axes"):
        to_onnx(model)


def test_squeeze_and_excitation_broadcast_is_worded_traced_and_sees_the_whole_input():
    with session(seed=9):
        x = L.Input((4, 4, 3))
        maps = L.Conv2D(3, 1, name="maps")(x)
        weights = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(maps)
        model = Model(x, L.Multiply(name="excite")([maps, weights]))
    sample = np.random.default_rng(10).standard_normal((1, 4, 4, 3)).astype(np.float32)
    words = str(model.explain()["excite"])
    assert "'maps'" in words and "'squeeze'" in words and "broadcast" in words
    expected = model.predict(sample, verbose=0)[0]
    for index in ((0, 0, 0), (3, 2, 1), (1, 3, 2)):
        result = trace(model, "excite", index, sample)
        assert result.value == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-6)
    assert receptive_fields(model)[-1].whole_input


def test_a_model_of_two_inputs_is_explained_traced_and_reported(tmp_path, capsys):
    from convlens.cli import main
    from convlens.explain.report import sample_input

    with session(seed=11):
        left, right = L.Input((6, 6, 2), name="left_in"), L.Input((6, 6, 2), name="right_in")
        joined = L.Add(name="sum")([L.Conv2D(3, 3, padding="same", name="wide")(left),
                                    L.Conv2D(3, 1, name="narrow")(right)])
        model = Model([left, right], [joined, L.GlobalAveragePooling2D(name="pool")(joined)])
    x = sample_input(model)
    assert [a.shape for a in x] == [(1, 6, 6, 2), (1, 6, 6, 2)]
    expected = Model(model.inputs, model.get_layer("sum").output).predict(x, verbose=0)[0]
    for index in ((0, 0, 0), (3, 4, 2)):
        result = trace(model, "sum", index, x)
        assert result.value == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="has 2 inputs; pass x as a list"):
        trace(model, "sum", (0, 0, 0), x[0])
    fields = {layer.name: field for layer, field in zip(model.layers, receptive_fields(model))}
    assert fields["sum"].size == (3, 3) and "'wide'" in fields["sum"].note
    path = tmp_path / "two.keras"
    model.save(path)
    assert main(["explain", str(path), "--layer", "sum", "--trace", "3,4,2",
                 "--html", str(tmp_path / "two.html")]) == 0
    out = capsys.readouterr().out
    assert "input from: 'wide', 'narrow'" in out and "matches: yes" in out
    assert "left_in" in (tmp_path / "two.html").read_text()
