"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The temp file is made beside the target (same filesystem, so the rename is atomic),
named `.NAME.XXXX.tmp` so that a crash leaves only dot-files ending in `.tmp`, which
their owners sweep up at start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: the rename itself is done)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _temp_beside(path: Path, mode: int | None) -> Iterator[tuple[int, Path]]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        yield fd, Path(tmp)
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a small file the daemon keeps (config, state, sidecar), at most `limit`.

    Anything that is not a regular file (a FIFO, a directory, a device) is refused
    without blocking on it, and so is a file over `limit` bytes, without reading it
    whole: OSError with a strerror that says why (FileNotFoundError when absent).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise OSError(errno.EINVAL, kind, str(path))
        too_big = OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        if st.st_size > limit:
            raise too_big
        chunks = []
        size = 0
        while chunk := os.read(fd, min(65536, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while we read
                raise too_big
        return b"".join(chunks)
    finally:
        os.close(fd)


def sweep_temp_files(directory: Path) -> list[Path]:
    """Remove this module's crash leftovers (`.NAME.XXXX.tmp`) in `directory`; those removed.

    Only dot-files ending in `.tmp` that are regular files are touched: anything else
    in the directory belongs to the user.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        path = Path(directory) / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(path.lstat().st_mode):
                path.unlink()
                removed.append(path)
    return removed


def _disk_full(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _publish(fd: int, tmp: Path, path: Path, overwrite: bool) -> None:
    os.fsync(fd)
    if overwrite:
        os.replace(tmp, path)
    else:
        os.link(tmp, path)
    fsync_dir(path.parent)


def write_atomic(
    path: Path,
    write: Callable[[IO[bytes]], Any],
    *,
    mode: int | None = None,
    overwrite: bool = True,
) -> None:
    """Create `path` from what `write` puts into a binary file object.

    The data is fsynced before the rename. With `overwrite=False` an existing file
    is never replaced, not even one that appears while writing: FileExistsError.
    `mode` sets the permissions (default: mkstemp's private 0600).
    """
    with _temp_beside(path, mode) as (fd, tmp):
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
        _publish(fd, tmp, path, overwrite)


def write_bytes_atomic(path: Path, data: bytes, **kw: Any) -> None:
    write_atomic(path, lambda f: f.write(data), **kw)


def write_json_atomic(path: Path, data: Any, **kw: Any) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"), **kw)


def write_audio_atomic(
    path: Path,
    audio: Any,
    rate: int,
    *,
    format: str,
    subtype: str,
    mode: int | None = None,
    overwrite: bool = True,
) -> None:
    """Encode `audio` (frames[, channels]) with libsndfile into `path`, atomically.

    libsndfile writes the temp file by name: through a Python file object a full
    disk would surface as a traceback printed from inside a cffi callback. Its
    errors come back as OSError, ENOSPC when the disk is full.
    """
    import soundfile as sf  # deferred: keeps this module light for the client side

    with _temp_beside(path, mode) as (fd, tmp):
        try:
            sf.write(str(tmp), audio, rate, format=format, subtype=subtype)
        except (RuntimeError, AssertionError) as exc:
            # soundfile reports a short write as an AssertionError and libsndfile's own
            # failures as LibsndfileError (a RuntimeError); say what the disk says.
            if _disk_full(tmp.parent):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
            raise OSError(errno.EIO, f"cannot encode audio: {exc}", str(path)) from None
        _publish(fd, tmp, path, overwrite)
