"""The entries of a ``.keras`` config, both ways: one layer's record (its class, config and
build shape, as Keras 3 writes them), the InputLayer's, the compile settings; and the layer a
record describes, built from the registered layer kinds with every value checked as data.
Sequential and functional configs (``keras_format``, ``functional_format``) share them.
"""

from __future__ import annotations

import json

from convlens import constraints, initializers, metrics, optimizers, regularizers
from convlens.kinds import kind_of, registered_class, registered_names
from convlens.layers import InputLayer  # importing the layers registers every kind
from convlens.ops import activations as activation_ops

# The only classes a file may name are those registered in ``convlens.kinds`` (each under its
# own class name, as Keras writes it, never an alias); what Keras writes for a class beyond
# its config is registered there too.
INPUT_LAYER_DEFAULTS = {"sparse": False, "ragged": False, "optional": False}


_INITIALIZER_AXES = {"input_axes": None, "output_axes": None}  # Keras's VarianceScaling keys


DTYPE_POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}


def layer_record(class_name: str, config: dict, module: str = "keras.layers") -> dict:
    """A class's record; Keras names a class of another module than ``keras.layers`` (an
    operation, an application's own layer) by its ``registered_name`` too."""
    return {"module": module, "class_name": class_name, "config": config,
            "registered_name": None if module == "keras.layers" else class_name}


def layer_entry(layer) -> dict:
    kind = kind_of(layer)
    class_name = kind.keras_class
    if class_name is None or registered_class(class_name, kind.keras_module) is not type(layer):
        raise ValueError(
            f"Layer '{layer.name}' is a {type(layer).__name__}, which the .keras format of "
            f"convlens does not write. Supported: {', '.join(registered_names())}."
        )
    if kind.operation:  # its constants are in its call's arguments
        return layer_record(class_name, {"name": layer.name}, kind.keras_module)
    config = layer.get_config()
    config.pop("batch_input_shape", None)  # the InputLayer entry holds the input shape
    for key in kind.convlens_only_keys:
        config.pop(key, None)
    config.update(kind.keras_only_keys)
    config["dtype"] = DTYPE_POLICY
    for key, value in config.items():
        if key.endswith("_initializer"):
            config[key] = _initializer_entry(layer, key, value)
        elif key.endswith(("_regularizer", "_constraint")) and value is not None:
            _check_weight_rule(key, value, f"Layer '{layer.name}'")
        elif key == "activation" and value not in activation_ops.NAMES:
            raise ValueError(
                f"Layer '{layer.name}' uses the custom activation {value!r}, which a .keras "
                f"file can't hold; use one of: {', '.join(activation_ops.NAMES)}."
            )
    entry = layer_record(class_name, config, kind.keras_module)
    if kind.builds_from_shape:
        entry["build_config"] = {"input_shape": list(layer.input_shape)}
    return entry


def _initializer_entry(layer, key: str, entry: dict) -> dict:
    try:
        initializer = initializers.get({"class_name": entry["class_name"],
                                        "config": entry["config"]})
    except (ValueError, TypeError):
        initializer = None
    if initializer is None or entry["class_name"].startswith("_"):
        raise ValueError(
            f"Layer '{layer.name}': {key} is a custom initializer, which a .keras file can't "
            "hold; use a named one such as 'glorot_uniform'."
        )
    if isinstance(initializer, initializers.VarianceScaling):
        entry = {**entry, "config": {**entry["config"], **_INITIALIZER_AXES}}
    return entry


def _loss_entry(loss):
    if loss is None:
        return None
    if loss.get_config() == type(loss)().get_config():
        return loss.name
    return {"module": "keras.losses", "class_name": type(loss).__name__,
            "config": loss.get_config(), "registered_name": None}


def _check_metric_names(model, names) -> None:
    for name in names:
        try:
            metrics.get(name)
        except ValueError:
            raise ValueError(
                f"Model '{model.name}' is compiled with the custom metric {name!r}, which a "
                f".keras file can't hold; use one of: {', '.join(metrics.NAMES)}."
            ) from None


def compile_config(model) -> dict:
    if not model.compiled:
        return {}
    heads = model.heads
    if len(heads) > 1:  # per output, keyed by output name (Keras writes what compile got)
        loss = {head.name: _loss_entry(head.loss) for head in heads}
        loss_weights = {head.name: head.loss_weight for head in heads
                        if head.loss_weight is not None} or None
        names, weighted = ({head.name: [name for _, name, _ in getattr(head, kind)]
                            for head in heads if getattr(head, kind)}
                           for kind in ("metrics", "weighted_metrics"))
        _check_metric_names(model, [name for entry in (names, weighted)
                                    for listed in entry.values() for name in listed])
    else:
        loss, loss_weights = _loss_entry(model.loss), model.loss_weight
        names = [name for name, _ in model.metrics_list]
        # A weighted metric whose name clashes with a plain one is logged as weighted_<name>;
        # the file holds the name it was compiled with.
        weighted = [
            name[len("weighted_"):] if name.startswith("weighted_") and name[9:] in names
            else name for name, _ in model.weighted_metrics_list
        ]
        _check_metric_names(model, names + weighted)
    return {
        "optimizer": optimizers.serialize(model.optimizer),
        "loss": loss,
        "loss_weights": loss_weights,
        "metrics": names or None,
        "weighted_metrics": weighted or None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def checked_shape(shape, where: str) -> tuple:
    if not isinstance(shape, list) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape
    ):
        raise ValueError(f"{where}: the input shape must be a list of integers or nulls; "
                         f"received {short(shape)}.")
    return tuple(shape)


