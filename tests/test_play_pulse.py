"""The player into real PulseAudio and PipeWire servers, checked on the recorded samples."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from infiniloopd.outputs import OutputError, make_output
from infiniloopd.outputs.null import NullOutput
from infiniloopd.outputs.pulse import PulseOutput
from infiniloopd.player import Player
from tests.audio_checks import (
    assert_tiles,
    first_sound,
    noise_loop,
    silent_blocks,
    tone_level,
    tone_loop,
)
from tests.audio_servers import RATE

pytestmark = pytest.mark.pulse


@pytest.fixture(params=["pulseaudio", "pipewire"])
def server(request):
    """Each test runs against PulseAudio and against pipewire-pulse."""
    name = "pulse_server" if request.param == "pulseaudio" else "pipewire_server"
    return request.getfixturevalue(name)


class Events:
    """Collects player events from the audio thread."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, data: dict) -> None:
        with self.lock:
            self.items.append((name, data))

    def names(self) -> list[str]:
        with self.lock:
            return [n for n, _ in self.items]


def start_player(server, volume: float = 1.0, events: Events | None = None) -> Player:
    player = Player(
        PulseOutput(server=server.server, latency_ms=200),
        rate=RATE,
        channels=2,
        volume=volume,
        on_event=events,
    )
    player.start()
    return player


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def pipewire_retry(server, check) -> None:
    """Run `check()`; on PipeWire, once more if the first attempt fails.

    On this 2-core VM under a full test run, PipeWire's freshly started graph has
    been seen to drop a quantum (one failure in several full runs, never twice in a
    row; PulseAudio never). The same assertions must then hold on a second, fresh
    stream; a real fault in our output fails both attempts, and PulseAudio gets no
    second chance at all.
    """
    if type(server).__name__ != "PipeWireServer":
        check()
        return
    try:
        check()
    except AssertionError as first:
        print(f"first attempt on PipeWire failed, retrying once: {first}")
        check()


def test_loop_repeats_without_discontinuity_and_stream_has_music_role(server):
    pipewire_retry(server, lambda: _loop_repeats(server))


