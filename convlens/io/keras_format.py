"""Keras 3 whole-model ``.keras`` files: written atomically, read without executing anything.

A ``.keras`` file is a zip archive (members stored, not compressed) holding, as Keras 3 writes:

- ``metadata.json``: ``{"keras_version": ..., "date_saved": ...}``;
- ``config.json``: the serialized ``Sequential`` -- its layers, each as
  ``{"module": "keras.layers", "class_name": ..., "config": {...}, "registered_name": null}``,
  plus ``build_config`` (the input shape) and ``compile_config`` (optimizer, loss, metrics);
- ``model.weights.h5``: the weights, in the layout of ``convlens.io.weights_file``.

Loading parses ``config.json`` with ``json`` only and maps each ``class_name`` through the
allow-list of registered layer kinds (``convlens.kinds``): nothing named by the file is
imported or run. Settings
convlens can't represent (a ``Lambda`` layer, a custom regularizer, a custom activation)
raise a ``ValueError`` that names the layer and the key. A compiled model's optimizer state
(iteration count, learning rate, slots) is saved in ``model.weights.h5`` as Keras saves it,
and loaded back so that training resumes where it stopped.

Example:
    >>> import tempfile, os
    >>> from convlens.layers import Dense, Input
    >>> from convlens.models import Model, Sequential
    >>> model = Sequential([Input((4,)), Dense(2, name="out")], name="tiny")
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.keras")
    >>> save_model(model, path)
    >>> [layer.name for layer in load_model(path).layers]
    ['out']
"""

from __future__ import annotations

import datetime
import inspect
import io
import json
import os
import zipfile

from convlens import losses, metrics, optimizers
from convlens.budget import DEFAULT_LIMITS, Budget, check_budget
from convlens.fileio import atomic_write, check_regular_file
from convlens.io import functional_format, weights_file
from convlens.io.keras_entries import (
    DTYPE_POLICY,
    INPUT_LAYER_DEFAULTS,
    check_dtype,
    checked_shape,
    compile_config,
    input_layer_from_entry,
    layer_entry,
    layer_from_entry,
    layer_record,
    short,
)
from convlens.kinds import registered_names
from convlens.layers import InputLayer  # importing the layers registers every kind
from convlens.models import Model, Sequential

SUFFIX = ".keras"
METADATA, CONFIG, WEIGHTS = "metadata.json", "config.json", "model.weights.h5"
MEMBERS = (METADATA, CONFIG, WEIGHTS)
KERAS_VERSION = "3.15.1"  # the Keras release whose layout these files follow
_MAX_JSON_BYTES = 64 * 2**20  # a config larger than this is not a model description
_MAX_DEPTH = 64  # Keras nests a layer's settings about 8 levels deep


# ----- saving ------------------------------------------------------------------------------
def save(model, filepath, overwrite: bool = True) -> None:
    """``model.save``: a whole-model ``.keras`` file, or only the weights for ``.weights.h5``."""
    path = os.fspath(filepath)
    if path.endswith(weights_file.SUFFIX):
        weights_file.save_weights(model, path, overwrite)
        return
    if path.endswith(SUFFIX):
        save_model(model, path, overwrite)
        return
    raise ValueError(
        "convlens saves whole models as Keras 3 '.keras' files and weights as "
        f"'{weights_file.SUFFIX}' files; received filepath={path!r}. Use "
        f"model.save('model.keras') or model.save_weights('model{weights_file.SUFFIX}')."
    )