def input_layer_from_entry(entry: dict, where: str):
    config = dict(entry.get("config") or {})
    where = f"{where}: InputLayer '{config.get('name')}'"
    check_dtype(config.pop("dtype", None), where, "dtype")
    for key, default in INPUT_LAYER_DEFAULTS.items():
        if config.pop(key, default) != default:
            raise ValueError(f"{where}: {key}=True is not supported; convlens needs {key}=False.")
    shape = config.pop("batch_shape", None) or config.pop("batch_input_shape", None)
    if shape is None:
        raise ValueError(f"{where}: the config has no 'batch_shape'.")
    try:
        return InputLayer(batch_shape=checked_shape(shape, where), **config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def layer_from_entry(entry, index: int, where: str):
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: layer {index} must be a JSON object; received {entry!r}.")
    class_name = entry.get("class_name")
    config = dict(entry.get("config") or {})
    name = config.get("name")
    module = entry.get("module")
    cls = (registered_class(class_name, module)
           if isinstance(class_name, str) and isinstance(module, (str, type(None))) else None)
    custom = entry.get("registered_name") not in (None, class_name)
    if cls is None or custom:
        shown = entry.get("registered_name") if custom else class_name
        raise ValueError(
            f"{where}: layer {index} ('{name}') is a {shown!r} from module {module!r}, which "
            f"convlens can't build. Supported layers: {', '.join(registered_names())}."
        )
    where = f"{where}: layer '{name}' ({class_name})"
    for key, default in kind_of(cls).keras_only_keys:
        value = config.pop(key, default)
        if value != default:
            raise ValueError(
                f"{where}: {key}={short(value)} is not supported by convlens; only "
                f"{key}={default!r} is."
            )
    kwargs = {}
    for key, value in config.items():
        kwargs[key] = _argument(key, value, where)
    try:
        layer = cls(**{key: value for key, value in kwargs.items() if key != "dtype"})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    # A switch the layer holds as a bool must be one in the file: bool("no") is True.
    for key, value in layer.get_config().items():
        if isinstance(value, bool) and key in config and not isinstance(config[key], bool):
            raise ValueError(f"{where}: {key}={short(config[key])} must be true or false.")
    return layer


def _argument(key: str, value, where: str):
    """One config value as the convlens constructor takes it, or a ValueError naming ``key``."""
    if key == "dtype":
        check_dtype(value, where, key)
    elif key.endswith(("_regularizer", "_constraint")) and value is not None:
        _check_weight_rule(key, value, where)
    elif key == "activation" and not (value is None or isinstance(value, str)):
        raise ValueError(
            f"{where}: activation={short(value)} is a custom activation; convlens reads "
            f"only the named ones: {', '.join(activation_ops.NAMES)}."
        )
    elif key.endswith("_initializer") and isinstance(value, dict):
        return _initializer(value, where, key)
    return _tuples(value)


def _check_weight_rule(key: str, value, where: str) -> None:
    """A regularizer or constraint entry (read or written) is one of Keras's own, built from
    an allow-list of names; a custom or foreign one is refused naming the key."""
    regularizer = key.endswith("_regularizer")
    module = "keras.regularizers" if regularizer else "keras.constraints"
    try:
        if isinstance(value, dict) and (
            value.get("module") not in (None, module)
            or value.get("registered_name") not in (None, value.get("class_name"))
        ):
            raise ValueError("it is a custom one")
        (regularizers.get if regularizer else constraints.get)(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where}: {key}={short(value)} is not one of Keras's built-in {module} that "
            f"convlens reads: {error}"
        ) from None


def _initializer(entry: dict, where: str, key: str):
    config = dict(entry.get("config") or {})
    for axis_key, default in _INITIALIZER_AXES.items():
        if config.pop(axis_key, default) is not default:
            raise ValueError(f"{where}: {key} sets {axis_key}, which convlens does not support.")
    try:
        if entry.get("registered_name") not in (None, entry.get("class_name")):
            raise ValueError("it is a custom initializer")
        return initializers.get({"class_name": entry.get("class_name"), "config": config})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {key}={short(entry)} is not supported: {error}") from None


def check_dtype(value, where: str, key: str) -> None:
    name = value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = (value.get("config") or {}).get("name")
    if name not in (None, "float32"):
        raise ValueError(
            f"{where}: {key}={short(value)} is not supported; convlens computes in float32 only."
        )


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def short(value) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
