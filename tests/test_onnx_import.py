"""from_onnx: ONNX files that torch.onnx.export and convlens's export_onnx write are read into
Sequential models that predict the same numbers; what convlens can't express is refused naming
the node and its op type, and files are read as data with their sizes checked first."""

import warnings

import numpy as np
import pytest

import convlens.layers as cl
from convlens.io import export_onnx, from_onnx
from convlens.models import Sequential
from tests.test_torch_export import randomize

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
nn = torch.nn


def chain(data_format):
    last = data_format == "channels_last"
    return Sequential([
        cl.Input((9, 9, 3) if last else (3, 9, 9)),
        cl.Conv2D(4, 3, activation="relu", padding="same", strides=2, data_format=data_format),
        cl.BatchNormalization(axis=-1 if last else 1),
        cl.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh",
                           data_format=data_format),
        cl.SeparableConv2D(5, 3, padding="same", data_format=data_format),
        cl.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid",
                           data_format=data_format),
        cl.ZeroPadding2D(((1, 0), (0, 1)), data_format=data_format),
        cl.MaxPooling2D(3, strides=2, padding="same", data_format=data_format),
        cl.AveragePooling2D(2, strides=1, padding="same", data_format=data_format),
        cl.GlobalMaxPooling2D(data_format=data_format, keepdims=True),
        cl.Flatten(data_format=data_format),
        cl.Dense(6, activation="elu"), cl.ReLU(max_value=2.0), cl.Dropout(0.5),
        cl.Reshape((3, 2)), cl.Conv1D(2, 2, padding="causal", activation="softplus"),
        cl.GlobalAveragePooling1D(), cl.Dense(3, activation="log_softmax"),
    ])


def sample(shape, n=3, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_our_export_reads_back_to_the_same_numbers(tmp_path, data_format):
    model = randomize(chain(data_format))
    export_onnx(model, tmp_path / "m.onnx")
    back = from_onnx(tmp_path / "m.onnx")
    x = sample(model.input_shape[1:])
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


class LeNet(nn.Module):
    """The PyTorch tutorial's network, written as one chain."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )

    def forward(self, x):
        return self.net(x)


def vgg_like():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)]

    return nn.Sequential(*block(3, 8), *block(8, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(16, 10), nn.LogSoftmax(dim=1))


def decoder():
    return nn.Sequential(
        nn.ConvTranspose2d(4, 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Hardtanh(0, 6),
        nn.Conv2d(4, 2, 3, stride=2, padding=1, dilation=1), nn.ELU(), nn.AvgPool2d(2),
        nn.Identity(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5),
        nn.Sigmoid(),
    )


def volumes():
    return nn.Sequential(nn.Conv3d(2, 3, 3, padding=1), nn.Tanh(),
                         nn.MaxPool3d(2), nn.Flatten(), nn.Linear(3 * 2 * 2 * 2, 4), nn.ReLU6())


def torch_export(module, x, path):
    """``torch.onnx.export`` of ``module`` on ``x`` with a dynamic batch axis; returns ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
    return path


def read_back_as_torch_predicts(module, x, path):
    """Export ``module``, read the file with from_onnx, check predict against torch on ``x``;
    returns the convlens model."""
    x = torch.from_numpy(x)
    model = from_onnx(torch_export(module, x, path))
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-4,
                               atol=1e-4)
    return model


@pytest.mark.parametrize(("make", "shape"), [
    (LeNet, (1, 28, 28)), (vgg_like, (3, 16, 16)), (decoder, (4, 4, 4)),
    (volumes, (2, 4, 4, 4)),
])
def test_torch_exports_read_and_predict_as_torch(tmp_path, make, shape):
    torch.manual_seed(0)
    module = make().eval()
    for child in module.modules():
        if isinstance(child, nn.BatchNorm2d):
            child.running_mean.uniform_(-0.5, 0.5)
            child.running_var.uniform_(0.5, 2.0)
    model = read_back_as_torch_predicts(module, sample(shape, n=2), tmp_path / "t.onnx")
    model.summary()  # the model is an ordinary convlens model from here on
    assert model.layers[0].explain() is not None


