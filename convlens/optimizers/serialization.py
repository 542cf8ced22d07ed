"""Optimizers by name and as the dicts Keras writes in ``.keras`` configs."""

from __future__ import annotations

from convlens.optimizers.adagrad import Adagrad
from convlens.optimizers.adam import Adam, AdamW
from convlens.optimizers.base import Optimizer
from convlens.optimizers.rmsprop import RMSprop
from convlens.optimizers.sgd import SGD

_CLASSES: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
}


def serialize(optimizer: Optimizer) -> dict:
    """The dict Keras writes for an optimizer in ``.keras`` configs."""
    return {
        "module": "keras.optimizers",
        "class_name": type(optimizer).__name__,
        "config": optimizer.get_config(),
        "registered_name": None,
    }


def deserialize(config: dict, custom_objects=None) -> Optimizer:
    """Inverse of :func:`serialize` (``module``/``registered_name`` are optional)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "An optimizer config must be a dict with 'class_name' and 'config' keys, as "
            f"written by `serialize()`. Received: {config!r}"
        )
    cls = _lookup(str(config["class_name"]))
    return cls.from_config(dict(config.get("config") or {}))


def _lookup(name: str) -> type[Optimizer]:
    key = name.lower().replace("_", "")
    if key not in _CLASSES:
        allowed = ", ".join(repr(n) for n in _CLASSES)
        raise ValueError(f"Unknown optimizer: {name!r}. Allowed names are: {allowed}.")
    return _CLASSES[key]


def get(identifier) -> Optimizer:
    """An optimizer from a name (``'adam'``, case-insensitive), a serialized dict or an
    instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(
        "Could not interpret optimizer identifier: expected a name such as 'adam', a config "
        f"dict or an Optimizer instance. Received: {identifier!r}"
    )
