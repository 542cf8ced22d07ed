"""Loss kernels with Keras semantics: each returns ``(loss, grad_pred)``.

``loss`` is a Python float: Keras's default reduction ``sum_over_batch_size``, i.e. the mean
over every per-sample loss (every leading position for a ``(N, ..., classes)`` output; for
MSE, MAE and binary crossentropy the per-sample loss is itself the mean over the last axis, so
the result is the mean over all elements). ``grad_pred`` is ``d loss / d y_pred``, same shape
and float dtype as ``y_pred``.

**Sample weights** (``sample_weight``, one non-negative number per sample, shape ``(N,)``)
follow Keras's ``reduce_weighted_values``: every per-sample loss is multiplied by its weight
and the sum is divided by the *number* of per-sample losses, not by the sum of the weights
(``sum(w * loss) / N``); the gradient of each sample is scaled by its weight. For outputs
with more than one leading axis, ``(N, ..., classes)``, every position of a sample takes that
sample's weight. ``reduction="none"`` returns the weighted per-sample losses (Keras's
``call`` output, shape ``y_pred.shape[:-1]``) and the gradient of their sum.

Probabilities (``from_logits=False``) are treated exactly as Keras does on its torch backend:
categorical outputs are first divided by their sum over the class axis, then clipped to
``[1e-7, 1 - 1e-7]`` before the log; the gradient is zero where the clip is active.

**Fused softmax + crossentropy.** When the last layer is a softmax and the loss is
(sparse_)categorical_crossentropy on probabilities, the model passes the *logits* to
:func:`softmax_crossentropy_from_logits`, whose gradient ``(softmax - onehot) / M`` skips the
softmax backward and never divides by a tiny probability. Its loss uses log-sum-exp and is not
clipped: it equals the clipped Keras value except for samples whose target probability is below
1e-7 (loss above 16.12), where Keras's clipped loss stops growing and its gradient is zero.
Keras's TensorFlow backend makes the same substitution.

>>> import numpy as np
>>> loss, grad = softmax_crossentropy_from_logits(np.array([0]), np.zeros((1, 2)), sparse=True)
>>> round(loss, 4), grad.tolist()
(0.6931, [[-0.5, 0.5]])
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EPSILON",
    "check_sparse_labels",
    "softmax_crossentropy_from_logits",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
]

#: Keras's ``backend.epsilon()``: probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7
_MAX_REPORTED = 5  # bad labels quoted in an error message


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _prediction(y_pred) -> np.ndarray:
    """float64 stays float64 (finite-difference checks); everything else becomes float32."""
    y_pred = np.asarray(y_pred)
    if y_pred.dtype not in (np.float32, np.float64):
        y_pred = y_pred.astype(np.float32)
    if y_pred.ndim < 1:
        raise ValueError(f"Predictions must have at least one axis; received a scalar {y_pred}.")
    return y_pred


def _same_rank(y_true, y_pred: np.ndarray, name: str) -> np.ndarray:
    """Targets in ``y_pred``'s shape and dtype; a trailing axis of 1 may be added or dropped."""
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]  # (N, ...) -> (N, ..., 1)
    elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]  # (N, ..., 1) -> (N, ...)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{name}: targets of shape {y_true.shape} do not match predictions of shape "
            f"{y_pred.shape}; they must have the same shape."
        )
    return y_true.astype(y_pred.dtype, copy=False)


def _clip_bounds(dtype) -> tuple:
    """[EPSILON, 1 - EPSILON] rounded to ``dtype``, as torch.clip rounds its scalar bounds."""
    return dtype.type(EPSILON), dtype.type(1.0 - EPSILON)


def _smooth(y_true: np.ndarray, label_smoothing: float, classes: float) -> np.ndarray:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1]; received {label_smoothing}.")
    if not label_smoothing:
        return y_true
    return y_true * y_true.dtype.type(1.0 - label_smoothing) + y_true.dtype.type(
        label_smoothing / classes
    )


