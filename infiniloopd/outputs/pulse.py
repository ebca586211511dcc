"""The PulseAudio output (also PipeWire's pulse server), through libpulse-simple via ctypes.

The stream carries application.name=infiniloop and media.role=music so the user's
mixer shows and routes it like any music player. `pa_simple_write` blocks until the
server has room, which paces the audio thread; ctypes releases the GIL meanwhile.

A stall of the whole process (SIGSTOP, a debugger, a VM pause) lets the server's
buffer run dry. If the thread was blocked inside `pa_simple_write` at that moment,
the block it holds would be played straight after the underrun's silence, starting
mid-waveform: a click. So before each write the thread first waits in our own code
(short sleeps) until libpulse has room for the whole block; a stall then lands in
that wait, the block is not yet handed over, and after the wait we can see that the
buffer drained (away longer than what was buffered, or a latency far below the one
after the previous write) and fade the block in over a few milliseconds instead.
The room is read with `pa_stream_writable_size` on the stream inside the pa_simple
object (its third field, unchanged since libpulse 0.9); that layout is checked once
at open, and if it does not hold we keep the plain blocking write.
pulsectl is used for what the simple API cannot do: finding sinks, and saying
"no such sink" instead of a bare error code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time

import numpy as np

from infiniloopd.outputs.base import OutputError

log = logging.getLogger(__name__)

APP_NAME = "infiniloop"
_PA_STREAM_PLAYBACK = 1
_PA_SAMPLE_FLOAT32LE = 5
_NO_VALUE = 0xFFFFFFFF  # (uint32_t) -1: "server default" in pa_buffer_attr
_PA_STREAM_READY = 2
_LATENCY_FAILED = 0xFFFFFFFFFFFFFFFF  # (pa_usec_t) -1
_SIZE_FAILED = ctypes.c_size_t(-1).value
# Resuming after the buffer ran dry: a linear fade-in this long instead of a step.
RESUME_FADE_MS = 8.0
# How long one step of the wait for room sleeps, and how long we wait at most
# before leaving it to the (blocking) write: well beyond a normal server request.
_ROOM_POLL_S = 0.004
_ROOM_WAIT_MAX_S = 0.5
# Below this fraction of the latency after the previous write, the buffer ran dry.
_DRAINED_FRACTION = 0.25
# Stall detection starts once this much is buffered after a write (the stream settled).
_SETTLED_LATENCY_S = 0.05


class _Simple(ctypes.Structure):
    """The leading fields of libpulse-simple's private `struct pa_simple`."""

    _fields_ = [
        ("mainloop", ctypes.c_void_p),
        ("context", ctypes.c_void_p),
        ("stream", ctypes.c_void_p),
    ]


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
        self.get_latency = simple.pa_simple_get_latency
        self.get_latency.restype = ctypes.c_uint64
        self.get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        self.writable_size = pulse.pa_stream_writable_size
        self.writable_size.restype = ctypes.c_size_t
        self.writable_size.argtypes = [ctypes.c_void_p]
        self.stream_state = pulse.pa_stream_get_state
        self.stream_state.restype = ctypes.c_int
        self.stream_state.argtypes = [ctypes.c_void_p]
        self.stream_context = pulse.pa_stream_get_context
        self.stream_context.restype = ctypes.c_void_p
        self.stream_context.argtypes = [ctypes.c_void_p]
        self.lock = pulse.pa_threaded_mainloop_lock
        self.lock.restype = None
        self.lock.argtypes = [ctypes.c_void_p]
        self.unlock = pulse.pa_threaded_mainloop_unlock
        self.unlock.restype = None
        self.unlock.argtypes = [ctypes.c_void_p]
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
    """The server's sink names and its default sink; OutputError if it does not answer."""
    import pulsectl

    try:
        with pulsectl.Pulse(APP_NAME + "-probe", server=server, connect=False) as pulse:
            pulse.connect(timeout=timeout)
            names = [s.name for s in pulse.sink_list()]
            default = pulse.server_info().default_sink_name
    except pulsectl.PulseError as exc:
        raise OutputError(
            f"pulse: cannot connect to the sound server ({server_label(server)}): {exc}"
        ) from None
    return names, default


