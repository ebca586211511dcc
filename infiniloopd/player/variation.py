"""Endless variation: jumps between similar beats of a prompt's loops (pure numpy).

The idea of the Infinite Jukebox and Remixatron, across a pool of loops: every beat
of every loop is summarised by its timbre (log band energies), harmony (chroma) and
loudness; beat i of loop A may jump to beat j of loop B (or of A itself) when the
two share their position in the bar and the beats around them are alike (the one
before, the beat itself and the one after, so the music continues as it would
have). Each jump is checked for its seam: the entry point in B is moved by a few
milliseconds to where the waveforms line up (no phase cancellation), and the short
equal-power crossfade is scaled by the correlation of the two signals so the level
neither dips nor swells.

Two halves: `build_table` (features, graph and splice search; seconds of numpy,
run off the audio thread) and `Brancher` (the audio thread's part: reads the
precomputed table, draws with a seeded RNG, crossfades; allocates nothing per
block).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Loops in a pool at most (the playing one included): each is analysed once per hand-over.
MAX_POOL = 6
# Feature analysis of the loops (at their own rate, mono).
_N_FFT = 4096
_HOP = 1024
_N_BANDS = 24
# Block weights of the beat distance: timbre, harmony, loudness, and the attack (the
# spectrum of the beat's first ~40 ms: what a listener hears right after a jump).
_W_TIMBRE, _W_CHROMA, _W_LEVEL, _W_ATTACK = 0.35, 0.35, 0.1, 0.2
_W_EDGE = 0.5  # the splice's own neighbourhood, on top of the beat context
_ATTACK = 2048  # frames of the attack window at 48 kHz (scaled with the rate)
# Context of a jump: beats before (negative) and after the jump point; the beat just
# before and the one just after weigh most.
_CONTEXT = ((-2, 0.5), (-1, 1.0), (0, 1.0), (1, 0.7))
# Loops whose tempos differ more than this are not joined (the beat would stumble).
MAX_TEMPO_RATIO = 0.015
_SHIFT_COST = 0.15
# Least correlation of two beats' (centred) chroma for them to count as the same harmony.
HARMONY_MIN = 0.5
# Least correlation of two loops' mean pitch-class profiles for them to share a key.
KEY_MIN = 0.6


@dataclass(frozen=True)
class VariationParams:
    """How jumps are found and drawn."""

    fade_ms: float = 30.0  # crossfade at a jump
    lead_ms: float = 6.0  # the crossfade ends this long before the beat
    max_shift_ms: float = 2.0  # splice search around the nominal entry point
    quantile: float = 0.15  # a pair joins the graph when its distance is in this best share
    max_targets: int = 4  # jumps kept per beat
    min_beats: int = 4  # beats after a jump before the next may come
    p_start: float = 0.15  # jump chance on the first allowed beat...
    p_step: float = 0.12  # ...growing this much per beat without a jump...
    p_max: float = 0.6  # ...up to this
    offbeat_factor: float = 0.5  # chance scale on beats that do not start a bar
    # A jump must change what follows: over the next `novelty_beats` beats the two
    # continuations differ at least this much (beat distance, 1 = the median pair).
    # Jumping between two identical halves of a loop changes nothing a listener hears.
    novelty_min: float = 0.5
    novelty_beats: int = 8
    # None of the last few jumps is taken again: the same jump at the same beat, each
    # time the music comes round, would make a shorter exact loop (or, two jumps that
    # lead into each other, a longer one).
    recent_jumps: int = 4
    # The level through a jump's crossfade: the quietest 5 ms within 20 ms of the
    # crossfade against the level around it (40-300 ms either side) must stay above this,
    # or no lower than either loop's own level at that place (music that goes quiet
    # before a bar line). A deeper dip is heard as a hole (a fade out and in across a
    # splice reads -22 dB).
    dip_min_db: float = -13.0
    # Loops whose beats have no sharp onset (pads, drones: sharpness below soft_below)
    # get a long jump crossfade, which blends two sustained sounds where a short one
    # would be heard as a cut in the texture.
    soft_below: float = 4.0
    soft_fade_ms: float = 400.0


@dataclass(frozen=True)
class PoolLoop:
    """One loop offered to the variation: its audio and what is known of its beats."""

    key: str
    audio: np.ndarray  # float32 (frames, channels), seamless
    grid: dict | None = None  # the sidecar's beat grid (library.py contract), or None
    bpm: float | None = None
    grid_rate: int | None = None  # the rate of the grid's positions, if not the player's


@dataclass
class LoopBeats:
    """A loop's beats and per-beat features."""

    key: str
    audio: np.ndarray
    beats: np.ndarray  # int64 beat starts, ascending, within [0, frames)
    bar_pos: np.ndarray  # int64 position of each beat in its bar (0 = downbeat)
    beats_per_bar: int
    bpm: float | None
    timbre: np.ndarray  # (n, _N_BANDS) dB
    attack: np.ndarray  # (n, _N_BANDS) dB, the beat's first ~40 ms
    before: np.ndarray  # (n, _N_BANDS) dB, the ~40 ms before a jump's crossfade starts
    chroma: np.ndarray  # (n, 12) centred, unit norm
    level: np.ndarray  # (n,) dB
    sharpness: float = 0.0  # onset rise at the beats over the median rise (drums >> 1)

    @property
    def frames(self) -> int:
        return int(self.audio.shape[0])


