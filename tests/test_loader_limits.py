"""Loaders under crafted files: every size, link, type and nesting checked before reading."""

from __future__ import annotations

import json
import os
import zipfile

import h5py
import numpy as np
import pytest

from convlens.io import keras_format
from convlens.io.weights_file import load_weights
from convlens.layers import Conv2D, Dense, Flatten, Input
from convlens.models import Sequential
from tests.memory import peak_kib


def small_model():
    return Sequential([Input((4,)), Dense(3, name="d0"), Dense(2, name="d1")])


def weights_file(path, edit) -> str:
    """A valid ``.weights.h5`` of ``small_model()``, then ``edit(store)`` applied to it."""
    small_model().save_weights(path)
    with h5py.File(path, "a") as store:
        edit(store)
    return str(path)


def replace(store, key, **dataset):
    del store[key]
    store.create_dataset(key, **dataset)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: replace(s, "layers/dense/vars/0", shape=(30000, 30000), dtype="f4"),
         r"shape \(4, 3\); the file holds shape \(30000, 30000\)"),
        (lambda s: replace(s, "layers/dense/vars/0", data=np.array([b"ab"] * 12).reshape(4, 3)),
         "'/layers/dense/vars/0' holds .S2 values; weights are numbers"),
        (lambda s: replace(s, "layers/dense/vars/0",
                           data=np.zeros((4, 3), dtype=[("a", "f4"), ("b", "i4")])),
         "'/layers/dense/vars/0' holds .* values; weights are numbers"),
        (lambda s: replace(s, "layers/dense/vars/0", data=np.full((4, 3), "w", dtype=object),
                           dtype=h5py.string_dtype()),
         "'/layers/dense/vars/0' holds object values"),
        (lambda s: s.__delitem__("layers/dense/vars/1"), "has 2 weights; the file holds 1"),
    ],
)
def test_bad_datasets_are_named_before_they_are_read(tmp_path, edit, words):
    path = weights_file(tmp_path / "m.weights.h5", edit)
    model = small_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=words):
        load_weights(model, path)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _external(store, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as target:
        target.create_dataset("w", data=np.ones((4, 3), "f4"))
    del store["layers/dense/vars/0"]
    store["layers/dense/vars/0"] = h5py.ExternalLink(str(other), "/w")


def _soft_loop(store, tmp_path):
    del store["layers/dense"]
    store["layers/dense"] = h5py.SoftLink("/layers/dense_loop")
    store["layers/dense_loop"] = h5py.SoftLink("/layers/dense")


def _soft_to_weights(store, tmp_path):
    store["spare"] = store["layers/dense/vars/0"][()]
    del store["layers/dense/vars/0"]
    store["layers/dense/vars/0"] = h5py.SoftLink("/spare")


def _external_storage(store, tmp_path):
    raw = tmp_path / "raw.bin"
    np.ones((4, 3), "f4").tofile(raw)
    del store["layers/dense/vars/0"]
    store.create_dataset("layers/dense/vars/0", shape=(4, 3), dtype="f4",
                         external=[(str(raw), 0, h5py.h5f.UNLIMITED)])


def _layers_is_a_dataset(store, tmp_path):
    del store["layers"]
    store["layers"] = np.zeros(3)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_external, r"'/layers/dense/vars/0' is a ExternalLink"),
        (_soft_loop, r"'/layers/dense' is a SoftLink"),
        (_soft_to_weights, r"'/layers/dense/vars/0' is a SoftLink"),
        (_external_storage, r"'/layers/dense/vars/0' keeps its data in other files"),
        (_layers_is_a_dataset, r"'/layers' is not a group"),
    ],
)
def test_links_and_outside_data_are_refused_with_file_and_key(tmp_path, edit, words):
    path = weights_file(tmp_path / "m.weights.h5", lambda store: edit(store, tmp_path))
    with pytest.raises(ValueError, match=words) as info:
        load_weights(small_model(), path)
    assert path in str(info.value)


