"""The beat grid of a loop: tempo, beats, bar lines and chord changes (pure numpy).

Positions are samples of the rendered loop, which is rotated so that frame 0 is a
downbeat. The player lines transitions up on these positions, so they are what the
listener hears, not what the tracker guessed about the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Tempo preference: a tracker's period can be half or twice the felt beat. Inside this
# range both readings are plausible and the onset evidence decides; outside it the
# octave that lands inside wins unless the evidence for it is weak.
PREFERRED_BPM = (55.0, 160.0)
_OCTAVE_EVIDENCE = 0.5  # autocorrelation the other octave needs, relative to the first

# chord changes: chroma compared over this long before and after each frame
_CHANGE_WINDOW_S = 1.0
_CHANGE_MIN_GAP_S = 1.5
_CHANGE_MIN_NOVELTY = 0.08  # cosine distance: below this, the harmony did not change


@dataclass(frozen=True)
class BeatGrid:
    """Beat positions of a loop (samples at its rate, within [0, frames))."""

    bpm: float
    beats_per_bar: int
    beats: tuple[int, ...]
    downbeats: tuple[int, ...]
    changes: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "bpm": float(self.bpm),
            "beats_per_bar": int(self.beats_per_bar),
            "beats": [int(b) for b in self.beats],
            "downbeats": [int(b) for b in self.downbeats],
            "changes": [int(c) for c in self.changes],
        }


def onset_autocorrelation(onset: np.ndarray) -> np.ndarray:
    """Unbiased autocorrelation of the mean-removed onset envelope, 1 at lag 0."""
    x = onset.astype(np.float64) - float(onset.mean())
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac = ac / np.maximum(np.arange(n, 0, -1), 1)
    return ac / ac[0] if ac[0] > 0 else ac


def _ac_at(ac: np.ndarray, lag: float) -> float:
    """Autocorrelation peak near a fractional lag (within 3 % of it)."""
    lo = int(np.floor(lag * 0.97))
    hi = int(np.ceil(lag * 1.03)) + 1
    if lo < 1 or hi > ac.size:
        return -np.inf
    return float(ac[lo:hi].max())


def prefer_octave(period: float, onset: np.ndarray, hop_seconds: float) -> float:
    """The beat period (frames) moved by octaves into PREFERRED_BPM where the onsets allow.

    A period whose tempo lies outside the range is halved or doubled if the onset
    envelope repeats at the new period at least _OCTAVE_EVIDENCE as strongly as at the
    old one: a 55 BPM reading of music with a pulse every half period becomes 110.
    """
    ac = onset_autocorrelation(onset)
    lo, hi = PREFERRED_BPM
    for _ in range(2):
        bpm = 60.0 / (period * hop_seconds)
        if bpm < lo:
            cand = period / 2.0
        elif bpm > hi:
            cand = period * 2.0
        else:
            break
        here = _ac_at(ac, period)
        there = _ac_at(ac, cand)
        if not np.isfinite(there) or there < _OCTAVE_EVIDENCE * max(here, 1e-9):
            break
        period = cand
    return period


def pulse_strength(onset: np.ndarray, period: float) -> float:
    """How strongly the onset envelope repeats at the beat period (autocorrelation, 0..1)."""
    if onset.size < 4 * period or not np.any(onset > 0):
        return 0.0
    return max(0.0, _ac_at(onset_autocorrelation(onset), period))


def chord_changes(chroma: np.ndarray, hop_seconds: float) -> np.ndarray:
    """Frames where the harmony changes: peaks of chroma novelty, at least 1.5 s apart.

    Novelty at a frame is the cosine distance between the mean chroma of the second
    before it and of the second after it, so a held chord scores near zero however its
    notes are arpeggiated, and a new chord scores high at its first frame.
    """
    t = chroma.shape[1]
    w = max(2, int(round(_CHANGE_WINDOW_S / hop_seconds)))
    if t < 2 * w + 2:
        return np.zeros(0, dtype=np.int64)
    c = np.concatenate([np.zeros((12, 1)), np.cumsum(chroma.astype(np.float64), axis=1)], axis=1)
    idx = np.arange(w, t - w + 1)
    before = c[:, idx] - c[:, idx - w]
    after = c[:, idx + w] - c[:, idx]
    nb = np.linalg.norm(before, axis=0)
    na = np.linalg.norm(after, axis=0)
    nov = 1.0 - np.sum(before * after, axis=0) / np.maximum(nb * na, 1e-12)
    gap = max(1, int(round(_CHANGE_MIN_GAP_S / hop_seconds)))
    order = np.argsort(-nov, kind="stable")
    taken = np.zeros(nov.size, dtype=bool)
    blocked = np.zeros(nov.size, dtype=bool)
    for i in order:
        if nov[i] < _CHANGE_MIN_NOVELTY:
            break
        if blocked[i]:
            continue
        taken[i] = True
        blocked[max(0, i - gap + 1) : i + gap] = True
    return (idx[taken]).astype(np.int64)
