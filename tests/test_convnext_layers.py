"""ConvNeXt's own layers, LayerScale and StochasticDepth, against Keras's
(``keras.src.applications.convnext``): summary, predict, one SGD step, files both ways, and
StochasticDepth's training draws (whole samples, from the session's stream)."""

import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")
convnext = pytest.importorskip("keras.src.applications.convnext")

import convlens  # noqa: E402
from convlens.layers import convnext as ours_convnext  # noqa: E402
from tests.test_functional import _summary, assert_same_sgd_step  # noqa: E402


def _block(L, scale_cls, depth_cls, model_cls, input_fn, rate):
    """A ConvNeXt-style residual block: x + StochasticDepth(LayerScale(f(x)))."""
    x = input_fn((4, 4, 3), name="img")
    h = L.Conv2D(3, 3, padding="same", name="conv")(x)
    branch = depth_cls(rate, name="drop_path")(scale_cls(0.5, 3, name="scale")(h))
    y = L.Dense(2, name="out")(L.Flatten(name="flat")(x + branch))
    return model_cls(x, y, name="block")


def _pair(rate=0.25):
    keras.utils.clear_session()
    convlens.utils.clear_session()
    reference = _block(keras.layers, convnext.LayerScale, convnext.StochasticDepth,
                       keras.Model, keras.Input, rate)
    ours = _block(convlens.layers, ours_convnext.LayerScale, ours_convnext.StochasticDepth,
                  convlens.Model, convlens.Input, rate)
    weights = reference.get_weights()
    weights[2] = np.random.default_rng(2).uniform(-1, 1, 3).astype("float32")  # gamma
    reference.set_weights(weights)
    ours.set_weights(weights)
    return reference, ours


def _x(rows=3):
    return np.random.default_rng(0).standard_normal((rows, 4, 4, 3)).astype("float32")


def test_summary_weights_and_predict_equal_keras():
    reference, ours = _pair()
    assert _summary(ours) == _summary(reference)
    scale = ours.get_layer("scale")
    assert [w.name for w in scale.weights] == [w.name for w in reference.get_layer("scale").weights]
    np.testing.assert_allclose(ours.predict(_x(), verbose=0),
                               np.asarray(reference.predict(_x(), verbose=0)), rtol=1e-5,
                               atol=1e-6)


def test_one_sgd_step_equals_keras():
    reference, ours = _pair(rate=0.0)  # no draws, so both take the same step
    y = np.random.default_rng(1).standard_normal((3, 2)).astype("float32")
    assert_same_sgd_step(reference, ours, _x(), y, 0.1, atol=1e-5)


def test_files_open_both_ways_with_keras_entries(tmp_path):
    reference, ours = _pair()
    reference.save(tmp_path / "theirs.keras")
    ours.save(tmp_path / "ours.keras")

    def entries(path):
        layers = json.loads(zipfile.ZipFile(path).read("config.json"))["config"]["layers"]
        found = {e["name"]: e for e in layers if e["class_name"] in ("LayerScale",
                                                                     "StochasticDepth")}
        for entry in found.values():
            entry["config"]["dtype"].pop("shared_object_id", None)
        return found

    assert entries(tmp_path / "ours.keras") == entries(tmp_path / "theirs.keras")
    loaded = convlens.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(loaded.predict(_x(), verbose=0),
                               np.asarray(reference.predict(_x(), verbose=0)), rtol=1e-5,
                               atol=1e-6)
    again = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(again.predict(_x(), verbose=0)),
                               ours.predict(_x(), verbose=0), rtol=1e-5, atol=1e-6)