@dataclass(frozen=True)
class Jump:
    """One edge of the graph: leave the current loop at its trigger for `beat`."""

    loop: int  # target loop index in the table
    beat: int  # target beat
    pos: int  # sample of the target loop where its crossfade starts
    corr: float  # correlation of the two crossfaded signals (gain compensation)
    cost: float  # beat distance (lower is more alike)


@dataclass
class JumpTable:
    """Everything the audio thread needs, computed off it."""

    rate: int
    loops: list[LoopBeats]
    triggers: list[np.ndarray]  # per loop, per beat: sample where a jump's crossfade starts
    jumps: list[list[tuple[Jump, ...]]]  # per loop, per beat: candidate jumps
    fade: int  # crossfade frames
    params: VariationParams = field(default_factory=VariationParams)

    @property
    def edges(self) -> int:
        return sum(len(j) for per_loop in self.jumps for j in per_loop)


# --- beat grids -------------------------------------------------------------------------


def beat_grid(frames: int, rate: int, grid: dict | None, bpm: float | None) -> tuple:
    """(beats, bar_pos, beats_per_bar, bpm) of a loop from its grid, or its tempo.

    Without a grid (old loops) the beats fall every 60/bpm seconds from frame 0,
    spread so the loop holds whole beats; without a tempo the loop is one beat
    (it can then only jump to itself at frame 0, i.e. not at all).
    """
    if grid and grid.get("beats"):
        beats = np.asarray(grid["beats"], dtype=np.int64)
        beats = np.unique(beats[(beats >= 0) & (beats < frames)])
        bpb = max(1, int(grid.get("beats_per_bar") or 1))
        down = np.asarray(grid.get("downbeats") or [], dtype=np.int64)
        if beats.size and down.size:
            # position in the bar: beats since the latest downbeat (cyclically)
            first = int(np.searchsorted(beats, down[0]))
            is_down = np.isin(beats, down)
            pos = np.zeros(beats.size, dtype=np.int64)
            count = 0
            for k in range(beats.size):
                b = (first + k) % beats.size
                count = 0 if is_down[b] else count + 1
                pos[b] = count
            bar_pos = pos % bpb
        else:
            bar_pos = np.arange(beats.size, dtype=np.int64) % bpb
        tempo = grid.get("bpm") or bpm
        return beats, bar_pos, bpb, float(tempo) if tempo else None
    if bpm and bpm > 0:
        n = max(1, round(frames * bpm / (60.0 * rate)))
        beats = np.round(np.arange(n) * frames / n).astype(np.int64)
        bpb = 4 if n % 4 == 0 else 3 if n % 3 == 0 else 1
        # the loop holds whole beats, so its length gives the tempo more exactly than
        # the tracker's estimate (quantized to its frames: 125 vs 127 BPM for one piece)
        return beats, np.arange(n, dtype=np.int64) % bpb, bpb, 60.0 * rate * n / frames
    return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 1, None


# --- features ---------------------------------------------------------------------------


