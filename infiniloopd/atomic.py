"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The temp file is made beside the target (same filesystem, so the rename is atomic),
named `.NAME.XXXX.tmp` so that a crash leaves only dot-files ending in `.tmp`, which
their owners sweep up at start.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, **kw: Any) -> None:
    write_atomic(path, lambda f: f.write(data), **kw)


def write_json_atomic(path: Path, data: Any, **kw: Any) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"), **kw)


def write_audio_atomic(
    path: Path, audio: Any, rate: int, *, format: str, subtype: str, **kw: Any
) -> None:
    """Encode `audio` (frames[, channels]) with libsndfile into `path`, atomically."""
    import soundfile as sf  # deferred: keeps this module light for the client side

    write_atomic(path, lambda f: sf.write(f, audio, rate, format=format, subtype=subtype), **kw)
