"""fit/evaluate on graphs with several inputs and outputs, against real Keras 3: an image and a
vector in, a class head and a regression head out, the same initial weights, the same batches.
The printed text, the History, evaluate's list and dict and the trained weights agree."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from convlens.models import Model  # noqa: E402
from tests.test_training import _mask_times, _split_numbers  # noqa: E402


def two_heads(lib, model_cls, input_fn):
    L = lib
    image = input_fn((6, 6, 1), name="image")
    vector = input_fn((3,), name="vector")
    features = L.Flatten(name="flat")(L.Conv2D(2, 3, activation="relu", name="conv")(image))
    joined = L.Concatenate(name="joined")([features, vector])
    hidden = L.Dense(5, activation="relu", name="hidden")(joined)
    classes = L.Dense(3, activation="softmax", name="cls")(hidden)
    values = L.Dense(2, name="reg")(hidden)
    return model_cls([image, vector], [classes, values], name="two_heads")


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 6, 6, 1)).astype("float32")
    vector = rng.standard_normal((n, 3)).astype("float32")
    labels = rng.integers(0, 3, n)
    values = rng.standard_normal((n, 2)).astype("float32")
    weights = rng.uniform(0, 2, n).astype("float32")
    return image, vector, labels, values, weights


def _pair():
    keras.utils.set_random_seed(0)
    reference = two_heads(keras.layers, keras.Model, keras.Input)
    ours = two_heads(convlens.layers, Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    return reference, ours


# compile() arguments, and how x, y and sample_weight are given
CASES = {
    "lists, SGD": (
        dict(optimizer=("SGD", {"learning_rate": 0.1}),
             loss=["sparse_categorical_crossentropy", "mse"], metrics=["accuracy", "mae"]),
        "lists"),
    "dicts, loss_weights, Adam, validation_data": (
        dict(optimizer=("Adam", {"learning_rate": 0.01}),
             loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
             loss_weights={"cls": 2.0, "reg": 0.5},
             metrics={"cls": ["accuracy"], "reg": ["mae", "mse"]}),
        "dicts"),
    "a sample_weight per output, weighted_metrics": (
        dict(optimizer=("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
             loss=["sparse_categorical_crossentropy", "mae"], loss_weights=[1.0, 3.0],
             metrics={"reg": ["mae"]}, weighted_metrics=[["accuracy"], ["mae", "mse"]]),
        "weights per output"),
    "one loss for both, one sample_weight, RMSprop": (
        dict(optimizer=("RMSprop", {}), loss="mse", loss_weights=0.5,
             metrics=[["categorical_accuracy"], None],
             weighted_metrics=[["categorical_accuracy", "mse"], ["mse"]]),
        "one weight"),
}


def _run(model, optimizers, settings, form, capsys):
    image, vector, labels, values, weights = data()
    settings = dict(settings)
    name, options = settings.pop("optimizer")
    model.compile(optimizer=getattr(optimizers, name)(**options), **settings)
    targets = [labels, values]
    if settings["loss"] == "mse":
        targets = [np.eye(3, dtype="float32")[labels], values]
    x, y, sample_weight = [image, vector], targets, None
    if form == "dicts":
        x = {"image": image, "vector": vector}
        y = {"cls": targets[0], "reg": targets[1]}
    elif form == "weights per output":
        sample_weight = [weights, weights[::-1].copy()]
    elif form == "one weight":
        sample_weight = weights
    capsys.readouterr()
    if form == "dicts":  # validation_data, as dicts
        head, tail = slice(0, 15), slice(15, None)
        history = model.fit({k: v[head] for k, v in x.items()},
                            {k: v[head] for k, v in y.items()}, batch_size=4, epochs=2,
                            shuffle=False, verbose=2,
                            validation_data=({k: v[tail] for k, v in x.items()},
                                             {k: v[tail] for k, v in y.items()}))
    else:
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=2,
                            validation_split=0.25, sample_weight=sample_weight)
    evaluated = model.evaluate(x, y, batch_size=8, verbose=2, sample_weight=sample_weight)
    as_dict = model.evaluate(x, y, batch_size=8, verbose=0, sample_weight=sample_weight,
                             return_dict=True)
    text = _mask_times(capsys.readouterr().out)
    return dict(text=text, history=history.history, evaluated=evaluated, as_dict=as_dict,
                weights=model.get_weights())


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fit_and_evaluate_with_two_inputs_and_two_outputs_equal_keras(capsys, case):
    settings, form = CASES[case]
    reference, ours = _pair()
    theirs = _run(reference, keras.optimizers, settings, form, capsys)
    mine = _run(ours, convlens.optimizers, settings, form, capsys)
    (our_text, our_numbers), (their_text, their_numbers) = map(
        _split_numbers, (mine["text"], theirs["text"]))
    assert our_text == their_text
    np.testing.assert_allclose(our_numbers, their_numbers, rtol=0, atol=1.5e-4)
    assert "cls_loss" in our_text and "val_reg_loss" in our_text
    assert list(mine["history"]) == list(theirs["history"])
    for key, values in theirs["history"].items():
        np.testing.assert_allclose(mine["history"][key], values, rtol=1e-5, atol=1e-6)
    assert len(mine["evaluated"]) == len(theirs["evaluated"])
    np.testing.assert_allclose(mine["evaluated"], theirs["evaluated"], rtol=1e-5, atol=1e-6)
    assert list(mine["as_dict"]) == list(theirs["as_dict"])
    np.testing.assert_allclose(list(mine["as_dict"].values()), list(theirs["as_dict"].values()),
                               rtol=1e-5, atol=1e-6)
    for got, want in zip(mine["weights"], theirs["weights"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # unbuilt: both
def test_a_compiled_two_output_model_file_opens_compiled_both_ways(tmp_path):
    """Per-output losses, loss weights and metrics travel in .keras files: Keras opens
    convlens's file and convlens opens Keras's, each compiled to evaluate the same."""
    reference, ours = _pair()
    settings = dict(loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
                    loss_weights={"cls": 2.0, "reg": 0.5},
                    metrics={"cls": ["accuracy"], "reg": ["mae"]},
                    weighted_metrics=[["accuracy"], None])
    reference.compile(optimizer="adam", **settings)
    ours.compile(optimizer="adam", **settings)
    image, vector, labels, values, weights = data()
    x, y = [image, vector], [labels, values]
    expected = reference.evaluate(x, y, verbose=0, sample_weight=weights, return_dict=True)
    ours.save(tmp_path / "ours.keras")
    reference.save(tmp_path / "theirs.keras")
    opened = (keras.saving.load_model(tmp_path / "ours.keras"),
              convlens.load_model(tmp_path / "ours.keras"),
              convlens.load_model(tmp_path / "theirs.keras"))
    for model in opened:
        got = model.evaluate(x, y, verbose=0, sample_weight=weights, return_dict=True)
        assert list(got) == list(expected)
        np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)
