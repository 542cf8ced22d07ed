"""Keras 3 ``.weights.h5`` files: written atomically, read without executing anything.

Layout (what Keras 3 writes): ``layers/<key>/vars/<i>`` holds the layer's i-th weight in
``layer.weights`` order, and the model's own ``vars`` group is empty. The key is not the
layer's name, which depends on how many layers the process has made, but its snake-cased
class name numbered within the model: ``conv2d``, ``conv2d_1``, ``dense``, ...
A compiled model's optimizer state is ``optimizer/vars/<i>``, ``optimizer.variables`` in
order: the iteration counter (int32), the learning rate, then the slots (for Adam every
weight's momentum and velocity, weight by weight). Keras writes this group in
``.weights.h5`` files as well as inside ``.keras`` files, and reads it back on load.
Real Keras loads these files with ``model.load_weights`` and vice versa.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from convlens.fileio import atomic_write, check_regular_file
from convlens.kinds import kind_of
from convlens.layers.base import to_snake_case

SUFFIX = ".weights.h5"


def _check_suffix(filepath) -> str:
    path = os.fspath(filepath)
    if not path.endswith(SUFFIX):
        raise ValueError(
            f"The filename must end in `{SUFFIX}` (the Keras weights format); received "
            f"filepath={path!r}."
        )
    return path


def stored_layers(model) -> list:
    """The layers a weights file has a group for: every layer but the operations (``x + 3``),
    which Keras does not count as layers."""
    return [layer for layer in model.layers if not kind_of(layer).operation]


def storage_keys(model) -> list[str]:
    """Each stored layer's group name in the file, as Keras 3 derives it (class name,
    numbered)."""
    used: dict[str, int] = {}
    keys = []
    for layer in stored_layers(model):  # a nested model is ``sequential``/``functional``
        stem = to_snake_case(type(layer).__name__)
        if stem in used:
            used[stem] += 1
            keys.append(f"{stem}_{used[stem]}")
        else:
            used[stem] = 0
            keys.append(stem)
    return keys


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Write every layer's weights to ``filepath`` (``.weights.h5``), atomically."""
    path = _check_suffix(filepath)
    if not overwrite and os.path.exists(path):
        raise ValueError(f"{path!r} exists and overwrite=False.")
    if not model.built:
        raise ValueError(f"Model '{model.name}' is not built; it has no weights to save yet.")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Built in memory, so h5py never writes to the disk: a full disk is the plain OSError of
    # the one write below, not an error h5py reports in its own way (SystemError).
    buffer = io.BytesIO()
    write_weights(model, buffer)
    atomic_write(path, buffer.getbuffer())


def write_weights(model, handle) -> None:
    """Write the ``.weights.h5`` layout of a built ``model`` into the binary file ``handle``."""
    import h5py

    with h5py.File(handle, "w") as store:
        _write_layers(model, store.create_group("layers"))
        optimizer = _compiled_optimizer(model)
        if optimizer is not None:
            group = store.create_group("optimizer").create_group("vars")
            group.attrs["name"] = optimizer.name
            for index, variable in enumerate(optimizer.variables):
                group.create_dataset(str(index), data=variable.value)
        store.create_group("vars").attrs["name"] = model.name


def _write_layers(model, layers) -> None:
    """``<key>/vars/<i>`` for each layer of ``model``; a nested model's layers go in
    ``<key>/layers/``, its own ``vars`` empty, as Keras nests them."""
    for key, layer in zip(storage_keys(model), stored_layers(model)):
        group = layers.create_group(key)
        values = group.create_group("vars")
        values.attrs["name"] = layer.name
        if _is_model(layer):
            _write_layers(layer, group.create_group("layers"))
            continue
        for index, variable in enumerate(layer.weights):
            values.create_dataset(str(index), data=variable.value)


def _is_model(layer) -> bool:
    """A model nested as a layer (it has layers of its own)."""
    return isinstance(getattr(layer, "layers", None), list)


def load_weights(model, filepath) -> None:
    """Read a ``.weights.h5`` file into ``model``; every shape is checked before any is set."""
    path = _check_suffix(filepath)
    check_regular_file(path, "weights file")
    read_weights(model, path, path)


def read_weights(model, source, where: str) -> None:
    """Read Keras 3 weights from ``source`` (a path or a seekable binary file) into ``model``.

    Nothing is read before it is checked: every dataset must be a plain numeric array stored
    in this file (no external, soft or virtual links) with the shape of the variable it fills,
    and only then is it read. A file that breaks this raises a ``ValueError`` naming ``where``
    and the dataset's key; the model is changed only when every array has been read.
    """
    import h5py

    if not model.built:
        raise ValueError(
            f"Model '{model.name}' must be built before loading weights: start it with Input(...) "
            "or call model.build(input_shape)."
        )
    try:
        store = h5py.File(source, "r")
    except (OSError, ValueError) as error:
        raise ValueError(f"{where!r} is not a readable HDF5 weights file: {error}") from None
    with store:
        try:
            arrays = _layer_arrays(model, store, where) + _optimizer_arrays(model, store, where)
        except (OSError, RuntimeError, KeyError, TypeError) as error:
            raise ValueError(f"{where!r} can't be read as a weights file: {error}") from None
    for variable, array in arrays:
        variable.assign(array)