def test_fifo_and_folder_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.weights.h5"
    os.mkfifo(fifo)  # opening it for reading would wait forever for a writer
    with pytest.raises(ValueError, match="not a regular file"):
        load_weights(small_model(), fifo)
    keras_fifo = tmp_path / "pipe.keras"
    os.mkfifo(keras_fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        keras_format.load_model(keras_fifo)
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        keras_format.load_model(folder)
    with pytest.raises(ValueError, match="not a regular file"):
        load_weights(small_model(), _dev_null(tmp_path))


def _dev_null(tmp_path) -> str:
    link = tmp_path / "null.weights.h5"
    link.symlink_to("/dev/null")
    return str(link)


def test_a_15kb_file_declaring_a_huge_dataset_reads_nothing(tmp_path):
    path = weights_file(tmp_path / "m.weights.h5",
                        lambda s: replace(s, "layers/dense/vars/0", shape=(30000, 30000),
                                          dtype="f4", chunks=(1000, 1000), compression="gzip",
                                          fillvalue=1.0))
    assert os.path.getsize(path) < 64 * 1024
    peak = peak_kib(f"""
        from convlens.io.weights_file import load_weights
        from tests.test_loader_limits import small_model
        try:
            load_weights(small_model(), {path!r})
        except ValueError as error:
            assert "(30000, 30000)" in str(error)
        else:
            raise AssertionError("loaded")
    """)
    assert peak < 300 * 1024, f"peak {peak} KiB"  # reading it would take 3.6 GB


# ----- .keras archives ----------------------------------------------------------------------
def keras_file(path, config_edit=None, members=None, compression=zipfile.ZIP_STORED) -> str:
    """A ``.keras`` of ``small_model()`` rewritten with ``config_edit(config)`` and extra
    ``members`` (name -> bytes, replacing the model's own)."""
    source = path.with_name("source.keras")
    small_model().save(source)
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    if config_edit:
        config_edit(config)
    contents["config.json"] = json.dumps(config).encode()
    contents.update(members or {})
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return str(path)


def layer_config(config, index):
    return config["config"]["layers"][index]["config"]


def _set(index, key, value):
    return lambda config: layer_config(config, index).__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_set(1, "units", 10**12), r"layer 1 'd0' \(Dense\) brings the model's parameters"),
        (_set(1, "trainable", "no"), "layer 'd0' .*trainable='no'"),
        (_set(1, "use_bias", "no"), "use_bias='no' must be true or false"),
        (lambda c: c["config"].__setitem__("trainable", "no"),
         "Sequential trainable='no' must be true or false"),
        (_set(0, "batch_shape", [None, 100000, 100000, 3]), "max_input_values"),
        (_set(0, "batch_shape", [None, "4"]), "must be a list of integers or nulls"),
        (_set(0, "batch_shape", [None, [4]]), "must be a list of integers or nulls"),
    ],
)
def test_config_values_are_type_checked_and_budgeted(tmp_path, edit, words):
    path = keras_file(tmp_path / "m.keras", edit)
    with pytest.raises(ValueError, match=words):
        keras_format.load_model(path)


def test_huge_kernel_in_config_is_the_budget_not_memory_error(tmp_path):
    model = Sequential([Input((8, 8, 3)), Conv2D(2, 3, name="c"), Flatten(), Dense(2)])
    source = tmp_path / "conv.keras"
    model.save(source)
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    layer_config(config, 1).update(kernel_size=[10**6, 10**6], padding="same")
    contents["config.json"] = json.dumps(config).encode()
    path = tmp_path / "huge.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"'c' \(Conv2D\).*max_params"):
        keras_format.load_model(path)


