"""The mixer on exact arrays: wrap point, crossfade gains, ramps, soft clip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infiniloopd.player.mixer import CLIP_KNEE, PAUSED, PLAYING, STOPPED, Mixer

RATE = 1000  # a round rate makes ramp lengths exact: 20 ms = 20 frames


def ramp_loop(frames: int, channels: int = 2) -> np.ndarray:
    """A loop whose every sample is distinct, so any misplaced sample shows."""
    base = (np.arange(frames, dtype=np.float32) + 1) / (frames + 1) * 0.5
    return np.stack([base, -base][:channels], axis=1)


def settled(mixer: Mixer, key: str, audio: np.ndarray) -> Mixer:
    """A mixer already playing `audio` at full gain (start ramp done), position 0."""
    mixer.play(key, audio, 0.0)
    mixer.render(mixer.ramp_frames)
    mixer.decks[-1].pos = mixer.decks[-1].repeats = 0
    mixer.events.clear()
    return mixer


def test_wraps_sample_accurately_across_blocks():
    loop = ramp_loop(7)
    m = settled(Mixer(RATE, 2, 64, volume=1.0), "a", loop)
    out = np.concatenate([m.render(5) for _ in range(9)])  # 45 frames, wraps 6 times
    expected = np.tile(loop, (7, 1))[:45]
    np.testing.assert_array_equal(out, expected)
    assert m.decks[0].repeats == 6 and m.decks[0].pos == 45 % 7


def test_block_longer_than_loop():
    loop = ramp_loop(3)
    m = settled(Mixer(RATE, 2, 64, volume=1.0), "a", loop)
    np.testing.assert_array_equal(m.render(10), np.tile(loop, (4, 1))[:10])


def test_start_from_stopped_ramps_linearly_over_ramp_ms():
    m = Mixer(RATE, 1, 64, volume=1.0, ramp_ms=20)
    loop = np.full((50, 1), 0.5, dtype=np.float32)
    m.play("a", loop, 0.0)
    out = m.render(30)[:, 0]
    expected = 0.5 * np.minimum(np.arange(1, 31) / 20.0, 1.0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert m.state == PLAYING
    assert m.events == [("loop_started", {"key": "a", "at": 0})]


def test_equal_power_crossfade_gains():
    m = Mixer(RATE, 1, 256, volume=1.0)
    ones = np.ones((40, 1), dtype=np.float32) * 0.25
    settled(m, "a", ones)
    m.play("b", ones * 2, 0.1)  # 100 frames: a at 0.25 fades out, b at 0.5 fades in
    out = m.render(120)[:, 0]
    t = np.arange(100) / 100.0
    expected = 0.25 * np.cos(0.5 * np.pi * t) + 0.5 * np.sin(0.5 * np.pi * t)
    np.testing.assert_allclose(out[:100], expected, atol=1e-6)
    np.testing.assert_allclose(out[100:], 0.5, atol=1e-7)
    assert [d.key for d in m.decks] == ["b"]
    assert "crossfade_done" in [name for name, _ in m.events]
    # The gains themselves: squares sum to one at every frame (no dip, no bump).
    g_out, g_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
    np.testing.assert_allclose(g_out**2 + g_in**2, 1.0, atol=1e-12)


def test_incoming_loop_starts_at_its_first_frame():
    m = Mixer(RATE, 2, 64, volume=1.0)
    settled(m, "a", np.zeros((10, 2), dtype=np.float32))
    m.render(3)
    loop = ramp_loop(9)
    m.play("b", loop, 0.05)  # 50 frames
    out = m.render(60)
    gain = np.sin(0.5 * np.pi * np.arange(50) / 50)[:, None]
    np.testing.assert_allclose(out[:50], np.tile(loop, (6, 1))[:50] * gain, atol=1e-6)
    np.testing.assert_allclose(out[50:60], np.tile(loop, (7, 1))[50:60], atol=1e-7)


def test_crossfade_interrupted_by_another_keeps_power_bounded():
    m = Mixer(RATE, 1, 512, volume=1.0)
    one = np.full((10, 1), 0.3, dtype=np.float32)
    settled(m, "a", one)
    m.play("b", one, 0.2)
    m.render(100)  # halfway
    m.play("c", one, 0.2)
    out = m.render(300)[:, 0]
    # Three correlated decks of 0.3: the amplitude sum never exceeds 0.3 * sqrt(3).
    assert out.max() <= 0.3 * math.sqrt(3) + 1e-6
    assert [d.key for d in m.decks] == ["c"]
    np.testing.assert_allclose(out[-50:], 0.3, atol=1e-7)


def test_volume_change_is_a_linear_ramp():
    m = Mixer(RATE, 1, 64, volume=1.0, ramp_ms=20)
    settled(m, "a", np.full((30, 1), 0.5, dtype=np.float32))
    m.set_volume(0.5)
    out = m.render(40)[:, 0]
    expected = 0.5 * np.maximum(1.0 - 0.5 * np.arange(1, 41) / 20.0, 0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert m.gain == 0.5 and m.gain_step == 0.0


def test_pause_ramps_down_holds_position_and_resume_ramps_up():
    m = Mixer(RATE, 1, 64, volume=1.0, ramp_ms=20)
    loop = ramp_loop(100, channels=1)
    settled(m, "a", loop)
    m.pause()
    assert m.state == PAUSED
    down = m.render(20)[:, 0]
    np.testing.assert_allclose(down, loop[:20, 0] * (1 - np.arange(1, 21) / 20), atol=1e-7)
    pos = m.decks[0].pos
    assert pos == 20
    np.testing.assert_array_equal(m.render(50), 0.0)
    assert m.decks[0].pos == pos  # held
    m.resume()
    up = m.render(20)[:, 0]
    np.testing.assert_allclose(up, loop[20:40, 0] * np.arange(1, 21) / 20, atol=1e-7)


def test_stop_ramps_then_drops_the_loop():
    m = Mixer(RATE, 1, 64, volume=1.0, ramp_ms=20)
    settled(m, "a", np.full((30, 1), 0.4, dtype=np.float32))
    m.stop()
    out = m.render(30)[:, 0]
    np.testing.assert_allclose(out[:20], 0.4 * (1 - np.arange(1, 21) / 20), atol=1e-7)
    np.testing.assert_array_equal(out[20:], 0.0)
    assert m.state == STOPPED and m.decks == [] and m.idle


def test_play_while_paused_stays_paused_then_fades_in_on_resume():
    m = Mixer(RATE, 1, 64, volume=1.0, ramp_ms=20)
    settled(m, "a", np.full((30, 1), 0.4, dtype=np.float32))
    m.pause()
    m.render(30)
    m.play("b", np.full((30, 1), 0.2, dtype=np.float32), 1.0)
    assert [d.key for d in m.decks] == ["b"] and m.state == PAUSED
    np.testing.assert_array_equal(m.render(10), 0.0)
    m.resume()
    np.testing.assert_allclose(m.render(20)[:, 0], 0.2 * np.arange(1, 21) / 20, atol=1e-7)


def test_restart_from_silence_ramps_in_where_playback_left_off():
    m = settled(Mixer(RATE, 1, 64, volume=0.8, ramp_ms=20), "a", np.full((50, 1), 0.5, "f4"))
    m.render(10)
    pos = m.decks[0].pos
    m.restart_from_silence()  # the device ran dry while the thread was held up
    out = m.render(30)[:, 0]
    np.testing.assert_allclose(out, 0.4 * np.minimum(np.arange(1, 31) / 20.0, 1.0), atol=1e-6)
    assert m.decks[0].pos == (pos + 30) % 50  # it goes on from where it was, no skip
    # Paused (gain 0): nothing to ramp; it stays silent and paused.
    m.pause()
    m.render(30)
    m.restart_from_silence()
    assert m.state == PAUSED and not m.render(10).any()


def test_soft_clip_never_reaches_full_scale_and_is_identity_below_knee():
    m = Mixer(RATE, 1, 64, volume=1.0)
    x = np.array([[0.0], [0.5], [-0.8], [0.89], [0.95], [1.5], [-3.0], [40.0]], np.float32)
    settled(m, "a", x)
    out = m.render(8)[:, 0]
    np.testing.assert_array_equal(out[:4], x[:4, 0])
    head = 1 - CLIP_KNEE
    for got, raw in zip(out[4:], x[4:, 0], strict=True):
        want = math.copysign(CLIP_KNEE + head * math.tanh((abs(raw) - CLIP_KNEE) / head), raw)
        assert got == pytest.approx(want, abs=1e-6)
    assert np.all(np.abs(out) < 1.0)
    assert np.all(np.diff(out[[3, 4, 5]]) > 0)  # monotonic above the knee


def test_render_does_not_allocate_scratch_per_block():
    m = Mixer(48000, 2, 960, volume=0.7)
    m.play("a", np.random.default_rng(0).standard_normal((4800, 2)).astype(np.float32), 0)
    m.play("b", np.zeros((5000, 2), np.float32), 1.0)
    out = np.empty((960, 2), np.float32)
    ids = (id(m._t), id(m._g), id(m._tmp), id(m._tmp2))
    for _ in range(10):
        m.render_into(out)
    assert (id(m._t), id(m._g), id(m._tmp), id(m._tmp2)) == ids


def test_rejects_wrong_shape():
    m = Mixer(RATE, 2, 64)
    with pytest.raises(ValueError):
        m.play("a", np.zeros((10, 1), np.float32), 0)
    with pytest.raises(ValueError):
        m.render(65)
