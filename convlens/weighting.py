"""Weights a user gives fit/evaluate/compile, checked and turned into Keras's meaning.

- ``sample_weight``: one number >= 0 per sample, ``(N,)`` (or ``(N, 1)``).
- ``class_weight``: ``{class: weight}``, turned into per-sample weights as Keras's
  ``class_weight_to_sample_weights`` does; classes missing from the dict weigh 1.
- ``loss_weights``: a Sequential model has one output, so one number (or a list, tuple or
  dict holding one), multiplied into the loss.

Keras accepts negative and NaN weights silently; convlens refuses them before training.
"""

from __future__ import annotations

import numpy as np


def check_sample_weight(sample_weight, n: int, what: str, name: str = "sample_weight"):
    """One finite weight >= 0 per sample as float32 ``(N,)``, or None."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(
            f"{what}(): `{name}` must hold numbers, one weight per sample; received dtype "
            f"{weights.dtype}."
        )
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]  # (N, 1) -> (N,), as Keras accepts
    if weights.ndim != 1:
        raise ValueError(
            f"{what}(): `{name}` must be a 1D array with one weight per sample, shape ({n},); "
            f"received shape {weights.shape}. (Per-timestep weights are not supported.)"
        )
    if len(weights) != n:
        raise ValueError(
            f"{what}(): x and `{name}` must have the same number of samples; received x with "
            f"{n} and {name} with {len(weights)}."
        )
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if bad.size:
        shown = ", ".join(f"{weights[i].item()!r} at position {i}" for i in bad[:5])
        raise ValueError(
            f"{what}(): `{name}` must be finite numbers >= 0; {bad.size} are not: {shown}."
        )
    return weights.astype(np.float32)


def class_weight_to_sample_weight(class_weight, y: np.ndarray, model) -> np.ndarray:
    """Per-sample weights from ``{class: weight}``, as Keras's class_weight_to_sample_weights:
    the class of a sample is its integer label, the argmax of a one-hot row, or the rounded
    value of a single binary target; classes missing from the dict weigh 1."""
    if not isinstance(class_weight, dict):
        raise TypeError(
            "`class_weight` must be a dict mapping class index to weight, e.g. "
            f"{{0: 1.0, 1: 5.0}}; received {type(class_weight).__name__}."
        )
    if not model.loss.classification:
        raise ValueError(
            f"`class_weight` needs class targets, but the loss '{model.loss.name}' is a "
            "regression loss; pass per-sample weights with `sample_weight` instead."
        )
    units = model.output_shape[-1]
    num_classes = 2 if units == 1 else units
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not (
            0 <= key < num_classes
        ):
            raise ValueError(
                f"`class_weight` keys must be class indices 0 to {num_classes - 1} (the model "
                f"has {num_classes} classes); received key {key!r}."
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer,
                                                               np.floating)):
            raise TypeError(f"`class_weight[{key!r}]` must be a number; received {weight!r}.")
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"`class_weight[{key!r}]` must be finite and >= 0; got {weight!r}.")
    classes = np.asarray(y)
    if classes.ndim > 1:
        classes = classes[..., 0] if classes.shape[-1] == 1 else np.argmax(classes, axis=-1)
    if classes.ndim != 1:
        raise ValueError(
            "`class_weight` needs one class per sample; the targets have shape "
            f"{np.shape(y)}. Pass `sample_weight` instead."
        )
    classes = np.round(classes).astype(np.int64)
    table = np.ones(num_classes, np.float32)
    for key, weight in class_weight.items():
        table[int(key)] = weight
    return table[classes]


def check_loss_weights(loss_weights) -> float | None:
    """The single output's loss weight: a number, or a list/tuple/dict holding one number."""
    if loss_weights is None:
        return None
    if isinstance(loss_weights, dict):
        values = list(loss_weights.values())
    elif isinstance(loss_weights, (list, tuple)):
        values = list(loss_weights)
    else:
        values = [loss_weights]
    if len(values) != 1:
        raise ValueError(
            "`loss_weights` must match the number of losses: a Sequential model has one "
            f"output and one loss, so give one number (e.g. loss_weights=0.5); received "
            f"{loss_weights!r}."
        )
    weight = values[0]
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
        raise TypeError(f"`loss_weights` must be a number; received {loss_weights!r}.")
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(
            f"`loss_weights` must be a finite number >= 0; received {loss_weights!r}."
        )
    return float(weight)

