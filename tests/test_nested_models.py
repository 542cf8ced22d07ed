"""Models nested as layers, against real Keras: a Sequential and a Functional model called
inside another model (one of them twice, sharing its weights) print the same summary (also
expanded), predict the same, train the same, and go through .keras and .weights.h5 files
both ways."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from tests.test_functional import _summary, assert_same_sgd_step  # noqa: E402


def _nested(lib, sequential, model, input_fn):
    L = lib
    stem = sequential([L.Conv2D(4, 3, name="c1"), L.BatchNormalization(name="bn"),
                       L.Activation("relu", name="act")], name="stem")
    block_in = input_fn((6, 6, 4), name="block_in")
    block = model(block_in, L.Add(name="addi")(
        [block_in, L.Conv2D(4, 1, activation="tanh", name="pc")(block_in)]), name="block")
    x = input_fn((8, 8, 3), name="img")
    h = block(block(stem(x)))  # the block twice: one set of weights, two calls
    out = L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(h))
    return model(x, out, name="outer")


def _pair():
    reference = _nested(keras.layers, keras.Sequential, keras.Model, keras.Input)
    ours = _nested(convlens.layers, convlens.Sequential, convlens.Model, convlens.Input)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.5 for w in ours.get_weights()]
    weights[5] = np.abs(weights[5]) + 0.5  # the moving variance
    reference.set_weights(weights)
    ours.set_weights(weights)
    return reference, ours


def _x(seed=1):
    return np.random.default_rng(seed).standard_normal((4, 8, 8, 3)).astype("float32")


def test_summary_plain_and_expanded_and_predict_equal_keras():
    reference, ours = _pair()
    assert type(ours).__name__ == "Functional" and isinstance(ours, convlens.Model)
    assert _summary(ours) == _summary(reference)
    for model in (ours, reference):
        model.summary_lines = []
        model.summary(expand_nested=True, print_fn=lambda t, line_break=True, m=model:
                      m.summary_lines.append(t))
    assert ours.summary_lines == reference.summary_lines
    assert "└ c1 (Conv2D)" in "".join(ours.summary_lines)
    assert ours.count_params() == reference.count_params()
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in reference.weights]
    np.testing.assert_allclose(ours.predict(_x(), verbose=0),
                               np.asarray(reference.predict(_x(), verbose=0)),
                               rtol=1e-5, atol=1e-5)


def test_one_sgd_step_through_nested_models_equals_keras():
    """Training mode too: the stem's BatchNormalization uses batch statistics, and the shared
    block's weight gradient is the sum over its two calls."""
    reference, ours = _pair()
    y = np.random.default_rng(2).standard_normal((4, 3)).astype("float32")
    assert_same_sgd_step(reference, ours, _x(), y, 0.05, atol=2e-5)


