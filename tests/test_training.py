"""compile/fit/evaluate/predict: learning, Keras semantics, a step against PyTorch, bad input."""

import numpy as np
import pytest

import convlens.layers as cl
from convlens import callbacks
from convlens.models import Sequential
from convlens.utils import set_random_seed

torch = pytest.importorskip("torch")


def blobs(n=240, seed=0):
    """Three separable classes of 8x8x1 images: a bright square in one of three places."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.1, (n, 8, 8, 1)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 1 + 2 * label:3 + 2 * label, 2:5, 0] += 1.0
    return x, y


def small_model(dropout=0.0):
    return Sequential([cl.Input((8, 8, 1)), cl.Conv2D(4, 3, activation="relu"),
                       cl.MaxPooling2D(2), cl.Dropout(dropout), cl.Flatten(),
                       cl.Dense(3, activation="softmax")])


def test_fit_learns_and_returns_history(capsys):
    set_random_seed(1)
    x, y = blobs()
    model = small_model(0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=6, validation_split=0.25, verbose=2)
    assert isinstance(history, callbacks.History)
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 6
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.9
    out = capsys.readouterr().out
    assert "Epoch 6/6" in out and "val_accuracy" in out
    probabilities = model.predict(x[:5], verbose=0)
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def test_evaluate_equals_direct_computation():
    x, y = blobs(50)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    loss, accuracy = model.evaluate(x, y, batch_size=7, verbose=0)
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(loss, -np.mean(np.log(p[np.arange(50), y])), rtol=1e-5)
    assert accuracy == pytest.approx(np.mean(p.argmax(1) == y))
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == accuracy


def test_same_seed_same_run():
    x, y = blobs(64)
    runs = []
    for _ in range(2):
        set_random_seed(7)
        model = small_model(0.3)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_training_steps_match_pytorch(optimizer):
    """Same weights, same batches, no dropout: convlens steps equal torch's."""
    set_random_seed(0)
    model = Sequential([cl.Input((10, 10, 2)), cl.Conv2D(4, 3, activation="relu"),
                        cl.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
                        cl.MaxPooling2D(2), cl.Flatten(), cl.Dense(8, activation="relu"),
                        cl.Dense(5, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(),
        torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.Conv2d(4, 6, 3, stride=2), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 8), torch.nn.ReLU(),
        torch.nn.Linear(8, 5))
    w = model.get_weights()
    with torch.no_grad():
        for module, (kernel, bias) in zip([net[0], net[3]], [(w[0], w[1]), (w[2], w[3])]):
            module.weight.copy_(torch.tensor(kernel).permute(3, 2, 0, 1))
            module.bias.copy_(torch.tensor(bias))
        # Flatten order differs (NHWC vs NCHW): permute the first dense kernel's rows.
        dense = w[4].reshape(2, 2, 6, 8).transpose(2, 0, 1, 3).reshape(24, 8)
        net[7].weight.copy_(torch.tensor(dense).T)
        net[7].bias.copy_(torch.tensor(w[5]))
        net[9].weight.copy_(torch.tensor(w[6]).T)
        net[9].bias.copy_(torch.tensor(w[7]))
    reference = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.01),
        "adam": lambda p: torch.optim.Adam(p, lr=0.001, eps=1e-7),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.9, eps=1e-7),
    }[optimizer](net.parameters())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 10, 10, 2)).astype(np.float32)
    y = rng.integers(0, 5, 12)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for start in range(0, 12, 4):
        reference.zero_grad()
        xb = torch.tensor(x[start:start + 4]).permute(0, 3, 1, 2)
        loss = torch.nn.functional.cross_entropy(net(xb), torch.tensor(y[start:start + 4]))
        loss.backward()
        reference.step()
    got = model.get_weights()[-1]
    # RMSprop's sqrt(v) + eps differs from Keras's sqrt(v + eps^2)-free form only at ~1e-7.
    np.testing.assert_allclose(got, net[9].bias.detach().numpy(), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(model.get_weights()[0],
                               net[0].weight.detach().permute(2, 3, 1, 0).numpy(), rtol=2e-4,
                               atol=2e-5)


def test_errors_before_training_starts(capsys):
    x, y = blobs(20)
    model = small_model()
    with pytest.raises(ValueError, match="compile"):
        model.fit(x, y)
    with pytest.raises(ValueError, match="Unknown loss: 'hinge_lossy'"):
        model.compile(optimizer="adam", loss="hinge_lossy")
    with pytest.raises(ValueError, match="adamm"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="acuracy"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["acuracy"])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    bad = y.copy()
    bad[3] = 7
    with pytest.raises(ValueError, match=r"\[0, 3\).*7 at position 3"):
        model.fit(x, bad, verbose=1)
    with pytest.raises(ValueError, match="same number of samples.*20.*19"):
        model.fit(x, y[:19])
    with pytest.raises(ValueError, match=r"expected shape=\(None, 8, 8, 1\)"):
        model.fit(x[:, :7], y)
    assert capsys.readouterr().out == ""
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_training_naming_epoch_and_step(capsys):
    x, y = blobs(40)
    x[25] = np.nan
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=10, epochs=3, shuffle=False, verbose=0)
    err = capsys.readouterr().err
    assert "Epoch 1, step 3" in err and "nan" in err
    assert len(history.history.get("loss", [])) <= 1


