"""``export_onnx`` and ``model.export(format="onnx")``: the graph computes predict's numbers.

Every graph is checked by ``onnx.checker`` and run by ``onnx.reference.ReferenceEvaluator``
(pure NumPy, no runtime needed) on tiny shapes; outputs must match ``model.predict`` within
1e-4 relative (plus 1e-4 of the largest value).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

import convlens.layers as cl
from convlens import Sequential
from convlens.io import export_onnx, from_torch
from convlens.io.onnx_export import to_onnx

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid",
               "hard_silu", "silu", "swish", "log_sigmoid", "tanh", "softplus", "softsign",
               "mish", None]


def randomize(model, seed: int, scale: float = 0.5) -> None:
    generator = np.random.default_rng(seed)
    for variable in model.weights:
        value = generator.standard_normal(variable.shape).astype(np.float32) * scale
        if "variance" in variable.name:
            value = np.abs(value) + 0.5
        variable.assign(value)


def run_onnx(proto, x: np.ndarray) -> np.ndarray:
    return ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x})[0]


def assert_same(model, x: np.ndarray, **kwargs) -> onnx.ModelProto:
    proto = to_onnx(model, **kwargs)
    onnx.checker.check_model(proto, full_check=True)
    expected = model.predict(x, verbose=0)
    actual = run_onnx(proto, x)
    assert actual.shape == expected.shape
    atol = 1e-4 * max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=atol)
    return proto


@st.composite
def models(draw):
    rank = draw(st.sampled_from([1, 2, 2, 3]))
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    size = 4 if rank == 3 else draw(st.integers(5, 8))
    channels = in_channels = draw(st.sampled_from([1, 2, 4]))
    spatial = [size] * rank
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        groups = draw(st.sampled_from([g for g in (1, 2) if channels % g == 0]))
        filters = groups * draw(st.integers(1, 2))
        kernel = draw(st.integers(1, 3))
        dilation = draw(st.integers(1, 2))
        stride = 1 if dilation > 1 else draw(st.integers(1, 2))
        paddings = ["valid", "same"] + (["causal"] if rank == 1 and
                                        data_format == "channels_last" else [])
        padding = draw(st.sampled_from(paddings))
        span = dilation * (kernel - 1) + 1
        if padding == "valid" and min(spatial) < span:
            padding = "same"
        kind = draw(st.sampled_from(["conv", "conv", "depthwise", "separable"])) if (
            rank == 2) else "conv"
        activation = draw(st.sampled_from(ACTIVATIONS))
        if kind == "conv":
            layers.append(getattr(cl, f"Conv{rank}D")(
                filters, kernel, strides=stride, padding=padding, dilation_rate=dilation,
                groups=groups, data_format=data_format, activation=activation,
                use_bias=draw(st.booleans())))
        elif kind == "depthwise":
            layers.append(cl.DepthwiseConv2D(kernel, stride, padding, depth_multiplier=2,
                                             dilation_rate=dilation, data_format=data_format,
                                             activation=activation))
        else:
            layers.append(cl.SeparableConv2D(filters, kernel, stride, padding,
                                              data_format=data_format, dilation_rate=dilation,
                                              activation=activation))
        channels = {"conv": filters, "depthwise": 2 * channels, "separable": filters}[kind]
        if padding == "valid":
            spatial = [(n - span) // stride + 1 for n in spatial]
        else:
            spatial = [-(-n // stride) for n in spatial]
        if draw(st.booleans()):
            axis = -1 if data_format == "channels_last" else 1
            layers.append(cl.BatchNormalization(axis=axis, epsilon=draw(
                st.sampled_from([1e-3, 1e-5])), center=draw(st.booleans())))
    if draw(st.booleans()):
        pool = draw(st.sampled_from(["Max", "Average"]))
        pool_size = draw(st.integers(1, 3))
        layers.append(getattr(cl, f"{pool}Pooling{rank}D")(
            pool_size, strides=draw(st.integers(1, 2)), data_format=data_format,
            padding="same" if min(spatial) < pool_size else draw(st.sampled_from(
                ["valid", "same"]))))
    head = draw(st.sampled_from(["flatten", "global", "none"]))
    if head == "flatten":
        layers += [cl.Flatten(data_format=draw(st.sampled_from(["channels_last",
                                                                "channels_first"]))),
                   cl.Dropout(0.5), cl.Dense(3, activation=draw(st.sampled_from(
                       ["softmax", "log_softmax", None])))]
    elif head == "global" and rank < 3:
        pool = draw(st.sampled_from(["Average", "Max"]))
        layers.append(getattr(cl, f"Global{pool}Pooling{rank}D")(
            data_format=data_format, keepdims=draw(st.booleans())))
    elif draw(st.booleans()):
        layers.append(cl.Activation("softmax"))  # over the last axis, whatever the layout
    input_shape = ((*[size] * rank, in_channels) if data_format == "channels_last"
                   else (in_channels, *[size] * rank))
    return Sequential([cl.Input(input_shape), *layers]), input_shape


@SETTINGS
@given(models(), st.integers(0, 2**31 - 1))
def test_random_models_run_in_onnx_as_in_convlens(case, seed):
    model, input_shape = case
    randomize(model, seed)
    x = np.random.default_rng(seed).standard_normal((2, *input_shape)).astype(np.float32)
    assert_same(model, x)


@SETTINGS
@given(
    kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
    output_padding=st.sampled_from([None, 0, 1, 2]), dilation=st.integers(1, 2),
    data_format=st.sampled_from(["channels_last", "channels_first"]), size=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_conv_transpose_and_zero_padding(kernel, stride, padding, output_padding,
                                                dilation, data_format, size, seed):
    if stride > 1:
        dilation = 1
    if output_padding is not None and output_padding >= stride:
        output_padding = None
    if padding == "same" and output_padding is not None:
        padding = "valid"  # 'same' with output_padding may crop to nothing on 1-pixel inputs
    shape = (size, size + 1, 2) if data_format == "channels_last" else (2, size, size + 1)
    model = Sequential([
        cl.Input(shape),
        cl.Conv2DTranspose(3, kernel, strides=stride, padding=padding,
                           output_padding=output_padding, dilation_rate=dilation,
                           data_format=data_format, activation="tanh"),
        cl.ZeroPadding2D(((1, 0), (2, 1)), data_format=data_format),
        cl.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2),
    ])
    randomize(model, seed)
    assert_same(model, np.random.default_rng(seed).standard_normal((2, *shape), "float32"))


def test_channels_last_stack_transposes_once_at_each_end_and_batch_is_dynamic(tmp_path):
    model = Sequential([
        cl.Input((8, 8, 1), name="image"), cl.Conv2D(4, 3, activation="relu"),
        cl.BatchNormalization(), cl.MaxPooling2D(2), cl.Conv2D(4, 3, padding="same"),
        cl.Flatten(), cl.Dense(5, activation="softmax"),
    ])
    randomize(model, 0)
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Transpose") == 2
    assert ops[:2] == ["Transpose", "Conv"] and "BatchNormalization" in ops
    assert proto.graph.input[0].name == "image" and proto.graph.output[0].name == "output_0"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [8, 8, 1]
    for batch in (1, 3):
        x = np.random.default_rng(batch).random((batch, 8, 8, 1), dtype=np.float32)
        np.testing.assert_allclose(run_onnx(proto, x), model.predict(x, verbose=0),
                                   rtol=1e-4, atol=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary file left


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_opsets_and_reshape_and_batchnorm_on_a_non_channel_axis(opset):
    model = Sequential([
        cl.Input((4, 5, 3)), cl.Conv2D(6, 2, padding="same", activation="elu"),
        cl.BatchNormalization(axis=1), cl.GlobalMaxPooling2D(keepdims=True),
        cl.Reshape((3, 2)), cl.Dense(2), cl.BatchNormalization(axis=1, scale=False),
    ])
    randomize(model, opset)
    x = np.random.default_rng(opset).standard_normal((2, 4, 5, 3)).astype(np.float32)
    proto = assert_same(model, x, opset_version=opset)
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))


def test_torch_model_through_convlens_to_onnx_gives_torchs_numbers():
    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.GELU(), nn.Flatten(),
                           nn.Linear(24, 3)).eval()
    model = from_torch(module, (1, 8, 8))
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(to_onnx(model), x), expected, rtol=1e-4, atol=1e-5)


class Doubler(cl.Layer):
    def call(self, x, training=False):
        return 2 * x


def test_what_cannot_be_exported_is_named_and_nothing_is_written(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    model = Sequential([cl.Input((3,)), cl.Dense(2), Doubler(name="doubler")])
    with pytest.raises(ValueError, match=r"layer 1 'doubler' \(Doubler\)"):
        export_onnx(model, path)
    model = Sequential([cl.Input((3,)), cl.Dense(2, activation=np.sin, name="wavy")])
    with pytest.raises(ValueError, match="Dense 'wavy'.*custom activation 'sin'"):
        model.export(path, format="onnx")
    assert path.read_bytes() == b"old"
    with pytest.raises(ValueError, match="isn't built"):
        export_onnx(Sequential([cl.Dense(2)]), path)
    with pytest.raises(ValueError, match="format='onnx' only.*SavedModel"):
        model.export(path)
    with pytest.raises(ValueError, match="opset_version"):
        export_onnx(Sequential([cl.Input((3,)), cl.Dense(2)]), path, opset_version=11)
    with pytest.raises(ValueError, match="input_signature=None"):
        export_onnx(Sequential([cl.Input((3,)), cl.Dense(2)]), path, input_signature=[(3,)])


def test_missing_onnx_package_is_a_clear_import_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'convlens\[onnx\]'"):
        export_onnx(Sequential([cl.Input((3,)), cl.Dense(2)]), tmp_path / "m.onnx")


def test_unknown_spatial_sizes_use_same_upper_auto_padding():
    model = Sequential([
        cl.Input((None, None, 2)), cl.Conv2D(3, 3, strides=2, padding="same"),
        cl.MaxPooling2D(3, strides=2, padding="same"), cl.AveragePooling2D(2, padding="same"),
        cl.Conv2DTranspose(2, 3, strides=2, padding="same"), cl.GlobalMaxPooling2D(),
    ])
    randomize(model, 7)
    proto = to_onnx(model)
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim[:3]] == [
        "batch", "dim_1", "dim_2"]
    evaluator = ReferenceEvaluator(proto)
    for height, width in ((9, 7), (6, 5)):
        x = np.random.default_rng(height).standard_normal((2, height, width, 2), "float32")
        np.testing.assert_allclose(evaluator.run(None, {proto.graph.input[0].name: x})[0],
                                   model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
