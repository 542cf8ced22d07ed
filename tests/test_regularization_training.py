"""Regularizers and constraints on layers, against real Keras 3 (torch backend).

The same small CNN is built in Keras and in convlens with the same initial weights: the
penalties (``model.losses``), the loss ``fit`` reports (which includes them), ``evaluate``'s loss
and the weights after a few SGD/Adam steps (constraints applied after each) must agree; files
go both ways with the regularizers and constraints Keras writes.
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

import convlens
from convlens import constraints as cl_constraints
from convlens import layers as cl_layers
from convlens import regularizers as cl_regularizers

keras = pytest.importorskip("keras")

RTOL = 1e-5


def _build(layers, regularizers, constraints, **first):
    """A CNN with a penalty or a constraint on every kind of weight and on three outputs."""
    return [
        layers.Conv2D(4, 3, activation="relu", kernel_regularizer=regularizers.L2(0.01),
                      bias_regularizer=regularizers.L1(0.02),
                      activity_regularizer=regularizers.L1L2(l1=1e-3, l2=2e-3),
                      kernel_constraint=constraints.MaxNorm(0.8, axis=[0, 1, 2]),
                      bias_constraint=constraints.NonNeg(), **first),
        layers.BatchNormalization(gamma_regularizer="l2", beta_regularizer=regularizers.L1(0.01),
                                  gamma_constraint=constraints.MinMaxNorm(0.5, 1.5, rate=0.7),
                                  beta_constraint="non_neg"),
        layers.SeparableConv2D(3, 2, depthwise_regularizer=regularizers.L1(0.003),
                               pointwise_regularizer="l2", bias_regularizer="l2",
                               depthwise_constraint=constraints.UnitNorm(axis=[0, 1]),
                               pointwise_constraint="max_norm", bias_constraint="non_neg"),
        layers.PReLU(alpha_regularizer=regularizers.L2(0.05),
                     alpha_constraint=constraints.NonNeg()),
        layers.Flatten(activity_regularizer=regularizers.L2(1e-3)),
        layers.Dense(5, activation="softmax", kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                     bias_regularizer="l1", activity_regularizer="l2",
                     kernel_constraint=constraints.UnitNorm(), bias_constraint="max_norm"),
    ]


def _convlens_model():
    with convlens.utils.session(seed=3):
        model = convlens.models.Sequential(
            _build(cl_layers, cl_regularizers, cl_constraints, input_shape=(7, 7, 2)))
        model.build((None, 7, 7, 2))
        # A PReLU slope and BN beta away from their zero start, so their penalties count.
        rng = np.random.default_rng(5)
        weights = [w + rng.normal(0, 0.1, w.shape).astype(np.float32)
                   for w in model.get_weights()]
    return model, weights


def _keras_model(weights):
    model = keras.Sequential([keras.Input((7, 7, 2))]
                             + _build(keras.layers, keras.regularizers, keras.constraints))
    model.set_weights(weights)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 7, 7, 2)).astype(np.float32)
    y = rng.integers(0, 5, size=6)
    return x, y


@pytest.fixture(autouse=True)
def _fresh_keras():
    keras.utils.clear_session()
    yield


def _pair():
    model, weights = _convlens_model()
    model.set_weights(weights)
    return model, _keras_model(weights)


def test_model_losses_list_the_penalties_keras_lists():
    ours, reference = _pair()
    x, _ = _data()
    np.testing.assert_allclose(ours.predict(x, verbose=0), reference(x).detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    expected = [float(loss.detach()) for loss in reference.losses]
    got = [float(loss) for loss in ours.losses]
    # Keras: the activity penalties of the last call (3 layers), then one per regularized
    # trainable weight (2 + 2 + 3 + 1 + 2).
    assert len(expected) == 3 + 10
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    for mine, theirs in zip(ours.layers, reference.layers, strict=True):  # layer.losses too
        np.testing.assert_allclose([float(v) for v in mine.losses],
                                   [float(v.detach()) for v in theirs.losses], rtol=RTOL)
        assert mine.losses  # every layer here has a penalty


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_and_evaluate_include_the_penalties_and_constraints_apply(optimizer):
    ours, reference = _pair()
    x, y = _data()
    make = {"sgd": lambda m: m.optimizers.SGD(0.1), "adam": lambda m: m.optimizers.Adam(0.01)}
    ours.compile(make[optimizer](convlens), "sparse_categorical_crossentropy")
    reference.compile(make[optimizer](keras), "sparse_categorical_crossentropy")
    kwargs = dict(batch_size=3, epochs=3, shuffle=False, verbose=0)
    got = ours.fit(x, y, **kwargs).history["loss"]
    expected = reference.fit(x, y, **kwargs).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0),
                               reference.evaluate(x, y, verbose=0), rtol=RTOL)
    # The constraints held after the last step.
    conv_kernel, conv_bias = ours.layers[0].get_weights()
    assert np.sqrt(np.square(conv_kernel).sum(axis=(0, 1, 2))).max() <= 0.8 + 1e-6
    assert conv_bias.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(ours.layers[-1].get_weights()[0], axis=0), 1,
                               rtol=1e-5)


def test_penalties_change_the_reported_loss_by_what_model_losses_says():
    ours, _ = _pair()
    x, y = _data()
    ours.compile("sgd", "sparse_categorical_crossentropy")
    total = ours.evaluate(x, y, batch_size=6, verbose=0)
    data_loss = ours.loss(y, ours.predict(x, verbose=0))[0]
    assert total - data_loss == pytest.approx(float(np.sum(ours.losses)), rel=1e-5)
    assert float(np.sum(ours.losses)) > 1e-3


def test_activity_penalty_gradient_reaches_the_weights():
    """Finite differences of (loss + activity penalty) wrt a kernel entry, against the gradient
    that training computes, for an activity regularizer on a hidden and a softmax layer (L2:
    differences across L1's kink at 0 would not be a derivative)."""
    x, y = _data()
    x = x.reshape(6, -1)[:, :10]
    with convlens.utils.session(seed=1):
        model = convlens.models.Sequential([
            cl_layers.Dense(4, activation="tanh", activity_regularizer=cl_regularizers.L2(0.1),
                            input_shape=(10,)),
            cl_layers.Dense(5, activation="softmax", activity_regularizer="l2"),
        ])
    model.compile(convlens.optimizers.SGD(1.0), "sparse_categorical_crossentropy")
    kernel = model.layers[0].kernel

    def total_loss():
        return model.evaluate(x, y, batch_size=6, verbose=0)

    before = kernel.numpy()
    numeric = np.zeros_like(before)
    step = 1e-2
    for index in np.ndindex(before.shape):
        for sign in (1, -1):
            shifted = before.copy()
            shifted[index] += sign * step
            kernel.assign(shifted)
            numeric[index] += sign * total_loss() / (2 * step)
    kernel.assign(before)
    model.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    analytic = before - kernel.numpy()  # SGD with learning rate 1: the gradient itself
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-4)


