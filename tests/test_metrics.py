"""convlens.metrics against keras.metrics."""

import keras
import numpy as np
import pytest

from convlens import metrics

rng = np.random.default_rng(0)


def _keras_result(metric, batches):
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred)
    return float(keras.ops.convert_to_numpy(metric.result()))


def _ours(fn, batches):
    mean = metrics.Mean()
    for y_true, y_pred in batches:
        values = fn(y_true, y_pred)
        assert values.shape == (len(y_true),) and values.dtype == np.float32
        mean.update(float(np.mean(values)), len(y_true))
    return mean.result()


def _batches(make, sizes=(32, 32, 7)):
    return [make(n) for n in sizes]


def _probs(n, k):
    p = rng.random((n, k)).astype(np.float32)
    return p / p.sum(axis=1, keepdims=True)


SPARSE = _batches(lambda n: (rng.integers(0, 5, n), _probs(n, 5)))
SPARSE_COL = _batches(lambda n: (rng.integers(0, 5, (n, 1)), _probs(n, 5)))
ONE_HOT = _batches(lambda n: (np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)], _probs(n, 5)))
BINARY = _batches(lambda n: (rng.integers(0, 2, (n, 1)).astype(np.float32), rng.random((n, 1))))
MULTI = _batches(lambda n: (rng.integers(0, 2, (n, 3)).astype(np.float32), rng.random((n, 3))))
REGRESSION = _batches(lambda n: (rng.normal(size=(n, 4)), rng.normal(size=(n, 4))))
IMAGES = _batches(lambda n: (rng.normal(size=(n, 6, 6, 2)), rng.normal(size=(n, 6, 6, 2))))


@pytest.mark.parametrize(
    ("name", "keras_metric", "batches"),
    [
        ("sparse_categorical_accuracy", keras.metrics.SparseCategoricalAccuracy, SPARSE),
        ("sparse_categorical_accuracy", keras.metrics.SparseCategoricalAccuracy, SPARSE_COL),
        ("categorical_accuracy", keras.metrics.CategoricalAccuracy, ONE_HOT),
        ("binary_accuracy", keras.metrics.BinaryAccuracy, BINARY),
        ("binary_accuracy", keras.metrics.BinaryAccuracy, MULTI),
        ("mse", keras.metrics.MeanSquaredError, REGRESSION),
        ("mae", keras.metrics.MeanAbsoluteError, REGRESSION),
        ("mean_squared_error", keras.metrics.MeanSquaredError, IMAGES),
        ("mean_absolute_error", keras.metrics.MeanAbsoluteError, IMAGES),
        ("sparse_categorical_crossentropy", keras.metrics.SparseCategoricalCrossentropy,
         SPARSE),
        ("SparseCategoricalCrossentropy", keras.metrics.SparseCategoricalCrossentropy,
         SPARSE_COL),
        ("categorical_crossentropy", keras.metrics.CategoricalCrossentropy, ONE_HOT),
        ("binary_crossentropy", keras.metrics.BinaryCrossentropy, BINARY),
        ("binary_crossentropy", keras.metrics.BinaryCrossentropy, MULTI),
    ],
)
def test_matches_keras(name, keras_metric, batches):
    assert _ours(metrics.get(name), batches) == pytest.approx(
        _keras_result(keras_metric(), batches), rel=1e-6
    )


def test_binary_threshold():
    y_true = np.array([[1], [1], [0], [0]], np.float32)
    y_pred = np.array([[0.98], [0.6], [0], [0.6]], np.float32)
    np.testing.assert_array_equal(metrics.binary_accuracy(y_true, y_pred), [1, 1, 1, 0])
    np.testing.assert_array_equal(metrics.binary_accuracy(y_true, y_pred, 0.7), [1, 0, 1, 1])
    keras_metric = keras.metrics.BinaryAccuracy(threshold=0.7)
    keras_metric.update_state(y_true, y_pred)
    assert float(keras_metric.result()) == np.mean(metrics.binary_accuracy(y_true, y_pred, 0.7))


