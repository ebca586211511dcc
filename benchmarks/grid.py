"""Beat grids and phrase loops on synth clips, where the truth is known.

Renders clips with the built-in synth generator (tempo and bar lines known from the
composer), runs the analyzer's one call (analyse_clip, as the worker does) and prints
per clip and overall: tempo error, whether the loop's frame 0 falls on a true bar line
(downbeat hit) or at least on a beat, the loop length in bars, and seam_eval's deciding
figures on the loop's seam (the loop before its rotation to the downbeat, so the join
seam_eval scores is the baked crossfade, not a stretch of untouched audio).

Usage: python3 benchmarks/grid.py [--seconds 20] [--seeds 2] [--first-seed 0]
                                  [--prompts a,b,...] [--no-seam] [--hint]

--hint passes the composer's own tempo and bar line (its facts beside the clip) as
the worker does for synth clips; without it the grid comes from the audio alone, as
for every other generator.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEAM_EVAL = Path(os.environ.get("SEAM_EVAL") or REPO.parent / "shared" / "tools" / "seam_eval.py")
PROMPTS = (
    "ambient drift",
    "lofi hip hop",
    "chill",
    "techno",
    "jazz",
    "cinematic",
    "chiptune",
    "piano",
    "rain",
    "synthwave",
    "focus",
    "night",
)
RATE = 48000


def seam_module():
    spec = importlib.util.spec_from_file_location("seam_eval", SEAM_EVAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--prompts", default=",".join(PROMPTS))
    ap.add_argument("--no-seam", action="store_true", help="skip seam_eval (faster)")
    ap.add_argument(
        "--hint",
        action="store_true",
        help="the daemon's path for the synth: the composer's facts as the grid hint",
    )
    a = ap.parse_args(argv)

    from infiniloopd.analysis import analyse_clip, find_loop, render_loop, resample
    from infiniloopd.generators.synth import SR, SynthGenerator
    from tests.analysis_signals import synth_bar_lines

    seam = None if a.no_seam else seam_module()
    gen = SynthGenerator()
    rows = []
    for prompt in [p for p in a.prompts.split(",") if p]:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            y = gen.render(prompt, a.seconds, seed, SR)
            bpm, offset, bpb = synth_bar_lines(prompt, a.seconds, seed)
            hint = None
            if a.hint:
                from infiniloopd.worker import grid_hint

                hint = grid_hint(gen.compose(prompt, a.seconds, seed).music, a.seconds)
            loop, points, info = analyse_clip(y, SR, out_rate=RATE, out_channels=1, hint=hint)
            grid = info.get("grid")
            got = grid["bpm"] if grid and grid["beats"] else info["bpm"]
            beat = 60.0 / bpm
            bar = bpb * beat
            t0 = info.get("downbeat_s", info["start_s"])
            off_bar = (t0 - offset) % bar
            off_beat = (t0 - offset) % beat
            r = {
                "prompt": prompt,
                "seed": seed,
                "bpm": bpm,
                "got": got,
                "err": abs(got - bpm) / bpm,
                "bar_ms": 1000 * min(off_bar, bar - off_bar),
                "beat_ms": 1000 * min(off_beat, beat - off_beat),
                "bars": info["bars"] if info["beats_per_bar"] > 1 else 0,
                "bpb": info["beats_per_bar"],
                "sec": info["seconds"],
                "true_bars": info["seconds"] / bar,
            }
            if seam is not None:
                at = resample(y, SR, RATE)
                p = find_loop(at, RATE, hint=hint)
                m = seam.evaluate(render_loop(at, RATE, p).astype(np.float64), RATE)
                r.update(click=m["click"], dip=m["dip_db"], ibi=m["ibi_excess"])
                r.update(surprise=m["surprise_pct"])
            rows.append(r)
            print(
                f"{prompt:14s} {seed} bpm {bpm:6.1f} got {got:6.1f} ({100 * r['err']:4.1f}%)"
                f"  frame0 {r['bar_ms']:5.0f} ms from a bar line, {r['beat_ms']:4.0f} from a beat"
                f"  {r['bars']} bars of {r['bpb']} ({r['sec']:.1f} s,"
                f" {r['true_bars']:.2f} true bars)"
                + (
                    f"  click {r['click']:.2f} dip {r['dip']:.1f} ibi {r['ibi']}"
                    if seam is not None
                    else ""
                ),
                flush=True,
            )
    err = np.array([r["err"] for r in rows])
    print(f"\nclips {len(rows)}")
    print(f"tempo error: median {100 * np.median(err):.2f}%  max {100 * err.max():.2f}%")
    print(f"  within 2%: {int(np.sum(err <= 0.02))}/{len(rows)}")
    hit = [r["bar_ms"] <= 70 for r in rows]
    on_beat = [r["beat_ms"] <= 70 for r in rows]
    print(f"downbeat hits (frame 0 within 70 ms of a bar line): {sum(hit)}/{len(rows)}")
    print(f"frame 0 on a beat: {sum(on_beat)}/{len(rows)}")
    print(
        "bars: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(Counter(r["bars"] for r in rows).items()))
    )
    print(f"1-bar loops: {sum(r['bars'] == 1 for r in rows)}")
    true = np.array([r["true_bars"] for r in rows])
    print(
        f"length in true bars: median {np.median(true):.2f}; under 1.5 bars: "
        f"{int(np.sum(true < 1.5))}; whole bars (within 2%): "
        f"{int(np.sum(np.abs(true - np.round(true)) < 0.02 * np.maximum(np.round(true), 1)))}"
    )
    if seam is not None:
        for key in ("click", "dip", "ibi", "surprise"):
            v = np.array([r[key] for r in rows if r[key] is not None], dtype=float)
            if v.size:
                print(
                    f"{key}: median {np.median(v):.3f}  p90 {np.percentile(v, 90):.3f}"
                    f"  min {v.min():.3f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
