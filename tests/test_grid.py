"""Beat grids and phrase loops, checked against music whose tempo and bar lines are known."""

from __future__ import annotations

import numpy as np
import pytest

from infiniloopd.analysis import analyse_clip, find_loop, render_loop, resample, rotate_loop
from tests.analysis_signals import drum_bar_clip, synth_bar_lines

OUT = 48000


@pytest.fixture(scope="module")
def synth():
    from infiniloopd.generators.synth import SynthGenerator

    return SynthGenerator()


def _check_grid_shape(grid: dict, frames: int, bars: int, bpb: int) -> None:
    beats, downs = grid["beats"], grid["downbeats"]
    assert grid["beats_per_bar"] == bpb
    assert beats[0] == 0 and downs[0] == 0, "frame 0 of the loop must be a downbeat"
    assert all(0 <= b < frames for b in beats + downs + grid["changes"])
    assert beats == sorted(set(beats)) and set(downs) <= set(beats)
    assert len(beats) == bars * bpb and len(downs) == bars
    # downbeats every bpb beats
    assert downs == beats[::bpb]


@pytest.mark.parametrize(
    "prompt",
    [
        "lofi hip hop",
        "jazz",
        "synthwave",
        "chiptune",
        "cinematic",
        pytest.param(
            "night",
            marks=pytest.mark.xfail(
                reason="the phasing ambient layers of the new composer pull the tempo estimate off",
                strict=False,
            ),
        ),
        pytest.param(
            "ambient drift",
            marks=pytest.mark.xfail(
                reason="the phasing ambient layers of the new composer pull the tempo estimate off",
                strict=False,
            ),
        ),
        "techno",
    ],
)
def test_synth_clips_get_their_tempo_and_bar_lines(synth, prompt):
    seconds, seed = 20.0, 0
    y = synth.render(prompt, seconds, seed)
    sr = synth.rate
    bpm, offset, bpb = synth_bar_lines(prompt, seconds, seed)
    loop, points, info = analyse_clip(y, sr, out_rate=OUT, out_channels=1, target_lufs=None)
    grid = info["grid"]
    assert grid is not None and grid["beats"], "a beat grid was expected"
    assert grid["bpm"] == pytest.approx(bpm, rel=0.02)
    assert info["bpm"] == pytest.approx(bpm, rel=0.02)
    # whole bars, at least two, frame 0 a downbeat
    assert info["beats_per_bar"] == bpb and info["bars"] >= 2
    _check_grid_shape(grid, loop.shape[0], info["bars"], bpb)
    # ... and that downbeat is a true bar line of the composition
    bar = bpb * 60.0 / bpm
    off = (info["downbeat_s"] - offset) % bar
    assert min(off, bar - off) <= 0.07, f"frame 0 is {off:.3f} s past a bar line of {bar:.3f} s"
    # the loop really starts there: its first 100 ms are the clip's audio at that time
    at = resample(y, sr, OUT)
    d = int(round(info["downbeat_s"] * OUT))
    k = OUT // 10
    if points.rotation + k < points.frames - int(0.03 * OUT):
        assert np.allclose(loop[:k, 0], at[d : d + k], atol=1e-4)


@pytest.mark.parametrize("prompt", ["night", "ambient drift", "techno", "jazz"])
def test_the_synths_own_beat_is_used_when_it_says_it(synth, prompt):
    """The daemon's path: the worker reads the composer's facts (tempo, meter, first bar
    line) beside the clip and the loop gets exactly that grid, where the audio alone can
    mislead the estimate (the ambient styles above)."""
    from infiniloopd.worker import grid_hint

    seconds, seed = 20.0, 0
    y = synth.render(prompt, seconds, seed)
    sr = synth.rate
    bpm, offset, bpb = synth_bar_lines(prompt, seconds, seed)
    music = synth.compose(prompt, seconds, seed).music
    hint = grid_hint(music, seconds)
    assert hint is not None and hint.bpm == bpm and hint.beats_per_bar == bpb
    assert abs(hint.downbeat - offset) < 1e-6
    loop, points, info = analyse_clip(
        y, sr, out_rate=OUT, out_channels=1, target_lufs=None, hint=hint
    )
    grid = info["grid"]
    assert grid["bpm"] == pytest.approx(bpm, rel=0.002)
    assert info["bars"] >= 2
    _check_grid_shape(grid, loop.shape[0], info["bars"], bpb)
    bar = bpb * 60.0 / bpm
    off = (info["downbeat_s"] - offset) % bar
    assert min(off, bar - off) <= 0.005, f"frame 0 is {off:.4f} s past a bar line"
    # the loop is whole bars of the composed tempo, to the sample give or take the seam
    assert abs(points.frames - info["bars"] * bar * OUT) <= 0.005 * OUT


def test_absurd_facts_give_no_hint():
    from infiniloopd.worker import grid_hint

    good = {"tempo": 90.0, "beats_per_bar": 4, "downbeat": 0.05}
    assert grid_hint(good, 20.0) is not None
    for bad in (
        None,
        [],
        {**good, "tempo": 0},
        {**good, "tempo": "90"},
        {**good, "tempo": float("nan")},
        {**good, "beats_per_bar": True},
        {**good, "beats_per_bar": 1},
        {**good, "downbeat": -1.0},
        {**good, "downbeat": 25.0},
        {"tempo": 90.0},
    ):
        assert grid_hint(bad, 20.0) is None, bad


