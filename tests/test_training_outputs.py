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


def test_early_stopping_on_one_outputs_validation_loss_as_keras():
    """monitor='val_cls_loss' stops where Keras stops with mode='min'; with mode='auto' both
    refuse it (Keras can't tell an output's loss's direction), with the same advice."""
    image, vector, labels, values, _ = data()
    stopped = []
    for lib, model in zip((keras, convlens), _pair()):
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss=["sparse_categorical_crossentropy",
                                                              "mse"])
        with pytest.raises(ValueError, match="mode='max'.*mode='min'"):
            model.fit([image, vector], [labels, values], epochs=2, verbose=0,
                      validation_split=0.25,
                      callbacks=[lib.callbacks.EarlyStopping(monitor="val_cls_loss")])
        history = model.fit([image, vector], [labels, values], epochs=8, verbose=0,
                            shuffle=False, validation_split=0.25, callbacks=[
                                lib.callbacks.EarlyStopping(monitor="val_cls_loss", mode="min")])
        stopped.append(history.history["val_cls_loss"])
    assert len(stopped[0]) < 8  # it did stop early
    np.testing.assert_allclose(stopped[1], stopped[0], rtol=1e-5)


def _compiled(**settings):
    model = _pair()[1]
    model.compile(optimizer="sgd", **{"loss": ["sparse_categorical_crossentropy", "mse"],
                                      **settings})
    return model


BAD_FIT = {
    "y lacks an output": (dict(y={"cls": "labels"}),
                          r"the `y` dict lacks \['reg'\]; model 'two_heads' has the outputs "
                          r"\['cls', 'reg'\]"),
    "y names no output": (dict(y={"cls": "labels", "reg": "values", "out": "values"}),
                          r"names \['out'\], which are not outputs"),
    "one y for two outputs": (dict(y="labels"),
                              r"has 2 outputs \['cls', 'reg'\], so `y` needs one target array "
                              r"per output.*received one array of shape \(20,\)"),
    "three ys": (dict(y=["labels", "values", "values"]),
                 r"a list of 2 in that order.*received a list of 3"),
    "y too short": (dict(y=["labels", "short"]),
                    r"x and y\['reg'\] must have the same number of samples; received x with 20 "
                    r"and y\['reg'\] with 5"),
    "wrong target shape": (dict(y=["labels", "labels"]),
                           r"output 'reg' of model 'two_heads': Loss 'mean_squared_error': targets "
                           r"of shape \(20,\) do not match the model's output shape \(None, 2\)"),
    "class_weight": (dict(class_weight={0: 2.0}), "only supported for models with one output"),
    "sample_weight names no output": (dict(sample_weight={"cls": "weights", "x": "weights"}),
                                      r"`sample_weight` names \['x'\], which are not outputs"),
}


@pytest.mark.parametrize("case", list(BAD_FIT), ids=list(BAD_FIT))
def test_bad_targets_are_refused_before_training(case):
    arguments, message = BAD_FIT[case]
    image, vector, labels, values, weights = data()
    named = {"labels": labels, "values": values, "weights": weights, "short": values[:5]}

    def resolved(value):
        if isinstance(value, dict):
            return {k: resolved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolved(v) for v in value]
        return named.get(value, value) if isinstance(value, str) else value

    arguments = resolved(arguments)
    model = _compiled()
    before = model.get_weights()
    y = arguments.pop("y", [labels, values])
    with pytest.raises(ValueError, match=message):
        model.fit([image, vector], y, epochs=1, verbose=0, **arguments)
    if "class_weight" not in arguments:  # a fit() argument only
        with pytest.raises(ValueError, match=message):
            model.evaluate([image, vector], y, verbose=0, **arguments)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


BAD_COMPILE = {
    "a loss dict naming no output": (
        dict(loss={"cls": "mse", "regression": "mse"}),
        r"`loss` names \['regression'\], which are not outputs of model 'two_heads'; its "
        r"outputs are \['cls', 'reg'\]"),
    "a loss dict missing an output": (dict(loss={"cls": "mse"}),
                                      r"the `loss` dict has no entry for \['reg'\]"),
    "three losses": (dict(loss=["mse"] * 3),
                     r"has 2 outputs \['cls', 'reg'\], so `loss` needs one entry per output"),
    "a flat metrics list of another length": (
        dict(metrics=["mae"]), r"so `metrics` needs one entry per output.*received 1 entries"),
    "loss_weights per output with one loss": (dict(loss="mse", loss_weights=[1.0, 2.0]),
                                              "`loss_weights` must be one number"),
    "one loss weight for a loss per output": (dict(loss_weights=0.5),
                                              "`loss_weights` must match the number of losses"),
    "no output with a loss": (dict(loss=[None, None]), "give at least one output a loss"),
}


@pytest.mark.parametrize("case", list(BAD_COMPILE), ids=list(BAD_COMPILE))
def test_compile_refuses_settings_that_do_not_fit_the_outputs(case):
    settings, message = BAD_COMPILE[case]
    with pytest.raises(ValueError, match=message):
        _compiled(**settings)


