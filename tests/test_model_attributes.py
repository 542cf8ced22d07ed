"""What other modules read from a model or a layer is public and declared: the attributes
``compile`` sets exist before it, the fused softmax backward is a method, the input layer and
a layer's declared input shape are properties, the summary text is a function."""

from __future__ import annotations

import numpy as np

from convlens.layers import Dense, Input
from convlens.models import Sequential
from convlens.summary import summary_text


def test_compile_attributes_exist_before_compile():
    model = Sequential([Input((3,)), Dense(2)])
    assert (model.compiled, model.optimizer, model.loss, model.loss_weight) == (
        False, None, None, None)
    assert model.metrics_list == [] and model.weighted_metrics_list == []
    model.compile(optimizer="sgd", loss="mse", loss_weights=0.5, metrics=["mae"])
    assert model.compiled and model.loss_weight == 0.5
    assert [name for name, _ in model.metrics_list] == ["mae"]


def test_input_layer_and_declared_input_shape():
    assert Sequential().input_layer is None
    first = Dense(2, input_shape=(5,))
    assert first.batch_input_shape == (None, 5)
    assert Dense(2).batch_input_shape is None
    model = Sequential([first])
    assert model.input_layer.batch_shape == (None, 5)
    named = Sequential([Input((4,), name="pixels"), Dense(1)])
    assert named.input_layer.name == "pixels"


def _softmax_dense_and_linear_twin():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    layers = [Dense(3, activation="softmax"), Dense(3)]
    for layer in layers:
        layer.build((None, 4))
        layer.set_weights([kernel, bias])
    return layers, rng.standard_normal((5, 4)).astype(np.float32), kernel, bias


def test_pre_activation_is_the_logits_of_the_last_training_call():
    (softmax, _), x, kernel, bias = _softmax_dense_and_linear_twin()
    assert softmax.pre_activation() is None
    softmax(x, training=True)
    np.testing.assert_allclose(softmax.pre_activation(), x @ kernel + bias, rtol=1e-5)
    softmax(x, training=False)
    assert softmax.pre_activation() is None
    linear = Dense(3)
    linear(x, training=True)
    assert linear.pre_activation() is None


def test_backward_from_pre_activation_skips_the_activation_once():
    (softmax, linear), x, _, _ = _softmax_dense_and_linear_twin()
    grad_z = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    softmax(x, training=True)
    linear(x, training=True)
    # given dL/dz, a softmax layer back-propagates as its linear twin does
    np.testing.assert_allclose(softmax.backward_from_pre_activation(grad_z),
                               linear.backward(grad_z), rtol=1e-6)
    np.testing.assert_allclose(softmax.kernel.grad, linear.kernel.grad, rtol=1e-6)
    # and afterwards a plain backward goes through the softmax again
    through = softmax.backward(grad_z)
    y = softmax.call(x)
    grad_z_softmax = y * (grad_z - np.sum(grad_z * y, axis=-1, keepdims=True))
    np.testing.assert_allclose(through, linear.backward(grad_z_softmax), rtol=1e-5, atol=1e-7)


def test_summary_text_is_what_summary_prints(capsys):
    model = Sequential([Input((6,)), Dense(2, name="out")], name="tiny")
    model.summary()
    assert summary_text(model) == capsys.readouterr().out
