"""The loop engine on synthetic music with an exactly known period, and on bad input."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from infiniloopd.analysis import (
    AnalysisError,
    LoopPoints,
    analyse_clip,
    crossfade_gains,
    find_loop,
    measure_lufs,
    normalize_loudness,
    render_loop,
    resample,
    validate_clip,
)
from tests.analysis_signals import drum_bar_clip

SEAM_EVAL = Path(
    os.environ.get("SEAM_EVAL")
    or Path(__file__).resolve().parents[2] / "shared" / "tools" / "seam_eval.py"
)


@pytest.fixture(scope="module")
def seam_eval():
    if not SEAM_EVAL.exists():
        pytest.skip(
            f"seam_eval.py not found at {SEAM_EVAL} (the shared tools are not beside the repo)"
        )
    spec = importlib.util.spec_from_file_location("seam_eval", SEAM_EVAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _assert_whole_periods(p: LoopPoints, period: int, tol: int = 2) -> None:
    length = p.end - p.start
    assert length >= period
    off = length % period
    assert min(off, period - off) <= tol, f"loop of {length} samples is not whole bars of {period}"


def _assert_just_before_beat(p: LoopPoints, beat: int, sr: int) -> None:
    # The cut sits near a tracked beat: a crossfade before it, moved by up to 45 ms to
    # keep the seam out of a lull. The synthetic hi-hats are on the off-beats, which a
    # tracker may lock to.
    half = beat // 2
    before = (-p.start) % half
    dist = min(before, half - before)
    assert dist <= 0.085 * sr, f"start is {dist / sr * 1000:.1f} ms from a (half) beat"


@pytest.mark.parametrize(
    "kw",
    [
        dict(sr=32000, bpm=120.0, beats_per_bar=4, seconds=20.0),
        dict(sr=32000, bpm=120.0, beats_per_bar=4, seconds=30.0, seed=3),
        dict(sr=48000, bpm=100.0, beats_per_bar=3, seconds=24.0),
        dict(sr=44100, bpm=90.0, beats_per_bar=4, seconds=25.0, channels=2),
    ],
    ids=["120bpm-4-4-20s", "120bpm-4-4-30s", "100bpm-3-4-48k", "90bpm-stereo-44k"],
)
def test_finds_whole_bars_of_an_exactly_periodic_clip(kw):
    y, bar = drum_bar_clip(**kw)
    sr = kw["sr"]
    p = find_loop(y, sr)
    _assert_whole_periods(p, bar)
    _assert_just_before_beat(p, bar // kw["beats_per_bar"], sr)
    assert p.bpm == pytest.approx(kw["bpm"], rel=0.02)
    assert p.beats_per_bar == kw["beats_per_bar"]
    assert p.beats == p.bars * p.beats_per_bar
    assert p.end - p.start == pytest.approx(p.bars * bar, abs=2)
    assert p.seconds == pytest.approx((p.end - p.start) / sr)
    assert p.score > 0.8
    assert 0 <= p.start < p.end <= y.shape[0]
    # long loops are preferred: at least half of what the clip holds
    assert p.seconds >= 0.5 * kw["seconds"] - 2 * bar / sr


def test_fade_in_and_out_are_left_out():
    y, bar = drum_bar_clip(seconds=24.0, fade_s=4.0)
    sr = 32000
    p = find_loop(y, sr)
    _assert_whole_periods(p, bar)
    assert p.start >= int(2.5 * sr), "the loop starts inside the fade-in"
    assert p.end <= y.size - int(2.5 * sr), "the loop ends inside the fade-out"


def test_min_and_max_length_are_honoured():
    y, bar = drum_bar_clip(seconds=24.0)
    sr = 32000
    p = find_loop(y, sr, min_seconds=3.0, max_seconds=7.0)
    assert 3.0 <= p.seconds <= 7.0
    _assert_whole_periods(p, bar)
    p = find_loop(y, sr, min_seconds=10.0)
    assert p.seconds >= 10.0
    _assert_whole_periods(p, bar)
    with pytest.raises(AnalysisError):
        find_loop(y, sr, min_seconds=8.0, max_seconds=4.0)


def test_clip_barely_longer_than_the_minimum():
    y, bar = drum_bar_clip(seconds=5.0)
    p = find_loop(y, 32000, min_seconds=3.0)
    assert p.seconds >= 3.0 and p.end <= y.size
    loop = render_loop(y, 32000, p)
    assert loop.shape == (p.end - p.start,)


def test_music_without_beats_still_loops_seamlessly(seam_eval):
    sr = 32000
    t = np.arange(12 * sr) / sr
    # a slowly swelling chord: no onsets at all
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 275.0, 330.0)) * (0.6 + 0.4 * np.sin(t))
    y = (0.2 * y).astype(np.float32)
    p = find_loop(y, sr)
    loop = render_loop(y, sr, p)
    r = seam_eval.evaluate(loop, sr)
    assert r["click"] <= 1.5
    assert r["dip_db"] > -15


@pytest.mark.parametrize(
    ("y", "reason"),
    [
        (np.full(32000 * 6, np.nan, dtype=np.float32), "NaN"),
        (np.concatenate([np.zeros(32000 * 6), [np.inf]]), "NaN or infinite"),
        (np.zeros(32000 * 6), "silent"),
        (np.full(32000 * 6, 0.3), "no content"),
        (np.random.default_rng(0).standard_normal(32000 * 2) * 0.1, "shorter than"),
        (np.concatenate([np.zeros(32000 * 3), np.ones(160) * 0.5, np.zeros(32000 * 3)]), "sound"),
        (np.zeros((10, 2, 2)), "shape"),
    ],
    ids=["nan", "inf", "silence", "dc", "too-short", "blip-in-silence", "bad-shape"],
)
def test_unloopable_input_is_a_one_line_analysis_error(y, reason):
    with pytest.raises(AnalysisError) as e:
        find_loop(y, 32000, min_seconds=3.0)
    msg = str(e.value)
    assert reason in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_validate_clip_returns_float32_in_the_same_layout():
    stereo = (np.random.default_rng(1).standard_normal((32000 * 4, 2)) * 3000).astype(np.int16)
    out = validate_clip(stereo, 32000, min_seconds=3.0)
    assert out.dtype == np.float32 and out.shape == stereo.shape
    assert np.max(np.abs(out)) < 1.0
    assert np.allclose(out, stereo / 32768.0)


@pytest.mark.parametrize("channels", [0, 2])
def test_render_is_the_loop_with_a_continuous_wrap(seam_eval, channels):
    sr = 32000
    y, bar = drum_bar_clip(seconds=20.0, channels=channels)
    p = find_loop(y, sr)
    loop = render_loop(y, sr, p)
    assert loop.dtype == np.float32
    assert loop.shape == (p.end - p.start,) + y.shape[1:]
    # past the crossfade the loop is the clip itself
    xf = int(0.030 * sr)
    assert np.array_equal(loop[xf:], y[p.start + xf : p.end])
    # the wrap is no bigger a step than the music's own
    mono = loop if loop.ndim == 1 else loop.mean(axis=1)
    wrap = abs(float(mono[0]) - float(mono[-1]))
    assert wrap <= np.percentile(np.abs(np.diff(mono)), 99.9)
    r = seam_eval.evaluate(mono, sr)
    assert r["click"] <= 1.5
    assert r["dip_db"] > -15
    # the tracker inside seam_eval works on 16 ms frames (3% of this beat): an exact loop
    # reads 0 or one frame of noise
    assert r["ibi_excess"] <= 0.035


def test_render_of_a_wrong_length_still_has_no_click_or_dip(seam_eval):
    """A deliberately bad cut: the crossfade must still hide the jump."""
    sr = 32000
    y, bar = drum_bar_clip(seconds=20.0)
    p = LoopPoints(
        start=40000,
        end=40000 + int(7.3 * sr),
        sr=sr,
        score=0.0,
        bpm=120.0,
        beats=0,
        beats_per_bar=1,
        bars=0,
    )
    loop = render_loop(y, sr, p)
    r = seam_eval.evaluate(loop, sr)
    assert r["click"] <= 1.5
    assert r["dip_db"] > -15


def test_render_near_the_clip_end_blends_the_start_into_the_end():
    sr = 32000
    y, bar = drum_bar_clip(seconds=12.0)
    p = LoopPoints(
        start=bar, end=y.size, sr=sr, score=0.0, bpm=120.0, beats=0, beats_per_bar=1, bars=0
    )
    loop = render_loop(y, sr, p)
    assert loop.shape == (y.size - bar,)
    assert np.array_equal(loop[:1000], y[bar : bar + 1000])  # head untouched
    assert abs(float(loop[-1]) - float(y[bar - 1])) < 0.02  # tail ends where start begins


def test_render_rejects_points_outside_the_clip():
    y = np.zeros(1000, dtype=np.float32)
    with pytest.raises(AnalysisError):
        render_loop(y, 32000, LoopPoints(500, 2000, 32000, 0.0, 120.0, 0, 1, 0))


def test_crossfade_gains_keep_the_level():
    a, b = crossfade_gains(1000, 1.0)
    assert np.allclose(a + b, 1.0, atol=1e-6)  # identical signals: amplitude sums to one
    a, b = crossfade_gains(1000, 0.0)
    assert np.allclose(a * a + b * b, 1.0, atol=1e-6)  # unrelated: power sums to one
    a, b = crossfade_gains(1000, 0.5)
    assert np.allclose(a * a + b * b + 2 * 0.5 * a * b, 1.0, atol=1e-6)
    assert a[0] < 0.01 and b[-1] < 0.01 and np.all(np.diff(a) > 0)


@pytest.mark.parametrize("channels", [0, 2])
def test_normalize_hits_the_target_with_peaks_under_the_ceiling(channels):
    sr = 48000
    y, _ = drum_bar_clip(sr=sr, seconds=8.0, channels=channels)
    y = y * 0.05  # quiet: needs +20 dB or so, so the drum peaks must be limited
    out, measured = normalize_loudness(y, sr, target_lufs=-14.0, peak_ceiling_db=-1.0)
    assert measured == pytest.approx(measure_lufs(y, sr))
    assert out.shape == y.shape and out.dtype == np.float32
    assert measure_lufs(out, sr) == pytest.approx(-14.0, abs=0.5)
    assert np.max(np.abs(out)) <= 10 ** (-1.0 / 20) + 1e-6


def test_normalize_very_peaky_audio_gives_way_instead_of_crushing():
    sr = 48000
    rng = np.random.default_rng(2)
    y = (rng.standard_normal(sr * 6) * 0.001).astype(np.float32)
    y[::sr] = 0.9  # isolated spikes
    out, _ = normalize_loudness(y, sr, target_lufs=-10.0)
    assert np.max(np.abs(out)) <= 10 ** (-1.0 / 20) + 1e-6
    assert np.all(np.isfinite(out))


def test_normalize_keeps_a_loop_seamless():
    sr = 48000
    y, bar = drum_bar_clip(sr=sr, seconds=4.0)
    loop = y[bar : 3 * bar] * 0.1
    out, _ = normalize_loudness(loop, sr, target_lufs=-8.0)
    gain_start = out[:200] / np.where(np.abs(loop[:200]) > 1e-4, loop[:200], np.nan)
    gain_end = out[-200:] / np.where(np.abs(loop[-200:]) > 1e-4, loop[-200:], np.nan)
    assert np.nanmedian(gain_start) == pytest.approx(np.nanmedian(gain_end), rel=0.02)


def test_normalize_rejects_silence():
    with pytest.raises(AnalysisError):
        normalize_loudness(np.zeros(48000 * 2, dtype=np.float32), 48000)


@pytest.mark.parametrize("shape", [(32000 * 2,), (32000 * 2, 2)])
def test_resample_keeps_shape_and_pitch(shape):
    t = np.arange(shape[0]) / 32000
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    y = tone if len(shape) == 1 else np.stack([tone, 0.5 * tone], axis=1)
    out = resample(y, 32000, 48000)
    assert out.dtype == np.float32
    assert out.shape == (shape[0] * 3 // 2,) + shape[1:]
    mono = out if out.ndim == 1 else out[:, 0]
    spec = np.abs(np.fft.rfft(mono[4800:-4800] * np.hanning(mono.size - 9600)))
    peak_hz = np.argmax(spec) * 48000 / (mono.size - 9600)
    assert peak_hz == pytest.approx(1000.0, abs=5.0)
    assert np.array_equal(resample(y, 32000, 32000), y)


@pytest.mark.parametrize(
    ("sr", "seconds", "channels"),
    [(32000, 5.0, 0), (32000, 12.0, 0), (32000, 30.0, 0), (44100, 10.0, 2)],
)
def test_analyse_clip_gives_a_playable_normalized_loop(seam_eval, sr, seconds, channels):
    y, _ = drum_bar_clip(
        sr=sr, bpm=120.0 if sr == 32000 else 90.0, seconds=seconds, channels=channels
    )
    loop, points, info = analyse_clip(
        y,
        sr,
        out_rate=48000,
        out_channels=2,
        target_lufs=-18.0,
        min_seconds=3.0,
        max_seconds=None,
    )
    assert loop.dtype == np.float32 and loop.ndim == 2 and loop.shape[1] == 2
    assert loop.shape[0] == points.end - points.start and points.sr == 48000
    assert info["out_rate"] == 48000 and info["input_rate"] == sr
    assert info["seconds"] == pytest.approx(loop.shape[0] / 48000)
    assert measure_lufs(loop, 48000) == pytest.approx(-18.0, abs=0.5)
    assert info["loudness_out"] == pytest.approx(-18.0, abs=0.5)
    assert np.max(np.abs(loop)) <= 10 ** (-1.0 / 20) + 1e-6
    assert np.array_equal(loop[:, 0], loop[:, 1]) == (channels == 0)
    r = seam_eval.evaluate(loop.mean(axis=1), 48000)
    assert r["click"] <= 1.5 and r["dip_db"] > -15


def test_analyse_clip_keeps_the_level_without_a_target():
    y, _ = drum_bar_clip(seconds=10.0)
    loop, points, info = analyse_clip(y, 32000, out_rate=32000, out_channels=1, target_lufs=None)
    assert loop.shape == (points.end - points.start, 1)
    # the loop is rotated to start on its downbeat; undone, it is the clip itself
    unrotated = np.roll(loop[:, 0], points.rotation)
    assert np.array_equal(unrotated[2000:], y[points.start + 2000 : points.end])


def _onset_train(n: int, period: int, syncopation: float) -> np.ndarray:
    """An onset envelope: a beat every `period` frames plus, every other bar, two strong
    syncopated accents 0.7 and 1.7 periods after a downbeat (a dotted rhythm), each
    onset a few frames wide as in a real envelope."""
    env = np.zeros(n)
    env[period // 2 :: period] = 1.0
    for b in range(period // 2, n - 2 * period, 8 * period):
        for off in (0.7, 1.7):
            env[b + int(off * period)] = syncopation
    return np.convolve(env, np.hanning(7), mode="same")


def test_beat_tracker_keeps_the_pulse_through_syncopation():
    from infiniloopd.analysis.beats import estimate_period, track_beats
    from infiniloopd.analysis.loop import _TIGHTNESS

    period = 70  # 8 ms frames: 0.56 s, 107 BPM
    env = _onset_train(3750, period, syncopation=3.0)
    p = estimate_period(env, 0.008)
    assert p == pytest.approx(period, abs=1)
    beats = track_beats(env, p, _TIGHTNESS)
    ibi = np.diff(beats)
    assert ibi.size > 45
    assert np.all(np.abs(ibi - period) <= 2), ibi  # no beat jumps to a syncopated accent
    # ... and the beats are the pulse itself, not a chain of off-beats.
    phase = (beats - period // 2) % period
    assert np.all(np.minimum(phase, period - phase) <= 2), beats[:8]
