"""A weight: a float32 NumPy array with a name, a trainable flag and a gradient slot."""

from __future__ import annotations

import numpy as np


class Variable:
    """One weight of a layer, shaped and named as Keras names it (``conv2d/kernel``).

    ``value`` is the array the engine reads; ``grad`` is filled by the layer's
    backward pass and consumed by an optimizer. ``regularizer`` (a penalty added to the loss)
    and ``constraint`` (a projection after each optimizer step) are Keras's, or None.
    """

    def __init__(self, value: np.ndarray, name: str, path: str, trainable: bool = True,
                 regularizer=None, constraint=None):
        # not ascontiguousarray: that one turns a scalar weight (a count) into shape (1,)
        self.value = np.asarray(value, dtype=np.float32, order="C")
        self.name = name
        self.path = path
        self.trainable = trainable
        self.grad: np.ndarray | None = None
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> str:
        return "float32"

    @property
    def size(self) -> int:
        return int(self.value.size)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value) -> None:
        array = np.asarray(value, dtype=np.float32)
        if array.shape != self.value.shape:
            raise ValueError(
                f"Cannot assign a value of shape {array.shape} to variable '{self.path}' "
                f"of shape {self.value.shape}."
            )
        self.value[...] = array

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"
