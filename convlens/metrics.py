"""Metrics accepted by ``compile(metrics=[...])``: per-sample functions plus a running mean.

Each metric function maps ``(y_true, y_pred)`` to one float32 value per sample, shape
``(N,)``; the trainer keeps one :class:`Mean` per metric and feeds it every batch, which
is what Keras's ``MeanMetricWrapper`` does, so the logged numbers are the same.

``'accuracy'``/``'acc'`` pick the accuracy flavour the way Keras 3 does
(``keras.src.trainers.compile_utils.get_metric``): from the shapes of the targets and
predictions, not from the loss -- binary if the prediction has one unit, sparse
categorical if the targets have a lower rank (or one column against several units),
categorical otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convlens import losses

MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Mean:
    """Running (weighted) mean kept in float32, as ``keras.metrics.Mean``.

    ``update(value, weight)`` adds a batch's mean with the batch size as weight;
    ``update_state(values)`` adds an array of per-sample values (weight 1 each).
    """

    def __init__(self, name: str = "mean"):
        self.name = name
        self.reset_state()

    def reset_state(self) -> None:
        self.total = np.float32(0.0)
        self.count = np.float32(0.0)

    def update(self, value, weight=1) -> None:
        value = np.float32(value)
        weight = np.float32(weight)
        self.total = np.float32(self.total + value * weight)
        self.count = np.float32(self.count + weight)

    def update_state(self, values, sample_weight=None) -> None:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim > 1:
            values = values.reshape(len(values), -1).mean(axis=1, dtype=np.float32)
        if sample_weight is None:
            self.total = np.float32(self.total + np.sum(values, dtype=np.float32))
            self.count = np.float32(self.count + (values.shape[0] if values.ndim else 1))
        else:
            weights = np.broadcast_to(np.asarray(sample_weight, np.float32), values.shape)
            self.total = np.float32(self.total + np.sum(values * weights, dtype=np.float32))
            self.count = np.float32(self.count + np.sum(weights, dtype=np.float32))

    def result(self) -> float:
        """The mean so far, 0.0 before any update (Keras's ``divide_no_nan``)."""
        if self.count == 0:
            return 0.0
        return float(np.float32(self.total / self.count))


def _per_sample(values: np.ndarray) -> np.ndarray:
    """Average every axis but the first: (N, ...) -> (N,) float32."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 0:
        return values.reshape(1)
    if values.ndim == 1:
        return values
    return values.reshape(values.shape[0], -1).mean(axis=1, dtype=np.float32)


def sparse_categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """1.0 where the integer label equals ``argmax(y_pred, -1)``; labels (N,) or (N, 1)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    matches = y_true.astype(np.float32) == np.argmax(y_pred, axis=-1).astype(np.float32)
    return _per_sample(matches)


def categorical_accuracy(y_true, y_pred) -> np.ndarray:
    """1.0 where ``argmax(y_true, -1) == argmax(y_pred, -1)`` (one-hot targets)."""
    matches = np.argmax(np.asarray(y_true), axis=-1) == np.argmax(np.asarray(y_pred), axis=-1)
    return _per_sample(matches)


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> np.ndarray:
    """Fraction of units where ``(y_pred > threshold)`` equals the 0/1 target."""
    y_true = np.asarray(y_true, dtype=np.float32)
    y_pred = np.asarray(y_pred, dtype=np.float32)
    # Keras squeezes or expands the last axis so (N,) and (N, 1) line up.
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred = y_pred[..., 0]
    matches = y_true == (y_pred > np.float32(threshold)).astype(np.float32)
    return _per_sample(matches)


def mean_squared_error(y_true, y_pred) -> np.ndarray:
    """``mean((y_true - y_pred)^2)`` over every axis but the first."""
    diff = np.asarray(y_true, dtype=np.float32) - np.asarray(y_pred, dtype=np.float32)
    return _per_sample(np.mean(np.square(diff), axis=-1, dtype=np.float32))


def mean_absolute_error(y_true, y_pred) -> np.ndarray:
    """``mean(|y_true - y_pred|)`` over every axis but the first."""
    diff = np.asarray(y_true, dtype=np.float32) - np.asarray(y_pred, dtype=np.float32)
    return _per_sample(np.mean(np.abs(diff), axis=-1, dtype=np.float32))


def _crossentropy_metric(loss_name: str) -> MetricFn:
    """A loss named as a metric (``metrics=['sparse_categorical_crossentropy']``), as Keras
    allows: each sample's loss, so a weighted mean weights every sample by its own weight."""

    loss = losses.get(loss_name)  # stateless: one object serves every batch

    def metric(y_true, y_pred) -> np.ndarray:
        return loss.per_sample(y_true, y_pred)

    metric.__name__ = loss_name
    return metric


sparse_categorical_crossentropy = _crossentropy_metric("sparse_categorical_crossentropy")
categorical_crossentropy = _crossentropy_metric("categorical_crossentropy")
binary_crossentropy = _crossentropy_metric("binary_crossentropy")


def accuracy(y_true, y_pred) -> np.ndarray:
    """Keras's ``'accuracy'``: binary, sparse categorical or categorical by the shapes."""
    return _accuracy_for(np.shape(y_true), np.shape(y_pred))(y_true, y_pred)


def _accuracy_for(y_true_shape, y_pred_shape) -> MetricFn:
    if y_pred_shape[-1] == 1:
        return binary_accuracy
    sparse = len(y_true_shape) < len(y_pred_shape) or (
        y_true_shape[-1] == 1 and y_pred_shape[-1] > 1
    )
    return sparse_categorical_accuracy if sparse else categorical_accuracy


_FUNCTIONS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "binary_crossentropy": binary_crossentropy,
}
_CLASS_NAMES = {
    "Accuracy": "accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "CategoricalAccuracy": "categorical_accuracy",
    "BinaryAccuracy": "binary_accuracy",
    "MeanSquaredError": "mean_squared_error",
    "MeanAbsoluteError": "mean_absolute_error",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "BinaryCrossentropy": "binary_crossentropy",
}
NAMES = tuple(_FUNCTIONS)