class PulseOutput:
    """A playback stream on a PulseAudio (or pipewire-pulse) server."""

    name = "pulse"

    def __init__(
        self, sink: str | None = None, *, latency_ms: float = 200.0, server: str | None = None
    ) -> None:
        self.sink = sink
        self.server = server  # None: $PULSE_SERVER or the session's default
        self.latency_ms = latency_ms
        self.paced = True
        self.xruns = 0
        self._lib: _Lib | None = None
        self._stream: int | None = None
        self._frame_bytes = 0
        self._connected_sink: str | None = None
        self._inner: _Simple | None = None  # mainloop/stream of the pa_simple, if usable
        self._ramp = np.zeros((0, 1), dtype=np.float32)
        self._scratch = np.zeros((0, 1), dtype=np.float32)
        self._err = ctypes.c_int(0)
        self._last_end = 0.0  # time.monotonic() when the previous write returned
        self._last_latency = 0.0  # seconds buffered right after the previous write
        self._flowing = False  # the server has been seen consuming this stream
        self.resume_fades = 0  # blocks faded in after the buffer ran dry

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
        self._inner = self._inner_stream(stream)
        fade = max(1, int(rate * RESUME_FADE_MS / 1000.0))
        self._ramp = (np.arange(1, fade + 1, dtype=np.float32) / fade)[:, None]
        self._last_end = 0.0
        self._last_latency = 0.0
        self._flowing = False

    def _inner_stream(self, stream: int) -> _Simple | None:
        """The pa_simple's mainloop and stream, if its layout is the one we expect."""
        lib = self._lib
        assert lib is not None
        inner = _Simple.from_address(stream)
        if not (inner.mainloop and inner.context and inner.stream):
            return None
        lib.lock(inner.mainloop)
        try:
            ok = (
                lib.stream_context(inner.stream) == inner.context
                and lib.stream_state(inner.stream) == _PA_STREAM_READY
            )
        finally:
            lib.unlock(inner.mainloop)
        if not ok:
            log.info("pulse: unexpected libpulse-simple layout; stalls may click on resume")
            return None
        return _Simple(inner.mainloop, inner.context, inner.stream)

    def write(self, frames: np.ndarray) -> None:
        if self._stream is None or self._lib is None:
            raise OutputError("pulse: stream is not open")
        data = np.ascontiguousarray(frames, dtype=np.float32)
        if self._inner is not None and self._last_end:
            if self._wait_for_room(data.nbytes):
                self._flowing = True
            if self._drained():
                data = self._faded_in(data)
        err = self._err
        if self._lib.write(self._stream, data.ctypes.data, data.nbytes, ctypes.byref(err)) < 0:
            message = self._lib.error_text(err.value)
            self._free()
            raise OutputError(f"pulse: lost the stream on {server_label(self.server)}: {message}")
        self._last_latency = self._latency() or 0.0
        self._last_end = time.monotonic()

    def _wait_for_room(self, nbytes: int) -> bool:
        """Sleep until libpulse can take `nbytes` without blocking (bounded; see module doc).

        True if room came while we slept: the server is consuming, the stream flows.
        """
        lib, inner = self._lib, self._inner
        assert lib is not None and inner is not None
        give_up = time.monotonic() + _ROOM_WAIT_MAX_S
        slept = False
        while True:
            lib.lock(inner.mainloop)
            try:
                room = lib.writable_size(inner.stream)
            finally:
                lib.unlock(inner.mainloop)
            if room == _SIZE_FAILED:
                return False  # a failed stream is reported by the write itself
            if room >= nbytes:
                return slept
            if time.monotonic() > give_up:
                return False
            time.sleep(_ROOM_POLL_S)
            slept = True

    def _latency(self) -> float | None:
        """Seconds from now until what was written is heard; None if it cannot be told."""
        assert self._lib is not None
        usec = self._lib.get_latency(self._stream, ctypes.byref(self._err))
        return None if usec == _LATENCY_FAILED else usec / 1e6

    def _drained(self) -> bool:
        """Whether the server's buffer ran dry since the previous write (a stall)."""
        if self._last_latency < _SETTLED_LATENCY_S:
            # Nothing to compare with yet: the stream is still filling up (its
            # reported latency is tiny or erratic then) or the server tells none.
            return False
        if not self._flowing:
            # A stream that has not started yet (PulseAudio waits for its prebuffer)
            # keeps all it holds however long we wait, and reports odd latencies.
            return False
        away = time.monotonic() - self._last_end
        if away > self._last_latency:
            return True  # we were away longer than what was buffered
        if away < 0.5 * self._last_latency:
            return False  # a normal pause between writes
        latency = self._latency()
        return latency is None or latency < _DRAINED_FRACTION * self._last_latency

    def _faded_in(self, data: np.ndarray) -> np.ndarray:
        """`data` with a short linear fade-in at its start, in a reused scratch buffer."""
        if self._scratch.shape != data.shape:
            self._scratch = np.empty_like(data)  # only when the block size changes
        out = self._scratch
        out[...] = data
        n = min(len(self._ramp), len(out))
        out[:n] *= self._ramp[:n]
        self.resume_fades += 1
        log.info("pulse: the buffer ran dry (process stalled?); resuming with a fade-in")
        return out

    def close(self) -> None:
        if self._stream is not None and self._lib is not None:
            err = ctypes.c_int(0)
            # Let what is buffered play out (at most latency_ms); errors mean it is gone.
            self._lib.drain(self._stream, ctypes.byref(err))
        self._free()

    def _free(self) -> None:
        if self._stream is not None and self._lib is not None:
            stream, self._stream = self._stream, None
            self._inner = None
            self._lib.free(stream)

    def describe(self) -> str:
        sink = self._connected_sink or self.sink or "default sink"
        return f"pulse: sink {sink} (server {server_label(self.server)})"
