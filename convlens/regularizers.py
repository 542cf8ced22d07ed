"""Weight regularizers with Keras 3's names: ``L1``, ``L2``, ``L1L2`` (``l1``, ``l2``, ``l1_l2``).

A regularizer is called on a weight and returns the penalty added to the loss; ``gradient``
gives its derivative (the maths is in :mod:`convlens.ops.regularization`). ``get`` accepts what
Keras accepts: ``None``, a name (``"l1"``, ``"l2"``, ``"l1l2"``, the class names), a Keras
config dict, or an instance.

A layer holds them as Keras does (``kernel_regularizer=`` puts one on the kernel variable,
``activity_regularizer=`` on the layer's output); ``model_losses`` lists a model's penalties
(``model.losses``) and ``penalty`` is what training adds to the loss.

>>> import numpy as np
>>> L2(0.5)(np.array([1.0, -2.0], np.float32))
array(2.5, dtype=float32)
>>> get("l2").get_config()
{'l2': 0.01}
"""

from __future__ import annotations

import numbers

import numpy as np

from convlens.keras_objects import KerasObject, get_object, serialize_object
from convlens.ops import regularization as ops

__all__ = [
    "Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize",
    "weight_penalties", "model_losses", "penalty",
]  # fmt: skip


def _strength(value, name: str, default: float) -> float:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a float >= 0; "
                         f"received {name}={value!r}.")
    return float(value)


class Regularizer(KerasObject):
    """A penalty on one weight: ``penalty = regularizer(w)``, ``regularizer.gradient(w)``."""

    l1 = 0.0
    l2 = 0.0

    def __call__(self, w) -> np.ndarray:
        return ops.l1_l2_penalty(w, self.l1, self.l2)

    def gradient(self, w) -> np.ndarray:
        return ops.l1_l2_gradient(w, self.l1, self.l2)

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w^2)`` (both 0 by default)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _strength(l1, "l1", 0.0)
        self.l2 = _strength(l2, "l2", 0.0)


class L1(Regularizer):
    """``l1 * sum(|w|)`` (``l1=0.01`` by default)."""

    def __init__(self, l1=0.01):
        # Keras keeps L1's strength as a float32 tensor, so its config says 0.009999999776...
        self.l1 = float(np.float32(_strength(l1, "l1", 0.01)))

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w^2)`` (``l2=0.01`` by default)."""

    def __init__(self, l2=0.01):
        self.l2 = _strength(l2, "l2", 0.01)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2  # Keras's lower-case names for the same classes

_BY_NAME = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier) -> Regularizer | None:
    """A regularizer from None, a name, a Keras config dict or an instance."""
    return get_object(identifier, Regularizer, _BY_NAME, "regularizer", "convlens.regularizers")


def serialize(regularizer: Regularizer | None) -> dict | None:
    """The dict Keras writes in a layer's config (``None`` stays ``None``)."""
    return serialize_object(regularizer, "keras.regularizers")


def weight_penalties(variables) -> list[np.ndarray]:
    """The penalty of each variable that has a regularizer, in order."""
    return [variable.regularizer(variable.value) for variable in variables
            if variable.regularizer is not None]


def model_losses(model) -> list[np.ndarray]:
    """Keras's ``model.losses``: the activity penalty of each layer's last call (divided by its
    batch size), then the penalty of each trainable weight that has a regularizer."""
    activity = [layer.activity_loss for layer in _every_layer(model)
                if layer.activity_regularizer is not None and layer.activity_loss is not None]
    return activity + weight_penalties(model.trainable_weights)


def _every_layer(model):
    """The model's layers, and the layers of the models nested in it, depth first."""
    for layer in model.layers:
        yield layer
        if isinstance(getattr(layer, "layers", None), list):
            yield from _every_layer(layer)


def penalty(model, add_gradients: bool = False) -> float:
    """The sum of ``model.losses``, which Keras adds to the loss of every training and
    evaluation batch; with ``add_gradients``, each weight penalty's gradient is added to its
    variable's ``grad`` as well (the activity penalties' gradients join the backward pass in
    the layers)."""
    if add_gradients:
        for variable in model.trainable_weights:
            if variable.regularizer is not None and variable.grad is not None:
                variable.grad = variable.grad + variable.regularizer.gradient(variable.value)
    losses = model_losses(model)
    return float(np.sum(losses, dtype=np.float32)) if losses else 0.0
