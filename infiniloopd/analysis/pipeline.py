"""The analyzer's one call: a raw clip in, a playable, normalized loop out."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .errors import AnalysisError
from .loop import DEFAULT_CROSSFADE_MS, GridHint, LoopPoints, find_loop
from .loudness import measure_lufs, normalize_loudness
from .render import render_loop, rotate_loop
from .resample import resample
from .validate import validate_clip

log = logging.getLogger(__name__)


def map_channels(y: np.ndarray, channels: int) -> np.ndarray:
    """(frames, channels) float32: mono is duplicated, extra channels are mixed down."""
    a = np.asarray(y, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    have = a.shape[1]
    if channels < 1:
        raise AnalysisError(f"expected at least one output channel, got {channels}")
    if have == channels:
        return np.ascontiguousarray(a)
    if have == 1:
        return np.ascontiguousarray(np.repeat(a, channels, axis=1))
    if channels == 1:
        return np.ascontiguousarray(a.mean(axis=1, keepdims=True))
    # n -> m: keep the first channels, fold the rest into them round-robin
    out = a[:, :channels].copy()
    for c in range(channels, have):
        out[:, c % channels] += a[:, c]
    counts = np.bincount(np.arange(have) % channels, minlength=channels).astype(np.float32)
    return np.ascontiguousarray(out / counts[None, :])


def analyse_clip(
    y: np.ndarray,
    sr: int,
    *,
    out_rate: int = 48000,
    out_channels: int = 2,
    target_lufs: float | None = -18.0,
    min_seconds: float = 3.0,
    max_seconds: float | None = None,
    crossfade_ms: float = DEFAULT_CROSSFADE_MS,
    peak_ceiling_db: float = -1.0,
    hint: GridHint | None = None,
) -> tuple[np.ndarray, LoopPoints, dict[str, Any]]:
    """Validate, resample, find and render the loop, map channels, normalize loudness.

    Returns (loop float32 (frames, out_channels) at out_rate, LoopPoints in out_rate
    samples of the resampled clip, info). The clip is resampled before the search,
    not the loop after it: resampling a loop on its own would need circular padding
    and could not keep its length an exact whole number of samples, while points found
    at the output rate are exact there. target_lufs=None keeps the level. `hint`: the
    generator's own tempo, meter and bar line, used instead of finding the beat.
    info: input_rate, input_channels, input_seconds, out_rate, out_channels,
    start_s/end_s (seconds into the clip), seconds, bpm, score, beats,
    beats_per_bar, bars, rotation (frames the rendered loop was rotated by so that
    its frame 0 is a downbeat), downbeat_s (the clip's time of that frame 0), grid
    (the loop's beat grid as a dict, positions in the returned loop, or None),
    loudness_in (LUFS of the loop before gain), loudness_out,
    peak_db, analysis_s (wall time).
    """
    t0 = time.perf_counter()
    clip = validate_clip(y, sr, min_seconds=min_seconds)
    at_rate = resample(clip, sr, out_rate)
    points = find_loop(
        at_rate,
        out_rate,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        crossfade_ms=crossfade_ms,
        hint=hint,
    )
    rendered = render_loop(at_rate, out_rate, points, crossfade_ms=crossfade_ms)
    # frame 0 on a downbeat: players enter and leave loops on bar lines
    loop = map_channels(rotate_loop(rendered, points.rotation), out_channels)
    if target_lufs is not None:
        loop, loud_in = normalize_loudness(loop, out_rate, target_lufs, peak_ceiling_db)
        loud_out = measure_lufs(loop, out_rate)
    else:
        loud_in = loud_out = measure_lufs(loop, out_rate)
    peak = float(np.max(np.abs(loop)))
    info: dict[str, Any] = {
        "input_rate": int(sr),
        "input_channels": 1 if clip.ndim == 1 else int(clip.shape[1]),
        "input_seconds": clip.shape[0] / sr,
        "out_rate": int(out_rate),
        "out_channels": int(out_channels),
        "start_s": points.start / out_rate,
        "end_s": points.end / out_rate,
        "seconds": points.seconds,
        "bpm": points.bpm,
        "score": points.score,
        "beats": points.beats,
        "beats_per_bar": points.beats_per_bar,
        "bars": points.bars,
        "rotation": points.rotation,
        "downbeat_s": points.downbeat / out_rate,
        "grid": points.grid.to_dict() if points.grid is not None else None,
        "loudness_in": loud_in,
        "loudness_out": loud_out,
        "peak_db": 20.0 * np.log10(peak) if peak > 0 else float("-inf"),
        "analysis_s": time.perf_counter() - t0,
    }
    return loop, points, info
