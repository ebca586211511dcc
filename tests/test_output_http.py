"""The HTTP stream output, heard by real clients: ffmpeg decoding Ogg Opus and MP3.

A player plays a pure tone into the HTTP output; listeners decode it and the PCM is
analysed: continuous (no silent block, no click left after notching the tone out),
at the level played. Also: several listeners at once, one that never reads dropped
while the others keep receiving, the ICY title, the password.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest
from scipy import signal

from infiniloopd.outputs.http import HttpOutput, icy_block, mp3_frame_length
from infiniloopd.player import Player
from tests.audio_checks import silent_blocks, tone_level, tone_loop
from tests.audio_servers import RATE

pytestmark = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs ffmpeg (Debian)")

FREQ = 440.0
LEVEL = 0.3
TITLE = "rainy 'lo-fi' beats"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def playing(out: HttpOutput):
    """A player playing the tone into `out` until the block ends."""
    player = Player(out, rate=RATE, channels=2, volume=1.0)
    player.start()
    try:
        out.set_metadata(TITLE)
        player.play_loop("tone", tone_loop(FREQ, 1.0, LEVEL), 0.0)
        time.sleep(1.0)  # a little audio in the log, as a running daemon has
        yield out
    finally:
        player.close()


@pytest.fixture(scope="module")
def stream():
    out = HttpOutput(f"127.0.0.1:{free_port()}", formats=("opus", "mp3"))
    with playing(out):
        yield out


def url(out: HttpOutput, path: str) -> str:
    return f"http://{out.host}:{out.port}{path}"


def decoder(source: str, seconds: float) -> subprocess.Popen:
    """ffmpeg decoding `seconds` of the stream to 48 kHz stereo float PCM (in a temp file,
    so several decoders run at once without waiting for us to read their output)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by decoded())
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", source, "-t", str(seconds),
         "-f", "f32le", "-ac", "2", "-ar", str(RATE), "-"],
        stdout=out, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.pcm_file = out  # type: ignore[attr-defined]
    return proc


def decoded(proc: subprocess.Popen) -> np.ndarray:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")
    with proc.pcm_file as f:  # type: ignore[attr-defined]
        f.seek(0)
        return np.frombuffer(f.read(), dtype=np.float32).reshape(-1, 2)


def check_continuous_tone(pcm: np.ndarray, seconds: float, what: str) -> None:
    assert pcm.shape[0] >= (seconds - 0.1) * RATE, f"{what}: only {pcm.shape[0] / RATE:.1f} s"
    body = pcm[RATE // 2 :]  # past the decoder's start-up
    assert silent_blocks(body).size == 0, f"{what}: silent blocks (a gap)"
    level = tone_level(body[: RATE * 10, 0], FREQ)
    assert abs(level - LEVEL) < 0.03, f"{what}: tone level {level:.3f}, expected {LEVEL}"
    # A dropout or a repeated/missing piece shows as a broadband click: notch out the
    # tone and look at what is left, block by block.
    b, a = signal.iirnotch(FREQ, 5.0, RATE)
    rest = signal.filtfilt(b, a, body[:, 0])[RATE // 10 : -RATE // 10]
    block = RATE // 50
    peaks = np.abs(rest[: rest.size // block * block]).reshape(-1, block).max(axis=1)
    assert peaks.max() < 0.1 * LEVEL, f"{what}: a click of {peaks.max():.3f} after notching"


def test_opus_and_mp3_decode_continuously_with_several_listeners(stream):
    seconds = 20.0
    procs = {
        "opus": decoder(url(stream, "/stream.opus"), seconds),
        "mp3": decoder(url(stream, "/stream.mp3"), seconds),  # ffmpeg asks for ICY titles
        "default (/stream, opus)": decoder(url(stream, "/stream"), seconds),
    }
    time.sleep(2.0)
    assert stream.listeners == {"opus": 2, "mp3": 1}
    for what, proc in procs.items():
        check_continuous_tone(decoded(proc), seconds, what)


def test_a_listener_that_stops_reading_is_dropped_while_others_keep_receiving(stream):
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((stream.host, stream.port))
    stalled.sendall(b"GET /stream.mp3 HTTP/1.0\r\n\r\n")  # and never reads
    try:
        dropped_before = stream.dropped
        proc = decoder(url(stream, "/stream.mp3"), 12.0)
        pcm = decoded(proc)
        check_continuous_tone(pcm, 12.0, "mp3 next to a stalled listener")
        deadline = time.monotonic() + 30
        while stream.listeners["mp3"] > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stream.listeners["mp3"] == 0, "the stalled listener was never dropped"
        assert stream.dropped > dropped_before or _closed_by_server(stalled)
    finally:
        stalled.close()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5.0)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def read_headers(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the headers"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return lines[0], headers, rest


def test_mp3_listeners_get_the_title_as_icy_metadata(stream):
    with socket.create_connection((stream.host, stream.port), timeout=10) as sock:
        sock.sendall(b"GET /stream.mp3 HTTP/1.0\r\nIcy-MetaData: 1\r\n\r\n")
        status, headers, data = read_headers(sock)
        assert " 200 " in status and headers["content-type"] == "audio/mpeg"
        metaint = int(headers["icy-metaint"])
        while len(data) < metaint + 1 + 255 * 16:
            data += sock.recv(65536)
    audio, length = data[:metaint], data[metaint] * 16
    meta = data[metaint + 1 : metaint + 1 + length].rstrip(b"\0").decode()
    assert meta == "StreamTitle='rainy \u2019lo-fi\u2019 beats';"
    assert mp3_frame_length(audio[:4]) > 0, "the stream does not start on an MP3 frame"
    assert icy_block(TITLE)[0] == length // 16


def test_opus_listener_starts_with_headers_and_recent_audio(stream):
    with socket.create_connection((stream.host, stream.port), timeout=10) as sock:
        sock.sendall(b"GET /stream.opus HTTP/1.0\r\n\r\n")
        status, headers, data = read_headers(sock)
        while len(data) < 4096:
            data += sock.recv(65536)
    assert " 200 " in status and headers["content-type"] == "audio/ogg"
    assert data[:4] == b"OggS" and b"OpusHead" in data[:100] and b"OpusTags" in data[:400]


def test_unknown_path_is_404(stream):
    with socket.create_connection((stream.host, stream.port), timeout=10) as sock:
        sock.sendall(b"GET /nope HTTP/1.0\r\n\r\n")
        status, _, _ = read_headers(sock)
    assert " 404 " in status


def test_password_is_asked_and_checked():
    out = HttpOutput(f"127.0.0.1:{free_port()}", formats=("mp3",), password="s3cret")
    with playing(out):
        statuses = []
        for auth in (None, "user:wrong", "anyone:s3cret"):
            with socket.create_connection((out.host, out.port), timeout=10) as sock:
                extra = ""
                if auth:
                    extra = f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}\r\n"
                sock.sendall(f"GET /stream HTTP/1.0\r\n{extra}\r\n".encode())
                status, headers, _ = read_headers(sock)
                statuses.append(status.split()[1])
        assert statuses == ["401", "401", "200"]
        # A real client with the password in the URL decodes the stream.
        pcm = decoded(decoder(f"http://anyone:s3cret@{out.host}:{out.port}/stream", 3.0))
        assert pcm.shape[0] >= 2.9 * RATE and tone_level(pcm[RATE:, 0], FREQ) > 0.8 * LEVEL
