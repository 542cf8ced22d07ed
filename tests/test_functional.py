"""The Functional API against real Keras: graphs with branches, merges, shared layers and
several inputs/outputs print the same summary, predict the same and train the same."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from convlens.models import Model  # noqa: E402


def _residual(lib, model_cls, input_fn):
    L = lib
    x = input_fn((8, 8, 3), name="img")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = L.Conv2D(4, 1, name="c2")(x)
    s = L.Add(name="add")([a, b])
    c = L.Concatenate(name="cat")([s, b])
    f = L.Flatten(name="flat")(c)
    return model_cls(x, L.Dense(3, name="out")(f), name="residual")


def _two_heads(lib, model_cls, input_fn):
    L = lib
    x = input_fn((6, 6, 2), name="img")
    h = L.Conv2D(3, 3, name="trunk")(x)
    f = L.Flatten(name="flat")(h)
    return model_cls(x, [L.Dense(2, name="left")(f), L.Dense(4, name="right")(f)], name="heads")


def _shared(lib, model_cls, input_fn):
    L = lib
    p = input_fn((5,), name="p")
    q = input_fn((5,), name="q")
    encode = L.Dense(4, activation="tanh", name="encode")
    m = L.Concatenate(name="cat")([encode(p), encode(q)])
    d = L.Subtract(name="diff")([encode(p), encode(q)])
    out = L.Dense(1, name="out")(L.Multiply(name="mul")([m, L.Concatenate(name="cat2")([d, d])]))
    return model_cls([p, q], out, name="siamese")


def _chain(lib, model_cls, input_fn):
    L = lib
    x = input_fn((7, 7, 1), name="img")
    y = L.Dense(2, name="out")(L.Flatten(name="flat")(L.Conv2D(2, 3, name="conv")(x)))
    return model_cls(x, y, name="chain")


def _reused(lib, model_cls, input_fn):
    L = lib
    x = input_fn((5,), name="x")
    encode = L.Dense(5, activation="tanh", name="encode")
    h = L.Add(name="skip")([encode(encode(x)), x])
    return model_cls(x, L.Dense(1, name="out")(h), name="reused")


BUILDERS = [_residual, _two_heads, _shared, _chain, _reused]


def _pair(builder):
    reference = builder(keras.layers, keras.Model, keras.Input)
    ours = builder(convlens.layers, Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    return reference, ours


def _inputs(model, rng):
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    arrays = [rng.standard_normal((4, *s[1:])).astype("float32") for s in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


def _summary(model) -> str:
    lines = []
    model.summary(print_fn=lambda text, line_break=True: lines.append(text))
    return "\n".join(lines).strip()


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__.strip("_"))
def test_summary_and_predict_equal_keras(builder):
    reference, ours = _pair(builder)
    assert _summary(ours) == _summary(reference)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in reference.layers]
    x = _inputs(ours, np.random.default_rng(0))
    expected = reference.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    for e, g in zip(expected if isinstance(expected, list) else [expected],
                    got if isinstance(got, list) else [got]):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("builder", [_residual, _reused, _chain],
                         ids=lambda b: b.__name__.strip("_"))
def test_one_sgd_step_equals_keras(builder):
    reference, ours = _pair(builder)
    rng = np.random.default_rng(1)
    x = _inputs(ours, rng)
    y = rng.standard_normal((4, *ours.output_shape[1:])).astype("float32")
    assert_same_sgd_step(reference, ours, x, y, 0.1, atol=1e-5)


def assert_same_sgd_step(reference, ours, x, y, learning_rate, atol):
    """One full-batch SGD step on the MSE in Keras and in convlens: the same new weights."""
    for model, optimizer in ((reference, keras.optimizers.SGD(learning_rate)),
                             (ours, convlens.optimizers.SGD(learning_rate))):
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    for expected, got in zip(reference.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=atol)


def test_layer_input_output_and_get_layer():
    reference, ours = _pair(_residual)
    # as a file holds them (JSON: Keras's in-memory config has tuples)
    ours_config, their_config = (json.loads(json.dumps(m.get_config())) for m in (ours, reference))
    assert ours_config["input_layers"] == their_config["input_layers"]
    assert ours_config["output_layers"] == their_config["output_layers"]
    assert ([e["inbound_nodes"] for e in ours_config["layers"]]
            == [e["inbound_nodes"] for e in their_config["layers"]])
    add = ours.get_layer("add")
    assert [t.name for t in add.input] == ["c1", "c2"]
    assert add.output.shape == (None, 8, 8, 4)
    assert ours.inputs[0].name == "img" and ours.outputs[0].layer.name == "out"


def test_add_refuses_unequal_shapes_naming_the_layer_and_both():
    x = convlens.Input((8, 8, 3))
    a = convlens.layers.Conv2D(4, 3, name="a")(x)
    b = convlens.layers.Conv2D(4, 1, name="b")(x)
    with pytest.raises(ValueError, match=r"Add 'bad'.*\(None, 6, 6, 4\) and \(None, 8, 8, 4\)"):
        convlens.layers.Add(name="bad")([a, b])
    with pytest.raises(ValueError, match=r"Concatenate 'cat2'.*\(None, 6, 6, 4\) and "
                                         r"\(None, 8, 8, 4\)"):
        convlens.layers.Concatenate(name="cat2")([a, b])


def test_disconnected_graph_and_bad_inputs_are_named():
    x1 = convlens.Input((4,), name="first")
    x2 = convlens.Input((4,), name="second")
    hidden = convlens.layers.Dense(3, name="hidden")(x1)
    y = convlens.layers.Add(name="sum")([hidden, convlens.layers.Dense(3, name="h2")(x2)])
    with pytest.raises(ValueError, match=r"disconnected.*'h2'|disconnected.*second"):
        Model(x1, y)
    with pytest.raises(ValueError, match=r"'hidden'.*not a convlens.Input"):
        Model(hidden, y)
    with pytest.raises(TypeError, match="mix of symbolic tensors and concrete arrays"):
        convlens.layers.Add()([hidden, np.ones((1, 3), "float32")])
    with pytest.raises(TypeError, match="symbolic tensor"):
        Model(x1, np.ones(3))


def test_explain_receptive_fields_and_traces_through_merges():
    _, ours = _pair(_residual)
    explanation = ours.explain()
    fields = {layer.name: e.receptive_field for layer, e in zip(ours.layers, explanation.layers)}
    # c1 is 3x3 'same', c2 is 1x1: the sum sees the larger field, through c1.
    assert fields["c1"].size == (3, 3) and fields["c2"].size == (1, 1)
    assert fields["add"].size == (3, 3) and "'c1'" in fields["add"].note
    x = np.random.default_rng(2).standard_normal((1, 8, 8, 3)).astype("float32")
    branches = [ours.get_layer(n).call(x) for n in ("c1", "c2")]
    for index in [(0, 0, 0), (5, 7, 3)]:
        traced = convlens.explain.trace(ours, "add", index, x)
        assert traced.matches
        np.testing.assert_allclose(traced.window, [b[(0, *index)] for b in branches], rtol=1e-6)
        assert traced.value == pytest.approx(sum(b[(0, *index)] for b in branches), rel=1e-6)
    added = branches[0] + branches[1]
    for index, expected in [((2, 3, 1), added[0, 2, 3, 1]), ((2, 3, 6), branches[1][0, 2, 3, 2])]:
        traced = convlens.explain.trace(ours, "cat", index, x)
        assert traced.matches and traced.value == pytest.approx(float(expected), rel=1e-6)


def test_functional_files_round_trip_with_keras(tmp_path):
    for builder in (_residual, _shared, _two_heads, _reused):
        reference = builder(keras.layers, keras.Model, keras.Input)
        reference.save(tmp_path / "theirs.keras")
        ours = convlens.load_model(tmp_path / "theirs.keras")
        assert _summary(ours) == _summary(reference)
        x = _inputs(ours, np.random.default_rng(3))
        expected = reference.predict(x, verbose=0)
        got = ours.predict(x, verbose=0)
        ours.save(tmp_path / "ours.keras")
        again = keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0)
        for e, g, a in zip(*(v if isinstance(v, list) else [v] for v in (expected, got, again))):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__.strip("_"))
def test_onnx_export_of_graphs_runs_as_predict(builder):
    onnx_reference = pytest.importorskip("onnx.reference")
    from convlens.io.onnx_export import to_onnx

    _, ours = _pair(builder)
    proto = to_onnx(ours)
    x = _inputs(ours, np.random.default_rng(4))
    arrays = x if isinstance(x, list) else [x]
    feeds = {t.name: a for t, a in zip(ours.inputs, arrays)}
    got = onnx_reference.ReferenceEvaluator(proto).run(None, feeds)
    expected = ours.predict(x, verbose=0)
    for e, g in zip(expected if isinstance(expected, list) else [expected], got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