def _format_position(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(index)


def check_sparse_labels(labels, num_classes: int) -> np.ndarray:
    """Integer class labels in ``[0, num_classes)`` as an ``intp`` array, else ``ValueError``.

    Floats are accepted when they hold whole numbers (Keras casts them to int).

    >>> check_sparse_labels([0, 2.0], 3)
    array([0, 2])
    """
    labels = np.asarray(labels)
    kind = labels.dtype.kind
    if kind in "iub":
        ints = labels.astype(np.intp, copy=False)
    elif kind == "f":
        not_whole = ~np.isfinite(labels) | (labels != np.floor(labels))
        if not_whole.any():
            raise ValueError(_bad_label_message(labels, not_whole, num_classes, "whole numbers"))
        ints = labels.astype(np.intp)
    else:
        raise TypeError(
            f"Sparse labels must be integers in [0, {num_classes}); received an array of "
            f"dtype {labels.dtype}."
        )
    if ints.size:
        out_of_range = (ints < 0) | (ints >= num_classes)
        if out_of_range.any():
            raise ValueError(_bad_label_message(ints, out_of_range, num_classes, "in range"))
    return ints


def _bad_label_message(labels: np.ndarray, bad: np.ndarray, num_classes: int, what: str) -> str:
    positions = [tuple(int(i) for i in p) for p in np.argwhere(bad)]
    shown = ", ".join(
        f"{labels[p].item()!r} at position {_format_position(p)}" for p in positions[:_MAX_REPORTED]
    )
    more = f" (and {len(positions) - _MAX_REPORTED} more)" if len(positions) > _MAX_REPORTED else ""
    problem = "not whole numbers" if what == "whole numbers" else "out of range"
    return (
        f"Sparse labels must be integers in [0, {num_classes}) for {num_classes} classes "
        f"(0 to {num_classes - 1}); {len(positions)} label(s) {problem}: {shown}{more}. "
        "Check that the last layer has one unit per class, or use "
        "loss='categorical_crossentropy' for one-hot labels."
    )


def _sparse_targets(y_true, y_pred: np.ndarray) -> np.ndarray:
    """Labels of shape ``y_pred.shape[:-1]`` (a trailing axis of 1 is dropped), validated."""
    labels = np.asarray(y_true)
    if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]  # (N, ..., 1) -> (N, ...)
    if labels.shape != y_pred.shape[:-1]:
        raise ValueError(
            f"sparse_categorical_crossentropy: labels of shape {labels.shape} do not match "
            f"predictions of shape {y_pred.shape}; expected labels of shape "
            f"{y_pred.shape[:-1]} (one class index per prediction row)."
        )
    return check_sparse_labels(labels, y_pred.shape[-1])


def _weights_for(sample_weight, values: np.ndarray):
    """``sample_weight`` as ``(N, 1, ...)`` to broadcast over ``values`` ``(N, ...)``."""
    weights = np.asarray(sample_weight, dtype=values.dtype)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]  # (N, 1) -> (N,), as Keras squeezes it
    if weights.ndim != 1 or len(weights) != len(values):
        raise ValueError(
            f"sample_weight must have one weight per sample, shape ({len(values)},); "
            f"received shape {weights.shape}."
        )
    return weights.reshape((-1,) + (1,) * (values.ndim - 1))


def _reduce(values, grad, sample_weight=None, reduction: str = "sum_over_batch_size"):
    """Keras's ``reduce_weighted_values``: ``values`` are the per-sample losses (N, ...),
    ``grad`` is ``d sum(values) / d y_pred``; both are weighted, then divided by
    ``values.size`` for ``sum_over_batch_size``."""
    if reduction not in ("sum_over_batch_size", "none"):
        raise ValueError(
            f"`reduction` must be 'sum_over_batch_size' or 'none'; received {reduction!r}."
        )
    if sample_weight is not None:
        weights = _weights_for(sample_weight, values)
        values = values * weights
        grad *= weights.reshape((-1,) + (1,) * (grad.ndim - 1))
    if reduction == "none":
        return values, grad
    count = max(values.size, 1)
    grad *= grad.dtype.type(1.0 / count)
    return float(np.sum(values, dtype=np.float64) / count), grad


