"""Transition planning: when the next loop comes in, where it enters, how long the fade.

Pure numpy, no I/O. A transition starts on the next bar line of the playing loop
(its downbeats, repeated every loop length) that is at least a short lead ahead;
the incoming loop enters on its own downbeat at that instant, and the equal-power
crossfade lasts whole bars of the playing loop, as close as possible to the wanted
seconds. Loops without beats change on the next chord change instead. Loops whose
tempos differ by more than `MAX_STRETCH` (and so were not time-stretched to match)
overlap for at most one beat, so two beats never run against each other for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Tempos closer than this (relative) are matched by time-stretching the incoming loop.
MAX_STRETCH = 0.08
# The soonest a transition may start after it was asked for (seconds).
LEAD = 0.05
# A loop without a grid but with a tempo is assumed in 4/4 with beat 0 at frame 0.
DEFAULT_BEATS_PER_BAR = 4


@dataclass(frozen=True)
class Grid:
    """The beat grid of one loop, normalized: positions in frames within [0, frames)."""

    frames: int
    bpm: float | None
    beats_per_bar: int
    beats: np.ndarray  # int64, ascending
    downbeats: np.ndarray  # int64, ascending, a subset of the bar lines
    changes: np.ndarray  # int64, ascending: chord changes (beatless transition points)

    @property
    def has_beats(self) -> bool:
        return self.beats.size > 0

    def beat_frames(self, rate: int) -> float | None:
        """Length of one beat in frames (from the beats, else the tempo), or None."""
        if self.beats.size >= 2:
            return float(np.median(np.diff(self.beats)))
        if self.bpm:
            return 60.0 * rate / self.bpm
        return None

    def bar_frames(self, rate: int) -> float | None:
        """Length of one bar in frames, or None for beatless loops."""
        if self.downbeats.size >= 2:
            return float(np.median(np.diff(self.downbeats)))
        beat = self.beat_frames(rate)
        return None if beat is None else beat * self.beats_per_bar

    def entry_point(self) -> int:
        """Where the loop enters when it comes in: its first downbeat (or beat, or change)."""
        for points in (self.downbeats, self.beats, self.changes):
            if points.size:
                return int(points[0])
        return 0

    def transition_points(self) -> np.ndarray:
        """Where a transition out of this loop may start: bar lines, else chord changes."""
        for points in (self.downbeats, self.beats, self.changes):
            if points.size:
                return points
        return np.zeros(1, dtype=np.int64)


def _positions(values: Any, frames: int) -> np.ndarray:
    if not values:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    arr = np.unique(np.round(arr).astype(np.int64))
    return arr[(arr >= 0) & (arr < frames)]


def make_grid(grid: dict | None, bpm: float | None, frames: int, rate: int) -> Grid:
    """The grid of a loop from its sidecar `grid` dict, else from its `bpm` alone.

    Without a grid but with a tempo, beat 0 is frame 0 and every fourth beat starts a
    bar; without either, the loop is beatless with its only transition point at 0.
    """
    frames = max(1, int(frames))
    if isinstance(grid, dict):
        g_bpm = grid.get("bpm")
        g_bpm = float(g_bpm) if isinstance(g_bpm, (int, float)) and g_bpm > 0 else bpm
        per_bar = grid.get("beats_per_bar")
        per_bar = int(per_bar) if isinstance(per_bar, int) and per_bar > 0 else 4
        beats = _positions(grid.get("beats"), frames)
        downbeats = _positions(grid.get("downbeats"), frames)
        if beats.size and not downbeats.size:
            downbeats = beats[::per_bar]
        return Grid(
            frames, g_bpm, per_bar, beats, downbeats, _positions(grid.get("changes"), frames)
        )
    if bpm and bpm > 0:
        bpm = loop_bpm(None, bpm, frames, rate)
        step = 60.0 * rate / bpm
        beats = np.unique(np.round(np.arange(0.0, frames, step)).astype(np.int64))
        beats = beats[beats < frames]
        downbeats = beats[::DEFAULT_BEATS_PER_BAR]
        return Grid(
            frames, float(bpm), DEFAULT_BEATS_PER_BAR, beats, downbeats, np.zeros(0, np.int64)
        )
    none = np.zeros(0, np.int64)
    return Grid(frames, None, DEFAULT_BEATS_PER_BAR, none, none, np.zeros(1, np.int64))


def loop_bpm(grid: Any, bpm: float | None, frames: int, rate: int) -> float | None:
    """The tempo of a loop: its grid's; else its `bpm`, made exact from its length.

    Loops are cut to whole beats, so without a grid the beat is the loop length over
    the nearest whole number of beats (a coarse sidecar tempo would drift by tens of
    milliseconds over a loop); kept as given if that is not within 2% of it.
    """
    if isinstance(grid, dict) and isinstance(grid.get("bpm"), (int, float)) and grid["bpm"] > 0:
        return float(grid["bpm"])
    if not bpm or bpm <= 0:
        return None
    step = 60.0 * rate / bpm
    beats = max(1, round(frames / step))
    exact = frames / beats
    return 60.0 * rate / exact if abs(exact / step - 1.0) <= 0.02 else float(bpm)


def grid_to_dict(grid: Grid) -> dict:
    """The grid in the sidecar's JSON form."""
    return {
        "bpm": grid.bpm,
        "beats_per_bar": grid.beats_per_bar,
        "beats": [int(x) for x in grid.beats],
        "downbeats": [int(x) for x in grid.downbeats],
        "changes": [int(x) for x in grid.changes],
    }


