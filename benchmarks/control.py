"""infiniloopctl round trip and the daemon's idle cost while playing.

Starts a real daemon (synth generator, null output, temporary XDG dirs), waits until
the queue is full and generation idles, then prints:
- `infiniloopctl status` wall time, process start included (median, p95 of 50 runs);
- the daemon's CPU (% of one core) and RSS over a window, and the analyzer worker's.
Targets: status <= 150 ms; daemon <= 3 % of a core and <= 120 MB RSS.

    python3 benchmarks/control.py [--runs 50] [--window 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemon_proc import Daemon, base_config

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ctl_command() -> list[str]:
    # The console script itself (as a user runs it), not through a pyenv shim.
    script = Path(sys.executable).parent / "infiniloopctl"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "infiniloopctl"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement")
    ap.add_argument("--soundfont", default=None, help="generator.soundfont for the synth")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="infiniloop-bench-"))
    cfg = base_config(root / "out.wav")
    cfg["output"] = {"backend": "null"}
    cfg["generator"]["prefetch"] = 2
    if args.soundfont:
        cfg["generator"]["soundfont"] = args.soundfont
    cfg["playback"]["min_play"] = 3600  # idle: one loop playing, nothing to generate
    d = Daemon(root, cfg)
    try:
        d.start()
        d.wait_status(lambda s: s["queue"] >= 2 and not s["generating"], 120, "a full queue")
        st = d.status()
        pid, worker = st["pid"], st["worker_pid"]

        cmd = ctl_command()
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = subprocess.run([*cmd, "status"], env=d.env, capture_output=True)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.returncode == 0, r.stderr
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        print(f"infiniloopctl status: median {statistics.median(times):.1f} ms, "
              f"p95 {p95:.1f} ms over {args.runs} runs ({' '.join(cmd)})")  # fmt: skip

        c0, w0, t0 = cpu_seconds(pid), cpu_seconds(worker) if worker else 0.0, time.monotonic()
        time.sleep(args.window)
        dt = time.monotonic() - t0
        cpu = (cpu_seconds(pid) - c0) / dt * 100
        wcpu = ((cpu_seconds(worker) - w0) / dt * 100) if worker else 0.0
        assert d.status()["state"] == "playing"
        print(f"daemon (pid {pid}) while playing: CPU {cpu:.2f} % of one core, "
              f"RSS {rss_mb(pid):.1f} MB over {dt:.0f} s")  # fmt: skip
        if worker:
            print(f"analyzer worker (pid {worker}): CPU {wcpu:.2f} %, RSS {rss_mb(worker):.1f} MB")
        return 0
    finally:
        d.stop()
        d.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