# --------------------------------------------------------------------------------------------
# crossentropy on logits (fused with softmax)
# --------------------------------------------------------------------------------------------


def softmax_crossentropy_from_logits(y_true, logits, sparse: bool, label_smoothing: float = 0.0,
                                     sample_weight=None, reduction="sum_over_batch_size"):
    """Crossentropy of ``softmax(logits)``: ``(loss, w (softmax * sum(t) - t) / M)``.

    ``sparse=True``: ``y_true`` holds class indices of shape ``logits.shape[:-1]``; otherwise
    one-hot (or soft) targets of ``logits``' shape. ``M`` is the number of prediction rows,
    ``w`` each row's sample weight (1 without ``sample_weight``).
    """
    logits = _prediction(logits)
    classes = logits.shape[-1]
    rows = logits.reshape(-1, classes)  # (M, C)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (M, 1) log-sum-exp
    log_probs = shifted - log_norm  # (M, C)
    grad = np.exp(log_probs)  # softmax, (M, C)
    m = rows.shape[0]
    if sparse:
        if label_smoothing:
            raise ValueError("label_smoothing needs one-hot targets; use sparse=False.")
        labels = _sparse_targets(y_true, logits).reshape(-1)  # (M,)
        picked = np.arange(m)
        per_row = -log_probs[picked, labels]
        grad[picked, labels] -= 1
    else:
        targets = _same_rank(y_true, logits, "categorical_crossentropy").reshape(-1, classes)
        targets = _smooth(targets, label_smoothing, classes)  # (M, C)
        per_row = -(targets * log_probs).sum(axis=-1)
        grad *= targets.sum(axis=-1, keepdims=True)
        grad -= targets
    return _reduce(per_row.reshape(logits.shape[:-1]), grad.reshape(logits.shape), sample_weight,
                   reduction)


# --------------------------------------------------------------------------------------------
# crossentropy on probabilities
# --------------------------------------------------------------------------------------------


def _normalised(y_pred: np.ndarray):
    """``q = p / sum(p)`` over the class axis and its clip, as Keras does before the log."""
    total = y_pred.sum(axis=-1, keepdims=True)  # (M, 1)
    q = y_pred / total
    lo, hi = _clip_bounds(y_pred.dtype)
    return total, q, np.clip(q, lo, hi), (q >= lo) & (q <= hi)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False,
                                    sample_weight=None, reduction="sum_over_batch_size"):
    """Class indices ``(N, ...)`` against probabilities or logits ``(N, ..., classes)``."""
    y_pred = _prediction(y_pred)
    if from_logits:
        return softmax_crossentropy_from_logits(y_true, y_pred, True, 0.0, sample_weight,
                                                reduction)
    classes = y_pred.shape[-1]
    labels = _sparse_targets(y_true, y_pred).reshape(-1)  # (M,)
    rows = y_pred.reshape(-1, classes)  # (M, C)
    picked = np.arange(rows.shape[0])
    total, q, q_clipped, passes = _normalised(rows)
    per_row = -np.log(q_clipped[picked, labels])
    # dL/dq_t = -1/q_t (zero where clipped); through q = p / sum(p): (dL/dq_t) (onehot - q_t) / S
    grad_q_target = -1 / q_clipped[picked, labels] * passes[picked, labels]  # (M,)
    grad = np.empty_like(rows)  # (M, C)
    grad[...] = (-grad_q_target * q[picked, labels])[:, None]
    grad[picked, labels] += grad_q_target
    grad /= total
    return _reduce(per_row.reshape(y_pred.shape[:-1]), grad.reshape(y_pred.shape), sample_weight,
                   reduction)


