"""Losses by Keras name: each returns the mean loss and its gradient wrt the predictions.

The maths is in ``convlens.ops.losses``; this module resolves names and checks targets
before training starts. ``loss(y_true, y_pred, sample_weight)`` reduces as Keras 3's
default ``"sum_over_batch_size"``: ``sum(w * per_sample_loss) / N``.
"""

from __future__ import annotations

import numpy as np

from convlens.ops import losses as ops
from convlens.shapes import format_shape


class Loss:
    """A loss function with Keras's name and options."""

    fusable_with_softmax = False
    #: Whether targets are classes, so that ``fit(class_weight=...)`` means something.
    classification = True

    def __init__(self, name: str, from_logits: bool = False, **options):
        self.name = name
        self.from_logits = bool(from_logits)
        self.options = options

    def __call__(self, y_true, y_pred, sample_weight=None) -> tuple[float, np.ndarray]:
        return self._kernel(y_true, y_pred, sample_weight, "sum_over_batch_size")

    def per_sample(self, y_true, y_pred) -> np.ndarray:
        """One float32 loss per sample, shape ``(N,)`` (positions of a sample averaged)."""
        values, _ = self._kernel(y_true, y_pred, None, "none")
        values = np.asarray(values, np.float32)
        return values.reshape(len(values), -1).mean(axis=1) if values.ndim > 1 else values

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        raise NotImplementedError

    def check_targets(self, y, output_shape) -> None:
        """Raise before training if ``y`` cannot be the target of outputs ``output_shape``."""
        expected = tuple(output_shape[1:])
        if tuple(np.shape(y)[1:]) != expected:
            raise ValueError(
                f"Loss '{self.name}': targets of shape {format_shape(np.shape(y))} do not match "
                f"the model's output shape {format_shape(output_shape)}."
            )

    def get_config(self) -> dict:
        return {"name": self.name, "from_logits": self.from_logits, **self.options}


class SparseCategoricalCrossentropy(Loss):
    """Integer class labels ``(N,)`` against probabilities (or logits) ``(N, classes)``."""

    def __init__(self, from_logits=False, name="sparse_categorical_crossentropy"):
        super().__init__(name, from_logits)
        self.fusable_with_softmax = not self.from_logits

    def check_targets(self, y, output_shape) -> None:
        y = np.asarray(y)
        if y.ndim == len(output_shape) and y.shape[-1] == 1:
            y = y[..., 0]
        if y.shape[1:] != tuple(output_shape[1:-1]):
            raise ValueError(
                f"Loss '{self.name}' expects integer labels of shape (N,) for outputs of shape "
                f"{format_shape(output_shape)}; received labels of shape {format_shape(y.shape)}."
                " For one-hot labels use loss='categorical_crossentropy'."
            )
        ops.check_sparse_labels(y, output_shape[-1])

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        return ops.sparse_categorical_crossentropy(_squeeze(y_true), y_pred, self.from_logits,
                                                   sample_weight, reduction)

    def from_logits_fused(self, y_true, logits, sample_weight=None):
        return ops.softmax_crossentropy_from_logits(_squeeze(y_true), logits, sparse=True,
                                                    sample_weight=sample_weight)


class CategoricalCrossentropy(Loss):
    """One-hot (or soft) labels ``(N, classes)`` against probabilities (or logits)."""

    def __init__(self, from_logits=False, label_smoothing=0.0,
                 name="categorical_crossentropy"):
        super().__init__(name, from_logits, label_smoothing=float(label_smoothing))
        self.fusable_with_softmax = not self.from_logits and not label_smoothing

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        return ops.categorical_crossentropy(
            np.asarray(y_true, np.float32), y_pred, self.from_logits,
            self.options["label_smoothing"], sample_weight, reduction,
        )

    def from_logits_fused(self, y_true, logits, sample_weight=None):
        return ops.softmax_crossentropy_from_logits(
            np.asarray(y_true, np.float32), logits, sparse=False, sample_weight=sample_weight
        )


class BinaryCrossentropy(Loss):
    def __init__(self, from_logits=False, name="binary_crossentropy"):
        super().__init__(name, from_logits)

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        return ops.binary_crossentropy(np.asarray(y_true, np.float32), y_pred, self.from_logits,
                                       sample_weight=sample_weight, reduction=reduction)


class MeanSquaredError(Loss):
    classification = False

    def __init__(self, name="mean_squared_error"):
        super().__init__(name)

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        return ops.mean_squared_error(np.asarray(y_true, np.float32), y_pred, sample_weight,
                                      reduction)


class MeanAbsoluteError(Loss):
    classification = False

    def __init__(self, name="mean_absolute_error"):
        super().__init__(name)

    def _kernel(self, y_true, y_pred, sample_weight, reduction):
        return ops.mean_absolute_error(np.asarray(y_true, np.float32), y_pred, sample_weight,
                                       reduction)


def _squeeze(y):
    y = np.asarray(y)
    return y[..., 0] if y.ndim == 2 and y.shape[-1] == 1 else y


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}
NAMES = tuple(_BY_NAME)
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}


def get(identifier) -> Loss:
    """A loss from a Keras name, a class name, or a Loss object."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in _BY_NAME:
            return _BY_NAME[identifier.lower()]()
        if identifier in _BY_CLASS:
            return _BY_CLASS[identifier]()
    raise ValueError(
        f"Unknown loss: {identifier!r}. Allowed names: {', '.join(NAMES)}; or pass a "
        "convlens.losses.Loss object such as SparseCategoricalCrossentropy(from_logits=True)."
    )
