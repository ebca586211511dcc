"""The PulseAudio output (also PipeWire's pulse server), through libpulse-simple via ctypes.

The stream carries application.name=infiniloop and media.role=music so the user's
mixer shows and routes it like any music player. `pa_simple_write` blocks until the
server has room, which paces the audio thread; ctypes releases the GIL meanwhile.
pulsectl is used for what the simple API cannot do: finding sinks, and saying
"no such sink" instead of a bare error code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Any

import numpy as np

from infiniloopd.outputs.base import OutputError

log = logging.getLogger(__name__)

APP_NAME = "infiniloop"
_PA_STREAM_PLAYBACK = 1
_PA_SAMPLE_FLOAT32LE = 5
_NO_VALUE = 0xFFFFFFFF  # (uint32_t) -1: "server default" in pa_buffer_attr


class _SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [
        ("maxlength", ctypes.c_uint32),
        ("tlength", ctypes.c_uint32),
        ("prebuf", ctypes.c_uint32),
        ("minreq", ctypes.c_uint32),
        ("fragsize", ctypes.c_uint32),
    ]


class _Lib:
    """The few libpulse(-simple) functions we call, with their signatures declared."""

    def __init__(self) -> None:
        simple = _load("pulse-simple", "libpulse-simple.so.0")
        pulse = _load("pulse", "libpulse.so.0")
        self.new = simple.pa_simple_new
        self.new.restype = ctypes.c_void_p
        self.new.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
            ctypes.POINTER(_SampleSpec), ctypes.c_void_p, ctypes.POINTER(_BufferAttr),
            ctypes.POINTER(ctypes.c_int),
        ]  # fmt: skip
        self.write = simple.pa_simple_write
        self.write.restype = ctypes.c_int
        self.write.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_int),
        ]
        self.drain = simple.pa_simple_drain
        self.drain.restype = ctypes.c_int
        self.drain.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        self.flush = simple.pa_simple_flush
        self.flush.restype = ctypes.c_int
        self.flush.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        self.free = simple.pa_simple_free
        self.free.restype = None
        self.free.argtypes = [ctypes.c_void_p]
        self.strerror = pulse.pa_strerror
        self.strerror.restype = ctypes.c_char_p
        self.strerror.argtypes = [ctypes.c_int]

    def error_text(self, code: int) -> str:
        text = self.strerror(code)
        return text.decode("utf-8", "replace") if text else f"error {code}"


def _load(short: str, soname: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(soname)
    except OSError:
        found = ctypes.util.find_library(short)
        if not found:
            raise OutputError(
                f"pulse: lib{short} is not installed (Debian: apt install libpulse0)"
            ) from None
        return ctypes.CDLL(found)


def _ensure_role_property() -> None:
    """Make libpulse tag our client (and so its stream) with media.role=music.

    The simple API takes no property list; libpulse merges $PULSE_PROP into every
    context it creates, so the role is added there, keeping any properties the
    user set.
    """
    props = os.environ.get("PULSE_PROP", "")
    if "media.role" not in props:
        os.environ["PULSE_PROP"] = (props + " " if props else "") + "media.role=music"


def server_label(server: str | None = None) -> str:
    return server or os.environ.get("PULSE_SERVER") or "default server"


def list_sinks(timeout: float = 2.0, server: str | None = None) -> tuple[list[str], str | None]:
    """The server's sink names and its default sink; OutputError if it does not answer.

    pulsectl's own connect timeout always waits out the whole timeout (its poll is not
    woken by the connection succeeding), which made every start and reconnect take
    two seconds. So the probe connects without one, in a helper thread that we wait
    for at most `timeout`: an absent server fails at once, a hung one is given up on.
    """
    import pulsectl

    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            with pulsectl.Pulse(APP_NAME + "-probe", server=server) as pulse:
                names = [s.name for s in pulse.sink_list()]
                result["ok"] = (names, pulse.server_info().default_sink_name)
        except pulsectl.PulseError as exc:
            result["error"] = exc

    thread = threading.Thread(target=probe, name="pulse-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if "ok" in result:
        return result["ok"]
    reason = result.get("error") or f"no answer within {timeout:g} s"
    raise OutputError(
        f"pulse: cannot connect to the sound server ({server_label(server)}): {reason}"
    )


class PulseOutput:
    """A playback stream on a PulseAudio (or pipewire-pulse) server."""

    name = "pulse"

    def __init__(
        self, sink: str | None = None, *, latency_ms: float = 200.0, server: str | None = None
    ) -> None:
        self.sink = sink
        self.server = server  # None: $PULSE_SERVER or the session's default
        self.latency_ms = latency_ms
        self.buffer_seconds = latency_ms / 1000.0  # what the device holds after a write
        self.paced = True
        self.xruns = 0
        self._lib: _Lib | None = None
        self._stream: int | None = None
        self._frame_bytes = 0
        self._connected_sink: str | None = None

    def open(self, rate: int, channels: int) -> None:
        self.close()
        if self._lib is None:
            self._lib = _Lib()
        names, default = list_sinks(server=self.server)
        if self.sink is not None and self.sink not in names:
            raise OutputError(
                f"pulse: no such sink {self.sink!r} on {server_label(self.server)} "
                f"(available: {', '.join(names) or 'none'})"
            )
        _ensure_role_property()
        spec = _SampleSpec(_PA_SAMPLE_FLOAT32LE, rate, channels)
        self._frame_bytes = 4 * channels
        tlength = int(rate * self.latency_ms / 1000.0) * self._frame_bytes
        attr = _BufferAttr(_NO_VALUE, tlength, _NO_VALUE, _NO_VALUE, _NO_VALUE)
        err = ctypes.c_int(0)
        stream = self._lib.new(
            self.server.encode() if self.server else None, APP_NAME.encode(), _PA_STREAM_PLAYBACK,
            self.sink.encode() if self.sink else None, b"infiniloop music",
            ctypes.byref(spec), None, ctypes.byref(attr), ctypes.byref(err),
        )  # fmt: skip
        if not stream:
            raise OutputError(
                f"pulse: cannot open a stream on {self.sink or 'the default sink'} "
                f"({server_label(self.server)}): {self._lib.error_text(err.value)}"
            )
        self._stream = stream
        self._connected_sink = self.sink or default

    def write(self, frames: np.ndarray) -> None:
        if self._stream is None or self._lib is None:
            raise OutputError("pulse: stream is not open")
        data = np.ascontiguousarray(frames, dtype=np.float32)
        err = ctypes.c_int(0)
        if self._lib.write(self._stream, data.ctypes.data, data.nbytes, ctypes.byref(err)) < 0:
            message = self._lib.error_text(err.value)
            self._free()
            raise OutputError(f"pulse: lost the stream on {server_label(self.server)}: {message}")

    def discard(self) -> None:
        """Drop what the server holds but has not played (after it ran dry mid-write,
        the rest of that block waits there to start the sound mid-waveform)."""
        if self._stream is not None and self._lib is not None:
            err = ctypes.c_int(0)
            if self._lib.flush(self._stream, ctypes.byref(err)) < 0:
                log.debug("pulse: flush failed: %s", self._lib.error_text(err.value))

    def close(self) -> None:
        if self._stream is not None and self._lib is not None:
            err = ctypes.c_int(0)
            # Let what is buffered play out (at most latency_ms); errors mean it is gone.
            self._lib.drain(self._stream, ctypes.byref(err))
        self._free()

    def _free(self) -> None:
        if self._stream is not None and self._lib is not None:
            stream, self._stream = self._stream, None
            self._lib.free(stream)

    def describe(self) -> str:
        sink = self._connected_sink or self.sink or "default sink"
        return f"pulse: sink {sink} (server {server_label(self.server)})"