def scale_grid(grid: dict | None, factor: float, frames: int) -> dict | None:
    """A grid dict with every position multiplied by `factor` (after a time-stretch)."""
    if not isinstance(grid, dict):
        return grid
    out = dict(grid)
    for key in ("beats", "downbeats", "changes"):
        values = grid.get(key) or []
        pos = sorted({min(frames - 1, round(v * factor)) for v in values})
        out[key] = [int(p) for p in pos if p >= 0]
    if isinstance(grid.get("bpm"), (int, float)) and grid["bpm"]:
        out["bpm"] = float(grid["bpm"]) / factor
    return out


def tempo_ratio(playing_bpm: float | None, incoming_bpm: float | None) -> float | None:
    """incoming/playing tempo ratio, or None when either tempo is unknown."""
    if not playing_bpm or not incoming_bpm or playing_bpm <= 0 or incoming_bpm <= 0:
        return None
    return float(incoming_bpm) / float(playing_bpm)


def tempos_match(playing: Grid, incoming: Grid) -> bool:
    """True when the two loops' beats can run together (within MAX_STRETCH)."""
    ratio = tempo_ratio(playing.bpm, incoming.bpm)
    return ratio is not None and abs(ratio - 1.0) <= MAX_STRETCH + 1e-9


@dataclass(frozen=True)
class Plan:
    """A transition: `wait` frames of the playing deck from now, then the incoming deck
    starts at frame `entry` and the decks crossfade over `fade` frames."""

    wait: int
    entry: int
    fade: int
    bars: int  # whole bars of the fade (0 when not counted in bars)
    kind: str  # "bar" | "change" | "beat" (tempos too far apart)


def next_point(points: np.ndarray, frames: int, pos: int, lead: int) -> int:
    """Frames from `pos` to the first of `points` (repeating every `frames`) >= pos + lead."""
    target = pos + max(0, lead)
    laps = target // frames
    for lap in (laps, laps + 1, laps + 2):
        cand = points + lap * frames
        ahead = cand[cand >= target]
        if ahead.size:
            return int(ahead[0]) - pos
    return int(points[0] + (laps + 3) * frames) - pos  # unreachable for a non-empty set


def plan_transition(
    playing: Grid,
    pos: int,
    incoming: Grid,
    *,
    rate: int,
    crossfade: float,
    lead: float = LEAD,
    min_fade: int = 1,
) -> Plan:
    """Plan the transition from `playing` (now at frame `pos`) to `incoming`.

    `crossfade` is the wanted length in seconds; 0 asks for a cut, which is still a
    `min_fade`-frame equal-power fade (a step would click), on the bar line.
    """
    wanted = max(0.0, crossfade) * rate
    lead_frames = round(lead * rate)
    pos = int(pos) % playing.frames
    wait = next_point(playing.transition_points(), playing.frames, pos, lead_frames)
    entry = incoming.entry_point()
    if not playing.has_beats:
        fade = max(min_fade, round(wanted))
        return Plan(wait, entry, fade, 0, "change")
    bar = playing.bar_frames(rate) or float(playing.frames)
    beat = playing.beat_frames(rate) or bar
    if incoming.has_beats and not tempos_match(playing, incoming):
        # Two beats at different tempos: overlap at most one beat.
        fade = max(min_fade, round(min(beat, wanted)))
        return Plan(wait, entry, fade, 0, "beat")
    if wanted <= 0:
        return Plan(wait, entry, min_fade, 0, "bar")
    bars = max(1, round(wanted / bar))
    return Plan(wait, entry, max(min_fade, round(bars * bar)), bars, "bar")
