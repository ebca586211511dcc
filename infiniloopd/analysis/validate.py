"""Input checks: reject audio that cannot make a loop, with a one-line reason."""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError

SILENCE_PEAK = 10 ** (-70 / 20)  # below -70 dBFS peak there is nothing to hear
CONTENT_DB = 45.0  # frames more than this below the loudest frame count as silence


def as_float32(y: np.ndarray) -> np.ndarray:
    """y as float32 (frames,) or (frames, channels); AnalysisError if it is neither."""
    a = np.asarray(y)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] < 1):
        raise AnalysisError(
            f"expected audio of shape (frames,) or (frames, channels), got {a.shape}"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise AnalysisError(f"expected numeric audio samples, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        scale = float(np.iinfo(a.dtype).max) + 1.0
        return (a.astype(np.float32) / scale).astype(np.float32)
    return a.astype(np.float32, copy=False)


def to_mono(y: np.ndarray) -> np.ndarray:
    return y if y.ndim == 1 else y.mean(axis=1, dtype=np.float32)


def content_seconds(mono: np.ndarray, sr: int) -> float:
    """Seconds of audio from the first to the last frame within CONTENT_DB of the loudest."""
    w = max(1, int(0.05 * sr))
    n = mono.size // w
    if n == 0:
        return 0.0
    e = np.mean(mono[: n * w].reshape(n, w).astype(np.float64) ** 2, axis=1)
    loud = np.flatnonzero(e > e.max() * 10 ** (-CONTENT_DB / 10))
    return float((loud[-1] - loud[0] + 1) * w / sr) if loud.size else 0.0


def validate_clip(y: np.ndarray, sr: int, *, min_seconds: float) -> np.ndarray:
    """Check that y can be looped and return it as float32 in the same layout.

    Raises AnalysisError for: a bad shape or rate, NaN/inf samples, silence, fewer than
    min_seconds of audio, or fewer than min_seconds between the first and last audible
    moment (a click or a short blip in silence is no music to loop).
    """
    if not isinstance(sr, (int, np.integer)) or sr < 1000:
        raise AnalysisError(f"expected a sample rate of at least 1000 Hz, got {sr!r}")
    a = as_float32(y)
    if a.shape[0] == 0:
        raise AnalysisError("the audio is empty")
    if not np.all(np.isfinite(a)):
        raise AnalysisError("the audio contains NaN or infinite samples")
    seconds = a.shape[0] / sr
    if seconds < min_seconds:
        raise AnalysisError(
            f"the audio is {seconds:.2f} s long, shorter than the {min_seconds:g} s minimum loop"
        )
    mono = to_mono(a)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak < SILENCE_PEAK:
        raise AnalysisError("the audio is silent")
    if float(np.std(mono)) < 1e-3 * peak:
        raise AnalysisError("the audio has no content (a constant level)")
    held = content_seconds(mono, sr)
    if held < min_seconds:
        raise AnalysisError(
            f"the audio has only {held:.2f} s of sound,"
            f" less than the {min_seconds:g} s minimum loop"
        )
    return a