@pytest.mark.parametrize("settings", [
    dict(loss={"out": "sparse_categorical_crossentropy"}, metrics={"out": ["accuracy"]}),
    dict(loss=["sparse_categorical_crossentropy"], metrics=[["accuracy"]], loss_weights=[0.5]),
], ids=["dicts", "lists"])
def test_one_output_takes_the_per_output_forms_as_keras(settings):
    """Keras lets a model with one output be compiled and fed as if it had several."""
    models = []
    for lib, model_cls in ((keras, keras.Model), (convlens, Model)):
        x = lib.Input((4,), name="a")
        model = model_cls(x, lib.layers.Dense(3, activation="softmax", name="out")(x))
        if models:
            model.set_weights(models[0].get_weights())
        model.compile(optimizer="sgd", **settings)
        models.append(model)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 4)).astype("float32"), np.arange(8) % 3
    expected = models[0].evaluate(x, [y], verbose=0, return_dict=True)
    for targets in ([y], y, {"out": y}):  # Keras takes the first two
        got = models[1].evaluate(x, targets, verbose=0, return_dict=True)
        assert list(got) == ["accuracy", "loss"] == list(expected)
        np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6)


def test_train_test_and_predict_on_batch_equal_keras():
    """train_on_batch steps (metrics afresh each call) and test_on_batch return what Keras
    returns, as lists and dicts, and leave the same weights; predict_on_batch the same outputs."""
    image, vector, labels, values, weights = data()
    results = []
    for lib, model in zip((keras, convlens), _pair()):
        model.compile(optimizer=lib.optimizers.Adam(0.01),
                      loss=["sparse_categorical_crossentropy", "mse"],
                      metrics=[["accuracy"], ["mae"]], weighted_metrics=[["accuracy"], None])
        steps = [model.train_on_batch([image[rows], vector[rows]], [labels[rows], values[rows]],
                                      sample_weight=weights[rows])
                 for rows in (slice(0, 8), slice(8, 16), slice(16, 20))]
        steps.append(list(model.train_on_batch([image, vector], [labels, values],
                                               return_dict=True).items()))
        tested = model.test_on_batch([image, vector], [labels, values], sample_weight=weights)
        as_dict = model.test_on_batch([image, vector], {"cls": labels, "reg": values},
                                      return_dict=True)
        predicted = [keras.ops.convert_to_numpy(p)
                     for p in model.predict_on_batch([image[:4], vector[:4]])]
        results.append((steps, tested, as_dict, predicted, model.get_weights()))
    their_steps, their_test, their_dict, their_predicted, their_weights = results[0]
    our_steps, our_test, our_dict, our_predicted, our_weights = results[1]
    for mine, theirs in zip(our_steps[:3], their_steps[:3]):
        assert len(mine) == len(theirs) == 6
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert [k for k, _ in our_steps[3]] == [k for k, _ in their_steps[3]]
    np.testing.assert_allclose([v for _, v in our_steps[3]], [v for _, v in their_steps[3]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_test, their_test, rtol=1e-5, atol=1e-6)
    assert list(our_dict) == list(their_dict)
    np.testing.assert_allclose(list(our_dict.values()), list(their_dict.values()), rtol=1e-5)
    for got, want in zip(our_predicted + our_weights, their_predicted + their_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_output_that_feeds_another_output_trains_as_keras():
    """A softmax output that another head reads: its gradient sums the cross-entropy's and
    the later head's, so the trainer can't use the fused softmax gradient there."""
    image, vector, labels, values, _ = data()
    models, histories = [], []
    for lib, model_cls in ((keras, keras.Model), (convlens, Model)):
        L = lib.layers
        v = lib.Input((3,), name="vector")
        probabilities = L.Dense(3, activation="softmax", name="cls")(v)
        later = L.Dense(2, name="later")(probabilities)
        models.append(model_cls(v, [probabilities, later]))
    models[1].set_weights(models[0].get_weights())
    for lib, model in zip((keras, convlens), models):
        model.compile(optimizer=lib.optimizers.SGD(0.5),
                      loss=["sparse_categorical_crossentropy", "mse"])
        histories.append(model.fit(vector, [labels, values], batch_size=5, epochs=2,
                                   shuffle=False, verbose=0).history)
    (their_model, our_model), (theirs, ours) = models, histories
    assert list(ours) == list(theirs) == ["cls_loss", "later_loss", "loss"]
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5)
    for got, want in zip(our_model.get_weights(), their_model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # Keras, on the loss-free head
def test_an_output_without_a_loss_keeps_its_metrics_and_weights_as_keras():
    image, vector, labels, values, _ = data()
    results = []
    for lib, model in zip((keras, convlens), _pair()):
        model.compile(optimizer=lib.optimizers.SGD(0.1),
                      loss=["sparse_categorical_crossentropy", None],
                      metrics=[["accuracy"], ["mae"]])
        history = model.fit([image, vector], [labels, values], epochs=2, batch_size=5,
                            shuffle=False, verbose=0).history
        results.append((history, model.evaluate([image, vector], [labels, values], verbose=0),
                        model.get_weights()))
    (theirs, their_values, their_weights), (ours, our_values, our_weights) = results
    assert list(ours) == list(theirs) == ["cls_accuracy", "loss", "reg_mae"]  # no cls_loss
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5)
    np.testing.assert_allclose(our_values, their_values, rtol=1e-5)
    for got, want in zip(our_weights, their_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
