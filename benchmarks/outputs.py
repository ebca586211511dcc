#!/usr/bin/env python3
"""Network outputs: the daemon's CPU with pulse + HTTP (Opus, MP3) + Snapcast, with 10
HTTP listeners, and with both cores busy; a new listener's start; the HTTP delay.

    python3 benchmarks/outputs.py [--seconds 20] [--no-stress]

Everything is private and on loopback: a PulseAudio with a null sink (its monitor
recorded), a snapserver with a pipe source, the daemon (synth generator) with
`outputs: [pulse, http, snapcast]`. The daemon's CPU (all its threads, from
/proc/PID/stat) is measured once the generator is idle, for each case:

1. pulse alone (the baseline);
2. pulse + HTTP (Opus and MP3 encoders running) + Snapcast, no listener;
3. the same with 10 HTTP listeners (5 Opus, 5 MP3; sockets read in this process);
4. case 3 with `stress-ng --cpu 2`: the local sink's underruns (PulseAudio's log),
   the player's stalls and the local output's underruns, which must all stay 0.

Then a new listener: when its first audio bytes arrive and how much audio it gets at
once; and how far the HTTP stream runs behind the local sink: the volume is stepped
down, and the step is found in the sink's monitor and in the MP3 stream (decoded by
ffmpeg, its bytes timed as they arrived). Stops by itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audio_servers import RATE, PulseServer, _stop_process  # noqa: E402
from tests.daemon_proc import Daemon  # noqa: E402
from tests.snapcast_server import SnapServer, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def measure_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def config(server: PulseServer, http_port: int | None, fifo: Path | None) -> dict:
    cfg = {
        "generator": {"backend": "synth", "seconds": 8, "prefetch": 1},
        "output": {"backend": "pulse", "sink": server.sink},
        "playback": {"crossfade": 2.0, "min_play": 3600, "volume": 80},
        "analysis": {"min_loop": 2.0},
    }
    if http_port is not None:
        cfg["outputs"] = [
            {"backend": "pulse", "sink": server.sink},
            {"backend": "http", "listen": f"127.0.0.1:{http_port}", "formats": ["opus", "mp3"]},
            {"backend": "snapcast", "path": str(fifo)},
        ]
    return cfg


def wait_idle(d: Daemon, timeout: float = 120.0) -> None:
    """Until a loop plays and the generator has nothing more to do (prefetch reached)."""
    d.wait_status(lambda s: s["loop"] is not None and not s["generating"], timeout, "idle")
    time.sleep(2.0)


class Listener(threading.Thread):
    """An HTTP listener that reads everything, noting when each piece arrived."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        self.connected = time.monotonic()
        self.chunks: list[tuple[float, bytes]] = []
        self.stop_flag = False

    def run(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        body = head.split(b"\r\n\r\n", 1)[1]
        if body:
            self.chunks.append((time.monotonic(), body))
        while not self.stop_flag:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append((time.monotonic(), data))

    def close(self) -> None:
        self.stop_flag = True
        self.sock.close()
        self.join(2.0)


def decode_mp3(data: bytes) -> np.ndarray:
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "mp3", "-i", "-", "-f", "f32le", "-ac", "2",
         "-ar", str(RATE), "-"],
        input=data, capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(proc.stdout, dtype=np.float32).reshape(-1, 2)


