"""convlens.summary prints exactly what Keras 3 prints.

Each test builds a model in real Keras, copies its names, classes, shapes and parameter
counts into light stand-in objects, and compares the printed text: the test is about
rendering, not about arithmetic. Keras's names are always given explicitly, so the result
does not depend on how many layers other tests have made.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from convlens.summary import print_summary, readable_memory_size

keras = pytest.importorskip("keras")
layers = keras.layers


# ---------------------------------------------------------------------------------------------
# Stand-ins carrying what the summary reads
# ---------------------------------------------------------------------------------------------


class FakeVariable:
    def __init__(self, shape, dtype="float32", trainable=True):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = str(dtype)
        self.trainable = trainable
        self.size = int(np.prod(self.shape, dtype=np.int64))


class FakeLayer:
    def __init__(self, name, built, output_shape, params, trainable, weights):
        self.name = name
        self.built = built
        self.output_shape = output_shape
        self._params = params
        self.trainable = trainable
        self.weights = weights
        self.trainable_weights = [w for w in weights if w.trainable]
        self.non_trainable_weights = [w for w in weights if not w.trainable]

    def count_params(self):
        assert self.built, "count_params() called on an unbuilt layer"
        return self._params


class FakeOptimizer:
    def __init__(self, built, variables):
        self.built = built
        self.variables = variables


class FakeModel:
    def __init__(self, name, layers_, weights, optimizer=None, built=True):
        self.name = name
        self.layers = layers_
        self.built = built
        self.weights = weights
        self.trainable_weights = [w for w in weights if w.trainable]
        self.non_trainable_weights = [w for w in weights if not w.trainable]
        self.optimizer = optimizer
        self.compiled = optimizer is not None


_fake_classes: dict[str, type] = {}


def fake_class(name: str) -> type:
    if name not in _fake_classes:
        _fake_classes[name] = type(name, (FakeLayer,), {})
    return _fake_classes[name]


def copy_variables(variables):
    return [FakeVariable(v.shape, v.dtype, v.trainable) for v in variables]


def fake_from_keras(model) -> FakeModel:
    fakes = []
    for layer in model.layers:
        shape = tuple(layer.output.shape) if layer.built else None
        params = layer.count_params() if layer.built else None
        cls = fake_class(type(layer).__name__)
        fakes.append(
            cls(layer.name, layer.built, shape, params, layer.trainable,
                copy_variables(layer.weights))
        )  # fmt: skip
    # Model weights are the layers' weights in order, so the same objects are shared.
    weights = [w for fake in fakes for w in fake.weights]
    optimizer = None
    if getattr(model, "optimizer", None) is not None:
        optimizer = FakeOptimizer(model.optimizer.built, copy_variables(model.optimizer.variables))
    return FakeModel(model.name, fakes, weights, optimizer=optimizer, built=model.built)


def keras_text(model, **kwargs) -> str:
    pieces = []
    model.summary(print_fn=pieces.append, **kwargs)
    assert len(pieces) == 1
    return pieces[0]


def ours_text(model, **kwargs) -> str:
    pieces = []
    print_summary(model, print_fn=pieces.append, **kwargs)
    assert len(pieces) == 1
    return pieces[0]


def assert_same(keras_model, **kwargs) -> str:
    expected = keras_text(keras_model, **kwargs)
    got = ours_text(fake_from_keras(keras_model), **kwargs)
    assert got == expected, f"\n--- keras ---\n{expected}\n--- convlens ---\n{got}"
    return got


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    # Keras caps the default width at the terminal width minus 4; pin it.
    monkeypatch.setenv("COLUMNS", "120")


# ---------------------------------------------------------------------------------------------
# Keras models
# ---------------------------------------------------------------------------------------------


def seed_model_with_input():
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu", name="conv2d"),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu", name="conv2d_1"),
        ],
        name="sequential",
    )


def seed_model_with_input_shape():
    with pytest.warns(UserWarning):  # Keras 3 prefers keras.Input; the program still runs.
        first = layers.Conv2D(
            32, 5, activation="relu", use_bias=False, input_shape=(28, 28, 3), name="conv2d_5"
        )
    return keras.Sequential(
        [first, layers.Conv2D(64, 5, activation="relu", use_bias=False, name="conv2d_6")],
        name="sequential_1",
    )


def mnist_model():
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu", name="conv2d"),
            layers.BatchNormalization(name="batch_normalization"),
            layers.MaxPooling2D(2, name="max_pooling2d"),
            layers.Conv2D(64, 3, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(2, name="max_pooling2d_1"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(10, activation="softmax", name="dense"),
        ],
        name="mnist_cnn",
    )


# ---------------------------------------------------------------------------------------------
# Tests against Keras
# ---------------------------------------------------------------------------------------------


def test_seed_model_with_input():
    text = assert_same(seed_model_with_input())
    assert "│ conv2d (Conv2D)" in text
    assert "(None, 26, 26, 32)" in text
    assert " Total params: 18,816 (73.50 KB)\n" in text
    assert " Non-trainable params: 0 (0.00 B)\n" in text


def test_seed_model_with_input_shape():
    text = assert_same(seed_model_with_input_shape())
    assert "2,400" in text and "51,200" in text and "53,600" in text


def test_unbuilt_model():
    model = keras.Sequential(
        [layers.Conv2D(32, 3, name="conv2d"), layers.Dense(10, name="dense")], name="unbuilt"
    )
    text = assert_same(model)
    assert "0 (unbuilt)" in text and "│ ?" in text
    assert " Total params: 0 (0.00 B)\n" in text


def test_batch_normalization_non_trainable():
    text = assert_same(mnist_model())
    assert " Non-trainable params: 64 (256.00 B)\n" in text


def test_show_trainable():
    model = mnist_model()
    model.get_layer("conv2d").trainable = False
    text = assert_same(model, show_trainable=True)
    assert "Trainable" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"line_length": 70},
        {"positions": [0.5, 0.7, 1.0]},
        {"line_length": 70, "positions": [0.5, 0.7, 1.0]},
        {"line_length": 120, "show_trainable": True},
        {"positions": [0.4, 0.6, 0.8], "show_trainable": True},
        {"positions": [0.3, 0.5, 0.7, 1.0]},  # Keras ignores the unused last position
        {"layer_range": ["conv2d$", "max_pooling2d_1"]},
        {"layer_range": ["dense", "batch"]},  # backwards
        {"expand_nested": True},
    ],
)
def test_line_length_and_positions(kwargs):
    assert_same(mnist_model(), **kwargs)


@pytest.mark.parametrize("columns", ["60", "200", "40"])
def test_terminal_width_from_environment(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    assert_same(mnist_model())
    assert_same(mnist_model(), show_trainable=True)


def test_too_narrow_raises_like_keras(monkeypatch):
    monkeypatch.setenv("COLUMNS", "14")
    with pytest.raises(ValueError, match="Insufficient console width"):
        keras_text(seed_model_with_input())
    with pytest.raises(ValueError, match="Insufficient console width"):
        ours_text(fake_from_keras(seed_model_with_input()))


def test_long_names_wrap():
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 3)),
            layers.Conv2D(4, 3, name="a_very_long_convolution_layer_name_that_cannot_fit_at_all"),
            layers.Flatten(name="flatten_with_a_rather_long_name_too"),
        ],
        name="a_model_whose_name_is_long_as_well",
    )
    text = assert_same(model)
    assert "a_very_long_convolution_layer_name_that_cannot_fit_at_all" not in text  # wrapped


def test_compiled_and_trained_model_shows_optimizer_params():
    model = keras.Sequential(
        [
            keras.Input(shape=(6, 6, 1)),
            layers.Conv2D(2, 3, name="conv2d"),
            layers.Flatten(name="flatten"),
            layers.Dense(3, activation="softmax", name="dense"),
        ],
        name="trained",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    compiled_only = assert_same(model)
    assert "Optimizer params" not in compiled_only  # not shown until the optimizer is built

    x = np.random.default_rng(0).normal(size=(4, 6, 6, 1)).astype("float32")
    y = np.array([0, 1, 2, 0])
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    text = assert_same(model)
    assert " Optimizer params: " in text


def test_print_fn_gets_whole_text_once():
    pieces = []
    print_summary(fake_from_keras(seed_model_with_input()), print_fn=pieces.append)
    assert len(pieces) == 1
    assert pieces[0].startswith('Model: "sequential"\n')
    assert pieces[0].endswith(" Non-trainable params: 0 (0.00 B)\n")


def test_stdout_matches_keras(capsys):
    model = mnist_model()
    model.summary()
    expected = capsys.readouterr().out
    print_summary(fake_from_keras(model))
    assert capsys.readouterr().out == expected
    assert "\x1b[" not in expected  # captured stdout is not a terminal: no styling


def test_terminal_output_is_styled(monkeypatch):
    import io

    import rich.console

    buffer = io.StringIO()
    original = rich.console.Console

    def forced(*args, **kwargs):
        kwargs.setdefault("file", buffer)
        kwargs.setdefault("force_terminal", True)
        kwargs.setdefault("color_system", "256")
        return original(*args, **kwargs)

    monkeypatch.setattr(rich.console, "Console", forced)
    print_summary(fake_from_keras(seed_model_with_input()))
    styled = buffer.getvalue()
    assert "\x1b[1m" in styled  # bold header and footer labels
    assert "\x1b[38;5;34m" in styled  # green numbers


# ---------------------------------------------------------------------------------------------
# Extra columns (no Keras counterpart)
# ---------------------------------------------------------------------------------------------


def test_extra_columns():
    fake = fake_from_keras(mnist_model())
    plain = ours_text(fake)
    text = ours_text(fake, columns=[("Weights", lambda layer: str(len(layer.weights)))])
    lines = text.splitlines()
    assert "Weights" in lines[2]
    assert len(lines[1]) > len(plain.splitlines()[1])  # default width grew
    # Keras's footer is unchanged.
    assert text.splitlines()[-3:] == plain.splitlines()[-3:]
    # Every table line has the same width.
    table = lines[1:-3]
    assert len({len(line) for line in table}) == 1


def test_extra_columns_after_trainable_and_markup_is_literal():
    fake = fake_from_keras(mnist_model())
    text = ours_text(
        fake,
        show_trainable=True,
        columns=[("RF [px]", lambda layer: "[bold]x[/]"), ("Kind", lambda layer: "k")],
    )
    header = text.splitlines()[2]
    assert header.index("Trai") < header.index("RF [px]") < header.index("Kind")
    assert "[bold]x[/]" in text


def test_extra_columns_with_explicit_line_length_and_positions():
    fake = fake_from_keras(seed_model_with_input())
    columns = [("Note", lambda layer: "n")]
    text = ours_text(fake, line_length=100, columns=columns)
    assert len(text.splitlines()[1]) == 100
    text = ours_text(fake, line_length=90, positions=[0.3, 0.6, 0.7, 1.0], columns=columns)
    assert len(text.splitlines()[1]) == 90
    text = ours_text(fake, positions=[30, 50, 60, 80], columns=columns)
    assert len(text.splitlines()[1]) == 80


def test_columns_none_is_keras_exactly():
    model = mnist_model()
    assert ours_text(fake_from_keras(model), columns=None) == keras_text(model)
    assert ours_text(fake_from_keras(model), columns=[]) == keras_text(model)


def test_bad_columns_raise_type_error():
    fake = fake_from_keras(seed_model_with_input())
    with pytest.raises(TypeError, match="title, fn"):
        ours_text(fake, columns=[("only a title",)])
    with pytest.raises(TypeError, match="title, fn"):
        ours_text(fake, columns=["Title"])


def test_bad_positions_and_layer_range_raise_value_error():
    fake = fake_from_keras(seed_model_with_input())
    with pytest.raises(ValueError, match="positions"):
        ours_text(fake, positions=[0.5, 1.0])
    with pytest.raises(ValueError, match="matches no layer"):
        ours_text(fake, layer_range=["nothing", "conv2d"])
    with pytest.raises(ValueError, match="two layer names"):
        ours_text(fake, layer_range=["conv2d"])


def test_absolute_positions():
    fake = fake_from_keras(seed_model_with_input())
    text = ours_text(fake, line_length=60, positions=[30, 48, 60])
    assert {len(line) for line in text.splitlines()[1:-3]} == {60}
    text = ours_text(fake, positions=[30, 48, 60], show_trainable=True)
    assert {len(line) for line in text.splitlines()[1:-3]} == {72}
    assert "Trainable" in text.splitlines()[2]


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [(0, "0.00 B"), (1023, "1023.00 B"), (1024, "1.00 KB"), (75264, "73.50 KB"),
     (3 * 1024**3, "3.00 GB")],
)  # fmt: skip
def test_readable_memory_size(num_bytes, text):
    assert readable_memory_size(num_bytes) == text


# ---------------------------------------------------------------------------------------------
# End to end: the same program, importing keras or convlens, prints the same text
# ---------------------------------------------------------------------------------------------

PROGRAM = textwrap.dedent(
    """
    import sys
    import warnings

    import numpy as np

    if sys.argv[1] == "keras":
        from keras.layers import (BatchNormalization, Conv2D, Convolution2D, Dense, Dropout,
                                  Flatten, Input, MaxPooling2D)
        from keras.models import Sequential
    else:
        from convlens.layers import (BatchNormalization, Conv2D, Convolution2D, Dense, Dropout,
                                     Flatten, Input, MaxPooling2D)
        from convlens.models import Sequential
    warnings.simplefilter("ignore")  # Keras's advice to use Input() goes to stderr anyway


    def section(name):
        print(f"=== {name} ===", flush=True)


    section("seed question")
    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(Conv2D(64, (3, 3), activation='relu'))
    model.summary()

    section("seed answer")
    model = Sequential([
        Convolution2D(32, 5, activation='relu', use_bias=False, input_shape=(28, 28, 3),),
        Convolution2D(64, 5, activation='relu', use_bias=False,),
    ])
    model.summary()

    section("input")
    model = Sequential([Input(shape=(28, 28, 1)), Conv2D(32, 3, activation="relu"),
                        Conv2D(64, 3, activation="relu")])
    model.summary()

    section("unbuilt")
    model = Sequential([Conv2D(8, 3), Dense(4)])
    model.summary()

    section("mnist")
    model = Sequential([Input((12, 12, 1)), Conv2D(4, 3, activation="relu"),
                        BatchNormalization(), MaxPooling2D(), Flatten(), Dropout(0.5),
                        Dense(3, activation="softmax")])
    model.summary(show_trainable=True)
    model.summary(line_length=70, positions=[.5, .7, 1.])

    section("compiled")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.summary()

    section("trained")
    x = np.random.default_rng(0).normal(size=(8, 12, 12, 1)).astype("float32")
    y = np.arange(8) % 3
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.summary()
    section("end")
    """
)


def _split_sections(text: str) -> dict[str, str]:
    sections, name = {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("=== ") and line.rstrip().endswith(" ==="):
            name = line.strip()[4:-4]
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections


@pytest.fixture(scope="module")
def both_programs(tmp_path_factory):
    """PROGRAM's sections as printed with Keras and with convlens, auto-names from zero.

    Keras runs in this process after ``clear_session()`` (importing torch again would
    cost seconds); convlens runs in a fresh process.
    """
    script = tmp_path_factory.mktemp("e2e") / "program.py"
    script.write_text(PROGRAM)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "120")
        convlens_run = subprocess.Popen(
            [sys.executable, str(script), "convlens"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        keras.backend.clear_session()
        patch.setattr(sys, "argv", [str(script), "keras"])
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            exec(compile(PROGRAM, str(script), "exec"), {"__name__": "__main__"})
        keras.backend.clear_session()
        out, err = convlens_run.communicate(timeout=120)
    keras_sections = _split_sections(captured.getvalue())
    assert "end" in keras_sections
    return {"keras": (keras_sections, ""), "convlens": (_split_sections(out), err)}


@pytest.mark.parametrize(
    "section", ["seed question", "seed answer", "input", "unbuilt", "mnist", "compiled", "trained"]
)
def test_program_prints_what_keras_prints(both_programs, section):
    keras_sections, _ = both_programs["keras"]
    ours_sections, ours_stderr = both_programs["convlens"]
    assert section in ours_sections, f"convlens program stopped early:\n{ours_stderr[-3000:]}"
    assert ours_sections[section] == keras_sections[section]