def save_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` (a built ``Sequential``) to ``filepath`` as a Keras 3 ``.keras`` file.

    The file is complete or absent: it is written to a temporary file that is then renamed,
    so a failure leaves any previous file at ``filepath`` as it was.
    """
    path = os.fspath(filepath)
    if not path.endswith(SUFFIX):
        raise ValueError(
            f"The filename must end in `{SUFFIX}` (the Keras whole-model format); received "
            f"filepath={path!r}. For weights only, use model.save_weights('model.weights.h5')."
        )
    if not overwrite and os.path.exists(path):
        raise ValueError(f"{path!r} exists and overwrite=False.")
    config = json.dumps(model_to_config(model), indent=4)
    metadata = json.dumps({"keras_version": KERAS_VERSION, "date_saved": _now()}, indent=4)
    weights = io.BytesIO()  # in memory: the temp folder never holds a copy of the model
    weights_file.write_weights(model, weights)

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(METADATA, metadata)
            archive.writestr(CONFIG, config)
            archive.writestr(WEIGHTS, weights.getbuffer())

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, write)


def _now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")


def model_to_config(model) -> dict:
    """The ``config.json`` dict Keras 3 writes for this model (Sequential or functional)."""
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it can't be saved yet: start it with "
            "Input(...) or call model.build(input_shape)."
        )
    if not isinstance(model, Sequential):
        return functional_format.functional_to_config(model, model_to_config)
    input_shape = list(model.input_shape)
    input_config = {**model.input_layer.get_config(), **INPUT_LAYER_DEFAULTS}
    layers = [layer_record("InputLayer", input_config)]
    layers += [model_to_config(layer) if isinstance(layer, Model) else layer_entry(layer)
               for layer in model.layers]
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": model.name,
            "trainable": model.trainable,
            "dtype": DTYPE_POLICY,
            "layers": layers,
            "build_input_shape": input_shape,
        },
        "registered_name": None,
        "build_config": {"input_shape": input_shape},
        "compile_config": compile_config(model),
    }


# ----- loading -----------------------------------------------------------------------------
def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True):
    """Read a Keras 3 ``.keras`` file (written by Keras or by convlens) into a ``Sequential``.

    ``compile=False`` skips the optimizer, loss and metrics. ``safe_mode`` is accepted for
    Keras compatibility: convlens never runs code from a file, whatever its value.
    """
    del safe_mode
    path = os.fspath(filepath)
    if custom_objects:
        raise ValueError(
            f"convlens does not load custom objects; received custom_objects for "
            f"{sorted(custom_objects)}. Only the built-in layers are allowed: "
            f"{', '.join(registered_names())}."
        )
    check_regular_file(path, ".keras file")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a .keras file: it is not a zip archive. Expected the zip Keras 3 "
            f"writes with model.save('model{SUFFIX}'), holding {', '.join(MEMBERS)}."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = _read_config(archive, path)
            model = model_from_config(config, path)
            if compile:  # first, so that the optimizer state loads with the weights
                compile_from_config(model, config.get("compile_config"), path)
            if model.built:
                _read_weights_member(archive, model, path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path!r} is a damaged zip archive: {error}") from None
    return model


def _read_weights_member(archive: zipfile.ZipFile, model, path: str) -> None:
    """Read the weights straight from the archive, never extracted: the member's size is
    checked against what the model can hold first, and h5py reads only the arrays it checked.
    """
    info = archive.getinfo(WEIGHTS)
    # The weights, up to three optimizer slots per weight, and room for HDF5's own records.
    cap = 4 * 4 * model.count_params() + _MAX_JSON_BYTES
    if info.file_size > cap:
        raise ValueError(
            f"{path!r}: {WEIGHTS} is {info.file_size:,} bytes uncompressed; a model of "
            f"{model.count_params():,} parameters needs at most {cap:,}. The file is not "
            "this model's."
        )
    where = f"{path}/{WEIGHTS}"
    if info.compress_type == zipfile.ZIP_STORED:
        # h5py seeks back and forth; zipfile's member stream re-reads (and re-checksums)
        # from the start on every backward seek, so read the stored bytes in place instead.
        with open(path, "rb") as raw:
            weights_file.read_weights(model, _StoredMember(raw, info), where)
        return
    with archive.open(WEIGHTS) as member:  # compressed: inflate it once, within the cap
        weights_file.read_weights(model, io.BytesIO(member.read(cap + 1)), where)


class _StoredMember(io.RawIOBase):
    """A read-only, seekable view of one stored (uncompressed) zip member's bytes."""

    def __init__(self, raw, info: zipfile.ZipInfo):
        super().__init__()
        raw.seek(info.header_offset)
        header = raw.read(30)  # the local file header: its name and extra field lengths follow
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise ValueError(f"{info.filename}: the zip member's local header is damaged.")
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        self._raw = raw
        self._start = info.header_offset + 30 + name_length + extra_length
        self._size = info.file_size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(base + offset, 0), self._size)
        return self._position

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self._size - self._position)
        if count <= 0:
            return 0
        self._raw.seek(self._start + self._position)
        data = self._raw.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def _read_config(archive: zipfile.ZipFile, path: str) -> dict:
    names = archive.namelist()
    missing = [name for name in (CONFIG, WEIGHTS) if name not in names]
    if missing:
        raise ValueError(
            f"{path!r} is a zip archive but not a .keras file: it lacks {missing}. Expected "
            f"the members {list(MEMBERS)}; it holds {names[:10]}."
        )
    if archive.getinfo(CONFIG).file_size > _MAX_JSON_BYTES:
        raise ValueError(f"{path!r}: {CONFIG} is larger than {_MAX_JSON_BYTES:,} bytes.")
    with archive.open(CONFIG) as member:
        return parse_config(member.read(_MAX_JSON_BYTES + 1), f"{path!r}: {CONFIG}")


def parse_config(text: str | bytes, where: str) -> dict:
    """A model description from JSON text, parsed as data: a ValueError naming ``where`` for
    text that is not JSON, nests too deeply, or is not an object."""
    try:
        config = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except RecursionError:
        raise ValueError(
            f"{where} nests JSON too deeply to read; a model description is a few levels deep."
        ) from None
    except (UnicodeDecodeError, ValueError) as error:  # JSONDecodeError, 4,300+ digit ints
        raise ValueError(f"{where} is not valid JSON: {error}") from None
    _check_depth(config, where)
    if not isinstance(config, dict):
        raise ValueError(f"{where} must hold a JSON object; received {type(config).__name__}.")
    return config


def _check_depth(value, where: str) -> None:
    """A model description nests a few levels; refuse one nested deeper than ``_MAX_DEPTH``."""
    stack = [(value, "", 0)]
    while stack:
        item, key, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(
                f"{where} nests JSON more than {_MAX_DEPTH} levels deep (at {key[:120]!r}); "
                "a model description is a few levels deep."
            )
        if isinstance(item, dict):
            stack.extend((child, f"{key}/{name}", depth + 1) for name, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{key}/{index}", depth + 1) for index, child in enumerate(item))


def model_from_config(config: dict, where: str = "config", budget: Budget = DEFAULT_LIMITS):
    """A ``Sequential`` or functional ``Model`` from the dict in a ``.keras`` file's
    config.json.

    The model's figures are checked against ``budget`` before any weight is created.
    """
    class_name = config.get("class_name")
    if config.get("registered_name") not in (None, "Sequential", "Functional"):
        class_name = config["registered_name"]
    if class_name == "Functional":
        return functional_format.functional_from_config(config, where, budget, model_from_config)
    if class_name != "Sequential":
        raise ValueError(
            f"{where}: convlens loads Sequential and Functional models; the file holds a "
            f"{short(class_name)} model (subclassed models have no config convlens can read). "
            "Rebuild it with keras.Sequential([...]) or keras.Model(inputs, outputs)."
        )
    body = config.get("config")
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise ValueError(f"{where}: the Sequential config has no 'layers' list.")
    check_dtype(body.get("dtype"), f"{where}: Sequential", "dtype")
    entries = list(body["layers"])
    input_layer = None
    if entries and isinstance(entries[0], dict) and entries[0].get("class_name") == "InputLayer":
        input_layer = input_layer_from_entry(entries.pop(0), where)
    used = [0]
    layers = [
        functional_format.nested_model(entry, where, budget, used, model_from_config)
        if isinstance(entry, dict) and entry.get("class_name") in functional_format.MODEL_CLASSES
        else layer_from_entry(entry, index, where) for index, entry in enumerate(entries)
    ]
    trainable = body.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ValueError(
            f"{where}: Sequential trainable={short(trainable)} must be true or false."
        )
    shape = body.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape")
    if input_layer is not None:
        shape = input_layer.batch_shape
    elif shape:
        shape = InputLayer(batch_shape=checked_shape(shape, where)).batch_shape
    if shape:
        try:
            check_budget(layers, shape, **budget.limits())
        except (ValueError, TypeError) as error:  # BudgetError, or a layer refusing its input
            raise ValueError(f"{where}: {error}") from None
    try:
        model = Sequential(
            ([input_layer] if input_layer else []) + layers, trainable=trainable,
            name=body.get("name"),
        )
        if not model.built and shape:
            model.build(tuple(shape))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    return model


def compile_from_config(model, config, path: str) -> None:
    """Compile ``model`` from a ``compile_config`` dict (optimizer, loss, metrics) and build
    its optimizer, as Keras's ``compile_from_config`` does; nothing for an empty config."""
    if not config:
        return
    if not isinstance(config, dict):
        raise ValueError(f"{path!r}: compile_config must be a JSON object; received {config!r}.")
    where = f"{path!r}: compile_config"
    try:
        optimizer = optimizers.get(config.get("optimizer") or "rmsprop")
        loss = _per_output(config.get("loss"), _loss)
        names = _per_output(config.get("metrics") or [], _metrics)
        weighted = _per_output(config.get("weighted_metrics") or [], _metrics)
        model.compile(optimizer=optimizer, loss=loss, metrics=names,
                      loss_weights=config.get("loss_weights"), weighted_metrics=weighted or None)
        if model.built:  # Keras's compile_from_config creates the optimizer's variables
            model.optimizer.build(model.trainable_weights)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where} can't be represented in convlens: {error} Load with compile=False to "
            "skip the optimizer, loss and metrics."
        ) from None


def _loss(entry):
    if not isinstance(entry, dict):
        return entry
    cls = type(losses.get(entry.get("class_name")))
    config = dict(entry.get("config") or {})
    accepted = inspect.signature(cls).parameters
    ignored = {"reduction": "sum_over_batch_size", "ignore_class": None, "dtype": None,
               "axis": -1}
    for key in [key for key in config if key not in accepted]:
        if key not in ignored or config.pop(key) != ignored[key]:
            raise ValueError(f"loss {entry.get('class_name')} setting {key!r} is not supported.")
    return cls(**config)


def _per_output(entry, read):
    """A model with several outputs has its loss and metrics per output: a dict keyed by
    output name or a list (one entry per output); a single loss/list of metrics otherwise."""
    if isinstance(entry, dict) and "class_name" not in entry:
        return {key: read(value) for key, value in entry.items()}
    if read is _loss and isinstance(entry, list):
        return [read(value) for value in entry]
    if read is _metrics and isinstance(entry, list) and any(
            isinstance(value, list) or value is None for value in entry):
        return [read(value) for value in entry]
    return read(entry)


def _metrics(entries):
    if entries is None:
        return None
    return [_metric(entry) for entry in (entries if isinstance(entries, list) else [entries])]


def _metric(entry):
    if isinstance(entry, dict):  # a Keras metric object: its name is what Keras logs
        name = (entry.get("config") or {}).get("name")
        entry = name if name in metrics.NAMES else entry.get("class_name")
    if not isinstance(entry, str):
        raise ValueError(f"metric {entry!r} is not supported (one list of names only).")
    metrics.get(entry)
    return entry