def test_keras_file_with_regularizers_opens_in_convlens_and_ours_in_keras(tmp_path):
    reference = _keras_model(_convlens_model()[1])
    reference.save(tmp_path / "keras.keras")
    loaded = convlens.load_model(tmp_path / "keras.keras")
    for mine, theirs in zip(loaded.layers, reference.layers, strict=True):
        expected = {k: v for k, v in theirs.get_config().items()
                    if k.endswith(("_regularizer", "_constraint"))}
        got = {k: v for k, v in mine.get_config().items()
               if k.endswith(("_regularizer", "_constraint"))}
        assert got == expected, mine.name
    x, _ = _data()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), reference.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)
    reference(x)
    np.testing.assert_allclose([float(v) for v in loaded.losses],
                               [float(v.detach()) for v in reference.losses], rtol=RTOL)

    ours, _ = _convlens_model()
    ours.save(tmp_path / "ours.keras")
    back = keras.saving.load_model(tmp_path / "ours.keras")
    for mine, theirs in zip(ours.layers, back.layers, strict=True):
        for key, value in mine.get_config().items():
            if key.endswith(("_regularizer", "_constraint")):
                assert theirs.get_config()[key] == value, (mine.name, key)
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)


def test_a_custom_regularizer_in_a_file_is_refused_naming_the_layer_and_key(tmp_path):
    reference = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, kernel_regularizer="l2", name="regularized")])
    reference.save(tmp_path / "reg.keras")
    with zipfile.ZipFile(tmp_path / "reg.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1]["config"]["kernel_regularizer"]["registered_name"] = "MyL2"
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "custom.keras", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"layer 'regularized' \(Dense\): kernel_regularizer=.*"
                                         r"custom"):
        convlens.load_model(tmp_path / "custom.keras")