def test_deeply_nested_config_is_a_value_error(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    config = json.dumps(json.loads(zipfile.ZipFile(keras_file(tmp_path / "a.keras"))
                                   .read("config.json")))
    text = config[:-1] + ', "extra": ' + deep + "}"
    path = keras_file(tmp_path / "m.keras", members={"config.json": text.encode()})
    with pytest.raises(ValueError, match="config.json nests JSON too deeply"):
        keras_format.load_model(path)
    moderate = "[" * 500 + "]" * 500  # parses, but is no model description
    text = config[:-1] + ', "extra": ' + moderate + "}"
    path = keras_file(tmp_path / "n.keras", members={"config.json": text.encode()})
    with pytest.raises(ValueError, match="nests JSON more than 64 levels deep .*'/extra/0/0"):
        keras_format.load_model(path)


def test_huge_json_integer_is_a_value_error(tmp_path):
    path = keras_file(tmp_path / "m.keras", members={"config.json": b'{"a": ' + b"9" * 5000
                                                     + b"}"})
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        keras_format.load_model(path)


def test_oversized_weights_member_is_refused_before_reading(tmp_path):
    """1 GB of zeros, 1 MB compressed: its declared size is checked against the model."""
    path = tmp_path / "bomb.keras"
    source = tmp_path / "source.keras"
    small_model().save(source)
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(
        path, "w", compression=zipfile.ZIP_DEFLATED
    ) as bomb:
        for name in ("metadata.json", "config.json"):
            bomb.writestr(name, archive.read(name))
        with bomb.open("model.weights.h5", "w", force_zip64=True) as member:
            zeros = bytes(2**24)
            for _ in range(64):
                member.write(zeros)
    assert os.path.getsize(path) < 4 * 2**20
    peak = peak_kib(f"""
        from convlens.io import keras_format
        try:
            keras_format.load_model({str(path)!r})
        except ValueError as error:
            assert "1,073,741,824 bytes uncompressed" in str(error), error
        else:
            raise AssertionError("loaded")
    """)
    assert peak < 300 * 1024, f"peak {peak} KiB"


def test_load_reads_the_weights_in_place_without_the_temp_folder(tmp_path, monkeypatch):
    import tempfile

    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        saved = small_model()
        path = tmp_path / f"m{compression}.keras"
        saved.save(path)
        path = keras_file(tmp_path / f"z{compression}.keras", compression=compression,
                          members=dict(_members(path)))
        monkeypatch.setenv("TMPDIR", str(tmp_path / "no-such-temp"))  # any use would fail
        monkeypatch.setattr(tempfile, "tempdir", None)
        loaded = keras_format.load_model(path)
        for a, b in zip(saved.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)
        monkeypatch.undo()


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}.items()


# ----- legacy .h5 model files (written by real Keras) ---------------------------------------
def test_legacy_h5_links_strings_and_deep_json_are_named(tmp_path):
    import convlens
    from tests.test_keras_format import many_kinds, randomize
    from tests.test_legacy_h5 import keras_h5, rewrite

    _, path = keras_h5(randomize(many_kinds()), tmp_path, "good")

    def kernel_key(store):
        name = store["model_weights/c1"].attrs["weight_names"][0]
        return "model_weights/c1/" + (name.decode() if isinstance(name, bytes) else name)

    def external(store):
        key = kernel_key(store)
        shape = store[key].shape
        with h5py.File(tmp_path / "other.h5", "w") as other:
            other.create_dataset("w", data=np.ones(shape, "f4"))
        del store[key]
        store[key] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/w")

    def soft_group(store):
        store["elsewhere"] = h5py.SoftLink("/model_weights/c1")
        del store["model_weights/c1"]
        store["model_weights/c1"] = h5py.SoftLink("/elsewhere")

    def strings(store):
        key = kernel_key(store)
        shape = store[key].shape
        del store[key]
        store.create_dataset(key, data=np.full(shape, "w", dtype=object),
                             dtype=h5py.string_dtype())

    def deep(store):
        store.attrs["model_config"] = "[" * 100_000 + "]" * 100_000

    for change, words in [(external, "is a ExternalLink"), (soft_group, "'/model_weights/c1' is a "
                                                                        "SoftLink"),
                          (strings, "holds object values; weights are numbers"),
                          (deep, "'model_config' attribute nests JSON too deeply")]:
        target = rewrite(path, tmp_path / f"{change.__name__}.h5", change)
        with pytest.raises(ValueError, match=words) as info:
            convlens.load_model(target)
        assert str(target) in str(info.value)
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        convlens.load_model(fifo)