def test_stochastic_depth_drops_whole_samples_from_the_session_stream():
    layer = ours_convnext.StochasticDepth(0.25)
    x = np.random.default_rng(3).uniform(1, 2, (4000, 2, 2, 3)).astype("float32")
    with convlens.utils.session(seed=7):
        y = layer(x, training=True)
        grad = layer.backward(np.ones_like(x))
    with convlens.utils.session(seed=7):  # Keras's formula on the same uniform draws
        uniform = convlens.utils.rng().random((4000, 1, 1, 1), dtype=np.float32)
    keep = np.floor(0.75 + uniform)
    np.testing.assert_allclose(y, x / 0.75 * keep, rtol=1e-6)
    np.testing.assert_allclose(grad, np.broadcast_to(keep / 0.75, x.shape), rtol=1e-6)
    dropped = (y == 0).all(axis=(1, 2, 3))
    assert ((y == 0).any(axis=(1, 2, 3)) == dropped).all()  # a sample is dropped whole
    assert abs(dropped.mean() - 0.25) < 0.03  # binomial sd 0.007
    np.testing.assert_array_equal(layer(x), x)  # inference: unchanged


def test_layer_scale_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    layer = ours_convnext.LayerScale(0.1, 3)
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 3)).astype("float32")
    layer(x)
    gamma = np.array([0.5, -2.0, 3.0], "float32")
    layer.set_weights([gamma])
    grad_y = np.random.default_rng(5).standard_normal(x.shape).astype("float32")
    y = layer(x, training=True)
    grad_x = layer.backward(grad_y)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(gamma, requires_grad=True)
    (tx * tg).backward(torch.from_numpy(grad_y))
    np.testing.assert_allclose(y, (tx * tg).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.gamma.grad, tg.grad.numpy(), rtol=1e-5)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match=r"LayerScale 'wide'.*4 channels.*has 3.*"
                                         r"projection_dim=3"):
        ours_convnext.LayerScale(1e-6, 4, name="wide")(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"`drop_path_rate` must be a number in \[0, 1\]; "
                                         r"received drop_path_rate=1.5"):
        ours_convnext.StochasticDepth(1.5)
    with pytest.raises(ValueError, match=r"`init_values` must be a number"):
        ours_convnext.LayerScale("small", 4)


def test_explanations_name_what_they_do():
    _, ours = _pair()
    scale = ours.get_layer("scale").explain()
    assert "gamma[c]" in scale.mechanism[0] and "3 channels" in scale.mechanism[0]
    drop = ours.get_layer("drop_path").explain()
    assert "probability 0.25" in drop.mechanism[0]
    assert len(ours.explain().layers) == len(ours.layers)


def test_a_small_convnext_with_stochastic_depth_opens_both_ways(tmp_path):
    """Keras's own ConvNeXt builder, one block a stage and drop_path_rate > 0, so the file has
    StochasticDepth layers as well as LayerScale ones and nested Sequential models."""
    keras.utils.set_random_seed(0)
    reference = convnext.ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[4, 8, 8, 8],
                                  drop_path_rate=0.2, input_shape=(32, 32, 3), weights=None,
                                  classes=3, name="small_convnext")
    reference.save(tmp_path / "theirs.keras")
    ours = convlens.load_model(tmp_path / "theirs.keras")
    kinds = {type(layer).__name__ for layer in ours.layers}
    assert {"LayerScale", "StochasticDepth", "Sequential"} <= kinds
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    expected = np.asarray(reference.predict(x, verbose=0))
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
    assert _summary(ours) == _summary(reference)
    ours.save(tmp_path / "ours.keras")
    again = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), expected, rtol=1e-4,
                               atol=1e-6)


def test_to_torch_predicts_the_same_and_gives_layer_scale_back():
    torch = pytest.importorskip("torch")
    from convlens.io import load_torch_weights, to_torch

    _, ours = _pair()
    module = to_torch(ours)
    with torch.no_grad():
        got = module(torch.from_numpy(_x())).numpy()
    np.testing.assert_allclose(got, ours.predict(_x(), verbose=0), rtol=1e-5, atol=1e-6)
    state = module.state_dict()
    key = "layers.scale.scale.weight"
    state[key] = torch.tensor([2.0, -1.0, 0.25])
    module.load_state_dict(state)
    load_torch_weights(ours, module)
    np.testing.assert_array_equal(ours.get_layer("scale").get_weights()[0], [2.0, -1.0, 0.25])
