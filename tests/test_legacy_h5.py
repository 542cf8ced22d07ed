"""Legacy HDF5 model files (``model.save("m.h5")``) written by real Keras 3 open in convlens:
every layer kind, its weights, compile settings and optimizer state; damaged or foreign files
get clear errors before anything is built or set."""

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest

import convlens
import convlens.layers as cl
from convlens.models import Sequential
from tests.test_keras_format import many_kinds, randomize

keras = pytest.importorskip("keras")


def more_kinds():
    """The layer kinds many_kinds() leaves out."""
    return Sequential([
        cl.Input((6, 6, 6, 2)), cl.Conv3D(3, 2, padding="same", data_format="channels_last"),
        cl.MaxPooling3D(2), cl.AveragePooling3D(1, data_format="channels_first"),
        cl.Reshape((27, 3)), cl.AveragePooling1D(2, padding="same"),
        cl.GlobalAveragePooling1D(keepdims=True), cl.Reshape((1, 1, 3)),
        cl.GlobalMaxPooling2D(keepdims=True), cl.GlobalAveragePooling2D(),
        cl.Dense(2, activation="sigmoid"),
    ], name="more_kinds")


def keras_h5(model, tmp_path, name):
    """``model`` rebuilt by real Keras (through a .keras file) and saved by Keras as .h5."""
    model.save(tmp_path / f"{name}.keras")
    reference = keras.saving.load_model(tmp_path / f"{name}.keras", compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls the format legacy
        reference.save(tmp_path / f"{name}.h5")
    return reference, tmp_path / f"{name}.h5"


@pytest.mark.parametrize("make", [many_kinds, more_kinds])
def test_every_layer_kind_opens_with_keras_weights_and_predictions(tmp_path, make):
    reference, path = keras_h5(randomize(make()), tmp_path, "kinds")
    model = convlens.load_model(path)
    assert [type(layer).__name__ for layer in model.layers] == [
        type(layer).__name__ for layer in reference.layers]
    for mine, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    x = np.random.default_rng(1).random((3, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), reference.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_compile_settings_and_optimizer_state_come_along(tmp_path):
    reference = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")], name="trained")
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x, y = rng.random((12, 5)).astype(np.float32), rng.integers(0, 3, 12)
    reference.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save(tmp_path / "trained.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole optimizer state loads
        model = convlens.load_model(tmp_path / "trained.h5")
    assert type(model.optimizer).__name__ == "Adam" and model.loss.name == (
        "sparse_categorical_crossentropy")
    assert model.optimizer.iterations == int(reference.optimizer.iterations) == 3
    for mine, theirs in zip(model.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(mine.value, np.asarray(theirs.numpy()))
    assert not convlens.load_model(tmp_path / "trained.h5", compile=False).compiled


def test_the_cli_reads_h5_files(tmp_path, capsys):
    from convlens.cli import main

    _, path = keras_h5(randomize(many_kinds()), tmp_path, "cli")
    convlens.load_model(path).summary()
    expected = capsys.readouterr().out
    assert main(["summary", str(path)]) == 0
    assert capsys.readouterr().out == expected


def rewrite(path, target, change):
    shutil.copy(path, target)
    with h5py.File(target, "a") as store:
        change(store)
    return target


def test_foreign_and_damaged_files_are_refused_before_anything_is_set(tmp_path):
    _, path = keras_h5(randomize(many_kinds()), tmp_path, "good")

    def lambda_layer(store):
        config = json.loads(store.attrs["model_config"])
        config["config"]["layers"][2]["class_name"] = "Lambda"
        store.attrs["model_config"] = json.dumps(config)

    def wrong_shape(store):
        group = store["model_weights/c1"]
        kernel = group.attrs["weight_names"][0]
        kernel = kernel.decode() if isinstance(kernel, bytes) else kernel
        del group[kernel]
        group.create_dataset(kernel, data=np.zeros((2, 2)))

    def no_config(store):
        del store.attrs["model_config"]

    def not_json(store):
        store.attrs["model_config"] = "{not json"

    cases = [(lambda_layer, r"layer 1 .* is a 'Lambda'"),
             (wrong_shape, r"Weight 'c1/kernel' has shape \(3, 3, 3, 4\); .* holds shape \(2, 2\)"),
             (no_config, "without a 'model_config' attribute"),
             (not_json, "'model_config' attribute is not valid JSON")]
    for change, message in cases:
        target = rewrite(path, tmp_path / f"{change.__name__}.h5", change)
        with pytest.raises(ValueError, match=message):
            convlens.load_model(target)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        convlens.load_model(tmp_path / "text.h5")