# Whether a larger value is better ("up") -- used by EarlyStopping/ModelCheckpoint mode='auto'.
_UP = {accuracy, sparse_categorical_accuracy, categorical_accuracy, binary_accuracy}


def get(identifier) -> MetricFn:
    """The per-sample function for a metric name (case-insensitive) or Keras class name."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str):
        key = _CLASS_NAMES.get(identifier, identifier.lower())
        if key in _FUNCTIONS:
            return _FUNCTIONS[key]
    allowed = ", ".join(repr(n) for n in NAMES)
    raise ValueError(f"Unknown metric: {identifier!r}. Allowed names are: {allowed}.")


def resolve(
    identifier, loss_name: str | None = None, y_true_shape=None, y_pred_shape=None
) -> tuple[str, MetricFn]:
    """``(display_name, fn)`` for one entry of ``compile(metrics=[...])``.

    The display name is what Keras logs: the string as the user wrote it (``'acc'`` stays
    ``'acc'``), or a function's ``__name__``. ``'accuracy'``/``'acc'`` resolve from the
    shapes when they are given; otherwise the returned function applies the same rule to
    every batch it sees. ``loss_name`` is accepted for the trainer's convenience and does
    not change the result: Keras itself decides by shapes.
    """
    del loss_name
    fn = get(identifier)
    name = identifier if isinstance(identifier, str) else getattr(fn, "__name__", "metric")
    if fn is accuracy and y_true_shape is not None and y_pred_shape is not None:
        fn = _accuracy_for(tuple(y_true_shape), tuple(y_pred_shape))
    return name, fn


def direction(name: str, metrics_list=None) -> str | None:
    """``'up'`` if larger is better for the logged metric ``name`` (``val_``/``weighted_`` ignored),
    ``'down'`` if smaller is, None if unknown. ``metrics_list`` is the model's
    ``[(display_name, fn), ...]`` for names chosen by the user."""
    name = name.removeprefix("val_")
    if all(display_name != name for display_name, _ in metrics_list or []):
        name = name.removeprefix("weighted_")  # a weighted_metrics entry sharing a plain name
    if name == "loss":
        return "down"
    for display_name, fn in metrics_list or []:
        if display_name == name:
            return "up" if fn in _UP else "down" if fn in _FUNCTIONS.values() else None
    try:
        fn = get(name)
    except ValueError:
        return None
    return "up" if fn in _UP else "down"


__all__ = [
    "NAMES",
    "Mean",
    "accuracy",
    "binary_accuracy",
    "binary_crossentropy",
    "categorical_accuracy",
    "categorical_crossentropy",
    "direction",
    "get",
    "mean_absolute_error",
    "mean_squared_error",
    "resolve",
    "sparse_categorical_accuracy",
    "sparse_categorical_crossentropy",
]
