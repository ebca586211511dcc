"""Tempo matching: time-stretch an incoming loop to the playing tempo, pitch unchanged.

Uses Rubber Band (Debian's `rubberband-cli`, through pyrubberband), a phase-vocoder
time-stretcher that keeps the pitch: never a resampler, which would shift it. It runs
a subprocess and takes a moment, so it is called from an executor thread before a
loop is handed to the player, never on the audio thread.

A loop is stretched as a loop: the stretcher sees the wrapped neighbours at both
ends, and the few milliseconds after the cut are blended into the start, so the
stretched loop still repeats without a seam.
"""

from __future__ import annotations

import logging

import numpy as np

from infiniloopd.errors import UserError
from infiniloopd.player.transitions import MAX_STRETCH, loop_bpm, scale_grid, tempo_ratio

log = logging.getLogger(__name__)

# Below this relative tempo difference the loops already run together.
MIN_STRETCH = 0.002
SEAM_MS = 15.0
PAD_SECONDS = 0.5
# Rubber Band's R3 engine ("--fine") keeps transients and mixes better than R2 on big
# changes, at about three times the cost; for the usual few-percent nudges R2 is
# transparent enough, and a record renders far faster with it.
FINE_ABOVE = 0.03


def stretch_factor(playing_bpm: float | None, incoming_bpm: float | None) -> float | None:
    """The length factor to apply to the incoming loop, or None when none is wanted.

    None when a tempo is unknown, when the tempos already match, or when they differ
    by more than MAX_STRETCH (then the transition keeps its overlap within one beat).
    """
    ratio = tempo_ratio(playing_bpm, incoming_bpm)
    if ratio is None or abs(ratio - 1.0) < MIN_STRETCH or abs(ratio - 1.0) > MAX_STRETCH + 1e-9:
        return None
    return ratio  # incoming beats are shorter by 1/ratio: lengthen by the ratio


def stretch_loop(audio: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """The loop `audio` (frames, channels) made `factor` times longer, same pitch."""
    import pyrubberband

    audio = np.asarray(audio, dtype=np.float32)
    frames = audio.shape[0]
    pad = min(frames, round(PAD_SECONDS * rate))
    ring = np.tile(audio, (-(-pad // frames), 1))
    padded = np.concatenate([ring[-pad:], audio, ring[:pad]])
    try:
        args = {"--fine": ""} if abs(factor - 1.0) > FINE_ABOVE else None
        out = pyrubberband.time_stretch(padded, rate, 1.0 / factor, rbargs=args)
    except (RuntimeError, OSError) as exc:
        raise UserError(
            f"time-stretch: rubberband failed ({exc}); is rubberband-cli installed?"
        ) from None
    out = np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[1])
    length = max(1, round(frames * factor))
    start = round(pad * factor)
    need = start + length + round(SEAM_MS * rate / 1000.0)
    if out.shape[0] < need:  # the stretcher's length is approximate: never short
        out = np.concatenate([out, np.zeros((need - out.shape[0], out.shape[1]), np.float32)])
    loop = out[start : start + length].copy()
    k = min(length // 4, round(SEAM_MS * rate / 1000.0))
    if k > 1:
        # What follows the loop's end in the stretched stream, blended into its start:
        # the wrap from the end to the start becomes continuous.
        after = out[start + length : start + length + k]
        w = np.linspace(0.0, 1.0, k, dtype=np.float32)[:, None]
        loop[:k] = after * (1.0 - w) + loop[:k] * w
    return loop


def match_tempo(
    audio: np.ndarray,
    grid: dict | None,
    bpm: float | None,
    playing_bpm: float | None,
    rate: int,
) -> tuple[np.ndarray, dict | None, float | None]:
    """The incoming loop stretched to `playing_bpm` when within MAX_STRETCH, with its
    grid scaled and its new tempo; unchanged otherwise. Blocking: call off the loop."""
    incoming_bpm = loop_bpm(grid, bpm, audio.shape[0], rate)
    factor = stretch_factor(playing_bpm, incoming_bpm)
    if factor is None:
        return audio, grid, bpm
    out = stretch_loop(audio, rate, factor)
    new_grid = scale_grid(grid, factor, out.shape[0])
    log.info("time-stretched the incoming loop %.1f -> %.1f BPM", incoming_bpm, playing_bpm)
    return out, new_grid, float(playing_bpm) if playing_bpm else bpm
