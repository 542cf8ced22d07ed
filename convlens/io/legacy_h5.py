"""Legacy whole-model HDF5 files (``model.save("m.h5")`` in Keras 2, and still in Keras 3).

The file's root attributes hold the architecture and the compile settings as JSON text
(``model_config``, ``training_config``); the weights live in ``model_weights/<layer name>``,
whose ``weight_names`` attribute lists the layer's weights in ``layer.weights`` order as paths
inside the group; ``optimizer_weights`` holds the optimizer's variables the same way. Reading
goes through the same allow-list as ``.keras`` files (:func:`convlens.io.keras_format.
model_from_config`): the JSON is parsed as data, nothing named by the file is imported or run,
its size is checked before it is parsed, and every weight's shape is checked before any is set.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from convlens.fileio import check_regular_file
from convlens.io import keras_format, weights_file

MAX_JSON_BYTES = 64 * 2**20  # an attribute larger than this is not a model description


def load_model(filepath, compile: bool = True):
    """A ``Sequential`` from a legacy ``.h5`` model file written by Keras 2 or Keras 3."""
    import h5py

    path = os.fspath(filepath)
    check_regular_file(path, ".h5 model file")
    try:
        store = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path!r} is not a readable HDF5 file: {error}") from None
    with store:
        if "model_config" not in store.attrs:
            raise ValueError(
                f"{path!r} is an HDF5 file without a 'model_config' attribute: it holds no "
                "architecture (a weights-only file?). Build the model and call "
                "model.load_weights(...) instead."
            )
        config = _json_attribute(store, "model_config", path)
        model = keras_format.model_from_config(config, path)
        if compile and "training_config" in store.attrs:
            keras_format.compile_from_config(
                model, _compile_config(_json_attribute(store, "training_config", path)), path)
        if model.built:
            try:
                arrays = _layer_arrays(model, store, path)
                arrays += _optimizer_arrays(model, store, path)
            except (OSError, RuntimeError, KeyError, TypeError) as error:
                raise ValueError(f"{path!r} can't be read as a model file: {error}") from None
            for variable, array in arrays:
                variable.assign(array)
    return model


def _json_attribute(store, name: str, path: str) -> dict:
    raw = store.attrs[name]
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if not isinstance(raw, (str, bytes)):
        raise ValueError(f"{path!r}: the '{name}' attribute is not JSON text.")
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"{path!r}: the '{name}' attribute is larger than {MAX_JSON_BYTES} bytes.")
    return keras_format.parse_config(raw, f"{path!r}: the '{name}' attribute")


def _compile_config(training: dict) -> dict:
    """A legacy ``training_config`` in the keys of a ``.keras`` ``compile_config``."""
    config = dict(training)
    config["optimizer"] = config.pop("optimizer_config", None)
    return config


def _names(group, path: str) -> list[str]:
    names = group.attrs.get("weight_names", [])
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def _layer_arrays(model, store, path: str) -> list:
    if "model_weights" not in store:
        raise ValueError(f"{path!r} has no 'model_weights' group.")
    groups = weights_file.checked_group(store, "model_weights", path)
    arrays = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in groups:
            raise ValueError(
                f"{path!r} holds no weights for layer '{layer.name}'; it holds "
                f"{sorted(groups)[:20]}."
            )
        group = weights_file.checked_group(groups, layer.name, path)
        names = _names(group, path)
        if len(names) != len(layer.weights):
            raise ValueError(
                f"Layer '{layer.name}' has {len(layer.weights)} weights; {path!r} lists "
                f"{len(names)} for it ({names})."
            )
        for name, variable in zip(names, layer.weights):
            arrays.append((variable, _read(group, name, variable.shape, variable.path, path)))
    return arrays


def _read(group, name: str, shape, what: str, path: str) -> np.ndarray:
    # Links, non-numeric data and the shape are checked before the data is read.
    return weights_file.checked_array(group, name, shape, f"Weight '{what}'", path, dtype=None)


def _optimizer_arrays(model, store, path: str) -> list:
    optimizer = model.optimizer if model.compiled else None
    if optimizer is None or "optimizer_weights" not in store:
        return []
    group = weights_file.checked_group(store, "optimizer_weights", path)
    names = _names(group, path)
    variables = optimizer.variables
    if len(names) != len(variables):
        warnings.warn(
            f"Skipping variable loading for optimizer '{optimizer.name}', because it has "
            f"{len(variables)} variables whereas the saved optimizer has {len(names)} "
            "variables. ",
            stacklevel=3,
        )
        return []
    return [(variable, _read(group, name, variable.shape, variable.path, path))
            for name, variable in zip(names, variables)]
