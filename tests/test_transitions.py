"""Transition planning, bar-line scheduling in the mixer, and pitch-true time-stretching."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from infiniloopd.player.handoff import Handoff
from infiniloopd.player.mixer import Mixer
from infiniloopd.player.stretch import match_tempo, stretch_factor, stretch_loop
from infiniloopd.player.transitions import make_grid, plan_transition, scale_grid

RATE = 48000


def grid_dict(bpm: float, bars: int, per_bar: int = 4, offset: int = 0) -> dict:
    beat = 60.0 * RATE / bpm
    beats = [offset + round(i * beat) for i in range(bars * per_bar)]
    return {
        "bpm": bpm,
        "beats_per_bar": per_bar,
        "beats": beats,
        "downbeats": beats[::per_bar],
        "changes": [],
    }


def frames_of(bpm: float, bars: int, per_bar: int = 4) -> int:
    return round(bars * per_bar * 60.0 * RATE / bpm)


# --- planning ---------------------------------------------------------------------------


def test_starts_on_the_next_bar_line_at_least_the_lead_ahead():
    bpm, bars = 120.0, 4  # a bar is 2 s = 96000 frames
    playing = make_grid(grid_dict(bpm, bars), None, frames_of(bpm, bars), RATE)
    incoming = make_grid(grid_dict(bpm, 2), None, frames_of(bpm, 2), RATE)
    plan = plan_transition(playing, 100_000, incoming, rate=RATE, crossfade=4.0, lead=0.05)
    assert 100_000 + plan.wait == 192_000  # the third bar line
    # Just before a bar line, less than the lead ahead: the one after.
    plan = plan_transition(playing, 191_000, incoming, rate=RATE, crossfade=4.0, lead=0.05)
    assert 191_000 + plan.wait == 288_000
    # Past the last bar line: the loop's wrap (frame 0 of the next lap).
    plan = plan_transition(playing, 380_000, incoming, rate=RATE, crossfade=4.0, lead=0.05)
    assert 380_000 + plan.wait == 384_000


def test_fade_is_whole_bars_closest_to_the_wanted_seconds():
    bpm = 100.0  # a bar is 2.4 s = 115200 frames
    playing = make_grid(grid_dict(bpm, 4), None, frames_of(bpm, 4), RATE)
    incoming = make_grid(grid_dict(bpm, 4), None, frames_of(bpm, 4), RATE)
    for seconds, bars in ((6.0, 2), (7.5, 3), (0.5, 1), (1.3, 1)):
        plan = plan_transition(playing, 0, incoming, rate=RATE, crossfade=seconds)
        assert plan.bars == bars and plan.kind == "bar"
        assert plan.fade == bars * 115200


def test_incoming_enters_on_its_own_downbeat():
    bpm = 120.0
    playing = make_grid(grid_dict(bpm, 4), None, frames_of(bpm, 4), RATE)
    # An old loop whose first downbeat is not at frame 0.
    incoming = make_grid(grid_dict(bpm, 4, offset=7000), None, frames_of(bpm, 4) + 7000, RATE)
    plan = plan_transition(playing, 0, incoming, rate=RATE, crossfade=4.0)
    assert plan.entry == 7000


def test_beatless_loop_changes_on_the_next_chord_change():
    frames = 10 * RATE
    playing = make_grid(
        {"bpm": None, "beats_per_bar": 4, "beats": [], "downbeats": [], "changes": [0, 200_000]},
        None,
        frames,
        RATE,
    )
    incoming = make_grid(
        {"beats": [], "downbeats": [], "changes": [30_000, 90_000]}, None, frames, RATE
    )
    plan = plan_transition(playing, 50_000, incoming, rate=RATE, crossfade=6.0)
    assert plan.kind == "change" and 50_000 + plan.wait == 200_000
    assert plan.entry == 30_000 and plan.fade == 6 * RATE
    plan = plan_transition(playing, 300_000, incoming, rate=RATE, crossfade=6.0)
    assert 300_000 + plan.wait == frames  # the change at 0, on the next lap


def test_tempos_beyond_eight_percent_overlap_at_most_one_beat():
    playing = make_grid(grid_dict(120.0, 4), None, frames_of(120.0, 4), RATE)
    incoming = make_grid(grid_dict(140.0, 4), None, frames_of(140.0, 4), RATE)
    plan = plan_transition(playing, 0, incoming, rate=RATE, crossfade=6.0)
    assert plan.kind == "beat" and plan.fade <= round(60 / 120.0 * RATE)
    # Within 8% (after stretching they match): whole bars again.
    close = make_grid(grid_dict(126.0, 4), None, frames_of(126.0, 4), RATE)
    assert plan_transition(playing, 0, close, rate=RATE, crossfade=6.0).kind == "bar"


def test_no_grid_falls_back_on_bpm_then_on_frame_zero():
    g = make_grid(None, 120.0, 5 * RATE, RATE)
    assert list(g.downbeats) == [0, 96000, 192000] and g.beats[1] == 24000
    g = make_grid(None, None, 5 * RATE, RATE)
    assert not g.has_beats and list(g.transition_points()) == [0]


def test_scale_grid_scales_positions_and_tempo():
    g = scale_grid(grid_dict(100.0, 2), 1.05, frames_of(100.0, 2) * 105 // 100)
    assert g["bpm"] == pytest.approx(100 / 1.05)
    assert g["downbeats"][1] == round(115200 * 1.05)


# --- the mixer schedules the plan sample-exactly --------------------------------------


def click_loop(bpm: float, bars: int, level: float, per_bar: int = 4) -> np.ndarray:
    """Silence with one-sample clicks on each downbeat: positions are exact in the output."""
    frames = frames_of(bpm, bars, per_bar)
    x = np.zeros((frames, 1), np.float32)
    bar = round(per_bar * 60.0 * RATE / bpm)
    x[::bar] = level
    return x


def render(m: Mixer, frames: int, block: int = 1000) -> np.ndarray:
    return np.concatenate([m.render(min(block, frames - i)) for i in range(0, frames, block)])


def test_mixer_starts_the_transition_on_the_bar_line_with_the_incoming_downbeat():
    bpm = 120.0  # bar = 96000 frames
    a = click_loop(bpm, 2, 0.5)
    b = click_loop(bpm, 2, 0.25)
    m = Mixer(RATE, 1, 1024, volume=1.0)
    m.transition("a", a, 0.0, grid=grid_dict(bpm, 2))
    render(m, 50_000)  # deck a at 50000 (started at its downbeat, frame 0)
    m.events.clear()
    plan = m.transition("b", b, 2.0, grid=grid_dict(bpm, 2))
    assert plan is not None and plan.wait == 96_000 - 50_000 and plan.fade == 96_000
    out = np.concatenate([render(m, 1000) for _ in range(200)])[:, 0]
    start = [e for n, e in m.events if n == "transition_start"]
    assert len(start) == 1 and start[0]["at"] == 96_000 and start[0]["from"] == "a"
    # b's first click (its downbeat) lands exactly on a's bar line, 46000 frames on.
    idx = 96_000 - 50_000
    assert out[idx] > 0.49  # a's click at full gain (b's gain is 0 at the first frame)
    # One bar later: both are on their bar lines together, at equal power (cos/sin 45°).
    idx2 = idx + 48_000  # half the fade: 45 degrees
    assert out[idx2] == pytest.approx(0.0, abs=1e-6)  # no click off the grid
    bar2 = idx + 96_000
    assert out[bar2] == pytest.approx(0.25, abs=1e-3)  # only b at the end of the fade
    end = [e for n, e in m.events if n == "transition_end"]
    assert end and end[0]["at"] == 96_000 + 96_000


def test_pending_transition_is_the_target_and_a_newer_one_replaces_it():
    bpm = 120.0
    m = Mixer(RATE, 1, 1024, volume=1.0)
    m.transition("a", click_loop(bpm, 2, 0.5), 0.0, grid=grid_dict(bpm, 2))
    render(m, 10_000)
    m.transition("b", click_loop(bpm, 2, 0.2), 2.0, grid=grid_dict(bpm, 2))
    assert m.target.key == "b" and m.current.key == "a"
    m.transition("c", click_loop(bpm, 2, 0.1), 2.0, grid=grid_dict(bpm, 2))
    render(m, 90_000)
    assert [d.key for d in m.decks] == ["a", "c"]
    assert [e["key"] for n, e in m.events if n == "transition_start"] == ["c"]


def test_paused_mixer_holds_the_countdown():
    bpm = 120.0
    m = Mixer(RATE, 1, 1024, volume=1.0, ramp_ms=1.0)
    m.transition("a", click_loop(bpm, 2, 0.5), 0.0, grid=grid_dict(bpm, 2))
    render(m, 10_000)
    m.transition("b", click_loop(bpm, 2, 0.2), 2.0, grid=grid_dict(bpm, 2))
    m.pause()
    render(m, 1000)  # the ramp to silence: decks still move
    wait = m.frames_to_transition()
    render(m, 50_000)
    assert m.frames_to_transition() == wait  # frozen: the bar line is still ahead
    assert m.current.pos == 11_000


# --- time-stretching ----------------------------------------------------------------------


def dominant_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * RATE / len(x))


def test_stretch_keeps_the_pitch_and_reaches_the_exact_length():
    t = np.arange(4 * RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    loop = np.stack([tone, tone], axis=1)
    out = stretch_loop(loop, RATE, 1.06)
    assert out.shape == (round(4 * RATE * 1.06), 2)
    assert dominant_hz(out[:, 0]) == pytest.approx(440.0, abs=1.0)
    # A resampler would have moved it to 440 / 1.06 = 415 Hz.
    # Still a seamless loop: the wrap is no bigger a step than the signal's own.
    steps = np.abs(np.diff(out[:, 0]))
    assert abs(out[0, 0] - out[-1, 0]) <= steps.max() * 1.5


def test_match_tempo_only_within_eight_percent():
    assert stretch_factor(120.0, 126.0) == pytest.approx(1.05)
    assert stretch_factor(120.0, 135.0) is None
    assert stretch_factor(None, 120.0) is None
    audio = np.zeros((RATE, 2), np.float32)
    same, grid, bpm = match_tempo(audio, None, 140.0, 120.0, RATE)
    assert same is audio and bpm == 140.0


def test_handoff_stretches_off_the_loop_and_delivers_the_scaled_grid():
    got = []

    def play(key, audio, crossfade, *, grid, bpm):
        got.append((key, audio.shape[0], grid, bpm))

    async def run():
        h = Handoff(play, RATE)
        h.hand("a", np.zeros((frames_of(120, 1), 2), np.float32), 1.0, grid=None, bpm=120.0)
        assert not h.busy  # nothing playing yet: handed over at once
        t = np.arange(frames_of(123, 1)) / RATE
        x = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        h.hand("b", np.stack([x, x], 1), 1.0, grid=grid_dict(123.0, 1), bpm=123.0)
        assert h.busy
        await h.wait()

    asyncio.run(run())
    assert [g[0] for g in got] == ["a", "b"]
    _, frames, grid, bpm = got[1]
    assert bpm == 120.0 and grid["bpm"] == pytest.approx(120.0)
    assert frames == round(frames_of(123, 1) * 123 / 120)


def test_a_loop_after_stop_starts_at_once_even_during_the_fade_out():
    m = Mixer(RATE, 1, 1024, volume=1.0)
    m.transition("a", click_loop(120.0, 2, 0.5), 0.0, grid=grid_dict(120.0, 2))
    render(m, 5000)
    m.stop(0.5)
    render(m, 1000)  # still fading out
    assert m.transition("b", np.full((RATE, 1), 0.1, np.float32), 2.0, bpm=120.0) is None
    out = render(m, 3 * RATE)  # the 2 s crossfade from what was fading out
    assert [d.key for d in m.decks] == ["b"] and abs(out[-1, 0] - 0.1) < 1e-6


def test_player_reports_the_waiting_loop_as_current_and_emits_transition_events():
    import threading
    import time

    from infiniloopd.outputs.null import NullOutput
    from infiniloopd.player.engine import Player

    events: list[tuple[str, dict]] = []
    started = threading.Event()

    def on_event(name: str, data: dict) -> None:
        events.append((name, data))
        if name == "transition_start":
            started.set()

    p = Player(NullOutput(), rate=RATE, channels=1, block_ms=20, on_event=on_event)
    p.start()
    try:
        bpm = 240.0  # a bar is 1 s
        p.play_loop("a", click_loop(bpm, 2, 0.5), 0.0, grid=grid_dict(bpm, 2))
        deadline = time.monotonic() + 5
        while p.status().played < 0.3 and time.monotonic() < deadline:
            time.sleep(0.02)
        p.play_loop("b", click_loop(bpm, 2, 0.2), 0.5, grid=grid_dict(bpm, 2))
        time.sleep(0.1)  # applied, but the bar line is still ahead
        st = p.status()
        assert st.key == "b" and st.played == 0.0 and st.crossfading
        assert started.wait(5), "the transition never started"
    finally:
        p.close()
    start = next(d for n, d in events if n == "transition_start")
    a_at = next(d["at"] for n, d in events if n == "loop_started" and d["key"] == "a")
    assert (start["at"] - a_at) % RATE == 0  # on a bar line of a (1 s bars from its start)
    # 0.5 s asked for: the closest whole number of bars is at least one.
    assert start["from"] == "a" and start["bars"] == 1 and start["fade"] == RATE