def step_down(x: np.ndarray, after: int = 0) -> int:
    """The first 20 ms block (from `after`) whose level fell 12 dB below the level before."""
    block = RATE // 50
    n = (x.shape[0] - after) // block
    rms = np.sqrt((x[after : after + n * block, 0].reshape(n, block) ** 2).mean(axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    for i in range(25, n):
        if db[i] < np.median(db[i - 25 : i]) - 12:
            return after + i * block
    raise RuntimeError("no volume step found")


def http_delay(d: Daemon, listener: Listener, rec) -> float:
    """Seconds between the local sink and the HTTP listener hearing the same volume step."""
    start = listener.chunks[-1][0] if listener.chunks else time.monotonic()
    frames_before = rec.frames_so_far()
    d.ctl("volume", "5")
    time.sleep(3.0)
    rec_end_frames, rec_end_time = rec.frames_so_far(), time.monotonic()
    d.ctl("volume", "80")
    chunks = [(t, c) for t, c in listener.chunks if t >= start - 4.0]
    times = np.array([t for t, _ in chunks])
    sizes = np.cumsum([len(c) for _, c in chunks])
    monitor = np.fromfile(rec.path, dtype=np.float32).reshape(-1, 2)
    played_at = rec_end_time - (rec_end_frames - step_down(monitor, frames_before - RATE)) / RATE
    pcm = decode_mp3(b"".join(c for _, c in chunks))
    j = step_down(pcm)
    # MP3 at a constant bitrate: sample j is in the byte at the same fraction of the stream.
    arrived_at = float(np.interp(j / pcm.shape[0] * sizes[-1], sizes, times))
    return arrived_at - played_at


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    ap.add_argument("--no-stress", action="store_true", help="skip the loaded case")
    args = ap.parse_args()
    for tool in ("ffmpeg", "snapserver"):
        if not shutil.which(tool):
            print(f"outputs.py: needs {tool} (Debian)", file=sys.stderr)
            return 2

    tmp = Path(tempfile.mkdtemp(prefix="infiniloop-outputs-"))
    server = PulseServer(tmp / "pulse").start()
    (tmp / "snap").mkdir()
    fifo = tmp / "snap" / "snapfifo"
    snap = SnapServer(
        tmp / "snap", f"pipe://{fifo}?name=infiniloop&mode=create&sampleformat=48000:16:2"
    )
    (tmp / "d").mkdir()
    d = Daemon(tmp / "d", config(server, None, None))
    d.env["PULSE_SERVER"] = server.server
    listeners: list[Listener] = []
    load: list[subprocess.Popen] = []
    try:
        d.start()
        wait_idle(d)
        base = measure_cpu(d.proc.pid, args.seconds)
        print(f"1. pulse alone:                          {base:5.1f} % of a core", flush=True)
        d.stop()

        port = free_port()
        d.write_config(config(server, port, fifo))
        d.start()
        wait_idle(d)
        snap_status = snap.stream_status()
        net = measure_cpu(d.proc.pid, args.seconds)
        print(f"2. + HTTP (Opus, MP3) + Snapcast:        {net:5.1f} % "
              f"(snapserver stream: {snap_status})", flush=True)  # fmt: skip

        first = Listener(port, "/stream.opus")
        first.start()
        time.sleep(1.5)
        got = [t for t, _ in first.chunks]
        burst = sum(len(c) for t, c in first.chunks if t - first.connected < 0.2)
        print(f"   new Opus listener: first bytes after {(got[0] - first.connected) * 1000:.0f} "
              f"ms, {burst} bytes (~{burst * 8 / 128000:.2f} s of audio) within 200 ms",
              flush=True)  # fmt: skip
        first.close()

        rec = server.start_recording()
        for i in range(10):
            listener = Listener(port, "/stream.opus" if i % 2 else "/stream.mp3")
            listener.start()
            listeners.append(listener)
        time.sleep(2.0)
        ten = measure_cpu(d.proc.pid, args.seconds)
        print(f"3. + 10 HTTP listeners:                  {ten:5.1f} %", flush=True)
        delay = http_delay(d, listeners[0], rec)
        print(
            f"   HTTP stream behind the local sink:     {delay:5.2f} s "
            "(what the listener's own buffer adds comes on top)",
            flush=True,
        )

        if not args.no_stress and shutil.which("stress-ng"):
            st0 = d.status()
            under0 = server.underruns()
            load = [subprocess.Popen(
                ["stress-ng", "--cpu", "2", "--timeout", f"{int(args.seconds) + 5}s", "--quiet"],
                start_new_session=True,
            )]  # fmt: skip
            time.sleep(1.0)
            loaded = measure_cpu(d.proc.pid, args.seconds)
            st1 = d.status()
            local0 = st0["outputs"][0]["underruns"]
            local1 = st1["outputs"][0]["underruns"]
            print(
                f"4. same, both cores busy (stress-ng):    {loaded:5.1f} %; local sink "
                f"underruns {server.underruns() - under0}, player stalls "
                f"{st1['stalls'] - st0['stalls']}, local output underruns {local1 - local0}",
                flush=True,
            )
            for s in st1["outputs"]:
                print(f"   {s['description']}: {s['state']}, {s['underruns']} underruns")
        alive = sum(1 for listener in listeners if listener.is_alive())
        print(f"   HTTP listeners still connected: {alive}/10")
    finally:
        for listener in listeners:
            listener.close()
        for p in load:
            _stop_process(p)
        d.stop()
        snap.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