def _filterbanks(rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced band filters (timbre) and pitch-class weights (chroma) for _N_FFT bins."""
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / rate)
    edges = np.geomspace(40.0, min(14000.0, rate / 2.0), _N_BANDS + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    tri /= np.maximum(tri.sum(axis=1, keepdims=True), 1e-12)
    chroma = np.zeros((12, freqs.size))
    ok = (freqs >= 60.0) & (freqs <= 5000.0)
    midi = 69.0 + 12.0 * np.log2(freqs[ok] / 440.0)
    d = np.abs((midi[None, :] - np.arange(12)[:, None] + 6.0) % 12.0 - 6.0)
    chroma[:, ok] = np.maximum(0.0, 1.0 - d)
    return tri, chroma


def _power_frames(mono: np.ndarray) -> np.ndarray:
    """|STFT|^2 of a circular signal, (T, bins), frame t centred on sample t*_HOP."""
    n = mono.size
    t_count = max(1, -(-n // _HOP))
    idx = (np.arange(t_count)[:, None] * _HOP + np.arange(_N_FFT)[None, :] - _N_FFT // 2) % n
    spec = np.fft.rfft(mono[idx] * np.hanning(_N_FFT), axis=1)
    return spec.real**2 + spec.imag**2


def analyse_loop(loop: PoolLoop, rate: int, lead: int = 0) -> LoopBeats:
    """Beats and per-beat features of one loop (off the audio thread).

    `lead`: frames from the start of a jump's crossfade to its beat; the `before`
    feature is the sound just ahead of that crossfade, the last thing heard of the
    loop left (it must match the sound ahead of the beat entered).
    """
    audio = np.ascontiguousarray(loop.audio, dtype=np.float32)
    frames = audio.shape[0]
    grid = loop.grid
    if grid and loop.grid_rate and loop.grid_rate != rate:
        scale = rate / loop.grid_rate
        grid = dict(grid)
        for name in ("beats", "downbeats"):
            grid[name] = [round(b * scale) for b in grid.get(name) or []]
    beats, bar_pos, bpb, bpm = beat_grid(frames, rate, grid, loop.bpm)
    mono = audio.mean(axis=1).astype(np.float64)
    power = _power_frames(mono)  # (T, bins)
    tri, chroma_fb = _filterbanks(rate)
    bands = power @ tri.T  # (T, bands)
    chroma = np.sqrt(power) @ chroma_fb.T  # (T, 12)
    t_count = power.shape[0]
    centre = np.arange(t_count) * _HOP
    # frame -> beat (cyclically: frames before the first beat belong to the last one)
    owner = (np.searchsorted(beats, centre, side="right") - 1) % beats.size
    n = beats.size
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    band_mean = np.zeros((n, _N_BANDS))
    chroma_sum = np.zeros((n, 12))
    np.add.at(band_mean, owner, bands)
    np.add.at(chroma_sum, owner, chroma)
    band_mean /= counts[:, None]
    timbre = 10.0 * np.log10(np.maximum(band_mean, 1e-10))
    # centred: drums and noise spread evenly over the pitch classes and would make
    # every two chords look alike; what is left is which classes stand out
    chroma_sum -= chroma_sum.mean(axis=1, keepdims=True)
    chroma_sum /= np.maximum(np.linalg.norm(chroma_sum, axis=1, keepdims=True), 1e-12)
    # loudness of each beat from the samples themselves
    edges = np.append(beats, frames)
    sq = np.concatenate([[0.0], np.cumsum(mono * mono)])
    seg = np.maximum(np.diff(edges), 1)
    energy = (sq[edges[1:]] - sq[edges[:-1]]) / seg
    if beats[0] > 0:  # the wrap-around part of the last beat
        energy[-1] = (sq[frames] - sq[beats[-1]] + sq[beats[0]]) / (frames - beats[-1] + beats[0])
    level = 10.0 * np.log10(np.maximum(energy, 1e-12))
    # how sharp the beats' onsets are: the rise of the log band energies at the beats
    # against the median rise (drums: > 10; pads whose notes swell: ~1-2)
    log_bands = np.log10(np.maximum(bands, 1e-10))
    flux = np.maximum(0.0, np.diff(log_bands, axis=0, prepend=log_bands[-1:])).sum(axis=1)
    at = np.round(beats / _HOP).astype(np.int64)
    peak = np.max([flux[(at + k) % t_count] for k in (-1, 0, 1)], axis=0)
    sharpness = float(np.median(peak) / max(float(np.median(flux)), 1e-12))
    attack = _window_bands(mono, beats, rate)
    before = _window_bands(mono, beats - lead - _attack_width(rate), rate)
    return LoopBeats(
        loop.key,
        audio,
        beats,
        bar_pos,
        bpb,
        bpm,
        timbre,
        attack,
        before,
        chroma_sum,
        level,
        sharpness,
    )


def _attack_width(rate: int) -> int:
    return max(256, round(_ATTACK * rate / 48000))


def _window_bands(mono: np.ndarray, starts: np.ndarray, rate: int) -> np.ndarray:
    """Log band energies (dB) of a ~40 ms window from each of `starts` (circular)."""
    width = _attack_width(rate)
    freqs = np.fft.rfftfreq(width, 1.0 / rate)
    edges_hz = np.geomspace(40.0, min(14000.0, rate / 2.0), _N_BANDS + 1)
    band_of = np.clip(np.searchsorted(edges_hz, freqs) - 1, 0, _N_BANDS - 1)
    idx = (starts[:, None] + np.arange(width)[None, :]) % mono.size
    spec = np.abs(np.fft.rfft(mono[idx] * np.hanning(width), axis=1)) ** 2
    out = np.zeros((starts.size, _N_BANDS))
    for band in range(_N_BANDS):
        out[:, band] = spec[:, band_of == band].sum(axis=1)
    return 10.0 * np.log10(np.maximum(out, 1e-10))


# --- the graph --------------------------------------------------------------------------


def _robust(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Distances divided by their median over the candidate pairs."""
    vals = d[mask]
    med = float(np.median(vals)) if vals.size else 1.0
    return d / (med if med > 0 else 1.0)


def _band_distance(bands: np.ndarray) -> np.ndarray:
    """RMS distance of z-scored log band energies between every two rows."""
    z = (bands - bands.mean(axis=0)) / np.maximum(bands.std(axis=0), 1.0)
    sq = np.sum(z * z, axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0) / bands.shape[1])


