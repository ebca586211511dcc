"""Sample-rate conversion through soxr."""

from __future__ import annotations

import numpy as np
import soxr


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """y resampled from sr_in to sr_out (soxr, high quality); layout and float32 kept.

    Shape (frames,) stays 1-D and (frames, channels) stays 2-D with the same channels;
    the length is round(frames * sr_out / sr_in).
    """
    a = np.asarray(y, dtype=np.float32)
    if sr_in == sr_out:
        return a.copy()
    out = soxr.resample(a, int(sr_in), int(sr_out), quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)
