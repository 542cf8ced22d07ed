"""The registry of layer kinds: what every reader and bridge needs to know about a layer class.

A layer kind is its layer class, its ops, and one registration (``register(cls, Kind(...))``
next to the class). Readers and bridges never keep ``isinstance`` lists of their own: they
ask ``kind_of(layer)`` and look its rule names up in their own table of handlers, so a new
layer that computes like an existing one (a 3D pooling, another elementwise activation) needs
nothing but its registration, and a layer with new maths adds one handler per reader.

The rule names each field takes, and the module that reads them:

* ``words``   (explain/derivation*.py): conv, depthwise, separable, transpose, pool,
  global_pool, dense, flatten, reshape, elementwise, relu, dropout, batchnorm, zero_padding,
  cropping, upsampling, layer_norm, group_norm, rescaling, normalization, prelu, softmax,
  permute, identity, merge, concatenate, input, model (a model nested as a layer);
* ``cost``    (explain/cost.py): conv, depthwise, separable, transpose, dense, per_value, model,
  none;
* ``field``   (explain/receptive_field.py): window (a sliding window, read from the layer's
  ``window`` record), transpose, shift (zero padding), crop (cropping), upsample, pointwise
  (value by value), dense (pointwise on a rank > 2 input, mixing otherwise), last_axis
  (pointwise when only the last axis is mixed, as softmax), merge (the largest of its
  branches' fields), model (a nested model's own field, composed), mix (every output sees the
  whole input);
* ``trace``   (explain/trace*.py): conv, depthwise, separable, transpose, pool, dense, copy,
  elementwise, relu, batchnorm, global_pool, merge, concatenate, upsampling, prelu, rescaling,
  layer_scale, normalization, softmax, layer_norm, group_norm, model (a nested model: its output
  layer's trace); None when a value can't be traced through it;
* ``picture`` (viz/, the report): conv, depthwise, separable, transpose; None: not drawn;
* ``onnx``    (io/onnx_export.py): conv, depthwise, separable, transpose, dense, pool,
  global_pool, flatten, reshape, batchnorm, zero_padding, relu, activation, dropout, identity,
  merge, concatenate, crop, upsampling, permute, rescaling, normalization, leaky_relu, elu,
  prelu, softmax, layer_norm, group_norm, model, operation (tensor arithmetic),
  layer_scale;
* ``torch``   (io/torch_export.py): names as ``onnx`` (conv ... dropout), merge, concatenate,
  operation, layer_scale, identity (a module that passes its input on);
* ``keras_class``, ``builds_from_shape``, ``keras_only_keys``, ``convlens_only_keys``
  (io/keras_format.py): the class name in ``.keras`` files (the class's own name by default),
  whether Keras writes a ``build_config`` for it (Keras layers that override ``build``), the
  keys Keras 3 writes that convlens's ``get_config`` leaves out (with the only values convlens
  honours), and the keys convlens writes that Keras leaves out;
* ``keras_module`` (io/): the module a file names for the class, ``keras.layers`` but for the
  classes Keras keeps elsewhere (``keras.src.ops.numpy`` for the operations tensor arithmetic
  records, ``keras.src.applications.convnext`` for ConvNeXt's own layers); a class from
  another module is registered under ``<module>.<class name>`` and written with
  ``registered_name`` set to its class name, as Keras writes it;
* ``operation`` (io/, weights files): the class is a Keras operation, not a layer: its config
  is only its name, its call's arguments hold the constants it computes with (``x + 3.0`` is
  ``args: [tensor, 3.0]``), and a weights file has no group for it.

>>> from convlens.layers import Conv2D
>>> class MyConv(Conv2D): pass
>>> kind_of(MyConv).field, kind_of(MyConv).keras_class, registered_class("MyConv")
('window', 'Conv2D', None)
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Kind:
    """What readers and bridges need to know about one layer class (see the module doc)."""

    words: str | None = None
    cost: str = "none"
    field: str = "mix"
    trace: str | None = None
    picture: str | None = None
    onnx: str | None = None
    torch: str | None = None
    keras_class: str | None = None
    builds_from_shape: bool = False
    keras_only_keys: tuple[tuple[str, object], ...] = ()  # (key, value) pairs; a dict is taken
    convlens_only_keys: tuple[str, ...] = ()
    keras_module: str = "keras.layers"
    operation: bool = False


UNKNOWN = Kind()  # a layer class nobody registered: no words, no trace, mixes everything

_kinds: dict[type, Kind] = {}
_by_keras_name: dict[str, type] = {}


def register(cls: type, kind: Kind, **overrides) -> None:
    """Register ``cls`` (and, through the class hierarchy, its subclasses) as ``kind``.

    ``overrides`` replace fields of ``kind`` for this class only, so one ``Kind`` serves a
    family (``Conv1D``/``Conv2D``/``Conv3D``). ``keras_class`` defaults to ``cls.__name__``.
    """
    kind = replace(kind, **overrides)
    if kind.keras_class is None:
        kind = replace(kind, keras_class=cls.__name__)
    if isinstance(kind.keras_only_keys, dict):
        kind = replace(kind, keras_only_keys=tuple(kind.keras_only_keys.items()))
    key = file_name(kind.keras_class, kind.keras_module)
    previous = _by_keras_name.get(key)
    if previous is not None and previous is not cls:
        raise ValueError(
            f"Layer kind {key!r} is already registered for {previous.__qualname__}; "
            f"register {cls.__qualname__} under another keras_class."
        )
    _kinds[cls] = kind
    _by_keras_name[key] = cls
    _resolved.clear()


_resolved: dict[type, Kind] = {}


def kind_of(layer_or_class) -> Kind:
    """The registered kind of a layer (or class): its own, else its nearest registered base's."""
    cls = layer_or_class if isinstance(layer_or_class, type) else type(layer_or_class)
    kind = _resolved.get(cls)
    if kind is None:
        kind = next((_kinds[base] for base in cls.__mro__ if base in _kinds), UNKNOWN)
        _resolved[cls] = kind
    return kind


def file_name(keras_class: str, module: str | None = "keras.layers") -> str:
    """The registry's name of a class a file names: its class name for ``keras.layers``
    (and a file that gives no module), else ``<module>.<class name>``."""
    return keras_class if module in (None, "keras.layers") else f"{module}.{keras_class}"


def registered_class(keras_class: str, module: str | None = "keras.layers") -> type | None:
    """The class registered under a ``.keras`` class name (of ``module``), or None."""
    return _by_keras_name.get(file_name(keras_class, module))


def registered_names() -> list[str]:
    """Every ``.keras`` class name convlens reads and writes, in registration order (a class
    of another module than ``keras.layers`` as ``<module>.<class name>``, after the layers)."""
    return sorted(_by_keras_name, key=lambda name: "." in name)
