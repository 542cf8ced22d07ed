"""Arithmetic on symbolic tensors (``x + 3``, ``x * y``, ``3 - x``, ``-x``, ``x / 2``) against
real Keras: the same operation nodes (summary text, names, ``.keras`` entries), the same
predictions and the same SGD step; files with operations open both ways."""

import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from convlens.kinds import kind_of  # noqa: E402
from convlens.models import Model  # noqa: E402
from tests.test_functional import _summary, assert_same_sgd_step  # noqa: E402


def _arithmetic(L, model_cls, input_fn):
    x = input_fn((4, 4, 3), name="img")
    h = L.Conv2D(4, 3, padding="same", name="conv")(x)
    hard = h * (L.ReLU(6.0, name="relu6")(h + 3.0) * (1.0 / 6.0))  # MobileNetV3's hard-swish
    gate = L.Dense(4, name="gate")(x)
    pooled = L.GlobalAveragePooling2D(keepdims=True, name="pool")(gate)  # (1, 1, 4) broadcasts
    mixed = 3 - hard / 2 + gate * hard - (-gate) * pooled + 2 / (gate * gate + 1)
    y = L.Dense(2, name="out")(L.Flatten(name="flat")(mixed))
    return model_cls(x, y, name="arithmetic")


def _pair():
    keras.utils.clear_session()
    convlens.utils.clear_session()
    reference = _arithmetic(keras.layers, keras.Model, keras.Input)
    ours = _arithmetic(convlens.layers, Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    return reference, ours


def _x(rows=3, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 4, 4, 3)).astype("float32")


def test_summary_names_and_predict_equal_keras():
    reference, ours = _pair()
    assert _summary(ours) == _summary(reference)
    # Keras's model.layers leaves its operations out (its summary shows them); convlens lists
    # them as layers.
    layers = [layer.name for layer in ours.layers if not kind_of(layer).operation]
    assert layers == [layer.name for layer in reference.layers]
    np.testing.assert_allclose(ours.predict(_x(), verbose=0),
                               np.asarray(reference.predict(_x(), verbose=0)),
                               rtol=1e-5, atol=1e-5)


def test_one_sgd_step_equals_keras():
    reference, ours = _pair()
    y = np.random.default_rng(1).standard_normal((3, 2)).astype("float32")
    assert_same_sgd_step(reference, ours, _x(), y, 0.05, atol=1e-5)


def _operation_entries(path) -> list:
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    entries = [entry for entry in config["config"]["layers"]
               if entry["module"] == "keras.src.ops.numpy"]
    for entry in entries:
        for node in entry["inbound_nodes"]:
            for arg in node["args"]:
                if isinstance(arg, dict):
                    arg["config"].pop("dtype")
    return entries


def test_files_with_operations_open_both_ways(tmp_path):
    reference, ours = _pair()
    reference.save(tmp_path / "theirs.keras")
    ours.save(tmp_path / "ours.keras")
    entries = _operation_entries(tmp_path / "ours.keras")
    assert len(entries) == 14
    assert entries == _operation_entries(tmp_path / "theirs.keras")

    loaded = convlens.load_model(tmp_path / "theirs.keras")
    assert _summary(loaded) == _summary(reference)
    np.testing.assert_allclose(loaded.predict(_x(), verbose=0),
                               np.asarray(reference.predict(_x(), verbose=0)),
                               rtol=1e-5, atol=1e-5)
    again = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(again.predict(_x(), verbose=0)),
                               ours.predict(_x(), verbose=0), rtol=1e-5, atol=1e-5)


def test_weights_files_have_no_group_for_an_operation(tmp_path):
    reference, ours = _pair()
    ours.save_weights(tmp_path / "ours.weights.h5")
    reference.save_weights(tmp_path / "theirs.weights.h5")
    import h5py

    with h5py.File(tmp_path / "ours.weights.h5") as ours_file:
        with h5py.File(tmp_path / "theirs.weights.h5") as theirs_file:
            assert sorted(ours_file["layers"]) == sorted(theirs_file["layers"])
    twin = _arithmetic(convlens.layers, Model, convlens.Input)
    twin.load_weights(tmp_path / "theirs.weights.h5")
    np.testing.assert_allclose(twin.predict(_x(), verbose=0), ours.predict(_x(), verbose=0))


def test_explain_and_a_trace_through_an_operation_equal_the_forward_pass():
    _, ours = _pair()
    explanation = ours.explain()
    assert len(explanation.layers) == len(ours.layers)
    words = ours.get_layer("add").explain().mechanism[0]
    assert "`'conv' + 3`" in words
    for name in ("add", "subtract", "true_divide_1", "negative", "multiply_3"):
        layer = ours.get_layer(name)
        traced = convlens.explain.trace(ours, name, (1, 2, 3), _x(1))
        assert traced.matches, (name, traced.value, traced.forward_value)
        assert type(layer).__name__ in ("Add", "Subtract", "TrueDivide", "Negative", "Multiply")


def test_arithmetic_refuses_what_is_not_a_tensor_or_a_number():
    x = convlens.Input((3,))
    with pytest.raises(TypeError, match=r"Add.*received ndarray.*Rescaling"):
        x + np.ones(3, "float32")
    with pytest.raises(TypeError, match=r"Multiply.*received bool"):
        x * True
    with pytest.raises(TypeError, match=r"Subtract.*received str"):
        "3" - x


def test_arithmetic_on_shapes_that_do_not_broadcast_names_both():
    a, b = convlens.Input((3,)), convlens.Input((4,))
    with pytest.raises(ValueError, match=r"Add 'add.*\(None, 3\) and \(None, 4\)"):
        a + b


def test_a_file_operation_with_a_non_number_constant_is_refused(tmp_path):
    reference, _ = _pair()
    reference.save(tmp_path / "theirs.keras")
    with zipfile.ZipFile(tmp_path / "theirs.keras") as source:
        files = {name: source.read(name) for name in source.namelist()}
    config = json.loads(files["config.json"])
    entry = next(e for e in config["config"]["layers"] if e["module"] == "keras.src.ops.numpy")
    entry["inbound_nodes"][0]["args"][1] = "__import__('os')"
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    with pytest.raises(ValueError, match=r"layer 'add'.*expected a tensor reference"):
        convlens.load_model(tmp_path / "bad.keras")


def test_onnx_export_of_arithmetic_runs_as_predict():
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    from convlens.io.onnx_export import to_onnx

    _, ours = _pair()
    proto = to_onnx(ours)
    got = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: _x()})[0]
    np.testing.assert_allclose(got, ours.predict(_x(), verbose=0), rtol=1e-4, atol=1e-5)


def test_to_torch_of_arithmetic_predicts_the_same():
    torch = pytest.importorskip("torch")
    from convlens.io import to_torch

    _, ours = _pair()
    with torch.no_grad():
        got = to_torch(ours)(torch.from_numpy(_x())).numpy()
    np.testing.assert_allclose(got, ours.predict(_x(), verbose=0), rtol=1e-4, atol=1e-5)
