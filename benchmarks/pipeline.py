#!/usr/bin/env python3
"""Clip -> ready loop: latency per stage, and loops per hour the pipeline sustains.

    python3 benchmarks/pipeline.py [--seconds 20] [--loops 6] [--fake-seconds 6] [--quick]

1. Stage latency for one clip (median of a few runs): generate (synth), validate +
   resample to the output rate, find the loop, render the seam and map channels,
   normalize loudness, write to the library (FLAC + sidecar); plus the analyzer
   worker's start-up (spawn + warm) and its round trip against analysis in-process.
2. Sustained loops per hour, measured with the real Producer, AnalyzerWorker and
   Library: with the synth, and with the MusicGPT stand-in sleeping like MusicGPT on
   a CPU. The stand-in's speeds are assumptions (wall seconds per second of audio,
   MusicGen on ONNX Runtime on a few desktop cores): small 3.5, medium 9. Short clips
   (--fake-seconds) keep the run brief; the figure for --seconds long clips is
   extrapolated from the measured generation speed and the measured per-loop
   overhead, and printed as such.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infiniloopd.analysis import (  # noqa: E402
    analyse_clip,
    find_loop,
    map_channels,
    normalize_loudness,
    render_loop,
    resample,
    validate_clip,
)
from infiniloopd.config import parse_config  # noqa: E402
from infiniloopd.generators import make_generator  # noqa: E402
from infiniloopd.library import Library  # noqa: E402
from infiniloopd.producer import Producer  # noqa: E402
from infiniloopd.worker import AnalyzerWorker  # noqa: E402

FAKE = ROOT / "tests" / "fake_musicgpt.py"
RATE, CHANNELS, LUFS, CEILING, MIN_LOOP = 48000, 2, -18.0, -1.0, 3.0
SPEEDS = {"small": 3.5, "medium": 9.0}


def median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


async def generate_synth(prompt: str, seconds: float, out: Path) -> Path:
    gen = make_generator(parse_config({"generator": {"backend": "synth"}}).generator)
    return await gen.generate(prompt, seconds, out, lambda f: None, seed=1)


def stage_latency(tmp: Path, seconds: float, repeats: int) -> None:
    print(f"\n== stage latency, one {seconds:g} s synth clip (median of {repeats}) ==")
    clip = tmp / "clip.wav"
    t_gen, _ = median_time(
        lambda: asyncio.run(generate_synth("lofi hip hop", seconds, clip)), repeats
    )
    y, sr = sf.read(str(clip), dtype="float32")
    t_val, at_rate = median_time(
        lambda: resample(validate_clip(y, sr, min_seconds=MIN_LOOP), sr, RATE), repeats
    )
    t_find, points = median_time(lambda: find_loop(at_rate, RATE, min_seconds=MIN_LOOP), repeats)
    t_render, loop = median_time(
        lambda: map_channels(render_loop(at_rate, RATE, points), CHANNELS), repeats
    )
    t_norm, (loop_n, _) = median_time(
        lambda: normalize_loudness(loop, RATE, LUFS, CEILING), repeats
    )
    lib = Library(tmp / "lib", 1000)
    lib.scan()
    t_write, _ = median_time(lambda: lib.add(loop_n, RATE, {"prompt": "bench"}), repeats)
    t_all, _ = median_time(
        lambda: analyse_clip(
            y, sr, out_rate=RATE, out_channels=CHANNELS, target_lufs=LUFS,
            peak_ceiling_db=CEILING, min_seconds=MIN_LOOP, max_seconds=None,
        ),
        repeats,
    )  # fmt: skip
    rows = [
        ("generate (synth)", t_gen),
        (f"validate + resample {sr}->{RATE}", t_val),
        ("find loop", t_find),
        ("render seam + channels", t_render),
        ("normalize loudness", t_norm),
        ("write FLAC + sidecar", t_write),
    ]
    for name, t in rows:
        print(f"  {name:<34} {1000 * t:8.1f} ms")
    total = sum(t for _, t in rows)
    print(f"  {'total (stages in sequence)':<34} {1000 * total:8.1f} ms")
    print(f"  {'analyse_clip in one call':<34} {1000 * t_all:8.1f} ms")
    print(f"  loop: {points.seconds:.2f} s, {points.bpm:.1f} BPM, score {points.score:.2f}")

    async def worker_figures():
        w = AnalyzerWorker(
            rate=RATE, channels=CHANNELS, target_lufs=LUFS, peak_ceiling_db=CEILING,
            min_loop=MIN_LOOP, max_loop=None,
        )  # fmt: skip
        t0 = time.perf_counter()
        await w.start()
        start = time.perf_counter() - t0
        trips = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, info = await w.analyse(clip)
            trips.append((time.perf_counter() - t0, info["analysis_s"]))
        await w.close()
        return start, trips

    start, trips = asyncio.run(worker_figures())
    rt = statistics.median(t for t, _ in trips)
    inner = statistics.median(a for _, a in trips)
    print(f"  {'worker start (spawn + warm)':<34} {1000 * start:8.1f} ms")
    print(f"  {'worker round trip (analyse)':<34} {1000 * rt:8.1f} ms")
    print(f"  {'  of which IPC + file read':<34} {1000 * (rt - inner):8.1f} ms")


async def sustained(gen_cfg: dict, loops: int, tmp: Path, label: str) -> tuple[float, float]:
    """Run the real producer until `loops` loops are ready; loops/hour and mean gen time."""
    cfg = parse_config({"generator": {**gen_cfg, "prefetch": loops}})
    lib = Library(tmp / f"lib-{label}", 1000)
    lib.scan()
    w = AnalyzerWorker(
        rate=RATE, channels=CHANNELS, target_lufs=LUFS, peak_ceiling_db=CEILING,
        min_loop=MIN_LOOP, max_loop=None,
    )  # fmt: skip
    await w.start()
    failures: list[str] = []
    p = Producer(
        cfg, lib, w,
        lambda n, d: failures.append(d["error"]) if n == "generation_failed" else None,
        prompt="lofi hip hop with rain", spool=tmp / f"spool-{label}",
    )  # fmt: skip
    t0 = time.perf_counter()
    task = asyncio.create_task(p.run())
    while len(p.ready()) < loops:
        await asyncio.sleep(0.05)
        if failures:
            raise SystemExit(f"{label}: generation failed: {failures[0]}")
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await w.close()
    stats = next(iter(p.stats.values()))
    return 3600 * loops / elapsed, stats["mean_seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="clip length (config default)")
    ap.add_argument("--loops", type=int, default=6, help="loops per synth throughput run")
    ap.add_argument("--fake-seconds", type=int, default=6, help="stand-in clip length")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no medium run")
    args = ap.parse_args()
    repeats = 2 if args.quick else 3
    print(f"infiniloop pipeline benchmark: {os.cpu_count()} CPUs, output {RATE} Hz {CHANNELS} ch")
    with tempfile.TemporaryDirectory(prefix="infiniloop-bench-") as tmpname:
        tmp = Path(tmpname)
        stage_latency(tmp, args.seconds, repeats)

        print("\n== sustained throughput (real producer + worker + library, concurrency 1) ==")
        rate, gen_s = asyncio.run(
            sustained({"backend": "synth", "seconds": args.seconds}, args.loops, tmp, "synth")
        )
        print(
            f"  synth, {args.seconds:g} s clips: {rate:8.0f} loops/hour "
            f"(generate {gen_s:.2f} s/clip, {args.loops} loops)"
        )
        os.environ["XDG_DATA_HOME"] = str(tmp / "xdg")  # the stand-in's model "downloads"
        models = ["small"] if args.quick else ["small", "medium"]
        for model in models:
            speed = SPEEDS[model]
            os.environ["FAKE_MUSICGPT_SPEED"] = str(speed)
            os.environ["FAKE_MUSICGPT_DOWNLOAD"] = "0"
            gen_cfg = {
                "backend": "musicgpt", "model": model, "binary": str(FAKE),
                "seconds": max(5, args.fake_seconds),
            }  # fmt: skip
            secs = gen_cfg["seconds"]
            rate, gen_s = asyncio.run(sustained(gen_cfg, 2, tmp, model))
            per_loop = 3600 / rate
            overhead = max(0.0, per_loop - speed * secs)
            long_loop = speed * args.seconds + overhead
            print(
                f"  stand-in musicgpt {model} ({speed:g}x realtime, assumed): {secs} s clips "
                f"{rate:6.0f} loops/hour measured (generate {gen_s:.1f} s/clip, "
                f"overhead {overhead:.2f} s/loop); {args.seconds:g} s clips "
                f"~{3600 / long_loop:.0f} loops/hour extrapolated ({long_loop:.0f} s/loop)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
