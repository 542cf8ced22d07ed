"""Keras 3 ``.weights.h5`` files: written atomically, read without executing anything.

Layout (what Keras 3 writes): ``layers/<layer name>/vars/<i>`` holds the layer's i-th
weight in ``layer.weights`` order, and the model's own ``vars`` group is empty.
Real Keras loads these files with ``model.load_weights`` and vice versa.
"""

from __future__ import annotations

import os

import numpy as np

from convlens.fileio import atomic_write

SUFFIX = ".weights.h5"


def _check_suffix(filepath) -> str:
    path = os.fspath(filepath)
    if not path.endswith(SUFFIX):
        raise ValueError(
            f"The filename must end in `{SUFFIX}` (the Keras weights format); received "
            f"filepath={path!r}."
        )
    return path


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write every layer's weights to ``filepath`` (``.weights.h5``), atomically."""
    import h5py

    path = _check_suffix(filepath)
    if not overwrite and os.path.exists(path):
        raise ValueError(f"{path!r} exists and overwrite=False.")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built; it has no weights to save yet.")

    def write(handle) -> None:
        with h5py.File(handle, "w") as store:
            layers = store.create_group("layers")
            for layer in model.layers:
                group = layers.create_group(layer.name).create_group("vars")
                group.attrs["name"] = layer.name
                for index, variable in enumerate(layer.weights):
                    group.create_dataset(str(index), data=variable.value)
            store.create_group("vars").attrs["name"] = model.name

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic_write(path, write)


def load_weights(model, filepath) -> None:
    """Read a ``.weights.h5`` file into ``model``; every shape is checked before any is set."""
    import h5py

    path = _check_suffix(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No weights file at {path!r}.")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' must be built before loading weights: start it with Input(...) "
            "or call model.build(input_shape)."
        )
    try:
        store = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path!r} is not a readable HDF5 weights file: {error}") from None
    with store:
        if "layers" not in store:
            raise ValueError(f"{path!r} has no 'layers' group; it is not a Keras 3 weights file.")
        groups = store["layers"]
        names = [layer.name for layer in model.layers]
        saved = [name for name in groups if len(groups[name].get("vars", {})) > 0]
        wanted = [layer for layer in model.layers if layer.weights]
        if all(layer.name in groups for layer in wanted):
            sources = [groups[layer.name] for layer in wanted]
        else:
            sources = _match_auto_names(wanted, saved, groups)
            if sources is None:
                raise ValueError(
                    f"{path!r} holds weights for layers {saved}; the model has layers {names}."
                )
        arrays = []
        for layer, source in zip(wanted, sources):
            values = source.get("vars", {})
            if len(values) != len(layer.weights):
                raise ValueError(
                    f"Layer '{layer.name}' has {len(layer.weights)} weights; the file holds "
                    f"{len(values)} for it."
                )
            for index, variable in enumerate(layer.weights):
                array = np.asarray(values[str(index)], dtype=np.float32)
                if array.shape != variable.shape:
                    raise ValueError(
                        f"Weight '{variable.path}' has shape {variable.shape}; the file holds "
                        f"shape {array.shape}."
                    )
                arrays.append((variable, array))
    for variable, array in arrays:
        variable.assign(array)


def _auto_number(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("_")
    return (stem, int(number)) if stem and number.isdigit() else (name, 0)


def _match_auto_names(layers, saved, groups):
    """Pair layers with saved groups whose names differ only in auto-numbering, in order.

    ``conv2d_4`` in the file goes to the model's first ``conv2d*`` layer when the file was
    written in another session; HDF5 lists groups alphabetically, so order by the number.
    """
    by_stem: dict[str, list[tuple[int, str]]] = {}
    for name in saved:
        stem, number = _auto_number(name)
        by_stem.setdefault(stem, []).append((number, name))
    for entries in by_stem.values():
        entries.sort()
    sources = []
    for layer in layers:
        entries = by_stem.get(_auto_number(layer.name)[0])
        if not entries:
            return None
        sources.append(groups[entries.pop(0)[1]])
    if any(by_stem.values()):
        return None
    return sources


def save_model(model, filepath, overwrite: bool = True) -> None:
    path = os.fspath(filepath)
    if path.endswith(SUFFIX):
        save_weights(model, path, overwrite)
        return
    raise ValueError(
        f"convlens saves weights in Keras's '{SUFFIX}' format; whole-model files (.keras) are "
        f"not written yet. Received filepath={path!r}: use model.save_weights('model{SUFFIX}')."
    )
