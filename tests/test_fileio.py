import os

import numpy as np
import pytest

from convlens.fileio import atomic_write


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_bytes_str_and_return_value(tmp_path):
    target = tmp_path / "a.bin"
    assert atomic_write(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_write(str(target), "héllo")
    assert target.read_bytes() == "héllo".encode()
    atomic_write(target, memoryview(b"xyz"))
    assert target.read_bytes() == b"xyz"
    assert _leftovers(tmp_path) == []


def test_writer_callable_streams_into_the_file(tmp_path):
    target = tmp_path / "w.npy"
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    atomic_write(target, lambda f: np.save(f, arr))
    np.testing.assert_array_equal(np.load(target, allow_pickle=False), arr)


def test_failing_writer_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")

    def writer(f):
        f.write(b"half of the new cont")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, writer)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_failing_writer_without_old_file_leaves_nothing(tmp_path):
    target = tmp_path / "new.txt"

    def writer(f):
        raise ValueError("bad")

    with pytest.raises(ValueError):
        atomic_write(target, writer)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_and_bad_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "x.bin", b"1")
    with pytest.raises(TypeError, match="bytes, str or a callable"):
        atomic_write(tmp_path / "x.bin", 123)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permissions_follow_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "p.bin", b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "p.bin").stat().st_mode & 0o777 == 0o644
