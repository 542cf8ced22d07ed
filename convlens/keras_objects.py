"""Keras's small configurable objects (regularizers, constraints): looking one up by what a
user or a ``.keras`` file gives, and the dict Keras writes for it."""

from __future__ import annotations


class KerasObject:
    """Built from its config (the keyword arguments of its constructor), shown as a call."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def get_object(identifier, base: type, by_name: dict[str, type], what: str, module: str):
    """``None``, an instance of ``base``, a name in ``by_name`` or a Keras config dict."""
    if identifier is None or isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str) and identifier in by_name:
        return by_name[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in by_name:
        return by_name[identifier["class_name"]].from_config(identifier.get("config") or {})
    raise ValueError(
        f"Could not interpret {what} identifier: {identifier!r}. Use None, one of "
        f"{', '.join(map(repr, by_name))}, or a {module} object."
    )


def serialize_object(obj, module: str) -> dict | None:
    """The dict Keras writes in a layer's config (``None`` stays ``None``)."""
    if obj is None:
        return None
    return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
            "registered_name": None}
