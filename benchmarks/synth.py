"""Render time of the built-in synth generator per clip: FluidSynth path vs numpy fallback.

Usage: python3 benchmarks/synth.py [--seconds 10] [--repeats 3]
Prints the SoundFont load time, then per style the median wall time of compose, render
and finishing fx for one clip, and the realtime factor (clip seconds / wall seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from infiniloopd.generators.synth import DEFAULT_SOUNDFONTS, SR, SynthGenerator, fx, render_numpy
from infiniloopd.generators.synth.composer import compose
from infiniloopd.generators.synth.render_fluid import FluidRenderer

renderers: dict[Path | None, FluidRenderer] = {}
PROMPTS = ("techno", "lofi", "ambient", "jazz", "cinematic", "chiptune", "piano", "synthwave")
PROMPTS += ("heavy metal", "bossa nova", "reggae", "drum and bass", "house", "classical")


def stage_times(gen: SynthGenerator, prompt: str, seconds: float, seed: int) -> tuple:
    t0 = time.perf_counter()
    score = compose(prompt, seconds, seed, clip=seed)
    t1 = time.perf_counter()
    rng = np.random.default_rng(seed)
    whole = score.from_preroll()  # the pre-roll that fills the reverb is rendered too
    frames = round(whole.seconds * SR)
    if gen.model == "numpy":
        dry = render_numpy.render(whole, frames, SR, rng)
    else:
        dry = renderers[gen.soundfont].render(whole, frames)
    t2 = time.perf_counter()
    fx.finish(dry, SR, score.fx, rng, preroll=round(score.preroll * SR))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(score.notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    gens: list[tuple[str, SynthGenerator]] = []
    for path in DEFAULT_SOUNDFONTS[:2]:
        if path.is_file():
            gen = SynthGenerator(Path(path))
            t = time.perf_counter()
            gen.load()
            print(f"load {path.name}: {time.perf_counter() - t:.3f} s")
            gens.append((f"fluid:{path.stem}", gen))
            renderers[gen.soundfont] = FluidRenderer(gen.soundfont, SR)
    gens.append(("numpy", SynthGenerator(search=())))

    print(f"\nclip of {args.seconds:g} s at {SR} Hz, median of {args.repeats} (seconds)")
    print(
        f"{'path':20s} {'prompt':10s} {'notes':>5s} {'compose':>8s} {'render':>7s} "
        f"{'fx':>6s} {'total':>6s} {'xRT':>6s}"
    )
    for label, gen in gens:
        totals = []
        for prompt in PROMPTS:
            runs = [stage_times(gen, prompt, args.seconds, seed) for seed in range(args.repeats)]
            c, r, f = (statistics.median(x[i] for x in runs) for i in range(3))
            total = c + r + f
            totals.append(total)
            print(
                f"{label:20s} {prompt:10s} {runs[0][3]:5d} {c:8.3f} {r:7.3f} {f:6.3f} "
                f"{total:6.3f} {args.seconds / total:6.0f}"
            )
        print(
            f"{label:20s} {'ALL':10s} {'':5s} {'':8s} {'':7s} {'':6s} "
            f"{statistics.median(totals):6.3f} (median), max {max(totals):.3f}\n"
        )

    # The whole public path once, as the daemon calls it (includes the WAV-ready array).
    for label, gen in gens:
        t = time.perf_counter()
        gen.render("lofi", args.seconds, seed=99)
        print(f"render() end to end, {label}: {time.perf_counter() - t:.3f} s")


if __name__ == "__main__":
    main()
