#!/usr/bin/env python3
"""Start-up: time from launching `infiniloopd` to the first sound at the sink.

    python3 benchmarks/startup.py [--runs 5]

A private PulseAudio with a null sink is started (tests/audio_servers.py) and its
monitor recorded by parec for the whole run. For each start, the recorder's frame count
at the moment `infiniloopd` is launched marks time zero; the first recorded sample above
-60 dBFS after it is the first sound. Two cases:

- warm library: the daemon has made loops before (one preparatory run fills the
  library), so it plays from the library at once (target <= 1 s);
- empty library, synth generator: a fresh data dir each time, so the first loop must
  be generated (5 s clip), analysed and stored first (target <= 3 s).

Each daemon is stopped with SIGTERM before the next start. Prints each run, the median
and the worst.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audio_servers import RATE, PulseServer, _stop_process  # noqa: E402
from tests.daemon_proc import Daemon  # noqa: E402

THRESHOLD = 1e-3  # -60 dBFS


def config(server: PulseServer, seconds: float) -> dict:
    return {
        "generator": {"backend": "synth", "seconds": seconds, "prefetch": 1},
        "output": {"backend": "pulse", "sink": server.sink},
        "playback": {"crossfade": 1.0, "min_play": 30, "volume": 80},
        "analysis": {"min_loop": 2.0},
    }


def first_sound_after(rec, frame0: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = rec.frames_so_far()
        if n <= frame0:
            continue
        x = np.fromfile(rec.path, dtype=np.float32, offset=frame0 * 8, count=(n - frame0) * 2)
        loud = np.flatnonzero(np.abs(x) > THRESHOLD)
        if loud.size:
            return loud[0] // 2 / RATE
    return None


def timed_start(d: Daemon, rec, timeout: float = 20.0) -> float | None:
    frame0 = rec.frames_so_far()
    d.launch()  # time zero: the process starts; nothing waits for it to answer
    try:
        return first_sound_after(rec, frame0, timeout)
    finally:
        d.stop()
        time.sleep(0.5)  # the fade-out and the stream's end reach the sink


def summary(name: str, values: list[float | None], target: float) -> None:
    ok = [v for v in values if v is not None]
    shown = ", ".join("none" if v is None else f"{v:.2f}" for v in values)
    if ok:
        print(
            f"{name}: median {statistics.median(ok):.2f} s, worst {max(ok):.2f} s "
            f"[target <= {target:g} s]  runs: {shown}"
        )
    else:
        print(f"{name}: no sound in any run")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="infiniloop-startup-"))
    server = PulseServer(tmp / "pulse").start()
    rec = server.start_recording()
    try:
        # Warm: fill a library once, then start again and again over it.
        warm_root = tmp / "warm"
        warm_root.mkdir()
        d = Daemon(warm_root, config(server, 5))
        d.env["PULSE_SERVER"] = server.server
        d.start()
        d.wait_status(lambda s: s["library"]["loops"] >= 2, 60, "two loops in the library")
        d.stop()
        time.sleep(0.5)
        warm = [timed_start(d, rec) for _ in range(args.runs)]
        d.close()

        cold = []
        for i in range(args.runs):
            root = tmp / f"cold{i}"
            root.mkdir()
            c = Daemon(root, config(server, 5))
            c.env["PULSE_SERVER"] = server.server
            cold.append(timed_start(c, rec, timeout=30))
            c.close()
    finally:
        _stop_process(rec.proc)
        server.stop()
    summary("warm library", warm, 1.0)
    summary("empty library, synth generator (5 s clip)", cold, 3.0)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
