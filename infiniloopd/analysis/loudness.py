"""Loudness normalization: ITU-R BS.1770 integrated loudness, then a peak ceiling."""

from __future__ import annotations

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from .errors import AnalysisError

# The limiter's gain moves over this long: slow enough not to distort bass, fast enough to
# leave the level around a peak alone.
_LIMIT_WINDOW_S = 0.015
# Deeper limiting than this would be audible; above it the overall gain gives way instead.
_MAX_LIMIT_DB = 6.0
_MIN_MEASURE_S = 1.0


def measure_lufs(y: np.ndarray, sr: int) -> float:
    """BS.1770 integrated loudness of y in LUFS (-inf for silence)."""
    a = np.asarray(y, dtype=np.float64)
    if a.shape[0] < _MIN_MEASURE_S * sr:
        # the gated measurement needs 400 ms blocks; a loop repeats, so repeat it
        reps = int(np.ceil(_MIN_MEASURE_S * sr / max(1, a.shape[0])))
        a = np.concatenate([a] * reps, axis=0)
    return float(pyloudnorm.Meter(sr).integrated_loudness(a))


def limit_peaks(y: np.ndarray, sr: int, ceiling: float, *, circular: bool = True) -> np.ndarray:
    """Look-ahead peak limiter: |output| <= ceiling, gain changes spread over ~15 ms.

    The gain is the running minimum of the gain each sample needs, smoothed by a moving
    average half as wide, so it is already down when a peak arrives and never overshoots.
    circular=True treats y as a loop: the gain wraps around, so the seam stays seamless.
    """
    a = np.asarray(y, dtype=np.float32)
    peak = np.abs(a) if a.ndim == 1 else np.abs(a).max(axis=1)
    if float(peak.max(initial=0.0)) <= ceiling:
        return a.copy()
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    half = max(1, int(_LIMIT_WINDOW_S * sr))
    mode = "wrap" if circular else "nearest"
    g = minimum_filter1d(need, size=2 * half + 1, mode=mode)
    g = uniform_filter1d(g, size=half + 1, mode=mode)
    g = np.minimum(g, need)  # float rounding in the average must not let a peak through
    out = a * (g if a.ndim == 1 else g[:, None]).astype(np.float32)
    return out.astype(np.float32)


def normalize_loudness(
    y: np.ndarray,
    sr: int,
    target_lufs: float = -18.0,
    peak_ceiling_db: float = -1.0,
    *,
    circular: bool = True,
) -> tuple[np.ndarray, float]:
    """Bring y to target_lufs integrated loudness with sample peaks under the ceiling.

    Returns (normalized float32 audio in y's layout, measured loudness of y in LUFS).
    Peaks the gain would push over the ceiling are taken down by a transparent
    look-ahead limiter rather than by lowering the whole loop, so every loop lands on
    the same loudness and transitions do not jump in level; only peaks needing more
    than 6 dB of limiting lower the overall gain instead. circular=True (for loops)
    lets the limiter's gain wrap around the seam.
    """
    a = np.asarray(y, dtype=np.float32)
    measured = measure_lufs(a, sr)
    if not np.isfinite(measured):
        raise AnalysisError("the audio is silent, its loudness cannot be measured")
    ceiling = 10.0 ** (peak_ceiling_db / 20.0)
    gain = 10.0 ** ((target_lufs - measured) / 20.0)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    if peak * gain > ceiling * 10.0 ** (_MAX_LIMIT_DB / 20.0):
        gain = ceiling * 10.0 ** (_MAX_LIMIT_DB / 20.0) / peak
    out = limit_peaks(a * np.float32(gain), sr, ceiling, circular=circular)
    return out, measured
