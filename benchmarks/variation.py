"""Variation (playback.variation: branch): exact-loop minutes, jumps, jump seams.

Until `infiniloopd record` exists this renders the player directly: for each prompt,
N synth clips (the synth generator, seeds 1..N) go through the analysis pipeline
into loops; the mixer plays them as the daemon would (a loop for `--min-play`
seconds, then a `--crossfade` to the next), each deck given a Brancher built over
the pool (the playing loop and the prompt's other loops), for `--minutes`. The same
stream is rendered in `loop` mode (plain looping) for comparison.

Figures, all computed from the rendered audio (the jump events only say where to look):
- exact-loop minutes: minutes whose log band energies correlate >= 0.97 with
  themselves at some lag of 1..30 s (issue 12's "periodic with a period under 30 s").
- jumps per minute.
- jump seams: the shared seam_eval metrics (click, dip_db, ibi_excess, surprise_pct)
  at up to `--eval-jumps` jumps, the stream 8 s before to 16 s after the join standing
  in for seam_eval's tiled loop; and the same at a wrap of each loop played plainly
  ("loop seams"), the yardstick for the surprise.

Run: python3 benchmarks/variation.py [--prompts "lofi hip hop,ambient"] [--loops 4]
     [--minutes 10] [--seconds 20] [--eval-jumps 40] [--seed 1]
Needs ../shared/tools/seam_eval.py (or $SEAM_EVAL) for the seam figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# librosa's beat tracker (seam_eval) crashed in numba with a shared, stale cache here
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "infiniloop-numba"))

from infiniloopd.analysis import analyse_clip  # noqa: E402
from infiniloopd.generators.synth import SR, SynthGenerator  # noqa: E402
from infiniloopd.player.mixer import Mixer  # noqa: E402
from infiniloopd.player.variation import PoolLoop, build_brancher  # noqa: E402
from tests.variation_audio import (  # noqa: E402
    exact_loop_minutes,
    jump_metrics,
    load_seam_eval,
    loop_seam_metrics,
)

RATE = 48000
BLOCK = 1024
PROMPTS = "lofi hip hop,ambient pads,techno,jazz,piano"


def make_loops(gen: SynthGenerator, prompt: str, count: int, seconds: float) -> list[PoolLoop]:
    loops = []
    for seed in range(1, count + 1):
        clip = gen.render(prompt, seconds, seed, SR)
        audio, points, _ = analyse_clip(clip, SR, out_rate=RATE, out_channels=2)
        # no beat grid in the sidecar yet (issue 12, part 2): the daemon's fallback,
        # the tempo with beat 0 at frame 0
        loops.append(PoolLoop(f"{seed}", audio, None, points.bpm))
    return loops


def play(
    loops: list[PoolLoop], minutes: float, min_play: float, crossfade: float, seed: int | None
) -> tuple[np.ndarray, list[int]]:
    """Render as the daemon would; seed None: plain looping. Returns (mono, jump joins)."""
    mixer = Mixer(RATE, 2, BLOCK, volume=1.0)
    total = -(-int(minutes * 60 * RATE) // BLOCK)  # whole minutes, rounded up to a block
    per_loop = int(min_play * RATE) // BLOCK
    out = np.empty(total * BLOCK, dtype=np.float32)
    joins: list[int] = []
    fade = None
    started: dict[str, int] = {}  # stream frame where each deck started
    for b in range(total):
        if b % per_loop == 0:
            i = (b // per_loop) % len(loops)
            cur = loops[i]
            mixer.play(cur.key, cur.audio, 0.0 if b == 0 else crossfade)
            started[cur.key] = b * BLOCK
            if seed is not None:
                others = [(lp, None) for lp in loops[i + 1 :] + loops[:i]]
                brancher = build_brancher(cur, others, RATE, seed=seed + b)
                fade = brancher.table.fade
                mixer.decks[-1].set_variation(brancher)
        block = mixer.render(BLOCK)
        out[b * BLOCK : (b + 1) * BLOCK] = block.mean(axis=1)
        for name, data in mixer.events:
            if name == "jump":
                # "at" counts the deck's frames from its start
                joins.append(started[data["key"]] + data["at"] + fade // 2)
        mixer.events.clear()
    return out, joins


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def seam_row(rows: list[dict]) -> dict:
    def vals(key: str) -> list[float]:
        return [r[key] for r in rows if r and r.get(key) is not None]

    return {
        "n": len(rows),
        "click_med": pct(vals("click"), 50),
        "click_p90": pct(vals("click"), 90),
        "dip_min": min(vals("dip_db"), default=float("nan")),
        "ibi_p90": pct(vals("ibi_excess"), 90),
        "surprise_med": pct(vals("surprise_pct"), 50),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", default=PROMPTS, help="comma-separated prompts")
    ap.add_argument("--loops", type=int, default=4, help="synth loops per prompt")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="synth clip length")
    ap.add_argument("--min-play", type=float, default=60.0)
    ap.add_argument("--crossfade", type=float, default=6.0)
    ap.add_argument("--eval-jumps", type=int, default=40, help="jumps given full seam metrics")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    se = load_seam_eval()
    if se is None:
        print("seam_eval.py not found: set SEAM_EVAL", file=sys.stderr)
        return 1
    gen = SynthGenerator()
    rng = np.random.default_rng(args.seed)
    header = (
        f"{'prompt':<14} {'mode':<6} {'exact min':>9} {'jumps/min':>9} {'tables s':>8} "
        f"{'n':>3} {'click med':>9} {'click p90':>9} {'dip min':>8} {'ibi p90':>8} "
        f"{'surpr med':>9}"
    )
    lines = [header]
    for prompt in [p.strip() for p in args.prompts.split(",") if p.strip()]:
        loops = make_loops(gen, prompt, args.loops, args.seconds)
        bpms = ", ".join(f"{lp.bpm:.1f}" for lp in loops)
        secs = ", ".join(f"{lp.audio.shape[0] / RATE:.1f}" for lp in loops)
        print(f"{prompt}: loops of {secs} s at {bpms} BPM", flush=True)
        t0 = time.perf_counter()
        build_brancher(loops[0], [(lp, None) for lp in loops[1:]], RATE)
        t_table = time.perf_counter() - t0
        loop_rows = [loop_seam_metrics(se, lp.audio, RATE) for lp in loops]
        for mode, seed in (("loop", None), ("branch", args.seed)):
            mono, joins = play(loops, args.minutes, args.min_play, args.crossfade, seed)
            best = exact_loop_minutes(mono, RATE)
            exact = sum(b >= 0.97 for b in best)
            rows = []
            if joins:
                pick = sorted(rng.choice(len(joins), min(args.eval_jumps, len(joins)), False))
                rows = [jump_metrics(se, mono, joins[k], RATE) for k in pick]
                rows = [r for r in rows if r is not None]
            s = seam_row(rows if mode == "branch" else loop_rows)
            lines.append(
                f"{prompt[:14]:<14} {mode:<6} {exact:>4}/{len(best):<4} "
                f"{len(joins) / (len(best) or 1):>9.1f} {t_table:>8.2f} {s['n']:>3} "
                f"{s['click_med']:>9.3f} {s['click_p90']:>9.3f} {s['dip_min']:>8.2f} "
                f"{s['ibi_p90']:>8.3f} {s['surprise_med']:>9.1f}"
            )
            print(lines[-1], f"(best autocorr per minute: {[round(b, 3) for b in best]})")
            sys.stdout.flush()
    print("\nrows 'loop': plain looping, seam figures at the loops' own wraps (the yardstick);")
    print("rows 'branch': variation, seam figures at the jumps.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
