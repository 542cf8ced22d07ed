"""Saves clean up after killed saves (their own temporary files only) and report a full disk."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys

import pytest

from convlens.layers import Dense, Input
from convlens.models import Sequential


def model():
    return Sequential([Input((64,)), Dense(4096)])  # 266,240 params, about 1 MB of weights


_HANGING_SAVE = """
import sys, time
from convlens.fileio import atomic_write
def writer(f):
    f.write(b"half a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(600)
atomic_write(sys.argv[1], writer)
"""


def test_a_killed_save_leaves_a_temp_file_that_the_next_save_removes(tmp_path):
    target = tmp_path / "m.keras"
    child = subprocess.Popen([sys.executable, "-c", _HANGING_SAVE, str(target)],
                             stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert child.stdout.readline().strip() == "writing"
        [leftover] = list(tmp_path.glob(".m.keras.*.tmp"))
        others = [tmp_path / name for name in (".m.keras.tmp", ".m.keras.0123456789ab.tmp.bak",
                                               ".n.keras.0123456789ab.tmp", "m.keras.tmp",
                                               ".m.keras.0123456789AB.tmp")]
        for path in others:
            path.write_bytes(b"not ours")
        model().save(target)  # the writer is alive: its file stays
        assert leftover.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    model().save(target)  # now it is dead: its file goes, nothing else does
    assert not leftover.exists()
    assert all(path.read_bytes() == b"not ours" for path in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in others] + ["m.keras"])


def test_a_crashed_writers_file_is_removed_but_a_locked_one_kept(tmp_path):
    stale = tmp_path / ".w.weights.h5.00112233aabb.tmp"
    stale.write_bytes(b"x")
    live = tmp_path / ".w.weights.h5.445566778899.tmp"
    live.write_bytes(b"y")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        model().save_weights(tmp_path / "w.weights.h5")
        assert not stale.exists() and live.exists()
    finally:
        os.close(fd)


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from convlens.layers import Dense, Input
from convlens.models import Sequential
model = Sequential([Input((64,)), Dense(4096)])
try:
    getattr(model, sys.argv[1])(sys.argv[2])
except OSError as error:
    print("OSError", error.errno)
"""


@pytest.mark.parametrize(("method", "name"), [("save", "m.keras"),
                                              ("save_weights", "w.weights.h5")])
def test_a_full_disk_is_an_os_error_and_the_old_file_stays(tmp_path, method, name):
    target = tmp_path / name
    target.write_bytes(b"the previous file")
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, method, str(target)],
                          capture_output=True, text=True, cwd=os.getcwd(), timeout=120)
    assert done.stdout.split() == ["OSError", str(errno.EFBIG)], done.stderr[-2000:]
    assert target.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_no_space_left_is_the_os_error_of_the_write(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    for path in (tmp_path / "m.keras", tmp_path / "w.weights.h5"):
        with pytest.raises(OSError) as info:
            model().save(path)
        assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_saving_never_touches_the_temp_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    m = model()
    m.compile(optimizer="adam", loss="mse")
    m.save(tmp_path / "m.keras")
    m.save_weights(tmp_path / "w.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "w.weights.h5"]
