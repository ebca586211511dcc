"""What the built-in composer makes of prompts, measured on the rendered audio.

Usage: python3 benchmarks/music.py [--clips 4] [--seconds 20] [--only-prompts|--only-presets]
       [--series 30]

Per preset (from infiniloopd/data/presets.yaml) and for a list of free prompts, renders
`--clips` clips with the synth generator (FluidSynth when a SoundFont is installed),
cuts the loop as the daemon does (analysis.pipeline.analyse_clip, -18 LUFS, -1 dB
ceiling) and prints: style chosen, tempo asked (the score) vs measured (librosa beat
tracking on the clip), loop length in bars, chord changes inside the loop (from the
score's chord times), true peak of the loop (4x oversampled, dBTP), the share of energy
above 6 kHz and the sharpest sample step (max |diff| / RMS of diff) as harshness proxies.
Then leave-one-out nearest-centroid classification of the preset clips by mean timbre
(20 MFCC) and harmony (12 chroma) features, z-scored: the share of clips assigned to
their own preset (target >= 90%). Finally the keys and sections of `--series`
consecutive clips of the default prompt (composer only, no audio).
Works with older composers too (no clip index, no music facts): it then says "-".
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

import librosa
import numpy as np
import yaml
from scipy import signal

import infiniloopd
from infiniloopd.analysis.pipeline import analyse_clip
from infiniloopd.generators.synth import SR, SynthGenerator
from infiniloopd.generators.synth import composer as c

PRESETS = Path(infiniloopd.__file__).parent / "data" / "presets.yaml"
FREE_PROMPTS = (
    "heavy metal",
    "bossa nova",
    "reggae",
    "drum and bass",
    "dark techno, 128 bpm",
    "calm piano at 60 bpm",
    "solo guitar",
    "ambient, no drums",
    "funky disco with slap bass",
    "sad violin and cello",
)
DEFAULT_PROMPT = "calm ambient pads with soft piano, slow evolving textures, no drums"


def _takes_clip(fn) -> bool:
    return "clip" in inspect.signature(fn).parameters


def compose(prompt: str, seconds: float, seed: int, clip: int):
    if _takes_clip(c.compose):
        return c.compose(prompt, seconds, seed, clip=clip)
    return c.compose(prompt, seconds, seed)


def render(gen: SynthGenerator, prompt: str, seconds: float, seed: int, clip: int) -> np.ndarray:
    if _takes_clip(gen.render):
        return gen.render(prompt, seconds, seed, clip=clip)
    return gen.render(prompt, seconds, seed)


def chord_times(score) -> list[float]:
    """Start times of the score's chords (new scores carry them; old ones are derived)."""
    times = getattr(score, "chord_times", None)
    if times is not None:
        return list(times)
    style = c.STYLES[score.style]
    first = min(n.start for n in score.notes)
    step = style.beats_per_chord * 60.0 / score.bpm
    return [first + i * step for i in range(len(score.chords))]


def chord_changes(score, start_s: float, end_s: float) -> int:
    """Chord changes strictly inside the loop (a change to a different chord)."""
    times, chords = chord_times(score), list(score.chords)
    n = 0
    for i in range(1, len(times)):
        if start_s < times[i] < end_s and set(chords[i]) != set(chords[i - 1]):
            n += 1
    return n


def true_peak_db(loop: np.ndarray) -> float:
    up = signal.resample_poly(loop, 4, 1, axis=0)
    return float(20 * np.log10(np.max(np.abs(up)) + 1e-12))


def harshness(y: np.ndarray, sr: int) -> tuple[float, float]:
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / sr)
    hf = float(spec[freqs > 6000].sum() / (spec.sum() + 1e-20))
    d = np.diff(y.astype(np.float64))
    step = float(np.max(np.abs(d)) / (np.sqrt(np.mean(d**2)) + 1e-12))
    return hf, step


def features(y: np.ndarray) -> np.ndarray:
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=20).mean(axis=1)
    chroma = librosa.feature.chroma_stft(y=y, sr=SR).mean(axis=1)
    return np.concatenate([mfcc, chroma])