@pytest.mark.parametrize("make,message", [
    (lambda: cl_layers.Dense(2, kernel_regularizer="l3"),
     r"Dense 'dense.*': invalid `kernel_regularizer`: .*'l3'"),
    (lambda: cl_layers.Conv2D(2, 3, bias_regularizer={"class_name": "L2", "config": {"l2": -1}}),
     r"Conv2D 'conv2d.*': invalid `bias_regularizer`: .*l2=-1"),
    (lambda: cl_layers.Dense(2, activity_regularizer="l1_l3"),
     r"invalid `activity_regularizer`"),
    (lambda: cl_layers.BatchNormalization(gamma_constraint="max_nrm"),
     r"BatchNormalization '.*': invalid `gamma_constraint`: .*'max_nrm'"),
    (lambda: cl_layers.SeparableConv2D(2, 3, pointwise_constraint={
        "class_name": "MaxNorm", "config": {"max_value": "big"}}),
     r"SeparableConv2D '.*': invalid `pointwise_constraint`: .*max_value='big'"),
    (lambda: cl_regularizers.L1(-0.5), r"l1=-0.5"),
])
def test_bad_regularizers_and_constraints_are_clear_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_shared_layer_with_an_activity_regularizer_is_refused():
    shared = cl_layers.Dense(3, activity_regularizer="l2")
    inputs = convlens.Input((3,))
    twice = shared(shared(inputs))
    with pytest.raises(ValueError, match=r"'dense.*' \(Dense\) has an activity_regularizer and "
                                         r"is called more than once"):
        convlens.Model(inputs, twice)


# Every other layer kind that takes weight rules, one at a time: (input shape, layer factory).
_MORE_LAYERS = {
    "Conv1D": ((6, 3), lambda m: m.layers.Conv1D(
        2, 3, kernel_regularizer="l2", bias_regularizer="l1", activity_regularizer="l2",
        kernel_constraint=m.constraints.MaxNorm(0.5), bias_constraint="non_neg")),
    "Conv3D": ((4, 4, 3, 2), lambda m: m.layers.Conv3D(
        2, 2, kernel_regularizer=m.regularizers.L1L2(0.01, 0.01),
        kernel_constraint="unit_norm")),
    "Conv2DTranspose": ((3, 3, 2), lambda m: m.layers.Conv2DTranspose(
        2, 2, strides=2, kernel_regularizer="l1", bias_regularizer="l2",
        activity_regularizer="l1", kernel_constraint="max_norm", bias_constraint="non_neg")),
    "Conv1DTranspose": ((4, 2), lambda m: m.layers.Conv1DTranspose(
        3, 3, kernel_regularizer="l2", kernel_constraint=m.constraints.MinMaxNorm(0.2, 0.4))),
    "DepthwiseConv2D": ((5, 5, 3), lambda m: m.layers.DepthwiseConv2D(
        3, depth_multiplier=2, depthwise_regularizer="l2", bias_regularizer="l1",
        activity_regularizer="l2", depthwise_constraint=m.constraints.MaxNorm(0.3, axis=[0, 1]),
        bias_constraint="non_neg")),
    "SeparableConv1D": ((6, 2), lambda m: m.layers.SeparableConv1D(
        3, 3, depthwise_regularizer="l1", pointwise_regularizer="l2", bias_regularizer="l2",
        depthwise_constraint="non_neg", pointwise_constraint="unit_norm")),
    "LayerNormalization": ((4, 3), lambda m: m.layers.LayerNormalization(
        gamma_regularizer="l2", beta_regularizer="l1", gamma_constraint="max_norm",
        beta_constraint="non_neg")),
    "GroupNormalization": ((4, 4), lambda m: m.layers.GroupNormalization(
        groups=2, gamma_regularizer="l1", beta_regularizer="l2",
        gamma_constraint=m.constraints.MinMaxNorm(0.5, 1.0), beta_constraint="non_neg")),
}


