"""Keras .weights.h5 files: round trip, real Keras reads ours and we read Keras's, atomic writes."""

import numpy as np
import pytest

import convlens.layers as cl
from convlens.models import Sequential

keras = pytest.importorskip("keras")


def ours():
    return Sequential([cl.Input((6, 6, 1)), cl.Conv2D(2, 3), cl.BatchNormalization(),
                       cl.Flatten(), cl.Dense(3, activation="softmax")])


def theirs():
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3),
                             keras.layers.BatchNormalization(), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def sample():
    return np.random.default_rng(0).random((4, 6, 6, 1)).astype(np.float32)


def test_keras_loads_our_file_and_we_load_keras_file(tmp_path):
    cl.Conv2D(1, 1), cl.Dense(1), keras.layers.Dense(1)  # shift both processes' auto-names
    model = ours()
    model.save_weights(tmp_path / "ours.weights.h5")
    reference = theirs()
    reference.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(reference.predict(sample(), verbose=0), model(sample()),
                               atol=1e-6)
    reference = theirs()
    reference.save_weights(tmp_path / "theirs.weights.h5")
    model.load_weights(tmp_path / "theirs.weights.h5")
    for mine, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(mine, want)


def test_layers_are_stored_under_keras_keys_not_names(tmp_path):
    h5py = pytest.importorskip("h5py")
    model = Sequential([cl.Input((4,)), cl.Dense(3, name="first"), cl.Dense(2, name="second"),
                        cl.Dropout(0.5), cl.Dense(1)])
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "r") as store:
        assert sorted(store["layers"]) == ["dense", "dense_1", "dense_2", "dropout"]
        assert store["layers/dense_1/vars/0"].shape == (3, 2)


def test_round_trip_and_shape_mismatch(tmp_path):
    model, other = ours(), ours()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    wrong = Sequential([cl.Input((6, 6, 1)), cl.Conv2D(5, 3), cl.BatchNormalization(),
                        cl.Flatten(), cl.Dense(3)])
    before = wrong.get_weights()
    with pytest.raises(ValueError, match=r"has shape \(3, 3, 1, 5\); the file holds shape"):
        wrong.load_weights(path)
    for a, b in zip(before, wrong.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_names_and_files(tmp_path):
    model = ours()
    with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
        model.save_weights(tmp_path / "m.h5")
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.weights.h5")
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        model.load_weights(junk)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    model = ours()
    path = tmp_path / "keep.weights.h5"
    model.save_weights(path)
    before = path.read_bytes()
    broken = model.layers[0].weights[0]
    monkeypatch.setattr(type(broken), "value", property(lambda self: 1 / 0), raising=False)
    with pytest.raises(ZeroDivisionError):
        model.save_weights(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.weights.h5"]
