"""Audio for the variation tests and benchmark: synthetic loops, seam and repetition metrics.

make_loop: a drum pattern (kick, snare, hats) under a chord per bar, at an exact
tempo, so the loop is seamless and its beat grid is known to the sample.
jump_metrics: the seam_eval metrics (shared tools) applied at a join inside a stream.
exact_loop_minutes: which minutes of a stream are one short loop repeated.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

RATE = 48000
BPM = 120.0
BEAT = RATE * 60 // int(BPM)  # 24000 frames
BAR = 4 * BEAT

# Chords as frequency sets (Hz); each loop is a progression of these, one per bar.
CHORDS = {
    "C": (261.63, 329.63, 392.00),
    "Am": (220.00, 261.63, 329.63),
    "F": (174.61, 220.00, 261.63),
    "G": (196.00, 246.94, 293.66),
    "Dm": (146.83, 174.61, 220.00),
    "Em": (164.81, 196.00, 246.94),
    "F#": (185.00, 233.08, 277.18),
}


def _drums(frames: int, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(frames)
    t = np.arange(int(0.4 * RATE)) / RATE
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.12)
    snare = (0.5 * rng.standard_normal(t.size) + 0.4 * np.sin(2 * np.pi * 190 * t)) * np.exp(
        -t / 0.06
    )
    hat = 0.2 * np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t / 0.015)
    for s in range(0, frames, BEAT):
        b = (s // BEAT) % 4
        parts = [(s, 0.8 * kick)]
        if b in (1, 3):
            parts.append((s, 0.5 * snare))
        parts += [(s, hat), (s + BEAT // 2, hat)]
        for at, sound in parts:
            # circular: the tail of the last beat wraps onto the start (a seamless loop)
            idx = (at + np.arange(sound.size)) % frames
            np.add.at(y, idx, sound)
    return y


def _pad(frames: int, progression: list[str], rng: np.random.Generator) -> np.ndarray:
    """Sustained chords, one per bar, changing with a 40 ms crossfade (no level dip)."""
    t = np.arange(frames) / RATE
    y = np.zeros(frames)
    xf = int(0.04 * RATE)
    for i, name in enumerate(progression):
        env = np.zeros(frames)
        env[i * BAR : (i + 1) * BAR] = 1.0
        ramp = np.linspace(0.0, 1.0, xf)
        # in over the 40 ms before its bar line (circularly), out before the next one
        idx = (i * BAR - xf + np.arange(xf)) % frames
        env[idx] = np.sqrt(ramp)
        idx = ((i + 1) * BAR - xf + np.arange(xf)) % frames
        env[idx] = np.sqrt(1.0 - ramp)
        # whole cycles per bar (multiples of 0.5 Hz): the loop wraps without a step
        freqs = [round(2.0 * f) / 2.0 for f in CHORDS[name]]
        # each loop's voices start at their own phase: joins between loops are not trivial
        ph = rng.uniform(0, 2 * np.pi, (len(freqs), 2))
        seg = sum(
            np.sin(2 * np.pi * f * t + p[0]) + 0.3 * np.sin(4 * np.pi * f * t + p[1])
            for f, p in zip(freqs, ph, strict=True)
        )
        y += 0.08 * seg * env
    return y


def make_loop(progression: list[str], seed: int = 1, drums: float = 1.0) -> tuple[np.ndarray, dict]:
    """A stereo loop of one bar per chord, and its beat grid (library.py contract)."""
    frames = BAR * len(progression)
    rng = np.random.default_rng(seed)
    y = drums * _drums(frames, rng) + _pad(frames, progression, rng)
    y = 0.5 * y / np.max(np.abs(y))
    stereo = np.stack([y, 0.9 * y], axis=1).astype(np.float32)
    beats = list(range(0, frames, BEAT))
    grid = {
        "bpm": BPM,
        "beats_per_bar": 4,
        "beats": beats,
        "downbeats": beats[::4],
        "changes": beats[::4],
    }
    return stereo, grid


def load_seam_eval() -> ModuleType | None:
    """The shared seam_eval.py ($SEAM_EVAL, or shared/tools beside the checkout), or None."""
    env = os.environ.get("SEAM_EVAL")
    repo = Path(__file__).resolve().parents[1]
    beside = [repo.parent / "shared", repo.parent.parent / "shared"]  # main/ or wt/NAME/
    paths = [Path(env)] if env else [d / "tools" / "seam_eval.py" for d in beside]
    for path in paths:
        if path.exists():
            spec = importlib.util.spec_from_file_location("seam_eval", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    return None


def jump_metrics(
    se: ModuleType, y: np.ndarray, join: int, sr: int, window: float = 8.0, full: bool = True
) -> dict | None:
    """seam_eval's metrics for a join at sample `join` of the mono stream y.

    The stream from `window` seconds before the join to twice that after stands in for
    seam_eval's tiled loop (join at n, "middle copy" n..2n); the click reference is the
    99.9th percentile step of that excerpt. None when the join is too near an end.
    With full=False only click and dip (fast: no beat tracking, no spectrogram).
    """
    n = int(window * sr)
    if join - n < 0 or join + 2 * n > y.size:
        return None
    x = np.asarray(y[join - n : join + 2 * n], dtype=np.float64)
    joins = (n,)
    out = {"click": se.click_score(x, x, joins)}
    out.update(se.level_dip(x, sr, n, joins))
    if full:
        out["ibi_jump"], _, out["ibi_floor"] = se.ibi_jump(x, sr, joins, n)
        out["ibi_excess"] = (
            None
            if out["ibi_jump"] is None or out["ibi_floor"] is None
            else out["ibi_jump"] - out["ibi_floor"]
        )
        out["surprise_pct"] = se.continuation_surprise(x, sr, n, joins)
    return out


def loop_seam_metrics(se: ModuleType, loop: np.ndarray, sr: int, window: float = 8.0) -> dict:
    """The same metrics at a wrap of the loop played plainly (jump_metrics' yardstick)."""
    mono = np.asarray(loop, dtype=np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    n = int(window * sr)
    reps = 2 + (3 * n) // mono.size + 1
    tiled = np.tile(mono, reps)
    wrap = mono.size * (1 + n // mono.size)  # the first wrap at or after n
    return jump_metrics(se, tiled, wrap, sr, window)


def _logmel(y: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """(T, 40) log band energies, centred per band, of mono y."""
    n_fft = 4 * hop
    t_count = 1 + (y.size - n_fft) // hop
    idx = np.arange(t_count)[:, None] * hop + np.arange(n_fft)[None, :]
    spec = np.abs(np.fft.rfft(y[idx] * np.hanning(n_fft), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.geomspace(40.0, min(16000.0, sr / 2), 42)
    bands = np.stack(
        [
            spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
            for lo, hi in zip(edges[:-2], edges[2:], strict=True)
        ],
        axis=1,
    )
    db = 10.0 * np.log10(np.maximum(bands, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return db


def exact_loop_minutes(
    y: np.ndarray,
    sr: int,
    max_period: float = 30.0,
    threshold: float = 0.97,
    window: float = 20.0,
    step: float = 10.0,
) -> list[float]:
    """Per whole minute of mono y: how exactly it repeats with a period under max_period.

    Log band energies every ~21 ms, centred per band over the stream. For each lag of
    1..max_period s and each `window`-second stretch starting every `step` s within the
    minute, the Pearson correlation of the stretch with the stream `lag` later. The
    minute's score is, for its best lag, the median over its stretches: a minute that
    is one short loop for most of its length (say 54 s of a loop and a 6 s crossfade)
    scores about 1, one that repeats only for a moment does not. A minute scoring at
    least `threshold` is an exact loop (issue 12). Returns the score of each minute.
    """
    hop = 1024 if sr >= 44100 else 512
    f = _logmel(np.asarray(y, dtype=np.float64), sr, hop)
    f = f - f.mean(axis=0)
    fps = sr / hop
    w = int(window * fps)
    lags = range(int(1.0 * fps), int(max_period * fps) + 1)
    scores = []
    for m in range(int(y.size // (60 * sr))):
        starts = [int((m * 60 + k) * fps) for k in np.arange(0.0, 60.0 - window + 1e-9, step)]
        best = -1.0
        for lag in lags:
            vals = []
            for s0 in starts:
                a = f[s0 : s0 + w]
                b = f[s0 + lag : s0 + lag + w]
                if b.shape[0] < w:
                    continue
                a, b = a.ravel(), b.ravel()
                den = np.sqrt(float(a @ a) * float(b @ b))
                vals.append(float(a @ b) / den if den > 0 else 0.0)
            if vals:
                best = max(best, float(np.median(vals)))
        scores.append(best)
    return scores