def _member(group, key: str, where: str, dataset: bool = False):
    """``group[key]`` once it is known to be a hard link to a group (or a numeric dataset)."""
    import h5py

    name = f"{group.name.rstrip('/')}/{key}"
    link = group.get(key, getlink=True)
    if link is None:
        raise ValueError(f"{where!r} has no entry {name!r}.")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(
            f"{where!r}: {name!r} is a {type(link).__name__} to another place; a weights file "
            "holds its arrays itself, so links are not followed."
        )
    item = group[key]
    wanted = h5py.Dataset if dataset else h5py.Group
    if not isinstance(item, wanted):
        raise ValueError(f"{where!r}: {name!r} is not a {wanted.__name__.lower()}.")
    if dataset:
        if item.dtype.kind not in "fiub" or item.dtype.names is not None:
            raise ValueError(
                f"{where!r}: {name!r} holds {item.dtype} values; weights are numbers."
            )
        if item.is_virtual or item.external:
            raise ValueError(f"{where!r}: {name!r} keeps its data in other files.")
    return item


def _array(group, key: str, variable, where: str) -> np.ndarray:
    """The dataset ``group[key]`` for ``variable``: its shape checked first, then read."""
    return checked_array(group, key, variable.shape, f"Weight '{variable.path}'", where)


def checked_group(group, key: str, where: str):
    """``group[key]`` once it is known to be a group reached by a hard link (no soft or
    external link is followed); otherwise a ValueError naming ``where`` and the key."""
    return _member(group, key, where)


def checked_array(group, key: str, shape, what: str, where: str, dtype=np.float32):
    """The dataset at ``key`` (a path below ``group``, e.g. ``dense/kernel:0``) read as
    ``dtype`` once every step to it is a hard link, it is a numeric array stored in the file,
    and it has ``shape``; otherwise a ValueError naming ``where`` and the key."""
    *folders, name = key.split("/")
    for folder in folders:
        group = _member(group, folder, where)
    item = _member(group, name, where, dataset=True)
    if tuple(item.shape) != tuple(shape):
        raise ValueError(
            f"{what} has shape {tuple(shape)}; the file holds shape {item.shape} for it "
            f"(at {item.name!r})."
        )
    return np.asarray(item[()], dtype=dtype)


def _layer_arrays(model, store, where: str) -> list:
    return _arrays_below(model, _member(store, "layers", where), where)


def _arrays_below(model, groups, where: str) -> list:
    sources = _sources(model, groups, where)
    if sources is None:
        saved = sorted(groups)[:20]
        raise ValueError(
            f"{where!r} holds weights for layers {saved}; the model's layers are stored as "
            f"{storage_keys(model)}. Build the same architecture as the file's model."
        )
    wanted = [layer for layer in model.layers if layer.weights]
    arrays = []
    for layer, source in zip(wanted, sources):
        if _is_model(layer):
            arrays += _arrays_below(layer, _member(source, "layers", where), where)
            continue
        values = _member(source, "vars", where)
        if len(values) != len(layer.weights):
            raise ValueError(
                f"Layer '{layer.name}' has {len(layer.weights)} weights; the file holds "
                f"{len(values)} for it."
            )
        for index, variable in enumerate(layer.weights):
            arrays.append((variable, _array(values, str(index), variable, where)))
    return arrays


def _compiled_optimizer(model):
    return model.optimizer if model.compiled else None


def _optimizer_arrays(model, store, path: str) -> list:
    """The file's optimizer state paired with the model's optimizer variables, shapes checked.

    As Keras does, a file without this group or a model without an optimizer loads weights
    only, and a state of another length is skipped with Keras's warning. An unbuilt
    optimizer is first built on the model's trainable weights (what Keras's load_model does).
    """
    optimizer = _compiled_optimizer(model)
    if optimizer is None or "optimizer" not in store:
        return []
    saved = _member(_member(store, "optimizer", path), "vars", path)
    if len(saved) > 2 and not optimizer.built:  # more than iteration and learning rate
        optimizer.build(model.trainable_weights)
    variables = optimizer.variables
    if len(saved) != len(variables):
        message = (
            f"Skipping variable loading for optimizer '{optimizer.name}', because it has "
            f"{len(variables)} variables whereas the saved optimizer has {len(saved)} "
            "variables. "
        )
        warnings.warn(message, stacklevel=3)
        return []
    arrays = []
    for index, variable in enumerate(variables):
        item = _member(saved, str(index), path, dataset=True)
        if item.shape != variable.shape:
            raise ValueError(
                f"Optimizer variable '{variable.path}' has shape {variable.shape}; the file "
                f"holds shape {item.shape} for it. Compile with the optimizer the file "
                "was trained with, or load with compile=False."
            )
        arrays.append((variable, np.asarray(item[()])))
    return arrays


def _sources(model, groups, where: str):
    """The file group for each weighted layer: by Keras's key, else (older files) by name."""
    wanted = [
        (key, layer) for key, layer in zip(storage_keys(model), stored_layers(model))
        if layer.weights
    ]
    for naming in (lambda key, layer: key, lambda key, layer: layer.name):
        names = [naming(key, layer) for key, layer in wanted]
        if all(name in groups for name in names):
            return [_member(groups, name, where) for name in names]
    return None
