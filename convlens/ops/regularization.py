"""Weight penalties (regularizers) and weight projections (constraints), as Keras 3 defines them.

Regularizers add a penalty to the loss; each has its value and its gradient here:

* ``l1_l2_penalty(w, l1, l2) = l1 * sum(|w|) + l2 * sum(w^2)`` (``L1`` is ``l2 = 0``, ``L2`` is
  ``l1 = 0``); its gradient is ``l1 * sign(w) + 2 * l2 * w``, with ``sign(0) = 0`` as in PyTorch.

Constraints are applied to a weight after each optimizer step (they have no gradient). Norms
run over ``axis`` (Keras's default ``0``: for a ``Dense`` kernel ``(in, units)`` that is each
unit's incoming weights; pass ``[0, 1, 2]`` for a ``Conv2D`` kernel ``(kh, kw, in, filters)``),
and divide by ``norm + 1e-7`` (Keras's ``backend.epsilon()``) so a zero vector stays zero:

* ``max_norm``: rescale vectors whose norm exceeds ``max_value`` to norm ``max_value``;
* ``non_neg``: ``maximum(w, 0)``;
* ``unit_norm``: every vector to norm 1;
* ``min_max_norm``: the norm moves ``rate`` of the way into ``[min_value, max_value]``.

>>> import numpy as np
>>> w = np.array([[3.0, 0.5], [4.0, 0.0]], np.float32)
>>> float(l1_l2_penalty(w, l1=0.1))
0.75
>>> np.round(max_norm(w, max_value=2.0), 3)
array([[1.2, 0.5],
       [1.6, 0. ]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "KERAS_EPSILON", "l1_l2_penalty", "l1_l2_gradient", "max_norm", "non_neg", "unit_norm",
    "min_max_norm",
]  # fmt: skip

#: ``keras.backend.epsilon()``, added to every norm a constraint divides by.
KERAS_EPSILON = 1e-7

Axis = int | Sequence[int]


def _float(w) -> np.ndarray:
    w = np.asarray(w)
    return w if w.dtype in (np.float32, np.float64) else w.astype(np.float32)


# --------------------------------------------------------------------------------------------
# regularizers: a penalty and its gradient
# --------------------------------------------------------------------------------------------


def l1_l2_penalty(w, l1: float = 0.0, l2: float = 0.0) -> np.ndarray:
    """``l1 * sum(|w|) + l2 * sum(w^2)``, a scalar in ``w``'s float dtype."""
    w = _float(w)
    penalty = w.dtype.type(0.0)
    if l1:
        penalty += w.dtype.type(l1) * np.abs(w).sum()
    if l2:
        penalty += w.dtype.type(l2) * np.square(w).sum()
    return np.asarray(penalty, w.dtype)


def l1_l2_gradient(w, l1: float = 0.0, l2: float = 0.0) -> np.ndarray:
    """d penalty / d w: ``l1 * sign(w) + 2 * l2 * w``, shaped like ``w``."""
    w = _float(w)
    grad = np.zeros_like(w)
    if l1:
        grad += w.dtype.type(l1) * np.sign(w)
    if l2:
        grad += w.dtype.type(2 * l2) * w
    return grad


# --------------------------------------------------------------------------------------------
# constraints: projections applied after an optimizer step
# --------------------------------------------------------------------------------------------


def _norms(w: np.ndarray, axis: Axis) -> np.ndarray:
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return np.sqrt(np.square(w).sum(axis=axis, keepdims=True))


def _rescale(w: np.ndarray, norms: np.ndarray, desired: np.ndarray) -> np.ndarray:
    return w * (desired / (w.dtype.type(KERAS_EPSILON) + norms))


def max_norm(w, max_value: float = 2.0, axis: Axis = 0) -> np.ndarray:
    """Vectors along ``axis`` whose norm exceeds ``max_value`` are scaled down to it."""
    w = _float(w)
    norms = _norms(w, axis)
    return _rescale(w, norms, np.clip(norms, 0, w.dtype.type(max_value)))


def non_neg(w) -> np.ndarray:
    """Negative weights become 0."""
    w = _float(w)
    return np.maximum(w, w.dtype.type(0.0))


def unit_norm(w, axis: Axis = 0) -> np.ndarray:
    """Every vector along ``axis`` is scaled to norm 1 (a zero vector stays zero)."""
    w = _float(w)
    return w / (w.dtype.type(KERAS_EPSILON) + _norms(w, axis))


def min_max_norm(
    w, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0
) -> np.ndarray:
    """The norm of each vector moves ``rate`` of the way into ``[min_value, max_value]``."""
    w = _float(w)
    norms = _norms(w, axis)
    clipped = np.clip(norms, w.dtype.type(min_value), w.dtype.type(max_value))
    desired = w.dtype.type(rate) * clipped + w.dtype.type(1 - rate) * norms
    return _rescale(w, norms, desired)
