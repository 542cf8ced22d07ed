"""Plain calls with bad arguments: the behaviour of Keras, or an error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

from convlens import cli, utils
from convlens import layers as L
from convlens.callbacks import Callback, EarlyStopping
from convlens.models import Sequential


def compiled():
    model = Sequential([L.Input((3,)), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


class Events(Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append(("begin", logs))

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(("epoch", epoch))

    def on_train_end(self, logs=None):
        self.seen.append(("end", logs))


@pytest.mark.parametrize(("epochs", "initial_epoch"), [(0, 0), (2, 2), (2, 5)])
def test_fit_with_no_epoch_to_run_returns_an_empty_history_as_keras(epochs, initial_epoch):
    import keras
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    reference.compile(optimizer="sgd", loss="mse")
    expected = reference.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=epochs,
                             initial_epoch=initial_epoch, verbose=0)
    events = Events()
    model = compiled()
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=epochs,
                        initial_epoch=initial_epoch, verbose=0, callbacks=[events])
    assert (history.history, history.epoch) == (expected.history, expected.epoch) == ({}, [])
    assert [kind for kind, _ in events.seen] == ["begin", "end"]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_fit_names_a_negative_initial_epoch():
    with pytest.raises(ValueError, match=r"`initial_epoch` must be a non-negative int; "
                       r"received -1"):
        compiled().fit(np.zeros((4, 3)), np.zeros((4, 2)), initial_epoch=-1, verbose=0)


def test_set_weights_with_one_array_says_to_pass_a_list():
    layer = L.Dense(2)
    layer.build((None, 3))
    for target, words in ((layer, "Layer 'dense"), (compiled(), "Model 'sequential")):
        with pytest.raises(TypeError, match=words + r".*a list of arrays.*a single array of "
                           r"shape \(3, 2\)"):
            target.set_weights(np.zeros((3, 2), "float32"))
    layer.set_weights((np.ones((3, 2)), np.ones(2)))  # a tuple is a list of arrays
    assert layer.kernel.numpy().sum() == 6


def test_negative_seed_names_seed():
    with pytest.raises(ValueError, match=r"`seed` must be >= 0.*seed=-1"):
        utils.set_random_seed(-1)
    utils.set_random_seed(2**40)  # a large seed is fine, as in Keras


def test_calling_a_layer_on_none_names_none():
    with pytest.raises(TypeError, match="Layer 'c' expects a numeric array; received None"):
        L.Conv2D(2, 3, name="c")(None)


def test_a_slash_in_a_name_is_refused_as_keras_does():
    import keras
    with pytest.raises(ValueError, match="/"):
        keras.layers.Dense(3, name="a/b")
    with pytest.raises(ValueError, match=r"without '/'.*name='a/b'"):
        L.Dense(3, name="a/b")


@pytest.mark.parametrize("value", ["no", 0, None, 1.0])
def test_trainable_must_be_a_bool(value):
    layer = L.Dense(3)
    with pytest.raises(TypeError, match=f"`trainable` must be True or False; received "
                       f"trainable={value!r}"):
        layer.trainable = value
    with pytest.raises(TypeError, match="trainable"):
        L.Dense(3, trainable=value)
    layer.trainable = np.bool_(False)
    assert layer.trainable is False


@pytest.mark.parametrize("arguments", [{"patience": -1}, {"patience": 1.5},
                                       {"start_from_epoch": -2}])
def test_early_stopping_refuses_negative_counts(arguments):
    (name, value), = arguments.items()
    with pytest.raises(ValueError, match=f"`{name}` must be an int >= 0.*{name}={value!r}"):
        EarlyStopping(**arguments)


def test_saving_onto_a_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "model.keras"
    folder.mkdir()
    for path in (folder, tmp_path / "w.weights.h5"):
        path.mkdir(exist_ok=True)
        with pytest.raises(ValueError, match=f"Cannot write {path}: it is a folder"):
            compiled().save(path)
    assert list(folder.iterdir()) == [] and list(tmp_path.glob(".*")) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["explain", "input 100000x100000x3 | conv2d 2 3", "--trace", "0,0,0"],
         "max_input_values"),
        (["explain", "input 8x8x1 | conv2d 2 3", "--trace", "0,0,0", "--seed", "-1"],
         "seed must be >= 0"),
        (["summary", "input 4 | dense 2000000000"], "max_params"),
    ],
)
def test_cli_says_one_line_and_exits_2(argv, words, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: error:") and words in lines[0]
