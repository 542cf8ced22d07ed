"""Optimizer state in files: convlens writes it where Keras 3 does (``optimizer/vars/<i>`` in
the weights HDF5), real Keras resumes from convlens's files and convlens from Keras's, and a
resumed run continues the loss curve of an uninterrupted one."""

import io
import warnings
from contextlib import redirect_stdout

import h5py
import numpy as np
import pytest

import convlens.layers as cl
from convlens import optimizers, utils
from convlens.io.keras_format import load_model
from convlens.models import Sequential

keras = pytest.importorskip("keras")

OPTIMIZERS = {  # the same settings in both libraries
    "adam_amsgrad": ({"class_name": "Adam", "config": {"learning_rate": 0.01, "amsgrad": True}}),
    "sgd_nesterov": ({"class_name": "SGD",
                      "config": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}}),
    "rmsprop_momentum": ({"class_name": "RMSprop",
                          "config": {"learning_rate": 0.01, "momentum": 0.5, "centered": True}}),
    "adagrad": ({"class_name": "Adagrad", "config": {"learning_rate": 0.05}}),
    "adamw": ({"class_name": "AdamW", "config": {"learning_rate": 0.01}}),
}


def data(n=12):
    rng = np.random.default_rng(7)
    return rng.random((n, 6, 6, 1)).astype(np.float32), rng.integers(0, 3, n)


def ours(optimizer="adam_amsgrad"):
    # Fixed initial weights: some random draws leave a ReLU unit at the edge of 0, where the
    # two libraries' float32 rounding sends the next epoch apart (2 failures in 7 runs here).
    utils.set_random_seed(3)
    model = Sequential([
        cl.Input((6, 6, 1)), cl.Conv2D(2, 3, activation="relu"), cl.BatchNormalization(),
        cl.Flatten(), cl.Dense(3, activation="softmax"),
    ], name="resumable")
    model.compile(optimizer=optimizers.deserialize(OPTIMIZERS[optimizer]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def theirs():
    model = keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ], name="resumable")
    model.compile(optimizer=keras.optimizers.Adam(0.01, amsgrad=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model, epochs=1):
    x, y = data()
    return model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0).history["loss"]


def summary_text(model):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.summary(line_length=80)
    return buffer.getvalue()


def assert_same_state(keras_optimizer, our_optimizer):
    theirs_ = keras_optimizer.variables  # their paths depend on name scopes, not the file
    assert len(theirs_) == len(our_optimizer.variables)
    for want, got in zip(theirs_, our_optimizer.variables):
        assert got.shape == tuple(want.shape), want.path
        np.testing.assert_array_equal(got.value, np.asarray(want.numpy()), err_msg=want.path)


def test_the_file_holds_keras_layout(tmp_path):
    model = ours()
    fit(model)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as store:
        group = store["optimizer/vars"]
        assert group.attrs["name"] == model.optimizer.name
        assert sorted(group, key=int) == [str(i) for i in range(len(model.optimizer.variables))]
        assert group["0"].dtype == np.int32 and group["0"][()] == 3  # 12 samples, batch 4
        assert group["1"].dtype == np.float32 and group["1"][()] == np.float32(0.01)


def test_keras_resumes_from_our_file_with_our_iterations_and_moments(tmp_path):
    model = ours()
    fit(model)
    model.save(tmp_path / "ours.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Skipping variable loading for optimizer"
        reference = keras.saving.load_model(tmp_path / "ours.keras")
    assert int(reference.optimizer.iterations) == model.optimizer.iterations == 3
    assert_same_state(reference.optimizer, model.optimizer)
    assert summary_text(reference) == summary_text(model)

    # One more epoch in each library from the same state lands on the same weights.
    their_loss, our_loss = fit(reference), fit(model)
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    assert int(reference.optimizer.iterations) == model.optimizer.iterations == 6
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_we_resume_from_keras_file_with_its_iterations_and_moments(tmp_path):
    keras.utils.set_random_seed(3)
    reference = theirs()
    fit(reference, epochs=2)
    reference.save(tmp_path / "theirs.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model(tmp_path / "theirs.keras")
    assert model.optimizer.iterations == int(reference.optimizer.iterations) == 6
    assert model.optimizer.amsgrad
    assert_same_state(reference.optimizer, model.optimizer)
    assert summary_text(model) == summary_text(reference)
    assert " Optimizer params: 371 (1.45 KB)" in summary_text(model)

    their_loss, our_loss = fit(reference), fit(model)
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_loading_a_compiled_file_builds_the_optimizer_as_keras_does(tmp_path):
    reference = theirs()  # compiled, never trained: Keras writes iteration and rate only
    reference.save(tmp_path / "fresh.keras")
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        loaded_by_keras = keras.saving.load_model(tmp_path / "fresh.keras")
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        model = load_model(tmp_path / "fresh.keras")
    assert model.optimizer.built and model.optimizer.iterations == 0
    assert summary_text(model) == summary_text(loaded_by_keras)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_resuming_continues_the_uninterrupted_loss_curve(tmp_path, optimizer, suffix):
    straight = ours(optimizer)
    start = straight.get_weights()
    whole = fit(straight, epochs=4)

    first = ours(optimizer)
    first.set_weights(start)
    curve = fit(first, epochs=2)
    path = tmp_path / f"checkpoint{suffix}"
    if suffix == ".keras":
        first.save(path)
        resumed = load_model(path)
    else:
        first.save_weights(path)
        resumed = ours(optimizer)
        resumed.load_weights(path)
    assert resumed.optimizer.iterations == first.optimizer.iterations == 6
    curve += fit(resumed, epochs=2)
    np.testing.assert_allclose(curve, whole, rtol=1e-6)
    for got, want in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_state_of_the_wrong_shape_is_refused_before_anything_changes(tmp_path):
    model = ours("sgd_nesterov")
    fit(model)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "a") as store:
        del store["optimizer/vars/2"]
        store["optimizer/vars"].create_dataset("2", data=np.zeros((5, 5), np.float32))
    other = ours("sgd_nesterov")
    fit(other)
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"Optimizer variable .* has shape \(3, 3, 1, 2\); the "
                                         r"file holds shape \(5, 5\)"):
        other.load_weights(tmp_path / "m.weights.h5")
    for got, want in zip(other.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_a_model_without_optimizer_reads_weights_only(tmp_path):
    model = ours()
    fit(model)
    model.save_weights(tmp_path / "m.weights.h5")
    plain = Sequential([
        cl.Input((6, 6, 1)), cl.Conv2D(2, 3, activation="relu"), cl.BatchNormalization(),
        cl.Flatten(), cl.Dense(3, activation="softmax"),
    ])
    plain.load_weights(tmp_path / "m.weights.h5")
    for got, want in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert plain.optimizer is None
