"""The Snapcast output: raw PCM into a snapserver source, its pipe or its TCP source.

snapserver reads interleaved integer PCM in the sample format its source declares
(`sampleformat=48000:16:2` by default), so this output converts to exactly that.
Writes never block: if snapserver is not reading, what does not fit is dropped
(counted in `xruns`) and playback elsewhere goes on. The pipe is also held open for
reading here, as MPD's fifo output does: snapserver 0.26 closes a pipe that has no
writer and only reopens it for a moment every 100 ms, and our own read end lets us
drop audio that waited too long, so a snapserver that paused does not leave the
stream late for good. A TCP source that went away is an OutputError; the caller
reopens us with backoff.

Metadata: snapserver 0.26 (Debian 12/13) accepts stream metadata only from a
`controlscript` it starts itself (JSON-RPC `Stream.SetMeta` is gone and
`Stream.SetProperty` refuses `metadata`), so the prompt is not sent to snapserver.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
import struct
import termios

import numpy as np

from infiniloopd.outputs.base import OutputError
from infiniloopd.outputs.pacing import Pacer

log = logging.getLogger(__name__)

# Audio allowed to wait for snapserver to read before the oldest is dropped: this
# much extra delay at most, and enough to ride out a busy moment on either side.
PENDING_SECONDS = 0.25


def parse_sample_format(text: str) -> tuple[int, int, int]:
    """ "48000:16:2" -> (48000, 16, 2); OutputError if it is not RATE:BITS:CHANNELS."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise OutputError(
            f"snapcast: sample_format: expected RATE:BITS:CHANNELS such as 48000:16:2, got {text!r}"
        )
    rate, bits, channels = (int(p) for p in parts)
    if bits not in (16, 32) or not 1 <= channels <= 8:
        raise OutputError(
            f"snapcast: sample_format: expected 16 or 32 bits and 1 to 8 channels, got {text!r}"
        )
    return rate, bits, channels