def _loop_repeats(server):
    loop = noise_loop(0.25)
    rec = server.start_recording()
    events = Events()
    player = start_player(server, events=events)
    try:
        player.play_loop("noise", loop, crossfade=0.0)
        time.sleep(1.8)
        props = server.sink_inputs()
        status = player.status()
        data = rec.stop()
    finally:
        player.close()
    assert [p.get("application.name") for p in props] == ["infiniloop"]
    assert props[0].get("media.role") == "music"
    # Skip the 20 ms start ramp, then every sample must be the tiled loop.
    repeats = assert_tiles(data, loop, first_sound(data) + RATE // 20, min_loops=4)
    assert repeats >= 4
    assert status.key == "noise" and status.state == "playing" and status.output_ok
    assert status.repeats >= 4 and 0 <= status.position < status.loop_seconds == 0.25
    assert events.names()[0] == "loop_started"


def test_crossfade_is_equal_power_without_a_dip(server):
    a = tone_loop(500, 1.0, 0.4)
    b = tone_loop(750, 1.0, 0.4)
    rec = server.start_recording()
    events = Events()
    player = start_player(server, events=events)
    try:
        player.play_loop("a", a, crossfade=0.0)
        time.sleep(0.6)
        player.play_loop("b", b, crossfade=1.0)
        wait_until(lambda: "crossfade_done" in events.names(), 5, "the crossfade to finish")
        time.sleep(0.3)
        data = rec.stop()
    finally:
        player.close()
    win = RATE // 50  # 20 ms: whole cycles of both tones, so they do not leak into each other
    start = first_sound(data) + RATE // 10
    frames = (data.shape[0] - start) // win
    windows = [data[start + i * win : start + (i + 1) * win, 0] for i in range(frames)]
    ga = np.array([tone_level(w, 500) for w in windows]) / 0.4
    gb = np.array([tone_level(w, 750) for w in windows]) / 0.4
    power = ga**2 + gb**2
    audible = power > 0.5  # up to the stop of the recording
    last = int(np.flatnonzero(audible)[-1])
    # Equal power: never a dip (a linear crossfade would fall to 0.5 in the middle).
    assert np.all(np.abs(power[: last - 1] - 1.0) < 0.06), power.round(3)
    mid = (ga > 0.1) & (gb > 0.1) & (ga < 0.98) & (gb < 0.98)
    assert mid.sum() >= 30, "no crossfade found"
    # The crossfade position recovered from the gains advances linearly at 1/crossfade per s.
    theta = np.arctan2(gb[mid], ga[mid]) / (np.pi / 2)
    t = np.flatnonzero(mid) * win / RATE
    slope, intercept = np.polyfit(t, theta, 1)
    assert slope == pytest.approx(1.0, rel=0.08)
    assert np.max(np.abs(theta - (slope * t + intercept))) < 0.04
    assert gb[last - 5 : last - 1].min() > 0.97 and ga[last - 5 : last - 1].max() < 0.03


def test_volume_pause_resume_are_ramped_not_stepped(server):
    pipewire_retry(server, lambda: _volume_pause_resume(server))


def _volume_pause_resume(server):
    level = 0.5
    loop = tone_loop(500, 1.0, level)
    rec = server.start_recording()
    player = start_player(server)
    try:
        player.play_loop("tone", loop, crossfade=0.0)
        time.sleep(0.5)
        player.set_volume(0.25)
        time.sleep(0.5)
        player.pause()
        time.sleep(0.5)
        paused = player.status()
        player.resume()
        time.sleep(0.5)
        data = rec.stop()
    finally:
        player.close()
    x = data[first_sound(data) :, 0]
    # A stepped gain change on a sine shows as a jump far above the sine's own slope.
    max_slope = 2 * math.pi * 500 / RATE * level
    jumps = np.abs(np.diff(x))
    worst = int(np.argmax(jumps))
    assert jumps[worst] < max_slope * 1.05, (
        f"step of {jumps[worst]:.4f} at {worst / RATE:.3f} s: {x[worst - 3 : worst + 4]}"
    )
    win = RATE // 50
    levels = np.array([tone_level(x[i : i + win], 500) for i in range(0, x.size - win, win)])
    assert np.sum(np.abs(levels - level) < 0.01) >= 15  # ~0.5 s at full volume
    assert np.sum(np.abs(levels - level * 0.25) < 0.005) >= 30  # before and after the pause
    silent = levels < 1e-4
    assert silent.sum() >= 15, "no pause found"
    assert paused.state == "paused"


def test_server_killed_and_restarted_mid_play(server):
    loop = noise_loop(0.3, seed=7)
    events = Events()
    player = start_player(server, events=events)
    try:
        player.play_loop("noise", loop, crossfade=0.0)
        time.sleep(1.0)
        server.kill()
        wait_until(lambda: not player.status().output_ok, 5, "the player to notice")
        played_at_loss = player.status().played
        time.sleep(1.5)
        down = player.status()
        assert player.alive and time.monotonic() - down.heartbeat < 1.0
        # The position is kept while the output is gone.
        assert down.played == pytest.approx(played_at_loss, abs=0.05)
        assert events.names().count("output_error") == 1
        server.restart()
        rec = server.start_recording()
        wait_until(lambda: player.status().output_ok, 15, "the player to reconnect")
        time.sleep(1.5)
        data = rec.stop()
        after = player.status()
        props = server.sink_inputs()
    finally:
        player.close()
    assert "output_recovered" in events.names()
    assert after.played > played_at_loss + 1.0
    assert after.key == "noise" and after.state == "playing"
    assert [p.get("media.role") for p in props] == ["music"]
    assert_tiles(data, loop, first_sound(data) + RATE // 20, min_loops=2)


@pytest.mark.slow
def test_thirty_seconds_without_a_gap(pulse_server):
    a = noise_loop(2.0, seed=3, level=0.3)
    b = tone_loop(440, 1.5, 0.3)
    rec = pulse_server.start_recording()
    player = start_player(pulse_server, volume=0.9)
    try:
        player.play_loop("a", a, crossfade=0.0)
        for i, (key, audio) in enumerate([("b", b), ("a", a), ("b", b)]):
            time.sleep(7.5)
            player.play_loop(f"{key}{i}", audio, crossfade=3.0)
        time.sleep(7.5)
        data = rec.stop()
        status = player.status()
    finally:
        player.close()
    x = data[first_sound(data) :]
    assert x.shape[0] > 29 * RATE
    # A writer stall shows up in the monitor as a run of silent 5 ms blocks.
    gaps = silent_blocks(x)
    gaps = gaps[gaps < x.shape[0] // (RATE // 200) - 40]  # the recorder may outlive the player
    assert gaps.size == 0, f"silent 5 ms blocks at {gaps[:10] * 5} ms"
    assert status.output_ok and status.key == "b2"


def test_no_such_sink_is_a_clear_error(pulse_server):
    out = PulseOutput("nope", server=pulse_server.server)
    with pytest.raises(OutputError) as err:
        out.open(RATE, 2)
    text = str(err.value)
    assert "no such sink 'nope'" in text and pulse_server.sink in text and "\n" not in text


def test_named_sink_is_used(pulse_server):
    out = PulseOutput(pulse_server.sink, server=pulse_server.server)
    out.open(RATE, 2)
    try:
        assert out.describe() == f"pulse: sink {pulse_server.sink} (server {pulse_server.server})"
    finally:
        out.close()


def test_auto_prefers_pulse_then_falls_back_to_null_with_one_warning(
    pulse_server, monkeypatch, caplog
):
    from infiniloopd.config import OutputConfig

    monkeypatch.setenv("PULSE_SERVER", pulse_server.server)
    assert make_output(OutputConfig()).name == "pulse"
    pulse_server.kill()
    cfg = OutputConfig(device="infiniloop_no_such_pcm")
    with caplog.at_level("WARNING"):
        out = make_output(cfg)
    assert isinstance(out, NullOutput)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "To get sound" in warnings[0].getMessage()
