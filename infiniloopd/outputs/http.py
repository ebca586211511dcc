"""The HTTP stream output: Ogg Opus (PyAV) and MP3 (lameenc) for any number of listeners.

Each format has one encoder, shared by every listener of that format; its output is
kept as a short log of whole units (Ogg pages, MP3 frames) that each listener's
thread reads at its own pace. A new listener first gets the Ogg headers and about
half a second of recent audio, so players start within a second or two; a listener
that stops reading falls behind the log (or times out on its socket) and is
dropped, without anyone else noticing. MP3 listeners that ask for it
(`Icy-MetaData: 1`) get the prompt as StreamTitle every `icy-metaint` bytes.
"""

from __future__ import annotations

import base64
import collections
import hmac
import http.server
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np

from infiniloopd.outputs.base import OutputError
from infiniloopd.outputs.pacing import Pacer
from infiniloopd.outputs.pcm import S16Converter

log = logging.getLogger(__name__)

FORMATS = ("opus", "mp3")
CONTENT_TYPES = {"opus": "audio/ogg", "mp3": "audio/mpeg"}
# Recent audio a new listener starts with: enough for a player to start at once.
BURST_SECONDS = 0.5
# Audio kept for listeners that read late; one further behind is dropped.
RETAIN_SECONDS = 5.0
# A send that cannot complete in this long means the listener stopped reading.
SEND_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0  # seconds to send the request line and headers
# Kernel send buffer per listener: small, so a stalled reader is noticed in seconds.
SEND_BUFFER = 32 * 1024
ICY_METAINT = 16000
OGG_PAGE_SECONDS = 0.1