def loo_nearest_centroid(x: np.ndarray, labels: list[str]) -> tuple[float, list[str]]:
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    lab = np.array(labels)
    names = sorted(set(labels))
    hits, wrong = 0, []
    for i in range(len(lab)):
        keep = np.arange(len(lab)) != i
        cents = np.array([x[keep & (lab == n)].mean(axis=0) for n in names])
        guess = names[int(np.argmin(((cents - x[i]) ** 2).sum(axis=1)))]
        hits += guess == lab[i]
        if guess != lab[i]:
            wrong.append(f"{lab[i]}->{guess}")
    return hits / len(lab), wrong


def asked_bpm(score) -> float:
    return float(score.bpm)


def run_prompt(gen, label, prompt, args, feats, labels):
    rows = []
    for k in range(args.clips):
        seed = 1000 + 17 * k
        score = compose(prompt, args.seconds, seed, k)
        y = render(gen, prompt, args.seconds, seed, k)
        tempo, _ = librosa.beat.beat_track(y=y, sr=SR)
        measured = float(np.atleast_1d(tempo)[0])
        loop, points, info = analyse_clip(y, SR)
        changes = chord_changes(score, info["start_s"], info["end_s"])
        tp = true_peak_db(loop)
        hf, step = harshness(y, SR)
        music = getattr(score, "music", None)
        section = music.get("section", "-") if isinstance(music, dict) else "-"
        rows.append((score, measured, points.bars, points.beats_per_bar, changes, tp, hf, step))
        if feats is not None:
            feats.append(features(y))
            labels.append(label)
        del section
    s0 = rows[0][0]
    bars = "/".join(str(r[2]) for r in rows)
    ch = "/".join(str(r[4]) for r in rows)
    tps = max(r[5] for r in rows)
    hf = np.mean([r[6] for r in rows])
    step = max(r[7] for r in rows)
    tempos = "/".join(f"{r[1]:.0f}" for r in rows)
    asked = "/".join(f"{asked_bpm(r[0]):.0f}" for r in rows)
    keys = ",".join(sorted({r[0].key_name for r in rows}))
    print(
        f"{label[:22]:22s} {s0.style:11s} {asked:15s} {tempos:15s} {bars:11s} {ch:11s} "
        f"{tps:6.1f} {hf * 100:5.1f} {step:5.1f}  {keys}",
        flush=True,
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--only-prompts", action="store_true")
    ap.add_argument("--only-presets", action="store_true")
    ap.add_argument("--series", type=int, default=30)
    args = ap.parse_args()
    gen = SynthGenerator()
    gen.load()
    presets = yaml.safe_load(PRESETS.read_text())
    t0 = time.perf_counter()
    print(f"renderer: {gen.model}; {args.clips} clips of {args.seconds:g} s each")
    print(
        f"{'preset/prompt':22s} {'style':11s} {'bpm asked':15s} {'bpm heard':15s} "
        f"{'loop bars':11s} {'chg/loop':11s} {'maxTP':>6s} {'%>6k':>5s} {'step':>5s}  keys"
    )
    feats: list[np.ndarray] = []
    labels: list[str] = []
    all_rows = []
    if not args.only_prompts:
        for name, p in presets.items():
            prompt = p["prompt"] if isinstance(p, dict) else p
            all_rows += run_prompt(gen, name, prompt, args, feats, labels)
    print("--- free prompts")
    for prompt in () if args.only_presets else FREE_PROMPTS:
        all_rows += run_prompt(gen, prompt, prompt, args, None, None)
    over = sum(r[5] > -1.0 for r in all_rows)
    print(f"\nloops with true peak above -1 dBTP: {over} of {len(all_rows)}")
    if feats:
        acc, wrong = loo_nearest_centroid(np.array(feats), labels)
        print(f"leave-one-out nearest-centroid, presets: {acc * 100:.0f}% own preset")
        if wrong:
            print("  confused: " + ", ".join(wrong))
    print(f"\n{args.series} consecutive clips of {DEFAULT_PROMPT!r}:")
    line = []
    for k in range(args.series):
        s = compose(DEFAULT_PROMPT, args.seconds, 5000 + k, k)
        music = getattr(s, "music", None)
        sec = music.get("section", "-") if isinstance(music, dict) else "-"
        line.append(f"{k}:{s.key_name}/{sec}/{s.bpm:.0f}")
    for i in range(0, len(line), 6):
        print("  " + "  ".join(line[i : i + 6]))
    t = time.perf_counter()
    for k in range(20):
        compose(DEFAULT_PROMPT, 20.0, k, k)
    print(f"compose 20 s clip: {(time.perf_counter() - t) / 20 * 1000:.1f} ms mean")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
