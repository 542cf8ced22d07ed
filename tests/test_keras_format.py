""".keras whole-model files: our round trip, real Keras loads ours, we load real Keras's,
clear errors for files we can't represent, atomic writes."""

import json
import os
import zipfile

import numpy as np
import pytest

import convlens.layers as cl
from convlens.io import keras_format
from convlens.io.keras_format import load_model, save_model
from convlens.models import Sequential

keras = pytest.importorskip("keras")
# These models are compiled but never trained: like Keras, loading one warns that the saved
# optimizer state (iteration and learning rate only) does not fit the built optimizer.
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


def many_kinds():
    """Every 2D layer kind the format writes, with non-default settings where they matter."""
    return Sequential([
        cl.Input((8, 8, 3)),
        cl.Conv2D(4, 3, activation="relu", padding="same", name="c1"),
        cl.BatchNormalization(momentum=0.9),
        cl.SeparableConv2D(5, 3, depth_multiplier=2),
        cl.Conv2DTranspose(3, 2, strides=2, padding="same"),
        cl.DepthwiseConv2D(3, depth_multiplier=2, activation="tanh"),
        cl.ZeroPadding2D(((1, 0), (0, 1))),
        cl.AveragePooling2D(2),
        cl.MaxPooling2D(2, strides=1, padding="same"),
        cl.Dropout(0.3),
        cl.Flatten(),
        cl.Dense(12, kernel_initializer="he_normal"),
        cl.ReLU(max_value=6.0),
        cl.Reshape((6, 2)),
        cl.Conv1D(3, 2, dilation_rate=2),
        cl.MaxPooling1D(1),
        cl.GlobalMaxPooling1D(),
        cl.Activation("softmax"),
    ], name="many_kinds")


def randomize(model, seed=0):
    """Weights that differ from initial values, so a file that lost them shows it."""
    rng = np.random.default_rng(seed)
    model.set_weights([
        np.abs(rng.normal(1.0, 0.2, v.shape)) if "variance" in v.name
        else rng.normal(0.0, 0.3, v.shape)
        for v in model.weights
    ])
    return model


def sample(shape=(8, 8, 3), n=4):
    return np.random.default_rng(1).random((n, *shape)).astype(np.float32)