class SnapcastOutput:
    """Writes PCM to a snapserver pipe source (`path`) or TCP source (`tcp://HOST:PORT`)."""

    name = "snapcast"

    def __init__(self, path: str, *, sample_format: str = "48000:16:2", pace: bool = True) -> None:
        self.target = str(path)
        self.rate, self.bits, self.channels = parse_sample_format(sample_format)
        self.sample_format = sample_format
        self.pace = pace  # False inside a fan-out, which already delivers in real time
        self.paced = True
        self.xruns = 0  # blocks (partly) dropped because snapserver was not reading
        self._fd: int | None = None
        self._rfd: int | None = None  # our own read end of the pipe (see the module doc)
        self._sock: socket.socket | None = None
        self._pending = bytearray()
        self._max_pending = 0
        self._frame_bytes = 0
        self._pacer: Pacer | None = None

    @property
    def is_tcp(self) -> bool:
        return self.target.startswith("tcp://")

    def open(self, rate: int, channels: int) -> None:
        self.close()
        if rate != self.rate:
            raise OutputError(
                f"snapcast: the source's sample_format {self.sample_format} does not match "
                f"output.rate {rate}: use sampleformat={rate}:{self.bits}:{self.channels}"
            )
        if channels != self.channels and not (channels == 1 or self.channels == 1):
            raise OutputError(
                f"snapcast: the source's sample_format {self.sample_format} does not match "
                f"output.channels {channels}"
            )
        self._frame_bytes = self.channels * self.bits // 8
        self._max_pending = int(PENDING_SECONDS * self.rate) * self._frame_bytes
        self._pending = bytearray()
        if self.is_tcp:
            self._open_tcp()
        else:
            self._open_pipe()
        self._pacer = Pacer(rate) if self.pace else None

    def _open_pipe(self) -> None:
        try:
            if not stat.S_ISFIFO(os.stat(self.target).st_mode):
                raise OutputError(
                    f"snapcast: {self.target} is not a pipe (snapserver's pipe source "
                    "creates one with mode=create)"
                )
            # Non-blocking on both ends: opening never waits for snapserver, writes
            # never wait for it to read.
            self._rfd = os.open(self.target, os.O_RDONLY | os.O_NONBLOCK)
            self._fd = os.open(self.target, os.O_WRONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            self.close()
            raise OutputError(
                f"snapcast: no pipe at {self.target} (is snapserver running with "
                f"source = pipe://{self.target}?name=infiniloop&mode=create?)"
            ) from None
        except OSError as exc:
            self.close()
            raise OutputError(f"snapcast: cannot open {self.target}: {exc.strerror}") from None

    def _open_tcp(self) -> None:
        host, _, port = self.target[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise OutputError(f"snapcast: path: expected tcp://HOST:PORT, got {self.target!r}")
        try:
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=2.0)
        except OSError as exc:
            raise OutputError(
                f"snapcast: cannot connect to snapserver's tcp source {self.target}: "
                f"{exc.strerror or exc}"
            ) from None
        sock.setblocking(False)
        # A small send buffer: audio that snapserver does not take waits (and is
        # dropped) here, where we see it, not as minutes of delay in the kernel.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._max_pending // 2)
        self._sock = sock

    def _convert(self, frames: np.ndarray) -> bytes:
        if frames.shape[1] != self.channels:
            frames = (
                frames.mean(axis=1, keepdims=True)
                if self.channels == 1
                else np.repeat(frames[:, :1], self.channels, axis=1)
            )
        if self.bits == 16:
            return np.clip(np.rint(frames * 32767.0), -32768, 32767).astype("<i2").tobytes()
        scaled = np.rint(frames.astype(np.float64) * 2147483647.0)
        return np.clip(scaled, -2147483648, 2147483647).astype("<i4").tobytes()

    def write(self, frames: np.ndarray) -> None:
        if self._fd is None and self._sock is None:
            raise OutputError("snapcast: not open")
        self._pending += self._convert(frames)
        self._flush()
        if self._rfd is not None:
            self._drop_stale()
        if len(self._pending) > self._max_pending:
            # snapserver is not keeping up: drop the oldest whole frames, keep alignment.
            excess = len(self._pending) - self._max_pending
            excess += -excess % self._frame_bytes
            del self._pending[:excess]
            self.xruns += 1
        if self._pacer is not None:
            self._pacer.wait(int(frames.shape[0]))

    def _drop_stale(self) -> None:
        """Read back (drop) what snapserver left in the pipe beyond PENDING_SECONDS."""
        assert self._rfd is not None
        queued = struct.unpack("i", fcntl.ioctl(self._rfd, termios.FIONREAD, b"\0\0\0\0"))[0]
        excess = queued - self._max_pending
        if excess <= 0:
            return
        excess -= excess % self._frame_bytes  # whole frames, so channels stay in place
        try:
            while excess > 0:
                got = os.read(self._rfd, min(excess, 65536))
                if not got:
                    break
                excess -= len(got)
        except BlockingIOError:  # snapserver read it meanwhile
            pass
        self.xruns += 1

    def _flush(self) -> None:
        while self._pending:
            try:
                if self._sock is not None:
                    written = self._sock.send(self._pending)
                else:
                    assert self._fd is not None
                    written = os.write(self._fd, self._pending)
            except BlockingIOError:
                return
            except OSError as exc:  # EPIPE / ECONNRESET: snapserver went away
                self.close()
                raise OutputError(
                    f"snapcast: lost {self.target}: {exc.strerror or exc} (retrying)"
                ) from None
            if written <= 0:
                return
            del self._pending[:written]

    def close(self) -> None:
        for name in ("_fd", "_rfd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def describe(self) -> str:
        kind = "tcp source" if self.is_tcp else "pipe source"
        return f"snapcast: {kind} {self.target} ({self.sample_format})"
