"""Finishing effects for a rendered mix (pure numpy/scipy, mono float32 in and out)."""

from __future__ import annotations

import numpy as np
from scipy import signal
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from .styles import Fx


def _sos(kind: str, hz: float | tuple[float, float], sr: int, order: int = 2) -> np.ndarray:
    return signal.butter(order, hz, btype=kind, fs=sr, output="sos")


def reverb_ir(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: exponentially decaying noise that darkens as it decays."""
    n = max(int(seconds * sr), 16)
    t = np.arange(n) / sr
    noise = rng.standard_normal(n)
    bright = noise
    dark = signal.sosfilt(_sos("lowpass", 2500, sr), noise)
    # High frequencies die faster in real rooms: cross-fade from bright to dark noise.
    blend = np.exp(-t / (seconds * 0.25))
    ir = (bright * blend + dark * 2.0 * (1 - blend)) * np.power(1e-3, t / seconds)
    ir[: int(0.012 * sr)] *= np.linspace(0, 1, int(0.012 * sr))  # soft onset
    predelay = np.zeros(int(0.018 * sr))
    ir = np.concatenate([predelay, ir])
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def reverb(
    x: np.ndarray, sr: int, mix: float, seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """Convolution reverb, wet level `mix` (0..1), output the same length as the input."""
    if mix <= 0:
        return x
    wet = signal.oaconvolve(x, reverb_ir(seconds, sr, rng))[: len(x)]
    wet = signal.sosfilt(_sos("highpass", 180, sr), wet)  # keep the low end clear
    return (x * (1 - mix * 0.5) + wet * mix).astype(np.float32)


def lofi(
    x: np.ndarray,
    sr: int,
    cutoff: float | None,
    wow_ms: float,
    drive: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Tape-like colour: wow and flutter, a soft saturation, a dull top end."""
    y = x
    if wow_ms > 0:
        t = np.arange(len(y)) / sr
        phase = rng.uniform(0, 2 * np.pi, 2)
        delay = (
            wow_ms
            / 1000
            * sr
            * (
                0.5 * (1 + np.sin(2 * np.pi * 0.55 * t + phase[0]))
                + 0.08 * np.sin(2 * np.pi * 6.5 * t + phase[1])
            )
        )
        y = np.interp(np.arange(len(y)) - delay, np.arange(len(y)), y).astype(np.float32)
    if drive > 0:
        g = 1 + 3 * drive
        peak = float(np.max(np.abs(y))) or 1.0
        y = np.tanh(y / peak * g) / np.tanh(g) * peak
    if cutoff:
        y = signal.sosfilt(_sos("lowpass", cutoff, sr, order=4), y)
        y = signal.sosfilt(_sos("highpass", 40, sr), y)
    return y.astype(np.float32)


def vinyl(n: int, sr: int, crackle: float, hiss: float, rng: np.random.Generator) -> np.ndarray:
    """Vinyl crackle (sparse filtered clicks) and tape hiss, at unit-ish scale."""
    out = np.zeros(n, dtype=np.float64)
    if hiss > 0:
        h = signal.sosfilt(_sos("bandpass", (1500, 9000), sr), rng.standard_normal(n))
        out += h * 0.006 * hiss
    if crackle > 0:
        clicks = np.zeros(n)
        count = rng.poisson(n / sr * 14 * crackle)
        pos = rng.integers(0, n, count)
        clicks[pos] = rng.standard_normal(count) * rng.pareto(3.0, count)
        clicks = signal.sosfilt(_sos("highpass", 1200, sr), clicks)
        clicks = np.convolve(clicks, np.exp(-np.arange(24) / 4.0), mode="same")
        out += clicks * 0.025 * crackle
    return out.astype(np.float32)


def rain(n: int, sr: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """Rain: a broad wash of filtered noise that breathes, with individual drops."""
    if level <= 0:
        return np.zeros(n, dtype=np.float32)
    wash = signal.sosfilt(_sos("bandpass", (400, 7000), sr), rng.standard_normal(n))
    wash = signal.sosfilt(_sos("lowpass", 5000, sr, order=1), wash)
    t = np.arange(n) / sr
    swell = 1 + 0.25 * np.sin(2 * np.pi * 0.11 * t + rng.uniform(0, 6.3))
    drops = np.zeros(n)
    count = rng.poisson(n / sr * 60)
    drops[rng.integers(0, n, count)] = rng.uniform(0.2, 1.0, count)
    drops = signal.sosfilt(_sos("bandpass", (1800, 6000), sr), drops)
    drops = np.convolve(drops, np.exp(-np.arange(96) / 18.0), mode="same")
    return ((wash * 0.02 * swell + drops * 0.04) * level).astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def true_peaks(x: np.ndarray) -> np.ndarray:
    """Per sample, the highest magnitude of the 4x oversampled signal around it (BS.1770)."""
    up = signal.resample_poly(x.astype(np.float64), 4, 1)
    return np.abs(up[: 4 * len(x)]).reshape(len(x), 4).max(axis=1)


def limit(x: np.ndarray, ceiling: float, sr: int) -> np.ndarray:
    """A true-peak limiter without lookahead artefacts: gain is what the peaks need.

    Peaks are measured between the samples too (4x oversampled), so the limited signal
    stays under `ceiling` after any later resampling or D/A conversion.
    """
    need = np.minimum(1.0, ceiling / np.maximum(np.maximum(np.abs(x), true_peaks(x)), 1e-9))
    if need.min() >= 1.0:
        return x
    win = max(int(0.004 * sr), 1)
    # Widen the minimum before smoothing, so the smoothed gain is still low enough at
    # each peak and moves gently around it.
    gain = uniform_filter1d(minimum_filter1d(need, 2 * win + 1), win)
    y = x * gain
    return np.clip(y, -ceiling, ceiling).astype(np.float32)


def finish(
    dry: np.ndarray,
    sr: int,
    fx: Fx,
    rng: np.random.Generator,
    target_rms_db: float = -16.5,
    ceiling: float = 0.84,
    preroll: int = 0,
) -> np.ndarray:
    """Room, colour, texture, level, and the clip's edges: the sound of a finished take.

    The first `preroll` samples of `dry` are music before the clip: they fill the reverb
    and are then cut, so the clip opens with its room already sounding (and a loop cut
    near its start has the same tail as one cut later). Ceiling 0.84 is -1.5 dBTP.
    """
    x = dry.astype(np.float32)
    x = x / (10 ** (rms_db(x) / 20)) * 10 ** (target_rms_db / 20)  # level before colour
    x = reverb(x, sr, fx.reverb_mix, fx.reverb_seconds, rng)
    x = lofi(x, sr, fx.lowpass_hz, fx.wow, fx.saturation, rng)
    x = np.ascontiguousarray(x[preroll:])
    n = len(x)
    noise = vinyl(n, sr, fx.crackle, fx.hiss, rng) + rain(n, sr, fx.rain, rng)
    music_level = 10 ** (rms_db(x) / 20)
    x = x + noise * (music_level / 0.1)  # textures sit at a fixed distance below the music
    x = x / (10 ** (rms_db(x) / 20)) * 10 ** (target_rms_db / 20)
    # Edges like a generated take: a quick, slightly uneven fade-in, and at the end it
    # simply stops (a few milliseconds of fade only so the cut does not click).
    fade_in = int(sr * rng.uniform(0.015, 0.06))
    x[:fade_in] *= np.linspace(0, 1, fade_in) ** 1.5
    fade_out = int(sr * 0.006)
    x[n - fade_out :] *= np.linspace(1, 0, fade_out)
    return limit(x, ceiling, sr)