def test_nested_models_in_files_both_ways(tmp_path):
    reference, ours = _pair()
    expected = np.asarray(reference.predict(_x(), verbose=0))
    reference.save(tmp_path / "theirs.keras")
    opened = convlens.load_model(tmp_path / "theirs.keras")
    assert _summary(opened) == _summary(reference)
    np.testing.assert_allclose(opened.predict(_x(), verbose=0), expected, rtol=1e-5, atol=1e-5)
    ours.save(tmp_path / "ours.keras")
    again = keras.saving.load_model(tmp_path / "ours.keras")
    assert _summary(again) == _summary(reference)
    np.testing.assert_allclose(np.asarray(again.predict(_x(), verbose=0)), expected,
                               rtol=1e-5, atol=1e-5)
    # weights files: Keras nests the inner models' layers under their own groups
    ours.save_weights(tmp_path / "ours.weights.h5")
    fresh = _nested(keras.layers, keras.Sequential, keras.Model, keras.Input)
    fresh.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(np.asarray(fresh.predict(_x(), verbose=0)), expected,
                               rtol=1e-5, atol=1e-5)
    reference.save_weights(tmp_path / "theirs.weights.h5")
    mine = _nested(convlens.layers, convlens.Sequential, convlens.Model, convlens.Input)
    mine.load_weights(tmp_path / "theirs.weights.h5")
    np.testing.assert_allclose(mine.predict(_x(), verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_a_functional_model_inside_a_sequential_equals_keras(tmp_path):
    def build(lib, sequential, model, input_fn):
        i = input_fn((5,), name="i")
        inner = model(i, lib.Dense(4, activation="relu", name="d1")(i), name="inner")
        return sequential([input_fn((5,)), inner, lib.Dense(2, name="d2")], name="outer_seq")

    reference = build(keras.layers, keras.Sequential, keras.Model, keras.Input)
    ours = build(convlens.layers, convlens.Sequential, convlens.Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    assert _summary(ours) == _summary(reference)
    x = np.random.default_rng(3).standard_normal((3, 5)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), reference.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "seq.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "seq.keras").predict(
        x, verbose=0), reference.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    y = np.random.default_rng(4).standard_normal((3, 2)).astype("float32")
    assert_same_sgd_step(reference, ours, x, y, 0.1, atol=1e-5)


def test_a_nested_model_refuses_a_wrong_input_naming_both_shapes():
    i = convlens.Input((6, 6, 4))
    inner = convlens.Model(i, convlens.layers.Conv2D(2, 1)(i), name="inner")
    with pytest.raises(ValueError, match=r"model 'inner'.*\(None, 6, 6, 4\).*\(None, 5, 5, 4\)"):
        inner(convlens.Input((5, 5, 4)))
    two = convlens.Model(i, [convlens.layers.Conv2D(2, 1)(i), convlens.layers.Conv2D(3, 1)(i)])
    with pytest.raises(ValueError, match="2 outputs"):
        two(convlens.Input((6, 6, 4)))


def test_explain_a_nested_model_as_the_same_layers_flat():
    """The nested model's cost and receptive field equal those of its layers laid out flat."""
    L = convlens.layers

    def convs():
        return [L.Conv2D(4, 3, strides=2, name="a"), L.Conv2D(4, 3, name="b"),
                L.Conv2D(4, 3, name="c")]

    flat = convlens.Sequential([convlens.Input((32, 32, 2)), *convs()])
    a, b, c = convs()
    x = convlens.Input((32, 32, 2))
    inner = convlens.Sequential([b, c], name="inner")
    nested = convlens.Model(x, inner(a(x)))
    flat_explained, nested_explained = flat.explain(), nested.explain()
    last_flat = flat_explained.layers[-1]
    last_nested = nested_explained.layers[-1]
    assert last_nested.name == "inner"
    assert last_nested.receptive_field.size == last_flat.receptive_field.size == (11, 11)
    assert last_nested.receptive_field.jump == last_flat.receptive_field.jump
    assert last_nested.receptive_field.start == last_flat.receptive_field.start
    assert last_nested.macs == sum(e.macs for e in flat_explained.layers[1:])
    assert "model.get_layer('inner').explain()" in str(nested_explained)


def test_a_value_of_a_nested_model_is_traced_in_its_output_layer():
    _, ours = _pair()
    x = _x()[:1]
    stem, block = ours.get_layer("stem"), ours.get_layer("block")
    for layer, index in ((stem, (2, 3, 1)), (block, (4, 0, 3))):
        traced = convlens.explain.trace(ours, layer.name, index, x)
        expected = layer.call(ours.layer_input(layer, x))[(0, *index)]
        assert traced.matches and traced.value == pytest.approx(float(expected), rel=1e-5)
    assert convlens.explain.trace(ours, "block", (0, 0, 0), x).layer_name == "addi"


def test_onnx_export_inlines_nested_models():
    onnx_reference = pytest.importorskip("onnx.reference")
    from convlens.io.onnx_export import to_onnx

    reference, ours = _pair()
    proto = to_onnx(ours)
    got = onnx_reference.ReferenceEvaluator(proto).run(None, {"img": _x()})[0]
    np.testing.assert_allclose(got, np.asarray(reference.predict(_x(), verbose=0)),
                               rtol=1e-5, atol=1e-5)
    # the shared block is inlined once per call: two 1x1 convolutions, one set of weights
    assert sum(node.op_type == "Conv" for node in proto.graph.node) == 3


def test_penalties_inside_a_nested_model_join_the_loss_as_in_keras():
    def build(lib, sequential, model, input_fn):
        inner = sequential([lib.Dense(4, activation="tanh", activity_regularizer="l2",
                                      kernel_regularizer="l1", name="d1")], name="inner")
        x = input_fn((5,), name="x")
        return model(x, lib.Dense(2, name="d2")(inner(x)), name="outer")

    reference = build(keras.layers, keras.Sequential, keras.Model, keras.Input)
    ours = build(convlens.layers, convlens.Sequential, convlens.Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 5)).astype("float32")
    y = rng.standard_normal((8, 2)).astype("float32")
    losses = []
    for model, optimizer in ((reference, keras.optimizers.SGD(0.1)),
                             (ours, convlens.optimizers.SGD(0.1))):
        model.compile(optimizer=optimizer, loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for expected, got in zip(reference.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_a_sequential_is_a_graph_a_feature_extractor_can_read():
    """Keras's feature-extraction pattern: a Model from a Sequential's inputs to every layer's
    output (the Sequential's layers were called on its input when it was built)."""
    def build(lib, sequential, model, input_fn):
        seq = sequential([input_fn((8, 8, 2), name="pixels")], name="seq")
        seq.add(lib.Conv2D(3, 3, activation="relu", name="c1"))  # built a layer at a time
        seq.add(lib.MaxPooling2D(name="pool"))
        seq.add(lib.Flatten(name="flat"))
        extractor = model(seq.inputs, [layer.output for layer in seq.layers], name="features")
        return seq, extractor

    (theirs, their_features), (ours, our_features) = (
        build(keras.layers, keras.Sequential, keras.Model, keras.Input),
        build(convlens.layers, convlens.Sequential, convlens.Model, convlens.Input))
    ours.set_weights(theirs.get_weights())
    assert [t.name for t in ours.inputs] == ["pixels"] and ours.outputs[0].layer.name == "flat"
    assert _summary(our_features) == _summary(their_features)
    x = np.random.default_rng(5).standard_normal((2, 8, 8, 2)).astype("float32")
    for got, expected in zip(our_features.predict(x, verbose=0),
                             their_features.predict(x, verbose=0)):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no input yet"):
        _ = convlens.Sequential([convlens.layers.Dense(2)]).inputs
