"""The file output: a WAV file (16-bit PCM or 32-bit float), paced in real time by default.

The header's sizes are rewritten after every block (two small positioned writes), so
the file is a valid WAV holding everything up to the last completed block even if
the process is killed. WAV sizes are 32-bit: past 4 GiB the output keeps pacing but
discards, with one warning.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np

from infiniloopd.errors import UserError
from infiniloopd.outputs.pacing import Pacer
from infiniloopd.outputs.pcm import S16Converter

log = logging.getLogger(__name__)

_MAX_BYTES = 0xFFFFFFFF


def wav_header(rate: int, channels: int, fmt: str, data_bytes: int) -> bytes:
    """A canonical WAV header for `data_bytes` bytes of audio in `fmt` (pcm16 | float32)."""
    if fmt == "pcm16":
        width = 2
        fmt_chunk = struct.pack(
            "<4sIHHIIHH", b"fmt ", 16, 1, channels, rate, rate * channels * width,
            channels * width, 16,
        )  # fmt: skip
        extra = b""
    else:
        width = 4
        fmt_chunk = struct.pack(
            "<4sIHHIIHHH", b"fmt ", 18, 3, channels, rate, rate * channels * width,
            channels * width, 32, 0,
        )  # fmt: skip
        # Non-PCM formats carry a fact chunk with the frame count.
        extra = struct.pack("<4sII", b"fact", 4, data_bytes // (channels * width))
    body = b"WAVE" + fmt_chunk + extra + struct.pack("<4sI", b"data", data_bytes)
    return struct.pack("<4sI", b"RIFF", len(body) + data_bytes) + body


class FileOutput:
    """Writes WAV to `path`; `realtime=False` renders as fast as the player can."""

    name = "file"

    def __init__(self, path: Path, *, fmt: str = "pcm16", realtime: bool = True) -> None:
        if fmt not in ("pcm16", "float32"):
            raise UserError(f"output.format: expected pcm16 or float32, got {fmt!r}")
        self.path = Path(path)
        self.fmt = fmt
        self.realtime = realtime
        self.paced = realtime
        self.xruns = 0
        self._fd: int | None = None
        self._rate = 0
        self._channels = 0
        self._data = 0
        self._header_len = 0
        self._pacer: Pacer | None = None
        self._conv: S16Converter | None = None
        self._full_warned = False

    def open(self, rate: int, channels: int) -> None:
        self.close()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise UserError(f"output.path: cannot write {self.path}: {exc.strerror}") from None
        self._fd, self._rate, self._channels, self._data = fd, rate, channels, 0
        header = wav_header(rate, channels, self.fmt, 0)
        self._header_len = len(header)
        self._write_all(header)
        self._conv = S16Converter(channels) if self.fmt == "pcm16" else None
        self._pacer = Pacer(rate) if self.realtime else None
        self._full_warned = False

    def write(self, frames: np.ndarray) -> None:
        if self._fd is None:
            raise RuntimeError("file output is not open")
        if self._conv is not None:
            data = self._conv.convert(frames)
        else:
            data = np.ascontiguousarray(frames, dtype=np.float32)
        nbytes = data.nbytes
        if self._header_len + self._data + nbytes > _MAX_BYTES:
            if not self._full_warned:
                log.warning("%s: WAV size limit (4 GiB) reached; discarding further audio",
                            self.path)  # fmt: skip
                self._full_warned = True
        else:
            self._write_all(memoryview(data).cast("B"))
            self._data += nbytes
            self._update_sizes()
        if self._pacer is not None:
            self._pacer.wait(int(frames.shape[0]))

    def _update_sizes(self) -> None:
        assert self._fd is not None
        header = wav_header(self._rate, self._channels, self.fmt, self._data)
        os.pwrite(self._fd, header, 0)

    def _write_all(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._update_sizes_fd(fd)
            finally:
                os.close(fd)

    def _update_sizes_fd(self, fd: int) -> None:
        os.pwrite(fd, wav_header(self._rate, self._channels, self.fmt, self._data), 0)

    def describe(self) -> str:
        pace = "real time" if self.realtime else "as fast as possible"
        return f"file: {self.path} ({self.fmt} WAV, {pace})"