def rewrite_config(source, target, change):
    """Copy a .keras file, passing its config.json dict through ``change``."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


@pytest.fixture
def saved(tmp_path):
    model = randomize(many_kinds())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    path = tmp_path / "ours.keras"
    save_model(model, path)
    return model, path


def test_round_trip_keeps_layers_weights_predictions_and_compile(saved):
    model, path = saved
    loaded = load_model(path)
    assert loaded.name == "many_kinds"
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers
    ]
    for mine, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, want)
    np.testing.assert_array_equal(loaded.predict(sample(), verbose=0),
                                  model.predict(sample(), verbose=0))
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    assert loaded.loss.name == "sparse_categorical_crossentropy"
    assert [name for name, _ in loaded.metrics_list] == ["accuracy"]
    assert not load_model(path, compile=False).compiled


def test_zip_members_and_json_follow_keras(saved, tmp_path):
    model, path = saved
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
        metadata = json.loads(archive.read("metadata.json"))
        ours = json.loads(archive.read("config.json"))
    assert set(metadata) == {"keras_version", "date_saved"}
    reference = keras.saving.load_model(path)
    reference.save(tmp_path / "theirs.keras")
    with zipfile.ZipFile(tmp_path / "theirs.keras") as archive:
        theirs = json.loads(archive.read("config.json"))
    assert set(ours) == set(theirs)
    assert set(ours["config"]) == set(theirs["config"])
    assert ours["build_config"] == theirs["build_config"]
    for mine, want in zip(ours["config"]["layers"], theirs["config"]["layers"]):
        assert set(mine) == set(want), want["class_name"]
        assert set(mine["config"]) == set(want["config"]), want["class_name"]
        mine["config"].pop("dtype"), want["config"].pop("dtype")
        if want["class_name"] == "InputLayer":
            mine["config"].pop("name"), want["config"].pop("name")
        assert mine == want


def test_real_keras_loads_our_file_and_predicts_the_same(saved):
    model, path = saved
    reference = keras.saving.load_model(path)
    np.testing.assert_allclose(reference.predict(sample(), verbose=0),
                               model.predict(sample(), verbose=0), atol=1e-5)
    assert [layer.name for layer in reference.layers] == [layer.name for layer in model.layers]
    assert reference.loss == "sparse_categorical_crossentropy"


def test_we_load_a_file_real_keras_wrote(tmp_path):
    layers = keras.layers
    reference = keras.Sequential([
        keras.Input((4, 4, 4, 2)),
        layers.Conv3D(3, 2, padding="same", activation="sigmoid"),
        layers.AveragePooling3D(2),
        layers.MaxPooling3D(1),
        layers.Reshape((4, 6)),
        layers.AveragePooling1D(2),
        layers.Conv1D(2, 1),
        layers.BatchNormalization(),
        layers.GlobalAveragePooling1D(),
        layers.Dense(3, bias_initializer="ones"),
    ], name="from_keras")
    reference.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), loss="mse",
                      metrics=["mae"])
    x = sample((4, 4, 4, 2))
    reference.fit(x, np.ones((4, 3)), epochs=1, verbose=0)  # moves the BN statistics
    reference.save(tmp_path / "theirs.keras")
    model = load_model(tmp_path / "theirs.keras")
    for mine, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, want)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-5)
    assert model.optimizer.momentum == 0.5 and model.loss.name == "mean_squared_error"


def test_keras_model_without_input_compiled_with_objects(tmp_path):
    reference = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(3)])
    reference.build((None, 5, 5, 1))
    reference.compile(optimizer=keras.optimizers.RMSprop(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy()])
    reference.save(tmp_path / "theirs.keras")
    model = load_model(tmp_path / "theirs.keras")
    assert model.input_shape == (None, 5, 5, 1)
    x = sample((5, 5, 1))
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0),
                               atol=1e-5)
    assert model.loss.from_logits and model.optimizer.learning_rate == pytest.approx(0.01)
    assert [name for name, _ in model.metrics_list] == ["sparse_categorical_accuracy"]

    save_model(model, tmp_path / "ours.keras")  # a from_logits loss is written as a dict
    assert keras.saving.load_model(tmp_path / "ours.keras").loss.get_config()["from_logits"]


def test_keras_settings_we_cannot_represent_name_the_layer_and_key(tmp_path):
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)])
    reference.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="'Lambda'.*Supported layers: .*Conv1D"):
        load_model(tmp_path / "lambda.keras")

    half = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="float16",
                                                                   name="half")])
    half.save(tmp_path / "half.keras")
    with pytest.raises(ValueError, match="layer 'half' .*dtype=.*float32 only"):
        load_model(tmp_path / "half.keras")


def test_functional_model_loads_and_other_model_classes_are_refused(tmp_path):
    inputs = keras.Input((3,))
    reference = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    reference.save(tmp_path / "functional.keras")
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    np.testing.assert_allclose(load_model(tmp_path / "functional.keras").predict(x, verbose=0),
                               reference.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    config = json.loads(zipfile.ZipFile(tmp_path / "functional.keras").read("config.json"))
    config["class_name"] = config["registered_name"] = "MyModel"
    with pytest.raises(ValueError, match="Sequential and Functional models.*'MyModel'"):
        keras_format.model_from_config(config)


def test_bad_files(saved, tmp_path):
    _, path = saved
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip archive"):
        load_model(text)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.keras")

    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"lacks \['model.weights.h5'\]"):
        load_model(no_weights)

    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
        target.writestr("config.json", b"{not json")
        target.writestr("model.weights.h5", source.read("model.weights.h5"))
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_model(broken)

    def custom_layer(config):
        config["config"]["layers"][2]["registered_name"] = "my_package>MyConv"

    with pytest.raises(ValueError, match="layer 1 .*'my_package>MyConv'"):
        load_model(rewrite_config(path, tmp_path / "custom.keras", custom_layer))

    def custom_model(config):
        config["registered_name"] = "my_package>MySequential"

    with pytest.raises(ValueError,
                       match="Sequential and Functional models.*'my_package>MySequential'"):
        load_model(rewrite_config(path, tmp_path / "custom_model.keras", custom_model))

    def unknown_initializer(config):
        config["config"]["layers"][1]["config"]["kernel_initializer"]["class_name"] = "Orth"

    with pytest.raises(ValueError, match="layer 'c1' \\(Conv2D\\): kernel_initializer="):
        load_model(rewrite_config(path, tmp_path / "init.keras", unknown_initializer))

    def huber_loss(config):
        config["compile_config"]["loss"] = "huber"

    huber = rewrite_config(path, tmp_path / "huber.keras", huber_loss)
    with pytest.raises(ValueError, match="compile_config.*'huber'.*compile=False"):
        load_model(huber)
    assert not load_model(huber, compile=False).compiled

    def wrong_shapes(config):
        config["config"]["layers"][1]["config"]["filters"] = 7

    with pytest.raises(ValueError, match="'c1/kernel' has shape"):
        load_model(rewrite_config(path, tmp_path / "shapes.keras", wrong_shapes))


def test_save_refuses_what_a_keras_file_cannot_hold(tmp_path):
    model = Sequential([cl.Input((3,)), cl.Dense(2)])
    with pytest.raises(ValueError, match="must end in `.keras`"):
        save_model(model, tmp_path / "m.h5")
    with pytest.raises(ValueError, match="not built"):
        save_model(Sequential([cl.Dense(2)]), tmp_path / "m.keras")
    custom = Sequential([cl.Input((3,)), cl.Dense(2, activation=lambda x: x * 2, name="odd")])
    with pytest.raises(ValueError, match="'odd' uses the custom activation"):
        save_model(custom, tmp_path / "m.keras")
    assert os.listdir(tmp_path) == []


def test_writes_are_atomic(saved, tmp_path, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    with pytest.raises(ValueError, match="overwrite=False"):
        save_model(model, path, overwrite=False)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail)
    with pytest.raises(OSError, match="disk full"):
        save_model(randomize(many_kinds(), seed=2), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ours.keras"]
    monkeypatch.undo()
    assert keras_format.load_model(path).count_params() == model.count_params()


def test_model_save_and_load_model_as_in_keras(tmp_path):
    import convlens

    model = randomize(many_kinds(), seed=3)
    model.save(tmp_path / "m.keras")
    for loader in (convlens.load_model, convlens.models.load_model, convlens.saving.load_model):
        loaded = loader(tmp_path / "m.keras")
        np.testing.assert_array_equal(loaded.predict(sample(), verbose=0),
                                      model.predict(sample(), verbose=0))
    with pytest.raises(ValueError, match=r"model.save\('model.keras'\)"):
        model.save(tmp_path / "m.h5")


def test_loss_weights_and_weighted_metrics_survive_a_file_both_ways(tmp_path):
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    y, w = np.array([0, 1, 0, 1, 1, 0]), np.array([1, 0, 2, 1, 1, 0.5])
    ours = Sequential([cl.Input((3,)), cl.Dense(2, activation="softmax")])
    ours.compile(optimizer="adam", loss="sparse_categorical_crossentropy", loss_weights=0.5,
                 metrics=["accuracy"], weighted_metrics=["accuracy"])
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    theirs.save(tmp_path / "theirs.keras")
    expected = ours.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert set(expected) == {"accuracy", "weighted_accuracy", "loss"}
    for reloaded in (load_model(tmp_path / "ours.keras"), load_model(tmp_path / "theirs.keras"),
                     theirs):
        got = reloaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
        assert set(got) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-5)
