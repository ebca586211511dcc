"""Latency of the MPRIS and MPD frontends, as their real clients see it.

Starts a private `dbus-daemon --session` and a real daemon (synth generator, null
output, temporary XDG dirs) with MPRIS and the MPD protocol on, then prints median and
p95 wall times of:
- `playerctl status` and `playerctl metadata` (process start included);
- `mpc status` (process start included);
- one `status` round trip of a connected python-mpd2 client (the protocol alone);
- an MPD `idle mixer` wake-up after a `setvol` from another client.
Targets: every client command <= 100 ms at p95; protocol round trip and idle wake-up
<= 10 ms at p95.

    python3 benchmarks/frontends.py [--runs 30]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mpd

from tests.daemon_proc import Daemon, base_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(name: str, runs: int, fn: Callable[[], None]) -> None:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    print(f"{name}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms ({runs} runs)")


def run_ok(cmd: list[str], env: dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, (cmd, r.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="infiniloop-bench-"))
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--print-address", "--nofork"],
        stdout=subprocess.PIPE,
        text=True,
    )
    address = bus.stdout.readline().strip()
    port = free_port()
    cfg = base_config(root / "out.wav")
    cfg["output"] = {"backend": "null"}
    cfg["playback"]["min_play"] = 3600
    cfg["mpd"] = {"listen": f"127.0.0.1:{port}"}
    d = Daemon(root, cfg)
    d.env["DBUS_SESSION_BUS_ADDRESS"] = address
    try:
        d.start()
        d.wait_status(lambda s: s["queue"] >= 1 and not s["generating"], 120, "a ready loop")
        pc = ["playerctl", "-p", "infiniloop"]
        run_ok([*pc, "status"], d.env)  # the name is taken
        measure("playerctl status", args.runs, lambda: run_ok([*pc, "status"], d.env))
        measure("playerctl metadata", args.runs, lambda: run_ok([*pc, "metadata"], d.env))
        mpc = ["mpc", "-h", "127.0.0.1", "-p", str(port)]
        measure("mpc status", args.runs, lambda: run_ok([*mpc, "status"]))

        client, other = mpd.MPDClient(), mpd.MPDClient()
        for c in (client, other):
            c.connect("127.0.0.1", port)
        measure("python-mpd2 status round trip", args.runs * 10, client.status)

        woke: list[float] = []

        def idle_once() -> None:
            done = threading.Event()

            def wait() -> None:
                client.idle("mixer")
                woke.append(time.perf_counter())
                done.set()

            t = threading.Thread(target=wait)
            t.start()
            time.sleep(0.05)  # the idle is on the wire
            start = time.perf_counter()
            other.setvol(40 + len(woke) % 2 * 10)
            done.wait(5)
            t.join()
            waits.append((woke[-1] - start) * 1000)

        waits: list[float] = []
        for _ in range(args.runs):
            idle_once()
        waits.sort()
        p95 = waits[min(len(waits) - 1, int(round(0.95 * len(waits))) - 1)]
        print(
            f"mpd idle wake-up after setvol: median {statistics.median(waits):.1f} ms, "
            f"p95 {p95:.1f} ms ({len(waits)} runs)"
        )
        for c in (client, other):
            c.disconnect()
        return 0
    finally:
        d.stop()
        d.close()
        bus.terminate()
        bus.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
