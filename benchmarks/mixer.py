"""Mixer cost and audio-thread CPU, as fractions of one core in real time.

Run: python3 benchmarks/mixer.py [--seconds S]

1. The mixer alone: 48 kHz stereo, 20 ms blocks, two decks crossfading the whole time
   (the most expensive steady state), at volume 0.8 so the master gain is applied.
2. The whole audio path: a Player playing to the null output (paced in real time),
   crossfading between two loops; the audio thread's CPU time is read from
   /proc/self/task/<tid>/stat, and the process's total CPU is given alongside.
Targets: mixer < 0.5 % of one core; audio path < 2 %.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from infiniloopd.outputs.null import NullOutput
from infiniloopd.player import Mixer, Player

RATE = 48000
CHANNELS = 2
BLOCK_MS = 20.0


def loops() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.uniform(-0.3, 0.3, (RATE * 7, CHANNELS)).astype(np.float32)
    b = rng.uniform(-0.3, 0.3, (RATE * 5, CHANNELS)).astype(np.float32)
    return a, b


def bench_mixer(seconds: float) -> tuple[float, float]:
    a, b = loops()
    block = round(RATE * BLOCK_MS / 1000)
    mixer = Mixer(RATE, CHANNELS, block, volume=0.8)
    out = np.empty((block, CHANNELS), np.float32)
    blocks = round(seconds * RATE / block)
    results = []
    for crossfading in (True, False):
        mixer.play("a", a, 0.0)
        for _ in range(50):
            mixer.render_into(out)
        if crossfading:
            # A crossfade longer than the run: two decks and both envelopes every block.
            mixer.play("b", b, seconds * 10)
        mixer.events.clear()
        start = time.process_time()
        for _ in range(blocks):
            mixer.render_into(out)
        cpu = time.process_time() - start
        mixer.events.clear()
        results.append(cpu / (blocks * block / RATE))
    return results[0], results[1]


def thread_cpu(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def bench_player(seconds: float) -> tuple[float, float]:
    a, b = loops()
    player = Player(NullOutput(), rate=RATE, channels=CHANNELS, block_ms=BLOCK_MS, volume=0.8)
    player.start()
    try:
        player.play_loop("a", a, 0.0)
        time.sleep(0.5)
        tid = player._thread.native_id  # type: ignore[union-attr]
        t0, p0, w0 = thread_cpu(tid), time.process_time(), time.monotonic()
        half = seconds / 2
        player.play_loop("b", b, half)  # crossfading for the first half, one deck after
        time.sleep(seconds)
        t1, p1, w1 = thread_cpu(tid), time.process_time(), time.monotonic()
    finally:
        player.close()
    wall = w1 - w0
    return (t1 - t0) / wall, (p1 - p0) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per run")
    args = parser.parse_args()
    xfade, single = bench_mixer(args.seconds * 6)
    print(f"mixer, two decks crossfading: {xfade * 100:.3f} % of one core (target < 0.5 %)")
    print(f"mixer, one deck:              {single * 100:.3f} % of one core")
    thread, process = bench_player(args.seconds)
    print(f"audio thread playing to null: {thread * 100:.2f} % of one core (target < 2 %)")
    print(f"whole process meanwhile:      {process * 100:.2f} % of one core")


if __name__ == "__main__":
    main()