@pytest.mark.parametrize(
    "kw",
    [
        dict(sr=32000, bpm=120.0, beats_per_bar=4, seconds=20.0),
        dict(sr=48000, bpm=100.0, beats_per_bar=3, seconds=24.0),
    ],
    ids=["120bpm-4-4", "100bpm-3-4"],
)
def test_exactly_periodic_clip_has_an_exact_grid(kw):
    y, bar = drum_bar_clip(**kw)
    sr, bpb = kw["sr"], kw["beats_per_bar"]
    beat = bar // bpb
    p = find_loop(y, sr)
    g = p.grid.to_dict()
    _check_grid_shape(g, p.frames, p.bars, bpb)
    assert g["bpm"] == pytest.approx(kw["bpm"], rel=0.005)
    steps = np.diff(g["beats"])
    assert np.all(np.abs(steps - beat) <= 0.012 * sr)
    # frame 0 lands on a beat. (Which beat opens the bar is not asserted here: the
    # bass of this signal changes on every beat in a 6-beat cycle, which misleads the
    # harmonic-change cue; the synth clips above check bar lines on real progressions.)
    off = p.downbeat % beat
    assert min(off, beat - off) <= 0.02 * sr, f"frame 0 is {off / sr * 1000:.0f} ms past a beat"


def test_loops_are_never_one_bar_when_two_fit():
    y, bar = drum_bar_clip(sr=32000, bpm=120.0, beats_per_bar=4, seconds=20.0)
    # a cap that leaves room for two bars but not three
    p = find_loop(y, 32000, min_seconds=1.0, max_seconds=5.0)
    assert p.bars == 2 and p.beats_per_bar == 4
    assert abs(p.frames - 2 * bar) <= 2


def test_rotation_is_a_circular_shift_that_keeps_the_wrap_continuous():
    y, bar = drum_bar_clip(sr=32000, bpm=120.0, beats_per_bar=4, seconds=20.0)
    p = find_loop(y, 32000)
    loop = render_loop(y, 32000, p)
    rot = rotate_loop(loop, p.rotation)
    assert rot.shape == loop.shape and p.rotation > 0
    assert np.array_equal(rot, np.roll(loop, -p.rotation))
    steps = np.abs(np.diff(rot))
    assert abs(float(rot[0]) - float(rot[-1])) <= np.percentile(steps, 99.9)


def _drone_chords(sr: int, seconds: float = 24.0, change: float = 4.0) -> np.ndarray:
    """Sustained triads that cross-fade into the next every `change` s: harmony, no onsets."""
    t = np.arange(int(seconds * sr)) / sr
    chords = [(220.0, 277.18, 329.63), (196.0, 246.94, 293.66), (174.61, 220.0, 261.63)]
    y = np.zeros_like(t)
    for i in range(int(seconds / change) + 1):
        c = i * change
        rise = np.clip((t - (c - 0.5)) / 1.0, 0, 1)
        fall = np.clip(((c + change + 0.5) - t) / 1.0, 0, 1)
        env = np.sin(0.5 * np.pi * np.minimum(rise, fall))
        for f in chords[i % len(chords)]:
            y += 0.1 * np.sin(2 * np.pi * f * t) * env
    return (y * (0.8 + 0.2 * np.sin(2 * np.pi * t / 7))).astype(np.float32)


def test_beatless_music_has_no_beats_but_its_chord_changes():
    sr = 32000
    y = _drone_chords(sr)
    p = find_loop(y, sr)
    g = p.grid.to_dict()
    assert g["beats"] == [] and g["downbeats"] == []
    assert p.rotation == 0
    assert len(g["changes"]) >= 2
    for c in g["changes"]:
        t = (p.start + c) / sr
        assert abs(t - 4.0 * round(t / 4.0)) <= 0.3, f"a change at {t:.2f} s is no chord change"


def test_the_grid_travels_from_the_worker_process_to_the_sidecar(tmp_path, synth):
    import asyncio

    import soundfile as sf

    from infiniloopd.library import Library
    from infiniloopd.worker import AnalyzerWorker

    clip = tmp_path / "clip.wav"
    sf.write(str(clip), synth.render("synthwave", 12.0, 3), synth.rate, subtype="FLOAT")

    async def scenario():
        w = AnalyzerWorker(
            rate=OUT,
            channels=2,
            target_lufs=-18.0,
            peak_ceiling_db=-1.0,
            min_loop=3.0,
            max_loop=None,
        )
        try:
            return await w.analyse(clip)
        finally:
            await w.close()

    audio, info = asyncio.run(scenario())
    grid = info["grid"]
    assert grid["beats"] and grid["downbeats"][0] == 0 and grid["beats"][-1] < audio.shape[0]
    lib = Library(tmp_path / "lib", 100)
    lib.scan()
    entry = lib.add(audio, OUT, {"prompt": "synthwave", "bpm": info["bpm"], "grid": grid})
    again = Library(tmp_path / "lib", 100)
    again.scan()
    assert again.get(entry.id).grid == grid
