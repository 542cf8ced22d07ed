"""Activation functions by Keras name; each knows its own gradient (see ``ops/activations.py``).

>>> import numpy as np
>>> get("relu")(np.array([-1.0, 2.0], dtype="float32"))
array([0., 2.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from convlens.ops import activations as ops


class Activation:
    """A named activation: ``forward(x)`` and ``backward(x, y, grad_y)``.

    ``options`` are the keyword arguments Keras's function of that name takes (``LeakyReLU``'s
    ``negative_slope``, ``ELU``'s ``alpha``); a layer that has them serializes them itself.
    """

    def __init__(self, name: str, fn: Callable | None = None, options: dict | None = None):
        self.name = name
        self._fn = fn
        self.options = dict(options or {})
        self.__name__ = name

    @property
    def is_custom(self) -> bool:
        """True for a Python callable rather than one of the named activations."""
        return self._fn is not None

    @property
    def is_linear(self) -> bool:
        return self._fn is None and self.name == "linear"

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float32)
        if self._fn is not None:
            return np.asarray(self._fn(x), dtype=np.float32)
        return ops.activation_forward(self.name, x, **self.options)

    def backward(self, x: np.ndarray, y: np.ndarray, grad_y: np.ndarray) -> np.ndarray:
        if self._fn is not None:
            raise ValueError(
                f"The custom activation {self.name!r} has no gradient in convlens; training "
                f"needs a named activation, one of: {', '.join(ops.NAMES)}."
            )
        return ops.activation_backward(self.name, x, y, grad_y, **self.options)

    def __repr__(self) -> str:
        return f"<activation {self.name}>"


def get(identifier) -> Activation:
    """An activation from a Keras name, None (linear), or a callable."""
    if identifier is None:
        return Activation("linear")
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ops.NAMES:
            return Activation(key)
        raise ValueError(
            f"Unknown activation: {identifier!r}. Allowed names: {', '.join(ops.NAMES)}; "
            "or pass a callable."
        )
    if isinstance(identifier, dict) and "config" in identifier:
        return get(identifier["config"])
    if callable(identifier):
        name = getattr(identifier, "__name__", "custom")
        if name in ops.NAMES and getattr(identifier, "__module__", "") == __name__:
            return Activation(name)
        return Activation(name, identifier)
    raise TypeError(
        f"`activation` must be a name, a callable or None; received {identifier!r} "
        f"of type {type(identifier).__name__}."
    )


def serialize(activation: Activation) -> str:
    return activation.name


def _make(name: str):
    def fn(x):
        return ops.activation_forward(name, np.asarray(x, dtype=np.float32))

    fn.__name__ = name
    return fn


relu = _make("relu")
sigmoid = _make("sigmoid")
softmax = _make("softmax")
tanh = _make("tanh")
linear = _make("linear")