def graph_file(tmp_path, nodes, initializers=(), name="g.onnx", input_shape=("N", 2, 4, 4),
               output="y"):
    helper = onnx.helper
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_branches_and_unknown_operators_are_refused_naming_node_and_op(tmp_path):
    helper = onnx.helper
    weight = onnx.numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    ratio = graph_file(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Div", ["c", "x"], ["y"], name="ratio"),
    ], [weight])
    with pytest.raises(ValueError, match=r"node 1 'ratio' \(Div\): it combines computed"):
        from_onnx(ratio)
    unknown = graph_file(tmp_path, [helper.make_node("LRN", ["x"], ["y"], name="lrn", size=3)])
    with pytest.raises(ValueError, match=r"node 0 'lrn' \(LRN\): convlens has no layer"):
        from_onnx(unknown)
    custom = graph_file(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="mine",
                                                    domain="com.example")])
    with pytest.raises(ValueError, match=r"'mine' \(Relu\): its domain 'com.example'"):
        from_onnx(custom)


def test_sizes_are_checked_before_tensors_are_read(tmp_path):
    helper = onnx.helper
    liar = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[2, 2, 1, 1],
                            raw_data=np.ones(2, np.float32).tobytes())
    path = graph_file(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [liar])
    with pytest.raises(ValueError, match=r"claims dims \[2, 2, 1, 1\] \(16 bytes\) but holds 8"):
        from_onnx(path)
    huge = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT,
                            dims=[2**20, 2**20, 1, 1], raw_data=b"\0" * 16)
    path = graph_file(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [huge])
    with pytest.raises(ValueError, match="claims 1,099,511,627,776 values"):
        from_onnx(path)
    outside = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[2, 2, 1, 1],
                               data_location=onnx.TensorProto.EXTERNAL)
    entry = outside.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    path = graph_file(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
                      [outside])
    with pytest.raises(ValueError, match="external file"):
        from_onnx(path)
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="is not an ONNX model"):
        from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="every axis but the batch axis fixed"):
        from_onnx(graph_file(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
                             input_shape=("N", 2, "H", 4)))


def test_graphs_with_branches_become_functional_models(tmp_path):
    from onnx.reference import ReferenceEvaluator

    helper = onnx.helper
    rng = np.random.default_rng(4)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3), np.float32), "w")
    other = onnx.numpy_helper.from_array(rng.standard_normal((3, 2, 1, 1), np.float32), "v")
    path = graph_file(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "x"], ["s"], name="residual"),
        helper.make_node("Conv", ["s", "v"], ["p"], name="project"),
        helper.make_node("Concat", ["s", "p"], ["y"], name="joined", axis=1),
    ], [weight, other])
    model = from_onnx(path)
    assert {"Add", "Concatenate"} <= {type(layer).__name__ for layer in model.layers}
    x = sample((2, 4, 4))
    (expected,) = ReferenceEvaluator(str(path)).run(None, {"x": x})
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ResNet18", "UNet", "VGG"])
def test_torch_exports_of_resnet_unet_and_vgg_classes_predict_as_torch(tmp_path, name):
    import tests.test_torch_trace as traced

    torch.manual_seed(0)
    module = traced.random_statistics(getattr(traced, name)())
    shape = {"ResNet18": (3, 32, 32), "UNet": (1, 16, 16), "VGG": (3, 16, 16)}[name]
    read_back_as_torch_predicts(module, sample(shape, n=2), tmp_path / "t.onnx")



@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_torch_upsampling_exported_as_resize_reads_as_keras_upsampling(tmp_path, mode):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Upsample(scale_factor=2, mode=mode),
                           nn.Conv2d(3, 2, 1)).eval()
    x = torch.from_numpy(sample((2, 5, 4), n=2))
    model = from_onnx(torch_export(module, x, tmp_path / "up.onnx"))
    assert any(type(layer).__name__ == "UpSampling2D" for layer in model.layers)
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), expected, rtol=1e-4,
                               atol=1e-5)