@pytest.mark.parametrize(
    ("batches", "expected"),
    [
        (SPARSE, keras.metrics.SparseCategoricalAccuracy),
        (SPARSE_COL, keras.metrics.SparseCategoricalAccuracy),
        (ONE_HOT, keras.metrics.CategoricalAccuracy),
        (BINARY, keras.metrics.BinaryAccuracy),
        # Keras resolves 'accuracy' by shapes: 3 sigmoid units -> categorical accuracy.
        (MULTI, keras.metrics.CategoricalAccuracy),
    ],
)
@pytest.mark.parametrize("alias", ["accuracy", "acc"])
def test_accuracy_resolves_like_keras(alias, batches, expected):
    y_true, y_pred = batches[0]
    name, fn = metrics.resolve(alias, "any_loss", np.shape(y_true), np.shape(y_pred))
    assert name == alias
    assert _ours(fn, batches) == pytest.approx(_keras_result(expected(), batches), rel=1e-6)
    # Without shapes the function decides per batch, with the same result.
    name, fn = metrics.resolve(alias, "any_loss")
    assert _ours(fn, batches) == pytest.approx(_keras_result(expected(), batches), rel=1e-6)


def test_display_names_as_keras_logs_them():
    assert metrics.resolve("acc")[0] == "acc"
    assert metrics.resolve("mse")[0] == "mse"
    assert metrics.resolve("sparse_categorical_accuracy")[0] == "sparse_categorical_accuracy"
    assert metrics.resolve(metrics.mean_absolute_error)[0] == "mean_absolute_error"


def test_unknown_metric():
    with pytest.raises(ValueError, match="'f1'.*'accuracy'.*'mse'"):
        metrics.resolve("f1")


def test_mean_is_weighted_by_batch_size():
    mean = metrics.Mean()
    assert mean.result() == 0.0
    mean.update(1.0, 3)
    mean.update(0.0, 1)
    assert mean.result() == 0.75
    keras_mean = keras.metrics.Mean()
    keras_mean.update_state([1.0, 1.0, 1.0, 0.0])
    assert mean.result() == float(keras_mean.result())
    other = metrics.Mean()
    other.update_state([1.0, 1.0, 1.0, 0.0])
    assert other.result() == 0.75
    mean.reset_state()
    assert mean.result() == 0.0


def test_direction():
    assert metrics.direction("val_accuracy") == "up"
    assert metrics.direction("acc") == "up"
    assert metrics.direction("val_loss") == "down"
    assert metrics.direction("mae") == "down"
    assert metrics.direction("val_sparse_categorical_crossentropy") == "down"
    assert metrics.direction("my_score") is None
    assert metrics.direction("val_score", [("score", metrics.binary_accuracy)]) == "up"
    assert metrics.direction("val_weighted_accuracy", [("accuracy", metrics.accuracy)]) == "up"
    assert metrics.direction("weighted_mae") == "down"


@pytest.mark.parametrize("name, keras_metric", [
    ("sparse_categorical_crossentropy", keras.metrics.SparseCategoricalCrossentropy),
    ("categorical_crossentropy", keras.metrics.CategoricalCrossentropy),
    ("binary_crossentropy", keras.metrics.BinaryCrossentropy),
    ("accuracy", keras.metrics.SparseCategoricalAccuracy),
])
def test_weighted_mean_of_per_sample_values_matches_keras(name, keras_metric):
    """weighted_metrics: each sample's own value times its weight, over the sum of weights --
    so a crossentropy metric must give one loss per sample, not the batch mean."""
    probs = rng.uniform(0.05, 1, (9, 3)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 3, 9)
    y_true = {"categorical_crossentropy": np.eye(3, dtype=np.float32)[labels],
              "binary_crossentropy": rng.integers(0, 2, (9, 3)).astype(np.float32)}.get(
        name, labels)
    weights = rng.uniform(0, 2, 9).astype(np.float32)
    ours = metrics.Mean()
    ours.update_state(metrics.get(name)(y_true, probs), weights)
    reference = keras_metric()
    reference.update_state(y_true, probs, sample_weight=weights)
    assert ours.result() == pytest.approx(float(reference.result()), rel=1e-5)
