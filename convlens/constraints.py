"""Weight constraints with Keras 3's names: ``MaxNorm``, ``NonNeg``, ``UnitNorm``,
``MinMaxNorm`` (``max_norm``, ``non_neg``, ``unit_norm``, ``min_max_norm``).

A constraint maps a weight to the projected weight; the optimizer applies it after each step
(the maths is in :mod:`convlens.ops.regularization`).

>>> import numpy as np
>>> NonNeg()(np.array([-1.0, 2.0], np.float32))
array([0., 2.], dtype=float32)
"""

from __future__ import annotations

import numbers

import numpy as np

from convlens.keras_objects import KerasObject, get_object, serialize_object
from convlens.ops import regularization as ops

__all__ = [
    "Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "max_norm", "non_neg",
    "unit_norm", "min_max_norm", "get", "serialize",
]  # fmt: skip


def _number(value, name: str):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a number >= 0; "
                         f"received {name}={value!r}.")
    return value


def _axis(axis):
    items = axis if isinstance(axis, (list, tuple)) else [axis]
    if not items or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                        for a in items):
        raise ValueError(f"Invalid value for argument axis: expected an int or a list of ints "
                         f"(the axes of each norm); received axis={axis!r}.")
    return list(axis) if isinstance(axis, (list, tuple)) else int(axis)


class Constraint(KerasObject):
    """``w_projected = constraint(w)``."""

    def __call__(self, w) -> np.ndarray:
        return np.asarray(w)


class MaxNorm(Constraint):
    """Vectors along ``axis`` longer than ``max_value`` are scaled down to it."""

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = _number(max_value, "max_value"), _axis(axis)

    def __call__(self, w):
        return ops.max_norm(w, self.max_value, self.axis)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Negative weights become 0."""

    def __call__(self, w):
        return ops.non_neg(w)


class UnitNorm(Constraint):
    """Vectors along ``axis`` are scaled to norm 1."""

    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        return ops.unit_norm(w, self.axis)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """The norm of vectors along ``axis`` moves ``rate`` of the way into [min, max]."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value = _number(min_value, "min_value"), _number(
            max_value, "max_value")
        self.rate, self.axis = _number(rate, "rate"), _axis(axis)

    def __call__(self, w):
        return ops.min_max_norm(w, self.min_value, self.max_value, self.rate, self.axis)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_BY_NAME = {
    "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm,
    "MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm,
}


def get(identifier) -> Constraint | None:
    """A constraint from None, a name, a Keras config dict or an instance."""
    return get_object(identifier, Constraint, _BY_NAME, "constraint", "convlens.constraints")


def serialize(constraint: Constraint | None) -> dict | None:
    """The dict Keras writes in a layer's config (``None`` stays ``None``)."""
    return serialize_object(constraint, "keras.constraints")