def beat_distances(
    loops: list[LoopBeats], novelty_beats: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Context distance between every two beats of the pool, and who may join whom.

    Returns (dist (N, N), allowed (N, N) bool, (loop index, beat index) per global beat,
    novelty (N, N): how different the `novelty_beats` beats after each are).
    A pair is allowed when the beats share their bar position and bar length, are not
    the same beat (nor, in a loop without a meter, neighbours), the loops' tempos agree
    within MAX_TEMPO_RATIO, and the harmony agrees: on a downbeat the two loops share a
    key (KEY_MIN), elsewhere the beat before the jump and the beat entered agree
    (HARMONY_MIN).
    """
    owner = np.concatenate([np.full(lb.beats.size, i) for i, lb in enumerate(loops)])
    local = np.concatenate([np.arange(lb.beats.size) for lb in loops])
    offset = np.cumsum([0] + [lb.beats.size for lb in loops])
    total = int(offset[-1])
    timbre = np.concatenate([lb.timbre for lb in loops])
    attack = np.concatenate([lb.attack for lb in loops])
    before = np.concatenate([lb.before for lb in loops])
    chroma = np.concatenate([lb.chroma for lb in loops])
    level = np.concatenate([lb.level for lb in loops])
    bar_pos = np.concatenate([lb.bar_pos for lb in loops])
    bpb = np.concatenate([np.full(lb.beats.size, lb.beats_per_bar) for lb in loops])
    sizes = np.array([lb.beats.size for lb in loops])[owner]
    tempo = np.array([lb.bpm or 0.0 for lb in loops])[owner]

    d_timbre = _band_distance(timbre)
    d_attack = _band_distance(attack)
    harmony = np.clip(chroma @ chroma.T, -1.0, 1.0)  # correlation of the pitch classes
    d_chroma = 1.0 - harmony
    d_level = np.abs(level[:, None] - level[None, :])

    same = np.arange(total)
    allowed = (bar_pos[:, None] == bar_pos[None, :]) & (bpb[:, None] == bpb[None, :])
    allowed &= same[:, None] != same[None, :]
    same_loop = owner[:, None] == owner[None, :]
    step = (local[None, :] - local[:, None]) % sizes[:, None]
    near = same_loop & ((step <= 1) | (step >= sizes[:, None] - 1)) & (bpb[:, None] == 1)
    allowed &= ~near
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(tempo[:, None] / tempo[None, :] - 1.0)
    tempo_ok = same_loop | ((tempo[:, None] > 0) & (ratio <= MAX_TEMPO_RATIO))
    allowed &= tempo_ok

    # Harmony must agree where a listener would hear it: the beat just played, and the
    # beat entered unless it starts a bar (a chord may change on a bar line).
    # On a bar line any chord may follow, as long as the two loops are in the same key
    # (their mean pitch-class profiles agree).
    prev = offset[owner] + (local - 1) % sizes
    beat_ok = (harmony[np.ix_(prev, prev)] >= HARMONY_MIN) & (harmony >= HARMONY_MIN)
    profile = np.stack([lb.chroma.mean(axis=0) for lb in loops])
    profile -= profile.mean(axis=1, keepdims=True)
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    key_ok = (profile @ profile.T >= KEY_MIN)[np.ix_(owner, owner)] | same_loop
    allowed &= np.where(bar_pos[:, None] == 0, key_ok, beat_ok)

    base = (
        _W_TIMBRE * _robust(d_timbre, allowed)
        + _W_CHROMA * _robust(d_chroma, allowed)
        + _W_LEVEL * _robust(d_level, allowed)
        + _W_ATTACK * _robust(d_attack, allowed)
    )
    dist = np.zeros_like(base)
    wsum = 0.0
    for off, w in _CONTEXT:
        nb = offset[owner] + (local + off) % sizes  # the beat `off` away, same loop
        dist += w * base[np.ix_(nb, nb)]
        wsum += w
    dist /= wsum
    # and right at the splice: the sound just before it and just after the beat entered
    edge = d_attack + _band_distance(before)
    dist += _W_EDGE * _robust(edge, allowed)
    novelty = np.zeros_like(base)
    for k in range(1, novelty_beats + 1):
        nb = offset[owner] + (local + k) % sizes
        novelty += base[np.ix_(nb, nb)]
    novelty /= max(novelty_beats, 1)
    return dist, allowed, np.stack([owner, local], axis=1), novelty


def _circular(audio_mono: np.ndarray, start: int, count: int) -> np.ndarray:
    n = audio_mono.size
    idx = (start + np.arange(count)) % n
    return audio_mono[idx]


def _splice(a: np.ndarray, a_pos: int, b: np.ndarray, b_pos: int, fade: int, shift: int):
    """Best entry point in b near b_pos for leaving a at a_pos: (pos, correlation)."""
    ref = _circular(a, a_pos, fade)
    seg = _circular(b, b_pos - shift, fade + 2 * shift)
    num = np.correlate(seg, ref, mode="valid")  # 2*shift+1 lags
    c2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
    e_seg = c2[fade:] - c2[:-fade]
    e_ref = float(ref @ ref)
    den = np.sqrt(np.maximum(e_seg * e_ref, 1e-30))
    r = num / den
    # move away from the beat grid only for a clearly better fit (a shift must buy
    # correlation: the whole search width costs 0.15)
    k = int(np.argmax(r - _SHIFT_COST * np.abs(np.arange(r.size) - shift) / max(shift, 1)))
    return (b_pos - shift + k) % b.size, float(r[k])


def _fade_curves(fade: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A jump's equal-power crossfade over `fade` frames: (fade in, fade out, cross term).

    The summed power of a pair with correlation r is 1 + r * cross: its gains are
    divided by the square root of that (see _pair_corr), so the level holds.
    """
    t = (np.arange(fade, dtype=np.float64) + 0.5) / fade
    return np.sin(0.5 * math.pi * t), np.cos(0.5 * math.pi * t), np.sin(math.pi * t)


def _pair_corr(corr: float) -> float:
    """The correlation a crossfade compensates for (a strongly anti-correlated pair
    would need gains without bound)."""
    return float(np.clip(corr, -0.5, 1.0))


def _splice_dip(
    a: np.ndarray, a_at: int, b: np.ndarray, b_pos: int, fade: int, corr: float, rate: int
) -> float:
    """The level dip (dB) through a jump from a at a_at into b at b_pos, as it will sound.

    Renders the splice as the Brancher does (equal-power crossfade, gains scaled by the
    pair's correlation) with 300 ms of each side, and compares the quietest 5 ms from
    20 ms before the crossfade to 20 ms after it with the median 5 ms level 40-300 ms
    away from it on either side.
    """
    side = round(0.3 * rate)
    w = max(8, round(0.005 * rate))
    fin, fout, cross = _fade_curves(fade)
    g = 1.0 / np.sqrt(1.0 + _pair_corr(corr) * cross)
    mixed = (_circular(a, a_at, fade) * fout + _circular(b, b_pos, fade) * fin) * g
    x = np.concatenate([_circular(a, a_at - side, side), mixed, _circular(b, b_pos + fade, side)])
    hop = w // 2
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - w, hop)
    rms = np.sqrt(np.maximum(c2[starts + w] - c2[starts], 0.0) / w)
    centre = starts + w // 2
    d = np.maximum(side - centre, centre - (side + fade))  # distance from the crossfade
    inner = rms[d <= 0.02 * rate]
    outer = rms[(d >= 0.04 * rate) & (d <= 0.3 * rate)]
    if inner.size == 0 or outer.size == 0:
        return 0.0
    return float(20.0 * np.log10((inner.min() + 1e-9) / (np.median(outer) + 1e-9)))


