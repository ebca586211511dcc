#!/usr/bin/env python3
"""Soak: the daemon plays through a real PulseAudio null sink for N minutes, both cores busy.

    python3 benchmarks/soak.py [--minutes 10] [--no-stress] [--clip-seconds 8] [--min-play 20]

The script starts its own private `pulseaudio` with a null sink (tests/audio_servers.py),
the real daemon (synth generator, output.backend pulse) in temporary XDG dirs, and
`stress-ng --cpu 2` (or one busy-loop process per core if stress-ng is missing) at the
same priority as the daemon. The sink's monitor is recorded with `parec` for the whole
run, and scanned afterwards. It prints:

- gaps: runs of silent 5 ms blocks (peak below 1e-4) after the first sound. The synth's
  loops never contain digital silence, so any such run is a dropout (target 0); plus the
  server's own underrun count and the player's xrun counter.
- clicks: see `find_clicks`. Music is well predicted by a short linear-prediction
  (AR) model fitted to the last few milliseconds, a step or spike is not: each 20 ms
  frame of each channel gets an order-16 LPC fit (autocorrelation method) and its
  prediction residual. A click is a residual sample larger than CLICK_RATIO times the
  residual's robust level (1.4826 x median |e|, the largest of the frame and its two
  neighbours, so a loud onset next door raises the bar) and above CLICK_FLOOR. On clean
  synth music the largest ratio is about 4.5; a 0.02 step (-34 dBFS, a soft tick) gives
  more than 10. Hits closer than 10 ms count once. Before scanning, the detector is
  checked on a copy of a stretch of the recording with steps injected (printed as
  "self-check"), so a 0 means something. Clicks within 1.5 s of a loop start
  (crossfade) are reported separately, with how many would fall there by chance.
  Each click is then placed in the loop that was playing (the library's FLAC, by
  cross-correlation) and the same statistic is taken at that phase of the loop file:
  a click the loop file has too is in the music as rendered (the synth's own content);
  one it lacks was added by playback. The LPC detector is sensitive to its 20 ms frame
  grid: detections near its threshold come and go with where the scan starts.
- loudness spread: integrated loudness (BS.1770, pyloudnorm) of each loop's stretch of
  the recording, from the end of its crossfade to the next loop start; max - min
  (target <= 1 LU).
- daemon CPU (% of one core) and RSS over time, from /proc; the analyzer worker is
  reported separately. The synth generator renders in a child process of its own;
  CPU is still split into "generating" and "idle" samples (the daemon supervises the
  child and stores its loop meanwhile); the 3 % target is for playing (idle) time.
- control round trip under load: `infiniloopctl status` end to end (process start
  included), and a raw ZeroMQ `ping` request, p50/p95.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.linalg import solve_toeplitz

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audio_servers import RATE, PulseServer, _stop_process  # noqa: E402
from tests.daemon_proc import Daemon  # noqa: E402

BLOCK_MS = 5.0
SILENT_PEAK = 1e-4
CLICK_RATIO = 8.0
CLICK_FLOOR = 0.002
LPC_ORDER = 16
LPC_FRAME = 960  # 20 ms at 48 kHz
CHUNK = RATE * 30  # frames scanned at once
TICKS = os.sysconf("SC_CLK_TCK")


# --- measuring the daemon ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """Every `period` s: daemon and worker CPU and RSS, whether it was generating."""

    def __init__(self, d: Daemon, period: float) -> None:
        super().__init__(daemon=True)
        self.d = d
        self.period = period
        self.rows: list[dict] = []
        self.rtt_ctl: list[float] = []
        self.rtt_zmq: list[float] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        import zmq

        pid = self.d.proc.pid
        last_t, last_cpu = time.monotonic(), cpu_seconds(pid)
        wlast: tuple[int, float] | None = None
        ctx = zmq.Context()
        endpoint = f"ipc://{self.d.runtime}/control.sock"
        while not self.stop_flag.wait(self.period):
            t0 = time.perf_counter()
            r = self.d.ctl("status", "--json")
            self.rtt_ctl.append(time.perf_counter() - t0)
            st = json.loads(r.stdout) if r.returncode == 0 else {}
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            t0 = time.perf_counter()
            sock.send_json({"v": 1, "cmd": "ping", "args": {}})
            if sock.poll(5000):
                sock.recv()
                self.rtt_zmq.append(time.perf_counter() - t0)
            sock.close()
            now, cpu = time.monotonic(), cpu_seconds(pid)
            row = {
                "t": now,
                "cpu": 100 * (cpu - last_cpu) / (now - last_t),
                "rss": rss_mb(pid),
                "generating": bool(st.get("generating")),
                "xruns": st.get("xruns"),
                "state": st.get("state"),
                "loops_played": st.get("loops_played"),
            }
            last_t, last_cpu = now, cpu
            wpid = st.get("worker_pid")
            if wpid:
                try:
                    wcpu = cpu_seconds(wpid)
                    if wlast and wlast[0] == wpid:
                        row["worker_cpu"] = 100 * (wcpu - wlast[1]) / self.period
                    row["worker_rss"] = rss_mb(wpid)
                    wlast = (wpid, wcpu)
                except OSError:
                    wlast = None
            self.rows.append(row)
        ctx.term()


class LoopStarts(threading.Thread):
    """`infiniloopctl watch --json`: the recording frame at which each loop started."""

    def __init__(self, d: Daemon, rec) -> None:
        super().__init__(daemon=True)
        self.rec = rec
        self.frames: list[int] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infiniloopctl", "watch", "--json"],
            env=d.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "loop_started":
                self.frames.append(self.rec.frames_so_far())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# --- scanning the recording -------------------------------------------------------------


def silent_runs(x: np.ndarray, start: int) -> list[tuple[int, int]]:
    """(first frame, length in blocks) of runs of silent 5 ms blocks from `start` on."""
    block = round(RATE * BLOCK_MS / 1000)
    runs: list[tuple[int, int]] = []
    run_start, run_len = -1, 0
    for c0 in range(start, len(x), CHUNK):
        seg = np.abs(x[c0 : c0 + CHUNK]).max(axis=1)
        n = seg.size // block
        peaks = seg[: n * block].reshape(n, block).max(axis=1)
        for i in np.flatnonzero(peaks < SILENT_PEAK):
            frame = c0 + i * block
            if run_len and frame == run_start + run_len * block:
                run_len += 1
            else:
                if run_len:
                    runs.append((run_start, run_len))
                run_start, run_len = frame, 1
    if run_len:
        runs.append((run_start, run_len))
    # The last blocks may just be the recorder stopping before the daemon.
    return [r for r in runs if r[0] + r[1] * block < len(x) - RATE // 10]


def lpc_residual(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame order-LPC_ORDER prediction residual of x (1-D) and its robust level."""
    n = len(x) // LPC_FRAME
    e = np.zeros(n * LPC_FRAME)
    level = np.zeros(n)
    window_cache: dict[int, np.ndarray] = {}
    for i in range(1, n):  # the first frame has no history: left out
        lo = i * LPC_FRAME - LPC_ORDER
        seg = x[lo : (i + 1) * LPC_FRAME]
        win = window_cache.setdefault(len(seg), np.hanning(len(seg)))
        w = seg * win
        r = np.correlate(w, w, "full")[len(w) - 1 : len(w) + LPC_ORDER]  # lags 0..order
        if r[0] <= 1e-12:
            continue  # digital silence: nothing to predict, counted as a gap instead
        r[0] *= 1.0001  # a little white noise keeps the system well conditioned
        a = solve_toeplitz(r[:-1], r[1:])
        # Residual e[n] = x[n] - sum a_m x[n-m], for the frame's samples only.
        res = np.convolve(seg, np.r_[1.0, -a], mode="valid")[-LPC_FRAME:]
        e[i * LPC_FRAME : (i + 1) * LPC_FRAME] = res
        level[i] = 1.4826 * np.median(np.abs(res))
    return e, level