def test_early_stopping_and_checkpoint(tmp_path):
    x, y = blobs(60)
    model = small_model()
    from convlens.optimizers import SGD

    frozen = SGD(0.01)
    frozen.learning_rate = 0.0
    model.compile(optimizer=frozen, loss="sparse_categorical_crossentropy")
    stop = callbacks.EarlyStopping(monitor="loss", patience=1)
    path = tmp_path / "best.weights.h5"
    checkpoint = callbacks.ModelCheckpoint(str(path), monitor="loss", save_weights_only=True)
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[stop, checkpoint])
    assert len(history.history["loss"]) == 2  # learning rate 0: no improvement after epoch 1
    assert path.exists()
    fresh = small_model()
    fresh.load_weights(path)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_whole_model_checkpoint_keeps_the_best_epoch(tmp_path):
    from convlens.models import load_model

    x, y = blobs(60)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "best.keras"
    best = {}

    class Remember(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < best.get("val_loss", np.inf):
                best.update(val_loss=logs["val_loss"], weights=self.model.get_weights())

    checkpoint = callbacks.ModelCheckpoint(str(path), save_best_only=True)
    model.fit(x, y, epochs=4, validation_split=0.25, verbose=0, callbacks=[Remember(), checkpoint])
    restored = load_model(path)
    for a, b in zip(restored.get_weights(), best["weights"]):
        np.testing.assert_array_equal(a, b)
    assert type(restored.loss) is type(model.loss)  # compiled from the file, ready to use
    model.set_weights(best["weights"])
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0),
                               rtol=1e-6)


