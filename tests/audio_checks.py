"""Checks on recorded audio: alignment to an ideal tiled loop, tone levels, test signals.

Shared by the player, output, daemon and fault tests. Signals are at RATE (48 kHz),
float32 (frames, 2).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from tests.audio_servers import RATE


def noise_loop(seconds: float, seed: int = 1, level: float = 0.4) -> np.ndarray:
    """Uniform noise: every shift of it is distinct, so alignment and wrap errors show."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-level, level, (round(seconds * RATE), 2)).astype(np.float32)


def tone_loop(freq: float, seconds: float, level: float) -> np.ndarray:
    """A sine with a whole number of cycles: a seamless loop."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


def first_sound(rec: np.ndarray, threshold: float = 1e-3) -> int:
    loud = np.flatnonzero(np.abs(rec[:, 0]) > threshold)
    assert loud.size, "the recording is silent"
    return int(loud[0])


def align(rec: np.ndarray, loop: np.ndarray, start: int) -> int:
    """The index in `rec` (at or after `start`) where a copy of the loop begins."""
    n = loop.shape[0]
    segment = rec[start : start + 2 * n, 0]
    assert segment.shape[0] == 2 * n, "recording too short to align"
    corr = signal.correlate(segment, loop[:, 0], mode="valid", method="fft")
    return start + int(np.argmax(corr))


def assert_tiles(
    rec: np.ndarray,
    loop: np.ndarray,
    start: int,
    min_loops: int,
    end: int | None = None,
    tolerance: float = 1e-4,
) -> int:
    """From `start` (to `end`) the recording is the loop repeated exactly; returns the repeats."""
    n = loop.shape[0]
    offset = align(rec, loop, start)
    stop = rec.shape[0] if end is None else end
    whole = (stop - offset) // n - 1  # the last one may be cut by the stop
    assert whole >= min_loops, f"only {whole} whole loops recorded"
    got = rec[offset : offset + whole * n]
    ideal = np.tile(loop, (whole, 1))
    err = np.abs(got - ideal)
    worst = int(np.argmax(err.max(axis=1)))
    assert err.max() < tolerance, f"discontinuity {err.max():.4f} at loop frame {worst % n}"
    return whole


def tone_level(x: np.ndarray, freq: float) -> float:
    """Amplitude of `freq` in x (window = whole number of cycles)."""
    t = np.arange(x.shape[0]) / RATE
    return float(2 / x.shape[0] * abs(np.sum(x * np.exp(-2j * np.pi * freq * t))))


def silent_blocks(rec: np.ndarray, block_ms: float = 5.0, threshold: float = 1e-4) -> np.ndarray:
    """Indices of `block_ms` blocks whose peak is below `threshold` (a writer stall shows so)."""
    block = round(RATE * block_ms / 1000)
    x = np.abs(rec[:, 0])
    peaks = x[: x.size // block * block].reshape(-1, block).max(axis=1)
    return np.flatnonzero(peaks < threshold)