def find_clicks(x: np.ndarray) -> np.ndarray:
    """Frames of step-like discontinuities in x (frames, channels); see the module doc."""
    hits = []
    for ch in range(x.shape[1]):
        e, level = lpc_residual(x[:, ch].astype(np.float64))
        if level.size < 3:
            continue
        ref = np.maximum(
            level, np.maximum(np.r_[level[0], level[:-1]], np.r_[level[1:], level[-1]])
        )
        limit = np.maximum(CLICK_RATIO * ref, CLICK_FLOOR)
        over = np.abs(e).reshape(-1, LPC_FRAME) > limit[:, None]
        over &= (ref > 0)[:, None]
        rows, cols = np.nonzero(over)
        hits.append(rows * LPC_FRAME + cols)
    if not hits:
        return np.zeros(0, dtype=np.int64)
    frames = np.unique(np.concatenate(hits))
    if frames.size == 0:
        return frames
    keep = np.r_[True, np.diff(frames) > RATE // 100]
    return frames[keep]


def click_ratio(x: np.ndarray, pos: int) -> float:
    """The detector's statistic at frame `pos` of x: the largest residual within 5 ms over
    its limit, times CLICK_RATIO (so >= CLICK_RATIO is a detection); the best of three
    LPC frame alignments, so two signals are compared fairly whatever their frame grid."""
    best = 0.0
    for shift in (0, LPC_FRAME // 3, 2 * LPC_FRAME // 3):
        a = pos - 5 * LPC_FRAME - shift
        if a < 0 or a + 11 * LPC_FRAME > len(x):
            continue
        seg = np.asarray(x[a : a + 11 * LPC_FRAME], dtype=np.float64)
        for ch in range(seg.shape[1]):
            e, level = lpc_residual(seg[:, ch])
            ref = np.maximum(
                level, np.maximum(np.r_[level[0], level[:-1]], np.r_[level[1:], level[-1]])
            )
            limit = np.repeat(np.maximum(ref, CLICK_FLOOR / CLICK_RATIO), LPC_FRAME)
            at = pos - a
            window = slice(at - RATE // 200, at + RATE // 200)
            best = max(best, float((np.abs(e[window]) / limit[window]).max()))
    return best


def attribute_clicks(x: np.ndarray, clicks: np.ndarray, loop_dir: Path) -> list[dict]:
    """Find each click in the loop that was playing (the library's FLAC at the same
    phase, by normalised cross-correlation) and score the same spot in the loop file.
    A click the loop file has too is in the music as rendered; one it lacks was added
    by playback (mixer, crossfade, output, server)."""
    loops = {}
    for f in sorted(loop_dir.glob("*.flac")):
        y, sr = sf.read(str(f), dtype="float32", always_2d=True)
        if sr == RATE and y.shape[1] == x.shape[1]:
            loops[f.stem] = y
    half = RATE // 10
    out = []
    for c in clicks.tolist():
        seg = np.asarray(x[c - half : c + half, 0], dtype=np.float64)
        if len(seg) < 2 * half:
            continue
        best = (0.0, "", 0)
        for name, y in loops.items():
            m = y[:, 0].astype(np.float64)
            tiled = np.concatenate([m, m[: len(seg)]])
            nfft = 1 << int(np.ceil(np.log2(len(tiled) + len(seg))))
            cc = np.fft.irfft(np.fft.rfft(tiled, nfft) * np.conj(np.fft.rfft(seg, nfft)), nfft)
            energy = np.convolve(tiled**2, np.ones(len(seg)), "valid")[: len(m)]
            ncc = cc[: len(m)] / np.sqrt(np.maximum(energy, 1e-12) * float(seg @ seg))
            k = int(np.argmax(ncc))
            if ncc[k] > best[0]:
                best = (float(ncc[k]), name, k)
        corr, name, k = best
        row = {"at": c / RATE, "loop": name or None, "corr": corr, "rec": click_ratio(x, c)}
        if name and corr > 0.9:
            y = loops[name]
            n = len(y)
            phase = (k + half) % n
            row["from_seam_ms"] = 1000 * min(phase, n - phase) / RATE
            row["file"] = click_ratio(np.concatenate([y, y, y]), n + phase)
        out.append(row)
    return out


def scan_clicks(x: np.ndarray, start: int) -> np.ndarray:
    found = []
    for c0 in range(start, len(x), CHUNK):
        seg = np.asarray(x[c0 : c0 + CHUNK])
        found.append(find_clicks(seg) + c0)
    frames = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    if frames.size:
        frames = frames[np.r_[True, np.diff(frames) > RATE // 100]]
    return frames


def self_check(x: np.ndarray, start: int) -> tuple[int, int]:
    """Inject steps into a copy of 10 s of the recording; how many does find_clicks see?"""
    seg = np.array(x[start + RATE : start + 11 * RATE], dtype=np.float32)
    if len(seg) < 10 * RATE:
        return 0, 0
    before = set(find_clicks(seg).tolist())
    where = [RATE * k + 1234 for k in range(1, 10)]
    for w in where:
        seg[w:] += 0.02  # a 0.02 step (-34 dBFS): an audible tick
        seg[w + 2400 :] -= 0.02  # undo 50 ms later (that is a step too: both count)
    found = [f for f in find_clicks(seg).tolist() if f not in before]
    expected = 2 * len(where)
    return sum(1 for w in where for o in (0, 2400) if any(abs(f - w - o) <= 3 for f in found)), (
        expected
    )


def loudness_per_loop(x: np.ndarray, starts: list[int], crossfade: float) -> list[float]:
    import pyloudnorm

    meter = pyloudnorm.Meter(RATE)
    values = []
    bounds = [*starts, len(x)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        a2, b2 = a + int((crossfade + 0.3) * RATE), b - RATE // 10
        if b2 - a2 < 3 * RATE:
            continue
        values.append(float(meter.integrated_loudness(np.asarray(x[a2:b2], dtype=np.float64))))
    return [v for v in values if np.isfinite(v)]


# --- load -------------------------------------------------------------------------------


def start_load(seconds: float) -> list[subprocess.Popen]:
    if shutil.which("stress-ng"):
        argv = ["stress-ng", "--cpu", "2", "--timeout", f"{int(seconds)}s", "--quiet"]
        return [subprocess.Popen(argv, start_new_session=True)]
    busy = f"import time\nend=time.time()+{seconds}\nwhile time.time()<end: pass"
    return [
        subprocess.Popen([sys.executable, "-c", busy], start_new_session=True) for _ in range(2)
    ]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--no-stress", action="store_true", help="do not load the cores")
    ap.add_argument("--clip-seconds", type=float, default=8.0)
    ap.add_argument("--min-play", type=float, default=20.0)
    ap.add_argument("--crossfade", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (recording, logs)")
    args = ap.parse_args()
    seconds = args.minutes * 60

    tmp = Path(tempfile.mkdtemp(prefix="infiniloop-soak-"))
    server = PulseServer(tmp / "pulse").start()
    config = {
        "generator": {"backend": "synth", "seconds": args.clip_seconds, "prefetch": 2},
        "output": {"backend": "pulse", "sink": server.sink},
        "playback": {"crossfade": args.crossfade, "min_play": args.min_play, "volume": 80},
        "analysis": {"min_loop": 2.0},
    }
    (tmp / "d").mkdir()
    d = Daemon(tmp / "d", config)
    d.env["PULSE_SERVER"] = server.server
    load: list[subprocess.Popen] = []
    watcher = sampler = None
    try:
        rec = server.start_recording()
        t_start = time.monotonic()
        d.start()
        print(f"daemon pid {d.proc.pid} playing; soak for {args.minutes:g} min", flush=True)
        if not args.no_stress:
            load = start_load(seconds + 30)
        watcher = LoopStarts(d, rec)
        watcher.start()
        sampler = Sampler(d, 5.0)
        sampler.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            if d.proc.poll() is not None:
                print(f"DAEMON EXITED {d.proc.returncode}", flush=True)
                break
            rows = sampler.rows
            if rows:
                r = rows[-1]
                print(
                    f"  {time.monotonic() - t_start:6.0f} s  cpu {r['cpu']:5.1f}%  "
                    f"rss {r['rss']:5.1f} MB  loops {r['loops_played']}  xruns {r['xruns']}",
                    flush=True,
                )
        sampler.stop_flag.set()
        sampler.join(10)
        watcher.stop()
        final = d.status() if d.proc.poll() is None else {}
    finally:
        for p in load:
            _stop_process(p)
        d.stop()
        d.close()
        _stop_process(rec.proc)
        server.stop()

    x = np.memmap(rec.path, dtype=np.float32, mode="r")
    x = x[: x.size // 2 * 2].reshape(-1, 2)
    loud = np.flatnonzero(np.abs(np.asarray(x[: 60 * RATE, 0])) > 1e-3)
    first = int(loud[0]) if loud.size else 0
    runs = silent_runs(x, first)
    found, expected = self_check(x, first)
    clicks = scan_clicks(x, first)
    starts = sorted(f for f in watcher.frames if f > first)
    near = [c for c in clicks if any(abs(c - s) < 1.5 * RATE for s in starts)]
    # How many of the clicks would fall that near a loop start if they had nothing to do
    # with loop changes: the share of the scanned recording those windows cover.
    covered = np.zeros(len(x) - first, dtype=bool)
    for s in starts:
        covered[max(0, s - first - int(1.5 * RATE)) : max(0, s - first + int(1.5 * RATE))] = True
    by_chance = len(clicks) * float(covered.mean()) if covered.size else 0.0
    lufs = loudness_per_loop(x, starts, args.crossfade)

    rows = sampler.rows
    warm = [r for r in rows if r["t"] - t_start > 60] or rows
    third = max(1, len(warm) // 3)
    idle_cpu = [r["cpu"] for r in warm if not r["generating"]]
    gen_cpu = [r["cpu"] for r in warm if r["generating"]]
    rss = [r["rss"] for r in warm]
    wrss = [r["worker_rss"] for r in warm if "worker_rss" in r]
    wcpu = [r["worker_cpu"] for r in warm if "worker_cpu" in r]

    print()
    print(f"soak: {len(x) / RATE / 60:.1f} min recorded, load: "
          f"{'none' if args.no_stress else 'stress-ng --cpu 2'}")  # fmt: skip
    print(f"loops started: {len(starts)}; daemon still running at the end: {bool(final)}")
    longest = max((n for _, n in runs), default=0) * BLOCK_MS
    print(
        f"gaps (runs of silent {BLOCK_MS:g} ms blocks): {len(runs)}, longest {longest:g} ms"
        f"   [target 0]"
    )
    for f0, n in runs[:10]:
        print(f"    at {f0 / RATE:8.2f} s: {n * BLOCK_MS:g} ms")
    print(
        f"server underruns logged: {server.underruns()}; player xruns: {final.get('xruns')}, "
        f"stalls (audio thread held up past the buffer): {final.get('stalls')}"
    )
    print(f"click detector self-check: {found}/{expected} injected steps found")
    print(
        f"clicks: {len(clicks)} ({len(near)} within 1.5 s of a loop start/crossfade, "
        f"{by_chance:.1f} expected there by chance)   [target 0]"
    )
    rows = attribute_clicks(x, clicks[:40], d.root / "data" / "infiniloop" / "loops")
    placed = [r for r in rows if "file" in r]
    added = [r for r in placed if r["file"] < 0.8 * r["rec"]]
    print(
        f"clicks added by playback (absent from the loop file at the same phase): "
        f"{len(added)} of {len(placed)} placed in a loop; {len(rows) - len(placed)} not placed "
        f"(inside a crossfade, where two loops mix)   [target 0]"
    )
    for r in rows[:10]:
        where = (
            f"loop {r['loop']} ({r['from_seam_ms']:.0f} ms from its seam): detector "
            f"{r['rec']:.1f} in the recording, {r['file']:.1f} in the loop file"
            if "file" in r
            else f"not placed: best match corr {r['corr']:.2f} (a crossfade?)"
        )
        print(f"    at {r['at']:8.3f} s  {where}")
    if lufs:
        print(
            f"loudness per loop: {len(lufs)} loops, {min(lufs):.2f} .. {max(lufs):.2f} LUFS, "
            f"spread {max(lufs) - min(lufs):.2f} LU   [target <= 1 LU]"
        )
    print(
        f"daemon CPU % of one core: idle p50 {pct(idle_cpu, 50):.2f} p95 {pct(idle_cpu, 95):.2f}"
        f" (n={len(idle_cpu)}); while generating p50 {pct(gen_cpu, 50):.1f} (n={len(gen_cpu)})"
        f"   [target <= 3 while playing]"
    )
    if rss:
        print(
            f"daemon RSS MB: min {min(rss):.1f} max {max(rss):.1f}; first third median "
            f"{statistics.median(rss[:third]):.1f}, last third median "
            f"{statistics.median(rss[-third:]):.1f}   [target <= 120, no growth]"
        )
    if wrss:
        print(
            f"analyzer worker: RSS max {max(wrss):.1f} MB, CPU p50 {pct(wcpu, 50):.1f}% "
            f"p95 {pct(wcpu, 95):.1f}%"
        )
    ctl = [1000 * v for v in sampler.rtt_ctl]
    zq = [1000 * v for v in sampler.rtt_zmq]
    print(
        f"control round trip under load: infiniloopctl status p50 {pct(ctl, 50):.0f} ms "
        f"p95 {pct(ctl, 95):.0f} ms; zmq ping p50 {pct(zq, 50):.1f} ms p95 {pct(zq, 95):.1f} ms"
        f" (n={len(ctl)})"
    )
    print("over time (every ~minute): t s, cpu %, rss MB")
    for r in warm[:: max(1, len(warm) // 10)]:
        print(f"    {r['t'] - t_start:6.0f}  {r['cpu']:5.1f}  {r['rss']:6.1f}")
    del x
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