def test_batchnorm_training_moves_statistics():
    x, y = blobs(32)
    model = Sequential([cl.Input((8, 8, 1)), cl.Conv2D(2, 3), cl.BatchNormalization(),
                        cl.Flatten(), cl.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bn = model.layers[1]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert not np.allclose(bn.moving_mean.value, 0)
    assert len(model.non_trainable_weights) == 2


def test_frozen_batchnorm_fine_tunes_as_keras():
    """trainable=False: Keras normalises with the moving statistics inside fit, keeps them and
    gamma/beta fixed, and passes gradients through to the layers before it."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((24, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    results = []
    for layers, model_class in ((cl, Sequential), (keras.layers, keras.Sequential)):
        model = model_class([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, use_bias=False),
                             layers.BatchNormalization(), layers.Flatten(),
                             layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        else:  # statistics far from (0, 1), so normalising with them is visible
            weights = model.get_weights()
            weights[1:5] = [rng.uniform(0.5, 2, 3), rng.normal(0, 1, 3), rng.normal(0, 1, 3),
                            rng.uniform(0.5, 3, 3)]
            model.set_weights([w.astype(np.float32) for w in weights])
        model.layers[1].trainable = False
        initial = model.get_weights()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append((initial, model.get_weights(), history.history["loss"]))
    (initial, ours, our_loss), (_, theirs, their_loss) = results
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(ours[1:5], initial[1:5]):  # the frozen layer did not move
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(ours[0], initial[0])  # the conv before it learned


def _mask_times(text):
    """Keras and convlens differ only in how long each step took."""
    import re

    return re.sub(r"\b\d+(\.\d+)?(s|ms|us)\b", "T", text)


def _split_numbers(text):
    """The text with each 4-decimal number replaced by N, and those numbers."""
    import re

    pattern = r"\b\d+\.\d{4}\b"
    return re.sub(pattern, "N", text), [float(n) for n in re.findall(pattern, text)]


FIT_CASES = {
    "sparse softmax, SGD momentum": (3, "softmax", "sparse_categorical_crossentropy", "sparse",
                                     ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
                                     ["accuracy", "sparse_categorical_crossentropy"]),
    "categorical from_logits, nesterov": (3, None, ("CategoricalCrossentropy",
                                                    {"from_logits": True}), "onehot",
                                          ("SGD", {"momentum": 0.9, "nesterov": True}),
                                          ["categorical_accuracy"]),
    "binary from_logits, RMSprop": (1, None, ("BinaryCrossentropy", {"from_logits": True}),
                                    "binary", ("RMSprop", {}), ["accuracy"]),
    "binary sigmoid, Adam": (1, "sigmoid", "binary_crossentropy", "binary",
                             ("Adam", {"learning_rate": 0.01}),
                             ["accuracy", "binary_crossentropy"]),
    "mse, SGD": (2, None, "mean_squared_error", "regression", ("SGD", {}), ["mae"]),
    # Weighted training: the 7th entry holds fit's sample_weight/class_weight and compile's
    # weighted_metrics/loss_weights. Validation takes the last quarter of the sample weights;
    # class weights apply to the training samples only.
    "sparse softmax, sample_weight": (3, "softmax", "sparse_categorical_crossentropy", "sparse",
                                      ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
                                      ["accuracy"],
                                      {"sample_weight": True, "weighted_metrics": [
                                          "accuracy", "sparse_categorical_crossentropy"]}),
    "sparse softmax, class_weight": (3, "softmax", "sparse_categorical_crossentropy", "sparse",
                                     ("Adam", {"learning_rate": 0.01}), ["accuracy"],
                                     {"class_weight": {0: 0.25, 2: 3.0},
                                      "weighted_metrics": ["sparse_categorical_accuracy"]}),
    "one-hot softmax, class_weight, loss_weights": (
        3, "softmax", "categorical_crossentropy", "onehot", ("SGD", {"learning_rate": 0.1}),
        ["categorical_accuracy"],
        {"class_weight": {1: 4.0, 2: 0.5}, "loss_weights": 0.5,
         "weighted_metrics": ["categorical_crossentropy"]}),
    "binary sigmoid, class_weight": (1, "sigmoid", "binary_crossentropy", "binary",
                                     ("RMSprop", {}), ["accuracy"],
                                     {"class_weight": {1: 2.5}, "weighted_metrics": ["accuracy"]}),
}


@pytest.mark.parametrize("case", list(FIT_CASES), ids=list(FIT_CASES))
def test_fit_equals_real_keras_fit(capsys, case):
    """The same program run by Keras and by convlens: same printed text (times aside), same
    history, same weights -- BatchNormalization's moving statistics (momentum 0.99)
    included -- through fit with validation_split, then evaluate and predict."""
    keras = pytest.importorskip("keras")
    units, activation, loss, targets, (optimizer, options), metric_names, *weighting = (
        FIT_CASES[case])
    weighting = weighting[0] if weighting else {}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 6, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 40)
    y = {"sparse": labels, "onehot": np.eye(3, dtype=np.float32)[labels],
         "binary": (labels > 0).astype(np.float32)[:, None],
         "regression": rng.standard_normal((40, 2)).astype(np.float32)}[targets]
    weights = rng.uniform(0, 3, 40).astype(np.float32)
    weights[::7] = 0  # a zero weight removes a sample from the loss and weighted metrics
    compile_extra = {k: weighting[k] for k in ("weighted_metrics", "loss_weights")
                     if k in weighting}
    fit_extra = {"class_weight": weighting["class_weight"]} if "class_weight" in weighting else {}
    evaluate_extra = {}
    if weighting.get("sample_weight"):
        fit_extra["sample_weight"] = evaluate_extra["sample_weight"] = weights
    import convlens.losses
    import convlens.optimizers

    results = []
    for layers, model_class, losses, optimizers in (
        (cl, Sequential, convlens.losses, convlens.optimizers),
        (keras.layers, keras.Sequential, keras.losses, keras.optimizers),
    ):
        # No conv bias before BatchNormalization: its true gradient is 0, and Adam/RMSprop
        # would scale float32 rounding noise up to full-size steps.
        model = model_class([layers.Input((6, 6, 2)), layers.Conv2D(3, 3, use_bias=False),
                             layers.BatchNormalization(), layers.Activation("relu"),
                             layers.Flatten(), layers.Dense(units, activation=activation)])
        if results:
            model.set_weights(results[0]["initial"])
        initial = model.get_weights()
        model.compile(optimizer=getattr(optimizers, optimizer)(**options),
                      loss=loss if isinstance(loss, str) else getattr(losses, loss[0])(**loss[1]),
                      metrics=metric_names, **compile_extra)
        capsys.readouterr()
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, validation_split=0.25,
                            verbose=2, **fit_extra)
        evaluated = model.evaluate(x, y, batch_size=16, verbose=2, **evaluate_extra)
        predicted = model.predict(x[:5], verbose=0)
        results.append(dict(initial=initial, text=_mask_times(capsys.readouterr().out),
                            history=history.history, params=history.params, epoch=history.epoch,
                            weights=model.get_weights(), evaluated=evaluated,
                            predicted=keras.ops.convert_to_numpy(predicted)))
    ours, theirs = results
    # Same text; a metric printed to 4 decimals may round the other way when the two float32
    # computations differ in the last bits, so the printed numbers are compared by value.
    (our_text, our_numbers), (their_text, their_numbers) = map(
        _split_numbers, (ours["text"], theirs["text"]))
    assert our_text == their_text
    np.testing.assert_allclose(our_numbers, their_numbers, rtol=0, atol=1.5e-4)
    assert "Epoch 2/2" in ours["text"] and "val_loss" in ours["text"]
    assert ours["params"] == theirs["params"] and ours["epoch"] == theirs["epoch"]
    assert list(ours["history"]) == list(theirs["history"])
    for key, values in theirs["history"].items():
        np.testing.assert_allclose(ours["history"][key], values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours["evaluated"], theirs["evaluated"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours["predicted"], theirs["predicted"], rtol=1e-4, atol=1e-5)
    assert len(ours["weights"]) == 7  # kernel, batchnorm 4 (moving mean, variance), dense 2
    for got, want in zip(ours["weights"], theirs["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_failed_checkpoint_write_during_fit_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A real model, a real ModelCheckpoint: the second epoch's save dies half-way through the
    HDF5 file; the first epoch's checkpoint is still there, complete and loadable."""
    h5py = pytest.importorskip("h5py")
    x, y = blobs(40)
    set_random_seed(3)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    path = tmp_path / "ck.weights.h5"
    epoch_weights = []

    class Remember(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epoch_weights.append(self.model.get_weights())

    real_create_dataset = h5py.Group.create_dataset
    files = []  # each file's first array is the first conv kernel

    def create_dataset(group, name, *args, **kwargs):
        if group.name == "/layers/conv2d/vars" and name == "0":
            files.append(name)
        # ModelCheckpoint's trial write before training, epoch 1's file, then epoch 2's
        # file dies after its first array
        elif len(files) > 2:
            raise OSError("No space left on device")
        return real_create_dataset(group, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    checkpoint = callbacks.ModelCheckpoint(str(path), save_weights_only=True, monitor="loss")
    with pytest.raises(OSError, match="No space left"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[Remember(), checkpoint])
    assert len(epoch_weights) == 2  # the failure came while saving epoch 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.weights.h5"]  # no temp file left
    monkeypatch.undo()
    restored = small_model()
    restored.load_weights(path)
    for saved, first in zip(restored.get_weights(), epoch_weights[0]):
        np.testing.assert_array_equal(saved, first)
    assert not all(np.array_equal(a, b) for a, b in zip(epoch_weights[0], epoch_weights[1]))


def test_unwritable_checkpoint_is_refused_before_training(capsys, monkeypatch):
    x, y = blobs(20)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()

    def save(filepath, overwrite=True):
        raise ValueError(f"cannot write {filepath!r} files")

    monkeypatch.setattr(model, "save", save)
    with pytest.raises(ValueError, match=r"filepath='model.keras': cannot write .*probe.keras"):
        model.fit(x, y, epochs=2, verbose=1,
                  callbacks=[callbacks.ModelCheckpoint("model.keras")])
    assert capsys.readouterr().out == ""
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_validation_data_is_refused_before_training(capsys):
    x, y = blobs(20)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bad = y.copy()
    bad[2] = -1
    for validation_data, message in [((x, bad), r"\[0, 3\)"), ((x, y[:5]), "same number"),
                                     ((x[:, :6], y), "expected shape"), (x, "tuple")]:
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, epochs=1, verbose=1, validation_data=validation_data)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ weights: bad input
def _compiled(loss="sparse_categorical_crossentropy"):
    model = small_model()
    model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    return model


WEIGHT_ERRORS = {
    "sample_weight wrong length": (ValueError, r"sample_weight.*x with 20 and sample_weight "
                                   r"with 19", {"sample_weight": np.ones(19)}),
    "sample_weight negative": (ValueError, r">= 0; 1 are not: -0\.5 at position 4",
                               {"sample_weight": np.r_[np.ones(4), -0.5, np.ones(15)]}),
    "sample_weight nan": (ValueError, r"finite numbers >= 0.*nan at position 0",
                          {"sample_weight": np.r_[np.nan, np.ones(19)]}),
    "sample_weight not numbers": (TypeError, "must hold numbers.*dtype <U1",
                                  {"sample_weight": np.array(["a"] * 20)}),
    "sample_weight 2D": (ValueError, r"1D array.*shape \(20,\); received shape \(20, 2\)",
                         {"sample_weight": np.ones((20, 2))}),
    "class_weight with sample_weight": (ValueError, "either `sample_weight` or `class_weight`",
                                        {"sample_weight": np.ones(20), "class_weight": {0: 2}}),
    "class_weight key outside the classes": (ValueError, r"0 to 2 .*3 classes.*key 3",
                                             {"class_weight": {0: 1.0, 3: 2.0}}),
    "class_weight key not an int": (ValueError, "received key 'cat'", {"class_weight": {"cat": 2}}),
    "class_weight negative": (ValueError, r"class_weight\[1\]` must be finite and >= 0",
                              {"class_weight": {1: -2.0}}),
    "class_weight not a dict": (TypeError, "must be a dict.*list", {"class_weight": [1.0, 2.0]}),
    "val_sample_weight wrong length": (ValueError, "val_sample_weight with 5",
                                       {"validation_data": (np.zeros((20, 8, 8, 1)),
                                                            np.zeros(20), np.ones(5))}),
    "validation_freq zero": (ValueError, "validation_freq", {"validation_freq": 0}),
    "steps_per_epoch": (ValueError, "steps_per_epoch=2", {"steps_per_epoch": 2}),
    "unknown argument": (TypeError, r"unexpected keyword arguments: \['sample_weights'\]",
                         {"sample_weights": np.ones(20)}),
}


@pytest.mark.parametrize("case", list(WEIGHT_ERRORS), ids=list(WEIGHT_ERRORS))
def test_bad_weights_and_arguments_are_refused_before_training(capsys, case):
    error, message, arguments = WEIGHT_ERRORS[case]
    x, y = blobs(20)
    model = _compiled()
    before = model.get_weights()
    with pytest.raises(error, match=message):
        model.fit(x, y, epochs=1, verbose=1, **arguments)
    assert capsys.readouterr().out == ""
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_class_weight_on_a_regression_loss_is_refused():
    x, _ = blobs(20)
    model = _compiled("mse")
    with pytest.raises(ValueError, match="'mean_squared_error' is a regression loss"):
        model.fit(x, np.zeros((20, 3)), class_weight={0: 2.0}, verbose=0)


def test_evaluate_refuses_bad_weights_and_steps():
    x, y = blobs(20)
    model = _compiled()
    with pytest.raises(ValueError, match="evaluate.*sample_weight with 3"):
        model.evaluate(x, y, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        model.evaluate(x, y, steps=0, verbose=0)
    with pytest.raises(ValueError, match="`steps` must be a positive int"):
        model.predict(x, steps=1.5, verbose=0)
    with pytest.raises(TypeError, match="unexpected keyword arguments: \\['sample_weights'\\]"):
        model.evaluate(x, y, sample_weights=np.ones(20), verbose=0)


COMPILE_ERRORS = {
    "loss_weights two numbers": (ValueError, "one output and one loss",
                                 {"loss_weights": [0.5, 0.5]}),
    "loss_weights text": (TypeError, "`loss_weights` must be a number", {"loss_weights": "a"}),
    "loss_weights negative": (ValueError, "finite number >= 0", {"loss_weights": -1.0}),
    "metrics as a string": (ValueError, r"metrics=\['accuracy'\]", {"metrics": "accuracy"}),
    "steps_per_execution": (ValueError, "steps_per_execution=4", {"steps_per_execution": 4}),
    "unknown argument": (TypeError, r"\['weighted_metric'\]", {"weighted_metric": ["acc"]}),
}


@pytest.mark.parametrize("case", list(COMPILE_ERRORS), ids=list(COMPILE_ERRORS))
def test_compile_refuses_what_it_cannot_do(case):
    error, message, arguments = COMPILE_ERRORS[case]
    with pytest.raises(error, match=message):
        small_model().compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                              **arguments)


# ------------------------------------------------------------------ weights: semantics
def test_evaluate_with_weights_steps_and_loss_weights_equals_keras():
    """evaluate(sample_weight, steps) with loss_weights=[0.5]: loss sum(w*l)/n per batch,
    scaled by the loss weight; plain metrics unweighted, weighted_metrics weighted means."""
    keras = pytest.importorskip("keras")
    x, y = blobs(30)
    weights = np.linspace(0, 2, 30).astype(np.float32)
    results = []
    for layers, model_class in ((cl, Sequential), (keras.layers, keras.Sequential)):
        model = model_class([layers.Input((8, 8, 1)), layers.Flatten(),
                             layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      loss_weights=[0.5], metrics=["acc"],
                      weighted_metrics=["acc", "sparse_categorical_crossentropy"])
        results.append((model.get_weights(), [
            model.evaluate(x, y, sample_weight=weights, batch_size=8, steps=3, verbose=0),
            model.evaluate(x, y, sample_weight=weights, batch_size=8, verbose=0,
                           return_dict=True)]))
    (_, (ours, our_dict)), (_, (theirs, their_dict)) = results
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert list(our_dict) == list(their_dict)
    np.testing.assert_allclose(list(our_dict.values()), list(their_dict.values()), rtol=1e-5)


def test_loss_weights_forms_scale_the_loss():
    x, y = blobs(24)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    plain = model.evaluate(x, y, verbose=0)
    for loss_weights in (0.5, [0.5], (0.5,), {"dense": 0.5}, 0):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      loss_weights=loss_weights)
        scale = 0.5 if loss_weights else 0.0
        np.testing.assert_allclose(model.evaluate(x, y, verbose=0), scale * plain, rtol=1e-6)


def test_sample_weight_scales_each_samples_gradient():
    """One SGD step: each sample's gradient is scaled by its weight and divided by the batch
    size N (not by sum(w)), through the fused softmax path and through the generic one."""
    from convlens.losses import SparseCategoricalCrossentropy

    x, y = blobs(8)
    weights = np.array([2, 0, 1, 1, 3, 1, 0, 1], np.float32)
    runs = []
    for fused in (True, False):
        model = Sequential([cl.Input((8, 8, 1)), cl.Flatten(),
                            cl.Dense(3, activation="softmax" if fused else None)])
        model.set_weights([np.full((64, 3), 0.01, np.float32), np.zeros(3, np.float32)])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy" if fused else
                      SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, sample_weight=weights, batch_size=8, epochs=1, verbose=0)
        runs.append(model.get_weights())
    # the same step by hand: dL/dlogits = w (softmax - onehot) / N
    logits = x.reshape(8, 64) @ np.full((64, 3), 0.01, np.float32)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) * weights[:, None] / 8
    want_kernel = 0.01 - 0.01 * x.reshape(8, 64).T @ grad
    for weights_after in runs:
        np.testing.assert_allclose(weights_after[0], want_kernel, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(weights_after[1], -0.01 * grad.sum(0), rtol=1e-5, atol=1e-7)


def test_validation_data_weights_freq_and_batch_size():
    """validation_data=(x, y, w) validates with w; validation_freq=2 validates on epochs 2
    and 4 only; class_weight leaves validation unweighted."""
    x, y = blobs(40)
    weights = np.linspace(0, 1, 40).astype(np.float32)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    seen = []

    class Spy(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_loss" in logs:
                seen.append((epoch, logs["val_loss"], self.model.evaluate(
                    x[:10], y[:10], sample_weight=weights[:10], verbose=0)))

    history = model.fit(x[10:], y[10:], epochs=4, verbose=0, validation_freq=2,
                        validation_data=(x[:10], y[:10], weights[:10]),
                        validation_batch_size=3, class_weight={0: 5.0}, callbacks=[Spy()])
    assert [epoch for epoch, _, _ in seen] == [1, 3]
    assert len(history.history["val_loss"]) == 2 and len(history.history["loss"]) == 4
    for _, logged, direct in seen:
        assert logged == pytest.approx(direct, rel=1e-6)


def test_evaluate_and_predict_steps_and_callbacks():
    x, y = blobs(20)
    model = _compiled()
    calls = []

    class Spy(callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            calls.append(("test", batch, sorted(logs)))

        def on_test_end(self, logs=None):
            calls.append(("test end", sorted(logs)))

        def on_predict_batch_end(self, batch, logs=None):
            calls.append(("predict", batch, logs["outputs"].shape))

    loss, accuracy = model.evaluate(x, y, batch_size=6, steps=2, verbose=0, callbacks=[Spy()])
    p = model.predict(x[:12], verbose=0)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(12), y[:12]])), rel=1e-5)
    assert model.predict(x, batch_size=6, steps=2, verbose=0, callbacks=[Spy()]).shape == (12, 3)
    assert calls == [("test", 0, ["accuracy", "loss"]), ("test", 1, ["accuracy", "loss"]),
                     ("test end", ["accuracy", "loss"]), ("predict", 0, (6, 3)),
                     ("predict", 1, (6, 3))]
    with pytest.warns(UserWarning, match="steps=9 but the 20 samples make only 4 batches"):
        assert model.predict(x, batch_size=6, steps=9, verbose=0).shape == (20, 3)