def _level_holds(
    a: np.ndarray,
    a_at: int,
    b: np.ndarray,
    b_pos: int,
    fade: int,
    corr: float,
    rate: int,
    dip_min_db: float,
) -> bool:
    """Whether a jump keeps the level: no dip below dip_min_db, or none deeper (by more
    than 1 dB) than the music itself goes at that place of one of the two loops (the
    quiet just before a bar line: a splice there is the best hidden of all)."""
    dip = _splice_dip(a, a_at, b, b_pos, fade, corr, rate)
    if dip >= dip_min_db:
        return True
    own = min(
        _splice_dip(a, a_at, a, a_at, fade, 1.0, rate),
        _splice_dip(b, b_pos, b, b_pos, fade, 1.0, rate),
    )
    return dip >= own - 1.0


def build_table(
    pool: list[PoolLoop], rate: int, params: VariationParams | None = None
) -> JumpTable:
    """Analyse the pool and build its jump graph (seconds of numpy: off the audio thread).

    pool[0] is the loop the deck plays. Loops must share the channel count.
    """
    if not pool:
        raise ValueError("variation: the pool holds no loop")
    p = params or VariationParams()
    channels = {np.asarray(lp.audio).shape[1] for lp in pool}
    if len(channels) != 1:
        raise ValueError(f"variation: loops of the pool differ in channels: {sorted(channels)}")
    fade = max(1, round(p.fade_ms * rate / 1000.0))
    lead = fade + round(p.lead_ms * rate / 1000.0)
    loops = [analyse_loop(lp, rate, lead) for lp in pool]
    monos = [lb.audio.mean(axis=1).astype(np.float64) for lb in loops]
    if float(np.median([lb.sharpness for lb in loops])) < p.soft_below:
        # at most half a beat, so the fade stays within the beat before the jump
        beat = min(
            float(np.median(np.diff(lb.beats))) if lb.beats.size > 1 else lb.frames for lb in loops
        )
        fade = max(fade, min(round(p.soft_fade_ms * rate / 1000.0), round(0.5 * beat)))
        lead = fade + round(p.lead_ms * rate / 1000.0)
        width = _attack_width(rate)
        for lb, mono in zip(loops, monos, strict=True):
            lb.before = _window_bands(mono, lb.beats - lead - width, rate)
    shift = max(1, round(p.max_shift_ms * rate / 1000.0))
    triggers = [((lb.beats - lead) % lb.frames).astype(np.int64) for lb in loops]
    jumps: list[list[tuple[Jump, ...]]] = [[() for _ in lb.beats] for lb in loops]
    if sum(lb.beats.size for lb in loops) < 2:
        return JumpTable(rate, loops, triggers, jumps, fade, p)
    dist, allowed, where, novelty = beat_distances(loops, p.novelty_beats)
    allowed &= novelty >= p.novelty_min
    vals = dist[allowed]
    if vals.size == 0:
        return JumpTable(rate, loops, triggers, jumps, fade, p)
    threshold = float(np.quantile(vals, p.quantile))
    ok = allowed & (dist <= threshold)
    # A loop unlike the rest would never be left: give at least a quarter of its beats
    # (its most alike ones) their best allowed jump, as the Eternal Jukebox lowers its
    # threshold until a song has branches.
    for li, lb in enumerate(loops):
        rows = np.flatnonzero(where[:, 0] == li)
        want = max(1, lb.beats.size // 4) - int(ok[rows].any(axis=1).sum())
        if want <= 0:
            continue
        masked = np.where(allowed[rows], dist[rows], np.inf)
        best = masked.min(axis=1)
        for r in np.argsort(best)[:want]:
            if np.isfinite(best[r]) and not ok[rows[r]].any():
                ok[rows[r], int(np.argmin(masked[r]))] = True
    for g in range(dist.shape[0]):
        cand = np.flatnonzero(ok[g])
        if cand.size == 0:
            continue
        # the best few by distance, each rendered: a splice that would leave a hole in
        # the level is not a jump (the next best may be)
        cand = cand[np.argsort(dist[g, cand])[: 3 * p.max_targets]]
        li, bi = int(where[g, 0]), int(where[g, 1])
        out = []
        for h in cand:
            lj, bj = int(where[h, 0]), int(where[h, 1])
            a_at, b_at = int(triggers[li][bi]), int(triggers[lj][bj])
            pos, r = _splice(monos[li], a_at, monos[lj], b_at, fade, shift)
            if not _level_holds(monos[li], a_at, monos[lj], pos, fade, r, rate, p.dip_min_db):
                continue
            out.append(Jump(lj, bj, int(pos), r, float(dist[g, h])))
            if len(out) == p.max_targets:
                break
        jumps[li][bi] = tuple(out)
    return JumpTable(rate, loops, triggers, jumps, fade, p)


def build_brancher(
    current: PoolLoop,
    others: list[tuple[PoolLoop | None, Any]],
    rate: int,
    seed: int | None = None,
    max_pool: int = MAX_POOL,
) -> Brancher:
    """A Brancher for the deck playing `current`, over it and up to max_pool-1 others.

    `others`: (PoolLoop, None) for loops in memory, or (None, load) where load() returns
    a PoolLoop (read from the library; called here, off the audio thread); a loop
    whose load raises is left out. Duplicates of a key are
    skipped.
    """
    pool = [current]
    seen = {current.key}
    for loop, load in others:
        if len(pool) >= max_pool:
            break
        if loop is None:
            try:
                loop = load()
            except Exception as exc:  # an unreadable loop only leaves the pool smaller
                log.warning("variation: loop left out of the pool: %s", exc)
                continue
        if loop.key in seen or np.asarray(loop.audio).shape[1:] != current.audio.shape[1:]:
            continue
        seen.add(loop.key)
        pool.append(loop)
    table = build_table(pool, rate)
    log.info(
        "variation: %d loops, %d beats, %d jumps for %s",
        len(pool),
        sum(lb.beats.size for lb in table.loops),
        table.edges,
        current.key,
    )
    return Brancher(table, seed)


# --- the audio thread's part ------------------------------------------------------------


def _gather(src: np.ndarray, pos: int, dst: np.ndarray) -> int:
    """Copy len(dst) frames of the circular src from pos into dst; returns the new pos."""
    n = dst.shape[0]
    length = src.shape[0]
    done = 0
    while done < n:
        k = min(n - done, length - pos)
        dst[done : done + k] = src[pos : pos + k]
        done += k
        pos += k
        if pos >= length:
            pos = 0
    return pos


class Brancher:
    """A deck's variation source: walks the jump table at beat boundaries.

    Owned by the audio thread once attached. The RNG is seeded, so the same table,
    seed and block sizes give the same path.
    """

    def __init__(self, table: JumpTable, seed: int | None = None) -> None:
        self.table = table
        self.rng = np.random.default_rng(seed)
        self.loop = 0
        self.beat = 0  # the beat whose trigger comes next
        self.since = 0  # beats since the last jump
        self.jumps = 0
        # the outgoing side of a jump crossfade: loop, position, progress, correlation
        self._tail_loop = -1
        self._tail_pos = 0
        self._xf = 0
        self._corr = 0.0
        # (from loop, from beat, to loop, to beat) of the last jumps taken
        self._recent: deque[tuple[int, int, int, int]] = deque(maxlen=table.params.recent_jumps)
        f = table.fade
        self._fin, self._fout, self._s = _fade_curves(f)
        self._g = np.empty(f, dtype=np.float64)
        self._gain = np.empty(f, dtype=np.float32)
        channels = table.loops[0].audio.shape[1]
        self._tail = np.empty((f, channels), dtype=np.float32)

    @property
    def key(self) -> str:
        return self.table.loops[self.loop].key

    def attach(self, pos: int) -> None:
        """Start at sample `pos` of the table's first loop (the deck's own)."""
        self.loop = 0
        trig = self.table.triggers[0]
        frames = self.table.loops[0].frames
        self.beat = int(np.argmin((trig - pos) % frames))

    def _chance(self, beat_pos: int) -> float:
        p = self.table.params
        if self.since < p.min_beats:
            return 0.0
        chance = min(p.p_max, p.p_start + p.p_step * (self.since - p.min_beats))
        return chance if beat_pos == 0 else chance * p.offbeat_factor

    def _pick(self, options: tuple[Jump, ...]) -> Jump:
        if len(options) == 1:
            return options[0]
        w = [1.0 / (0.05 + j.cost) for j in options]
        x = self.rng.random() * sum(w)
        for j, wj in zip(options, w, strict=True):
            x -= wj
            if x <= 0.0:
                return j
        return options[-1]

    def read(self, deck: Any, dst: np.ndarray, events: list, at: int, jumps: bool = True) -> None:
        """Fill dst with the deck's next frames, jumping at beat triggers (if `jumps`).

        `at` is the output's frame count at dst[0] (jump events carry their own).
        """
        n = dst.shape[0]
        table = self.table
        done = 0
        while done < n:
            frames = table.loops[self.loop].frames
            to_trig = int((table.triggers[self.loop][self.beat] - deck.pos) % frames)
            if to_trig == 0:
                self._at_trigger(deck, events, at + done, jumps)
                frames = table.loops[self.loop].frames
                to_trig = int((table.triggers[self.loop][self.beat] - deck.pos) % frames)
                if to_trig == 0:  # a one-beat loop: its next trigger is a loop away
                    to_trig = frames
            k = min(n - done, to_trig)
            if self._tail_loop >= 0:
                k = min(k, table.fade - self._xf)
            out = dst[done : done + k]
            deck.pos = _gather(table.loops[self.loop].audio, deck.pos, out)
            if self._tail_loop >= 0:
                self._mix_tail(out, k)
            done += k

    def _at_trigger(self, deck: Any, events: list, at: int, jumps: bool = True) -> None:
        table = self.table
        here, beat = self.loop, self.beat
        lb = table.loops[here]
        self.beat = (beat + 1) % lb.beats.size
        self.since += 1
        options = table.jumps[here][beat]
        if self._recent:
            options = tuple(j for j in options if (here, beat, j.loop, j.beat) not in self._recent)
        if not options or self._tail_loop >= 0 or not jumps:
            return
        chance = self._chance(int(lb.bar_pos[beat]))
        if chance <= 0.0 or self.rng.random() >= chance:
            return
        jump = self._pick(options)
        self._recent.append((here, beat, jump.loop, jump.beat))
        self._tail_loop, self._tail_pos = here, deck.pos
        self._xf, self._corr = 0, _pair_corr(jump.corr)
        self.loop, self.beat = jump.loop, (jump.beat + 1) % table.loops[jump.loop].beats.size
        deck.pos = jump.pos
        deck.audio = table.loops[jump.loop].audio  # what the deck plays now (status)
        self.since = 0
        self.jumps += 1
        events.append(
            (
                "jump",
                {
                    "key": deck.key,
                    "from": {"loop": lb.key, "beat": beat},
                    "to": {"loop": table.loops[jump.loop].key, "beat": jump.beat},
                    "at": at,
                    "fade": table.fade,
                },
            )
        )

    def _mix_tail(self, out: np.ndarray, k: int) -> None:
        """Crossfade the first k frames of `out` (incoming) with the outgoing loop."""
        x0 = self._xf
        tail = self._tail[:k]
        self._tail_pos = _gather(self.table.loops[self._tail_loop].audio, self._tail_pos, tail)
        g = self._g[:k]
        # equal-power gains scaled so a correlated pair keeps its level:
        # power = in^2 + out^2 + 2 r in out = 1 + r sin(pi t)
        np.multiply(self._s[x0 : x0 + k], self._corr, out=g)
        np.add(g, 1.0, out=g)
        np.sqrt(g, out=g)
        np.reciprocal(g, out=g)
        gain = self._gain[:k]
        np.multiply(self._fin[x0 : x0 + k], g, out=gain, casting="same_kind")
        np.multiply(out, gain[:, None], out=out)
        np.multiply(self._fout[x0 : x0 + k], g, out=gain, casting="same_kind")
        np.multiply(tail, gain[:, None], out=tail)
        np.add(out, tail, out=out)
        self._xf += k
        if self._xf >= self.table.fade:
            self._tail_loop = -1
            self._xf = 0