@pytest.mark.parametrize("name", sorted(_MORE_LAYERS))
def test_each_layer_kind_penalises_and_constrains_as_keras(name):
    shape, factory = _MORE_LAYERS[name]
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    with convlens.utils.session(seed=2):
        ours = convlens.models.Sequential([convlens.Input(shape), factory(convlens),
                                           cl_layers.Flatten(), cl_layers.Dense(1)])
    weights = [w + rng.normal(0, 0.2, w.shape).astype(np.float32) for w in ours.get_weights()]
    ours.set_weights(weights)
    reference = keras.Sequential([keras.Input(shape), factory(keras), keras.layers.Flatten(),
                                  keras.layers.Dense(1)])
    reference.set_weights(weights)
    assert {k: v for k, v in ours.layers[0].get_config().items()
            if k.endswith(("_regularizer", "_constraint"))} == {
        k: v for k, v in reference.layers[0].get_config().items()
        if k.endswith(("_regularizer", "_constraint"))}
    y = rng.normal(size=(4, 1)).astype(np.float32)
    ours.compile(convlens.optimizers.SGD(0.05), "mse")
    reference.compile(keras.optimizers.SGD(0.05), "mse")
    got = ours.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0).history["loss"]
    expected = reference.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(got, expected.history["loss"], rtol=RTOL)
    for mine, theirs in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=1e-6)


def _line(text: str, start: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith(start))


def test_the_explanation_states_each_penalty_and_constraint_with_its_numbers():
    model, weights = _convlens_model()
    model.set_weights(weights)
    x, _ = _data()
    model.predict(x, verbose=0)
    conv = model.layers[0]
    text = str(conv.explain())
    kernel, bias = (w.astype(np.float64) for w in conv.get_weights())
    line = _line(text, "kernel: penalty")
    assert "penalty 0.01 * sum(kernel^2) = " in line and "gradient 0.02 * kernel" in line
    value = float(re.search(r"= ([0-9.e+-]+) added", line).group(1))
    assert value == pytest.approx(0.01 * np.square(kernel).sum(), rel=1e-5)
    line = _line(text, "bias: penalty")
    assert float(re.search(r"= ([0-9.e+-]+) added", line).group(1)) == pytest.approx(
        0.02 * np.abs(bias).sum(), rel=1e-5)
    line = _line(text, "output: penalty 0.001 * sum(|y|) + 0.002 * sum(y^2)")
    assert float(re.search(r"last call: ([0-9.e+-]+)", line).group(1)) == pytest.approx(
        float(model.losses[0]), rel=1e-5)
    line = _line(text, "kernel: after each optimizer step")
    norms = np.sqrt(np.square(kernel).sum(axis=(0, 1, 2)))
    assert "each of the 4 vectors of kernel along axes [0, 1, 2] longer than 0.8" in line
    low, high = (float(v) for v in re.search(r"norms now ([0-9.e+-]+) to ([0-9.e+-]+)",
                                              line).groups())
    assert (low, high) == (pytest.approx(norms.min(), rel=1e-5),
                           pytest.approx(norms.max(), rel=1e-5))
    assert f"({int((bias < 0).sum())} negative now)" in _line(text, "bias: after each")
    dense = str(model.layers[-1].explain())
    assert "to bound whole filters" not in dense  # a Dense kernel's axis 0 is one unit's inputs
    assert "the vector of bias along axis 0 longer than 2" in _line(dense, "bias: after")
    plain = cl_layers.Conv2D(2, 3, kernel_constraint="max_norm")
    plain.build_from_shape((None, 5, 5, 3))
    assert "to bound whole filters pass axis=[0, 1, 2]" in str(plain.explain())
    bare = cl_layers.Dense(2)
    bare.build_from_shape((None, 3))
    assert "Regularizers and constraints" not in str(bare.explain())
    assert "Regularizers and constraints" in str(conv.explain())


def test_a_nested_model_with_an_activity_regularizer_is_not_shared_either():
    inner_input = convlens.Input((3,))
    inner = convlens.Model(inner_input, cl_layers.Dense(3, activity_regularizer="l2")(
        inner_input), name="inner")
    x = convlens.Input((3,))
    twice = inner(inner(x))
    with pytest.raises(ValueError, match=r"'inner' \(Functional\) has an activity_regularizer "
                                         r"and is called more than once"):
        convlens.Model(x, twice)
