"""Synthetic music with an exactly known period, for the loop engine's tests."""

from __future__ import annotations

import numpy as np


def drum_bar_clip(
    *,
    sr: int = 32000,
    bpm: float = 120.0,
    beats_per_bar: int = 4,
    seconds: float = 20.0,
    seed: int = 7,
    fade_s: float = 0.0,
    channels: int = 0,
) -> tuple[np.ndarray, int]:
    """Drums, bass and a pad that repeat exactly every bar; returns (audio, bar length).

    The bar must be a whole number of samples (pick bpm and sr so), and every component
    is periodic in it: percussion is pasted at the same offsets in every bar, and the
    pad's frequencies are whole multiples of 1/bar seconds. fade_s adds a linear fade-in
    and fade-out of that length; channels > 0 makes a (frames, channels) array with a
    slightly different mix per channel.
    """
    beat = sr * 60.0 / bpm
    bar = beat * beats_per_bar
    assert abs(bar - round(bar)) < 1e-9, "choose bpm and sr so that a bar is whole samples"
    beat_n, bar_n = int(round(beat)), int(round(bar))
    assert abs(beat - beat_n) < 1e-9
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n + bar_n)
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.1)
    snare = (0.6 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 190 * t)) * np.exp(
        -t / 0.05
    )
    hat = 0.2 * np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t / 0.012)
    bass_hz = [55.0, 82.5, 73.33, 61.74, 55.0, 49.0]

    def paste(sig: np.ndarray, at: int, gain: float) -> None:
        m = min(sig.size, y.size - at)
        if m > 0:
            y[at : at + m] += gain * sig[:m]

    for b0 in range(0, n + 1, bar_n):
        for b in range(beats_per_bar):
            s = b0 + b * beat_n
            paste(kick, s, 1.0 if b == 0 else 0.55)
            if b % 2 == 1:
                paste(snare, s, 0.45)
            paste(hat, s + beat_n // 2, 1.0)
            tb = np.arange(beat_n) / sr
            note = 0.3 * np.sin(2 * np.pi * bass_hz[b % len(bass_hz)] * tb)
            note *= np.minimum(1, tb / 0.01) * np.minimum(1, (beat_n - np.arange(beat_n)) / 160.0)
            paste(note, s, 1.0)
    tt = np.arange(y.size) / sr
    f0 = 1.0 / (bar_n / sr)  # pad partials are whole multiples of the bar frequency
    for mult in (220.0, 277.0, 330.0):
        y += 0.04 * np.sin(2 * np.pi * round(mult / f0) * f0 * tt)
    y = y[:n]
    if fade_s > 0:
        k = int(fade_s * sr)
        ramp = np.linspace(0.0, 1.0, k)
        y[:k] *= ramp
        y[-k:] *= ramp[::-1]
    y = 0.5 * y / np.max(np.abs(y))
    if channels:
        y = np.stack([y * (1.0 - 0.1 * c) for c in range(channels)], axis=1)
    return y.astype(np.float32), bar_n


def synth_bar_lines(prompt: str, seconds: float, seed: int) -> tuple[float, float, int]:
    """Truth of a synth clip: (bpm, time of the first bar line in seconds, beats per bar).

    The composer starts every clip on a bar line `offset` seconds in (0..0.12 s, drawn
    from its generator); the score keeps the tempo but not the offset, so it is drawn
    again here with the composer's own sequence of draws, and checked against the notes.
    """
    import math

    from infiniloopd.generators.synth import composer as c

    score = c.compose(prompt, seconds, seed)
    beat = 60.0 / score.bpm
    bar = 4 * beat
    # The progression's first chord (in the pre-roll) starts a bar; bars follow every 4 beats.
    t0 = score.chord_times[0]
    first = t0 + math.ceil((-t0 - 1e-9) / bar) * bar
    assert any(abs(n.start - first) < 0.03 for n in score.notes), "no note on the first bar line"
    return score.bpm, first, 4
