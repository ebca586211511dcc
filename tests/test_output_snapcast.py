"""The Snapcast output against a real snapserver (Debian), and a real snapclient writing a file.

snapserver runs with a private config on 127.0.0.1 ports; its JSON-RPC
`Server.GetStatus` must show our stream playing, and what snapclient plays (its
`file` player) must be our tone, continuous, at the level we sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from infiniloopd.outputs.base import OutputError
from infiniloopd.outputs.snapcast import PENDING_SECONDS, SnapcastOutput, parse_sample_format
from infiniloopd.player import Player
from tests.audio_checks import silent_blocks, tone_level, tone_loop
from tests.audio_servers import RATE, _stop_process

FREQ = 440.0
LEVEL = 0.3

need_snapserver = pytest.mark.skipif(
    not shutil.which("snapserver"), reason="needs snapserver (Debian)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SnapServer:
    """A private snapserver: one source, its ports on 127.0.0.1, its JSON-RPC."""

    def __init__(self, root: Path, source: str) -> None:
        self.root = root
        self.stream_port, self.rpc_port, self.http_port = free_port(), free_port(), free_port()
        self.log_path = root / "snapserver.log"
        conf = root / "snapserver.conf"
        conf.write_text(
            f"[server]\ndatadir = {root}\n"
            f"[http]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {self.http_port}\n"
            f"[tcp]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {self.rpc_port}\n"
            f"[stream]\nbind_to_address = 127.0.0.1\nport = {self.stream_port}\n"
            f"source = {source}\n"
            "[logging]\nsink = stderr\n"
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["snapserver", "-c", str(conf)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.rpc("Server.GetRPCVersion")
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"snapserver did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def rpc(self, method: str, params: dict | None = None) -> dict:
        with socket.create_connection(("127.0.0.1", self.rpc_port), timeout=3) as sock:
            request = {"id": 1, "jsonrpc": "2.0", "method": method}
            if params is not None:
                request["params"] = params
            sock.sendall(json.dumps(request).encode() + b"\r\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def stream_status(self, name: str = "infiniloop") -> str | None:
        streams = self.rpc("Server.GetStatus")["result"]["server"]["streams"]
        return next((s["status"] for s in streams if s["id"] == name), None)

    def wait_status(self, wanted: str, timeout: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout
        status = self.stream_status()
        while status != wanted and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.stream_status()
        return status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop_process(self.proc)


@pytest.fixture
def pipe_server(tmp_path):
    fifo = tmp_path / "snapfifo"
    server = SnapServer(
        tmp_path, f"pipe://{fifo}?name=infiniloop&mode=create&sampleformat=48000:16:2"
    )
    server.fifo = fifo
    yield server
    server.stop()


@contextlib.contextmanager
def playing(out: SnapcastOutput):
    player = Player(out, rate=RATE, channels=2, volume=1.0)
    player.start(retry=True)
    try:
        player.play_loop("tone", tone_loop(FREQ, 1.0, LEVEL), 0.0)
        yield player
    finally:
        player.close()


@need_snapserver
def test_pipe_source_plays_and_a_snapclient_hears_it_continuously(pipe_server, tmp_path):
    if not shutil.which("snapclient"):
        pytest.skip("needs snapclient (Debian)")
    out_file = tmp_path / "client.raw"
    with playing(SnapcastOutput(str(pipe_server.fifo))) as player:
        assert pipe_server.wait_status("playing") == "playing", pipe_server.log()
        client = subprocess.Popen(
            ["snapclient", "-h", "127.0.0.1", "-p", str(pipe_server.stream_port),
             "--hostID", "infiniloop-test", "--player", f"file:filename={out_file}",
             "--logsink", "null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(8.0)
        finally:
            _stop_process(client)
        assert player.status().output_ok
    pcm = np.frombuffer(out_file.read_bytes(), dtype="<i2").reshape(-1, 2) / 32768.0
    loud = np.flatnonzero(np.abs(pcm[:, 0]) > 1e-3)
    assert loud.size, "snapclient played only silence"
    body = pcm[loud[0] + RATE // 2 : loud[-1]]
    assert body.shape[0] > 3 * RATE, f"only {body.shape[0] / RATE:.1f} s reached snapclient"
    assert silent_blocks(body).size == 0, "a gap in what snapclient played"
    assert abs(tone_level(body[: 3 * RATE, 0], FREQ) - LEVEL) < 0.02
    b, a = signal.iirnotch(FREQ, 5.0, RATE)
    rest = signal.filtfilt(b, a, body[:, 0])[RATE // 10 : -RATE // 10]
    assert np.abs(rest).max() < 0.1 * LEVEL, "a click in what snapclient played"


@need_snapserver
def test_tcp_source_plays(tmp_path):
    port = free_port()
    server = SnapServer(tmp_path, f"tcp://127.0.0.1:{port}?name=infiniloop&mode=server")
    try:
        assert server.stream_status() == "idle"
        with playing(SnapcastOutput(f"tcp://127.0.0.1:{port}")) as player:
            assert server.wait_status("playing") == "playing", server.log()
            assert player.status().output_ok
    finally:
        server.stop()


@pytest.mark.parametrize("reader", [True, False], ids=["reader-never-reads", "no-reader"])
def test_a_snapserver_that_does_not_read_never_blocks_us(tmp_path, reader):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # A snapserver that opened the pipe but hangs, or none at all.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        out = SnapcastOutput(str(fifo), pace=False)
        out.open(RATE, 2)
        block = tone_loop(FREQ, 0.02, LEVEL)
        thread = threading.Thread(target=lambda: [out.write(block) for _ in range(500)])
        thread.start()
        thread.join(20.0)
        assert not thread.is_alive(), "writing 10 s into an unread pipe blocked"
        assert out.xruns > 0  # what did not fit was dropped, and counted
        # At most PENDING_SECONDS wait in the pipe: a late snapserver is not left late.
        queued = os.read(fd, 1 << 20) if fd is not None else b""
        assert len(queued) <= PENDING_SECONDS * RATE * 4
        out.close()
    finally:
        if fd is not None:
            os.close(fd)


def test_no_reader_and_no_pipe_are_one_line_errors(tmp_path):
    with pytest.raises(OutputError, match="no pipe at"):
        SnapcastOutput(str(tmp_path / "missing")).open(RATE, 2)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(OutputError, match="is not a pipe"):
        SnapcastOutput(str(tmp_path / "plain")).open(RATE, 2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="cannot connect"):
        SnapcastOutput(f"tcp://127.0.0.1:{free_port()}").open(RATE, 2)
    with pytest.raises(OutputError, match="does not match output.rate 48000"):
        SnapcastOutput(str(fifo), sample_format="44100:16:2").open(RATE, 2)


def test_sample_formats_convert_exactly(tmp_path):
    assert parse_sample_format("48000:32:2") == (48000, 32, 2)
    with pytest.raises(OutputError, match="RATE:BITS:CHANNELS"):
        parse_sample_format("48000-16-2")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        out = SnapcastOutput(str(fifo), sample_format="48000:32:2", pace=False)
        out.open(RATE, 2)
        block = np.array([[0.5, -0.25], [1.0, -1.0]], dtype=np.float32)
        out.write(block)
        got = np.frombuffer(os.read(reader, 4096), dtype="<i4").reshape(-1, 2)
        out.close()
    finally:
        os.close(reader)
    np.testing.assert_array_equal(got, [[1073741824, -536870912], [2147483647, -2147483647]])