def categorical_crossentropy(
    y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
    sample_weight=None, reduction="sum_over_batch_size",
):
    """One-hot (or soft) targets against probabilities or logits, both ``(N, ..., classes)``.

    ``label_smoothing`` replaces ``t`` with ``t * (1 - s) + s / classes``, as Keras does.
    """
    y_pred = _prediction(y_pred)
    if from_logits:
        return softmax_crossentropy_from_logits(y_true, y_pred, False, label_smoothing,
                                                sample_weight, reduction)
    classes = y_pred.shape[-1]
    targets = _same_rank(y_true, y_pred, "categorical_crossentropy").reshape(-1, classes)
    targets = _smooth(targets, label_smoothing, classes)  # (M, C)
    rows = y_pred.reshape(-1, classes)  # (M, C)
    total, q, q_clipped, passes = _normalised(rows)
    per_row = -(targets * np.log(q_clipped)).sum(axis=-1)
    grad_q = -targets * passes / q_clipped  # (M, C), zero where clipped
    # through q = p / S: dL/dp_j = (dL/dq_j - sum_c dL/dq_c q_c) / S
    grad = (grad_q - (grad_q * q).sum(axis=-1, keepdims=True)) / total
    return _reduce(per_row.reshape(y_pred.shape[:-1]), grad.reshape(y_pred.shape), sample_weight,
                   reduction)


def _last_axis_mean(per_element: np.ndarray, grad: np.ndarray, sample_weight, reduction):
    """Elementwise losses: Keras's per-sample loss is the mean over the last axis."""
    if per_element.ndim > 1:
        grad *= grad.dtype.type(1.0 / per_element.shape[-1])
        per_element = per_element.mean(axis=-1)
    return _reduce(per_element, grad, sample_weight, reduction)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
                        sample_weight=None, reduction="sum_over_batch_size"):
    """Independent 0/1 targets per output unit; the mean over all elements.

    ``label_smoothing`` replaces ``t`` with ``t * (1 - s) + s / 2``, as Keras does.
    """
    y_pred = _prediction(y_pred)
    targets = _smooth(_same_rank(y_true, y_pred, "binary_crossentropy"), label_smoothing, 2.0)
    if from_logits:
        # log(1 + e^-|x|) + max(x, 0) - x t: stable for any x
        per_element = np.maximum(y_pred, 0) - y_pred * targets + np.log1p(np.exp(-np.abs(y_pred)))
        exp_neg = np.exp(-np.abs(y_pred))
        sigmoid = np.where(y_pred >= 0, 1 / (1 + exp_neg), exp_neg / (1 + exp_neg))
        grad = sigmoid - targets
    else:
        lo, hi = _clip_bounds(y_pred.dtype)
        p = np.clip(y_pred, lo, hi)
        per_element = -(targets * np.log(p) + (1 - targets) * np.log1p(-p))
        passes = (y_pred >= lo) & (y_pred <= hi)
        grad = (p - targets) / (p * (1 - p)) * passes
    return _last_axis_mean(per_element, grad.astype(y_pred.dtype, copy=False), sample_weight,
                           reduction)


# --------------------------------------------------------------------------------------------
# regression
# --------------------------------------------------------------------------------------------


def mean_squared_error(y_true, y_pred, sample_weight=None, reduction="sum_over_batch_size"):
    """``mean((y_pred - y_true)^2)``; gradient ``2 (y_pred - y_true) / size``."""
    y_pred = _prediction(y_pred)
    diff = y_pred - _same_rank(y_true, y_pred, "mean_squared_error")
    squared = np.square(diff)
    diff *= y_pred.dtype.type(2.0)
    return _last_axis_mean(squared, diff, sample_weight, reduction)


def mean_absolute_error(y_true, y_pred, sample_weight=None, reduction="sum_over_batch_size"):
    """``mean(|y_pred - y_true|)``; gradient ``sign(y_pred - y_true) / size`` (0 where equal)."""
    y_pred = _prediction(y_pred)
    diff = y_pred - _same_rank(y_true, y_pred, "mean_absolute_error")
    return _last_axis_mean(np.abs(diff), np.sign(diff), sample_weight, reduction)