class _Sink:
    """A write-only file object collecting what the muxer writes (whole pages, flushed)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        chunks, self.chunks = self.chunks, []
        return chunks


class _OpusEncoder:
    """Ogg Opus through PyAV (libopus + FFmpeg's Ogg muxer), one page per unit."""

    def __init__(self, rate: int, channels: int, bitrate_kbps: int) -> None:
        import av

        self._av = av
        self.rate = rate
        self.layout = "stereo" if channels == 2 else "mono"
        self._sink = _Sink()
        options = {"page_duration": str(int(OGG_PAGE_SECONDS * 1e6)), "flush_packets": "1"}
        self._container = av.open(self._sink, "w", format="ogg", options=options)
        self._stream = self._container.add_stream("libopus", rate=48000, layout=self.layout)
        self._stream.bit_rate = bitrate_kbps * 1000
        self._pts = 0
        self._in_header = True
        self.header = b""  # the OpusHead and OpusTags pages, sent to every new listener

    def encode(self, frames: np.ndarray) -> list[bytes]:
        frame = self._av.AudioFrame.from_ndarray(
            np.ascontiguousarray(frames, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout=self.layout,
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(frames)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        pages = []
        for page in self._sink.take():
            granule = int.from_bytes(page[6:14], "little") if len(page) >= 14 else 0
            if self._in_header and granule == 0:
                self.header += page  # the header pages carry granule position 0
                continue
            self._in_header = False
            pages.append(page)
        return pages

    def close(self) -> None:
        try:
            self._container.close()
        except Exception as exc:  # closing a half-written stream must not raise
            log.debug("http: closing the Opus muxer failed: %s", exc)


# MPEG audio Layer III: bitrates (kbit/s) by version and index, sample rates by version.
_MP3_BITRATES = {
    3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # MPEG-1
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2
    0: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG-2.5
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mp3_frame_length(header: bytes) -> int:
    """Bytes in the Layer III frame starting with `header` (4 bytes); 0 if not a frame header."""
    if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xE0) != 0xE0:
        return 0
    version = (header[1] >> 3) & 3
    layer = (header[1] >> 1) & 3
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return 0
    bitrate = _MP3_BITRATES[version][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    samples = 1152 if version == 3 else 576
    return samples // 8 * bitrate // rate + padding


class _Mp3Encoder:
    """MP3 through lameenc (LAME), cut into whole frames so listeners join on a frame."""

    def __init__(self, rate: int, channels: int, bitrate_kbps: int) -> None:
        import lameenc

        self._enc = lameenc.Encoder()
        self._enc.set_bit_rate(bitrate_kbps)
        self._enc.set_in_sample_rate(rate)
        self._enc.set_channels(channels)
        self._enc.set_quality(5)  # LAME's "good, fast" setting: little CPU per listener count
        self._conv = S16Converter(channels)
        self._pending = b""
        self.header = b""

    def encode(self, frames: np.ndarray) -> list[bytes]:
        data = self._pending + bytes(self._enc.encode(self._conv.convert(frames).tobytes()))
        out = []
        pos = 0
        while len(data) - pos >= 4:
            length = mp3_frame_length(data[pos : pos + 4])
            if length == 0:  # not on a frame boundary (cannot happen with LAME): resync
                pos += 1
                continue
            if len(data) - pos < length:
                break
            out.append(data[pos : pos + length])
            pos += length
        self._pending = data[pos:]
        return out

    def close(self) -> None:
        pass


@dataclass
class _Unit:
    seq: int
    data: bytes
    at: float  # time.monotonic() when published


class _Channel:
    """One format: its encoder and the log of recent units that listeners read."""

    def __init__(self, fmt: str, encoder: _OpusEncoder | _Mp3Encoder) -> None:
        self.fmt = fmt
        self.encoder = encoder
        self.units: collections.deque[_Unit] = collections.deque()
        self.cond = threading.Condition()
        self.next_seq = 0
        self.closed = False

    def publish(self, chunks: list[bytes]) -> None:
        if not chunks:
            return
        now = time.monotonic()
        with self.cond:
            for data in chunks:
                self.units.append(_Unit(self.next_seq, data, now))
                self.next_seq += 1
            while self.units and now - self.units[0].at > RETAIN_SECONDS:
                self.units.popleft()
            self.cond.notify_all()

    def start_seq(self) -> int:
        """Where a new listener starts: about BURST_SECONDS behind the live edge."""
        with self.cond:
            now = time.monotonic()
            for unit in self.units:
                if now - unit.at <= BURST_SECONDS:
                    return unit.seq
            return self.next_seq

    def read(self, seq: int, timeout: float) -> list[_Unit] | None:
        """Units from `seq` on (waiting up to `timeout`); None if `seq` was already dropped."""
        with self.cond:
            if not self.units or self.units[-1].seq < seq:
                self.cond.wait_for(
                    lambda: self.closed or (self.units and self.units[-1].seq >= seq), timeout
                )
            if self.closed:
                return []
            if self.units and self.units[0].seq > seq:
                return None
            first = self.units[0].seq if self.units else seq
            return list(itertools.islice(self.units, max(0, seq - first), None))

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.encoder.close()


def icy_block(title: str) -> bytes:
    """One ICY metadata block: a length byte (in 16-byte units), then StreamTitle padded."""
    text = "StreamTitle='" + title.replace("'", "\u2019") + "';"
    data = text.encode("utf-8")[: 255 * 16]
    units = -(-len(data) // 16)
    return bytes([units]) + data.ljust(units * 16, b"\0")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    output: HttpOutput


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    server_version = "infiniloop"
    # A peer that does not send its request in time is dropped: idle connections must
    # not pile up threads and descriptors (streaming sets its own send timeout).
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        out = self.server.output
        if out.password is not None and not self._authorized(out.password):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="infiniloop"')
            self.end_headers()
            return
        path = self.path.split("?", 1)[0]
        fmt = out.formats[0] if path == "/stream" else None
        for name in out.formats:
            if path == f"/stream.{name}":
                fmt = name
        channel = out.channels.get(fmt) if fmt else None
        if channel is None:
            self.send_error(404, "no such stream (try /stream)")
            return
        icy = fmt == "mp3" and self.headers.get("Icy-MetaData", "").strip() == "1"
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES[fmt])
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("icy-name", "infiniloop")
        if icy:
            self.send_header("icy-metaint", str(ICY_METAINT))
        self.end_headers()
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.settimeout(SEND_TIMEOUT)
        out.listener_joined(fmt)
        try:
            self._stream(channel, icy)
        except (OSError, TimeoutError) as exc:
            log.info("http: listener %s gone (%s)", self.address_string(), exc)
        finally:
            out.listener_left(fmt)

    def _authorized(self, password: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _user, _, given = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), password.encode())

    def _stream(self, channel: _Channel, icy: bool) -> None:
        out = self.server.output
        to_meta = ICY_METAINT
        sent_title: str | None = None
        if channel.encoder.header:
            self.wfile.write(channel.encoder.header)
        seq = channel.start_seq()
        while not out.closing:
            units = channel.read(seq, timeout=1.0)
            if units is None:
                log.info("http: listener %s fell behind; dropped", self.address_string())
                out.dropped += 1
                return
            if not units:
                if channel.closed:
                    return
                continue
            seq = units[-1].seq + 1
            data = b"".join(u.data for u in units)
            if not icy:
                self.wfile.write(data)
                continue
            while data:
                part, data = data[:to_meta], data[to_meta:]
                self.wfile.write(part)
                to_meta -= len(part)
                if to_meta == 0:
                    title = out.title
                    self.wfile.write(icy_block(title) if title != sent_title else b"\0")
                    sent_title = title
                    to_meta = ICY_METAINT


class HttpOutput:
    """Serves the stream on `listen` (HOST:PORT) as /stream.opus, /stream.mp3 and /stream."""

    name = "http"

    def __init__(
        self,
        listen: str = "127.0.0.1:8000",
        *,
        formats: tuple[str, ...] = FORMATS,
        password: str | None = None,
        bitrate_kbps: int = 128,
        pace: bool = True,
    ) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise OutputError(f"http: listen: expected HOST:PORT, got {listen!r}")
        self.host, self.port = host.strip("[]"), int(port)
        self.formats = tuple(formats)
        self.password = password
        self.bitrate_kbps = bitrate_kbps
        self.pace = pace  # False inside a fan-out, which already delivers in real time
        self.paced = True
        self.xruns = 0
        self.title = ""
        self.channels: dict[str, _Channel] = {}
        self.listeners: dict[str, int] = {f: 0 for f in self.formats}
        self.dropped = 0
        self.closing = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pacer: Pacer | None = None
        self._lock = threading.Lock()

    def open(self, rate: int, channels: int) -> None:
        self.close()
        if channels not in (1, 2):
            raise OutputError(f"http: expected 1 or 2 channels for the stream, got {channels}")
        try:
            server = _Server((self.host, self.port), _Handler, bind_and_activate=True)
        except OSError as exc:
            raise OutputError(
                f"http: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        server.output = self
        self.closing = False
        self.channels = {}
        for fmt in self.formats:
            if fmt == "opus":
                encoder: _OpusEncoder | _Mp3Encoder = _OpusEncoder(
                    rate, channels, self.bitrate_kbps
                )
            else:
                encoder = _Mp3Encoder(rate, channels, self.bitrate_kbps)
            self.channels[fmt] = _Channel(fmt, encoder)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="infiniloop-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        self._pacer = Pacer(rate) if self.pace else None

    def write(self, frames: np.ndarray) -> None:
        if self._server is None:
            raise OutputError("http: stream is not open")
        for channel in self.channels.values():
            channel.publish(channel.encoder.encode(frames))
        if self._pacer is not None:
            self._pacer.wait(int(frames.shape[0]))

    def set_metadata(self, title: str) -> None:
        """The title MP3 listeners see (ICY StreamTitle): the prompt of what plays."""
        self.title = title

    def listener_joined(self, fmt: str) -> None:
        with self._lock:
            self.listeners[fmt] += 1
        log.info("http: %s listener joined (%d now)", fmt, sum(self.listeners.values()))

    def listener_left(self, fmt: str) -> None:
        with self._lock:
            self.listeners[fmt] -= 1

    def close(self) -> None:
        self.closing = True
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for channel in self.channels.values():
            channel.close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def describe(self) -> str:
        paths = ", ".join(f"/stream.{f}" for f in self.formats)
        count = sum(self.listeners.values())
        auth = ", password" if self.password else ""
        return f"http: http://{self.host}:{self.port}/stream ({paths}{auth}), {count} listener(s)"
