"""Safe file writing shared by every part of convlens that saves something.

``atomic_write(path, data)`` either leaves the old file untouched or replaces it with the
complete new content: the bytes go to a temporary file in the same folder, are flushed to
disk with ``fsync``, and the temporary file is renamed over the target with ``os.replace``
(atomic on POSIX and Windows when both names are on the same file system). A crash, a full
disk or an exception raised by the writer never leaves a half-written file under ``path``,
and the temporary file is removed. A writer killed outright (SIGKILL, SIGXFSZ) can't remove
its temporary file: the next write of the same file does, recognising it by its exact name
and by the lock only a live writer holds.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl

    _CAN_LOCK = True
except ImportError:  # Windows: no stale-file cleanup
    _CAN_LOCK = False

__all__ = ["atomic_write", "check_regular_file"]

Data = bytes | bytearray | memoryview | str | Callable[[BinaryIO], object]


def check_regular_file(path: str | os.PathLike, what: str) -> None:
    """Refuse before opening what a loader must not read: a missing path (FileNotFoundError),
    a folder, a FIFO, a device or a socket (ValueError), which would hang or never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"No {what} at {os.fspath(path)!r}.") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
        raise ValueError(f"{os.fspath(path)!r} is {kind}; expected a {what}.")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where folders can't be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _lock(fd: int, blocking: bool) -> bool:
    """Take the exclusive lock on ``fd``; False when another process holds it."""
    if not _CAN_LOCK:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Remove the temporary files an earlier write of ``name`` left behind when its process
    was killed: exactly ``.NAME.<12 hex digits>.tmp``, and only when no live writer holds its
    lock (the kernel drops a dead process's locks). Nothing else in the folder is touched."""
    if not _CAN_LOCK:
        return
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp\Z")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not pattern.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _open_temp(folder: Path, name: str) -> tuple[Path, int]:
    # os.open with mode 0o666 lets the umask decide the permissions, as a plain open() would
    # (tempfile.mkstemp would create the file 0o600).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file next to {folder / name}.")


def atomic_write(path: str | os.PathLike, data: Data) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a ``Path``.

    ``data`` is ``bytes``/``bytearray``/``memoryview``, a ``str`` (written as UTF-8), or a
    callable ``writer(f)`` that receives the open binary temporary file and writes into it
    (useful for streaming, ``np.save`` / ``np.savez``, ``json.dump`` through a wrapper, ...).
    If the writer raises, the exception propagates, the temporary file is deleted and any
    existing file at ``path`` is left as it was.

    The containing folder must already exist (it is not created silently). An existing file
    at ``path`` is replaced; symlinks at ``path`` are replaced by a regular file.
    """
    target = Path(os.fspath(path))
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not (isinstance(data, (bytes, bytearray, memoryview)) or callable(data)):
        raise TypeError(
            "atomic_write() expects bytes, str or a callable writer(f); "
            f"received {type(data).__name__}."
        )
    folder = target.parent
    if target.is_dir():
        raise ValueError(
            f"Cannot write {target}: it is a folder. Pass a file name inside it, e.g. "
            f"{target / ('model' + (target.suffix or '.keras'))}."
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot write {target}: the folder {folder} does not exist.")
    _remove_stale_temps(folder, target.name)
    tmp, fd = _open_temp(folder, target.name)
    try:
        with os.fdopen(fd, "wb") as f:
            _lock(fd, blocking=True)  # held until closed: marks the temporary file as live
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if _CAN_LOCK:  # renamed while still locked, so no cleaner can take it first
                os.replace(tmp, target)
        if not _CAN_LOCK:
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)
    return target
